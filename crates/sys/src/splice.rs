//! `splice(2)`: bytes between a socket and a pipe without passing through user space. A relay
//! moves each direction socket -> pipe -> socket, the pipe being the kernel buffer between the
//! two descriptors; the bytes never reach the process.

use std::io;
use std::os::fd::AsRawFd;

/// `splice(2)` of up to `len` bytes from `from` to `to`, one of which must be a pipe, with
/// `SPLICE_F_MOVE | SPLICE_F_NONBLOCK` (the pipe side never blocks; a socket side blocks
/// unless it is non-blocking itself). Returns the count moved, 0 at the end of `from`.
///
/// # Errors
/// `EAGAIN` when `from` is empty or `to` is full, `EINVAL` where the kernel cannot splice
/// these descriptors, `EPIPE`/`ECONNRESET` when a peer is gone.
pub fn splice(from: &impl AsRawFd, to: &impl AsRawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: null offsets mean "the descriptors' own positions" (required for pipes and
        // sockets); both descriptors are open for the call.
        match syscall!(splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// Sets the capacity of the pipe behind `fd` (`F_SETPIPE_SZ`); the kernel rounds it up to a
/// power of two pages. Returns the capacity it set.
///
/// # Errors
/// `EPERM` above `/proc/sys/fs/pipe-max-size` for an unprivileged process, `EBUSY` when the
/// pipe holds more than the new size.
pub fn set_pipe_capacity(fd: &impl AsRawFd, bytes: usize) -> io::Result<usize> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int argument, no pointer.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes)).map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn socket_to_pipe_to_socket() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        let (r, w) = crate::pipe_flags(libc::O_CLOEXEC | libc::O_NONBLOCK).unwrap();
        assert!(set_pipe_capacity(&w, 64 * 1024).unwrap() >= 64 * 1024);
        a.write_all(b"through the kernel").unwrap();
        assert_eq!(splice(&b, &w, 1 << 20).unwrap(), 18);
        assert_eq!(splice(&r, &c, 1 << 20).unwrap(), 18);
        let mut got = [0u8; 18];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"through the kernel");
        // Empty pipe, non-blocking: EAGAIN, not a hang.
        let e = splice(&r, &c, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // The end of the source reads as 0.
        drop(a);
        b.set_nonblocking(true).unwrap();
        assert_eq!(splice(&b, &w, 16).unwrap(), 0);
    }
}
