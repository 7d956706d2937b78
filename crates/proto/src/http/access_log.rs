//! The access log: one Combined Log Format line per response, finished only once the
//! response has been written, or when the connection ends ([`crate::Session::closed`]) with
//! the body bytes that did go out, so an interrupted download is logged as what the client
//! got, not as the file's length.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::SystemTime;

use super::encode::Reply;
use super::session::HttpSession;

/// The client part of a peer address for the log: `127.0.0.1:5000` → `127.0.0.1`,
/// `[::1]:5000` → `::1`; anything else (a UNIX peer) as is.
pub fn log_host(peer: &str) -> String {
    match peer.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) if peer.is_empty() => "-".to_string(),
        Err(_) => peer.to_string(),
    }
}

/// `[10/Oct/2000:13:55:36 +0000]`-style time for the log, from an HTTP date.
pub fn clf_time(t: SystemTime) -> String {
    // "Wed, 25 Nov 2026 00:36:36 GMT": fixed width, so slicing is exact.
    let d = httpdate::fmt_http_date(t);
    match (d.get(5..7), d.get(8..11), d.get(12..16), d.get(17..25)) {
        (Some(day), Some(mon), Some(year), Some(time)) => {
            format!("{day}/{mon}/{year}:{time} +0000")
        }
        _ => d,
    }
}

/// Escapes a request-derived field for a quoted log field: quotes, backslashes and
/// non-printable bytes become `\xNN`, so a client cannot forge log lines.
pub fn log_escape(v: &[u8]) -> String {
    let mut s = String::with_capacity(v.len());
    for &b in v {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// One Combined Log Format line.
#[allow(clippy::too_many_arguments)]
pub fn clf_line(
    host: &str,
    time: SystemTime,
    request_line: &[u8],
    status: u16,
    body_bytes: u64,
    referer: Option<&[u8]>,
    user_agent: Option<&[u8]>,
) -> String {
    ClfLine::new(host, time, request_line, status, referer, user_agent).with_bytes(body_bytes)
}

/// A Combined Log Format line waiting for its byte count, which is known only once the
/// response has gone out (or the connection ended before it did).
#[derive(Debug)]
pub struct ClfLine {
    /// Up to the status and the space after it.
    head: String,
    /// From the space before the referer.
    tail: String,
}

impl ClfLine {
    pub fn new(
        host: &str,
        time: SystemTime,
        request_line: &[u8],
        status: u16,
        referer: Option<&[u8]>,
        user_agent: Option<&[u8]>,
    ) -> ClfLine {
        let quoted = |v: Option<&[u8]>| v.map_or_else(|| "-".to_string(), log_escape);
        ClfLine {
            head: format!(
                "{host} - - [{}] \"{}\" {status} ",
                clf_time(time),
                log_escape(request_line),
            ),
            tail: format!(" \"{}\" \"{}\"", quoted(referer), quoted(user_agent)),
        }
    }

    /// The whole line, with `body_bytes` (`-` for none, as Apache and nginx write it).
    pub fn with_bytes(self, body_bytes: u64) -> String {
        let mut s = self.head;
        if body_bytes == 0 {
            s.push('-');
        } else {
            let _ = write!(s, "{body_bytes}");
        }
        s.push_str(&self.tail);
        s
    }
}

/// The log line of a response still going out: its body is the `body_len` bytes that end at
/// output position `end`.
#[derive(Debug)]
struct UnsentLog {
    line: ClfLine,
    end: u64,
    body_len: u64,
}

/// Log lines of responses not yet wholly written, in order, and the finished ones.
#[derive(Debug, Default)]
pub(super) struct AccessLog {
    unsent: VecDeque<UnsentLog>,
    finished: VecDeque<String>,
}

impl AccessLog {
    /// Finishes the log lines of the responses written in full, `sent` bytes having gone out.
    pub(super) fn written(&mut self, sent: u64) {
        while self.unsent.front().is_some_and(|l| l.end <= sent) {
            if let Some(l) = self.unsent.pop_front() {
                self.finished.push_back(l.line.with_bytes(l.body_len));
            }
        }
    }

    /// The connection ended after `sent` bytes: responses cut short log the part of their
    /// body that went out, not their length (a download stopped at 13.8 MB of 50 is not
    /// `200 50000000`).
    pub(super) fn closed(&mut self, sent: u64) {
        while let Some(l) = self.unsent.pop_front() {
            let body_from = l.end - l.body_len;
            let went = sent.saturating_sub(body_from).min(l.body_len);
            self.finished.push_back(l.line.with_bytes(went));
        }
    }

    pub(super) fn take(&mut self) -> Option<String> {
        self.finished.pop_front()
    }
}

impl HttpSession {
    /// Notes the log line of the response just queued, whose body is its last `body_bytes`
    /// bytes; the line is finished once they are written (see [`crate::Session::written`]) or the
    /// connection ends (see [`crate::Session::closed`]).
    pub(super) fn log(&mut self, r: &Reply<'_>, status: u16, body_bytes: u64) {
        if !self.cfg.log {
            return;
        }
        let (line, referer, ua);
        let mut owned = Vec::new();
        match r.head {
            Some(h) => {
                owned.extend_from_slice(h.method.as_bytes());
                owned.push(b' ');
                owned.extend_from_slice(h.target.as_bytes());
                owned.extend_from_slice(if h.minor == 0 {
                    b" HTTP/1.0"
                } else {
                    b" HTTP/1.1"
                });
                line = &owned[..];
                referer = h.referer;
                ua = h.user_agent;
            }
            None => {
                line = r.raw_line;
                referer = None;
                ua = None;
            }
        }
        let line = ClfLine::new(
            &self.peer_host,
            self.wall.time_at(self.now),
            line,
            status,
            referer,
            ua,
        );
        self.access_log.unsent.push_back(UnsentLog {
            line,
            end: self.out.queued(),
            body_len: body_bytes,
        });
        self.access_log.written(self.out.sent());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn log_lines() {
        let t = UNIX_EPOCH + Duration::from_secs(971_186_136);
        let line = clf_line(
            "127.0.0.1",
            t,
            b"GET /a\"b HTTP/1.1",
            200,
            5,
            None,
            Some(b"curl/8"),
        );
        assert_eq!(
            line,
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a\\x22b HTTP/1.1\" 200 5 \"-\" \"curl/8\""
        );
        assert_eq!(log_host("[::1]:80"), "::1");
        assert_eq!(log_host("unix"), "unix");
    }
}
