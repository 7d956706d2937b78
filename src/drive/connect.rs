//! Non-blocking connects for [`plumb_proto::Action::Connect`] (the relay's upstream): resolve
//! the address, start a connect to each resolved address in turn without blocking the loop,
//! and learn the outcome from `SO_ERROR` once the socket turns writable.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::net::{Addr, Stream};

/// How long one connect attempt may take (the blocking driver's connect timeout).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One address to try.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(sa) => write!(f, "{sa}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connect in progress: the addresses not tried yet and the current attempt's deadline.
#[derive(Debug)]
pub(crate) struct Connecting {
    pub(crate) rest: VecDeque<Target>,
    pub(crate) deadline: Instant,
    /// The address being tried now.
    pub(crate) current: Option<Target>,
    /// What went wrong with the last address tried, for the message if every one fails.
    pub(crate) last_error: Option<String>,
}

impl Connecting {
    /// Resolves `addr` (getaddrinfo order).
    ///
    /// # Errors
    /// The resolver's failure.
    pub(crate) fn new(addr: &Addr, now: Instant) -> io::Result<Connecting> {
        let rest = match addr {
            Addr::Unix(p) => VecDeque::from([Target::Unix(p.clone())]),
            Addr::Tcp { .. } => addr.resolve()?.into_iter().map(Target::Tcp).collect(),
        };
        Ok(Connecting {
            rest,
            deadline: now + CONNECT_TIMEOUT,
            current: None,
            last_error: None,
        })
    }
}

/// Starts a non-blocking connect. Returns the socket and whether it is already connected
/// (UNIX sockets and some loopback connects finish at once).
///
/// # Errors
/// Socket creation and immediate connect failures (refused, unreachable; for a UNIX socket
/// also a full accept queue, which a non-blocking connect cannot wait out).
pub(crate) fn start(target: &Target) -> io::Result<(Stream, bool)> {
    let ty = Type::STREAM.nonblocking().cloexec();
    match target {
        Target::Tcp(sa) => {
            let sock = Socket::new(Domain::for_address(*sa), ty, None)?;
            let done = match sock.connect(&(*sa).into()) {
                Ok(()) => true,
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
                Err(e) => return Err(e),
            };
            // Relayed bytes are forwarded as they come: Nagle would only add delay.
            let _ = sock.set_nodelay(true);
            Ok((Stream::Tcp(TcpStream::from(sock)), done))
        }
        Target::Unix(path) => {
            let sock = Socket::new(Domain::UNIX, ty, None)?;
            match sock.connect(&SockAddr::unix(path)?) {
                Ok(()) => Ok((Stream::Unix(UnixStream::from(sock)), true)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                    e.kind(),
                    "the upstream's accept queue is full",
                )),
                Err(e) => Err(e),
            }
        }
    }
}

/// The outcome of a connect started by [`start`], once its socket reported writable or an
/// error: `None` while still in progress (a spurious wake-up).
pub(crate) fn outcome(stream: &impl std::os::fd::AsFd) -> Option<io::Result<()>> {
    let sock = SockRef::from(stream);
    match sock.take_error() {
        Ok(Some(e)) | Err(e) => Some(Err(e)),
        Ok(None) => match sock.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => None,
            Err(e) => Some(Err(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Waits (bounded) until the connect started on `s` has an outcome.
    fn settle(s: &Stream) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(r) = outcome(s) {
                return r;
            }
            assert!(Instant::now() < deadline, "connect did not settle");
            let mut fds = [plumb_sys::PollFd::new(
                std::os::fd::AsRawFd::as_raw_fd(s),
                plumb_sys::events::WRITE,
            )];
            let _ = plumb_sys::poll(&mut fds, Some(Duration::from_millis(50)));
        }
    }

    #[test]
    fn connects_and_reports_refusal() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::Tcp(l.local_addr().unwrap());
        let (s, _) = start(&target).unwrap();
        settle(&s).unwrap();

        // A port nobody listens on: refused, now or once the socket reports.
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = Target::Tcp(free.local_addr().unwrap());
        drop(free);
        let refused = start(&closed).and_then(|(s, _)| settle(&s));
        assert_eq!(
            refused.unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
    }

    #[test]
    fn resolves_every_address_in_order() {
        let c =
            Connecting::new(&Addr::parse("127.0.0.1:9", None).unwrap(), Instant::now()).unwrap();
        assert_eq!(c.rest.len(), 1);
        assert_eq!(c.rest[0].to_string(), "127.0.0.1:9");
        let u =
            Connecting::new(&Addr::parse("unix:/x.sock", None).unwrap(), Instant::now()).unwrap();
        assert_eq!(u.rest[0].to_string(), "unix:/x.sock");
    }
}
