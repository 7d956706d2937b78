//! The load generator's engine: one mio (epoll) event loop per thread, each owning its share
//! of the connections, built like wrk: non-blocking sockets registered once (edge-triggered,
//! read and write), the request bytes built once, responses framed by a sans-IO reader into
//! one shared read buffer (no per-response allocation), a per-thread HdrHistogram merged at
//! the end, and nothing shared between threads on the hot path but a progress counter.
//!
//! Where wrk re-arms write interest with two `epoll_ctl` calls per request, this loop writes
//! the next requests right after handling the batch of events in which their responses
//! completed (one server wake-up for many requests) and only waits for writability when a
//! write would block, so a keep-alive request costs one `write`, one `read` and a share of an
//! `epoll_wait`. Before it sleeps, a closed-loop run polls without blocking for up to 50 us,
//! so neither side pays a wake-up per request (see `Worker::wait`).
//!
//! With `--rate`, each connection sends on a fixed schedule (the connections' schedules are
//! interleaved so requests are evenly spaced) and latency is measured from the scheduled
//! send time, not the actual one: a server that stalls is charged for every request that
//! should have been sent meanwhile (the coordinated-omission correction of wrk2). A timerfd
//! wakes the loop at the scheduled instant with nanosecond resolution.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::{TcpStream, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use plumb::drive::timers::{Deadlines, Due};
use plumb_sys::timerfd::TimerFd;

use super::response::{Complete, RPC_ERROR, Reader, Step};
use super::target::{Endpoint, Target};

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this long (after the warm-up).
    After(Duration),
    /// After this many requests (after the warm-up).
    Requests(u64),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub connections: usize,
    pub threads: usize,
    pub stop: Stop,
    /// Load applied before measuring starts; nothing in it is counted.
    pub warmup: Duration,
    /// Requests sent back to back on a connection before waiting for the responses.
    pub pipeline: usize,
    /// A new connection per request (latency includes the connect).
    pub close: bool,
    /// Requests per second over all connections (None: as fast as responses come).
    pub rate: Option<f64>,
    /// A request unanswered this long counts as a timeout and its connection is replaced.
    pub timeout: Duration,
    /// Set from outside (a signal handler) to end the run early.
    pub abort: Option<Arc<AtomicBool>>,
    /// Longest non-blocking poll before an event loop sleeps ([`SPIN`] for `plumb bench`;
    /// zero when the client shares its cores with the server, as `plumb compare` does
    /// unless the two are pinned apart).
    pub spin: Duration,
}

/// Ways a request can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Read,
    Write,
    Timeout,
    BadResponse,
    /// The server closed the connection with requests outstanding.
    Closed,
}

/// Error counts by kind; `status` counts responses with a 4xx or 5xx status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Errors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub bad_response: u64,
    pub closed: u64,
    pub status: u64,
    /// JSON-RPC error responses (the call was answered, with an error).
    #[serde(default)]
    pub rpc_error: u64,
}

impl Errors {
    fn bump(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Read => self.read += 1,
            ErrorKind::Write => self.write += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::BadResponse => self.bad_response += 1,
            ErrorKind::Closed => self.closed += 1,
        }
    }

    fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.read += o.read;
        self.write += o.write;
        self.timeout += o.timeout;
        self.bad_response += o.bad_response;
        self.closed += o.closed;
        self.status += o.status;
        self.rpc_error += o.rpc_error;
    }

    /// Every kind with its count, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 8] {
        [
            ("connect", self.connect),
            ("read", self.read),
            ("write", self.write),
            ("timeout", self.timeout),
            ("bad_response", self.bad_response),
            ("closed", self.closed),
            ("status", self.status),
            ("rpc_error", self.rpc_error),
        ]
    }

    /// Every failed request and every answer that says it failed (4xx/5xx, JSON-RPC errors).
    pub fn total(&self) -> u64 {
        self.failures() + self.status + self.rpc_error
    }

    /// Failed requests (not counting 4xx/5xx responses, which did complete).
    pub fn failures(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.bad_response + self.closed
    }
}

/// Status codes 0..=999 (0 is an echo reply, 1 and 2 a JSON-RPC result and error).
const STATUS_SLOTS: usize = 1000;

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Totals {
    /// Responses completed in the measured window.
    pub requests: u64,
    /// Bytes received in the measured window.
    pub bytes: u64,
    /// Latency in nanoseconds.
    pub latency: Histogram<u64>,
    /// Count per status code.
    pub status: Vec<u64>,
    pub errors: Errors,
    /// Connections that got no response at all in the measured window: a server that
    /// serves some clients and leaves others waiting (an iterative server, a full pool).
    pub starved: u64,
    /// The measured window.
    pub duration: Duration,
}

impl Totals {
    fn new() -> Totals {
        Totals {
            requests: 0,
            bytes: 0,
            // 1 ns to one hour at three significant figures.
            latency: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            status: vec![0; STATUS_SLOTS],
            errors: Errors::default(),
            starved: 0,
            duration: Duration::ZERO,
        }
    }

    fn merge(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.bytes += o.bytes;
        let _ = self.latency.add(&o.latency);
        for (a, b) in self.status.iter_mut().zip(&o.status) {
            *a += b;
        }
        self.errors.add(&o.errors);
        self.starved += o.starved;
        self.duration = self.duration.max(o.duration);
    }
}

/// A snapshot for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub elapsed: Duration,
    /// Requests completed in the measured window so far.
    pub requests: u64,
}

/// A progress counter on its own cache line, so workers do not share lines.
#[repr(align(64))]
#[derive(Default)]
struct Counter(AtomicU64);

/// Runs the load and returns the merged totals. `on_progress` is called about ten times a
/// second on the calling thread while the workers run.
///
/// # Errors
/// Setup failures (epoll or timerfd creation, thread spawn).
pub fn run(cfg: &Config, mut on_progress: impl FnMut(Progress)) -> anyhow::Result<Totals> {
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let counters: Vec<Counter> = (0..threads).map(|_| Counter::default()).collect();
    let t0 = Instant::now();
    let mut results: Vec<anyhow::Result<Totals>> = Vec::new();
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let mut first_conn = 0;
        for (t, counter) in counters.iter().enumerate() {
            let conns = cfg.connections / threads + usize::from(t < cfg.connections % threads);
            let budget = match cfg.stop {
                Stop::Requests(n) => {
                    Some(n / threads as u64 + u64::from((t as u64) < n % threads as u64))
                }
                Stop::After(_) => None,
            };
            let global = first_conn;
            first_conn += conns;
            let spawned = std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn_scoped(scope, move || {
                    Worker::new(cfg, conns, global, budget, t0, &counter.0)?.run()
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    results.push(Err(anyhow::anyhow!("cannot start a bench thread: {e}")));
                    break;
                }
            }
        }
        // Report progress until every worker is done.
        let mut next_report = Instant::now() + Duration::from_millis(100);
        while !handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
            if Instant::now() >= next_report {
                next_report += Duration::from_millis(100);
                let requests = counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
                on_progress(Progress {
                    elapsed: t0.elapsed(),
                    requests,
                });
            }
        }
        for h in handles {
            results.push(
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a bench thread panicked"))),
            );
        }
    });
    let mut totals = Totals::new();
    for r in results {
        totals.merge(&r?);
    }
    Ok(totals)
}

const TIMER: Token = Token(usize::MAX);
/// Pause before reconnecting after a failed connect, so a dead server is not hammered.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Longest non-blocking poll before an event loop sleeps (closed-loop runs only).
pub const SPIN: Duration = Duration::from_micros(50);
/// Shared read buffer size per thread.
const READ_BUF: usize = 64 * 1024;

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }

    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }
}

struct Conn {
    sock: Option<Sock>,
    /// The connect is known to have completed (a write or read succeeded).
    connected: bool,
    reader: Reader,
    /// The part of the request batch still to write: `batch[out_off..out_len]`.
    out_off: usize,
    out_len: usize,
    /// Start time of each outstanding request: the scheduled time under `--rate`, else the
    /// time it was sent (or, with `--close`, the time the connect began).
    starts: VecDeque<Instant>,
    /// When the current batch was really sent: timeouts run from here.
    sent_at: Instant,
    /// `--rate`: the scheduled time of the next batch.
    next_due: Instant,
    /// The server said it will close after the last response.
    server_closes: bool,
    /// A timer entry will call `send` for this connection.
    scheduled: bool,
    /// A response on this connection (or its replacements) was counted.
    answered: bool,
}

/// The timer entry that calls `send` for connection `slot` at `at`. A bench connection keeps
/// its slot for the whole run, so the entry needs no connection id (always 0).
fn paced(at: Instant, slot: usize) -> Due {
    Due { at, slot, id: 0 }
}

struct Worker<'a> {
    cfg: &'a Config,
    /// `pipeline` copies of the request, back to back.
    batch: Vec<u8>,
    req_len: usize,
    poll: Poll,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    /// (time, connection): call `send` for the connection at that time (the server's timer
    /// heap; ordered by time, then connection, as before).
    timers: Deadlines,
    timerfd: Option<TimerFd>,
    armed_for: Option<Instant>,
    totals: Totals,
    measure_from: Instant,
    measure_until: Option<Instant>,
    /// Count mode: requests still to send in the measured window.
    budget: Option<u64>,
    /// Requests sent and neither completed nor failed.
    outstanding: u64,
    last_done: Instant,
    /// `--rate`: time between batches on one connection.
    interval: Option<Duration>,
    /// The run is over: start nothing new.
    stopped: bool,
    /// While handling a batch of events, new requests are queued here and written after
    /// the batch, so the server is woken once for many requests rather than once each.
    deferred: Option<Vec<usize>>,
    /// The deferred queue's buffer between batches (no allocation per batch).
    spare: Vec<usize>,
    /// How long to poll without blocking before sleeping (see `wait`).
    spin: Duration,
    live: &'a AtomicU64,
}

impl<'a> Worker<'a> {
    fn new(
        cfg: &'a Config,
        conns: usize,
        first_global: usize,
        budget: Option<u64>,
        t0: Instant,
        live: &'a AtomicU64,
    ) -> anyhow::Result<Worker<'a>> {
        let poll = Poll::new()?;
        let req_len = cfg.target.request.len();
        let pipeline = cfg.pipeline.max(1);
        let batch = cfg.target.request.repeat(pipeline);
        let measure_from = t0 + cfg.warmup;
        let interval = cfg
            .rate
            .map(|r| Duration::from_secs_f64(cfg.connections as f64 / r));
        let timerfd = match interval {
            Some(_) => {
                let t = TimerFd::new()?;
                poll.registry().register(
                    &mut SourceFd(&t.as_raw_fd()),
                    TIMER,
                    Interest::READABLE,
                )?;
                Some(t)
            }
            None => None,
        };
        let conns = (0..conns)
            .map(|i| {
                // Interleave the schedules: connection g starts g/rate seconds in.
                let phase = cfg.rate.map_or(Duration::ZERO, |r| {
                    Duration::from_secs_f64((first_global + i) as f64 / r)
                });
                Conn {
                    sock: None,
                    connected: false,
                    reader: cfg.target.reader(),
                    out_off: 0,
                    out_len: 0,
                    starts: VecDeque::with_capacity(pipeline),
                    sent_at: t0,
                    next_due: t0 + phase,
                    server_closes: false,
                    scheduled: false,
                    answered: false,
                }
            })
            .collect();
        Ok(Worker {
            cfg,
            batch,
            req_len,
            poll,
            conns,
            buf: vec![0; READ_BUF],
            timers: Deadlines::default(),
            timerfd,
            armed_for: None,
            totals: Totals::new(),
            measure_from,
            measure_until: match cfg.stop {
                Stop::After(d) => Some(measure_from + d),
                Stop::Requests(_) => None,
            },
            budget,
            outstanding: 0,
            last_done: measure_from,
            interval,
            stopped: false,
            deferred: None,
            spare: Vec::with_capacity(64),
            spin: cfg.spin,
            live,
        })
    }

    fn run(mut self) -> anyhow::Result<Totals> {
        if self.budget == Some(0) && self.cfg.warmup.is_zero() {
            return Ok(self.totals);
        }
        let mut events = Events::with_capacity(1024);
        let now = Instant::now();
        for i in 0..self.conns.len() {
            self.send(i, now);
        }
        let tick =
            (self.cfg.timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
        let mut next_check = now + tick;
        let stopped_at = loop {
            let now = Instant::now();
            if self
                .cfg
                .abort
                .as_ref()
                .is_some_and(|a| a.load(Ordering::Relaxed))
            {
                break now;
            }
            match self.measure_until {
                Some(until) if now >= until => break now,
                None if now >= self.measure_from
                    && self.budget == Some(0)
                    && self.outstanding == 0 =>
                {
                    break now;
                }
                _ => {}
            }
            while let Some(Due { slot: i, .. }) = self.timers.pop_due(now) {
                self.conns[i].scheduled = false;
                self.send(i, now);
            }
            if now >= next_check {
                self.check_timeouts(now);
                next_check = now + tick;
            }
            let mut wait = next_check.saturating_duration_since(now);
            if let Some(until) = self.measure_until {
                wait = wait.min(until.saturating_duration_since(now));
            }
            if now < self.measure_from {
                wait = wait.min(self.measure_from - now);
            }
            if let Some(due) = self.timers.next() {
                match &self.timerfd {
                    Some(t) => {
                        if self.armed_for != Some(due) {
                            t.fire_after(due.saturating_duration_since(now))?;
                            self.armed_for = Some(due);
                        }
                    }
                    None => wait = wait.min(due.saturating_duration_since(now)),
                }
            }
            if let Err(e) = self.wait(&mut events, wait, now) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            let now = Instant::now();
            let mut queue = std::mem::take(&mut self.spare);
            queue.clear();
            self.deferred = Some(queue);
            for ev in events.iter() {
                let token = ev.token();
                if token == TIMER {
                    self.armed_for = None;
                    continue;
                }
                self.on_event(token.0, ev, now);
            }
            if let Some(queue) = self.deferred.take() {
                for &i in &queue {
                    self.write_deferred(i);
                }
                self.spare = queue;
            }
            self.live.store(self.totals.requests, Ordering::Relaxed);
        };
        // Requests that have waited past the timeout are failures, not merely unfinished.
        self.stopped = true;
        self.check_timeouts(stopped_at);
        self.totals.starved = self.conns.iter().filter(|c| !c.answered).count() as u64;
        self.totals.duration = match self.measure_until {
            Some(until) => until
                .min(stopped_at)
                .saturating_duration_since(self.measure_from),
            // Count mode ends at the last response; with none, the window is the time
            // the run waited in vain (a zero window would make "0 req/s" unmeasured).
            None if self.totals.requests == 0 => {
                stopped_at.saturating_duration_since(self.measure_from)
            }
            None => self.last_done.saturating_duration_since(self.measure_from),
        };
        Ok(self.totals)
    }

    /// Waits for readiness. Without `--rate`, first polls without blocking for up to
    /// [`SPIN`]: a client that falls asleep between responses makes the server pay a
    /// wake-up (an inter-processor interrupt) for each response it sends and makes every
    /// request wait for the client's own wake-up, so the server under test idles and slows
    /// down. wrk avoids this by accident (its extra `epoll_ctl` round trips keep it busy);
    /// here it is deliberate and bounded. With `--rate` the loop sleeps at once: it is idle
    /// by design.
    fn wait(&mut self, events: &mut Events, wait: Duration, now: Instant) -> io::Result<()> {
        if self.interval.is_none() && !self.spin.is_zero() {
            let until = now + self.spin.min(wait);
            loop {
                self.poll.poll(events, Some(Duration::ZERO))?;
                if !events.is_empty() {
                    return Ok(());
                }
                if Instant::now() >= until {
                    break;
                }
            }
        }
        let left = (now + wait).saturating_duration_since(Instant::now());
        self.poll.poll(events, Some(left))
    }

    /// Whether something that happened at `now` falls in the measured window.
    #[inline]
    fn in_window(&self, now: Instant) -> bool {
        now >= self.measure_from && self.measure_until.is_none_or(|u| now < u)
    }

    /// Starts the next batch on connection `i` (opening a socket if it has none), or
    /// schedules it under `--rate`.
    fn send(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        if self.stopped || c.scheduled || !c.starts.is_empty() {
            return;
        }
        let start = match self.interval {
            Some(_) if c.next_due > now => {
                c.scheduled = true;
                self.timers.push(paced(c.next_due, i));
                return;
            }
            Some(_) => c.next_due,
            None => now,
        };
        let mut k = self.cfg.pipeline.max(1);
        if let Some(b) = &mut self.budget
            && start >= self.measure_from
        {
            if *b == 0 {
                return;
            }
            k = k.min(*b as usize);
            *b -= k as u64;
        }
        if let Some(iv) = self.interval {
            c.next_due = start + iv * k as u32;
        }
        c.out_off = 0;
        c.out_len = k * self.req_len;
        c.starts.extend(std::iter::repeat_n(start, k));
        c.sent_at = now;
        self.outstanding += k as u64;
        if c.sock.is_none() && !self.open(i, now) {
            return;
        }
        match &mut self.deferred {
            Some(queue) => queue.push(i),
            None => self.flush(i, now),
        }
    }

    /// Writes a batch queued while events were handled. Without `--rate` (and with
    /// keep-alive) latency runs from the actual write, as in wrk, not from the moment the
    /// request was queued.
    fn write_deferred(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.sock.is_none() || c.out_off != 0 || c.out_len == 0 {
            return;
        }
        let now = Instant::now();
        if self.interval.is_none() && !self.cfg.close {
            for s in c.starts.iter_mut() {
                *s = now;
            }
            c.sent_at = now;
        }
        self.flush(i, now);
    }

    /// Opens a non-blocking connection for `i` and registers it for read and write
    /// readiness (edge-triggered, once for its lifetime).
    fn open(&mut self, i: usize, now: Instant) -> bool {
        let sock = match &self.cfg.target.endpoint {
            Endpoint::Tcp(sa) => TcpStream::connect(*sa).map(|s| {
                if !self.cfg.close {
                    let _ = s.set_nodelay(true);
                }
                Sock::Tcp(s)
            }),
            Endpoint::Unix(p) => UnixStream::connect(p).map(Sock::Unix),
        };
        let mut sock = match sock {
            Ok(s) => s,
            Err(e) => {
                log::debug!("connect: {e}");
                self.fail(i, ErrorKind::Connect, now);
                return false;
            }
        };
        let registered = match &mut sock {
            Sock::Tcp(s) => {
                self.poll
                    .registry()
                    .register(s, Token(i), Interest::READABLE | Interest::WRITABLE)
            }
            Sock::Unix(s) => {
                self.poll
                    .registry()
                    .register(s, Token(i), Interest::READABLE | Interest::WRITABLE)
            }
        };
        if let Err(e) = registered {
            log::debug!("register: {e}");
            self.fail(i, ErrorKind::Connect, now);
            return false;
        }
        let c = &mut self.conns[i];
        c.sock = Some(sock);
        c.connected = false;
        true
    }

    /// Writes what is left of the batch; a write that would block waits for the writable
    /// edge. (Writing on a connect still in progress simply would block.)
    #[inline]
    fn flush(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        while c.out_off < c.out_len {
            let Some(sock) = &mut c.sock else { return };
            match sock.write(&self.batch[c.out_off..c.out_len]) {
                Ok(n) => {
                    c.out_off += n;
                    c.connected = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("write: {e}");
                    let kind = if c.connected {
                        ErrorKind::Write
                    } else {
                        ErrorKind::Connect
                    };
                    self.fail(i, kind, now);
                    return;
                }
            }
        }
    }

    #[inline]
    fn on_event(&mut self, i: usize, ev: &mio::event::Event, now: Instant) {
        let Some(c) = self.conns.get(i) else { return };
        if c.sock.is_none() {
            return;
        }
        // EPOLLRDHUP/EPOLLERR: the peer's FIN (or an error) is already queued behind any
        // data, and no further edge will announce it, so read to the end.
        let drain = ev.is_read_closed() || ev.is_error();
        if (ev.is_readable() || drain) && !self.read(i, now, drain) {
            return;
        }
        let c = &self.conns[i];
        if c.sock.is_some() && c.out_off < c.out_len {
            self.flush(i, now);
        }
    }

    /// Reads until the socket is drained. Returns false when the socket was replaced or
    /// dropped (the caller must not touch it further).
    #[inline]
    fn read(&mut self, i: usize, now: Instant, drain: bool) -> bool {
        loop {
            let c = &mut self.conns[i];
            let Some(sock) = &mut c.sock else {
                return false;
            };
            let n = match sock.read(&mut self.buf) {
                Ok(0) => {
                    self.on_eof(i, now);
                    return false;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("read: {e}");
                    let kind = if c.connected {
                        ErrorKind::Read
                    } else {
                        ErrorKind::Connect
                    };
                    self.fail(i, kind, now);
                    return false;
                }
            };
            c.connected = true;
            if self.in_window(now) {
                self.totals.bytes += n as u64;
            }
            if !self.consume(i, n) {
                return false;
            }
            // A short read drained the socket: the next arrival raises a new edge.
            if n < self.buf.len() && !drain {
                return true;
            }
        }
    }

    /// Feeds `buf[..n]` to connection `i`'s reader. Returns false when the connection was
    /// replaced or dropped.
    #[inline]
    fn consume(&mut self, i: usize, n: usize) -> bool {
        let mut off = 0;
        let mut done_at: Option<Instant> = None;
        while off < n {
            let c = &mut self.conns[i];
            if c.starts.is_empty() {
                let now = *done_at.get_or_insert_with(Instant::now);
                self.fail(i, ErrorKind::BadResponse, now);
                return false;
            }
            match c.reader.feed(&self.buf[off..n]) {
                Ok((used, Step::More)) => {
                    if used == 0 {
                        break;
                    }
                    off += used;
                }
                Ok((used, Step::Done(done))) => {
                    off += used;
                    let now = *done_at.get_or_insert_with(Instant::now);
                    if !self.complete(i, done, now) {
                        return false;
                    }
                }
                Err(e) => {
                    log::debug!("bad response: {e}");
                    let now = *done_at.get_or_insert_with(Instant::now);
                    self.fail(i, ErrorKind::BadResponse, now);
                    return false;
                }
            }
        }
        true
    }

    /// A response completed. Returns false when the connection was replaced.
    #[inline]
    fn complete(&mut self, i: usize, done: Complete, now: Instant) -> bool {
        let c = &mut self.conns[i];
        let Some(start) = c.starts.pop_front() else {
            return true;
        };
        self.outstanding = self.outstanding.saturating_sub(1);
        let counted = match self.measure_until {
            Some(until) => now >= self.measure_from && now < until,
            None => start >= self.measure_from,
        };
        if counted {
            let t = &mut self.totals;
            t.requests += 1;
            let ns = now.saturating_duration_since(start).as_nanos() as u64;
            t.latency.saturating_record(ns.max(1));
            t.status[(done.status as usize).min(STATUS_SLOTS - 1)] += 1;
            if done.status >= 400 {
                t.errors.status += 1;
            } else if done.status == RPC_ERROR {
                t.errors.rpc_error += 1;
            }
            self.last_done = now;
            c.answered = true;
        }
        c.server_closes |= !done.keep_alive;
        if !c.starts.is_empty() {
            return true;
        }
        if self.cfg.close || c.server_closes {
            self.drop_socket(i);
            self.send(i, now);
            return false;
        }
        self.send(i, now);
        true
    }

    fn on_eof(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        if !c.starts.is_empty() {
            if let Some(done) = c.reader.eof() {
                self.complete(i, done, now);
                return;
            }
            self.fail(i, ErrorKind::Closed, now);
            return;
        }
        // The server closed an idle keep-alive connection: not an error; reconnect when the
        // next request is due.
        self.drop_socket(i);
        self.send(i, now);
    }

    fn drop_socket(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.sock = None;
        c.connected = false;
        c.server_closes = false;
        c.out_off = 0;
        c.out_len = 0;
        c.reader.reset();
    }

    /// Counts the failure, forgets the connection's outstanding requests and replaces it.
    fn fail(&mut self, i: usize, kind: ErrorKind, now: Instant) {
        if self.in_window(now) {
            self.totals.errors.bump(kind);
        }
        let lost = self.conns[i].starts.len() as u64;
        self.outstanding = self.outstanding.saturating_sub(lost);
        self.conns[i].starts.clear();
        self.drop_socket(i);
        if kind == ErrorKind::Connect {
            if !self.conns[i].scheduled && !self.stopped {
                self.conns[i].scheduled = true;
                self.timers.push(paced(now + CONNECT_BACKOFF, i));
            }
        } else {
            self.send(i, now);
        }
    }

    fn check_timeouts(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if !c.starts.is_empty() && now.saturating_duration_since(c.sent_at) >= self.cfg.timeout
            {
                // Counted even at the very end of the window: a request that waited this
                // long failed, it is not merely unfinished.
                if now >= self.measure_from {
                    self.totals.errors.timeout += 1;
                }
                let lost = self.conns[i].starts.len() as u64;
                self.outstanding = self.outstanding.saturating_sub(lost);
                self.conns[i].starts.clear();
                self.drop_socket(i);
                self.send(i, now);
            }
        }
    }
}
