//! The event loops' listening sockets: each loop gets its own (`SO_REUSEPORT` for TCP, a
//! shared descriptor for UNIX), accepts non-blocking close-on-exec connections from it, and
//! sets `TCP_NODELAY` and `TCP_NOTSENT_LOWAT` once on it for every connection it will accept.

use std::io;
use std::net::SocketAddr;

use mio::{Interest, Registry, Token};

use crate::net::{Listener, Stream};

/// `TCP_NOTSENT_LOWAT` for accepted TCP sockets (measured: 64 KiB beat 128 KiB, 256 KiB, 1 MiB
/// and the default on the 10 MiB benchmark, and left small responses unchanged).
const NOTSENT_LOWAT: u32 = 64 * 1024;

/// One loop's listening sockets: a dup of each shared listener for the first loop, a fresh
/// `SO_REUSEPORT` socket on the same address for the others (UNIX: a dup for all).
/// `defer`: the service's clients speak first, so a fresh clone gets `TCP_DEFER_ACCEPT` like
/// the shared listeners it copies (see [`Listener::defer_accept`]).
pub(super) fn loop_listeners(
    listeners: &[Listener],
    index: usize,
    defer: bool,
) -> io::Result<Vec<LoopListener>> {
    let mut out = Vec::with_capacity(listeners.len());
    for l in listeners {
        let own = match l {
            Listener::Unix(u, _) => {
                LoopListener::Unix(mio::net::UnixListener::from_std(u.try_clone()?))
            }
            // A passed listener without SO_REUSEPORT (socket activation) is shared too.
            Listener::Tcp(t) if index == 0 || !l.reuse_port_set() => {
                LoopListener::Tcp(mio::net::TcpListener::from_std(t.try_clone()?))
            }
            Listener::Tcp(_) => match l.reuse_port_clone().and_then(|clone| {
                if defer {
                    clone.defer_accept()?;
                }
                Ok(clone)
            }) {
                Ok(Listener::Tcp(t)) => {
                    t.set_nonblocking(true)?;
                    LoopListener::Tcp(mio::net::TcpListener::from_std(t))
                }
                Ok(Listener::Unix(..)) => {
                    return Err(io::Error::other("a TCP listener cloned as UNIX"));
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "cannot open a listener on {} for event loop {}: {e}",
                            l.local_addr(),
                            index + 1
                        ),
                    ));
                }
            },
        };
        out.push(own);
    }
    Ok(out)
}

pub(super) enum LoopListener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

impl LoopListener {
    /// Accepts one connection (already non-blocking and close-on-exec).
    pub(super) fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            LoopListener::Tcp(l) => {
                // TCP_NODELAY comes from the listener (see `register`).
                let (s, peer) = l.accept()?;
                Ok((Stream::Tcp(std::net::TcpStream::from(s)), Some(peer)))
            }
            LoopListener::Unix(l) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(std::os::unix::net::UnixStream::from(s)), None))
            }
        }
    }

    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            LoopListener::Tcp(l) => {
                // Responses are written whole, so Nagle would only delay them. Accepted
                // sockets inherit the option on Linux: one setsockopt per loop, not one per
                // connection.
                socket2::SockRef::from(&*l).set_nodelay(true)?;
                // Keep at most this much queued unsent per socket: a bulk sendfile otherwise
                // parks megabytes in the send queue, and the kernel transmits them from the
                // client's ACK processing on the client's CPU (10 MiB benchmark: wrk's core
                // saturated, 0.8x nginx; with it, 1.2x). Also inherited by accepted sockets.
                plumb_sys::tcp::set_notsent_lowat(&*l, NOTSENT_LOWAT)?;
                registry.register(l, token, Interest::READABLE)
            }
            LoopListener::Unix(l) => registry.register(l, token, Interest::READABLE),
        }
    }
}
