//! Message framing: how a byte stream is cut into messages. Four framings people meet every
//! day: one JSON text per line (`ndjson`: MCP, geth's IPC socket), a `Content-Length` header
//! block (`lsp`: language servers), a 4-byte big-endian length (`len32`) and netstrings
//! (`N:body,`).
//!
//! Sans-IO like httparse: [`Decoder::decode`] looks at the bytes received so far and answers
//! with one complete frame (a slice borrowed from them and how many bytes it used), "not yet"
//! (`Ok(None)`: feed more), or an error. A frame longer than the limit is refused as soon as
//! its header (or, for `ndjson`, the first `max_frame + 1` bytes without a newline) says so,
//! so a hostile peer cannot make the receiver buffer a body it will not accept.
//! [`BufDecoder`] adds a buffer of its own for callers that read into nothing else (a client).

use std::fmt;
use std::str::FromStr;

/// How messages are delimited on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Framing {
    /// One message per line, `\n` (or `\r\n`) terminated; blank lines are skipped.
    #[default]
    Ndjson,
    /// `Content-Length: N` and other headers (ignored), CRLF CRLF, then N bytes (LSP).
    Lsp,
    /// A 4-byte big-endian length, then the body.
    Len32,
    /// `N:body,` with N in decimal (D. J. Bernstein's netstrings).
    Netstring,
}

impl Framing {
    /// Every framing, in the order `--help` lists them.
    pub const ALL: [Framing; 4] = [
        Framing::Ndjson,
        Framing::Lsp,
        Framing::Len32,
        Framing::Netstring,
    ];

    /// The name `--framing` takes.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Ndjson => "ndjson",
            Framing::Lsp => "lsp",
            Framing::Len32 => "len32",
            Framing::Netstring => "netstring",
        }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown `--framing` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFraming(pub String);

impl fmt::Display for UnknownFraming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown framing '{}' (expected one of: ndjson, lsp, len32, netstring)",
            self.0
        )
    }
}

impl std::error::Error for UnknownFraming {}

impl FromStr for Framing {
    type Err = UnknownFraming;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Framing::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFraming(s.to_string()))
    }
}

/// Why the stream cannot be framed. Either way the stream is unusable from here on: the
/// receiver answers once (where it can) and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is longer than the limit; `len` is its declared length where the framing
    /// declares one (`None` for a line that simply goes on).
    Oversize { len: Option<u64> },
    /// The framing itself is broken; the text says how.
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversize { len: Some(n) } => write!(f, "frame of {n} bytes is too large"),
            FrameError::Oversize { len: None } => f.write_str("frame is too large"),
            FrameError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// One complete frame found at the start of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message, without its framing.
    pub body: &'a [u8],
    /// Bytes of input the frame used, framing included: drop them before the next call.
    pub consumed: usize,
}

/// Most bytes of an LSP header block: far more than `Content-Length` and `Content-Type` need.
pub const MAX_LSP_HEADER: usize = 8 * 1024;
/// Most digits of a netstring length (u64 has 20).
const MAX_NETSTRING_DIGITS: usize = 20;

/// Finds frames at the start of a buffer the caller keeps (the driver's retained input).
/// The only state is how far an `ndjson` line has been searched for its newline already (and
/// the blank lines skipped before it), so
/// a long line arriving one byte at a time costs linear, not quadratic, time; pass the same
/// bytes again (with more appended) until a frame or an error comes out.
#[derive(Debug, Clone)]
pub struct Decoder {
    framing: Framing,
    max_frame: usize,
    line_start: usize,
    scanned: usize,
}

impl Decoder {
    /// A decoder refusing frames longer than `max_frame` bytes (framing not counted).
    pub fn new(framing: Framing, max_frame: usize) -> Decoder {
        Decoder {
            framing,
            max_frame,
            line_start: 0,
            scanned: 0,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The first complete frame in `input`, `Ok(None)` when more bytes are needed, or why
    /// the stream is broken.
    ///
    /// # Errors
    /// [`FrameError::Oversize`] past `max_frame`, [`FrameError::Malformed`] for framing that
    /// cannot be read.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Option<Frame<'a>>, FrameError> {
        let found = match self.framing {
            Framing::Ndjson => self.ndjson(input),
            Framing::Lsp => lsp(input, self.max_frame),
            Framing::Len32 => len32(input, self.max_frame),
            Framing::Netstring => netstring(input, self.max_frame),
        };
        if !matches!(found, Ok(None)) {
            self.line_start = 0;
            self.scanned = 0;
        }
        found
    }

    /// Bytes at the front of the input that are known to hold no frame (blank `ndjson` lines
    /// skipped while no frame was complete yet). A caller may drop them now instead of
    /// holding them until the next frame; the decoder's offsets move with them.
    pub fn take_skipped(&mut self) -> usize {
        let n = self.line_start;
        self.line_start = 0;
        self.scanned = self.scanned.saturating_sub(n);
        n
    }

    fn ndjson<'a>(&mut self, input: &'a [u8]) -> Result<Option<Frame<'a>>, FrameError> {
        // `line_start` and `scanned` are offsets into `input` from earlier calls: blank lines
        // already skipped, bytes already searched for a newline.
        let mut start = self.line_start.min(input.len());
        loop {
            let from = self.scanned.clamp(start, input.len());
            let Some(nl) = input[from..].iter().position(|&b| b == b'\n') else {
                self.line_start = start;
                self.scanned = input.len();
                if input.len() - start > self.max_frame {
                    return Err(FrameError::Oversize { len: None });
                }
                return Ok(None);
            };
            let end = from + nl;
            let mut line = &input[start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > self.max_frame {
                return Err(FrameError::Oversize {
                    len: Some(line.len() as u64),
                });
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                // A blank line between messages (a person typing, a trailing CRLF).
                start = end + 1;
                continue;
            }
            return Ok(Some(Frame {
                body: line,
                consumed: end + 1,
            }));
        }
    }
}

/// The frame after `start` once `len` body bytes (and `trailer` more) are available.
fn body_at(input: &[u8], start: usize, len: usize, trailer: usize) -> Option<Frame<'_>> {
    let end = start.checked_add(len)?;
    (input.len() >= end + trailer).then(|| Frame {
        body: &input[start..end],
        consumed: end + trailer,
    })
}

fn lsp(input: &[u8], max_frame: usize) -> Result<Option<Frame<'_>>, FrameError> {
    let window = &input[..input.len().min(MAX_LSP_HEADER + 4)];
    let Some(head_end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        if input.len() >= MAX_LSP_HEADER + 4 {
            return Err(FrameError::Malformed("LSP header block too long"));
        }
        return Ok(None);
    };
    let head = &input[..head_end];
    let mut length: Option<u64> = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(FrameError::Malformed("LSP header line without a colon"));
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(FrameError::Malformed("bad LSP header name"));
        }
        if !name.eq_ignore_ascii_case(b"content-length") {
            continue; // Content-Type and anything else: accepted, ignored.
        }
        let n = parse_decimal(value).ok_or(FrameError::Malformed("bad Content-Length"))?;
        if length.is_some_and(|m| m != n) {
            return Err(FrameError::Malformed("conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    let n = length.ok_or(FrameError::Malformed("LSP header without Content-Length"))?;
    if n > max_frame as u64 {
        return Err(FrameError::Oversize { len: Some(n) });
    }
    Ok(body_at(input, head_end + 4, n as usize, 0))
}

/// Plain decimal digits (no sign, no spaces), at most 20 of them, fitting a u64.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_NETSTRING_DIGITS || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn len32(input: &[u8], max_frame: usize) -> Result<Option<Frame<'_>>, FrameError> {
    let Some(&[a, b, c, d]) = input.get(..4) else {
        return Ok(None);
    };
    let n = u32::from_be_bytes([a, b, c, d]);
    if u64::from(n) > max_frame as u64 {
        return Err(FrameError::Oversize {
            len: Some(u64::from(n)),
        });
    }
    Ok(body_at(input, 4, n as usize, 0))
}

fn netstring(input: &[u8], max_frame: usize) -> Result<Option<Frame<'_>>, FrameError> {
    let digits = input.iter().take_while(|b| b.is_ascii_digit()).count();
    // The length so far already says "too large" before its last digit arrives.
    let so_far = parse_decimal(&input[..digits.min(MAX_NETSTRING_DIGITS)]);
    if digits > MAX_NETSTRING_DIGITS || so_far.is_some_and(|n| n > max_frame as u64) {
        return Err(FrameError::Oversize { len: so_far });
    }
    if digits == input.len() {
        return Ok(None);
    }
    if digits == 0 {
        return Err(FrameError::Malformed(
            "netstring must start with its length",
        ));
    }
    if input[digits] != b':' {
        return Err(FrameError::Malformed(
            "netstring length not followed by ':'",
        ));
    }
    if digits > 1 && input[0] == b'0' {
        return Err(FrameError::Malformed(
            "netstring length with a leading zero",
        ));
    }
    let n = so_far.unwrap_or(0) as usize;
    let Some(frame) = body_at(input, digits + 1, n, 1) else {
        return Ok(None);
    };
    if input[frame.consumed - 1] != b',' {
        return Err(FrameError::Malformed("netstring body not followed by ','"));
    }
    Ok(Some(frame))
}

/// Appends `body` to `out` in `framing`. For `ndjson` the body must not contain a newline
/// (compact JSON never does).
pub fn encode(framing: Framing, body: &[u8], out: &mut Vec<u8>) {
    match framing {
        Framing::Ndjson => {
            debug_assert!(!body.contains(&b'\n'), "an ndjson body with a newline");
            out.extend_from_slice(body);
            out.push(b'\n');
        }
        Framing::Lsp => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        Framing::Len32 => {
            let n = u32::try_from(body.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(body);
        }
        Framing::Netstring => {
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(body);
            out.push(b',');
        }
    }
}

/// A [`Decoder`] with a buffer of its own: push what was read, pop frames.
#[derive(Debug, Clone)]
pub struct BufDecoder {
    decoder: Decoder,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` that belong to frames already returned.
    used: usize,
}

impl BufDecoder {
    pub fn new(framing: Framing, max_frame: usize) -> BufDecoder {
        BufDecoder {
            decoder: Decoder::new(framing, max_frame),
            buf: Vec::new(),
            used: 0,
        }
    }

    /// Appends bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered that are not part of a frame returned yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.used
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// As [`Decoder::decode`].
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        self.compact();
        match self.decoder.decode(&self.buf)? {
            None => {
                self.used = self.decoder.take_skipped();
                Ok(None)
            }
            Some(f) => {
                self.used = f.consumed;
                Ok(Some(f.body))
            }
        }
    }

    fn compact(&mut self) {
        if self.used > 0 {
            self.buf.drain(..self.used);
            self.used = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64;

    /// Every frame of `wire`, fed in pieces of `step` bytes the way a driver does (the
    /// unconsumed rest offered again with more appended).
    fn frames(framing: Framing, wire: &[u8], step: usize) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut d = Decoder::new(framing, MAX);
        let mut held: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step.max(1)) {
            held.extend_from_slice(piece);
            while let Some(f) = d.decode(&held)? {
                out.push(f.body.to_vec());
                let n = f.consumed;
                held.drain(..n);
            }
        }
        Ok(out)
    }

    fn wire(framing: Framing, bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            encode(framing, b, &mut out);
        }
        out
    }

    #[test]
    fn names_round_trip() {
        for f in Framing::ALL {
            assert_eq!(f.name().parse::<Framing>(), Ok(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!("LSP".parse::<Framing>(), Ok(Framing::Lsp));
        assert!("json".parse::<Framing>().is_err());
        assert_eq!(Framing::default(), Framing::Ndjson);
    }

    #[test]
    fn one_byte_at_a_time_and_all_at_once() {
        let bodies: [&[u8]; 4] = [br#"{"a":1}"#, b"x", br#"[1,2,3]"#, b"\"\xc3\xa9\""];
        for framing in Framing::ALL {
            let w = wire(framing, &bodies);
            for step in [1, 2, 3, 7, w.len()] {
                let got = frames(framing, &w, step).unwrap();
                assert_eq!(got, bodies.map(<[u8]>::to_vec), "{framing} step {step}");
            }
        }
    }

    #[test]
    fn empty_bodies_where_the_framing_has_them() {
        for framing in [Framing::Lsp, Framing::Len32, Framing::Netstring] {
            let w = wire(framing, &[b"", b"{}"]);
            assert_eq!(
                frames(framing, &w, 1).unwrap(),
                vec![b"".to_vec(), b"{}".to_vec()]
            );
        }
        // ndjson has no empty frame: blank lines are skipped.
        assert_eq!(
            frames(Framing::Ndjson, b"\n\r\n  \n{}\r\n\n[]\n", 1).unwrap(),
            vec![b"{}".to_vec(), b"[]".to_vec()]
        );
    }

    #[test]
    fn blank_lines_alone_can_be_dropped() {
        let mut d = Decoder::new(Framing::Ndjson, MAX);
        let mut held = b"\n\n\r\n{\"a".to_vec();
        assert_eq!(d.decode(&held), Ok(None));
        let n = d.take_skipped();
        assert_eq!(n, 4);
        held.drain(..n);
        held.extend_from_slice(b"\":1}\n");
        assert_eq!(d.decode(&held).unwrap().unwrap().body, br#"{"a":1}"#);
        let mut b = BufDecoder::new(Framing::Ndjson, MAX);
        for _ in 0..10_000 {
            b.push(b"\n");
            assert_eq!(b.next_frame(), Ok(None));
        }
        assert_eq!(b.buffered(), 0);
    }

    #[test]
    fn many_frames_in_one_buffer() {
        let bodies: Vec<Vec<u8>> = (0..100).map(|i| format!("{{\"i\":{i}}}").into()).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        for framing in Framing::ALL {
            let w = wire(framing, &refs);
            assert_eq!(frames(framing, &w, w.len()).unwrap(), bodies, "{framing}");
        }
    }

    #[test]
    fn lsp_ignores_other_headers_and_any_case() {
        let w = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\ncontent-length:  2\r\n\r\n{}";
        assert_eq!(frames(Framing::Lsp, w, 1).unwrap(), vec![b"{}".to_vec()]);
        let same_twice = b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(frames(Framing::Lsp, same_twice, 5).unwrap().len(), 1);
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        let cases: [(Framing, &[u8]); 4] = [
            (Framing::Lsp, b"Content-Length: 65\r\n\r\n"),
            (Framing::Len32, &[0, 0, 0, 65]),
            (Framing::Netstring, b"65"),
            (Framing::Netstring, b"99999999999999999999999:"),
        ];
        for (framing, head) in cases {
            let mut d = Decoder::new(framing, MAX);
            assert!(
                matches!(d.decode(head), Err(FrameError::Oversize { .. })),
                "{framing} {head:?}"
            );
        }
        // Exactly the limit is fine.
        let body = [b'1'; MAX];
        for framing in Framing::ALL {
            let w = wire(framing, &[&body]);
            assert_eq!(frames(framing, &w, 9).unwrap(), vec![body.to_vec()]);
        }
        // ndjson: a line with no newline past the limit, whichever way it arrives.
        let long = [b'x'; MAX + 1];
        for step in [1, 10, MAX + 1] {
            assert_eq!(
                frames(Framing::Ndjson, &long, step),
                Err(FrameError::Oversize { len: None })
            );
        }
        let mut with_nl = long.to_vec();
        with_nl.push(b'\n');
        assert!(matches!(
            frames(Framing::Ndjson, &with_nl, with_nl.len()),
            Err(FrameError::Oversize { .. })
        ));
    }

    #[test]
    fn malformed_per_framing() {
        let cases: [(Framing, &[u8]); 10] = [
            (Framing::Lsp, b"Content-Length 2\r\n\r\n{}"),
            (Framing::Lsp, b"Content-Type: x\r\n\r\n{}"),
            (Framing::Lsp, b"Content-Length: -2\r\n\r\n{}"),
            (Framing::Lsp, b"Content-Length: 2x\r\n\r\n{}"),
            (
                Framing::Lsp,
                b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            ),
            (Framing::Lsp, b"Bad Name: 1\r\nContent-Length: 2\r\n\r\n{}"),
            (Framing::Netstring, b"x:abc,"),
            (Framing::Netstring, b"3;abc,"),
            (Framing::Netstring, b"3:abc;"),
            (Framing::Netstring, b"03:abc,"),
        ];
        for (framing, w) in cases {
            for step in [1, w.len()] {
                assert!(
                    matches!(frames(framing, w, step), Err(FrameError::Malformed(_))),
                    "{framing} {:?}",
                    String::from_utf8_lossy(w)
                );
            }
        }
        // An endless LSP header block is malformed once past its bound, not buffered on.
        let endless = vec![b'a'; MAX_LSP_HEADER + 4];
        assert!(matches!(
            Decoder::new(Framing::Lsp, MAX).decode(&endless),
            Err(FrameError::Malformed(_))
        ));
        assert_eq!(
            Decoder::new(Framing::Lsp, MAX).decode(&endless[..MAX_LSP_HEADER]),
            Ok(None)
        );
    }

    #[test]
    fn incomplete_is_not_an_error() {
        for framing in Framing::ALL {
            let w = wire(framing, &[br#"{"k":"v"}"#]);
            let mut d = Decoder::new(framing, MAX);
            for cut in 0..w.len() {
                assert_eq!(d.decode(&w[..cut]), Ok(None), "{framing} cut {cut}");
            }
        }
    }

    #[test]
    fn buf_decoder_pops_frames_in_order() {
        for framing in Framing::ALL {
            let w = wire(framing, &[b"[1]", b"[2]", b"[3]"]);
            let mut d = BufDecoder::new(framing, MAX);
            let mut got = Vec::new();
            for piece in w.chunks(2) {
                d.push(piece);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f.to_vec());
                }
            }
            assert_eq!(got, vec![b"[1]".to_vec(), b"[2]".to_vec(), b"[3]".to_vec()]);
            assert_eq!(d.buffered(), 0);
        }
    }
}
