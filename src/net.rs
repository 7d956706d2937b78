//! Addresses, listeners and streams: one abstraction over TCP (v4/v6) and UNIX stream
//! sockets, so every service and model works the same "regardless of the location of the
//! other end".
//!
//! Address forms: `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080` (any name, resolved with
//! getaddrinfo; connect tries every returned address in order), `:8080` (all IPv4
//! interfaces), `8080` (same), `0.0.0.0:8080`, `[::]:8080`, and `unix:/path/to.sock`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// A parsed, not yet resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A host (name or literal, IPv6 without brackets) and a port.
    Tcp { host: String, port: u16 },
    /// A UNIX stream socket path.
    Unix(PathBuf),
}

/// Why an address string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrError(String);

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddrError {}

impl Addr {
    /// Parses an address. `default_port` fills in a missing port (`0.0.0.0`, `[::]`,
    /// `localhost`); without it a port is required.
    ///
    /// # Errors
    /// A malformed address, with the reason.
    pub fn parse(s: &str, default_port: Option<u16>) -> Result<Addr, AddrError> {
        let bad = |why: &str| AddrError(format!("invalid address '{s}': {why}"));
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty UNIX socket path"));
            }
            if path.len() >= 108 {
                return Err(bad("UNIX socket path longer than 107 bytes"));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(addr) = address_in_url(s) {
            return Err(bad(&format!(
                "a URL where an address is expected; use {addr}"
            )));
        }
        let parse_port = |p: &str| -> Result<u16, AddrError> {
            p.parse::<u16>()
                .map_err(|_| bad("port must be a number from 0 to 65535"))
        };
        let need_port = || default_port.ok_or_else(|| bad("missing port (HOST:PORT)"));
        if let Some(rest) = s.strip_prefix('[') {
            let (host, tail) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address inside [ ]"));
            }
            let port = match tail {
                "" => need_port()?,
                t => parse_port(
                    t.strip_prefix(':')
                        .ok_or_else(|| bad("expected ':' after ']'"))?,
                )?,
            };
            return Ok(Addr::Tcp {
                host: host.to_string(),
                port,
            });
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Addr::Tcp {
                host: "0.0.0.0".into(),
                port: parse_port(s)?,
            });
        }
        match s.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                Err(bad("IPv6 addresses need brackets, as in [::1]:8080"))
            }
            Some((host, port)) => {
                let host = if host.is_empty() { "0.0.0.0" } else { host };
                check_host(host).map_err(&bad)?;
                Ok(Addr::Tcp {
                    host: host.to_string(),
                    port: parse_port(port)?,
                })
            }
            None => {
                check_host(s).map_err(bad)?;
                Ok(Addr::Tcp {
                    host: s.to_string(),
                    port: need_port()?,
                })
            }
        }
    }

    /// Resolves a TCP address with getaddrinfo (every result, in the order returned).
    ///
    /// # Errors
    /// The resolver's failure, or no address at all.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match self {
            Addr::Unix(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a UNIX path has no IP address",
            )),
            Addr::Tcp { host, port } => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve '{host}': {e}")))?
                    .collect();
                if addrs.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("'{host}' has no address"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

/// The `HOST:PORT` a URL such as `http://127.0.0.1:8080/` names (the scheme's port when it
/// has none), so the error can say what to type instead; `None` when `s` is no URL.
fn address_in_url(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if authority.is_empty() {
        return Some("HOST:PORT".into());
    }
    if has_port {
        return Some(authority.to_string());
    }
    let port = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => 443,
        _ => 80,
    };
    Some(format!("{authority}:{port}"))
}

fn check_host(host: &str) -> Result<(), &'static str> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_';
    if host.bytes().all(ok) {
        Ok(())
    } else {
        Err("bad character in host name")
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Addr::Tcp { host, port } => write!(f, "{host}:{port}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What a server prints on stderr before each listening address; callers that start plumb
/// as a child (`compare`, the tests) read the address back with [`parse_listening_line`].
pub const LISTENING_PREFIX: &str = "plumb: listening on ";

/// The address from a `plumb: listening on ADDR (model M)` line, or `None` for any other
/// line.
pub fn parse_listening_line(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(LISTENING_PREFIX)?;
    Some(rest.split_once(" (").map_or(rest, |(addr, _)| addr))
}

/// A bound, listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    /// The path is removed when the listener is dropped, if it is still our socket.
    Unix(UnixListener, UnixPath),
}

/// The file of a bound UNIX socket, removed on drop (only by the process that bound it).
#[derive(Debug)]
pub struct UnixPath {
    path: PathBuf,
    owner: libc::pid_t,
    ino: u64,
}

impl Drop for UnixPath {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        // Forked children inherit the listener; only the binder removes the file, and only
        // if nobody has replaced it since.
        if plumb_sys::getpid() == self.owner
            && std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// How long `TCP_DEFER_ACCEPT` holds a connection that sends nothing before handing it over
/// anyway.
pub const DEFER_ACCEPT_SECS: u32 = 1;

/// Default listen backlog: large enough that clients waiting for a busy iterative or pool
/// server queue in the kernel instead of being refused.
pub const BACKLOG: i32 = 1024;

/// How a listener is bound.
#[derive(Debug, Clone, Copy, Default)]
pub struct BindOptions {
    /// Set SO_REUSEPORT so several sockets (one per event loop) share the port.
    pub reuse_port: bool,
}

impl Listener {
    /// Binds and listens. TCP names resolve with getaddrinfo and the first address that binds
    /// wins. A UNIX path whose socket file is stale (nobody accepts on it) is replaced; a live
    /// one is an error. With `reuse_port` the port is first claimed (see [`claim_port`]), so
    /// a port another server holds is refused even when that server uses SO_REUSEPORT too.
    ///
    /// # Errors
    /// Resolution, bind (address in use, permission denied) and listen failures, in words
    /// and without the address (the caller names it once).
    pub fn bind(addr: &Addr, opts: BindOptions) -> io::Result<Listener> {
        match addr {
            Addr::Tcp { .. } => {
                let mut last = None;
                for sa in addr.resolve()? {
                    let claimed = if opts.reuse_port {
                        claim_port(sa)
                    } else {
                        Ok(sa)
                    };
                    match claimed.and_then(|sa| bind_tcp(sa, opts)) {
                        Ok(l) => return Ok(Listener::Tcp(l)),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| io::ErrorKind::AddrNotAvailable.into()))
            }
            Addr::Unix(path) => bind_unix(path),
        }
    }

    /// Accepts one connection (blocking unless the socket is non-blocking).
    ///
    /// # Errors
    /// `WouldBlock` on a non-blocking listener with nothing pending, `EMFILE` when out of
    /// descriptors, `ECONNABORTED` for a client that left the queue.
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                Ok((Stream::Tcp(s), peer.to_string()))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(s), "unix".to_string()))
            }
        }
    }

    /// The bound address, with the real port when port 0 was asked for.
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into()),
            Listener::Unix(_, p) => format!("unix:{}", p.path.display()),
        }
    }

    /// The bound IP address and port of a TCP listener.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// The socket file of a UNIX listener.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Listener::Tcp(_) => None,
            Listener::Unix(_, p) => Some(&p.path),
        }
    }

    /// # Errors
    /// `EBADF` only.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(on),
            Listener::Unix(l, _) => l.set_nonblocking(on),
        }
    }

    /// Lets the kernel hand over a TCP connection only once its first data has arrived
    /// (`TCP_DEFER_ACCEPT`, about one second at most); for services whose clients speak
    /// first. Nothing to do for UNIX sockets.
    ///
    /// # Errors
    /// `EBADF` only.
    pub fn defer_accept(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => plumb_sys::tcp::set_defer_accept(l, DEFER_ACCEPT_SECS),
            Listener::Unix(..) => Ok(()),
        }
    }

    /// A listener a service manager passed (socket activation): a listening stream socket,
    /// TCP or UNIX. The socket file of a UNIX one is the manager's: never removed by us.
    ///
    /// # Errors
    /// A datagram socket, or an address family other than IPv4, IPv6 and UNIX.
    pub fn from_inherited(fd: std::os::fd::OwnedFd) -> io::Result<Listener> {
        let sock = Socket::from(fd);
        if sock.r#type()? != Type::STREAM {
            return Err(io::Error::other("not a stream socket"));
        }
        let domain = sock.domain()?;
        if domain == Domain::UNIX {
            let l: UnixListener = sock.into();
            let path = l
                .local_addr()?
                .as_pathname()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            // Owner 0 is never our pid: the file stays when we exit.
            return Ok(Listener::Unix(
                l,
                UnixPath {
                    path,
                    owner: 0,
                    ino: 0,
                },
            ));
        }
        if domain == Domain::IPV4 || domain == Domain::IPV6 {
            return Ok(Listener::Tcp(sock.into()));
        }
        Err(io::Error::other("neither a TCP nor a UNIX socket"))
    }

    /// Whether a TCP listener has SO_REUSEPORT (ours do under the event model; a passed one
    /// may not, and then the event loops share it instead of opening their own).
    pub fn reuse_port_set(&self) -> bool {
        match self {
            Listener::Tcp(l) => socket2::SockRef::from(l).reuse_port().unwrap_or(false),
            Listener::Unix(..) => false,
        }
    }

    /// Whether this is a UNIX socket listener (no SO_REUSEPORT sharing).
    pub fn is_unix(&self) -> bool {
        matches!(self, Listener::Unix(..))
    }

    /// A second socket on the same address with SO_REUSEPORT (for per-loop listeners).
    ///
    /// # Errors
    /// `EADDRINUSE` when the first socket was not bound with `reuse_port`.
    pub fn reuse_port_clone(&self) -> io::Result<Listener> {
        match self {
            Listener::Tcp(l) => Ok(Listener::Tcp(bind_tcp(
                l.local_addr()?,
                BindOptions { reuse_port: true },
            )?)),
            Listener::Unix(..) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SO_REUSEPORT does not apply to UNIX sockets",
            )),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }
}

/// Checks that nobody holds `sa` by binding it once *without* SO_REUSEPORT, and returns it
/// with the port that bind got (the real one when port 0 was asked for).
///
/// SO_REUSEPORT lets every socket that sets it (same user) bind a port together, so a second
/// server with it would silently share a port the first one holds, the kernel splitting
/// connections between them. The event model needs the option for its own loops, and Linux
/// refuses a SO_REUSEPORT socket beside one without it, so the first real socket cannot
/// simply go without. This probe sets only SO_REUSEADDR (a connection in TIME_WAIT does not
/// count as holding the port) and fails with "address in use" when any socket listens there,
/// SO_REUSEPORT or not. It is closed before the real bind: in the microseconds between, a
/// second plumb (of the same user, also with SO_REUSEPORT) could still slip in beside us;
/// anyone else, and anyone later, is refused.
fn claim_port(sa: SocketAddr) -> io::Result<SocketAddr> {
    let probe = tcp_socket(sa, BindOptions { reuse_port: false })?;
    probe.bind(&sa.into()).map_err(in_words)?;
    let bound = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("a TCP socket without an IP address"))?;
    Ok(SocketAddr::new(sa.ip(), bound.port()))
}

fn tcp_socket(sa: SocketAddr, opts: BindOptions) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(sa), Type::STREAM.cloexec(), None)?;
    sock.set_reuse_address(true)?;
    if opts.reuse_port {
        sock.set_reuse_port(true)?;
    }
    if sa.is_ipv6() {
        // `[::]` means IPv6 only, so `0.0.0.0` can be bound beside it on the same port.
        sock.set_only_v6(true)?;
    }
    Ok(sock)
}

fn bind_tcp(sa: SocketAddr, opts: BindOptions) -> io::Result<TcpListener> {
    let sock = tcp_socket(sa, opts)?;
    sock.bind(&sa.into()).map_err(in_words)?;
    sock.listen(BACKLOG).map_err(in_words)?;
    Ok(sock.into())
}

fn bind_unix(path: &Path) -> io::Result<Listener> {
    use std::os::unix::fs::MetadataExt;
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let meta = std::fs::symlink_metadata(path).map_err(in_words)?;
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ));
            }
            match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "address in use (a server is listening on it)",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // Stale: left behind by a server that died without cleaning up.
                    std::fs::remove_file(path).map_err(in_words)?;
                    UnixListener::bind(path).map_err(in_words)?
                }
                Err(e) => return Err(in_words(e)),
            }
        }
        Err(e) => return Err(in_words(e)),
    };
    let ino = std::fs::symlink_metadata(path)
        .map(|m| m.ino())
        .unwrap_or(0);
    // std's bind uses a backlog of 128 on older versions; raise it like TCP's.
    // SAFETY-free: listen() again on a listening socket only changes the backlog.
    let sock = socket2::SockRef::from(&listener);
    sock.listen(BACKLOG)?;
    Ok(Listener::Unix(
        listener,
        UnixPath {
            path: path.to_path_buf(),
            owner: plumb_sys::getpid(),
            ino,
        },
    ))
}

/// An OS error in words, the way every other message reads: "no such file or directory",
/// not "No such file or directory (os error 2)".
pub fn words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => return "address in use".into(),
        io::ErrorKind::PermissionDenied => return "permission denied".into(),
        io::ErrorKind::AddrNotAvailable => return "address not available on this machine".into(),
        _ => {}
    }
    let s = e.to_string();
    let s = match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => &s[..i],
        _ => &s,
    };
    let mut chars = s.chars();
    match chars.next() {
        // Only the OS's own capital ("No such file"), not an acronym ("TLS ...").
        Some(c) if c.is_ascii_uppercase() && chars.next().is_some_and(|n| n.is_lowercase()) => {
            c.to_ascii_lowercase().to_string() + &s[1..]
        }
        _ => s.to_string(),
    }
}

/// The error in words, keeping its kind.
fn in_words(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), words(&e))
}

/// Prefixes an OS error (in words) with the address it concerns, keeping its kind.
fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {}", words(&e)))
}

/// The two ends of an accepted connection, for a program that is told who it talks to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Our address (TCP).
    pub local: Option<SocketAddr>,
    /// The client's address (TCP).
    pub remote: Option<SocketAddr>,
    /// The client process's (pid, uid, gid) (UNIX).
    pub cred: Option<(u32, u32, u32)>,
}

/// A connected stream socket, TCP or UNIX.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `addr`, trying every resolved address in order (getaddrinfo semantics);
    /// the error of the last attempt is returned when all fail.
    ///
    /// # Errors
    /// Resolution failure or the last connect error, with the address in the message.
    pub fn connect(addr: &Addr, timeout: Option<Duration>) -> io::Result<Stream> {
        match addr {
            Addr::Unix(p) => UnixStream::connect(p)
                .map(Stream::Unix)
                .map_err(|e| annotate(e, &addr.to_string())),
            Addr::Tcp { .. } => {
                connect_any(&addr.resolve()?, timeout).map_err(|e| annotate(e, &addr.to_string()))
            }
        }
    }

    /// # Errors
    /// `ENOTCONN` when the peer is already gone.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    /// Writes a prefix of `buf`, like `write`. `last` says the connection ends after these
    /// bytes: on TCP they then go with `MSG_MORE`, so the FIN of the coming close or
    /// shutdown leaves in the same segment as the last data.
    ///
    /// # Errors
    /// As for `write`.
    pub fn send(&mut self, buf: &[u8], last: bool) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) if last => plumb_sys::tcp::send_more(s, buf),
            _ => self.write(buf),
        }
    }

    /// # Errors
    /// `EBADF` only.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// Sets TCP_NODELAY (responses are written whole, so Nagle only adds delay).
    ///
    /// # Errors
    /// `EBADF` only.
    pub fn set_nodelay(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(true),
            Stream::Unix(_) => Ok(()),
        }
    }

    /// A send timeout: a write that makes no progress for this long fails with `WouldBlock`.
    ///
    /// # Errors
    /// `EBADF` only.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }

    /// Who is at each end of the connection: the addresses of a TCP connection, the peer
    /// process of a UNIX one (`SO_PEERCRED`). A few system calls: asked only by a service
    /// that needs them (`plumb exec`'s environment).
    pub fn peer_info(&self) -> PeerInfo {
        match self {
            Stream::Tcp(s) => PeerInfo {
                local: s.local_addr().ok(),
                remote: s.peer_addr().ok(),
                cred: None,
            },
            Stream::Unix(s) => PeerInfo {
                local: None,
                remote: None,
                cred: plumb_sys::peer_cred(s.as_raw_fd()).ok(),
            },
        }
    }

    /// Makes an independent handle to the same socket.
    ///
    /// # Errors
    /// `EMFILE` when out of descriptors.
    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
        }
    }
}

fn connect_any(addrs: &[SocketAddr], timeout: Option<Duration>) -> io::Result<Stream> {
    let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
    for sa in addrs {
        let r = match timeout {
            Some(t) => TcpStream::connect_timeout(sa, t),
            None => TcpStream::connect(sa),
        };
        match r {
            Ok(s) => return Ok(Stream::Tcp(s)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let tcp = |h: &str, p| Addr::Tcp {
            host: h.into(),
            port: p,
        };
        let cases: &[(&str, Addr)] = &[
            ("127.0.0.1:8080", tcp("127.0.0.1", 8080)),
            ("[::1]:80", tcp("::1", 80)),
            ("[::]:0", tcp("::", 0)),
            ("localhost:9", tcp("localhost", 9)),
            (":8080", tcp("0.0.0.0", 8080)),
            ("8080", tcp("0.0.0.0", 8080)),
            ("0.0.0.0", tcp("0.0.0.0", 7)),
            ("[::]", tcp("::", 7)),
            ("unix:/tmp/x.sock", Addr::Unix("/tmp/x.sock".into())),
        ];
        for (s, want) in cases {
            assert_eq!(&Addr::parse(s, Some(7)).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "unix:",
            "host:99999",
            "host:x",
            "::1:80",
            "[::1",
            "[1.2.3.4]:80",
            "[::1]80",
            "a b:1",
            "host",
        ] {
            assert!(Addr::parse(s, None).is_err(), "{s} should be rejected");
        }
    }

    #[test]
    fn parses_listening_lines() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "plumb: listening on 127.0.0.1:4000 (model event)",
                Some("127.0.0.1:4000"),
            ),
            (
                "plumb: listening on [::1]:80 (model fork)",
                Some("[::1]:80"),
            ),
            (
                "plumb: listening on unix:/tmp/a b.sock (model pool)",
                Some("unix:/tmp/a b.sock"),
            ),
            ("plumb: listening on 127.0.0.1:4000", Some("127.0.0.1:4000")),
            ("plumb: listening on ", Some("")),
            ("plumb: shutting down", None),
            (" plumb: listening on 127.0.0.1:1 (model event)", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_listening_line(line), *want, "{line:?}");
        }
    }

    #[test]
    fn urls_say_which_address_to_use() {
        let cases = [
            ("http://127.0.0.1:8080/", "use 127.0.0.1:8080"),
            ("http://localhost/", "use localhost:80"),
            ("https://example.org/x", "use example.org:443"),
            ("http://[::1]:81/", "use [::1]:81"),
        ];
        for (s, want) in cases {
            let e = Addr::parse(s, None).unwrap_err().to_string();
            assert!(e.contains("a URL where an address is expected"), "{s}: {e}");
            assert!(e.ends_with(want), "{s}: {e}");
        }
    }

    #[test]
    fn os_errors_read_as_words() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(words(&e), "no such file or directory");
        assert_eq!(words(&io::Error::other("TLS handshake")), "TLS handshake");
        assert_eq!(
            words(&io::Error::from_raw_os_error(libc::EADDRINUSE)),
            "address in use"
        );
    }

    #[test]
    fn a_held_port_is_refused_even_with_reuse_port() {
        let opts = BindOptions { reuse_port: true };
        let first = Listener::bind(&Addr::parse("127.0.0.1:0", None).unwrap(), opts).unwrap();
        let addr = Addr::parse(&first.local_addr(), None).unwrap();
        let e = Listener::bind(&addr, opts).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        // The holder itself can still add loops on it.
        first.reuse_port_clone().unwrap();
    }

    #[test]
    fn display_round_trips() {
        for s in ["127.0.0.1:8080", "[::1]:80", "unix:/tmp/a"] {
            assert_eq!(Addr::parse(s, None).unwrap().to_string(), s);
        }
    }
}
