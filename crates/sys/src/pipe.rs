//! Pipes and raw descriptor I/O: `pipe2`, `read`, `write`, `writev`, `PIPE_BUF` and a pipe's
//! capacity.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `pipe2(O_CLOEXEC)`: returns (read end, write end).
///
/// # Errors
/// `EMFILE`/`ENFILE` when out of descriptors.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    pipe_flags(libc::O_CLOEXEC)
}

/// `pipe2` with explicit flags (`O_CLOEXEC`, `O_NONBLOCK`, `O_DIRECT`).
///
/// # Errors
/// `EMFILE`/`ENFILE` when out of descriptors, `EINVAL` for bad flags.
pub fn pipe_flags(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    syscall!(pipe2(fds.as_mut_ptr(), flags))?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `read(2)` on a raw descriptor, retried on `EINTR`.
///
/// # Errors
/// Whatever `read` reports (`EAGAIN` on an empty non-blocking descriptor).
pub fn read(fd: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        match syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// `write(2)` on a raw descriptor, retried on `EINTR`. One call: it may write less than asked.
///
/// # Errors
/// Whatever `write` reports (`EPIPE` when the reader is gone and SIGPIPE is ignored).
pub fn write(fd: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        match syscall!(write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len())) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// Writes all of `buf`, looping over short writes.
///
/// # Errors
/// The first failing `write`.
pub fn write_all(fd: &impl AsRawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// `writev(2)`, retried on `EINTR`: the head and body of a response in one call.
///
/// # Errors
/// Whatever `writev` reports.
pub fn writev(fd: &impl AsRawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
    loop {
        // SAFETY: IoSlice is ABI-compatible with iovec, and the slices outlive the call.
        match syscall!(writev(fd.as_raw_fd(), bufs.as_ptr().cast(), count)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// `PIPE_BUF`: writes of at most this many bytes to a pipe are atomic.
pub const PIPE_BUF: usize = libc::PIPE_BUF;

/// The capacity of the pipe behind `fd` (`F_GETPIPE_SZ`).
///
/// # Errors
/// `EBADF` when `fd` is not a pipe.
pub fn pipe_capacity(fd: &impl AsRawFd) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no pointer argument.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ)).map(|n| n as usize)
}
