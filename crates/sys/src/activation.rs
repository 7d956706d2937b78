//! Socket activation's two unsafe steps: taking ownership of the listening descriptors a
//! service manager passed (sd_listen_fds(3): `LISTEN_FDS` of them, from descriptor 3 up), and
//! removing the variables from our environment so the programs we start do not see them.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first descriptor sd_listen_fds(3) passes.
pub const LISTEN_FDS_START: RawFd = 3;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes descriptors `3 .. 3 + count` as this process's own, each checked to be an open,
/// listening stream socket, and marks them close-on-exec. Works once per process: a second
/// call fails, so no descriptor can end up with two owners through it.
///
/// # Errors
/// A second call; a descriptor that is not open, not a socket, or not listening (`what`
/// says which).
pub fn take_listen_fds(count: usize) -> io::Result<Vec<OwnedFd>> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other("the passed sockets were taken already"));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let fd = LISTEN_FDS_START + i as RawFd;
        let mut listening: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `listening` and `len` are valid out-pointers of the size passed; a
        // descriptor that is not open or not a socket makes the call fail with EBADF/ENOTSOCK.
        syscall!(getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &mut len
        ))
        .map_err(|e| io::Error::new(e.kind(), format!("descriptor {fd}: {e}")))?;
        if listening == 0 {
            return Err(io::Error::other(format!(
                "descriptor {fd} is not a listening socket"
            )));
        }
        // SAFETY: plain descriptor number and flag.
        syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC))?;
        // SAFETY: the service manager passed this open descriptor to us (checked above to be a
        // listening socket), and TAKEN makes this the only place that ever wraps it.
        out.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(out)
}

/// Removes `name` from the environment, so children do not inherit it. Only while the
/// process has one thread (another could be reading the environment at the same moment).
///
/// # Errors
/// More than one thread is running.
pub fn unset_env(name: &str) -> io::Result<()> {
    let threads = crate::process::thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot change the environment with {threads} threads running"
        )));
    }
    // SAFETY: the process is single-threaded (checked just above), so nothing reads or writes
    // the environment concurrently.
    unsafe { std::env::remove_var(name) };
    Ok(())
}
