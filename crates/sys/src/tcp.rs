//! TCP socket options the `socket2` crate does not offer.

use std::io;
use std::os::fd::AsRawFd;

/// Sets `TCP_NOTSENT_LOWAT`: the socket reports writable, and accepts more data, only while
/// fewer than `bytes` are queued but not yet sent. Keeps a bulk sender from parking megabytes
/// in the send queue that the kernel then transmits from the receiver's ACK processing.
/// Set on a listening socket, accepted sockets inherit it (Linux).
///
/// # Errors
/// `EBADF`/`ENOTSOCK` for a descriptor that is not a TCP socket.
pub fn set_notsent_lowat(sock: &impl AsRawFd, bytes: u32) -> io::Result<()> {
    let value = bytes.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: the option value is a valid c_int that outlives the call, and its size is passed.
    syscall!(setsockopt(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        (&value as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
    ))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_to_tcp_sockets_only() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_notsent_lowat(&tcp, 64 * 1024).unwrap();
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(set_notsent_lowat(&unix, 64 * 1024).is_err());
    }
}
