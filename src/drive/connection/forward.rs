//! [`Action::Forward`](plumb_proto::Action::Forward): a relay's direction moved inside the
//! kernel. Bytes go `from` socket -> pipe -> `to` socket with `splice(2)`, so they never
//! reach user space; the pipe is the direction's buffer (its capacity is the window, as
//! `RELAY_WINDOW` is for copying), so backpressure is the same: nothing is read from `from`
//! while the pipe is full.
//!
//! Readiness: a `splice` from a socket into a pipe says `EAGAIN` both when the socket is empty
//! and when the pipe is full (a pipe holds 16 buffers, and small segments use one each, so it
//! can be full well below its byte capacity). The pump therefore trusts `EAGAIN` as "socket
//! empty" only when the pipe was empty; otherwise it keeps the readable flag and tries again
//! once the pipe drained, so an edge-triggered waiter never loses an edge.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use plumb_proto::session::Peer;

use super::{Connection, Endpoint, would_block};

/// One direction in the kernel.
#[derive(Debug)]
pub(super) struct Forward {
    pub(super) from: Peer,
    to: Peer,
    pipe_read: OwnedFd,
    pipe_write: OwnedFd,
    /// Bytes in the pipe: read from `from`, not yet written to `to`.
    in_pipe: usize,
    /// The pipe's capacity: at most this many bytes are in flight.
    cap: usize,
    from_eof: bool,
}

impl Forward {
    /// Whether the pump should read `from` for this direction now.
    pub(super) fn wants_input(&self) -> bool {
        !self.from_eof && self.in_pipe < self.cap
    }
}

/// The pipe capacity asked for: the relay's window.
const WINDOW: usize = plumb_proto::relay::RELAY_WINDOW;

impl Connection {
    /// Starts moving `from` -> `to` in the kernel if both are sockets; tells the session.
    pub(super) fn start_forward(&mut self, from: Peer, to: Peer, now: Instant) {
        let ok = match self.open_forward(from, to) {
            Ok(f) => {
                self.forwards.push(f);
                true
            }
            Err(e) => {
                log::debug!(
                    "connection from {}: copying {from:?} -> {to:?} in user space: {e}",
                    self.peer
                );
                false
            }
        };
        self.session.forwarding(from, ok, now);
    }

    fn open_forward(&mut self, from: Peer, to: Peer) -> io::Result<Forward> {
        let unsupported = |why: &str| io::Error::new(io::ErrorKind::Unsupported, why.to_owned());
        if from == to || self.forwards.iter().any(|f| f.from == from) {
            return Err(unsupported("direction already forwarded"));
        }
        for p in [from, to] {
            match self.sides.get(p).map(|s| &s.surface) {
                Some(Endpoint::Stream(s)) => {
                    // A splice from a blocking socket waits for data; the blocking waiter
                    // leaves client sockets blocking for writes, so make both non-blocking
                    // (the waiter polls on `EAGAIN` either way).
                    s.set_nonblocking(true)?;
                }
                Some(_) => return Err(unsupported("not a kernel socket")),
                None => return Err(unsupported("no such peer")),
            }
        }
        let (pipe_read, pipe_write) = plumb_sys::pipe_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)?;
        let cap = plumb_sys::set_pipe_capacity(&pipe_write, WINDOW)
            .or_else(|_| plumb_sys::pipe_capacity(&pipe_write))?;
        Ok(Forward {
            from,
            to,
            pipe_read,
            pipe_write,
            in_pipe: 0,
            cap,
            from_eof: false,
        })
    }

    /// Moves what can move in every forwarded direction. True if something happened the
    /// session must see (a direction ended), bytes moved, or the budget ran out (the pump
    /// then yields rather than waits: an edge-triggered waiter would not report the bytes
    /// still there); `blocked` is set when a direction has bytes for a peer that is full.
    pub(super) fn run_forwards(
        &mut self,
        now: Instant,
        budget: &mut u32,
        blocked: &mut bool,
    ) -> io::Result<bool> {
        if *budget == 0 {
            return Ok(true); // there may be more: have the waiter run us again
        }
        let mut progress = false;
        let mut i = 0;
        while i < self.forwards.len() {
            let (moved, ended) = self.run_forward(i, budget, blocked)?;
            progress |= moved;
            if ended {
                let f = self.forwards.swap_remove(i);
                self.session.eof(f.from, now);
                progress = true;
            } else {
                i += 1;
            }
        }
        if progress {
            self.write_stalled_since = None;
        }
        Ok(progress)
    }

    /// One direction until it would block or the budget is used: (bytes moved, ended).
    fn run_forward(
        &mut self,
        i: usize,
        budget: &mut u32,
        blocked: &mut bool,
    ) -> io::Result<(bool, bool)> {
        let f = &mut self.forwards[i];
        let (from, to) = match (f.from, f.to) {
            (Peer::Client, Peer::Upstream) => (&mut self.sides.client, &mut self.sides.upstream),
            (Peer::Upstream, Peer::Client) => (&mut self.sides.upstream, &mut self.sides.client),
            _ => return Err(io::Error::other("a forward between unknown peers")),
        };
        let (Some(from), Some(to)) = (from.as_mut(), to.as_mut()) else {
            return Err(io::Error::other("a forwarded peer closed"));
        };
        let mut moved = false;
        while *budget > 0 {
            *budget -= 1;
            // Input read in user space before the forward began goes first.
            if !from.pending.is_empty() {
                if !to.writable {
                    *blocked = true;
                    break;
                }
                match to.surface.surface().try_write(&from.pending, false) {
                    Ok(n) => {
                        count(f.to, n, &mut self.bytes_out);
                        super::consume(&mut from.pending, n);
                        moved = true;
                        continue;
                    }
                    Err(e) if would_block(&e) => {
                        to.writable = false;
                        *blocked = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if f.in_pipe > 0 && to.writable {
                match plumb_sys::splice(&f.pipe_read, &to.surface.fd(), f.in_pipe) {
                    Ok(n) => {
                        f.in_pipe -= n;
                        count(f.to, n, &mut self.bytes_out);
                        moved = true;
                        continue;
                    }
                    Err(e) if would_block(&e) => to.writable = false,
                    Err(e) => return Err(e),
                }
            }
            if f.wants_input() && from.readable {
                match plumb_sys::splice(&from.surface.fd(), &f.pipe_write, f.cap - f.in_pipe) {
                    Ok(0) => {
                        f.from_eof = true;
                        from.readable = false;
                    }
                    Ok(n) => {
                        f.in_pipe += n;
                        count(f.from, n, &mut self.bytes_in);
                        moved = true;
                        continue;
                    }
                    Err(e) if would_block(&e) => {
                        if f.in_pipe == 0 {
                            from.readable = false; // the pipe had room: the socket is empty
                        } else if !to.writable {
                            *blocked = true;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if f.in_pipe > 0 && !to.writable {
                *blocked = true;
            }
            break;
        }
        let ended = f.from_eof && f.in_pipe == 0 && from.pending.is_empty();
        Ok((moved, ended))
    }
}

/// Adds `n` to the connection's count for `p` if `p` is the client (the records count the
/// client's bytes).
fn count(p: Peer, n: usize, total: &mut u64) {
    if p == Peer::Client {
        *total += n as u64;
    }
}
