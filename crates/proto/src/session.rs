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

use std::fs::File;
use std::time::Instant;

/// Which socket an action or an event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The accepted connection.
    Client,
    /// The connection the session asked for with [`Action::Connect`] (relay, proxy).
    Upstream,
}

/// What the driver should do next.
#[derive(Debug)]
pub enum Action<'a> {
    /// Write (a prefix of) these bytes to the peer, then call [`Session::written`].
    Write(Peer, &'a [u8]),
    /// Send `len` bytes of `file` from `offset` to the client (sendfile), then call
    /// [`Session::written`] with the count that went out.
    SendFile {
        file: &'a File,
        offset: u64,
        len: u64,
    },
    /// Open the upstream connection, then call [`Session::connected`].
    Connect,
    /// Shut down our write side towards the peer (the peer reads EOF).
    Shutdown(Peer),
    /// Nothing to send: wait for input, the deadline or a shutdown notice.
    Wait,
    /// The session is over: close every socket.
    Close,
}

/// One connection's protocol state machine.
pub trait Session {
    /// Bytes that arrived from `peer`. Returns how many were consumed; the driver keeps the
    /// rest and offers them again, with more appended, once more arrive.
    fn feed(&mut self, peer: Peer, input: &[u8]) -> usize;
    /// `peer` closed its write side (a read returned 0).
    fn eof(&mut self, peer: Peer);
    /// Whether the driver should read from `peer` now. False means "not now": backpressure
    /// (output not yet flushed), the peer is at EOF, or the peer does not exist yet.
    fn wants_read(&self, peer: Peer) -> bool;
    /// What to do next. Called again after every reported outcome.
    fn next_action(&mut self) -> Action<'_>;
    /// `n` bytes of the last [`Action::Write`] or [`Action::SendFile`] to `peer` went out.
    fn written(&mut self, peer: Peer, n: usize);
    /// The outcome of [`Action::Connect`].
    fn connected(&mut self, ok: bool) {
        let _ = ok;
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
    fn drain(&mut self) {}
    /// The connection is over, whichever way (the session's close, a failed write, the hard
    /// stop): output not yet written never will be. Called once, before the last
    /// [`Session::take_log`], so a log line can say what really went out.
    fn closed(&mut self) {}
    /// A finished log line (an HTTP access-log entry), if one is ready.
    fn take_log(&mut self) -> Option<String> {
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
