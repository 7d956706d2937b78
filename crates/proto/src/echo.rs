//! The echo service: every byte that arrives goes back, in order, and when the client
//! half-closes it still gets everything it sent, then EOF.
//!
//! Backpressure: at most [`ECHO_WINDOW`] bytes are held; past that the session stops
//! consuming, so a client that writes without reading is slowed by TCP flow control instead
//! of growing the server's memory.

use std::time::Instant;

use crate::session::{Action, OutBuf, Peer, Session};

/// Most bytes held for echoing before the session stops reading.
pub const ECHO_WINDOW: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Echo {
    out: OutBuf,
    client_eof: bool,
}

impl Echo {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Session for Echo {
    fn feed(&mut self, peer: Peer, input: &[u8], _now: Instant) -> usize {
        debug_assert_eq!(peer, Peer::Client);
        let take = input.len().min(ECHO_WINDOW.saturating_sub(self.out.len()));
        self.out.extend(&input[..take]);
        take
    }

    fn eof(&mut self, _peer: Peer, _now: Instant) {
        self.client_eof = true;
    }

    fn wants_read(&self, peer: Peer) -> bool {
        peer == Peer::Client && !self.client_eof && self.out.len() < ECHO_WINDOW
    }

    fn next_action(&mut self) -> Action<'_> {
        if !self.out.is_empty() {
            Action::Write(Peer::Client, self.out.pending())
        } else if self.client_eof {
            // Everything the client sent has gone back; closing sends our EOF.
            Action::Close
        } else {
            Action::Wait
        }
    }

    fn written(&mut self, _peer: Peer, n: usize, _now: Instant) {
        self.out.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a session in memory: feeds `chunks`, writes everything, returns the output.
    fn run(chunks: &[&[u8]], write_limit: usize) -> Vec<u8> {
        let mut s = Echo::new();
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let n = s.feed(Peer::Client, rest, Instant::now());
                rest = &rest[n..];
                while let Action::Write(_, buf) = s.next_action() {
                    let n = buf.len().min(write_limit);
                    out.extend_from_slice(&buf[..n]);
                    s.written(Peer::Client, n, Instant::now());
                }
            }
        }
        s.eof(Peer::Client, Instant::now());
        loop {
            match s.next_action() {
                Action::Write(_, buf) => {
                    let n = buf.len().min(write_limit);
                    out.extend_from_slice(&buf[..n]);
                    s.written(Peer::Client, n, Instant::now());
                }
                Action::Close => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[test]
    fn echoes_binary_data_across_short_writes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<&[u8]> = data.chunks(7777).collect();
        for limit in [1, 3, 4096, usize::MAX] {
            assert_eq!(run(&chunks, limit), data, "write limit {limit}");
        }
    }

    #[test]
    fn nul_bytes_and_empty_input() {
        assert_eq!(run(&[b"\0\0a\0", b""], 1), b"\0\0a\0");
        assert_eq!(run(&[], 1), b"");
    }

    #[test]
    fn stops_reading_when_window_full() {
        let mut s = Echo::new();
        let big = vec![1u8; ECHO_WINDOW + 10];
        assert_eq!(s.feed(Peer::Client, &big, Instant::now()), ECHO_WINDOW);
        assert!(!s.wants_read(Peer::Client));
        assert_eq!(s.feed(Peer::Client, &big, Instant::now()), 0);
        s.written(Peer::Client, 10, Instant::now());
        assert!(s.wants_read(Peer::Client));
    }
}
