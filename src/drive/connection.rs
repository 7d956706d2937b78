//! The one connection machine: a session, the descriptors it named (the client, an upstream
//! connection, each child's three pipes and its exit descriptor), the input the session has not
//! consumed yet, and what is known about each descriptor's readiness. [`Connection::pump`]
//! performs the session's actions until one would block; every model runs it, and the two
//! waiters ([`super::blocking`] with `poll(2)`, the event loop with epoll) differ only in how
//! they learn that a descriptor is ready again.
//!
//! Readiness is kept as flags per descriptor: set by the waiter (an epoll edge, a `poll`
//! result), cleared when a call says `EAGAIN` (or a read comes back short, which on a stream
//! means it was emptied). Edge-triggered epoll needs exactly this; for `poll` it saves the
//! read that would only say `EAGAIN`. A descriptor the session does not want to read from
//! right now keeps its flag and is read as soon as it does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use plumb_proto::session::{Action, ChildId, Exit, Peer, Session, SpawnRequest, Stdio};

use super::MAX_PENDING_INPUT;
use super::child::Child;
use super::connect::{self, Connecting};
use super::surface::{Pipe, Surface};
use crate::net::Stream;
use crate::report::Record;
use crate::services::Service;

mod forward;

/// Reads and writes one connection may do per turn before its waiter serves the others.
const IO_BUDGET: u32 = 64;

/// What a descriptor of a connection is for: one of the session's peers, or a child's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Peer(Peer),
    /// The child's `pidfd`: readable once it has exited.
    ChildExit(ChildId),
}

impl Source {
    /// The accepted connection.
    pub const CLIENT: Source = Source::Peer(Peer::Client);
    /// How many sources there are: the client, the upstream, and four per child slot (its
    /// three pipes and its exit). A waiter packs the index into its tokens.
    pub const COUNT: usize = 2 + 4 * 256;

    /// A dense index below [`Source::COUNT`].
    pub fn index(self) -> usize {
        match self {
            Source::Peer(Peer::Client) => 0,
            Source::Peer(Peer::Upstream) => 1,
            Source::Peer(Peer::Child(id, s)) => 2 + 4 * usize::from(id.0) + s.index(),
            Source::ChildExit(id) => 2 + 4 * usize::from(id.0) + 3,
        }
    }

    pub fn from_index(i: usize) -> Option<Source> {
        match i {
            0 => Some(Source::CLIENT),
            1 => Some(Source::Peer(Peer::Upstream)),
            _ if i < Source::COUNT => {
                let id = ChildId(u8::try_from((i - 2) / 4).ok()?);
                Some(match Stdio::ALL.get((i - 2) % 4) {
                    Some(&s) => Source::Peer(Peer::Child(id, s)),
                    None => Source::ChildExit(id),
                })
            }
            _ => None,
        }
    }
}

/// What the waiter lends a connection while it runs.
pub struct Turn<'a> {
    /// The waiter's read buffer: input is copied out of it only when the session leaves some.
    pub scratch: &'a mut [u8],
    /// Records of this turn (access-log lines, errors); the waiter delivers them.
    pub records: &'a mut Vec<Record>,
    pub service: &'a dyn Service,
    pub write_timeout: Duration,
    pub now: Instant,
    /// Most bytes one `sendfile` may send before the connection yields: the event loop's
    /// [`SENDFILE_CHUNK`](super::SENDFILE_CHUNK) (fairness among its connections); a waiter
    /// with one connection has nobody to yield to and sends larger bursts.
    pub sendfile_burst: usize,
}

/// What the waiter should do with a connection after it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Waiting for readiness or a deadline.
    Open,
    /// Used up its budget with work left: run it again after the others.
    Yield,
    /// Finished (or failed): close it.
    Close,
}

/// Readiness reported for one descriptor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer closed or reset: reads will not block until one says so.
    pub read_closed: bool,
    pub error: bool,
}

/// What a waiter should watch a descriptor for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub source: Source,
    pub fd: RawFd,
    pub read: bool,
    pub write: bool,
}

/// A descriptor as the pump holds it: a socket, a pipe, or a layer over one (TLS, later).
/// An enum rather than a box: an idle connection should cost no allocation for its socket.
#[derive(Debug)]
enum Endpoint {
    Stream(Stream),
    Pipe(Pipe),
    /// A layer over a socket (TLS, see [`super::tls`]).
    Layer(Box<dyn Surface>),
}

impl Endpoint {
    fn surface(&mut self) -> &mut dyn Surface {
        match self {
            Endpoint::Stream(s) => s,
            Endpoint::Pipe(p) => p,
            Endpoint::Layer(l) => &mut **l,
        }
    }

    /// The layer, if this is one (it may have buffers and a deadline of its own).
    fn layer(&self) -> Option<&dyn Surface> {
        match self {
            Endpoint::Layer(l) => Some(&**l),
            _ => None,
        }
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Endpoint::Stream(s) => s.as_fd(),
            Endpoint::Pipe(p) => p.as_fd(),
            Endpoint::Layer(l) => l.as_fd(),
        }
    }

    fn raw_fd(&self) -> RawFd {
        self.fd().as_raw_fd()
    }
}

/// A connection's descriptors by peer. Children live in a vector that holds no allocation
/// while empty, so the common connection (a client, maybe an upstream) carries no room for
/// them.
#[derive(Debug)]
struct Sides {
    client: Option<Side>,
    upstream: Option<Side>,
    children: Vec<Kid>,
}

/// One child of a session: the process until it is reaped, and its pipes until each is
/// closed. The slot is free once both are gone.
#[derive(Debug)]
struct Kid {
    id: ChildId,
    process: Option<Child>,
    pipes: [Option<Side>; 3],
}

impl Kid {
    /// Reaped, and its output read to EOF: its stdin (if the session never closed it) has no
    /// reader worth writing to, and the slot is free.
    fn done(&self) -> bool {
        self.process.is_none() && self.pipes[1].is_none() && self.pipes[2].is_none()
    }
}

impl Sides {
    fn kid(&self, id: ChildId) -> Option<&Kid> {
        self.children.iter().find(|k| k.id == id)
    }

    fn kid_mut(&mut self, id: ChildId) -> Option<&mut Kid> {
        self.children.iter_mut().find(|k| k.id == id)
    }

    fn get(&self, p: Peer) -> Option<&Side> {
        match p {
            Peer::Client => self.client.as_ref(),
            Peer::Upstream => self.upstream.as_ref(),
            Peer::Child(id, s) => self.kid(id)?.pipes[s.index()].as_ref(),
        }
    }

    fn get_mut(&mut self, p: Peer) -> Option<&mut Side> {
        match p {
            Peer::Client => self.client.as_mut(),
            Peer::Upstream => self.upstream.as_mut(),
            Peer::Child(id, s) => self.kid_mut(id)?.pipes[s.index()].as_mut(),
        }
    }

    /// Replaces the client's or the upstream's descriptor, or closes a child's pipe.
    fn set(&mut self, p: Peer, side: Option<Side>) {
        match p {
            Peer::Client => self.client = side,
            Peer::Upstream => self.upstream = side,
            Peer::Child(id, s) => {
                if let Some(k) = self.kid_mut(id) {
                    k.pipes[s.index()] = side;
                }
                self.prune();
            }
        }
    }

    /// Forgets children whose process is reaped and whose pipes are closed.
    fn prune(&mut self) {
        self.children.retain(|k| !k.done());
    }

    /// How many peers [`Sides::peer_at`] can name right now.
    fn peer_count(&self) -> usize {
        2 + 3 * self.children.len()
    }

    /// The `i`-th peer slot: the client, the upstream, then each child's three pipes (some
    /// of which may be closed).
    fn peer_at(&self, i: usize) -> Peer {
        match i {
            0 => Peer::Client,
            1 => Peer::Upstream,
            _ => Peer::Child(self.children[(i - 2) / 3].id, Stdio::ALL[(i - 2) % 3]),
        }
    }
}

/// One descriptor of a connection.
#[derive(Debug)]
struct Side {
    surface: Endpoint,
    /// Input the session has not consumed; holds no allocation while empty, so an idle
    /// connection holds no read buffer.
    pending: Vec<u8>,
    readable: bool,
    writable: bool,
    read_closed: bool,
}

impl Side {
    fn new(surface: Endpoint) -> Side {
        Side {
            surface,
            pending: Vec::new(),
            readable: false,
            // A fresh descriptor has an empty send buffer.
            writable: true,
            read_closed: false,
        }
    }
}

/// What the pump does after a write.
enum Step {
    /// Ask the session again.
    Again,
    /// Give the other connections a turn.
    Yield,
    /// The descriptor is full.
    Blocked,
}

/// How a pump stopped short of `Close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The session said `Wait`.
    Waiting,
    /// A write would block.
    WriteBlocked,
}

/// One connection and everything the session asked for.
pub struct Connection {
    session: Box<dyn Session + Send>,
    /// `None` for a peer that does not exist (yet, or any more).
    sides: Sides,
    connecting: Option<Box<Connecting>>,
    /// The client's address as the records show it ("unix" for a UNIX socket).
    peer: String,
    started: Instant,
    bytes_in: u64,
    bytes_out: u64,
    /// Since when a write has been waiting for its peer to read.
    write_stalled_since: Option<Instant>,
    /// The session has been told about the drain.
    drained: bool,
    /// Descriptors opened since the waiter last asked (the event loop registers them).
    opened: Vec<Source>,
    /// Directions moved inside the kernel ([`Action::Forward`]).
    forwards: Vec<forward::Forward>,
    /// The last child's exit, for the record.
    exit: Option<Exit>,
}

/// Whether to read from `p` now: what the session wants, except that a child's stdin is the
/// write end of a pipe, which is never read.
fn wants_read(session: &(dyn Session + Send), p: Peer) -> bool {
    !matches!(p, Peer::Child(_, Stdio::Stdin)) && session.wants_read(p)
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Connection {
    /// A connection for an accepted client socket (already non-blocking).
    pub fn new(
        session: Box<dyn Session + Send>,
        client: crate::net::Stream,
        peer: String,
        now: Instant,
    ) -> Connection {
        Connection {
            session,
            sides: Sides {
                client: Some(Side::new(Endpoint::Stream(client))),
                upstream: None,
                children: Vec::new(),
            },
            connecting: None,
            peer,
            started: now,
            bytes_in: 0,
            bytes_out: 0,
            write_stalled_since: None,
            drained: false,
            opened: Vec::new(),
            forwards: Vec::new(),
            exit: None,
        }
    }

    /// Puts a layer (TLS) between the client socket and the session: `wrap` gets the socket
    /// and returns the layer over it.
    ///
    /// # Errors
    /// What `wrap` returns (the connection then has no client and should be closed).
    pub fn layer_client(
        &mut self,
        wrap: impl FnOnce(Stream) -> io::Result<Box<dyn Surface>>,
    ) -> io::Result<()> {
        let Some(side) = self.sides.client.take() else {
            return Err(io::Error::other("no client to wrap"));
        };
        let Endpoint::Stream(stream) = side.surface else {
            self.sides.client = Some(side);
            return Err(io::Error::other("the client is already wrapped"));
        };
        let readable = side.readable;
        let mut layered = Side::new(Endpoint::Layer(wrap(stream)?));
        layered.readable = readable;
        self.sides.client = Some(layered);
        Ok(())
    }

    /// What the client's TLS layer negotiated, if it has one and its handshake is done.
    pub fn tls_info(&self) -> Option<std::sync::Arc<str>> {
        self.sides.get(Peer::Client)?.surface.layer()?.tls_info()
    }

    /// When a layer of the client or upstream gives up (a TLS handshake's timeout).
    fn layer_deadline(&self) -> Option<Instant> {
        [Peer::Client, Peer::Upstream]
            .into_iter()
            .filter_map(|p| self.sides.get(p)?.surface.layer()?.deadline())
            .min()
    }

    /// The client's address as records show it.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the session has been told about the drain.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// The descriptor of a source, if it is open.
    pub fn fd(&self, source: Source) -> Option<RawFd> {
        match source {
            Source::Peer(p) => self.sides.get(p).map(|s| s.surface.raw_fd()),
            Source::ChildExit(id) => self.sides.kid(id)?.process.as_ref().map(Child::exit_fd),
        }
    }

    /// Descriptors opened since the last call (an upstream, a child's pipes): a waiter that
    /// keeps registrations (epoll) registers them.
    pub fn take_opened(&mut self) -> Vec<Source> {
        std::mem::take(&mut self.opened)
    }

    /// What to watch, for a waiter that asks anew each time (`poll`): reads the session
    /// wants on descriptors not known to be readable, writes that are blocked, the connect in
    /// progress and the children's exits.
    pub fn interest(&self) -> Vec<Interest> {
        let mut out = Vec::with_capacity(2);
        for i in 0..self.sides.peer_count() {
            let p = self.sides.peer_at(i);
            let Some(side) = self.sides.get(p) else {
                continue;
            };
            let connecting = p == Peer::Upstream && self.connecting.is_some();
            let read = !connecting
                && !side.readable
                && (self.wants_read(p)
                    || self.forwards.iter().any(|f| f.from == p && f.wants_input()))
                && side.pending.len() < MAX_PENDING_INPUT;
            let write = connecting || !side.writable;
            if read || write {
                out.push(Interest {
                    source: Source::Peer(p),
                    fd: side.surface.raw_fd(),
                    read,
                    write,
                });
            }
        }
        for k in &self.sides.children {
            if let Some(c) = &k.process {
                out.push(Interest {
                    source: Source::ChildExit(k.id),
                    fd: c.exit_fd(),
                    read: true,
                    write: false,
                });
            }
        }
        out
    }

    /// The earliest moment something is due: the session's deadline, a connect attempt's
    /// timeout, or the write timeout of a stalled write.
    pub fn deadline(&self, write_timeout: Duration) -> Option<Instant> {
        [
            self.session.deadline(),
            self.connecting.as_ref().map(|c| c.deadline),
            self.write_stalled_since.map(|t| t + write_timeout),
            self.layer_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A waiter learned that `source` is ready.
    pub fn ready(&mut self, source: Source, r: Readiness, turn: &mut Turn<'_>) {
        match source {
            Source::ChildExit(id) => self.reap(id, turn.now),
            Source::Peer(p) => {
                let Some(side) = self.sides.get_mut(p) else {
                    return; // a stale event for a descriptor already closed
                };
                side.readable |= r.readable || r.read_closed || r.error;
                // A layer's own output waits for room: the next read sends it first.
                side.readable |=
                    r.writable && side.surface.layer().is_some_and(|l| l.wants_write());
                side.read_closed |= r.read_closed || r.error;
                side.writable |= r.writable || r.error;
                if p == Peer::Upstream && self.connecting.is_some() {
                    self.finish_connect(turn);
                }
            }
        }
    }

    /// The first run of a just-accepted connection: its input is tried without waiting for
    /// the waiter to report it (most clients send their request right after connecting).
    pub fn assume_readable(&mut self) {
        if let Some(side) = self.sides.get_mut(Peer::Client) {
            side.readable = true;
        }
    }

    /// The server is draining: tell the session.
    pub fn drain(&mut self, now: Instant) {
        if !self.drained {
            self.drained = true;
            self.session.drain(now);
        }
    }

    /// Whatever of ours is due at `turn.now` fires. `Close` when a write made no progress
    /// for the write timeout.
    pub fn on_deadline(&mut self, turn: &mut Turn<'_>) -> Flow {
        let now = turn.now;
        if self
            .write_stalled_since
            .is_some_and(|t| t + turn.write_timeout <= now)
        {
            log::debug!(
                "connection from {}: write timeout: peer is not reading",
                self.peer
            );
            return Flow::Close;
        }
        if self.layer_deadline().is_some_and(|d| d <= now) {
            log::debug!("connection from {}: TLS handshake timed out", self.peer);
            return Flow::Close;
        }
        if self.connecting.as_ref().is_some_and(|c| c.deadline <= now) {
            self.sides.set(Peer::Upstream, None);
            if let Some(c) = &mut self.connecting {
                let target = c.current.take().map_or_else(String::new, |t| t.to_string());
                c.last_error = Some(format!("{target}: connect timed out"));
            }
            self.next_connect_attempt(turn);
        }
        if self.session.deadline().is_some_and(|d| d <= now) {
            self.session.timed_out(now);
        }
        Flow::Open
    }

    /// Performs the session's actions until one would block, the budget is used up, or the
    /// session is done.
    pub fn pump(&mut self, turn: &mut Turn<'_>) -> Flow {
        match self.try_pump(turn) {
            Ok(flow) => flow,
            Err(e) => {
                log::debug!("connection from {}: {e}", self.peer);
                Flow::Close
            }
        }
    }

    fn wants_read(&self, p: Peer) -> bool {
        wants_read(&*self.session, p)
    }

    fn side(&mut self, p: Peer) -> io::Result<&mut Side> {
        self.sides
            .get_mut(p)
            .ok_or_else(|| io::Error::other(format!("no {p:?} to act on")))
    }

    fn try_pump(&mut self, turn: &mut Turn<'_>) -> io::Result<Flow> {
        let mut budget = IO_BUDGET;
        loop {
            while let Some(line) = self.session.take_log() {
                turn.records.push(Record::Access(line));
            }
            while let Some(line) = self.session.take_stderr() {
                turn.records.push(Record::Stderr(line));
            }
            if budget == 0 {
                return Ok(Flow::Yield);
            }
            let last = self.session.closes_after_output();
            let now = turn.now;
            let stop = match self.session.next_action() {
                Action::Write(p, buf) => {
                    let Some(side) = self.sides.get_mut(p) else {
                        if matches!(p, Peer::Child(..)) {
                            // Its pipe is closed already: nobody reads it any more.
                            self.session.eof(p, now);
                            continue;
                        }
                        return Err(io::Error::other(format!("no {p:?} to write to")));
                    };
                    if !side.writable {
                        Stop::WriteBlocked
                    } else {
                        budget -= 1;
                        let (sent, nonempty) =
                            (side.surface.surface().try_write(buf, last), !buf.is_empty());
                        if let (Peer::Child(..), Err(e)) = (p, &sent)
                            && !would_block(e)
                            && e.kind() != io::ErrorKind::Interrupted
                        {
                            // EPIPE: the child (and everything holding its stdin) is gone or
                            // closed it. That ends this pipe, not the connection.
                            self.sides.set(p, None);
                            self.session.eof(p, now);
                            continue;
                        }
                        match self.wrote(p, sent, nonempty, None, now)? {
                            Step::Again => continue,
                            Step::Yield => return Ok(Flow::Yield),
                            Step::Blocked => Stop::WriteBlocked,
                        }
                    }
                }
                Action::SendBody { body, offset, len } => {
                    let side = self
                        .sides
                        .get_mut(Peer::Client)
                        .ok_or_else(|| io::Error::other("no client"))?;
                    if !side.writable {
                        Stop::WriteBlocked
                    } else {
                        budget -= 1;
                        let burst = turn.sendfile_burst;
                        let want = (len as usize).min(burst);
                        let fd = body.fd();
                        if want as u64 == len && fd.is_some() && !body.unchanged() {
                            // The file was edited while it went out: what the client holds
                            // may mix two versions, so it must not get a complete response
                            // under the old length and validators.
                            return Err(io::Error::other("file changed while being sent"));
                        }
                        let sent = match fd {
                            Some(fd) => match side.surface.surface().try_sendfile(fd, offset, want)
                            {
                                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                                    copy_body(side, body, offset, want, turn.scratch, last)
                                }
                                r => r,
                            },
                            None => copy_body(side, body, offset, want, turn.scratch, last),
                        };
                        if matches!(sent, Ok(0)) && len > 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while being sent",
                            ));
                        }
                        match self.wrote(Peer::Client, sent, len > 0, Some((len, burst)), now)? {
                            Step::Again => continue,
                            Step::Yield => return Ok(Flow::Yield),
                            Step::Blocked => Stop::WriteBlocked,
                        }
                    }
                }
                Action::Forward { from, to } => {
                    self.start_forward(from, to, now);
                    continue;
                }
                Action::Connect => {
                    self.start_connect(turn);
                    continue;
                }
                Action::Spawn(id, req) => {
                    let req = req.clone();
                    self.spawn(id, &req, turn);
                    continue;
                }
                Action::Kill(id, signal) => {
                    if let Some(c) = self.sides.kid(id).and_then(|k| k.process.as_ref()) {
                        c.kill_group(signal);
                    }
                    continue;
                }
                Action::Shutdown(p) => {
                    if matches!(p, Peer::Child(..)) {
                        // A pipe has one direction: closing it is the shutdown.
                        self.sides.set(p, None);
                    } else {
                        // The peer may already be gone; the session learns that from its
                        // reads.
                        let _ = self.side(p)?.surface.surface().shutdown_write();
                    }
                    continue;
                }
                Action::Close => return Ok(Flow::Close),
                Action::Wait => Stop::Waiting,
            };
            // Waiting, or blocked on a write: offer held input again, then read what is
            // ready. Reading while a write is blocked is what keeps a relay from deadlocking
            // when both directions are full; the session's `wants_read` is the backpressure.
            if self.refeed(now) {
                continue;
            }
            if self.read_ready(turn, stop, &mut budget)? {
                continue;
            }
            let mut forward_blocked = false;
            if !self.forwards.is_empty()
                && self.run_forwards(now, &mut budget, &mut forward_blocked)?
            {
                continue;
            }
            if (stop == Stop::WriteBlocked || forward_blocked) && self.write_stalled_since.is_none()
            {
                self.write_stalled_since = Some(now);
            }
            return Ok(Flow::Open);
        }
    }

    /// The outcome of one write or body send to `p`: counts, the session told, the write
    /// stall cleared; `nonempty` when zero bytes going out means the peer is gone; `body` is
    /// the body length still to send and the burst, after a full one of which the connection
    /// yields.
    fn wrote(
        &mut self,
        p: Peer,
        sent: io::Result<usize>,
        nonempty: bool,
        body: Option<(u64, usize)>,
        now: Instant,
    ) -> io::Result<Step> {
        match sent {
            Ok(0) if nonempty => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                if p == Peer::Client {
                    self.bytes_out += n as u64;
                }
                self.write_stalled_since = None;
                self.session.written(p, n, now);
                // A full burst went out: let the others have theirs.
                Ok(match body {
                    Some((len, burst)) if n == burst && (n as u64) < len => Step::Yield,
                    _ => Step::Again,
                })
            }
            Err(e) if would_block(&e) => {
                if let Some(side) = self.sides.get_mut(p) {
                    side.writable = false;
                }
                Ok(Step::Blocked)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::Again),
            Err(e) => Err(e),
        }
    }

    /// Offers held input again (the session may have room now). True if it took some.
    fn refeed(&mut self, now: Instant) -> bool {
        let mut progress = false;
        for i in 0..self.sides.peer_count() {
            let p = self.sides.peer_at(i);
            let Some(side) = self.sides.get_mut(p) else {
                continue;
            };
            if side.pending.is_empty() || !wants_read(&*self.session, p) {
                continue;
            }
            let used = self
                .session
                .feed(p, &side.pending, now)
                .min(side.pending.len());
            consume(&mut side.pending, used);
            progress |= used > 0;
        }
        progress
    }

    /// Reads once from the first peer that is readable and wanted. True if something
    /// happened the session must see (input or EOF).
    fn read_ready(
        &mut self,
        turn: &mut Turn<'_>,
        stop: Stop,
        budget: &mut u32,
    ) -> io::Result<bool> {
        let now = turn.now;
        for i in 0..self.sides.peer_count() {
            let p = self.sides.peer_at(i);
            let Some(side) = self.sides.get_mut(p) else {
                continue;
            };
            if !side.readable || !wants_read(&*self.session, p) {
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
            let n = match side.surface.surface().try_read(turn.scratch) {
                Ok(n) => n,
                Err(e) if would_block(&e) => {
                    side.readable = false;
                    if side.surface.layer().is_some_and(|l| l.wants_write()) {
                        // The socket is full: wait until it is writable (see `ready`).
                        side.writable = false;
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
                Err(e) => return Err(e),
            };
            if n == 0 {
                side.readable = false;
                self.session.eof(p, now);
                if matches!(p, Peer::Child(..)) {
                    // A pipe at EOF has nothing more to give; closing it frees the slot
                    // once the child is reaped too.
                    self.sides.set(p, None);
                }
                return Ok(true);
            }
            if p == Peer::Client {
                self.bytes_in += n as u64;
            }
            if n < turn.scratch.len() && !side.read_closed {
                // A short read emptied the descriptor; more data brings a new edge.
                side.readable = false;
            }
            if side.pending.is_empty() {
                // The common case: the session parses straight from the waiter's buffer.
                let used = self.session.feed(p, &turn.scratch[..n], now).min(n);
                side.pending.extend_from_slice(&turn.scratch[used..n]);
            } else {
                side.pending.extend_from_slice(&turn.scratch[..n]);
                let used = self
                    .session
                    .feed(p, &side.pending, now)
                    .min(side.pending.len());
                consume(&mut side.pending, used);
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn start_connect(&mut self, turn: &mut Turn<'_>) {
        let Some(addr) = turn.service.upstream() else {
            self.session.connected(false, turn.now);
            return;
        };
        match Connecting::new(addr, turn.now) {
            Ok(c) => {
                self.connecting = Some(Box::new(c));
                self.next_connect_attempt(turn);
            }
            Err(e) => self.connect_failed(turn, &e.to_string()),
        }
    }

    /// Starts a connect to the next address left, or reports failure when none is.
    fn next_connect_attempt(&mut self, turn: &mut Turn<'_>) {
        loop {
            let Some(c) = self.connecting.as_mut() else {
                return;
            };
            let Some(target) = c.rest.pop_front() else {
                let why = c.last_error.take().unwrap_or_else(|| "no address".into());
                self.connect_failed(turn, &why);
                return;
            };
            c.deadline = turn.now + connect::CONNECT_TIMEOUT;
            c.current = Some(target.clone());
            match connect::start(&target) {
                Ok((stream, done)) => {
                    self.sides
                        .set(Peer::Upstream, Some(Side::new(Endpoint::Stream(stream))));
                    self.opened.push(Source::Peer(Peer::Upstream));
                    if done {
                        self.connecting = None;
                        self.session.connected(true, turn.now);
                    }
                    return;
                }
                Err(e) => c.last_error = Some(format!("{target}: {e}")),
            }
        }
    }

    /// The upstream socket reported: see whether the connect in progress finished.
    fn finish_connect(&mut self, turn: &mut Turn<'_>) {
        let Some(Endpoint::Stream(stream)) = self.sides.get(Peer::Upstream).map(|s| &s.surface)
        else {
            return;
        };
        match connect::outcome(stream) {
            None => {}
            Some(Ok(())) => {
                self.connecting = None;
                self.session.connected(true, turn.now);
            }
            Some(Err(e)) => {
                // Closing the socket also removes it from an epoll set.
                self.sides.set(Peer::Upstream, None);
                if let Some(c) = &mut self.connecting {
                    let target = c.current.take().map_or_else(String::new, |t| t.to_string());
                    c.last_error = Some(format!("{target}: {e}"));
                }
                self.next_connect_attempt(turn);
            }
        }
    }

    fn connect_failed(&mut self, turn: &mut Turn<'_>, why: &str) {
        self.connecting = None;
        self.sides.set(Peer::Upstream, None);
        turn.records.push(Record::Error(format!(
            "{}: cannot reach upstream: {why}",
            turn.service.name()
        )));
        self.session.connected(false, turn.now);
    }

    fn spawn(&mut self, id: ChildId, req: &SpawnRequest, turn: &mut Turn<'_>) {
        if self.sides.kid(id).is_some() {
            turn.records.push(Record::Error(format!(
                "{}: child slot {} is still in use",
                turn.service.name(),
                id.0
            )));
            self.session.spawned(id, None, turn.now);
            return;
        }
        match Child::spawn(req) {
            Ok((child, (stdin, stdout, stderr))) => {
                let pid = child.pid();
                let side = |pipe| {
                    let mut side = Side::new(Endpoint::Pipe(pipe));
                    // A pipe's read end has nothing in it yet.
                    side.readable = false;
                    Some(side)
                };
                self.sides.children.push(Kid {
                    id,
                    process: Some(child),
                    pipes: [side(stdin), side(stdout), side(stderr)],
                });
                for s in Stdio::ALL {
                    self.opened.push(Source::Peer(Peer::Child(id, s)));
                }
                self.opened.push(Source::ChildExit(id));
                self.session.spawned(id, Some(pid), turn.now);
            }
            Err(e) => {
                turn.records.push(Record::Error(format!(
                    "{}: cannot run {}: {e}",
                    turn.service.name(),
                    req.program
                )));
                self.session.spawned(id, None, turn.now);
            }
        }
    }

    /// A child's exit descriptor fired: reap it and tell the session. Its pipes stay until
    /// they reach EOF, so output it wrote just before exiting is not lost.
    fn reap(&mut self, id: ChildId, now: Instant) {
        let Some(kid) = self.sides.kid_mut(id) else {
            return;
        };
        let Some(child) = kid.process.as_mut() else {
            return;
        };
        if let Some(exit) = child.try_reap() {
            log::debug!(
                "connection from {}: child {} ended: {exit:?}",
                self.peer,
                child.pid()
            );
            kid.process = None;
            self.sides.prune();
            self.exit = Some(exit);
            self.session.exited(id, exit, now);
        }
    }

    /// The connection is over: its last log lines and its record.
    pub fn finish(mut self, records: &mut Vec<Record>, now: Instant, by: u32) {
        self.session.closed(now);
        while let Some(line) = self.session.take_log() {
            records.push(Record::Access(line));
        }
        while let Some(line) = self.session.take_stderr() {
            records.push(Record::Stderr(line));
        }
        records.push(Record::Connection {
            peer: std::mem::take(&mut self.peer),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration_us: now.saturating_duration_since(self.started).as_micros() as u64,
            by,
            exit: self.exit,
        });
    }
}

/// Sends a body piece through a surface that takes no kernel copies (or a body with no
/// descriptor): read it into the scratch buffer, write what the surface takes. A short write
/// re-reads the rest next time, which costs a read but holds no buffer per connection.
fn copy_body(
    side: &mut Side,
    body: &dyn plumb_proto::session::Body,
    offset: u64,
    want: usize,
    scratch: &mut [u8],
    last: bool,
) -> io::Result<usize> {
    let n = want.min(scratch.len());
    let got = body.read_at(&mut scratch[..n], offset)?;
    if got == 0 {
        return Ok(0);
    }
    side.surface
        .surface()
        .try_write(&scratch[..got], last && got == want)
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
    fn sources_round_trip_through_their_index() {
        for i in 0..Source::COUNT {
            let s = Source::from_index(i).expect("every index below COUNT names a source");
            assert_eq!(s.index(), i);
        }
        assert_eq!(Source::from_index(Source::COUNT), None);
        let last = Source::ChildExit(ChildId(255));
        assert_eq!(last.index(), Source::COUNT - 1);
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
