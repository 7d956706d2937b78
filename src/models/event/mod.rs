//! The event model (nginx, lighttpd, h2o): `--workers` threads, each one non-blocking epoll
//! loop (mio) with its own `SO_REUSEPORT` listener, so the kernel spreads new connections
//! across the loops and they share nothing. A loop serves thousands of connections at once and
//! an idle one costs a slot, its session and a heap entry, not a thread and a stack: the
//! lecture's answer to the thread pool being starved by slow or idle clients. What it costs:
//! whatever blocks blocks the whole loop. Sockets never do here, but opening and reading a
//! file (HTTP) and resolving a relay's upstream name run in the loop: quick from the page
//! cache and /etc/hosts, a stall for every connection of the loop on a slow disk or DNS
//! server (nginx has the same limit without its thread pools). Likewise a session that
//! computes for long delays its neighbours.
//!
//! UNIX listeners cannot use `SO_REUSEPORT`; every loop polls the one shared socket and the
//! losers of a race get `EAGAIN`. Signals reach the loops the way they reach every in-process
//! model: the supervisor turns them into the drain and hard-stop pipes, which each loop polls.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::{Server, in_process, is_out_of_descriptors};
use crate::drive::timers::{Deadlines, Due};
use crate::drive::{Connection, Flow, READ_CHUNK, Readiness, SENDFILE_CHUNK, Source, Turn};
use crate::net::Stream;
use crate::report::{Record, Summary};

mod listen;
mod records;
mod slab;

use listen::{LoopListener, loop_listeners};
use records::Batcher;
use slab::Slab;

/// A connection in the loop: the machine, and what the loop's timer heap knows of it.
struct Conn {
    /// Unique for the loop's lifetime (slots are reused, ids are not).
    id: u64,
    /// The deadline this connection has in the heap, if any.
    armed: Option<Instant>,
    machine: Connection,
}

/// Bits of a token that name the source within a connection (below [`Source::COUNT`]).
const SOURCE_BITS: u32 = 11;
const _: () = assert!(Source::COUNT <= 1 << SOURCE_BITS);

/// The token of a connection's descriptor: slot and source packed together.
fn token(slot: usize, source: Source) -> Token {
    Token(slot << SOURCE_BITS | source.index())
}

/// The inverse of [`token`].
fn slot_of(t: Token) -> (usize, Option<Source>) {
    (
        t.0 >> SOURCE_BITS,
        Source::from_index(t.0 & ((1 << SOURCE_BITS) - 1)),
    )
}

/// The hard-stop pipe.
const HARD: Token = Token(usize::MAX);
/// The drain pipe.
const DRAIN: Token = Token(usize::MAX - 1);
/// Listener `i` has token `LISTENERS - i` (connection tokens count up from 0).
const LISTENERS: usize = usize::MAX - 2;
/// Events taken from the kernel per `epoll_wait`.
const EVENTS: usize = 1024;
/// Connections accepted from one listener before the loop turns to the others.
const ACCEPT_BATCH: usize = 256;
/// How long accepting pauses when the process is out of descriptors.
const EMFILE_PAUSE: Duration = Duration::from_millis(100);

pub fn run(server: &Server) -> io::Result<Summary> {
    // Every connection is a descriptor (two for a relay): allow as many as the system lets us.
    if let Err(e) = plumb_sys::raise_nofile_limit() {
        log::warn!("cannot raise the descriptor limit: {e}");
    }
    let loops = server.options.workers.max(1);
    let mut sets = Vec::with_capacity(loops);
    for i in 0..loops {
        sets.push(loop_listeners(
            &server.listeners,
            i,
            server.service.client_speaks_first(),
        )?);
    }
    in_process(server, |reporter| {
        let batcher = Batcher::default();
        let mut event_loops = Vec::with_capacity(loops);
        for listeners in sets {
            event_loops.push(EventLoop::new(server, listeners, batcher.clone())?);
        }
        let mut event_loops = event_loops.into_iter();
        let Some(first) = event_loops.next() else {
            return Ok(());
        };
        thread::scope(|scope| {
            let forwarder = batcher.clone();
            thread::Builder::new()
                .name("plumb-records".into())
                .spawn_scoped(scope, move || forwarder.forward(reporter))?;
            // However the loops end, the forwarder must too, or the scope never returns.
            let _close = CloseOnDrop(&batcher);
            let mut handles = Vec::new();
            for (i, lp) in event_loops.enumerate() {
                let spawned = thread::Builder::new()
                    .name(format!("plumb-event-{}", i + 1))
                    .spawn_scoped(scope, move || lp.run());
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        // Wind down the loops already running, then report.
                        server.shutdown.begin_drain();
                        return Err(e);
                    }
                }
            }
            let mut result = first.run();
            for h in handles {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("an event loop panicked")));
                result = result.and(r);
            }
            result
        })
    })
}

struct EventLoop<'s> {
    server: &'s Server,
    poll: Poll,
    registry: Registry,
    listeners: Vec<LoopListener>,
    /// A listener reported a connection that has not been accepted yet.
    listener_ready: Vec<bool>,
    /// Out of descriptors: no accepts until then.
    accept_paused_until: Option<Instant>,
    conns: Slab<Conn>,
    /// This loop's share of `--max-connections`: when it holds that many, new clients wait in
    /// the kernel backlog (descriptors must not run out, or a relay to itself would loop
    /// until they do).
    max_conns: usize,
    deadlines: Deadlines,
    /// Connections that used up their turn with work left, and their ids.
    again: Vec<(usize, u64)>,
    scratch: Box<[u8]>,
    /// Records of this turn, sent together before the loop sleeps.
    records: Vec<Record>,
    batcher: Batcher,
    next_id: u64,
    draining: bool,
    by: u32,
}

impl<'s> EventLoop<'s> {
    fn new(
        server: &'s Server,
        mut listeners: Vec<LoopListener>,
        batcher: Batcher,
    ) -> io::Result<EventLoop<'s>> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        for (i, l) in listeners.iter_mut().enumerate() {
            l.register(&registry, Token(LISTENERS - i))?;
        }
        for (fd, token) in [
            (server.shutdown.drain_fd(), DRAIN),
            (server.shutdown.hard_fd(), HARD),
        ] {
            registry.register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        }
        Ok(EventLoop {
            server,
            poll,
            registry,
            listener_ready: vec![false; listeners.len()],
            listeners,
            accept_paused_until: None,
            conns: Slab::default(),
            // Rounded up: with SO_REUSEPORT each loop has its own queue, so the shares cannot
            // be lent between loops; the total exceeds the cap by less than one per loop.
            max_conns: server
                .options
                .max_connections
                .div_ceil(server.options.workers.max(1)),
            deadlines: Deadlines::default(),
            again: Vec::new(),
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
            records: Vec::new(),
            batcher,
            next_id: 0,
            draining: false,
            by: 0,
        })
    }

    /// Serves until the drain has finished every connection, or the hard stop.
    fn run(mut self) -> io::Result<()> {
        self.by = plumb_sys::gettid() as u32;
        let mut events = Events::with_capacity(EVENTS);
        while !(self.draining && self.conns.is_empty()) {
            self.flush_records();
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            let (mut drain, mut hard) = (false, false);
            for event in events.iter() {
                match event.token() {
                    HARD => hard = true,
                    DRAIN => drain = true,
                    Token(t) if t > LISTENERS - self.listener_ready.len() && t <= LISTENERS => {
                        self.listener_ready[LISTENERS - t] = true;
                    }
                    t => {
                        let readiness = Readiness {
                            readable: event.is_readable(),
                            writable: event.is_writable(),
                            read_closed: event.is_read_closed(),
                            error: event.is_error(),
                        };
                        self.on_conn_event(t, readiness, now);
                    }
                }
            }
            if hard {
                self.close_all(now);
                break;
            }
            if drain && !self.draining {
                self.start_drain(now);
            }
            self.accept_ready(now);
            self.fire_deadlines(now);
            self.run_again(now);
        }
        self.flush_records();
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let paused = self.accept_paused_until.is_some();
        let can_accept = !paused && self.conns.len() < self.max_conns;
        if !self.again.is_empty() || (can_accept && self.listener_ready.iter().any(|&r| r)) {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        [self.deadlines.next(), self.accept_paused_until]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    fn flush_records(&mut self) {
        self.batcher.push(&mut self.records);
    }

    /// Splits the loop into the connection table and what a connection borrows.
    fn io(&mut self, now: Instant) -> (&mut Slab<Conn>, Turn<'_>, &Registry) {
        (
            &mut self.conns,
            Turn {
                scratch: &mut self.scratch,
                records: &mut self.records,
                service: &*self.server.service,
                write_timeout: self.server.options.write_timeout,
                now,
                sendfile_burst: SENDFILE_CHUNK,
            },
            &self.registry,
        )
    }

    fn on_conn_event(&mut self, t: Token, r: Readiness, now: Instant) {
        let (slot, source) = slot_of(t);
        let Some(source) = source else { return };
        let (conns, mut turn, _) = self.io(now);
        // None: a stale event for a connection closed earlier in this batch.
        let Some(c) = conns.get_mut(slot) else { return };
        c.machine.ready(source, r, &mut turn);
        let flow = c.machine.pump(&mut turn);
        self.settle(slot, flow, now);
    }

    /// After a connection ran: close it, or (re)arm its deadline and queue another turn.
    fn settle(&mut self, slot: usize, mut flow: Flow, now: Instant) {
        if flow != Flow::Close
            && let Some(c) = self.conns.get_mut(slot)
            && let Err(e) = register_opened(&self.registry, slot, &mut c.machine)
        {
            log::warn!("cannot watch a connection's new descriptor: {e}");
            flow = Flow::Close;
        }
        if flow == Flow::Close {
            if let Some(c) = self.conns.remove(slot) {
                c.machine.finish(&mut self.records, now, self.by);
            }
            self.compact_deadlines();
            return;
        }
        let write_timeout = self.server.options.write_timeout;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if flow == Flow::Yield {
            self.again.push((slot, c.id));
        }
        if let Some(at) = c.machine.deadline(write_timeout) {
            // Only an earlier deadline needs an entry; a later one is found when the
            // armed entry fires (see `timers`).
            if c.armed.is_none_or(|armed| at < armed) {
                c.armed = Some(at);
                self.deadlines.push(Due { at, slot, id: c.id });
            }
        }
    }

    /// Drops the heap entries of closed connections once they outnumber the live ones.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.conns.len() + 1024 {
            return;
        }
        let conns = &mut self.conns;
        self.deadlines.retain(|due| {
            conns
                .get_mut(due.slot)
                .is_some_and(|c| c.id == due.id && c.armed == Some(due.at))
        });
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(due) = self.deadlines.pop_due(now) {
            let (conns, mut turn, _) = self.io(now);
            let Some(c) = conns.get_mut(due.slot) else {
                continue;
            };
            if c.id != due.id || c.armed != Some(due.at) {
                continue; // stale: superseded by an earlier deadline, or another connection
            }
            c.armed = None;
            let flow = match c.machine.on_deadline(&mut turn) {
                Flow::Close => Flow::Close,
                _ => c.machine.pump(&mut turn),
            };
            self.settle(due.slot, flow, now);
        }
    }

    fn run_again(&mut self, now: Instant) {
        for (slot, id) in std::mem::take(&mut self.again) {
            let (conns, mut turn, _) = self.io(now);
            let Some(c) = conns.get_mut(slot).filter(|c| c.id == id) else {
                continue;
            };
            let flow = c.machine.pump(&mut turn);
            self.settle(slot, flow, now);
        }
    }

    fn accept_ready(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|t| now < t) {
            return;
        }
        if self.accept_paused_until.take().is_some() {
            // The connections that waited through the pause brought no new edge.
            self.listener_ready.iter_mut().for_each(|r| *r = true);
        }
        for i in 0..self.listeners.len() {
            if self.listener_ready[i] {
                self.accept_from(i, now);
            }
        }
    }

    fn accept_from(&mut self, i: usize, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            if self.conns.len() >= self.max_conns {
                // Full: the listener stays marked ready and is served once one closes.
                return;
            }
            match self.listeners[i].accept() {
                Ok((stream, peer)) => self.open(i, stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready[i] = false;
                    return;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of descriptors (or kernel memory): the connection stays queued and
                    // the listener stays readable, so pause rather than spin.
                    if is_out_of_descriptors(&e) {
                        warn_out_of_descriptors();
                    } else {
                        log::warn!("accept: {e}");
                    }
                    self.accept_paused_until = Some(now + EMFILE_PAUSE);
                    return;
                }
            }
        }
    }

    fn open(&mut self, listener: usize, stream: Stream, peer: Option<SocketAddr>, now: Instant) {
        let peer = peer.map_or_else(|| "unix".into(), |a| a.to_string());
        let session = self.server.service.session_on(&stream, &peer, now);
        self.next_id += 1;
        let mut machine = Connection::new(session, stream, peer, now);
        // The loop's listeners are the server's, in the same order.
        if let Some(tls) = self.server.tls.for_index(listener)
            && let Err(e) = machine.layer_client(|s| {
                crate::drive::tls::TlsStream::server(s, tls, now).map(|t| Box::new(t) as _)
            })
        {
            log::warn!("connection from {}: TLS: {e}", machine.peer());
            return;
        }
        // Most clients send their request right after connecting, so it is usually here
        // already: serve it now instead of after another trip through epoll (a wasted read
        // when it is not). A connection that is done by then never enters the poll set; any
        // other is registered after the fact, and since registering reports the readiness
        // the socket has at that moment, nothing that arrived meanwhile is missed.
        machine.assume_readable();
        let slot = self.conns.insert(Conn {
            id: self.next_id,
            armed: None,
            machine,
        });
        let (conns, mut turn, registry) = self.io(now);
        let Some(c) = conns.get_mut(slot) else { return };
        let flow = c.machine.pump(&mut turn);
        if flow != Flow::Close
            && let Err(e) = register(registry, slot, &c.machine, Source::CLIENT)
        {
            log::warn!("cannot watch a new connection: {e}");
            self.settle(slot, Flow::Close, now);
            return;
        }
        self.settle(slot, flow, now);
    }

    /// Stops accepting and asks every session to finish at its next clean point.
    fn start_drain(&mut self, now: Instant) {
        self.draining = true;
        for l in &mut self.listeners {
            let _ = match l {
                LoopListener::Tcp(l) => self.registry.deregister(l),
                LoopListener::Unix(l) => self.registry.deregister(l),
            };
        }
        self.listeners.clear();
        self.listener_ready.clear();
        for slot in self.conns.keys() {
            let (conns, mut turn, _) = self.io(now);
            let Some(c) = conns.get_mut(slot) else {
                continue;
            };
            c.machine.drain(now);
            let flow = c.machine.pump(&mut turn);
            self.settle(slot, flow, now);
        }
    }

    fn close_all(&mut self, now: Instant) {
        for slot in self.conns.keys() {
            self.settle(slot, Flow::Close, now);
        }
    }
}

/// Registers one of a connection's descriptors with the loop (edge-triggered: the loop keeps
/// readiness flags, see [`crate::drive::connection`]).
fn register(registry: &Registry, slot: usize, c: &Connection, source: Source) -> io::Result<()> {
    let Some(fd) = c.fd(source) else {
        return Ok(());
    };
    let interest = match source {
        Source::ChildExit(_) => Interest::READABLE,
        Source::Peer(_) => Interest::READABLE | Interest::WRITABLE,
    };
    registry.register(&mut SourceFd(&fd), token(slot, source), interest)
}

/// Registers the descriptors a connection opened while it ran (an upstream, a child's pipes);
/// a closed descriptor left the epoll set by itself.
fn register_opened(registry: &Registry, slot: usize, c: &mut Connection) -> io::Result<()> {
    for source in c.take_opened() {
        register(registry, slot, c, source)?;
    }
    Ok(())
}

/// Closes the record queue when dropped (the loops have ended, normally or not).
struct CloseOnDrop<'a>(&'a Batcher);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn warn_out_of_descriptors() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("plumb: out of file descriptors; pausing accepts until some are free");
    }
}
