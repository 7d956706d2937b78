//! One HTTP/1.1 connection as a sans-IO state machine: bytes in, responses out. This file is
//! the machine (the [`Session`] events); what it answers is decided in `route` and
//! [`super::conditional`], written by [`super::encode`] and logged by [`super::access_log`].
//!
//! The state is explicit, in two enums and one timer:
//! - `Reading`, the input side: between requests, in a head, in a body (read and discarded,
//!   never taken for the next request, its head held to be answered once it is in), past the
//!   last request (input discarded), or past the client's EOF.
//! - `Ending`, what happens once the queued output is gone: serve on, serve the request in
//!   flight and close (draining), close, or shut our side down and linger, then lingering.
//!   The writing side is the output queue (`encode::Output`) plus this: its one
//!   mode, shut down, exists only while lingering, so it is `Ending::Lingering` rather than
//!   a second enum that could say "shut down" beside "keep alive".
//! - `Timer`, one deadline with its kind: the header timeout runs from the first byte of a
//!   request (from the connection's start for the first one) until its head and body are in
//!   (a 408); the idle timeout runs between requests (a quiet close); the linger timeout
//!   bounds the discarding of unread input after we shut our side down. While an answer is
//!   going out no timer runs.
//!
//! Responses are queued in order (see `encode::Output`); while a file range or more
//! than [`OUT_BUDGET`](super::encode::OUT_BUDGET) bytes are queued the session parses no
//! further requests (backpressure: the driver keeps the input).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access_log::{AccessLog, log_host};
use super::cgi::{CgiConfig, Exchange};
use super::docroot::Docroot;
use super::encode::{Output, Reply};
use super::parse::{ChunkedBody, Framing, Head, HeadError, HeadLimits, parse_head};
use crate::session::{Action, ChildId, Exit, Peer, Session, Wall};

/// How long unread input is discarded after the last response, before closing, so the
/// close does not reset the connection while the client still reads the answer.
pub const LINGER: Duration = Duration::from_secs(2);

/// Per-server HTTP settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Time allowed for a request's head (and body) to arrive, from its first byte.
    pub header_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Requests served per connection before it closes (0: no limit).
    pub max_requests: u64,
    pub limits: HeadLimits,
    /// Largest request body read (and discarded); a larger one is answered 413 and closes.
    pub max_body: u64,
    /// Serve names starting with `.`.
    pub hidden: bool,
    /// Produce access-log lines.
    pub log: bool,
    /// CGI scripts (`--cgi`); none by default.
    pub cgi: CgiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            max_requests: 0,
            limits: HeadLimits {
                max_header_bytes: 16 * 1024,
                max_uri_bytes: 8 * 1024,
            },
            max_body: 1024 * 1024,
            hidden: false,
            log: true,
            cgi: CgiConfig::default(),
        }
    }
}

/// The input side: what the client's next bytes are.
#[derive(Debug)]
enum Reading {
    /// Between requests: nothing of the next one has arrived.
    Idle,
    /// Part of a request head has arrived (so a timeout is a 408).
    Head,
    /// A request body being read and discarded; `head` is the request's head, answered once
    /// the body is in.
    Body { head: Vec<u8>, left: BodyLeft },
    /// No more requests on this connection: input is discarded.
    Discard,
    /// The client closed its side: nothing more arrives, a request cut short has nothing to
    /// answer, and the connection closes once the output is gone.
    Eof,
}

/// What is left of a request body.
#[derive(Debug)]
enum BodyLeft {
    /// This many bytes of a `Content-Length` body.
    Length(u64),
    Chunked(ChunkedBody),
}

/// What happens once the queued output is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Keep serving.
    KeepAlive,
    /// The server is draining: the request in flight is answered with `Connection: close`.
    Draining,
    /// Close at once: nothing is left unread (idle timeout, drain between requests, a close
    /// the client asked for).
    Close,
    /// Shut our side down, then linger.
    Linger,
    /// Our side is shut down: input is discarded until the client's EOF or the linger timer.
    Lingering,
}

/// The one timer a connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timer {
    kind: TimerKind,
    at: Instant,
}

/// What a `Timer` is for, which decides what its expiry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    /// A request's head and body are arriving: expiry is answered 408.
    Header,
    /// Waiting for a request (the first one as long as a head may take, later ones for the
    /// keep-alive timeout): expiry closes quietly.
    Idle,
    /// Lingering after our shutdown: expiry closes.
    Linger,
}

/// One connection's HTTP/1.1 state machine (see the module documentation).
pub struct HttpSession {
    pub(super) cfg: Arc<Config>,
    pub(super) root: Arc<dyn Docroot>,
    /// The client's address as the log gives it.
    pub(super) peer_host: String,
    pub(super) out: Output,
    pub(super) access_log: AccessLog,
    reading: Reading,
    ending: Ending,
    timer: Option<Timer>,
    requests: u64,
    /// The instant of the latest event (the core's only clock).
    pub(super) now: Instant,
    /// Calendar time for `Date` headers and log lines, from the instant.
    pub(super) wall: Wall,
    /// Multipart boundaries: unique per response on this connection.
    pub(super) boundary_seq: u64,
    /// The client's address as given (`ip:port`), for CGI's `REMOTE_ADDR`/`REMOTE_PORT`.
    pub(super) peer_addr: String,
    /// The CGI exchange in flight, if any (see `cgi`).
    pub(super) cgi: Option<Box<Exchange>>,
}

impl HttpSession {
    pub fn new(
        cfg: Arc<Config>,
        root: Arc<dyn Docroot>,
        peer: &str,
        now: Instant,
        wall: Wall,
    ) -> HttpSession {
        // Until the first request's first byte the connection is idle, for as long as a head
        // may take; that byte turns the same clock into the header clock.
        let timer = Some(Timer {
            kind: TimerKind::Idle,
            at: now + cfg.header_timeout,
        });
        HttpSession {
            cfg,
            root,
            peer_host: log_host(peer),
            out: Output::default(),
            access_log: AccessLog::default(),
            reading: Reading::Idle,
            ending: Ending::KeepAlive,
            timer,
            requests: 0,
            now,
            wall,
            boundary_seq: 0,
            peer_addr: peer.to_string(),
            cgi: None,
        }
    }

    /// Runs the timer for `kind`, `after` from now.
    fn start_timer(&mut self, kind: TimerKind, after: Duration) {
        self.timer = Some(Timer {
            kind,
            at: self.now + after,
        });
    }

    /// Whether no response has been decided to be the last.
    fn serving(&self) -> bool {
        matches!(self.ending, Ending::KeepAlive | Ending::Draining)
    }

    /// After a response that ends the connection: stop reading requests.
    fn finish_connection(&mut self, ending: Ending) {
        if !matches!(self.reading, Reading::Eof) {
            self.reading = Reading::Discard;
        }
        if self.serving() {
            self.ending = ending;
        }
        self.timer = None;
    }

    /// Whether the connection may carry another request after this one.
    pub(super) fn keep_alive(&self, head: &Head<'_>) -> bool {
        head.keep_alive
            && self.ending != Ending::Draining
            && !head.expect_unknown
            && (self.cfg.max_requests == 0 || self.requests < self.cfg.max_requests)
    }

    /// A head that could not be parsed: the error response, then close.
    fn reject(&mut self, e: HeadError, input: &[u8]) {
        let line_end = input
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(input.len());
        let raw_line = &input[..line_end.min(256)];
        let raw_line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        let r = Reply {
            head: None,
            raw_line,
            keep_alive: false,
            is_head: false,
        };
        self.error(&r, e.status(), "");
        self.finish_connection(Ending::Linger);
    }

    /// Answers one complete request (head and body in); reading is back between requests.
    fn respond(&mut self, head: &Head<'_>) {
        self.reading = Reading::Idle;
        let keep_alive = self.keep_alive(head);
        let r = Reply {
            head: Some(head),
            raw_line: b"",
            keep_alive,
            is_head: head.method == "HEAD",
        };
        self.route(&r, head);
        if keep_alive {
            // The keep-alive clock starts when the answer has gone out (`written`); only an
            // answer with nothing to send (none today) starts it here.
            if self.out.is_empty() {
                self.start_timer(TimerKind::Idle, self.cfg.keepalive_timeout);
            }
        } else if !head.keep_alive && !head.expect_unknown {
            // The client asked for the close, so it sends nothing more: close at once
            // (`feed` switches to a lingering close if more input did come with it).
            self.finish_connection(Ending::Close);
        } else {
            self.finish_connection(Ending::Linger);
        }
    }
}

impl Session for HttpSession {
    fn feed(&mut self, peer: Peer, input: &[u8], now: Instant) -> usize {
        self.now = now;
        if peer != Peer::Client {
            return self.cgi_feed(peer, input);
        }
        let mut used = 0;
        loop {
            if self.cgi.is_some() {
                return used + self.cgi_feed(peer, &input[used..]);
            }
            let rest = &input[used..];
            match self.reading {
                Reading::Discard => {
                    if !rest.is_empty() && self.ending == Ending::Close {
                        // Unread input at close time would turn our FIN into a reset, which
                        // can destroy the answer before the client reads it.
                        self.ending = Ending::Linger;
                    }
                    return input.len();
                }
                Reading::Eof => return input.len(),
                _ if rest.is_empty() => return used,
                Reading::Idle | Reading::Head => {
                    if self.out.over_budget() {
                        return used;
                    }
                    match self.read_head(rest) {
                        Some(n) => used += n,
                        None if matches!(self.reading, Reading::Discard) => return input.len(),
                        None => return used,
                    }
                }
                Reading::Body {
                    left: BodyLeft::Length(ref mut left),
                    ..
                } => {
                    let take = (*left).min(rest.len() as u64);
                    *left -= take;
                    let done = *left == 0;
                    used += take as usize;
                    if done {
                        self.body_done();
                    } else {
                        self.start_timer(TimerKind::Header, self.cfg.header_timeout);
                    }
                }
                Reading::Body {
                    left: BodyLeft::Chunked(ref mut body),
                    ..
                } => {
                    let step = body.feed(rest).map(|n| (n, body.total, body.is_done()));
                    match step {
                        Ok((_, total, _)) if total > self.cfg.max_body => {
                            let held = self.take_held_head();
                            if let Ok(Some((_, head))) = parse_head(&held, &self.cfg.limits) {
                                self.too_large(&head);
                            }
                            return input.len();
                        }
                        Ok((n, _, done)) => {
                            used += n;
                            if done {
                                self.body_done();
                            } else if n == 0 {
                                return used;
                            } else {
                                self.start_timer(TimerKind::Header, self.cfg.header_timeout);
                            }
                        }
                        Err(_) => {
                            let held = self.take_held_head();
                            self.reject(HeadError::Bad("bad chunked body"), &held);
                            return input.len();
                        }
                    }
                }
            }
        }
    }

    fn eof(&mut self, peer: Peer, now: Instant) {
        self.now = now;
        if peer != Peer::Client || self.cgi.is_some() {
            return self.cgi_eof(peer);
        }
        // Whatever comes next is the close: no timer is needed to reach it.
        self.reading = Reading::Eof;
        self.timer = None;
    }

    fn wants_read(&self, peer: Peer) -> bool {
        if peer != Peer::Client || self.cgi.is_some() {
            return self.cgi_wants_read(peer);
        }
        // Backpressure: with a file or a lot of bytes queued, further requests wait in the
        // kernel (a lingering close still reads, to discard).
        match self.reading {
            Reading::Eof => false,
            Reading::Discard => true,
            _ => !self.out.over_budget(),
        }
    }

    fn next_action(&mut self) -> Action<'_> {
        if let Some(step) = self.cgi_step() {
            return self.cgi_action(step);
        }
        if let Some(action) = self.out.next_action() {
            return action;
        }
        if matches!(self.reading, Reading::Eof) {
            return Action::Close;
        }
        match self.ending {
            Ending::Close => Action::Close,
            Ending::Linger => {
                self.ending = Ending::Lingering;
                // Field by field, not `start_timer(&mut self)`: the borrow checker still holds
                // `self.out` borrowed by the action that may have been returned above.
                self.timer = Some(Timer {
                    kind: TimerKind::Linger,
                    at: self.now + LINGER,
                });
                Action::Shutdown(Peer::Client)
            }
            Ending::Lingering | Ending::KeepAlive | Ending::Draining => Action::Wait,
        }
    }

    fn written(&mut self, peer: Peer, n: usize, now: Instant) {
        self.now = now;
        if peer != Peer::Client {
            return self.cgi_written(n);
        }
        let drained = self.out.written(n);
        self.access_log.written(self.out.sent());
        if drained && self.serving() && matches!(self.reading, Reading::Idle) && self.requests > 0 {
            // The keep-alive clock starts once the last answer has gone out.
            self.start_timer(TimerKind::Idle, self.cfg.keepalive_timeout);
        }
    }

    fn closes_after_output(&self) -> bool {
        !self.serving() || matches!(self.reading, Reading::Eof)
    }

    fn spawned(&mut self, child: ChildId, pid: Option<u32>, now: Instant) {
        self.now = now;
        if child == super::cgi::SLOT {
            self.cgi_spawned(pid.is_some());
        }
    }

    fn exited(&mut self, child: ChildId, how: Exit, now: Instant) {
        self.now = now;
        if child == super::cgi::SLOT {
            self.cgi_exited(how);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        if let Some(d) = self.cgi_deadline() {
            return Some(d);
        }
        // While an answer is going out no timer runs: a slow reader is the driver's write
        // timeout, and the keep-alive clock restarts when the output drains.
        if self.out.is_empty() {
            self.timer.map(|t| t.at)
        } else {
            None
        }
    }

    fn timed_out(&mut self, now: Instant) {
        self.now = now;
        if self.cgi.is_some() {
            return self.cgi_timed_out(now);
        }
        if !self.out.is_empty() {
            return;
        }
        let Some(timer) = self.timer.filter(|t| t.at <= now) else {
            return;
        };
        self.timer = None;
        match timer.kind {
            TimerKind::Header => {
                let r = Reply {
                    head: None,
                    raw_line: b"-",
                    keep_alive: false,
                    is_head: false,
                };
                self.error(&r, 408, "");
                self.finish_connection(Ending::Linger);
            }
            TimerKind::Idle => self.finish_connection(Ending::Close),
            // Lingered long enough.
            TimerKind::Linger => self.ending = Ending::Close,
        }
    }

    fn drain(&mut self, now: Instant) {
        self.now = now;
        if self.cgi.is_some() {
            return self.cgi_drain();
        }
        match self.reading {
            Reading::Idle => self.finish_connection(Ending::Close),
            Reading::Head | Reading::Body { .. } => {
                if self.ending == Ending::KeepAlive {
                    self.ending = Ending::Draining;
                }
            }
            Reading::Discard | Reading::Eof => {}
        }
    }

    fn closed(&mut self, now: Instant) {
        self.now = now;
        self.cgi_closed();
        self.access_log.closed(self.out.sent());
    }

    fn take_log(&mut self) -> Option<String> {
        self.access_log.take()
    }
}

impl HttpSession {
    /// Parses and answers (or starts reading the body of) the request at the start of
    /// `rest`. Returns the bytes consumed, or `None` when the head is incomplete or the
    /// connection is closing.
    fn read_head(&mut self, rest: &[u8]) -> Option<usize> {
        let first_bytes = matches!(self.reading, Reading::Idle);
        self.reading = Reading::Head;
        let limits = self.cfg.limits;
        let (n, head) = match parse_head(rest, &limits) {
            Ok(None) => {
                // The header clock runs from the request's first byte; for the first request
                // it has run since the connection's start, and only becomes a header clock.
                // A head that came whole needs no clock, and reading one costs a clock read
                // per request.
                if first_bytes {
                    if self.requests > 0 {
                        self.start_timer(TimerKind::Header, self.cfg.header_timeout);
                    } else if let Some(t) = &mut self.timer {
                        t.kind = TimerKind::Header;
                    }
                }
                return None;
            }
            Err(e) => {
                self.reject(e, rest);
                return None;
            }
            Ok(Some(parsed)) => parsed,
        };
        self.requests += 1;
        if self.cgi_start(&head, &rest[..n], 0) {
            return Some(n);
        }
        match head.framing {
            Framing::None => self.respond(&head),
            Framing::Length(len) if len > self.cfg.max_body => {
                self.too_large(&head);
                return None;
            }
            framing => {
                if head.expect_continue && head.minor >= 1 && !head.expect_unknown {
                    self.out.push_bytes(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                let left = match framing {
                    Framing::Length(left) => BodyLeft::Length(left),
                    _ => BodyLeft::Chunked(ChunkedBody::default()),
                };
                self.reading = Reading::Body {
                    head: rest[..n].to_vec(),
                    left,
                };
                self.start_timer(TimerKind::Header, self.cfg.header_timeout);
            }
        }
        Some(n)
    }

    /// A CGI exchange started: the session's own timers stop (the exchange has its own
    /// deadline) and the input side is between requests until it ends.
    pub(super) fn cgi_stop_timers(&mut self) {
        self.reading = Reading::Idle;
        self.timer = None;
    }

    /// A CGI exchange ended: the connection carries on (`keep`) or closes, lingering unless
    /// the request was read whole (`read_whole`); `client_eof`: the client's side is closed.
    pub(super) fn cgi_after(&mut self, keep: bool, read_whole: bool, client_eof: bool) {
        if client_eof {
            self.reading = Reading::Eof;
            self.timer = None;
            return;
        }
        self.reading = Reading::Idle;
        if keep && self.serving() {
            if self.out.is_empty() {
                self.start_timer(TimerKind::Idle, self.cfg.keepalive_timeout);
            }
        } else {
            self.finish_connection(if read_whole {
                Ending::Close
            } else {
                Ending::Linger
            });
        }
    }

    /// Answers the target of a CGI local redirect as a request of its own (`head`).
    pub(super) fn respond_redirected(&mut self, head: &Head<'_>, client_eof: bool) {
        self.respond(head);
        if client_eof {
            self.reading = Reading::Eof;
            self.timer = None;
        }
    }

    /// The head of the request whose body is being read; reading is back between requests.
    fn take_held_head(&mut self) -> Vec<u8> {
        match std::mem::replace(&mut self.reading, Reading::Idle) {
            Reading::Body { head, .. } => head,
            other => {
                self.reading = other;
                Vec::new()
            }
        }
    }

    /// The body of the held request is in: answer it.
    fn body_done(&mut self) {
        let held = self.take_held_head();
        let limits = self.cfg.limits;
        if let Ok(Some((_, head))) = parse_head(&held, &limits) {
            self.respond(&head);
        }
    }

    /// A body over `max_body`: 413, and the connection closes without reading it.
    fn too_large(&mut self, head: &Head<'_>) {
        let r = Reply {
            head: Some(head),
            raw_line: b"",
            keep_alive: false,
            is_head: head.method == "HEAD",
        };
        self.error(&r, 413, "");
        self.finish_connection(Ending::Linger);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::docroot::{self as fs, MemDocroot, OpenError, Opened};
    use std::path::Path;

    /// What the driver saw, in order.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        /// One write action's bytes.
        Write(Vec<u8>),
        /// One sendfile action's bytes.
        File(Vec<u8>),
        Shutdown,
        Close,
        Wait,
    }

    struct Fixture {
        root: Arc<dyn Docroot>,
        big: Vec<u8>,
    }

    fn mem_root() -> (MemDocroot, Vec<u8>) {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let root = MemDocroot::new()
            .file("a.txt", b"hello")
            .file("big.bin", &big);
        (root, big)
    }

    fn fixture() -> Fixture {
        let (root, big) = mem_root();
        Fixture {
            root: Arc::new(root),
            big,
        }
    }

    fn wall() -> Wall {
        Wall::new(
            Instant::now(),
            std::time::UNIX_EPOCH + Duration::from_secs(1_764_000_000),
        )
    }

    fn session(f: &Fixture, cfg: Config) -> HttpSession {
        HttpSession::new(
            Arc::new(cfg),
            Arc::clone(&f.root),
            "127.0.0.1:4000",
            Instant::now(),
            wall(),
        )
    }

    /// Performs actions until the session waits, closes, or `limit` actions ran.
    fn run(s: &mut HttpSession) -> Vec<Seen> {
        let mut seen = Vec::new();
        for _ in 0..1000 {
            match s.next_action() {
                Action::Write(_, b) => {
                    let (v, n) = (b.to_vec(), b.len());
                    seen.push(Seen::Write(v));
                    s.written(Peer::Client, n, Instant::now());
                }
                Action::SendBody { body, offset, len } => {
                    let mut v = vec![0; len as usize];
                    let mut got = 0;
                    while got < v.len() {
                        let n = body.read_at(&mut v[got..], offset + got as u64).unwrap();
                        assert!(n > 0, "body shorter than announced");
                        got += n;
                    }
                    seen.push(Seen::File(v));
                    s.written(Peer::Client, len as usize, Instant::now());
                }
                Action::Shutdown(_) => seen.push(Seen::Shutdown),
                Action::Close => {
                    seen.push(Seen::Close);
                    return seen;
                }
                Action::Wait => {
                    seen.push(Seen::Wait);
                    return seen;
                }
                other => panic!("a static-file session never asks for {other:?}"),
            }
        }
        panic!("no end of actions: {seen:?}")
    }

    fn text(seen: &[Seen]) -> String {
        seen.iter()
            .map(|s| match s {
                Seen::Write(b) | Seen::File(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .collect()
    }

    const GET_A: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";

    #[test]
    fn pipelined_small_answers_leave_in_one_write() {
        let f = fixture();
        let mut s = session(&f, Config::default());
        let burst = GET_A.repeat(10);
        assert_eq!(s.feed(Peer::Client, &burst, Instant::now()), burst.len());
        let seen = run(&mut s);
        assert_eq!(seen.len(), 2, "one write, then wait: {seen:?}");
        assert_eq!(text(&seen).matches("HTTP/1.1 200 OK").count(), 10);
        assert_eq!(text(&seen).matches("\r\n\r\nhello").count(), 10);
        let logs: Vec<String> = std::iter::from_fn(|| s.take_log()).collect();
        assert_eq!(logs.len(), 10);
        assert!(logs[0].starts_with("127.0.0.1 - - ["), "{}", logs[0]);
        assert!(
            logs[0].ends_with("\"GET /a.txt HTTP/1.1\" 200 5 \"-\" \"-\""),
            "{}",
            logs[0]
        );
    }

    #[test]
    fn large_files_use_sendfile_and_apply_backpressure() {
        let f = fixture();
        let mut s = session(&f, Config::default());
        let req = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
        let two = [&req[..], &req[..]].concat();
        assert_eq!(
            s.feed(Peer::Client, &two, Instant::now()),
            req.len(),
            "the second waits for the first"
        );
        let seen = run(&mut s);
        assert!(
            matches!(&seen[0], Seen::Write(h) if h.ends_with(b"Content-Length: 100000\r\n\r\n"))
        );
        assert_eq!(seen[1], Seen::File(f.big.clone()));
        assert_eq!(seen[2], Seen::Wait);
        assert_eq!(s.feed(Peer::Client, req, Instant::now()), req.len());
        assert_eq!(run(&mut s)[1], Seen::File(f.big.clone()));

        // HEAD: no body at all.
        let mut s = session(&f, Config::default());
        s.feed(
            Peer::Client,
            b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n",
            Instant::now(),
        );
        let seen = run(&mut s);
        assert_eq!(seen.len(), 2, "{seen:?}");
    }

    #[test]
    fn multipart_ranges_of_a_large_file_alternate_headers_and_sendfile() {
        let f = fixture();
        let mut s = session(&f, Config::default());
        s.feed(
            Peer::Client,
            b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9999,50000-69999\r\n\r\n",
            Instant::now(),
        );
        let seen = run(&mut s);
        let kinds: Vec<&str> = seen
            .iter()
            .map(|s| match s {
                Seen::Write(_) => "w",
                Seen::File(_) => "f",
                _ => "-",
            })
            .collect();
        // head + first part header, file, second part header, file, closing delimiter.
        assert_eq!(kinds, ["w", "f", "w", "f", "w", "-"]);
        assert_eq!(seen[1], Seen::File(f.big[..10_000].to_vec()));
        assert_eq!(seen[3], Seen::File(f.big[50_000..70_000].to_vec()));
        let declared: usize = text(&seen[..1])
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let head_len = text(&seen[..1]).find("\r\n\r\n").unwrap() + 4;
        let total: usize = seen
            .iter()
            .map(|s| match s {
                Seen::Write(b) | Seen::File(b) => b.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(
            total - head_len,
            declared,
            "Content-Length matches the body"
        );
    }

    #[test]
    fn header_timeout_answers_408_and_idle_timeout_closes_quietly() {
        let f = fixture();
        let cfg = Config::default();
        let mut s = session(&f, cfg.clone());
        assert_eq!(s.feed(Peer::Client, b"GET /a.txt HT", Instant::now()), 0);
        assert_eq!(run(&mut s), [Seen::Wait]);
        let d = s.deadline().unwrap();
        assert!(d <= Instant::now() + cfg.header_timeout);
        s.timed_out(d);
        let seen = run(&mut s);
        assert!(text(&seen).starts_with("HTTP/1.1 408 "), "{seen:?}");
        assert!(text(&seen).contains("Connection: close\r\n"));
        assert_eq!(&seen[1..], [Seen::Shutdown, Seen::Wait]);
        // Lingering: input is discarded until EOF or the linger deadline.
        assert_eq!(s.feed(Peer::Client, b"more", Instant::now()), 4);
        s.timed_out(s.deadline().unwrap());
        assert_eq!(run(&mut s), [Seen::Close]);

        let mut s = session(&f, cfg.clone());
        s.feed(Peer::Client, GET_A, Instant::now());
        assert_eq!(s.deadline(), None, "no timer while an answer is queued");
        s.timed_out(Instant::now() + Duration::from_secs(3600));
        run(&mut s);
        let d = s.deadline().unwrap();
        assert!(d > Instant::now() + cfg.keepalive_timeout - Duration::from_secs(1));
        s.timed_out(d);
        assert_eq!(run(&mut s), [Seen::Close], "idle: no 408, just close");
    }

    #[test]
    fn the_header_clock_of_a_later_request_starts_at_its_first_byte() {
        let f = fixture();
        let cfg = Config {
            header_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(600),
            ..Config::default()
        };
        let mut s = session(&f, cfg);
        s.feed(Peer::Client, GET_A, Instant::now());
        run(&mut s);
        let idle = s.deadline().unwrap();
        assert!(
            idle > Instant::now() + Duration::from_secs(500),
            "keep-alive clock"
        );
        // A whole second request leaves the clock alone; half of a third starts it.
        s.feed(Peer::Client, GET_A, Instant::now());
        run(&mut s);
        assert_eq!(s.feed(Peer::Client, b"GET /a.txt HT", Instant::now()), 0);
        let d = s.deadline().unwrap();
        assert!(d <= Instant::now() + Duration::from_secs(1), "header clock");
        s.timed_out(d);
        assert!(text(&run(&mut s)).starts_with("HTTP/1.1 408 "));
    }

    #[test]
    fn a_request_cut_short_by_eof_gets_no_late_408() {
        let f = fixture();
        let mut s = session(&f, Config::default());
        s.feed(Peer::Client, GET_A, Instant::now());
        // The next request is cut short while the first answer is still queued.
        assert_eq!(s.feed(Peer::Client, b"GET /a.t", Instant::now()), 0);
        s.eof(Peer::Client, Instant::now());
        assert_eq!(s.deadline(), None, "after EOF nothing is waited for");
        let Action::Write(_, answer) = s.next_action() else {
            panic!("the first answer")
        };
        let n = answer.len();
        s.written(Peer::Client, n, Instant::now());
        // A driver that yields before asking again may run its timers first.
        s.timed_out(Instant::now() + Duration::from_secs(3600));
        assert_eq!(run(&mut s), [Seen::Close]);
    }

    #[test]
    fn drain_max_requests_and_http10() {
        let f = fixture();
        let mut s = session(&f, Config::default());
        s.drain(Instant::now());
        assert_eq!(run(&mut s), [Seen::Close], "idle connections close at once");

        let mut s = session(&f, Config::default());
        assert_eq!(s.feed(Peer::Client, &GET_A[..10], Instant::now()), 0);
        s.drain(Instant::now());
        assert_eq!(run(&mut s), [Seen::Wait], "a request in flight is finished");
        s.feed(Peer::Client, GET_A, Instant::now());
        let seen = run(&mut s);
        assert!(text(&seen).contains("Connection: close\r\n"));
        assert!(text(&seen).ends_with("\r\n\r\nhello"));

        let cfg = Config {
            max_requests: 2,
            ..Config::default()
        };
        let mut s = session(&f, cfg);
        s.feed(Peer::Client, &GET_A.repeat(3), Instant::now());
        let all = text(&run(&mut s));
        assert_eq!(
            all.matches("200 OK").count(),
            2,
            "the third is not answered"
        );
        assert_eq!(all.matches("Connection: close").count(), 1);

        let mut s = session(&f, Config::default());
        s.feed(Peer::Client, b"GET /a.txt HTTP/1.0\r\n\r\n", Instant::now());
        let seen = run(&mut s);
        assert!(text(&seen).contains("Connection: close"));
        assert_eq!(&seen[1..], [Seen::Close], "the client asked for the close");

        // More input after a close the client asked for: a lingering close.
        let mut s = session(&f, Config::default());
        s.feed(
            Peer::Client,
            b"GET /a.txt HTTP/1.0\r\n\r\nGET /",
            Instant::now(),
        );
        let seen = run(&mut s);
        assert_eq!(&seen[1..], [Seen::Shutdown, Seen::Wait]);
        s.eof(Peer::Client, Instant::now());
        assert_eq!(run(&mut s), [Seen::Close]);
    }

    #[test]
    fn bodies_are_discarded_and_100_continue_is_sent() {
        let f = fixture();
        let mut s = session(&f, Config::default());
        let head = b"POST /a.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(s.feed(Peer::Client, head, Instant::now()), head.len());
        assert_eq!(text(&run(&mut s)), "HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(s.feed(Peer::Client, b"01234", Instant::now()), 5);
        assert_eq!(run(&mut s), [Seen::Wait]);
        let rest = [&b"56789"[..], GET_A].concat();
        assert_eq!(s.feed(Peer::Client, &rest, Instant::now()), rest.len());
        let all = text(&run(&mut s));
        assert!(all.starts_with("HTTP/1.1 405 "), "{all}");
        assert!(
            all.contains("HTTP/1.1 200 OK"),
            "the next request is a request: {all}"
        );

        // Too large: 413 and close, without reading it.
        let mut s = session(&f, Config::default());
        s.feed(Peer::Client, b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n", Instant::now());
        let all = text(&run(&mut s));
        assert!(all.starts_with("HTTP/1.1 413 "), "{all}");
        assert!(!all.contains("100 Continue"));
    }

    #[test]
    fn the_log_gives_the_body_bytes_that_went_out() {
        let f = fixture();
        let logs = |s: &mut HttpSession| std::iter::from_fn(|| s.take_log()).collect::<Vec<_>>();
        // Not logged while the answer is still going out; cut short, the part that went.
        let mut s = session(&f, Config::default());
        s.feed(
            Peer::Client,
            b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n",
            Instant::now(),
        );
        let Action::Write(_, head) = s.next_action() else {
            panic!("a head first")
        };
        let head_len = head.len();
        s.written(Peer::Client, head_len - 1, Instant::now());
        assert!(logs(&mut s).is_empty());
        s.written(Peer::Client, 1, Instant::now());
        assert!(matches!(s.next_action(), Action::SendBody { .. }));
        s.written(Peer::Client, 12_345, Instant::now());
        assert!(logs(&mut s).is_empty(), "in flight: no line yet");
        s.closed(Instant::now());
        let l = logs(&mut s);
        assert_eq!(l.len(), 1);
        assert!(
            l[0].contains("\"GET /big.bin HTTP/1.1\" 200 12345 "),
            "{}",
            l[0]
        );

        // Cut inside the head: no body went out.
        let mut s = session(&f, Config::default());
        s.feed(Peer::Client, GET_A, Instant::now());
        let _ = s.next_action();
        s.written(Peer::Client, 10, Instant::now());
        s.closed(Instant::now());
        assert!(logs(&mut s)[0].contains("\" 200 - "));

        // Whole, pipelined: each line as its answer is written, with the full length.
        let mut s = session(&f, Config::default());
        s.feed(
            Peer::Client,
            &[GET_A, b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"].concat(),
            Instant::now(),
        );
        run(&mut s);
        s.closed(Instant::now());
        let l = logs(&mut s);
        assert!(l[0].contains("\"GET /a.txt HTTP/1.1\" 200 5 "), "{}", l[0]);
        assert!(
            l[1].contains("\"GET /big.bin HTTP/1.1\" 200 100000 "),
            "{}",
            l[1]
        );
    }

    /// A docroot whose first answer describes the file as it was before an edit.
    struct StaleOnce {
        inner: MemDocroot,
        stale: std::sync::Mutex<Option<u64>>,
    }

    impl Docroot for StaleOnce {
        fn open(&self, rel: &Path) -> Result<Opened, OpenError> {
            let mut o = self.inner.open(rel)?;
            if let Some(len) = self.stale.lock().unwrap().take() {
                o.meta.len = len;
            }
            Ok(o)
        }
        fn list(&self, rel: &Path, hidden: bool) -> Result<Vec<fs::ListEntry>, OpenError> {
            self.inner.list(rel, hidden)
        }
    }

    #[test]
    fn a_file_that_changed_after_its_metadata_is_opened_again() {
        for (stale, want) in [(3, "hello"), (8, "hello")] {
            let root = StaleOnce {
                inner: mem_root().0,
                stale: std::sync::Mutex::new(Some(stale)),
            };
            let mut s = HttpSession::new(
                Arc::new(Config::default()),
                Arc::new(root),
                "-",
                Instant::now(),
                wall(),
            );
            s.feed(Peer::Client, GET_A, Instant::now());
            let all = text(&run(&mut s));
            assert!(all.starts_with("HTTP/1.1 200 "), "{all}");
            assert!(all.contains("Content-Length: 5\r\n"), "{all}");
            assert!(all.ends_with(&format!("\r\n\r\n{want}")), "{all}");
        }
    }

    #[test]
    fn hostile_inputs_never_panic_and_always_end() {
        let f = fixture();
        let inputs: &[&[u8]] = &[
            b"",
            b"\r\n\r\n\r\n",
            b"GET",
            b"\0\0\0\0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
            b"GET /%ff HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET http://x HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /../../../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nRange: bytes=-0,-0,-0\r\n\r\n",
        ];
        for input in inputs {
            let mut s = session(&f, Config::default());
            // Byte by byte, as a slow client would send it.
            let mut held = Vec::new();
            for &b in *input {
                held.push(b);
                let n = s.feed(Peer::Client, &held, Instant::now());
                held.drain(..n);
                run(&mut s);
            }
            s.eof(Peer::Client, Instant::now());
            let seen = run(&mut s);
            assert_eq!(
                seen.last(),
                Some(&Seen::Close),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
