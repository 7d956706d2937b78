//! A TLS session over a socket as one more [`Surface`]: rustls (sans-IO) driven without
//! blocking, so the pump runs it like a plain socket under every model, the handshake
//! included (a `try_read` during the handshake moves it on as far as the socket allows and
//! then says `WouldBlock`).
//!
//! Keeping the pump's readiness flags honest:
//! - `try_read` fills the caller's buffer from decrypted data and the socket until either is
//!   exhausted: a short read still means "the socket said `EAGAIN`", as for a plain socket,
//!   so an edge-triggered waiter loses nothing; a full read leaves the flag set.
//! - Output of the layer's own (handshake messages, alerts, session tickets) that the socket
//!   would not take is reported by [`Surface::wants_write`]: the pump then waits for the
//!   socket to be writable and calls `try_read` again, which flushes first.
//! - `try_write` reports bytes as written only once their records are in the kernel: when a
//!   flush stops short it says `WouldBlock` and owes the count, which the next `try_write`
//!   (the same bytes offered again) pays as soon as the records are out. So a `Close` after
//!   the last write never drops records, and the write timeout sees a stalled peer.
//! - `try_sendfile` is `Unsupported` (records are made in user space); the pump reads the
//!   body in bounded chunks instead.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use rustls::{ClientConnection, Connection};

use super::surface::Surface;
use crate::net::Stream;
use crate::tls::Acceptor;

/// Most plaintext taken per `try_write` (rustls's own output limit is 64 KiB).
const WRITE_CHUNK: usize = 64 * 1024;

/// What a plain-HTTP request on a TLS port gets (serve): a plain-text answer, then the close.
const PLAIN_HTTP_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 44\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use https:// URLs.\r\n";

/// A socket with a TLS session on it.
pub struct TlsStream {
    conn: Connection,
    sock: Stream,
    /// While the handshake runs: when it must be done.
    deadline: Option<Instant>,
    /// Plaintext bytes already encrypted whose records are not all in the kernel yet.
    owed: usize,
    /// Not one byte read yet (a server looks at the first one for plain HTTP).
    fresh: bool,
    /// Answer plain HTTP with a 400 (serve's listeners).
    http: bool,
    /// The peer closed its direction of the socket.
    eof: bool,
    /// Our close_notify went out.
    closed: bool,
    /// After the handshake: what it negotiated, for the log.
    info: Option<Arc<str>>,
    /// Hand the keys to the kernel after the handshake (`--ktls`).
    ktls: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("handshaking", &self.conn.is_handshaking())
            .finish_non_exhaustive()
    }
}

/// Reads without ever blocking, whatever the socket's mode (the blocking waiters leave
/// client sockets blocking for their writes).
struct NowReader<'a>(&'a Stream);

impl Read for NowReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        plumb_sys::tcp::recv_now(self.0, buf)
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl TlsStream {
    /// The server side of an accepted connection on a TLS listener.
    ///
    /// # Errors
    /// rustls refuses to start a session (not expected with a valid config).
    pub fn server(sock: Stream, tls: &Acceptor, now: Instant) -> io::Result<TlsStream> {
        let conn = tls.connection().map_err(io::Error::other)?;
        Ok(TlsStream::new(
            Connection::Server(conn),
            sock,
            now + tls.handshake_timeout,
            tls.http,
            tls.ktls,
        ))
    }

    /// The client side (an upstream, `connect --tls`, bench).
    ///
    /// # Errors
    /// A name rustls cannot use.
    pub fn client(
        sock: Stream,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        deadline: Instant,
    ) -> io::Result<TlsStream> {
        let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(TlsStream::new(
            Connection::Client(conn),
            sock,
            deadline,
            false,
            false,
        ))
    }

    fn new(conn: Connection, sock: Stream, deadline: Instant, http: bool, ktls: bool) -> Self {
        TlsStream {
            conn,
            sock,
            deadline: Some(deadline),
            owed: 0,
            fresh: true,
            http,
            eof: false,
            closed: false,
            info: None,
            ktls,
        }
    }

    /// Whether the handshake is still running.
    pub fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The underlying socket.
    pub fn socket(&self) -> &Stream {
        &self.sock
    }

    /// The negotiated protocol version and cipher suite ("TLSv1.3 TLS13_AES_128_GCM_SHA256"),
    /// once the handshake is done.
    pub fn negotiated(&self) -> Option<Arc<str>> {
        self.info.clone()
    }

    /// The rustls session (for a client that wants to look at the peer's certificate).
    pub fn session(&self) -> &Connection {
        &self.conn
    }

    /// Sends what rustls has made. `Ok` once nothing is left; `WouldBlock` when the socket is
    /// full.
    fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Flushes what can go now; "would block" is not an error here (`wants_write` says so).
    fn flush_some(&mut self) -> io::Result<()> {
        match self.flush() {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Takes records from the socket into rustls. `Ok(false)` when the socket had nothing.
    fn pull(&mut self) -> io::Result<bool> {
        if self.fresh {
            return self.pull_first();
        }
        match self.conn.read_tls(&mut NowReader(&self.sock)) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(_) => Ok(true),
            Err(e) if would_block(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The first bytes of a connection: a TLS record starts with 0x16 (handshake); a
    /// plain-HTTP request on a TLS port gets a plain answer instead of a TLS alert it cannot
    /// read.
    fn pull_first(&mut self) -> io::Result<bool> {
        let mut first = [0u8; 4096];
        let n = match plumb_sys::tcp::recv_now(&self.sock, &mut first) {
            Ok(n) => n,
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.fresh = false;
        if n == 0 {
            self.eof = true;
            return Ok(true);
        }
        let server = matches!(self.conn, Connection::Server(_));
        if server && first[0] != 0x16 && first[0].is_ascii_uppercase() {
            if self.http {
                let _ = self.sock.write(PLAIN_HTTP_400);
                let _ = self.sock.shutdown_write();
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS: plain text on a TLS port",
            ));
        }
        let mut rest = &first[..n];
        while !rest.is_empty() {
            if self.conn.read_tls(&mut rest)? == 0 {
                break;
            }
            self.process()?;
        }
        Ok(true)
    }

    /// Lets rustls work on what it received; on a protocol error its alert goes out first.
    fn process(&mut self) -> io::Result<()> {
        let was_handshaking = self.conn.is_handshaking();
        if let Err(e) = self.conn.process_new_packets() {
            let _ = self.flush();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        if was_handshaking && !self.conn.is_handshaking() {
            self.handshake_done();
        }
        Ok(())
    }

    fn handshake_done(&mut self) {
        self.deadline = None;
        let version = self
            .conn
            .protocol_version()
            .map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        self.info = Some(format!("{version} {suite}").into());
        if self.ktls {
            self.ktls = false;
            ktls_fallback(&self.sock);
        }
    }
}

/// `--ktls`: the kernel takes the records only where it has the `tls` upper layer; where it
/// does not (or refuses the cipher), the session stays in user space, said once per process.
fn ktls_fallback(sock: &Stream) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    let why = match plumb_sys::ktls::attach_ulp(sock) {
        Ok(()) => "handing keys to the kernel is not implemented for this cipher yet".to_string(),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            "the kernel has no tls module (TCP_ULP \"tls\": ENOENT)".to_string()
        }
        Err(e) => format!("TCP_ULP \"tls\": {}", crate::net::words(&e)),
    };
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!("plumb: --ktls: {why}; TLS stays in user space (sendfile falls back to reads)");
    }
}

impl AsFd for TlsStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Surface for TlsStream {
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            match self.conn.reader().read(&mut buf[filled..]) {
                Ok(0) if filled < buf.len() => return Ok(filled), // close_notify
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if would_block(&e) => {}
                // The peer closed without close_notify: EOF all the same (many clients do;
                // a response's own framing tells a truncation).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                Err(e) => return Err(e),
            }
            self.flush_some()?;
            if self.eof {
                return Ok(filled);
            }
            if !self.pull()? {
                return if filled > 0 {
                    Ok(filled)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            self.process()?;
            // Handshake replies, tickets, alerts: out as soon as they are made.
            self.flush_some()?;
        }
    }

    fn try_write(&mut self, buf: &[u8], _last: bool) -> io::Result<usize> {
        self.flush()?;
        if self.owed > 0 {
            let n = self.owed.min(buf.len());
            self.owed = 0;
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self
            .conn
            .writer()
            .write(&buf[..buf.len().min(WRITE_CHUNK)])?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.conn.is_handshaking() {
            // Held by rustls until the handshake is done, then sent by the reads that
            // finish it.
            return Ok(n);
        }
        match self.flush() {
            Ok(()) => Ok(n),
            Err(e) if would_block(&e) => {
                self.owed = n;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.closed {
            self.closed = true;
            self.conn.send_close_notify();
            let _ = self.flush();
        }
        self.sock.shutdown_write()
    }

    fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn tls_info(&self) -> Option<Arc<str>> {
        self.info.clone()
    }
}

impl Drop for TlsStream {
    /// A session that ends while healthy says so (close_notify), without waiting for room.
    fn drop(&mut self) {
        if !self.closed && !self.conn.is_handshaking() {
            self.conn.send_close_notify();
            let _ = self.conn.write_tls(&mut self.sock);
        }
    }
}
