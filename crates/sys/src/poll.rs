//! `poll(2)` and `O_NONBLOCK`: the blocking models' way to wait on a few descriptors.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Readiness interest and result for [`poll`].
pub mod events {
    pub const READ: i16 = libc::POLLIN;
    /// The peer shut down its write side (`POLLRDHUP`), seen without reading the data before.
    pub const PEER_SHUT: i16 = libc::POLLRDHUP;
    pub const WRITE: i16 = libc::POLLOUT;
    /// Set in results: error, hang-up or invalid descriptor.
    pub const HUP: i16 = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    /// Set in results: the peer hung up (reads return what is left, then EOF).
    pub const HANGUP: i16 = libc::POLLHUP;
    /// Set in results: an error is pending, or the descriptor is not open.
    pub const ERROR: i16 = libc::POLLERR | libc::POLLNVAL;
}

/// One entry for [`poll`]: a descriptor, what to wait for, and (after the call) what happened.
#[derive(Debug, Clone, Copy)]
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    pub fn new(fd: RawFd, interest: i16) -> Self {
        PollFd(libc::pollfd {
            fd,
            events: interest,
            revents: 0,
        })
    }
    /// What happened to this descriptor in the last `poll`.
    pub fn revents(&self) -> i16 {
        self.0.revents
    }
    /// Readable, or hung up / errored (a read will then not block).
    pub fn ready(&self) -> bool {
        self.0.revents != 0
    }
}

/// `poll(2)` with an optional timeout (None waits forever). Returns the number of ready
/// entries; 0 on timeout. `EINTR` is returned as `Ok(0)` so callers re-check their state.
///
/// # Errors
/// `EINVAL`/`ENOMEM` from the kernel.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up so a 0.4 ms deadline does not become a busy loop of 0 ms polls.
        Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: PollFd is repr(transparent) over pollfd, and the slice is valid for the call.
    match syscall!(poll(fds.as_mut_ptr().cast(), fds.len() as libc::nfds_t, ms)) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Sets or clears `O_NONBLOCK`.
///
/// # Errors
/// `EBADF` for a closed descriptor.
pub fn set_nonblocking(fd: &impl AsRawFd, on: bool) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller owns.
    let flags = syscall!(fcntl(fd, libc::F_GETFL))?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        syscall!(fcntl(fd, libc::F_SETFL, new))?;
    }
    Ok(())
}
