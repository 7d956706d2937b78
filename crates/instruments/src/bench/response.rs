//! Sans-IO readers of what a benchmarked server sends back: HTTP/1.1 responses (head parsed
//! with httparse, body framed by Content-Length, chunked encoding or end of stream) and echo
//! messages (a fixed number of bytes that must match what was sent).
//!
//! The load generator feeds them whatever a `read` returned; they say how much they consumed
//! and whether a response is complete. Body bytes are counted, never copied, and a head is
//! copied only when it arrives split across reads, so the hot path allocates nothing.

use std::fmt;

/// Longest response head accepted before the response counts as bad.
pub const MAX_HEAD: usize = 64 * 1024;

/// Most header lines in a response head.
const MAX_HEADERS: usize = 48;

/// Why the bytes from the server are not a valid response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadResponse {
    /// The head does not parse (httparse's reason).
    Head(httparse::Error),
    /// No complete head within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// A Content-Length that is not a number, or two that disagree.
    ContentLength,
    /// A chunk-size line that is not hexadecimal, or a chunk not followed by CRLF.
    Chunk,
    /// Bytes arrived while no request was outstanding.
    Unsolicited,
    /// An echo server sent back different bytes.
    EchoMismatch,
}

impl fmt::Display for BadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadResponse::Head(httparse::Error::Version) => {
                f.write_str("not an HTTP/1.x response (bad status line)")
            }
            BadResponse::Head(e) => write!(f, "malformed response head ({e})"),
            BadResponse::HeadTooLarge => write!(f, "response head longer than {MAX_HEAD} bytes"),
            BadResponse::ContentLength => f.write_str("invalid Content-Length"),
            BadResponse::Chunk => f.write_str("invalid chunked encoding"),
            BadResponse::Unsolicited => f.write_str("data arrived with no request outstanding"),
            BadResponse::EchoMismatch => f.write_str("the echoed bytes differ from those sent"),
        }
    }
}

/// One complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    /// The HTTP status (0 for echo).
    pub status: u16,
    /// Whether the server keeps the connection open for the next request.
    pub keep_alive: bool,
}

/// What a `feed` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Everything given was consumed; the response is not complete yet.
    More,
    /// A response ended after the consumed bytes.
    Done(Complete),
}

/// Either reader, chosen by the target's protocol.
#[derive(Debug)]
pub enum Reader {
    Http(HttpReader),
    Echo(EchoReader),
}

impl Reader {
    /// Consumes a prefix of `input`; returns how many bytes and what happened.
    ///
    /// # Errors
    /// The response is malformed; the connection should be dropped.
    #[inline]
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Step), BadResponse> {
        match self {
            Reader::Http(r) => r.feed(input),
            Reader::Echo(r) => r.feed(input),
        }
    }

    /// The server closed the stream: a response framed by end of stream is complete now.
    pub fn eof(&mut self) -> Option<Complete> {
        match self {
            Reader::Http(r) => r.eof(),
            Reader::Echo(_) => None,
        }
    }

    /// Whether a response has started (some of its bytes were consumed).
    pub fn in_progress(&self) -> bool {
        match self {
            Reader::Http(r) => !matches!(r.state, State::Head) || !r.carry.is_empty(),
            Reader::Echo(r) => r.got > 0,
        }
    }

    /// Forgets any partial response (the connection is being replaced).
    pub fn reset(&mut self) {
        match self {
            Reader::Http(r) => {
                r.state = State::Head;
                r.carry.clear();
            }
            Reader::Echo(r) => r.got = 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// Body bytes still expected (Content-Length framing).
    Length(u64),
    Chunked(Chunk),
    /// Framed by the end of the stream (no length, no chunking).
    UntilEof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `ext` once past `;` (extensions are skipped).
    Size {
        value: u64,
        digits: u8,
        ext: bool,
    },
    /// Expecting the LF of the size line.
    SizeLf {
        value: u64,
    },
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataCr,
    DataLf,
    /// Trailer lines after the last chunk; `empty` while the current line has no bytes.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
}

/// Reads HTTP/1.x responses, one after another, from a byte stream.
#[derive(Debug)]
pub struct HttpReader {
    state: State,
    /// A head split across reads, kept until it is complete.
    carry: Vec<u8>,
    status: u16,
    keep_alive: bool,
}

impl Default for HttpReader {
    fn default() -> Self {
        Self::new()
    }
}

/// The parts of a head the framing needs.
struct Head {
    len: usize,
    status: u16,
    keep_alive: bool,
    body: State,
}

impl HttpReader {
    pub fn new() -> Self {
        HttpReader {
            state: State::Head,
            carry: Vec::new(),
            status: 0,
            keep_alive: true,
        }
    }

    /// Consumes a prefix of `input`.
    ///
    /// # Errors
    /// A malformed head or chunked body.
    #[inline]
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Step), BadResponse> {
        match self.state {
            State::Head => self.feed_head(input),
            State::Length(left) => {
                let take = (input.len() as u64).min(left);
                self.state = State::Length(left - take);
                if take == left {
                    Ok((take as usize, self.finish()))
                } else {
                    Ok((take as usize, Step::More))
                }
            }
            State::Chunked(c) => self.feed_chunked(c, input),
            State::UntilEof => Ok((input.len(), Step::More)),
        }
    }

    fn eof(&mut self) -> Option<Complete> {
        if self.state == State::UntilEof {
            self.state = State::Head;
            Some(Complete {
                status: self.status,
                keep_alive: false,
            })
        } else {
            None
        }
    }

    fn finish(&mut self) -> Step {
        self.state = State::Head;
        Step::Done(Complete {
            status: self.status,
            keep_alive: self.keep_alive,
        })
    }

    fn feed_head(&mut self, input: &[u8]) -> Result<(usize, Step), BadResponse> {
        if self.carry.is_empty() {
            match parse_head(input)? {
                Some(head) => Ok((head.len, self.start_body(head))),
                None => {
                    if input.len() >= MAX_HEAD {
                        return Err(BadResponse::HeadTooLarge);
                    }
                    self.carry.extend_from_slice(input);
                    Ok((input.len(), Step::More))
                }
            }
        } else {
            let before = self.carry.len();
            let take = input.len().min(MAX_HEAD - before);
            self.carry.extend_from_slice(&input[..take]);
            match parse_head(&self.carry)? {
                Some(head) => {
                    self.carry.clear();
                    let used = head.len - before;
                    Ok((used, self.start_body(head)))
                }
                None if self.carry.len() >= MAX_HEAD => Err(BadResponse::HeadTooLarge),
                None => Ok((take, Step::More)),
            }
        }
    }

    fn start_body(&mut self, head: Head) -> Step {
        self.status = head.status;
        self.keep_alive = head.keep_alive;
        self.state = head.body;
        match head.body {
            // An interim response (100 Continue): the real one follows.
            _ if (100..200).contains(&head.status) => {
                self.state = State::Head;
                Step::More
            }
            State::Length(0) => self.finish(),
            _ => Step::More,
        }
    }

    fn feed_chunked(&mut self, mut c: Chunk, input: &[u8]) -> Result<(usize, Step), BadResponse> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            c = match c {
                Chunk::Data(left) => {
                    let take = ((input.len() - i) as u64).min(left);
                    i += take as usize;
                    if take == left {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - take)
                    }
                }
                Chunk::Size { value, digits, ext } => {
                    i += 1;
                    match b {
                        b'\r' if digits > 0 => Chunk::SizeLf { value },
                        _ if ext => Chunk::Size { value, digits, ext },
                        b';' if digits > 0 => Chunk::Size {
                            value,
                            digits,
                            ext: true,
                        },
                        b' ' | b'\t' if digits > 0 => Chunk::Size {
                            value,
                            digits,
                            ext: true,
                        },
                        _ => {
                            let d = (b as char).to_digit(16).ok_or(BadResponse::Chunk)?;
                            if digits >= 15 {
                                return Err(BadResponse::Chunk);
                            }
                            Chunk::Size {
                                value: value * 16 + u64::from(d),
                                digits: digits + 1,
                                ext: false,
                            }
                        }
                    }
                }
                Chunk::SizeLf { value } => {
                    i += 1;
                    if b != b'\n' {
                        return Err(BadResponse::Chunk);
                    }
                    if value == 0 {
                        Chunk::Trailer { empty: true }
                    } else {
                        Chunk::Data(value)
                    }
                }
                Chunk::DataCr => {
                    i += 1;
                    if b != b'\r' {
                        return Err(BadResponse::Chunk);
                    }
                    Chunk::DataLf
                }
                Chunk::DataLf => {
                    i += 1;
                    if b != b'\n' {
                        return Err(BadResponse::Chunk);
                    }
                    Chunk::Size {
                        value: 0,
                        digits: 0,
                        ext: false,
                    }
                }
                Chunk::Trailer { empty } => {
                    i += 1;
                    if b == b'\r' {
                        Chunk::TrailerLf { empty }
                    } else {
                        Chunk::Trailer { empty: false }
                    }
                }
                Chunk::TrailerLf { empty } => {
                    i += 1;
                    if b != b'\n' {
                        return Err(BadResponse::Chunk);
                    }
                    if empty {
                        return Ok((i, self.finish()));
                    }
                    Chunk::Trailer { empty: true }
                }
            };
        }
        self.state = State::Chunked(c);
        Ok((i, Step::More))
    }
}

/// Parses a complete head at the start of `buf`, or `None` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, BadResponse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadResponse::Head(e)),
    };
    let status = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(BadResponse::ContentLength)?;
            if length.is_some_and(|l| l != v) {
                return Err(BadResponse::ContentLength);
            }
            length = Some(v);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked must be the last coding to frame the body.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let mut keep_alive = if http11 { !close } else { keep_alive_token };
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        State::Length(0)
    } else if chunked {
        State::Chunked(Chunk::Size {
            value: 0,
            digits: 0,
            ext: false,
        })
    } else if let Some(l) = length {
        State::Length(l)
    } else {
        keep_alive = false;
        State::UntilEof
    };
    Ok(Some(Head {
        len,
        status,
        keep_alive,
        body,
    }))
}

/// Reads echo replies: each request is `message.len()` bytes, and the reply must be the same
/// bytes.
#[derive(Debug)]
pub struct EchoReader {
    message: std::sync::Arc<[u8]>,
    got: usize,
}

impl EchoReader {
    pub fn new(message: std::sync::Arc<[u8]>) -> Self {
        EchoReader { message, got: 0 }
    }

    /// Consumes a prefix of `input` (at most the rest of the current message).
    ///
    /// # Errors
    /// The bytes differ from the message sent.
    #[inline]
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Step), BadResponse> {
        let want = &self.message[self.got..];
        let take = input.len().min(want.len());
        if input[..take] != want[..take] {
            return Err(BadResponse::EchoMismatch);
        }
        self.got += take;
        if self.got == self.message.len() {
            self.got = 0;
            Ok((
                take,
                Step::Done(Complete {
                    status: 0,
                    keep_alive: true,
                }),
            ))
        } else {
            Ok((take, Step::More))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` split into pieces of `piece` bytes; returns the completed responses and
    /// the reader's error, if any.
    fn read_all(wire: &[u8], piece: usize) -> (Vec<Complete>, Option<BadResponse>) {
        let mut r = Reader::Http(HttpReader::new());
        let mut done = Vec::new();
        for chunk in wire.chunks(piece) {
            let mut off = 0;
            while off < chunk.len() {
                match r.feed(&chunk[off..]) {
                    Ok((n, step)) => {
                        off += n;
                        if let Step::Done(c) = step {
                            done.push(c);
                        }
                    }
                    Err(e) => return (done, Some(e)),
                }
            }
        }
        if let Some(c) = r.eof() {
            done.push(c);
        }
        (done, None)
    }

    const OK: Complete = Complete {
        status: 200,
        keep_alive: true,
    };

    #[test]
    fn frames_every_kind_of_body_in_any_split() {
        let cases: &[(&str, &[u8], &[Complete])] = &[
            (
                "content-length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                &[OK],
            ),
            (
                "two pipelined",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 500 E\r\ncontent-length: 0\r\n\r\n",
                &[
                    OK,
                    Complete {
                        status: 500,
                        keep_alive: true,
                    },
                ],
            ),
            (
                "chunked with extension and trailer",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n",
                &[OK],
            ),
            (
                "connection close",
                b"HTTP/1.1 404 No\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno",
                &[Complete {
                    status: 404,
                    keep_alive: false,
                }],
            ),
            (
                "http/1.0 without keep-alive, framed by eof",
                b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
                &[Complete {
                    status: 200,
                    keep_alive: false,
                }],
            ),
            (
                "http/1.0 keep-alive",
                b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
                &[OK],
            ),
            (
                "interim 100 then 204",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                &[Complete {
                    status: 204,
                    keep_alive: true,
                }],
            ),
        ];
        for (name, wire, want) in cases {
            for piece in [1, 2, 3, 7, 64, 4096] {
                let (got, err) = read_all(wire, piece);
                assert_eq!(err, None, "{name} piece {piece}");
                assert_eq!(&got, want, "{name} piece {piece}");
            }
        }
    }

    #[test]
    fn rejects_what_is_not_http() {
        let cases: &[(&str, &[u8], BadResponse)] = &[
            (
                "echoed request",
                b"GET / HTTP/1.1\r\n\r\n",
                BadResponse::Head(httparse::Error::Version),
            ),
            (
                "bad length",
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                BadResponse::ContentLength,
            ),
            (
                "conflicting lengths",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                BadResponse::ContentLength,
            ),
            (
                "bad chunk size",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                BadResponse::Chunk,
            ),
            (
                "chunk without crlf",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
                BadResponse::Chunk,
            ),
        ];
        for (name, wire, want) in cases {
            for piece in [1, 5, 4096] {
                assert_eq!(read_all(wire, piece).1, Some(*want), "{name} piece {piece}");
            }
        }
    }

    #[test]
    fn endless_head_is_rejected() {
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        while wire.len() < MAX_HEAD + 100 {
            wire.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        for piece in [1000, MAX_HEAD * 2] {
            let err = read_all(&wire, piece).1;
            assert!(
                matches!(
                    err,
                    Some(BadResponse::HeadTooLarge)
                        | Some(BadResponse::Head(httparse::Error::TooManyHeaders))
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn echo_reader_counts_messages_and_checks_bytes() {
        let msg: std::sync::Arc<[u8]> = b"abcd".to_vec().into();
        let mut r = EchoReader::new(msg);
        assert_eq!(r.feed(b"ab").unwrap(), (2, Step::More));
        let (n, step) = r.feed(b"cdab").unwrap();
        assert_eq!(n, 2);
        assert!(matches!(step, Step::Done(_)));
        assert_eq!(r.feed(b"ab").unwrap(), (2, Step::More));
        assert_eq!(r.feed(b"xx"), Err(BadResponse::EchoMismatch));
    }
}
