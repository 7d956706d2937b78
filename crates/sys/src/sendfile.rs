//! `sendfile(2)`: file bytes to a socket (or pipe) without passing through user space.

use std::io;
use std::os::fd::AsRawFd;

/// `sendfile(2)`: copies up to `len` bytes of `file` from `offset` to `sock` inside the
/// kernel, advancing `offset`. Returns how many bytes went out (0 at end of file).
///
/// # Errors
/// `EAGAIN` on a non-blocking socket (or a send timeout), `EPIPE`/`ECONNRESET` when the
/// peer has gone.
pub fn sendfile(
    sock: &impl AsRawFd,
    file: &impl AsRawFd,
    offset: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut off = *offset as libc::off_t;
    // The kernel caps one call at 0x7ffff000 bytes anyway.
    let len = len.min(0x7fff_f000);
    loop {
        // SAFETY: `off` is a valid in/out pointer; both descriptors are open for the call.
        match syscall!(sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, len)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => {
                *offset = off as u64;
                return Ok(n as usize);
            }
        }
    }
}
