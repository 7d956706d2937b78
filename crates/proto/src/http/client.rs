//! The client side of HTTP/1.x, sans-IO: a decoder of responses, one after another, from a
//! byte stream. The head is parsed with httparse; the body is framed by Content-Length, by the
//! chunked coding (the same [`ChunkedBody`] the server reads request bodies with) or by the
//! end of the stream.
//!
//! The caller feeds whatever a `read` returned; the decoder says how much it consumed and
//! whether a response ended there, and feeds again with the rest. Every call on non-empty
//! input consumes something (a head or a chunk line split across reads is carried inside), so
//! the caller never has to keep bytes. Body bytes are counted, never copied, and a head is copied only when it
//! arrives split across reads, so the hot path of a load generator allocates nothing.

use super::chunked::{ChunkedBody, MAX_CHUNK_LINE};

/// Longest response head accepted before the response counts as bad.
pub const MAX_HEAD: usize = 64 * 1024;

/// Most header lines in a response head.
const MAX_HEADERS: usize = 48;

/// Why the bytes from the server are not a valid response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The head does not parse (httparse's reason).
    Head(httparse::Error),
    /// No complete head within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// A Content-Length that is not a number, or two that disagree.
    ContentLength,
    /// The chunked framing is malformed (the chunked decoder's reason).
    Chunk(&'static str),
}

/// One complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    /// The HTTP status.
    pub status: u16,
    /// Whether the server keeps the connection open for the next request.
    pub keep_alive: bool,
}

#[derive(Debug, Clone)]
enum State {
    Head,
    /// Body bytes still expected (Content-Length framing).
    Length(u64),
    Chunked(ChunkedBody),
    /// Framed by the end of the stream (no length, no chunking).
    UntilEof,
}

/// Decodes HTTP/1.x responses, one after another, from a byte stream.
#[derive(Debug)]
pub struct ResponseDecoder {
    state: State,
    /// A head, or a chunk-size or trailer line, split across reads, kept until it is complete.
    carry: Vec<u8>,
    status: u16,
    keep_alive: bool,
}

impl Default for ResponseDecoder {
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

impl ResponseDecoder {
    pub fn new() -> Self {
        ResponseDecoder {
            state: State::Head,
            carry: Vec::new(),
            status: 0,
            keep_alive: true,
        }
    }

    /// Consumes a non-empty prefix of a non-empty `input`, and returns the response that ended
    /// there, if one did; the caller feeds the rest again.
    ///
    /// # Errors
    /// A malformed head or chunked body; the connection should be dropped.
    #[inline]
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Complete>), ResponseError> {
        match &mut self.state {
            State::Head => self.feed_head(input),
            State::Length(left) => {
                let left = *left;
                let take = (input.len() as u64).min(left);
                self.state = State::Length(left - take);
                if take == left {
                    Ok((take as usize, Some(self.finish())))
                } else {
                    Ok((take as usize, None))
                }
            }
            State::Chunked(_) => self.feed_chunked(input),
            State::UntilEof => Ok((input.len(), None)),
        }
    }

    /// The server closed the stream: a response framed by end of stream is complete now.
    pub fn eof(&mut self) -> Option<Complete> {
        if matches!(self.state, State::UntilEof) {
            self.state = State::Head;
            Some(Complete {
                status: self.status,
                keep_alive: false,
            })
        } else {
            None
        }
    }

    /// Whether a response has started (some of its bytes were consumed).
    pub fn in_progress(&self) -> bool {
        !matches!(self.state, State::Head) || !self.carry.is_empty()
    }

    /// Forgets any partial response (the connection is being replaced).
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.carry.clear();
    }

    fn finish(&mut self) -> Complete {
        self.state = State::Head;
        Complete {
            status: self.status,
            keep_alive: self.keep_alive,
        }
    }

    fn feed_head(&mut self, input: &[u8]) -> Result<(usize, Option<Complete>), ResponseError> {
        if self.carry.is_empty() {
            match parse_head(input)? {
                Some(head) => Ok((head.len, self.start_body(head))),
                None => {
                    if input.len() >= MAX_HEAD {
                        return Err(ResponseError::HeadTooLarge);
                    }
                    self.carry.extend_from_slice(input);
                    Ok((input.len(), None))
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
                None if self.carry.len() >= MAX_HEAD => Err(ResponseError::HeadTooLarge),
                None => Ok((take, None)),
            }
        }
    }

    fn start_body(&mut self, head: Head) -> Option<Complete> {
        self.status = head.status;
        self.keep_alive = head.keep_alive;
        if (100..200).contains(&head.status) {
            // An interim response (100 Continue): the real one follows.
            self.state = State::Head;
            return None;
        }
        self.state = head.body;
        match self.state {
            State::Length(0) => Some(self.finish()),
            _ => None,
        }
    }

    fn feed_chunked(&mut self, input: &[u8]) -> Result<(usize, Option<Complete>), ResponseError> {
        let State::Chunked(body) = &mut self.state else {
            unreachable!("feed_chunked outside a chunked body");
        };
        let mut used = 0;
        if !self.carry.is_empty() {
            // A line split across reads: complete it from the front of `input` (a line is at
            // most MAX_CHUNK_LINE bytes, so no more is ever copied), then go on in place.
            let before = self.carry.len();
            let take = input.len().min(MAX_CHUNK_LINE + 2);
            self.carry.extend_from_slice(&input[..take]);
            let n = body.feed(&self.carry).map_err(ResponseError::Chunk)?;
            if n == 0 && !body.is_done() {
                // Still incomplete (feed fails once the line is too long).
                return Ok((take, None));
            }
            used = n - before;
            self.carry.clear();
        }
        if !body.is_done() {
            used += body.feed(&input[used..]).map_err(ResponseError::Chunk)?;
        }
        if body.is_done() {
            return Ok((used, Some(self.finish())));
        }
        // What is left is the start of a line the decoder needs whole.
        self.carry.extend_from_slice(&input[used..]);
        Ok((input.len(), None))
    }
}

/// Parses a complete head at the start of `buf`, or `None` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Head(e)),
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
                .ok_or(ResponseError::ContentLength)?;
            if length.is_some_and(|l| l != v) {
                return Err(ResponseError::ContentLength);
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
        State::Chunked(ChunkedBody::default())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` split into pieces of `piece` bytes; returns the completed responses and
    /// the decoder's error, if any. Also checks the contract: every call makes progress.
    fn read_all(wire: &[u8], piece: usize) -> (Vec<Complete>, Option<ResponseError>) {
        let mut r = ResponseDecoder::new();
        let mut done = Vec::new();
        for chunk in wire.chunks(piece) {
            let mut off = 0;
            while off < chunk.len() {
                match r.feed(&chunk[off..]) {
                    Ok((n, None)) => {
                        assert!(n > 0, "a call consumed nothing");
                        off += n;
                    }
                    Ok((n, Some(c))) => {
                        off += n;
                        done.push(c);
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
    fn chunked_bodies_in_any_split_and_pipelined() {
        let one = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n";
        let mut wire = one.to_vec();
        wire.extend_from_slice(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        let created = Complete {
            status: 201,
            keep_alive: true,
        };
        for piece in [1, 2, 3, 5, 7, 13, 64, wire.len()] {
            let (got, err) = read_all(&wire, piece);
            assert_eq!(err, None, "piece {piece}");
            assert_eq!(got, [OK, created, OK], "piece {piece}");
        }
    }

    #[test]
    fn chunked_errors_are_the_server_decoders() {
        let cases: &[&[u8]] = &[
            b"0\r\n folded\r\n\r\n",
            b"5\nhello\r\n",
            b"5 x\r\nhello\r\n",
            b"ffffffffffffffffff\r\n",
        ];
        for body in cases {
            let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            wire.extend_from_slice(body);
            for piece in [1, 4, 4096] {
                let err = read_all(&wire, piece).1;
                assert!(matches!(err, Some(ResponseError::Chunk(_))), "{err:?}");
            }
        }
    }

    #[test]
    fn endless_chunk_line_is_rejected() {
        let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
        wire.resize(wire.len() + 2 * MAX_CHUNK_LINE, b'x');
        for piece in [100, 4096, wire.len()] {
            let err = read_all(&wire, piece).1;
            assert_eq!(err, Some(ResponseError::Chunk("chunk line too long")));
        }
    }
}
