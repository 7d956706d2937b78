//! Certificate reload without a restart. Every new TLS connection looks whether SIGHUP asked
//! for a reload or a certificate or key file changed (modification time and size, looked at
//! most once a second), so the process that makes the handshake always has the current
//! files, under every model. The in-process models also run a small thread that reloads
//! at once on SIGHUP and within a second of a change, so the first handshake after it does
//! not pay for the loading; the process models must stay single-threaded to fork, so there
//! the handshake's own look does it (each worker process for itself).

use std::sync::Arc;
use std::time::Duration;

use super::Listeners;

/// Makes SIGHUP a reload (instead of a stop) and starts the reload thread when
/// `threads_allowed` (an in-process model; the process models fork and must stay
/// single-threaded).
///
/// # Errors
/// The signal handler or the thread cannot be set up.
pub fn install(tls: &Listeners, threads_allowed: bool) -> std::io::Result<()> {
    let Some(acceptor) = (0..tls.len()).find_map(|i| tls.for_index(i)) else {
        return Ok(());
    };
    let store = Arc::clone(&acceptor.store);
    signal_hook::flag::register(plumb_sys::signal::SIGHUP, store.force_flag())?;
    if !threads_allowed {
        return Ok(());
    }
    let (wake_r, wake_w) = std::os::unix::net::UnixStream::pair()?;
    wake_r.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(plumb_sys::signal::SIGHUP, wake_w)?;
    std::thread::Builder::new()
        .name("plumb-tls-reload".into())
        .spawn(move || {
            loop {
                let mut fds = [plumb_sys::PollFd::new(
                    std::os::fd::AsRawFd::as_raw_fd(&wake_r),
                    plumb_sys::events::READ,
                )];
                let _ = plumb_sys::poll(&mut fds, Some(super::certs::RELOAD_CHECK));
                let mut buf = [0u8; 16];
                while plumb_sys::read(&wake_r, &mut buf).is_ok_and(|n| n > 0) {}
                store.maybe_reload();
                std::thread::sleep(Duration::from_millis(10));
            }
        })?;
    Ok(())
}
