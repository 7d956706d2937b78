//! The blocking driver: runs one session on one connection until it is done. Every blocking
//! model (iterative, fork-wait, fork, thread, pool, prefork) calls [`serve_connection`]; they
//! differ only in *who* calls it.
//!
//! The loop is the lecture's read → process → write, made robust in one place:
//! short reads and writes, `EINTR`, input the session has not consumed yet, the session's
//! deadlines (header and keep-alive timeouts), a relay's second socket, and the shutdown
//! broadcasts. Waiting for input uses `poll(2)` on the client (and upstream) together with
//! the drain and hard-stop descriptors; writes block, in slices of [`WRITE_TICK`] so that a
//! client that stops reading cannot hold a worker past the hard stop or the write timeout.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use plumb_proto::{Action, Peer, Session};
use plumb_sys::{PollFd, events};

use crate::net::Stream;
use crate::report::{Record, Reporter};
use crate::services::Service;
use crate::shutdown;

/// How long one blocking write may wait before the driver re-checks the hard stop.
const WRITE_TICK: Duration = Duration::from_millis(250);
/// Read size per `read(2)`.
const READ_CHUNK: usize = 64 * 1024;
/// Most unconsumed input kept per peer before the driver stops reading from it.
const MAX_PENDING_INPUT: usize = 1024 * 1024;

/// What a driver needs besides the connection.
pub struct DriverContext<'a> {
    pub service: &'a dyn Service,
    pub reporter: &'a Reporter,
    /// Drain broadcast (see [`crate::shutdown`]).
    pub drain_fd: i32,
    /// Hard-stop broadcast.
    pub hard_fd: i32,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// Who serves (pid or thread number), for the connection record.
    pub by: u32,
}

/// Bytes moved on one connection.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    bytes_in: u64,
    bytes_out: u64,
}

/// Serves one accepted connection to its end and reports its record.
pub fn serve_connection(client: Stream, peer: &str, ctx: &DriverContext<'_>) {
    let start = Instant::now();
    let mut session = ctx.service.session(peer);
    let mut conn = Conn {
        client,
        upstream: None,
        pending: [Vec::new(), Vec::new()],
        counts: Counts::default(),
    };
    if let Err(e) = conn.run(session.as_mut(), ctx) {
        log::debug!("connection from {peer}: {e}");
    }
    while let Some(line) = session.take_log() {
        ctx.reporter.send(Record::Access(line));
    }
    ctx.reporter.send(Record::Connection {
        peer: peer.to_string(),
        bytes_in: conn.counts.bytes_in,
        bytes_out: conn.counts.bytes_out,
        duration_us: start.elapsed().as_micros() as u64,
        by: ctx.by,
    });
}

struct Conn {
    client: Stream,
    upstream: Option<Stream>,
    /// Input not yet consumed by the session, per peer (index 0 client, 1 upstream).
    pending: [Vec<u8>; 2],
    counts: Counts,
}

fn idx(p: Peer) -> usize {
    match p {
        Peer::Client => 0,
        Peer::Upstream => 1,
    }
}

impl Conn {
    fn sock(&mut self, p: Peer) -> io::Result<&mut Stream> {
        match p {
            Peer::Client => Ok(&mut self.client),
            Peer::Upstream => self
                .upstream
                .as_mut()
                .ok_or_else(|| io::Error::other("no upstream")),
        }
    }

    fn run(&mut self, s: &mut dyn Session, ctx: &DriverContext<'_>) -> io::Result<()> {
        self.client.set_write_timeout(Some(WRITE_TICK))?;
        let _ = self.client.set_nodelay();
        let mut drained = false;
        loop {
            while let Some(line) = s.take_log() {
                ctx.reporter.send(Record::Access(line));
            }
            match s.next_action() {
                Action::Write(p, buf) => {
                    let n = write_some(self.sock(p)?, buf, ctx)?;
                    if p == Peer::Client {
                        self.counts.bytes_out += n as u64;
                    }
                    s.written(p, n);
                }
                Action::SendFile { file, offset, len } => {
                    let n = send_file(&self.client, file, offset, len, ctx)?;
                    self.counts.bytes_out += n as u64;
                    s.written(Peer::Client, n);
                }
                Action::Connect => match ctx.service.upstream() {
                    Some(addr) => match Stream::connect(addr, Some(Duration::from_secs(10))) {
                        Ok(up) => {
                            up.set_write_timeout(Some(WRITE_TICK))?;
                            let _ = up.set_nodelay();
                            self.upstream = Some(up);
                            s.connected(true);
                        }
                        Err(e) => {
                            ctx.reporter.send(Record::Error(format!(
                                "{}: cannot reach upstream: {e}",
                                ctx.service.name()
                            )));
                            s.connected(false);
                        }
                    },
                    None => s.connected(false),
                },
                Action::Shutdown(p) => {
                    // The peer may already be gone; the session learns that from its reads.
                    let _ = self.sock(p)?.shutdown_write();
                }
                Action::Close => return Ok(()),
                Action::Wait => {
                    if self.refeed(s) {
                        continue;
                    }
                    if self.wait(s, ctx, &mut drained)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Offers held input again (the session may have room now). True if it took some.
    fn refeed(&mut self, s: &mut dyn Session) -> bool {
        let mut progress = false;
        for p in [Peer::Client, Peer::Upstream] {
            let buf = &mut self.pending[idx(p)];
            if !buf.is_empty() && s.wants_read(p) {
                let n = s.feed(p, buf);
                buf.drain(..n);
                progress |= n > 0;
            }
        }
        progress
    }

    /// Waits for input, a deadline or a shutdown notice. Returns true on hard stop.
    fn wait(
        &mut self,
        s: &mut dyn Session,
        ctx: &DriverContext<'_>,
        drained: &mut bool,
    ) -> io::Result<bool> {
        let mut fds = Vec::with_capacity(4);
        let mut peers = Vec::with_capacity(2);
        for p in [Peer::Client, Peer::Upstream] {
            if s.wants_read(p) && self.pending[idx(p)].len() < MAX_PENDING_INPUT {
                let fd = match p {
                    Peer::Client => self.client.as_raw_fd(),
                    Peer::Upstream => match &self.upstream {
                        Some(u) => u.as_raw_fd(),
                        None => continue,
                    },
                };
                fds.push(PollFd::new(fd, events::READ));
                peers.push(p);
            }
        }
        let first_ctl = fds.len();
        fds.push(PollFd::new(ctx.hard_fd, events::READ));
        if !*drained {
            fds.push(PollFd::new(ctx.drain_fd, events::READ));
        }
        let deadline = s.deadline();
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ready = plumb_sys::poll(&mut fds, timeout)?;
        if fds[first_ctl].ready() {
            return Ok(true);
        }
        if !*drained && fds[first_ctl + 1].ready() {
            *drained = true;
            s.drain();
            return Ok(false);
        }
        if ready == 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                s.timed_out(Instant::now());
            }
            return Ok(false);
        }
        let mut chunk = [0u8; READ_CHUNK];
        for (i, &p) in peers.iter().enumerate() {
            if !fds[i].ready() {
                continue;
            }
            let n = match self.sock(p)?.read(&mut chunk) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            if p == Peer::Client {
                self.counts.bytes_in += n as u64;
            }
            if n == 0 {
                s.eof(p);
                continue;
            }
            let held = &mut self.pending[idx(p)];
            if held.is_empty() {
                // The common case: the session parses straight from the read buffer.
                let used = s.feed(p, &chunk[..n]);
                held.extend_from_slice(&chunk[used..n]);
            } else {
                held.extend_from_slice(&chunk[..n]);
                let used = s.feed(p, held);
                held.drain(..used);
            }
        }
        Ok(false)
    }
}

/// One blocking write of a prefix of `buf`, retried while the socket buffer is full until the
/// write timeout or the hard stop.
fn write_some(sock: &mut Stream, buf: &[u8], ctx: &DriverContext<'_>) -> io::Result<usize> {
    let start = Instant::now();
    loop {
        match sock.write(buf) {
            Ok(0) if !buf.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stalled(start, ctx)?,
            Err(e) => return Err(e),
        }
    }
}

fn send_file(
    sock: &Stream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    ctx: &DriverContext<'_>,
) -> io::Result<usize> {
    let start = Instant::now();
    let mut off = offset;
    loop {
        match plumb_sys::sendfile(sock, file, &mut off, len as usize) {
            Ok(0) if len > 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stalled(start, ctx)?,
            Err(e) => return Err(e),
        }
    }
}

fn stalled(start: Instant, ctx: &DriverContext<'_>) -> io::Result<()> {
    if shutdown::fired(ctx.hard_fd) {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "hard stop"));
    }
    if start.elapsed() >= ctx.write_timeout {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "write timeout: peer is not reading",
        ));
    }
    Ok(())
}
