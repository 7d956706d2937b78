//! A program per connection on pipes (`plumb exec` under the in-process models, `plumb relay
//! --to exec:`): the session starts the program, copies the client's bytes to its stdin and
//! its stdout to the client, and turns its stderr into prefixed log lines, never into the
//! client's stream.
//!
//! - Each direction holds at most [`EXEC_WINDOW`] bytes; when one is full the session stops
//!   reading its source, so a program that writes faster than its client reads is slowed by
//!   the pipe instead of filling the server's memory (and a client that writes faster than the
//!   program reads, likewise).
//! - Half-close is carried across both ways: the client's EOF closes the program's stdin; the
//!   program's stdout reaching EOF shuts down our write side towards the client.
//! - Once the client is done and the program's stdin is closed, the program has `kill_after`
//!   to exit: then its process group gets SIGTERM, and `kill_after` later SIGKILL. Output the
//!   client still reads restarts the wait (a client that reads is still there). `timeout` caps
//!   the program's wall time with the same escalation.
//! - When the program exits first, what it wrote is flushed and the connection closed (if a
//!   descendant holds its stdout open, `kill_after` after the exit at the latest).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::session::{Action, ChildId, Exit, OutBuf, Peer, Session, SpawnRequest, Stdio};

/// The session's one child.
const CHILD: ChildId = ChildId(0);

/// Most bytes buffered in one direction before reading from its source pauses.
pub const EXEC_WINDOW: usize = 64 * 1024;

/// Longest stderr line kept whole; a longer one is cut into pieces of this size.
pub const MAX_STDERR_LINE: usize = 2048;

/// Most stderr lines held for the driver to take; beyond, stderr is not read until it takes
/// some (the program then blocks on a full pipe rather than grow our memory).
const MAX_HELD_LINES: usize = 64;

/// `SIGKILL` and `SIGTERM` as Linux numbers them (the core has no libc).
pub const SIGTERM: i32 = 15;
pub const SIGKILL: i32 = 9;

/// What to run and how long to let it live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// The program, its arguments and environment.
    pub request: SpawnRequest,
    /// After the client is done (stdin closed): how long before SIGTERM, and then before
    /// SIGKILL.
    pub kill_after: Duration,
    /// Wall time the program may run at most (then the same escalation).
    pub timeout: Option<Duration>,
    /// How the program's stderr lines are prefixed: the peer's address.
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotAsked,
    Spawning,
    Running,
    Failed,
}

/// The session of one connection whose other end is a program on pipes.
#[derive(Debug)]
pub struct ExecSession {
    cfg: ExecConfig,
    phase: Phase,
    pid: Option<u32>,
    to_child: OutBuf,
    to_client: OutBuf,
    client_eof: bool,
    stdin_closed: bool,
    stdout_eof: bool,
    stderr_eof: bool,
    client_shut: bool,
    exit: Option<Exit>,
    /// When the program's wall time is up.
    timeout_at: Option<Instant>,
    /// When SIGTERM goes out (armed once the client is done).
    term_at: Option<Instant>,
    /// When SIGKILL goes out (armed by SIGTERM).
    kill_at: Option<Instant>,
    /// A signal to send at the next action.
    signal: Option<i32>,
    /// After the program's exit: the latest moment to close even if its stdout is held open.
    linger_until: Option<Instant>,
    lingered: bool,
    stderr_partial: Vec<u8>,
    stderr_lines: VecDeque<String>,
    /// The instant of the latest event (`next_action` has none of its own).
    now: Instant,
}

impl ExecSession {
    /// A session accepted at `now`.
    pub fn new(cfg: ExecConfig, now: Instant) -> ExecSession {
        ExecSession {
            cfg,
            phase: Phase::NotAsked,
            pid: None,
            to_child: OutBuf::default(),
            to_client: OutBuf::default(),
            client_eof: false,
            stdin_closed: false,
            stdout_eof: false,
            stderr_eof: false,
            client_shut: false,
            exit: None,
            timeout_at: None,
            term_at: None,
            kill_at: None,
            signal: None,
            linger_until: None,
            lingered: false,
            stderr_partial: Vec::new(),
            stderr_lines: VecDeque::new(),
            now,
        }
    }

    /// How the program ended, once it has.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    fn line(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let pid = self.pid.map_or_else(|| "?".to_string(), |p| p.to_string());
        self.stderr_lines
            .push_back(format!("{} pid {pid}: {text}", self.cfg.label));
    }

    /// The client is done and stdin closed: the program's time to exit starts (again).
    fn arm_term(&mut self, now: Instant) {
        if self.exit.is_none() && self.kill_at.is_none() {
            self.term_at = Some(now + self.cfg.kill_after);
        }
    }

    /// The escalation starts now: SIGTERM, then SIGKILL after `kill_after`.
    fn terminate(&mut self, now: Instant) {
        self.term_at = None;
        if self.exit.is_none() {
            self.signal = Some(SIGTERM);
            self.kill_at = Some(now + self.cfg.kill_after);
        }
    }

    fn close_stdin(&mut self, now: Instant) {
        self.stdin_closed = true;
        self.to_child = OutBuf::default();
        if self.client_eof {
            self.arm_term(now);
        }
    }
}

impl Session for ExecSession {
    fn feed(&mut self, peer: Peer, input: &[u8], now: Instant) -> usize {
        self.now = now;
        match peer {
            Peer::Client => {
                if self.stdin_closed || self.exit.is_some() {
                    return input.len(); // nobody reads it any more
                }
                let take = input
                    .len()
                    .min(EXEC_WINDOW.saturating_sub(self.to_child.len()));
                self.to_child.extend(&input[..take]);
                take
            }
            Peer::Child(CHILD, Stdio::Stdout) => {
                let take = input
                    .len()
                    .min(EXEC_WINDOW.saturating_sub(self.to_client.len()));
                self.to_client.extend(&input[..take]);
                take
            }
            Peer::Child(CHILD, Stdio::Stderr) => {
                let mut used = 0;
                while used < input.len() && self.stderr_lines.len() < MAX_HELD_LINES {
                    let rest = &input[used..];
                    let room = MAX_STDERR_LINE - self.stderr_partial.len();
                    match rest.iter().take(room).position(|&b| b == b'\n') {
                        Some(nl) => {
                            let mut whole = std::mem::take(&mut self.stderr_partial);
                            whole.extend_from_slice(&rest[..nl]);
                            self.line(&whole);
                            used += nl + 1;
                        }
                        None if rest.len() >= room => {
                            let mut whole = std::mem::take(&mut self.stderr_partial);
                            whole.extend_from_slice(&rest[..room]);
                            self.line(&whole);
                            used += room;
                        }
                        None => {
                            self.stderr_partial.extend_from_slice(rest);
                            used = input.len();
                        }
                    }
                }
                used
            }
            _ => input.len(),
        }
    }

    fn eof(&mut self, peer: Peer, now: Instant) {
        self.now = now;
        match peer {
            Peer::Client => {
                self.client_eof = true;
                if self.stdin_closed {
                    self.arm_term(now);
                }
            }
            Peer::Child(CHILD, Stdio::Stdout) => self.stdout_eof = true,
            Peer::Child(CHILD, Stdio::Stderr) => {
                self.stderr_eof = true;
                if !self.stderr_partial.is_empty() {
                    let last = std::mem::take(&mut self.stderr_partial);
                    self.line(&last);
                }
            }
            // The program closed its stdin (a write found no reader).
            Peer::Child(CHILD, Stdio::Stdin) => self.close_stdin(now),
            Peer::Upstream | Peer::Child(..) => {}
        }
    }

    fn wants_read(&self, peer: Peer) -> bool {
        if self.phase != Phase::Running {
            return false;
        }
        match peer {
            Peer::Client => {
                !self.client_eof
                    && (self.stdin_closed
                        || self.exit.is_some()
                        || self.to_child.len() < EXEC_WINDOW)
            }
            Peer::Child(CHILD, Stdio::Stdout) => {
                !self.stdout_eof && self.to_client.len() < EXEC_WINDOW
            }
            Peer::Child(CHILD, Stdio::Stderr) => {
                !self.stderr_eof && self.stderr_lines.len() < MAX_HELD_LINES
            }
            _ => false,
        }
    }

    fn next_action(&mut self) -> Action<'_> {
        match self.phase {
            Phase::NotAsked => {
                self.phase = Phase::Spawning;
                return Action::Spawn(CHILD, &self.cfg.request);
            }
            Phase::Spawning => return Action::Wait,
            Phase::Failed => return Action::Close,
            Phase::Running => {}
        }
        if let Some(sig) = self.signal.take() {
            return Action::Kill(CHILD, sig);
        }
        if !self.to_client.is_empty() {
            return Action::Write(Peer::Client, self.to_client.pending());
        }
        if self.lingered {
            return Action::Close;
        }
        if self.stdout_eof && !self.client_shut {
            self.client_shut = true;
            return Action::Shutdown(Peer::Client);
        }
        if !self.stdin_closed {
            if !self.to_child.is_empty() {
                return Action::Write(Peer::Child(CHILD, Stdio::Stdin), self.to_child.pending());
            }
            if self.client_eof || self.exit.is_some() {
                self.close_stdin(self.now);
                return Action::Shutdown(Peer::Child(CHILD, Stdio::Stdin));
            }
        }
        // Done once the program has exited and everything it wrote went out.
        if self.exit.is_some() && self.client_shut && (self.stderr_eof || self.lingered) {
            return Action::Close;
        }
        Action::Wait
    }

    fn written(&mut self, peer: Peer, n: usize, now: Instant) {
        self.now = now;
        match peer {
            Peer::Client => {
                self.to_client.consume(n);
                // A client that still reads is still there.
                if n > 0 && self.term_at.is_some() {
                    self.arm_term(now);
                }
            }
            _ => self.to_child.consume(n),
        }
    }

    fn spawned(&mut self, _child: ChildId, pid: Option<u32>, now: Instant) {
        self.now = now;
        let Some(pid) = pid else {
            self.phase = Phase::Failed;
            return;
        };
        self.pid = Some(pid);
        self.phase = Phase::Running;
        self.timeout_at = self.cfg.timeout.map(|t| now + t);
    }

    fn exited(&mut self, _child: ChildId, how: Exit, now: Instant) {
        self.now = now;
        self.exit = Some(how);
        self.term_at = None;
        self.kill_at = None;
        self.timeout_at = None;
        self.signal = None;
        if !(self.stdout_eof && self.stderr_eof) {
            self.linger_until = Some(now + self.cfg.kill_after);
        }
    }

    fn closes_after_output(&self) -> bool {
        self.stdout_eof
    }

    fn deadline(&self) -> Option<Instant> {
        [
            self.timeout_at,
            self.term_at,
            self.kill_at,
            self.linger_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn timed_out(&mut self, now: Instant) {
        self.now = now;
        if self.timeout_at.is_some_and(|t| t <= now) {
            self.timeout_at = None;
            if self.kill_at.is_none() {
                self.terminate(now);
            }
        }
        if self.term_at.is_some_and(|t| t <= now) {
            self.terminate(now);
        }
        if self.kill_at.is_some_and(|t| t <= now) {
            self.kill_at = None;
            if self.exit.is_none() {
                self.signal = Some(SIGKILL);
            }
        }
        if self.linger_until.is_some_and(|t| t <= now) {
            self.linger_until = None;
            self.lingered = true;
        }
    }

    fn take_stderr(&mut self) -> Option<String> {
        self.stderr_lines.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(kill_after: u64) -> (ExecSession, Instant) {
        let cfg = ExecConfig {
            request: SpawnRequest {
                program: "cat".into(),
                ..SpawnRequest::default()
            },
            kill_after: Duration::from_secs(kill_after),
            timeout: None,
            label: "127.0.0.1:5".into(),
        };
        let t0 = Instant::now();
        let mut s = ExecSession::new(cfg, t0);
        assert!(matches!(s.next_action(), Action::Spawn(..)));
        assert!(matches!(s.next_action(), Action::Wait));
        s.spawned(CHILD, Some(42), t0);
        (s, t0)
    }

    #[test]
    fn bytes_go_through_with_half_close_both_ways() {
        let (mut s, t0) = session(5);
        assert_eq!(s.feed(Peer::Client, b"hello", t0), 5);
        match s.next_action() {
            Action::Write(Peer::Child(CHILD, Stdio::Stdin), b) => assert_eq!(b, b"hello"),
            a => panic!("{a:?}"),
        }
        s.written(Peer::Child(CHILD, Stdio::Stdin), 5, t0);
        s.eof(Peer::Client, t0);
        assert!(matches!(
            s.next_action(),
            Action::Shutdown(Peer::Child(CHILD, Stdio::Stdin))
        ));
        assert_eq!(s.feed(Peer::Child(CHILD, Stdio::Stdout), b"hello", t0), 5);
        match s.next_action() {
            Action::Write(Peer::Client, b) => assert_eq!(b, b"hello"),
            a => panic!("{a:?}"),
        }
        s.written(Peer::Client, 5, t0);
        s.eof(Peer::Child(CHILD, Stdio::Stdout), t0);
        assert!(s.closes_after_output());
        assert!(matches!(s.next_action(), Action::Shutdown(Peer::Client)));
        assert!(matches!(s.next_action(), Action::Wait));
        s.eof(Peer::Child(CHILD, Stdio::Stderr), t0);
        s.exited(CHILD, Exit::Code(0), t0);
        assert!(matches!(s.next_action(), Action::Close));
        assert_eq!(s.exit(), Some(Exit::Code(0)));
    }

    #[test]
    fn each_direction_holds_one_window() {
        let (mut s, t0) = session(5);
        let big = vec![7u8; EXEC_WINDOW + 10];
        assert_eq!(s.feed(Peer::Client, &big, t0), EXEC_WINDOW);
        assert!(!s.wants_read(Peer::Client));
        assert_eq!(
            s.feed(Peer::Child(CHILD, Stdio::Stdout), &big, t0),
            EXEC_WINDOW
        );
        assert!(!s.wants_read(Peer::Child(CHILD, Stdio::Stdout)));
    }

    #[test]
    fn a_program_that_ignores_eof_gets_term_then_kill() {
        let (mut s, t0) = session(2);
        s.eof(Peer::Client, t0);
        assert!(matches!(
            s.next_action(),
            Action::Shutdown(Peer::Child(CHILD, Stdio::Stdin))
        ));
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(2)));
        let t1 = t0 + Duration::from_secs(2);
        s.timed_out(t1);
        assert!(matches!(s.next_action(), Action::Kill(_, SIGTERM)));
        assert_eq!(s.deadline(), Some(t1 + Duration::from_secs(2)));
        s.timed_out(t1 + Duration::from_secs(2));
        assert!(matches!(s.next_action(), Action::Kill(_, SIGKILL)));
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn the_timeout_caps_wall_time() {
        let cfg = ExecConfig {
            request: SpawnRequest::default(),
            kill_after: Duration::from_secs(1),
            timeout: Some(Duration::from_secs(3)),
            label: "p".into(),
        };
        let t0 = Instant::now();
        let mut s = ExecSession::new(cfg, t0);
        let _ = s.next_action();
        s.spawned(CHILD, Some(42), t0);
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(3)));
        s.timed_out(t0 + Duration::from_secs(3));
        assert!(matches!(s.next_action(), Action::Kill(_, SIGTERM)));
    }

    #[test]
    fn stderr_becomes_prefixed_lines_never_client_bytes() {
        let (mut s, t0) = session(5);
        let n = s.feed(Peer::Child(CHILD, Stdio::Stderr), b"one\ntw", t0);
        assert_eq!(n, 6);
        assert_eq!(s.take_stderr().as_deref(), Some("127.0.0.1:5 pid 42: one"));
        assert_eq!(s.take_stderr(), None);
        s.feed(Peer::Child(CHILD, Stdio::Stderr), b"o\r\n", t0);
        assert_eq!(s.take_stderr().as_deref(), Some("127.0.0.1:5 pid 42: two"));
        s.feed(Peer::Child(CHILD, Stdio::Stderr), b"tail", t0);
        s.eof(Peer::Child(CHILD, Stdio::Stderr), t0);
        assert_eq!(s.take_stderr().as_deref(), Some("127.0.0.1:5 pid 42: tail"));
        assert!(
            matches!(s.next_action(), Action::Wait),
            "nothing for the client"
        );
    }

    #[test]
    fn a_long_stderr_line_is_cut() {
        let (mut s, t0) = session(5);
        let long = vec![b'x'; MAX_STDERR_LINE * 2 + 5];
        assert_eq!(
            s.feed(Peer::Child(CHILD, Stdio::Stderr), &long, t0),
            long.len()
        );
        assert_eq!(s.stderr_lines.len(), 2);
    }

    #[test]
    fn a_failed_spawn_closes() {
        let cfg = ExecConfig {
            request: SpawnRequest::default(),
            kill_after: Duration::from_secs(1),
            timeout: None,
            label: "p".into(),
        };
        let t0 = Instant::now();
        let mut s = ExecSession::new(cfg, t0);
        let _ = s.next_action();
        s.spawned(CHILD, None, t0);
        assert!(matches!(s.next_action(), Action::Close));
    }

    #[test]
    fn output_after_exit_is_flushed_then_closed() {
        let (mut s, t0) = session(5);
        s.exited(CHILD, Exit::Code(3), t0);
        assert!(matches!(
            s.next_action(),
            Action::Shutdown(Peer::Child(CHILD, Stdio::Stdin))
        ));
        s.feed(Peer::Child(CHILD, Stdio::Stdout), b"last", t0);
        assert!(matches!(s.next_action(), Action::Write(Peer::Client, _)));
        s.written(Peer::Client, 4, t0);
        s.eof(Peer::Child(CHILD, Stdio::Stdout), t0);
        s.eof(Peer::Child(CHILD, Stdio::Stderr), t0);
        assert!(matches!(s.next_action(), Action::Shutdown(Peer::Client)));
        assert!(matches!(s.next_action(), Action::Close));
    }

    #[test]
    fn a_held_stdout_after_exit_closes_after_the_linger() {
        let (mut s, t0) = session(1);
        s.exited(CHILD, Exit::Code(0), t0);
        let _ = s.next_action(); // stdin closed
        assert!(matches!(s.next_action(), Action::Wait));
        s.timed_out(t0 + Duration::from_secs(1));
        assert!(matches!(s.next_action(), Action::Close));
    }
}
