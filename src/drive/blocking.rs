//! The blocking waiter: one thread (or process) waits for one connection with `poll(2)` on
//! the descriptors its [`Connection`] names, beside the drain and hard-stop broadcasts.
//! Every blocking model (iterative, fork-wait, fork, thread, pool, prefork) calls
//! [`serve_connection`] or, in the pool, [`drive`] with [`Mode::Park`]; they differ only in
//! *who* calls it. The work itself is [`Connection::pump`], shared with the event loop.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use plumb_sys::{PollFd, events};

use super::connection::{Connection, Flow, Interest, Readiness, Turn};
use super::{Context, READ_CHUNK};
use crate::net::Stream;
use crate::report::Record;

/// How long a pool worker waits on a connection before parking it, when no other work is
/// queued.
const PARK_AFTER: Duration = Duration::from_millis(2);

/// How long one blocking write may wait before the waiter re-checks the hard stop and the
/// write timeout.
const WRITE_TICK: Duration = Duration::from_millis(250);

/// Most bytes one blocking `sendfile` sends: the kernel waits for room inside the call, so
/// bursts can be large; bounded so that a file edited while it goes out is still noticed
/// before its last burst (see `Body::unchanged`).
const BLOCKING_SENDFILE_BURST: usize = 1024 * 1024;

/// Turns (waits for the next input) a pool worker gives one connection while others queue.
pub const YIELD_AFTER: u32 = 8;

thread_local! {
    /// One read buffer per thread, zeroed once: a fresh 64 KiB array per read would cost a
    /// memset every time.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// How [`drive`] waits.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// Until the session is done (a thread or process per connection).
    Block,
    /// Stop with [`Progress::Idle`] instead of waiting long (the pool). The function says
    /// whether other work is queued: then the connection waits for nothing and gives its
    /// worker up after [`YIELD_AFTER`] turns, so busy keep-alive clients cannot monopolise
    /// the workers while others queue.
    Park(&'a dyn Fn() -> bool),
}

/// What [`drive`] stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The session is over; call [`finish`].
    Done,
    /// Waiting for readiness or a deadline, and parking was allowed: nothing will happen
    /// until one of [`Connection::interest`] fires or [`Connection::deadline`] passes.
    Idle,
}

/// Serves one accepted connection to its end and reports its record.
pub fn serve_connection(client: Stream, peer: &str, ctx: &Context<'_>) {
    if let Some(mut c) = open(client, peer.to_string(), ctx) {
        drive(&mut c, ctx, Mode::Block);
        finish(c, ctx);
    }
}

/// A connection for an accepted client: `TCP_NODELAY`, with a fresh session. `None`
/// (logged) when the socket cannot be set up.
///
/// The socket stays blocking for writes, with a send timeout of [`WRITE_TICK`]: a thread that
/// serves one connection has nobody to yield to, so a `sendfile` may wait in the kernel for
/// room instead of returning at every full buffer for a `poll` (10 MiB responses under the
/// pool: 13% more server CPU with non-blocking sends). A write that makes no progress within
/// a tick reports "would block" like a non-blocking one, so the pump and this waiter check
/// the hard stop and the write timeout between ticks. Reads never block (`MSG_DONTWAIT`).
pub fn open(client: Stream, peer: String, ctx: &Context<'_>) -> Option<Connection> {
    // An accepted socket is blocking whatever its listener is (Linux does not pass
    // O_NONBLOCK on through accept), so only the send timeout needs setting.
    if let Err(e) = client.set_write_timeout(Some(WRITE_TICK)) {
        log::debug!("connection from {peer}: {e}");
        return None;
    }
    let _ = client.set_nodelay();
    let now = Instant::now();
    let tls = ctx.tls.for_stream(&client).cloned();
    let session = ctx.service.session_on(&client, &peer, now);
    let mut c = Connection::new(session, client, peer, now);
    if let Some(tls) = tls
        && let Err(e) = c
            .layer_client(|s| super::tls::TlsStream::server(s, &tls, now).map(|t| Box::new(t) as _))
    {
        log::warn!("connection from {}: TLS: {e}", c.peer());
        return None;
    }
    c.assume_readable();
    Some(c)
}

/// Runs the connection until it is done, or (in [`Mode::Park`]) until it would wait.
pub fn drive(c: &mut Connection, ctx: &Context<'_>, mode: Mode<'_>) -> Progress {
    SCRATCH.with_borrow_mut(|scratch| drive_with(c, ctx, mode, scratch))
}

fn drive_with(
    c: &mut Connection,
    ctx: &Context<'_>,
    mode: Mode<'_>,
    scratch: &mut [u8],
) -> Progress {
    let mut records = Vec::new();
    let mut turns = 0u32;
    let mut now = Instant::now();
    loop {
        let mut turn = Turn {
            scratch,
            records: &mut records,
            service: ctx.service,
            write_timeout: ctx.write_timeout,
            now,
            sendfile_burst: BLOCKING_SENDFILE_BURST,
        };
        let flow = c.pump(&mut turn);
        deliver(&mut records, ctx);
        match flow {
            Flow::Close => return Progress::Done,
            Flow::Yield => continue,
            Flow::Open => {}
        }
        let patience = match mode {
            Mode::Block => None,
            Mode::Park(others_waiting) => {
                turns += 1;
                let busy = others_waiting();
                if busy && turns > YIELD_AFTER {
                    return Progress::Idle;
                }
                Some(if busy { Duration::ZERO } else { PARK_AFTER })
            }
        };
        match wait(c, ctx, patience, scratch, &mut records) {
            Waited::Event(at) => now = at,
            Waited::HardStop => return Progress::Done,
            Waited::Close => {
                deliver(&mut records, ctx);
                return Progress::Done;
            }
            Waited::Nothing => return Progress::Idle,
        }
        deliver(&mut records, ctx);
    }
}

/// What one wait produced.
enum Waited {
    /// Something happened (readiness, a deadline, the drain) at this instant.
    Event(Instant),
    /// The hard stop fired: close now.
    HardStop,
    /// A deadline closed the connection (a write that made no progress).
    Close,
    /// Parking allowed and nothing to do yet.
    Nothing,
}

/// Waits for what the connection is interested in, its deadline, or a shutdown notice; with
/// a `patience`, at most that long.
fn wait(
    c: &mut Connection,
    ctx: &Context<'_>,
    patience: Option<Duration>,
    scratch: &mut [u8],
    records: &mut Vec<Record>,
) -> Waited {
    let interest: Vec<Interest> = c.interest();
    let mut fds: Vec<PollFd> = interest
        .iter()
        .map(|i| {
            let mut ev = 0;
            if i.read {
                ev |= events::READ;
            }
            if i.write {
                ev |= events::WRITE;
            }
            PollFd::new(i.fd, ev)
        })
        .collect();
    let first_ctl = fds.len();
    fds.push(PollFd::new(ctx.hard_fd, events::READ));
    if !c.drained() {
        fds.push(PollFd::new(ctx.drain_fd, events::READ));
    }
    let deadline = c.deadline(ctx.write_timeout);
    let before = Instant::now();
    let until_deadline = deadline.map(|d| d.saturating_duration_since(before));
    let timeout = match (patience, until_deadline) {
        // A short wait first: a keep-alive client's next request usually follows within
        // microseconds, and catching it here saves a park and resume round trip.
        (Some(p), Some(d)) => Some(p.min(d)),
        (Some(p), None) => Some(p),
        (None, d) => d,
    };
    let ready = match plumb_sys::poll(&mut fds, timeout) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("poll: {e}");
            return Waited::Close;
        }
    };
    let now = Instant::now();
    if fds[first_ctl].ready() {
        return Waited::HardStop;
    }
    if !c.drained() && fds[first_ctl + 1].ready() {
        c.drain(now);
        return Waited::Event(now);
    }
    let mut turn = Turn {
        scratch,
        records,
        service: ctx.service,
        write_timeout: ctx.write_timeout,
        now,
        sendfile_burst: BLOCKING_SENDFILE_BURST,
    };
    if ready == 0 {
        if deadline.is_some_and(|d| now >= d) {
            return match c.on_deadline(&mut turn) {
                Flow::Close => Waited::Close,
                _ => Waited::Event(now),
            };
        }
        return if patience.is_some() {
            Waited::Nothing
        } else {
            Waited::Event(now)
        };
    }
    for (i, f) in interest.iter().zip(&fds) {
        let rev = f.revents();
        if rev == 0 {
            continue;
        }
        let r = Readiness {
            readable: rev & events::READ != 0,
            writable: rev & events::WRITE != 0,
            read_closed: rev & events::HANGUP != 0,
            error: rev & events::ERROR != 0,
        };
        c.ready(i.source, r, &mut turn);
    }
    Waited::Event(now)
}

/// Sends this turn's records to the log writer.
fn deliver(records: &mut Vec<Record>, ctx: &Context<'_>) {
    for r in records.drain(..) {
        ctx.reporter.send(r);
    }
}

/// Reports the connection record (and any last log lines); closes its descriptors.
pub fn finish(c: Connection, ctx: &Context<'_>) {
    let mut records = Vec::new();
    c.finish(&mut records, Instant::now(), ctx.by);
    deliver(&mut records, ctx);
}
