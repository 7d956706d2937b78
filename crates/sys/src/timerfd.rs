//! `timerfd`: a descriptor that becomes readable when a deadline passes, with nanosecond
//! resolution, so an epoll loop can wake for a deadline finer than `epoll_wait`'s
//! milliseconds (`plumb bench --rate` sends each request at its scheduled instant).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A monotonic-clock timer descriptor (non-blocking, close-on-exec).
#[derive(Debug)]
pub struct TimerFd(OwnedFd);

impl TimerFd {
    /// `timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)`.
    ///
    /// # Errors
    /// `EMFILE`/`ENFILE` when out of descriptors.
    pub fn new() -> io::Result<TimerFd> {
        let fd = syscall!(timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC
        ))?;
        // SAFETY: timerfd_create succeeded, so `fd` is open and owned by nobody else.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Arms the timer to fire once, `after` from now (at least one nanosecond: a zero value
    /// would disarm it). Re-arming resets the expiry count, so the descriptor is not readable
    /// again until the new deadline.
    ///
    /// # Errors
    /// `EBADF` only.
    pub fn fire_after(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid in-pointer; a null old-value pointer is allowed.
        syscall!(timerfd_settime(
            self.0.as_raw_fd(),
            0,
            &spec,
            std::ptr::null_mut()
        ))
        .map(drop)
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PollFd, events, poll};

    #[test]
    fn fires_after_the_deadline_and_not_before() {
        let t = TimerFd::new().unwrap();
        t.fire_after(Duration::from_millis(20)).unwrap();
        let mut fds = [PollFd::new(t.as_raw_fd(), events::READ)];
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 0);
        let start = std::time::Instant::now();
        assert_eq!(poll(&mut fds, Some(Duration::from_secs(5))).unwrap(), 1);
        assert!(start.elapsed() >= Duration::from_millis(15));
    }
}
