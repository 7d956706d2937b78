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
    set_tcp_int(sock, libc::TCP_NOTSENT_LOWAT, bytes)
}

/// Sets `TCP_DEFER_ACCEPT`: the kernel finishes a connection for `accept` only once its
/// first data has arrived (or after about `secs`), so a server whose clients speak first is
/// woken once per connection, with the request already readable, instead of once for the
/// connection and again for its data. Set on a listening socket.
///
/// # Errors
/// `EBADF`/`ENOTSOCK`/`EOPNOTSUPP` for a descriptor that is not a TCP socket.
pub fn set_defer_accept(sock: &impl AsRawFd, secs: u32) -> io::Result<()> {
    set_tcp_int(sock, libc::TCP_DEFER_ACCEPT, secs)
}

/// `setsockopt(IPPROTO_TCP, option, value)` for an integer option (capped at `i32::MAX`).
fn set_tcp_int(sock: &impl AsRawFd, option: libc::c_int, value: u32) -> io::Result<()> {
    let value = value.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: the option value is a valid c_int that outlives the call, and its size is passed.
    syscall!(setsockopt(
        sock.as_raw_fd(),
        libc::IPPROTO_TCP,
        option,
        (&value as *const libc::c_int).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
    ))
    .map(drop)
}

/// `send(2)` with `MSG_MORE`: queue the bytes, but let the kernel hold back a last partial
/// segment, as `TCP_CORK` does, until a later send without the flag, a shutdown or a close
/// releases it. Sending the last answer of a connection this way lets the FIN of the close
/// that follows leave in the same segment as the data: one packet, one wakeup of the client,
/// instead of two. Never raises SIGPIPE.
///
/// # Errors
/// Whatever `send` reports (`EAGAIN` on a full non-blocking socket, `EPIPE`, ...).
pub fn send_more(sock: &impl AsRawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call.
        match syscall!(send(
            sock.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// Number of bytes queued in a socket's send buffer not yet acknowledged (`SIOCOUTQ`).
///
/// # Errors
/// `EBADF`/`ENOTTY` when `fd` is not a socket.
pub fn unsent_bytes(fd: &impl AsRawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int to the given pointer.
    syscall!(ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n))?;
    Ok(n as usize)
}

/// `recv(MSG_DONTWAIT)`: reads what is there without blocking, whatever the socket's mode
/// (`EAGAIN` when nothing is), so one socket can have blocking writes (with a send timeout)
/// and non-blocking reads.
///
/// # Errors
/// `WouldBlock` when nothing is there; `ECONNRESET` and the like.
pub fn recv_now(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call.
        match syscall!(recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(|n| n as usize),
        }
    }
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

    #[test]
    fn held_back_data_leaves_with_the_close_and_deferred_accepts_bring_data() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_defer_accept(&l, 1).unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        client.write_all(b"GET").unwrap();
        // Handed over because data came: the request is already readable.
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut b = [0u8; 8];
        assert_eq!((&server).read(&mut b).unwrap(), 3);
        server.set_nonblocking(false).unwrap();
        assert_eq!(send_more(&server, b"answer").unwrap(), 6);
        drop(server); // the close releases what MSG_MORE held back
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"answer");
    }
}
