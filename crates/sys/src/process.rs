//! Child processes beyond fork/wait: a descriptor for a child's exit, so it can be waited
//! for with `poll`/`epoll` beside sockets.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libc::pid_t;

/// `pidfd_open(2)`: a descriptor that becomes readable when the process `pid` exits, so a
/// child's end can be waited for with `poll`/`epoll` beside sockets (no SIGCHLD handler, no
/// reaper thread). Linux 5.3 and later.
///
/// # Errors
/// `ESRCH` when there is no such process, `ENOSYS` on older kernels, `EMFILE`.
pub fn pidfd_open(pid: pid_t) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags (0) and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
