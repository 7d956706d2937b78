//! One connection of the event model: its session, its socket (two for a relay), the input
//! the session has not consumed yet, and what the loop knows about each socket's readiness.
//! [`Conn::pump`] performs the session's actions until one would block; it holds no protocol
//! knowledge (the semantics are those of the blocking driver, `crate::driver`).
//!
//! Readiness is edge-triggered (mio registers with `EPOLLET`), so each socket carries
//! `readable`/`writable` flags: set by an event, cleared when a call says `EAGAIN` (or a read
//! comes back short, which on a stream socket means it was emptied). A socket the session
//! does not want to read from right now keeps its flag and is read as soon as it does.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use plumb_proto::{Action, Peer, Session};
use std::os::fd::AsRawFd;

use super::upstream::{self, Connecting};
use crate::net::Stream;
use crate::report::Record;
use crate::services::Service;

/// Most unconsumed input held per peer before the loop stops reading from it (as in the
/// blocking driver).
const MAX_PENDING_INPUT: usize = 1024 * 1024;
/// Most bytes one `sendfile` call may send; after a full chunk the connection yields to the
/// others. On loopback the kernel transmits (and queues at the receiver) during the call, so
/// this is the burst a client finds waiting per connection: small enough to still be in its
/// cache when it reads it, large enough to keep system calls few. Measured on the 10 MiB
/// benchmark (4 connections): 64 KiB 1.60x nginx-1w, 128-256 KiB 2.1x, 512 KiB 1.97x, 2 MiB
/// 1.19x, unbounded (until the socket buffer is full) about 1.0x. lighttpd uses 256 KiB too.
const SENDFILE_CHUNK: usize = 256 * 1024;
/// Reads and writes one connection may do per turn before the loop serves the others.
const IO_BUDGET: u32 = 64;

/// What the loop lends a connection while it runs.
pub(super) struct Io<'a> {
    /// The loop's read buffer: input is copied out of it only when the session leaves some.
    pub(super) scratch: &'a mut [u8],
    pub(super) records: &'a mut Vec<Record>,
    pub(super) registry: &'a Registry,
    pub(super) service: &'a dyn Service,
    pub(super) write_timeout: Duration,
    pub(super) now: Instant,
}

/// What the loop should do with a connection after it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Waiting for readiness or a deadline.
    Open,
    /// Used up its budget with work left: run it again after the others.
    Yield,
    /// Finished (or failed): close it.
    Close,
}

/// One socket of a connection.
#[derive(Debug)]
pub(super) struct Side {
    stream: Stream,
    /// Input the session has not consumed; holds no allocation while empty, so an idle
    /// connection holds no read buffer.
    pending: Vec<u8>,
    readable: bool,
    writable: bool,
    /// The peer closed or reset: reads will not block, so keep reading until one says so
    /// (a short read then does not mean "drained").
    read_closed: bool,
}

impl Side {
    fn new(stream: Stream) -> Side {
        Side {
            stream,
            pending: Vec::new(),
            readable: false,
            // A fresh socket has an empty send buffer.
            writable: true,
            read_closed: false,
        }
    }
}

/// Readiness reported by one event.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Readiness {
    pub(super) readable: bool,
    pub(super) writable: bool,
    pub(super) read_closed: bool,
    pub(super) error: bool,
}

/// How a pump stopped short of `Close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The session said `Wait`.
    Waiting,
    /// A write would block.
    WriteBlocked,
}

pub(super) struct Conn {
    /// Unique for the loop's lifetime (slots are reused, ids are not).
    pub(super) id: u64,
    /// The deadline this connection has in the loop's heap, if any.
    pub(super) armed: Option<Instant>,
    session: Box<dyn Session + Send>,
    client: Side,
    upstream: Option<Side>,
    connecting: Option<Box<Connecting>>,
    /// The client's address as the records show it ("unix" for a UNIX socket).
    peer: String,
    started: Instant,
    bytes_in: u64,
    bytes_out: u64,
    /// Since when a write has been waiting for the peer to read.
    write_stalled_since: Option<Instant>,
}

/// The token of a connection's socket: slot and peer packed together.
pub(super) fn token(slot: usize, peer: Peer) -> Token {
    Token(slot << 1 | usize::from(peer == Peer::Upstream))
}

/// The inverse of [`token`].
pub(super) fn slot_of(t: Token) -> (usize, Peer) {
    let peer = if t.0 & 1 == 1 {
        Peer::Upstream
    } else {
        Peer::Client
    };
    (t.0 >> 1, peer)
}

fn side_mut<'a>(
    client: &'a mut Side,
    upstream: &'a mut Option<Side>,
    p: Peer,
) -> io::Result<&'a mut Side> {
    match p {
        Peer::Client => Ok(client),
        Peer::Upstream => upstream
            .as_mut()
            .ok_or_else(|| io::Error::other("no upstream")),
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Conn {
    pub(super) fn new(
        id: u64,
        session: Box<dyn Session + Send>,
        client: Stream,
        peer: String,
        now: Instant,
    ) -> Conn {
        Conn {
            id,
            armed: None,
            session,
            client: Side::new(client),
            upstream: None,
            connecting: None,
            peer,
            started: now,
            bytes_in: 0,
            bytes_out: 0,
            write_stalled_since: None,
        }
    }

    pub(super) fn register(&self, registry: &Registry, slot: usize) -> io::Result<()> {
        let fd = self.client.stream.as_raw_fd();
        registry.register(
            &mut SourceFd(&fd),
            token(slot, Peer::Client),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// The earliest moment something is due: the session's deadline, a connect attempt's
    /// timeout, or the write timeout of a stalled write.
    pub(super) fn deadline(&self, write_timeout: Duration) -> Option<Instant> {
        [
            self.session.deadline(),
            self.connecting.as_ref().map(|c| c.deadline),
            self.write_stalled_since.map(|t| t + write_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// An event arrived for one of this connection's sockets.
    pub(super) fn on_event(
        &mut self,
        peer: Peer,
        r: Readiness,
        io: &mut Io<'_>,
        slot: usize,
    ) -> Flow {
        let Ok(side) = side_mut(&mut self.client, &mut self.upstream, peer) else {
            return Flow::Open; // a stale event for an upstream already closed
        };
        side.readable |= r.readable || r.read_closed || r.error;
        side.read_closed |= r.read_closed || r.error;
        side.writable |= r.writable || r.error;
        if peer == Peer::Upstream && self.connecting.is_some() {
            self.finish_connect(io, slot);
        }
        self.pump(io, slot)
    }

    /// The first run of a just-accepted connection: its input is tried without waiting for
    /// the poller to report it.
    pub(super) fn pump_fresh(&mut self, io: &mut Io<'_>, slot: usize) -> Flow {
        self.client.readable = true;
        self.pump(io, slot)
    }

    /// The loop is draining: tell the session, then let it act on that.
    pub(super) fn drain(&mut self, io: &mut Io<'_>, slot: usize) -> Flow {
        self.session.drain();
        self.pump(io, slot)
    }

    /// The armed deadline came: whichever of ours is due fires.
    pub(super) fn on_deadline(&mut self, io: &mut Io<'_>, slot: usize) -> Flow {
        let now = io.now;
        if self
            .write_stalled_since
            .is_some_and(|t| t + io.write_timeout <= now)
        {
            log::debug!(
                "connection from {}: write timeout: peer is not reading",
                self.peer
            );
            return Flow::Close;
        }
        if self.connecting.as_ref().is_some_and(|c| c.deadline <= now) {
            self.upstream = None;
            if let Some(c) = &mut self.connecting {
                let target = c.current.take().map_or_else(String::new, |t| t.to_string());
                c.last_error = Some(format!("{target}: connect timed out"));
            }
            self.next_connect_attempt(io, slot);
        }
        if self.session.deadline().is_some_and(|d| d <= now) {
            self.session.timed_out(now);
        }
        self.pump(io, slot)
    }

    /// Performs the session's actions until one would block, the budget is used up, or the
    /// session is done.
    pub(super) fn pump(&mut self, io: &mut Io<'_>, slot: usize) -> Flow {
        match self.try_pump(io, slot) {
            Ok(flow) => flow,
            Err(e) => {
                log::debug!("connection from {}: {e}", self.peer);
                Flow::Close
            }
        }
    }

    fn try_pump(&mut self, io: &mut Io<'_>, slot: usize) -> io::Result<Flow> {
        let mut budget = IO_BUDGET;
        loop {
            while let Some(line) = self.session.take_log() {
                io.records.push(Record::Access(line));
            }
            if budget == 0 {
                return Ok(Flow::Yield);
            }
            let last = self.session.closes_after_output();
            let stop = match self.session.next_action() {
                Action::Write(p, buf) => {
                    let side = side_mut(&mut self.client, &mut self.upstream, p)?;
                    if !side.writable {
                        Stop::WriteBlocked
                    } else {
                        budget -= 1;
                        match side.stream.send(buf, last) {
                            Ok(0) if !buf.is_empty() => {
                                return Err(io::ErrorKind::WriteZero.into());
                            }
                            Ok(n) => {
                                if p == Peer::Client {
                                    self.bytes_out += n as u64;
                                }
                                self.write_stalled_since = None;
                                self.session.written(p, n);
                                continue;
                            }
                            Err(e) if would_block(&e) => {
                                side.writable = false;
                                Stop::WriteBlocked
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Action::SendFile { file, offset, len } => {
                    let side = &mut self.client;
                    if !side.writable {
                        Stop::WriteBlocked
                    } else {
                        budget -= 1;
                        let mut off = offset;
                        let want = (len as usize).min(SENDFILE_CHUNK);
                        match plumb_sys::sendfile(&side.stream, file, &mut off, want) {
                            Ok(0) if len > 0 => {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "file shrank while being sent",
                                ));
                            }
                            Ok(n) => {
                                self.bytes_out += n as u64;
                                self.write_stalled_since = None;
                                self.session.written(Peer::Client, n);
                                if n == SENDFILE_CHUNK && (n as u64) < len {
                                    // A full burst went out: let the others have theirs.
                                    return Ok(Flow::Yield);
                                }
                                continue;
                            }
                            Err(e) if would_block(&e) => {
                                side.writable = false;
                                Stop::WriteBlocked
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Action::Connect => {
                    self.start_connect(io, slot);
                    continue;
                }
                Action::Shutdown(p) => {
                    // The peer may already be gone; the session learns that from its reads.
                    let _ = side_mut(&mut self.client, &mut self.upstream, p)?
                        .stream
                        .shutdown_write();
                    continue;
                }
                Action::Close => return Ok(Flow::Close),
                Action::Wait => Stop::Waiting,
            };
            // Waiting, or blocked on a write: offer held input again, then read what is
            // ready. Reading while a write is blocked is what keeps a relay from deadlocking
            // when both directions are full; the session's `wants_read` is the backpressure.
            if self.refeed() {
                continue;
            }
            if self.read_ready(io, stop, &mut budget)? {
                continue;
            }
            if stop == Stop::WriteBlocked && self.write_stalled_since.is_none() {
                self.write_stalled_since = Some(io.now);
            }
            return Ok(Flow::Open);
        }
    }

    /// Offers held input again (the session may have room now). True if it took some.
    fn refeed(&mut self) -> bool {
        let mut progress = false;
        for p in [Peer::Client, Peer::Upstream] {
            let Ok(side) = side_mut(&mut self.client, &mut self.upstream, p) else {
                continue;
            };
            if side.pending.is_empty() || !self.session.wants_read(p) {
                continue;
            }
            let used = self.session.feed(p, &side.pending).min(side.pending.len());
            consume(&mut side.pending, used);
            progress |= used > 0;
        }
        progress
    }

    /// Reads once from the first peer that is readable and wanted. True if something
    /// happened the session must see (input or EOF).
    fn read_ready(&mut self, io: &mut Io<'_>, stop: Stop, budget: &mut u32) -> io::Result<bool> {
        for p in [Peer::Client, Peer::Upstream] {
            let Ok(side) = side_mut(&mut self.client, &mut self.upstream, p) else {
                continue;
            };
            if !side.readable || !self.session.wants_read(p) {
                continue;
            }
            // While a write is blocked, hold at most one read's worth per peer.
            let cap = match stop {
                Stop::Waiting => MAX_PENDING_INPUT,
                Stop::WriteBlocked => 1,
            };
            if side.pending.len() >= cap {
                continue;
            }
            *budget = budget.saturating_sub(1);
            let n = match side.stream.read(io.scratch) {
                Ok(n) => n,
                Err(e) if would_block(&e) => {
                    side.readable = false;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
                Err(e) => return Err(e),
            };
            if n == 0 {
                side.readable = false;
                self.session.eof(p);
                return Ok(true);
            }
            if p == Peer::Client {
                self.bytes_in += n as u64;
            }
            if n < io.scratch.len() && !side.read_closed {
                // A short read emptied the socket; more data brings a new edge.
                side.readable = false;
            }
            if side.pending.is_empty() {
                // The common case: the session parses straight from the loop's buffer.
                let used = self.session.feed(p, &io.scratch[..n]).min(n);
                side.pending.extend_from_slice(&io.scratch[used..n]);
            } else {
                side.pending.extend_from_slice(&io.scratch[..n]);
                let used = self.session.feed(p, &side.pending).min(side.pending.len());
                consume(&mut side.pending, used);
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn start_connect(&mut self, io: &mut Io<'_>, slot: usize) {
        let Some(addr) = io.service.upstream() else {
            self.session.connected(false);
            return;
        };
        match Connecting::new(addr, io.now) {
            Ok(c) => {
                self.connecting = Some(Box::new(c));
                self.next_connect_attempt(io, slot);
            }
            Err(e) => self.connect_failed(io, &e.to_string()),
        }
    }

    /// Starts a connect to the next address left, or reports failure when none is.
    fn next_connect_attempt(&mut self, io: &mut Io<'_>, slot: usize) {
        loop {
            let Some(c) = self.connecting.as_mut() else {
                return;
            };
            let Some(target) = c.rest.pop_front() else {
                let why = c.last_error.take().unwrap_or_else(|| "no address".into());
                self.connect_failed(io, &why);
                return;
            };
            c.deadline = io.now + upstream::CONNECT_TIMEOUT;
            c.current = Some(target.clone());
            let started = upstream::start(&target).and_then(|(stream, done)| {
                let fd = stream.as_raw_fd();
                io.registry.register(
                    &mut SourceFd(&fd),
                    token(slot, Peer::Upstream),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok((stream, done))
            });
            match started {
                Ok((stream, done)) => {
                    self.upstream = Some(Side::new(stream));
                    if done {
                        self.connecting = None;
                        self.session.connected(true);
                    }
                    return;
                }
                Err(e) => c.last_error = Some(format!("{target}: {e}")),
            }
        }
    }

    /// The upstream socket reported: see whether the connect in progress finished.
    fn finish_connect(&mut self, io: &mut Io<'_>, slot: usize) {
        let Some(side) = &self.upstream else { return };
        match upstream::outcome(&side.stream) {
            None => {}
            Some(Ok(())) => {
                self.connecting = None;
                self.session.connected(true);
            }
            Some(Err(e)) => {
                // Closing the socket also removes it from the poll set.
                self.upstream = None;
                if let Some(c) = &mut self.connecting {
                    let target = c.current.take().map_or_else(String::new, |t| t.to_string());
                    c.last_error = Some(format!("{target}: {e}"));
                }
                self.next_connect_attempt(io, slot);
            }
        }
    }

    fn connect_failed(&mut self, io: &mut Io<'_>, why: &str) {
        self.connecting = None;
        self.upstream = None;
        io.records.push(Record::Error(format!(
            "{}: cannot reach upstream: {why}",
            io.service.name()
        )));
        self.session.connected(false);
    }

    /// The connection is over: its last log lines and its record.
    pub(super) fn finish(mut self, records: &mut Vec<Record>, now: Instant, by: u32) {
        self.session.closed();
        while let Some(line) = self.session.take_log() {
            records.push(Record::Access(line));
        }
        records.push(Record::Connection {
            peer: std::mem::take(&mut self.peer),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration_us: now.saturating_duration_since(self.started).as_micros() as u64,
            by,
        });
    }
}

/// Drops the first `n` bytes of held input, releasing the allocation once it is empty.
fn consume(pending: &mut Vec<u8>, n: usize) {
    if n >= pending.len() {
        *pending = Vec::new();
    } else {
        pending.drain(..n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for slot in [0, 1, 7, 100_000] {
            for peer in [Peer::Client, Peer::Upstream] {
                assert_eq!(slot_of(token(slot, peer)), (slot, peer));
            }
        }
    }

    #[test]
    fn consume_frees_when_empty() {
        let mut v = b"abcdef".to_vec();
        consume(&mut v, 2);
        assert_eq!(v, b"cdef");
        consume(&mut v, 4);
        assert!(v.is_empty());
        assert_eq!(v.capacity(), 0, "no buffer is kept for an idle connection");
    }
}
