//! Sans-IO readers of what a benchmarked server sends back: HTTP/1.1 responses (proto's
//! client-side decoder, `plumb_proto::http::client`: head parsed with httparse, body framed by
//! Content-Length, chunked encoding or end of stream) and echo messages (a fixed number of
//! bytes that must match what was sent).
//!
//! The load generator feeds them whatever a `read` returned; they say how much they consumed
//! and whether a response is complete. Body bytes are counted, never copied, and a head is
//! copied only when it arrives split across reads, so the hot path allocates nothing.

use std::fmt;

use plumb_proto::framing::{Decoder, FrameError, Framing};
pub use plumb_proto::http::client::{Complete, MAX_HEAD};
use plumb_proto::http::client::{ResponseDecoder, ResponseError};
use serde_json::value::RawValue;

/// The status a JSON-RPC answer is counted under: a result.
pub const RPC_RESULT: u16 = 1;
/// The status a JSON-RPC answer is counted under: an error response.
pub const RPC_ERROR: u16 = 2;

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
    /// The framing of a JSON-RPC answer is broken (proto's framing error).
    Frame(FrameError),
    /// A frame that is not a JSON-RPC response to the request sent (not JSON, no result or
    /// error, another id).
    NotRpc,
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
            BadResponse::Frame(e) => write!(f, "{e}"),
            BadResponse::NotRpc => f.write_str("not a JSON-RPC response to the request sent"),
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
    Rpc(RpcReader),
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
            Reader::Rpc(r) => r.feed(input),
        }
    }

    /// The server closed the stream: a response framed by end of stream is complete now.
    pub fn eof(&mut self) -> Option<Complete> {
        match self {
            Reader::Http(r) => r.eof(),
            Reader::Echo(_) | Reader::Rpc(_) => None,
        }
    }

    /// Whether a response has started (some of its bytes were consumed).
    pub fn in_progress(&self) -> bool {
        match self {
            Reader::Http(r) => r.0.in_progress(),
            Reader::Echo(r) => r.got > 0,
            Reader::Rpc(r) => !r.carry.is_empty(),
        }
    }

    /// Forgets any partial response (the connection is being replaced).
    pub fn reset(&mut self) {
        match self {
            Reader::Http(r) => r.0.reset(),
            Reader::Echo(r) => r.got = 0,
            Reader::Rpc(r) => r.reset(),
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

/// Reads JSON-RPC answers framed by one of proto's framings (the server's own decoder). A
/// frame completes a call: counted under [`RPC_RESULT`] or, for an error response,
/// [`RPC_ERROR`]; anything else (not JSON, neither result nor error, another id) is a bad
/// response. A frame split across reads is carried (copied) until it is whole; a frame that
/// arrives whole in one read is checked in place.
#[derive(Debug)]
pub struct RpcReader {
    decoder: Decoder,
    /// The id the requests carry, as JSON text.
    id: std::sync::Arc<str>,
    carry: Vec<u8>,
}

/// Largest answer frame accepted.
pub const MAX_RPC_ANSWER: usize = 64 << 20;

impl RpcReader {
    pub fn new(framing: Framing, id: std::sync::Arc<str>) -> Self {
        RpcReader {
            decoder: Decoder::new(framing, MAX_RPC_ANSWER),
            id,
            carry: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.carry.clear();
        self.decoder = Decoder::new(self.decoder.framing(), MAX_RPC_ANSWER);
    }

    /// Consumes a prefix of `input`.
    ///
    /// # Errors
    /// Broken framing, or a frame that is not a response to the request.
    #[inline]
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Step), BadResponse> {
        if self.carry.is_empty() {
            return match self.decoder.decode(input).map_err(BadResponse::Frame)? {
                Some(frame) => {
                    let status = check_answer(frame.body, &self.id)?;
                    Ok((frame.consumed, done(status)))
                }
                None => {
                    // Not whole yet: keep the bytes (the decoder's progress refers to them).
                    self.carry.extend_from_slice(input);
                    Ok((input.len(), Step::More))
                }
            };
        }
        let before = self.carry.len();
        self.carry.extend_from_slice(input);
        match self
            .decoder
            .decode(&self.carry)
            .map_err(BadResponse::Frame)?
        {
            Some(frame) => {
                let status = check_answer(frame.body, &self.id)?;
                let used = frame.consumed - before;
                self.carry.clear();
                Ok((used, done(status)))
            }
            None => Ok((input.len(), Step::More)),
        }
    }
}

fn done(status: u16) -> Step {
    Step::Done(Complete {
        status,
        keep_alive: true,
    })
}

/// The fields of a response the bench looks at; the values are only scanned, not built.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// [`RPC_RESULT`] or [`RPC_ERROR`] for a response to a request with id `id`.
///
/// # Errors
/// Anything else.
pub fn check_answer(body: &[u8], id: &str) -> Result<u16, BadResponse> {
    let a: Answer<'_> = serde_json::from_slice(body).map_err(|_| BadResponse::NotRpc)?;
    let id_ok = |null_ok: bool| match a.id {
        Some(got) => got.get() == id || (null_ok && got.get() == "null"),
        None => null_ok,
    };
    match (a.result, a.error) {
        (Some(_), None) if id_ok(false) => Ok(RPC_RESULT),
        // An error with id null: the server could not read the request.
        (None, Some(_)) if id_ok(true) => Ok(RPC_ERROR),
        _ => Err(BadResponse::NotRpc),
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
    fn rpc_reader_frames_and_checks_answers_in_any_split() {
        use plumb_proto::framing::encode;
        let ok = br#"{"jsonrpc":"2.0","result":{"a":[1,2]},"id":1}"#;
        let err =
            br#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":1}"#;
        let null =
            br#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#;
        for framing in Framing::ALL {
            let mut wire = Vec::new();
            for body in [&ok[..], err, null, ok] {
                encode(framing, body, &mut wire);
            }
            for piece in [1, 2, 5, 13, 4096] {
                let mut r = Reader::Rpc(RpcReader::new(framing, "1".into()));
                let mut got = Vec::new();
                for chunk in wire.chunks(piece) {
                    let mut off = 0;
                    while off < chunk.len() {
                        let (n, step) = r.feed(&chunk[off..]).unwrap();
                        off += n;
                        if let Step::Done(c) = step {
                            got.push(c.status);
                        }
                    }
                }
                assert_eq!(
                    got,
                    [RPC_RESULT, RPC_ERROR, RPC_ERROR, RPC_RESULT],
                    "{framing} piece {piece}"
                );
                assert!(!r.in_progress());
            }
        }
        for bad in [
            &br#"{"jsonrpc":"2.0","result":1,"id":2}"#[..],
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","result":1,"error":{},"id":1}"#,
            br#"{"jsonrpc":"2.0","result":1,"id":null}"#,
            b"[]",
            b"not json",
        ] {
            assert_eq!(check_answer(bad, "1"), Err(BadResponse::NotRpc));
        }
        let mut r = RpcReader::new(Framing::Netstring, "1".into());
        assert!(matches!(r.feed(b"x:"), Err(BadResponse::Frame(_))));
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
