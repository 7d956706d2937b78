//! The relay: bytes from the client go to the upstream and back, with half-close carried
//! across in each direction and no byte lost. `plumb relay` and `plumb serve --proxy` are this
//! session; they differ only in what the client gets when the upstream cannot be reached
//! (a plain close, or `502 Bad Gateway`).
//!
//! Each direction holds at most [`RELAY_WINDOW`] bytes; when a direction is full the session
//! stops reading from its source, so a slow side slows the other instead of filling memory.

use std::time::{Duration, Instant};

use crate::session::{Action, OutBuf, Peer, Session, Wall};

/// Most bytes buffered in one direction before reading from its source pauses.
pub const RELAY_WINDOW: usize = 64 * 1024;

/// What the client gets when the upstream cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConnectFailure {
    /// Close the client connection.
    Close,
    /// Answer `502 Bad Gateway` (HTTP proxy mode), then close.
    BadGateway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    NotAsked,
    Connecting,
    Connected,
    Failed,
}

/// How long a failed proxy connection keeps reading (and discarding) the client's request
/// after the 502 went out, so closing does not reset the connection before the client reads
/// the answer.
const LINGER: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Relay {
    upstream: Upstream,
    on_failure: OnConnectFailure,
    to_upstream: OutBuf,
    to_client: OutBuf,
    client_eof: bool,
    upstream_eof: bool,
    upstream_shut: bool,
    client_shut: bool,
    linger_until: Option<Instant>,
    /// The instant of the latest event: a linger starts from it.
    now: Option<Instant>,
    /// Calendar time for the 502 page's `Date`.
    wall: Wall,
}

impl Relay {
    pub fn new(on_failure: OnConnectFailure, wall: Wall) -> Self {
        Relay {
            upstream: Upstream::NotAsked,
            on_failure,
            to_upstream: OutBuf::default(),
            to_client: OutBuf::default(),
            client_eof: false,
            upstream_eof: false,
            upstream_shut: false,
            client_shut: false,
            linger_until: None,
            now: None,
            wall,
        }
    }

    fn buf(&mut self, towards: Peer) -> &mut OutBuf {
        match towards {
            Peer::Upstream => &mut self.to_upstream,
            // A relay has no child; only the client is left.
            _ => &mut self.to_client,
        }
    }
}

/// The 502 answer, with the `Server` and `Date` every other answer has.
fn push_bad_gateway(out: &mut Vec<u8>, now: std::time::SystemTime) {
    out.extend_from_slice(b"HTTP/1.1 502 Bad Gateway\r\nServer: plumb\r\nDate: ");
    crate::http::encode::push_date(out, now);
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 28\r\nConnection: close\r\n\r\nupstream cannot be reached.\n");
}

impl Session for Relay {
    fn feed(&mut self, peer: Peer, input: &[u8], now: Instant) -> usize {
        self.now = Some(now);
        if self.upstream == Upstream::Failed {
            return input.len(); // lingering: discard the rest of the request
        }
        let towards = match peer {
            Peer::Upstream => Peer::Client,
            _ => Peer::Upstream,
        };
        let buf = self.buf(towards);
        let take = input.len().min(RELAY_WINDOW.saturating_sub(buf.len()));
        buf.extend(&input[..take]);
        take
    }

    fn eof(&mut self, peer: Peer, now: Instant) {
        self.now = Some(now);
        match peer {
            Peer::Upstream => self.upstream_eof = true,
            _ => self.client_eof = true,
        }
    }

    fn wants_read(&self, peer: Peer) -> bool {
        match peer {
            Peer::Client => {
                !self.client_eof
                    && (self.upstream == Upstream::Failed || self.to_upstream.len() < RELAY_WINDOW)
            }
            Peer::Child(..) => false,
            Peer::Upstream => {
                self.upstream == Upstream::Connected
                    && !self.upstream_eof
                    && self.to_client.len() < RELAY_WINDOW
            }
        }
    }

    fn next_action(&mut self) -> Action<'_> {
        match self.upstream {
            Upstream::NotAsked => {
                self.upstream = Upstream::Connecting;
                return Action::Connect;
            }
            Upstream::Connecting => return Action::Wait,
            Upstream::Failed => {
                if !self.to_client.is_empty() {
                    return Action::Write(Peer::Client, self.to_client.pending());
                }
                if self.on_failure == OnConnectFailure::Close || self.client_eof {
                    return Action::Close;
                }
                if !self.client_shut {
                    self.client_shut = true;
                    self.linger_until = self.now.map(|t| t + LINGER);
                    return Action::Shutdown(Peer::Client);
                }
                return Action::Wait;
            }
            Upstream::Connected => {}
        }
        if !self.to_client.is_empty() {
            return Action::Write(Peer::Client, self.to_client.pending());
        }
        if !self.to_upstream.is_empty() {
            return Action::Write(Peer::Upstream, self.to_upstream.pending());
        }
        if self.client_eof && !self.upstream_shut {
            self.upstream_shut = true;
            return Action::Shutdown(Peer::Upstream);
        }
        if self.upstream_eof && !self.client_shut {
            self.client_shut = true;
            return Action::Shutdown(Peer::Client);
        }
        if self.client_eof && self.upstream_eof {
            return Action::Close;
        }
        Action::Wait
    }

    fn written(&mut self, peer: Peer, n: usize, now: Instant) {
        self.now = Some(now);
        self.buf(peer).consume(n);
    }

    fn connected(&mut self, ok: bool, now: Instant) {
        self.now = Some(now);
        if ok {
            self.upstream = Upstream::Connected;
        } else {
            self.upstream = Upstream::Failed;
            self.to_upstream = OutBuf::default();
            if self.on_failure == OnConnectFailure::BadGateway {
                push_bad_gateway(self.to_client.vec(), self.wall.time_at(now));
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.linger_until
    }

    fn timed_out(&mut self, now: Instant) {
        if self.linger_until.is_some_and(|t| now >= t) {
            self.client_eof = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall() -> Wall {
        Wall::new(Instant::now(), std::time::UNIX_EPOCH)
    }

    fn flush(s: &mut Relay, out_client: &mut Vec<u8>, out_up: &mut Vec<u8>) -> Action<'static> {
        loop {
            match s.next_action() {
                Action::Write(Peer::Client, b) => {
                    let n = b.len();
                    out_client.extend_from_slice(b);
                    s.written(Peer::Client, n, Instant::now());
                }
                Action::Write(Peer::Upstream, b) => {
                    let n = b.len();
                    out_up.extend_from_slice(b);
                    s.written(Peer::Upstream, n, Instant::now());
                }
                Action::Shutdown(p) => return Action::Shutdown(p),
                Action::Close => return Action::Close,
                Action::Wait => return Action::Wait,
                Action::Connect => return Action::Connect,
                other => panic!("a relay never asks for {other:?}"),
            }
        }
    }

    #[test]
    fn relays_both_ways_with_half_close() {
        let mut s = Relay::new(OnConnectFailure::Close, wall());
        let (mut c, mut u) = (Vec::new(), Vec::new());
        assert!(matches!(s.next_action(), Action::Connect));
        // Bytes that arrive before the upstream is connected are held, not lost.
        assert_eq!(s.feed(Peer::Client, b"early ", Instant::now()), 6);
        assert!(!s.wants_read(Peer::Upstream));
        s.connected(true, Instant::now());
        assert!(matches!(flush(&mut s, &mut c, &mut u), Action::Wait));
        s.feed(Peer::Client, b"hello", Instant::now());
        s.eof(Peer::Client, Instant::now());
        assert!(matches!(
            flush(&mut s, &mut c, &mut u),
            Action::Shutdown(Peer::Upstream)
        ));
        assert_eq!(u, b"early hello");
        // The upstream keeps talking after our half-close.
        s.feed(Peer::Upstream, b"world", Instant::now());
        assert!(matches!(flush(&mut s, &mut c, &mut u), Action::Wait));
        s.eof(Peer::Upstream, Instant::now());
        assert!(matches!(
            flush(&mut s, &mut c, &mut u),
            Action::Shutdown(Peer::Client)
        ));
        assert!(matches!(flush(&mut s, &mut c, &mut u), Action::Close));
        assert_eq!(c, b"world");
    }

    #[test]
    fn backpressure_per_direction() {
        let mut s = Relay::new(OnConnectFailure::Close, wall());
        let _ = s.next_action();
        s.connected(true, Instant::now());
        let big = vec![0u8; RELAY_WINDOW * 2];
        assert_eq!(s.feed(Peer::Client, &big, Instant::now()), RELAY_WINDOW);
        assert!(!s.wants_read(Peer::Client));
        assert!(
            s.wants_read(Peer::Upstream),
            "the other direction is not blocked"
        );
        s.written(Peer::Upstream, 1, Instant::now());
        assert!(s.wants_read(Peer::Client));
    }

    #[test]
    fn failed_upstream_closes_or_answers_502() {
        let mut s = Relay::new(OnConnectFailure::Close, wall());
        let _ = s.next_action();
        s.connected(false, Instant::now());
        assert!(matches!(s.next_action(), Action::Close));

        let mut s = Relay::new(OnConnectFailure::BadGateway, wall());
        let _ = s.next_action();
        s.feed(Peer::Client, b"GET / HTTP/1.1\r\n", Instant::now());
        s.connected(false, Instant::now());
        let (mut c, mut u) = (Vec::new(), Vec::new());
        assert!(matches!(
            flush(&mut s, &mut c, &mut u),
            Action::Shutdown(Peer::Client)
        ));
        assert!(c.starts_with(b"HTTP/1.1 502 "));
        let text = String::from_utf8_lossy(&c);
        assert!(text.contains("\r\nServer: plumb\r\nDate: "), "{text}");
        assert!(u.is_empty());
        let head_end = c.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(c.len() - head_end, 28, "Content-Length matches the body");
        assert!(
            s.wants_read(Peer::Client),
            "lingers, discarding the request"
        );
        assert_eq!(s.feed(Peer::Client, b"Host: x\r\n\r\n", Instant::now()), 11);
        s.eof(Peer::Client, Instant::now());
        assert!(matches!(s.next_action(), Action::Close));
    }
}
