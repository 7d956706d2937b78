//! The contract between a protocol core and the driver that owns its sockets.
//!
//! A driver loops: ask [`Session::next_action`], perform it, report the outcome
//! ([`Session::written`], [`Session::connected`]); on [`Action::Wait`] it waits for input
//! from the peers the session [`wants_read`](Session::wants_read), for its
//! [`deadline`](Session::deadline), or for a shutdown notice, and reports what came with
//! [`Session::feed`], [`Session::eof`], [`Session::timed_out`] or [`Session::drain`].
//!
//! The driver keeps the input the session did not consume and offers it again with more
//! appended, so a core never has to copy a partial request; "incomplete" is simply
//! `feed` returning 0. Errors inside a protocol become actions (write a 400, then close):
//! no driver needs protocol knowledge.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Instant, SystemTime};

/// Which of a child process's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stdio {
    /// The child's standard input: we write to it.
    Stdin,
    /// The child's standard output: we read from it.
    Stdout,
    /// The child's standard error: we read from it.
    Stderr,
}

/// Which of a session's child processes: a slot the session picks (0..=255) when it asks for
/// the child with [`Action::Spawn`], and uses again for its pipes, its signals and its exit.
/// A slot is free again once the child has [`exited`](Session::exited) and its output pipes
/// have reached EOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildId(pub u8);

/// Which descriptor an action or an event concerns. A session names its peers from this small
/// set; the driver maps each to a socket or a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The accepted connection.
    Client,
    /// The connection the session asked for with [`Action::Connect`] (relay, proxy).
    Upstream,
    /// A pipe of a child process the session asked for with [`Action::Spawn`]. The driver
    /// closes the child's stdout and stderr once they reach EOF (after [`Session::eof`]), and
    /// its stdin when [`Action::Shutdown`] asks or a write to it fails (reported as `eof` of
    /// the stdin peer: nobody reads it any more; a write to an already closed child pipe is
    /// reported the same way). Once the child is reaped and its output is at EOF, its slot is
    /// free for a new [`Action::Spawn`].
    Child(ChildId, Stdio),
}

impl Stdio {
    /// The three streams, in descriptor order.
    pub const ALL: [Stdio; 3] = [Stdio::Stdin, Stdio::Stdout, Stdio::Stderr];

    /// 0, 1 or 2: the descriptor number the stream has in the child.
    pub fn index(self) -> usize {
        match self {
            Stdio::Stdin => 0,
            Stdio::Stdout => 1,
            Stdio::Stderr => 2,
        }
    }
}

/// A response body the driver can send: its length, its bytes by offset (for small bodies
/// and for surfaces that cannot `sendfile`, such as TLS), and, where it has one, a descriptor
/// the kernel can copy from directly. The core never sees what is behind it (a file, a
/// buffer in memory).
pub trait Body: Send + Sync + std::fmt::Debug {
    /// Bytes in the body.
    fn len(&self) -> u64;
    /// Whether the body is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads bytes at `offset` into `buf`; 0 at or past the end.
    ///
    /// # Errors
    /// The store behind the body failed (an I/O error reading a file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// A descriptor the driver may `sendfile` from, if the body lives in one.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Whether the bytes are still those the body was opened with (a file edited in place
    /// is not). The driver asks before the last burst of a piece it copies in the kernel,
    /// and ends the connection rather than finish a response under the old labels.
    fn unchanged(&self) -> bool {
        true
    }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit` with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// A program the session wants started, its standard streams on pipes the driver serves as
/// [`Peer::Child`] peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpawnRequest {
    /// The program (looked up in `PATH` when it has no slash).
    pub program: String,
    pub args: Vec<String>,
    /// Variables set for the child, on top of the server's environment unless `clear_env`.
    pub env: Vec<(String, String)>,
    /// Start the child with no inherited environment.
    pub clear_env: bool,
    /// Working directory; the server's when `None`.
    pub cwd: Option<String>,
}

/// The wall clock as a core sees it: one reading of the calendar time taken by the server
/// when the connection was accepted, beside the instant of that moment. Later instants, which
/// every event brings, map onto calendar time from it (for `Date` headers and log lines), so a
/// core never reads a clock, and a test or fuzzer picks any date it likes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wall {
    at: Instant,
    time: SystemTime,
}

impl Wall {
    /// `time` is the calendar time at instant `at`.
    pub fn new(at: Instant, time: SystemTime) -> Wall {
        Wall { at, time }
    }

    /// The calendar time at instant `now`.
    pub fn time_at(&self, now: Instant) -> SystemTime {
        match now.checked_duration_since(self.at) {
            Some(d) => self.time + d,
            None => self.time - self.at.duration_since(now),
        }
    }
}

/// What the driver should do next.
#[derive(Debug)]
pub enum Action<'a> {
    /// Write (a prefix of) these bytes to the peer, then call [`Session::written`].
    Write(Peer, &'a [u8]),
    /// Send `len` bytes of `body` from `offset` to the client (with `sendfile` where the body
    /// has a descriptor and the socket allows it), then call [`Session::written`] with the
    /// count that went out.
    SendBody {
        body: &'a dyn Body,
        offset: u64,
        len: u64,
    },
    /// Open the upstream connection, then call [`Session::connected`].
    Connect,
    /// From now on, move every byte that arrives from `from` to `to` inside the kernel (a
    /// relay's direction: `splice(2)` through a pipe), and say at once with
    /// [`Session::forwarding`] whether that is possible. If it is, the session no longer
    /// sees that direction's bytes (the driver counts them and applies the same
    /// backpressure: at most a pipe's worth in flight); [`Session::eof`] of `from` arrives
    /// once `from` has ended and every byte read from it has reached `to`. If not (TLS, a
    /// child's pipe, a kernel that refuses), nothing changed and the session copies as
    /// before. Output the session still holds for `to` must be written first.
    Forward { from: Peer, to: Peer },
    /// Start a child process on pipes in this slot (one not in use), then call
    /// [`Session::spawned`]; its end is reported with [`Session::exited`].
    Spawn(ChildId, &'a SpawnRequest),
    /// Shut down our write side towards the peer (the peer reads EOF); for a child's stdin,
    /// close the pipe.
    Shutdown(Peer),
    /// Send this signal to the process group of the child in this slot (nothing if it has
    /// exited).
    Kill(ChildId, i32),
    /// Nothing to send: wait for input, the deadline or a shutdown notice.
    Wait,
    /// The session is over: close every descriptor (children still running are killed and
    /// reaped by the driver).
    Close,
}

/// One connection's protocol state machine. Every event carries the current instant, the
/// only clock a core has.
pub trait Session {
    /// Bytes that arrived from `peer`. Returns how many were consumed; the driver keeps the
    /// rest and offers them again, with more appended, once more arrive.
    fn feed(&mut self, peer: Peer, input: &[u8], now: Instant) -> usize;
    /// `peer` closed its write side (a read returned 0).
    fn eof(&mut self, peer: Peer, now: Instant);
    /// Whether the driver should read from `peer` now. False means "not now": backpressure
    /// (output not yet flushed), the peer is at EOF, or the peer does not exist yet.
    fn wants_read(&self, peer: Peer) -> bool;
    /// What to do next. Called again after every reported outcome.
    fn next_action(&mut self) -> Action<'_>;
    /// `n` bytes of the last [`Action::Write`] or [`Action::SendBody`] to `peer` went out.
    fn written(&mut self, peer: Peer, n: usize, now: Instant);
    /// The outcome of [`Action::Connect`].
    fn connected(&mut self, ok: bool, now: Instant) {
        let _ = (ok, now);
    }
    /// The outcome of [`Action::Forward`] from `from`.
    fn forwarding(&mut self, from: Peer, ok: bool, now: Instant) {
        let _ = (from, ok, now);
    }
    /// The outcome of [`Action::Spawn`] for `child`: its process id, or `None` when it could
    /// not be started (the driver records why).
    fn spawned(&mut self, child: ChildId, pid: Option<u32>, now: Instant) {
        let _ = (child, pid, now);
    }
    /// The child process in slot `child` ended (and was reaped). Its pipes stay open until
    /// they reach EOF, so output written just before the exit is still delivered.
    fn exited(&mut self, child: ChildId, how: Exit, now: Instant) {
        let _ = (child, how, now);
    }
    /// Whether the output now queued is the last: once it is written the session asks for
    /// [`Action::Close`] or [`Action::Shutdown`]. A driver may then let the kernel hold the
    /// last segment back so the FIN goes out with it (one packet instead of two).
    fn closes_after_output(&self) -> bool {
        false
    }
    /// When the session wants [`Session::timed_out`] called if nothing happens before.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// The deadline passed.
    fn timed_out(&mut self, now: Instant) {
        let _ = now;
    }
    /// The server is shutting down: finish what is in flight and close at the next clean
    /// point (an HTTP session closes between requests; a byte stream goes on until its peer
    /// is done or the grace period ends).
    fn drain(&mut self, now: Instant) {
        let _ = now;
    }
    /// The connection is over, whichever way (the session's close, a failed write, the hard
    /// stop): output not yet written never will be. Called once, before the last
    /// [`Session::take_log`], so a log line can say what really went out.
    fn closed(&mut self, now: Instant) {
        let _ = now;
    }
    /// A finished log line (an HTTP access-log entry), if one is ready.
    fn take_log(&mut self) -> Option<String> {
        None
    }
    /// A finished line a child process wrote to its stderr, already prefixed with who wrote
    /// it (the peer, the pid), if one is ready. It goes to the server's stderr (or its
    /// connection log), never into the client's stream.
    fn take_stderr(&mut self) -> Option<String> {
        None
    }
}

/// A buffer of bytes waiting to be written, with the written prefix skipped without moving
/// memory on every short write, and its allocation released once empty (idle connections
/// should not hold buffers).
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    pos: usize,
}

impl OutBuf {
    /// Bytes still to write.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    /// Direct access for formatting into the buffer.
    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
    /// `n` bytes went out.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.pos = 0;
            self.buf.clear();
            if self.buf.capacity() > 64 * 1024 {
                self.buf = Vec::new();
            }
        }
    }
}
