//! Graceful shutdown, told with pipes.
//!
//! SIGINT/SIGTERM (and SIGCHLD, for the process models) write a byte to a self-pipe that the
//! accept loop polls, so a signal wakes it without races. Shutdown then proceeds in two
//! broadcasts, each the closing of a pipe's only write end: every holder of the read end, in
//! this process or in a forked child, sees it readable (EOF) at once.
//!
//! - **drain**: stop accepting; sessions finish what is in flight and close at a clean point;
//! - **hard**: the grace period is over; every connection still open is closed.
//!
//! A forked child must close its inherited copies of the write ends ([`Shutdown::in_child`]),
//! or the broadcast never reaches anyone: the classic forgotten `close` from the lecture.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plumb_sys::signal::{SIGCHLD, SIGHUP, SIGINT, SIGPIPE, SIGTERM};

/// The process-wide shutdown state; clones share it.
#[derive(Clone)]
pub struct Shutdown(Arc<Inner>);

struct Inner {
    wake_r: UnixStream,
    stop: Arc<AtomicBool>,
    child: Arc<AtomicBool>,
    drain_r: OwnedFd,
    drain_w: Mutex<Option<OwnedFd>>,
    hard_r: OwnedFd,
    hard_w: Mutex<Option<OwnedFd>>,
    grace: Duration,
    /// Say on stderr that the drain began (off with `-q`).
    announce: AtomicBool,
}

impl Shutdown {
    /// Installs the signal handlers. Call once, early, while single-threaded. Also ignores
    /// SIGPIPE, so a write to a closed peer is an `EPIPE` error instead of death.
    ///
    /// # Errors
    /// Out of descriptors, or a signal that cannot be caught.
    pub fn install(grace: Duration) -> io::Result<Shutdown> {
        Shutdown::install_with(grace, true)
    }

    /// [`Shutdown::install`], with SIGHUP a stop or not (a TLS server reloads its
    /// certificates on SIGHUP instead: the TLS module's reload).
    ///
    /// # Errors
    /// As for [`Shutdown::install`].
    pub fn install_with(grace: Duration, hup_stops: bool) -> io::Result<Shutdown> {
        plumb_sys::ignore_signal(SIGPIPE)?;
        let (wake_r, wake_w) = UnixStream::pair()?;
        wake_r.set_nonblocking(true)?;
        wake_w.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let child = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            if sig == SIGHUP && !hup_stops {
                continue;
            }
            signal_hook::flag::register(sig, Arc::clone(&stop))?;
            signal_hook::low_level::pipe::register(sig, wake_w.try_clone()?)?;
        }
        signal_hook::flag::register(SIGCHLD, Arc::clone(&child))?;
        signal_hook::low_level::pipe::register(SIGCHLD, wake_w)?;
        let (drain_r, drain_w) = plumb_sys::pipe()?;
        let (hard_r, hard_w) = plumb_sys::pipe()?;
        Ok(Shutdown(Arc::new(Inner {
            wake_r,
            stop,
            child,
            drain_r,
            drain_w: Mutex::new(Some(drain_w)),
            hard_r,
            hard_w: Mutex::new(Some(hard_w)),
            grace,
            announce: AtomicBool::new(true),
        })))
    }

    /// The descriptor an accept loop polls to wake on a signal.
    pub fn wake_fd(&self) -> RawFd {
        self.0.wake_r.as_raw_fd()
    }

    /// Empties the wake pipe; returns whether a stop was requested.
    pub fn check(&self) -> bool {
        let mut buf = [0u8; 64];
        while plumb_sys::read(&self.0.wake_r, &mut buf).is_ok_and(|n| n > 0) {}
        self.stop_requested()
    }

    pub fn stop_requested(&self) -> bool {
        self.0.stop.load(Ordering::SeqCst)
    }

    /// Asks for a stop as if a signal had arrived (used by models that shut down for other
    /// reasons, and by tests).
    pub fn request_stop(&self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }

    /// Whether SIGCHLD arrived since the last call.
    pub fn take_child_exited(&self) -> bool {
        self.0.child.swap(false, Ordering::SeqCst)
    }

    /// How long open connections may run on after the drain starts.
    pub fn grace(&self) -> Duration {
        self.0.grace
    }

    /// Readable (EOF) once the drain has begun.
    pub fn drain_fd(&self) -> RawFd {
        self.0.drain_r.as_raw_fd()
    }

    /// Readable (EOF) once the grace period is over.
    pub fn hard_fd(&self) -> RawFd {
        self.0.hard_r.as_raw_fd()
    }

    /// Whether [`Shutdown::begin_drain`] prints its line (`-q` turns it off).
    pub fn set_announce(&self, yes: bool) {
        self.0.announce.store(yes, Ordering::SeqCst);
    }

    /// Broadcasts the drain; returns the hard deadline. The first call after a signal says
    /// so in one line and re-arms the stop flag, so that a second SIGINT/SIGTERM during the
    /// grace period can be told apart ([`Shutdown::stop_again`]) and end it at once.
    pub fn begin_drain(&self) -> Instant {
        let first = lock(&self.0.drain_w).take().is_some();
        let by_signal = first && self.0.stop.swap(false, Ordering::SeqCst);
        if by_signal && self.0.announce.load(Ordering::SeqCst) && !self.0.grace.is_zero() {
            eprintln!(
                "plumb: draining: open connections may finish for up to {} s (signal again to stop now)",
                format_secs(self.0.grace)
            );
        }
        Instant::now() + self.0.grace
    }

    /// Whether a stop signal came again after the drain began (empties the wake pipe).
    pub fn stop_again(&self) -> bool {
        lock(&self.0.drain_w).is_none() && self.check()
    }

    /// Broadcasts the hard stop.
    pub fn hard_stop(&self) {
        drop(lock(&self.0.drain_w).take());
        drop(lock(&self.0.hard_w).take());
    }

    /// In a freshly forked child: drop the inherited write ends (so the parent's broadcasts
    /// reach us), take SIGTERM's default action (the parent's last resort after the grace
    /// period) and ignore SIGINT (a Ctrl-C reaches the whole process group; the parent
    /// coordinates the shutdown). Dies with the parent.
    pub fn in_child(&self) {
        drop(lock(&self.0.drain_w).take());
        drop(lock(&self.0.hard_w).take());
        let _ = plumb_sys::default_signal(SIGTERM);
        let _ = plumb_sys::default_signal(SIGCHLD);
        let _ = plumb_sys::ignore_signal(SIGINT);
        let _ = plumb_sys::ignore_signal(SIGHUP);
        let _ = plumb_sys::die_with_parent(plumb_sys::signal::SIGKILL);
    }
}

/// Seconds as a user wrote them: "5", "0.5".
fn format_secs(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a broadcast descriptor (drain or hard) has fired, without blocking.
pub fn fired(fd: RawFd) -> bool {
    let mut p = [plumb_sys::PollFd::new(fd, plumb_sys::events::READ)];
    plumb_sys::poll(&mut p, Some(Duration::ZERO)).is_ok_and(|n| n > 0)
}
