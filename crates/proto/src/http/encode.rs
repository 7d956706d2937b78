//! Writing responses: status lines and the headers every response has (`Server`, `Date`,
//! `Connection`), `Content-Type` from the file name, and the output queue the heads and bodies
//! wait in until the driver has written them.
//!
//! A head is formatted straight into the bytes buffer at the end of the queue (a per-thread
//! spare, see [`crate::spare`]), so answering a request allocates nothing for it, and several
//! pipelined answers leave in one write.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::docroot::Body;
use super::parse::Head;
use super::session::HttpSession;
use crate::session::{Action, Peer};
use crate::spare;

/// Bodies up to this size are read into the output buffer, so head and body leave in one
/// write; larger ones go out with sendfile.
pub const SMALL_BODY: u64 = 16 * 1024;
/// Queued output bytes past which no further pipelined request is parsed.
pub const OUT_BUDGET: usize = 64 * 1024;
/// Room reserved for a response head.
const HEAD_ROOM: usize = 512;

/// The reason phrase sent with each status the server produces.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The extensions nearly every site serves, answered without a search through the full
/// table (which is what `mime_guess` does: a sorted case-insensitive search per request).
/// A test keeps this list in agreement with `mime_guess`.
const COMMON_TYPES: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("js", "text/javascript"),
    ("mjs", "application/javascript"),
    ("json", "application/json"),
    ("txt", "text/plain"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("svg", "image/svg+xml"),
    ("webp", "image/webp"),
    ("ico", "image/x-icon"),
    ("wasm", "application/wasm"),
    ("woff2", "font/woff2"),
    ("pdf", "application/pdf"),
    ("xml", "text/xml"),
];

/// The `Content-Type` of a file name: the MIME type from the extension, with
/// `charset=utf-8` for text; `application/octet-stream` when unknown.
pub fn content_type(name: &str) -> (&'static str, &'static str) {
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    let common = ext.and_then(|e| {
        COMMON_TYPES
            .iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(e))
            .map(|&(_, m)| m)
    });
    let mime = common
        .or_else(|| mime_guess::from_path(name).first_raw())
        .unwrap_or("application/octet-stream");
    let texty = mime.starts_with("text/")
        || mime.ends_with("+xml")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "application/xml"
        );
    (mime, if texty { "; charset=utf-8" } else { "" })
}

/// Appends `now` as an IMF-fixdate (`Wed, 25 Nov 2026 03:31:56 GMT`), formatted at most
/// once a second per thread.
pub fn push_date(out: &mut Vec<u8>, now: SystemTime) {
    use std::cell::RefCell;
    thread_local! {
        static NOW: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let secs = unix_secs(now);
    NOW.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let mut w = &mut text[..];
            let _ = std::io::Write::write_fmt(
                &mut w,
                format_args!("{}", httpdate::HttpDate::from(now)),
            );
            *at = secs;
        }
        out.extend_from_slice(text);
    });
}

/// Seconds since the epoch of a time (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Writes a status line and the headers every response has.
fn start_head(h: &mut Vec<u8>, status: u16, keep_alive: bool, minor: u8, wall: SystemTime) {
    let _ = write!(
        h,
        "HTTP/1.1 {status} {}\r\nServer: plumb\r\nDate: ",
        reason(status)
    );
    push_date(h, wall);
    h.extend_from_slice(b"\r\n");
    if !keep_alive {
        h.extend_from_slice(b"Connection: close\r\n");
    } else if minor == 0 {
        h.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

/// How one response is framed and what its log line says.
pub(super) struct Reply<'h> {
    pub(super) head: Option<&'h Head<'h>>,
    /// Raw first line for the log when no head could be parsed.
    pub(super) raw_line: &'h [u8],
    pub(super) keep_alive: bool,
    pub(super) is_head: bool,
}

/// A piece of queued output.
#[derive(Debug)]
enum Out {
    Bytes {
        buf: Vec<u8>,
        pos: usize,
    },
    File {
        file: Arc<dyn Body>,
        offset: u64,
        left: u64,
    },
}

/// Responses queued in order: bytes (heads, small bodies, listings, part headers),
/// coalesced so several pipelined answers go out in one write, and file ranges, which go out
/// with sendfile.
#[derive(Debug, Default)]
pub(super) struct Output {
    pieces: VecDeque<Out>,
    /// Bytes (not file ranges) queued.
    bytes: usize,
    /// Output bytes queued and written since the connection began: a response's place in
    /// the stream, so its log line can say how much of its body really went out.
    queued: u64,
    sent: u64,
}

impl Output {
    pub(super) fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Whether a file range or more than [`OUT_BUDGET`] bytes are queued: then no further
    /// request is parsed (backpressure: the driver keeps the input).
    pub(super) fn over_budget(&self) -> bool {
        self.bytes > OUT_BUDGET || self.pieces.iter().any(|o| matches!(o, Out::File { .. }))
    }

    /// The position in the output stream of the end of what is queued.
    pub(super) fn queued(&self) -> u64 {
        self.queued
    }

    /// Bytes written since the connection began.
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    /// The bytes buffer at the end of the queue (a new one after a file piece), with room
    /// for `room` more bytes. Whatever is appended to it is then counted with
    /// [`Output::appended`].
    fn tail(&mut self, room: usize) -> &mut Vec<u8> {
        if !matches!(self.pieces.back(), Some(Out::Bytes { .. })) {
            self.pieces.push_back(Out::Bytes {
                buf: spare::take(room),
                pos: 0,
            });
        }
        match self.pieces.back_mut() {
            Some(Out::Bytes { buf, .. }) => {
                buf.reserve(room);
                buf
            }
            _ => unreachable!("a bytes piece was just pushed"),
        }
    }

    /// `n` bytes were appended to the [`Output::tail`].
    fn appended(&mut self, n: usize) {
        self.bytes += n;
        self.queued += n as u64;
    }

    pub(super) fn push_bytes(&mut self, b: &[u8]) {
        self.tail(b.len()).extend_from_slice(b);
        self.appended(b.len());
    }

    fn push_file(&mut self, file: &Arc<dyn Body>, offset: u64, len: u64) {
        self.queued += len;
        if len > 0 {
            self.pieces.push_back(Out::File {
                file: Arc::clone(file),
                offset,
                left: len,
            });
        }
    }

    /// The write or body send for the first piece, if any is queued.
    pub(super) fn next_action(&self) -> Option<Action<'_>> {
        match self.pieces.front()? {
            Out::Bytes { buf, pos } => Some(Action::Write(Peer::Client, &buf[*pos..])),
            Out::File { file, offset, left } => Some(Action::SendBody {
                body: &**file,
                offset: *offset,
                len: *left,
            }),
        }
    }

    /// `n` bytes of the first piece went out. True when that emptied the queue.
    pub(super) fn written(&mut self, n: usize) -> bool {
        self.sent += n as u64;
        let done = match self.pieces.front_mut() {
            Some(Out::Bytes { buf, pos }) => {
                *pos += n;
                self.bytes = self.bytes.saturating_sub(n);
                *pos >= buf.len()
            }
            Some(Out::File { offset, left, .. }) => {
                *offset += n as u64;
                *left = left.saturating_sub(n as u64);
                *left == 0
            }
            None => false,
        };
        if !done {
            return false;
        }
        if let Some(Out::Bytes { buf, .. }) = self.pieces.pop_front() {
            spare::give(buf);
        }
        self.pieces.is_empty()
    }
}

impl HttpSession {
    /// A response with a small in-memory body (errors, redirects, listings).
    pub(super) fn simple(
        &mut self,
        r: &Reply<'_>,
        status: u16,
        extra: &str,
        ctype: &str,
        body: &[u8],
    ) {
        self.simple_with(
            r,
            status,
            &|b| b.extend_from_slice(extra.as_bytes()),
            ctype,
            body,
        );
    }

    /// [`Self::simple`] with extra headers written by `extra`.
    pub(super) fn simple_with(
        &mut self,
        r: &Reply<'_>,
        status: u16,
        extra: &dyn Fn(&mut Vec<u8>),
        ctype: &str,
        body: &[u8],
    ) {
        let minor = r.head.map_or(1, |h| h.minor);
        let send_body = !r.is_head && status != 304;
        let wall = self.wall.time_at(self.now);
        let buf = self.out.tail(HEAD_ROOM + body.len());
        let start = buf.len();
        start_head(buf, status, r.keep_alive, minor, wall);
        extra(buf);
        if status != 304 {
            buf.extend_from_slice(b"Content-Type: ");
            buf.extend_from_slice(ctype.as_bytes());
            let _ = write!(buf, "\r\nContent-Length: {}\r\n", body.len());
        }
        buf.extend_from_slice(b"\r\n");
        if send_body {
            buf.extend_from_slice(body);
        }
        let added = buf.len() - start;
        self.out.appended(added);
        let sent = if send_body { body.len() as u64 } else { 0 };
        self.log(r, status, sent);
    }

    pub(super) fn error(&mut self, r: &Reply<'_>, status: u16, extra: &str) {
        let body = format!("{status} {}\n", reason(status));
        self.simple(
            r,
            status,
            extra,
            "text/plain; charset=utf-8",
            body.as_bytes(),
        );
    }

    /// Queues a head and `(offset, len)` pieces of `file`, each preceded by its multipart
    /// header when `multipart` is given. Small bodies are read into the buffer, so head and
    /// body leave in one write; large ones become sendfile pieces. False, with nothing
    /// queued, when a small body was not `file_len` long when read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_ranges(
        &mut self,
        r: &Reply<'_>,
        status: u16,
        extra: &dyn Fn(&mut Vec<u8>),
        file: &Arc<dyn Body>,
        file_len: u64,
        pieces: &[(u64, u64)],
        multipart: Option<(&[String], &str)>,
    ) -> bool {
        let data: u64 = pieces.iter().map(|p| p.1).sum();
        let framing: u64 = multipart.map_or(0, |(hs, end)| {
            hs.iter().map(|h| h.len() as u64).sum::<u64>() + end.len() as u64
        });
        let body_len = data + framing;
        let minor = r.head.map_or(1, |h| h.minor);
        let inline = !r.is_head && body_len <= SMALL_BODY;
        let room = HEAD_ROOM + if inline { body_len as usize } else { 0 };
        let wall = self.wall.time_at(self.now);
        let buf = self.out.tail(room);
        let start = buf.len();
        start_head(buf, status, r.keep_alive, minor, wall);
        extra(buf);
        let _ = write!(
            buf,
            "Accept-Ranges: bytes\r\nContent-Length: {body_len}\r\n\r\n"
        );
        if inline && !read_pieces(buf, &**file, file_len, pieces, multipart) {
            // The file changed under us: take the head back.
            buf.truncate(start);
            return false;
        }
        let added = buf.len() - start;
        self.out.appended(added);
        if r.is_head {
            self.log(r, status, 0);
            return true;
        }
        if !inline {
            for (i, &(offset, len)) in pieces.iter().enumerate() {
                if let Some((hs, _)) = multipart {
                    self.out.push_bytes(hs[i].as_bytes());
                }
                self.out.push_file(file, offset, len);
            }
            if let Some((_, end)) = multipart {
                self.out.push_bytes(end.as_bytes());
            }
        }
        self.log(r, status, body_len);
        true
    }
}

/// Reads small pieces (with their multipart headers) into `buf`. False when the file is not
/// `file_len` long: shorter (a read ends early) or longer (a piece that ends the file asks
/// for one byte more, in the same `pread`, and gets it), so a body never goes out under a
/// length or validators of another version of the file.
fn read_pieces(
    buf: &mut Vec<u8>,
    file: &dyn Body,
    file_len: u64,
    pieces: &[(u64, u64)],
    multipart: Option<(&[String], &str)>,
) -> bool {
    for (i, &(offset, len)) in pieces.iter().enumerate() {
        if let Some((hs, _)) = multipart {
            buf.extend_from_slice(hs[i].as_bytes());
        }
        let at = buf.len();
        let want = len as usize;
        let probe = usize::from(offset + len == file_len);
        buf.resize(at + want + probe, 0);
        // At least one read, so an empty file that is no longer empty is seen too.
        let mut got = 0;
        loop {
            match file.read_at(&mut buf[at + got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
            if got >= want {
                break;
            }
        }
        if got != want {
            return false;
        }
        buf.truncate(at + want);
    }
    if let Some((_, end)) = multipart {
        buf.extend_from_slice(end.as_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::docroot::MemBody;

    #[test]
    fn a_body_is_read_only_at_the_length_it_is_labelled_with() {
        let file = MemBody::new(b"0123456789");
        let read = |file_len: u64, pieces: &[(u64, u64)]| {
            let mut buf = b"head".to_vec();
            let ok = read_pieces(&mut buf, &file, file_len, pieces, None);
            (ok, buf)
        };
        assert_eq!(read(10, &[(0, 10)]), (true, b"head0123456789".to_vec()));
        assert_eq!(read(10, &[(2, 3), (8, 2)]), (true, b"head23489".to_vec()));
        // Labelled 8 but 10 long (it grew), labelled 12 (it shrank): refused.
        assert!(!read(8, &[(0, 8)]).0, "grew");
        assert!(!read(8, &[(6, 2)]).0, "grew, seen by the last range");
        assert!(!read(12, &[(0, 12)]).0, "shrank");
        assert!(!read(0, &[(0, 0)]).0, "an empty file that grew");
        file.rewrite(b"");
        assert_eq!(read(0, &[(0, 0)]), (true, b"head".to_vec()));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a.html"), ("text/html", "; charset=utf-8"));
        assert_eq!(content_type("a.png"), ("image/png", ""));
        assert_eq!(content_type("noext"), ("application/octet-stream", ""));
        assert_eq!(content_type("A.HTML"), ("text/html", "; charset=utf-8"));
    }

    #[test]
    fn the_common_types_agree_with_mime_guess() {
        for &(ext, mime) in COMMON_TYPES {
            let full = mime_guess::from_ext(ext).first_raw();
            assert_eq!(Some(mime), full, "{ext}");
        }
    }

    #[test]
    fn dates_are_imf_fixdates_of_the_given_time() {
        let mut v = b"x".to_vec();
        let t = UNIX_EPOCH + Duration::from_secs(1_764_046_316);
        push_date(&mut v, t);
        push_date(&mut v, t + Duration::from_millis(10));
        assert_eq!(v.len(), 1 + 2 * 29);
        let first = std::str::from_utf8(&v[1..30]).unwrap();
        assert_eq!(first, "Tue, 25 Nov 2025 04:51:56 GMT");
        assert_eq!(httpdate::parse_http_date(first).unwrap(), t);
        // The next second is formatted anew, not served from the per-thread cache.
        push_date(&mut v, t + Duration::from_secs(1));
        assert_eq!(&v[59..], b"Tue, 25 Nov 2025 04:51:57 GMT");
    }
}
