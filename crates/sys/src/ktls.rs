//! Kernel TLS: the `tls` upper-layer protocol on a TCP socket (`setsockopt(SOL_TCP, TCP_ULP,
//! "tls")`), which must be attached before keys can be handed over with `TLS_TX`/`TLS_RX`.
//! Kernels without the `tls` module answer `ENOENT`.

use std::io;
use std::os::fd::AsRawFd;

/// `TCP_ULP` (linux/tcp.h).
const TCP_ULP: libc::c_int = 31;

/// Attaches the `tls` upper layer to a connected TCP socket. Until keys are set the socket
/// carries bytes as before.
///
/// # Errors
/// `ENOENT` where the kernel has no `tls` module; `ENOTCONN` before the connection is up;
/// `EEXIST` when an upper layer is already attached.
pub fn attach_ulp(sock: &impl AsRawFd) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: the option value is a valid byte buffer that outlives the call, and its length
    // is passed.
    syscall!(setsockopt(
        sock.as_raw_fd(),
        libc::SOL_TCP,
        TCP_ULP,
        name.as_ptr().cast(),
        name.len() as libc::socklen_t,
    ))
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_refused_or_the_module_is_missing() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = attach_ulp(&l).unwrap_err();
        // No tls module: ENOENT; with it, a socket that is not connected: ENOTCONN.
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTCONN)),
            "{e}"
        );
    }
}
