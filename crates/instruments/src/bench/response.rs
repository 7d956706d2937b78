//! Sans-IO readers of what a benchmarked server sends back: HTTP/1.1 responses (proto's
//! client-side decoder, `plumb_proto::http::client`: head parsed with httparse, body framed by
//! Content-Length, chunked encoding or end of stream) and echo messages (a fixed number of
//! bytes that must match what was sent).
//!
//! The load generator feeds them whatever a `read` returned; they say how much they consumed
//! and whether a response is complete. Body bytes are counted, never copied, and a head is
//! copied only when it arrives split across reads, so the hot path allocates nothing.

use std::fmt;

pub use plumb_proto::http::client::{Complete, MAX_HEAD};
use plumb_proto::http::client::{ResponseDecoder, ResponseError};

/// Why the bytes from the server are not a valid response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadResponse {
    /// The head does not parse (httparse's reason).
    Head(httparse::Error),
    /// No complete head within [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// A Content-Length that is not a number, or two that disagree.
    ContentLength,
    /// Malformed chunked framing (a chunk-size line that is not hexadecimal, a chunk not
    /// followed by CRLF, a bad trailer).
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

impl From<ResponseError> for BadResponse {
    fn from(e: ResponseError) -> Self {
        match e {
            ResponseError::Head(e) => BadResponse::Head(e),
            ResponseError::HeadTooLarge => BadResponse::HeadTooLarge,
            ResponseError::ContentLength => BadResponse::ContentLength,
            ResponseError::Chunk(_) => BadResponse::Chunk,
        }
    }
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
            Reader::Http(r) => r.0.in_progress(),
            Reader::Echo(r) => r.got > 0,
        }
    }

    /// Forgets any partial response (the connection is being replaced).
    pub fn reset(&mut self) {
        match self {
            Reader::Http(r) => r.0.reset(),
            Reader::Echo(r) => r.got = 0,
        }
    }
}

/// Reads HTTP/1.x responses, one after another, from a byte stream: proto's client-side
/// decoder (the chunked decoder is the server's own), with bench's error type.
#[derive(Debug, Default)]
pub struct HttpReader(ResponseDecoder);

impl HttpReader {
    pub fn new() -> Self {
        HttpReader(ResponseDecoder::new())
    }

    /// Consumes a prefix of `input`.
    ///
    /// # Errors
    /// A malformed head or chunked body.
    #[inline]
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Step), BadResponse> {
        match self.0.feed(input)? {
            (n, Some(done)) => Ok((n, Step::Done(done))),
            (n, None) => Ok((n, Step::More)),
        }
    }

    fn eof(&mut self) -> Option<Complete> {
        self.0.eof()
    }
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
