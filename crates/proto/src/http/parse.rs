//! Request heads and bodies, strictly per RFC 9112: httparse reads the syntax, this file
//! decides the framing (how long the body is) and the few header facts the server acts on.
//!
//! Anything that makes the framing ambiguous is an error that closes the connection:
//! `Content-Length` together with `Transfer-Encoding` (the request-smuggling classic),
//! duplicate or malformed `Content-Length`, a transfer coding other than a final `chunked`,
//! `Transfer-Encoding` in HTTP/1.0, malformed chunk sizes. Incomplete input is never an error:
//! it is `Ok(None)` and the caller waits for more.

pub use super::chunked::ChunkedBody;

/// Most header lines in one request.
pub const MAX_HEADERS: usize = 100;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Why a request head is refused; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: syntax or framing the server will not guess about.
    Bad(&'static str),
    /// 414: the request target is over the limit.
    UriTooLong,
    /// 431: the header section is over the limit.
    HeadersTooLarge,
    /// 501: a transfer coding the server does not implement.
    UnknownCoding,
    /// 505: an HTTP major version other than 1.
    Version,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Bad(_) => 400,
            HeadError::UriTooLong => 414,
            HeadError::HeadersTooLarge => 431,
            HeadError::UnknownCoding => 501,
            HeadError::Version => 505,
        }
    }
}

/// Size limits for the head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
}

/// The parts of a request head the server acts on, borrowed from the input.
#[derive(Debug, Clone)]
pub struct Head<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// The `x` of `HTTP/1.x`.
    pub minor: u8,
    pub framing: Framing,
    /// What the client asked for: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// An `Expect` other than `100-continue` (answered with 417).
    pub expect_unknown: bool,
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    /// `None` also when the header was sent twice (then it is ignored).
    pub range: Option<&'a [u8]>,
    pub accept_json: bool,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, wait for more.
/// `Ok(Some((n, head)))`: the head is the first `n` bytes.
///
/// # Errors
/// A [`HeadError`] once the bytes so far can no longer become an acceptable request.
pub fn parse_head<'a>(
    buf: &'a [u8],
    limits: &HeadLimits,
) -> Result<Option<(usize, Head<'a>)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            check_partial_size(buf, limits)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(httparse::Error::Token) => return Err(HeadError::Bad("bad method")),
        Err(httparse::Error::HeaderName) => return Err(HeadError::Bad("bad header name")),
        Err(httparse::Error::HeaderValue) => return Err(HeadError::Bad("bad header value")),
        Err(httparse::Error::NewLine) => return Err(HeadError::Bad("bad line ending")),
        Err(_) => return Err(HeadError::Bad("bad request line")),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Bad("incomplete request line"));
    };
    if target.len() > limits.max_uri_bytes {
        return Err(HeadError::UriTooLong);
    }
    if n > limits.max_header_bytes {
        return Err(HeadError::HeadersTooLarge);
    }
    let mut head = Head {
        method,
        target,
        minor,
        framing: Framing::None,
        keep_alive: minor >= 1,
        expect_continue: false,
        expect_unknown: false,
        if_match: None,
        if_none_match: None,
        if_modified_since: None,
        if_unmodified_since: None,
        if_range: None,
        range: None,
        accept_json: false,
        referer: None,
        user_agent: None,
    };
    let mut hosts = 0;
    let mut lengths = 0;
    let mut length = 0u64;
    let mut codings: Vec<&'a [u8]> = Vec::new();
    let mut ranges = 0;
    let (mut conn_close, mut conn_keep_alive) = (false, false);
    for h in req.headers.iter() {
        let name = h.name;
        let value: &'a [u8] = trim(h.value);
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("host") {
            hosts += 1;
            if !value.iter().all(|&b| is_host_byte(b)) {
                return Err(HeadError::Bad("bad Host"));
            }
        } else if is("content-length") {
            lengths += 1;
            length = parse_length(value)?;
        } else if is("transfer-encoding") {
            codings.extend(value.split(|&b| b == b',').map(trim));
        } else if is("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if is("expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                head.expect_continue = true;
            } else {
                head.expect_unknown = true;
            }
        } else if is("if-match") {
            head.if_match.get_or_insert(value);
        } else if is("if-none-match") {
            head.if_none_match.get_or_insert(value);
        } else if is("if-modified-since") {
            head.if_modified_since.get_or_insert(value);
        } else if is("if-unmodified-since") {
            head.if_unmodified_since.get_or_insert(value);
        } else if is("if-range") {
            head.if_range.get_or_insert(value);
        } else if is("range") {
            ranges += 1;
            head.range = Some(value);
        } else if is("accept") {
            head.accept_json |= contains_ignore_case(value, b"application/json");
        } else if is("referer") {
            head.referer = Some(value);
        } else if is("user-agent") {
            head.user_agent = Some(value);
        }
    }
    if ranges > 1 {
        head.range = None;
    }
    if minor >= 1 && hosts == 0 {
        return Err(HeadError::Bad("missing Host"));
    }
    if hosts > 1 {
        return Err(HeadError::Bad("more than one Host"));
    }
    if lengths > 1 {
        return Err(HeadError::Bad("more than one Content-Length"));
    }
    if !codings.is_empty() {
        if minor == 0 {
            return Err(HeadError::Bad("Transfer-Encoding in HTTP/1.0"));
        }
        if lengths > 0 {
            return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
        }
        let chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
        let last_is_chunked = codings.last().is_some_and(|c| chunked(c));
        if !last_is_chunked || codings.iter().filter(|c| chunked(c)).count() > 1 {
            return Err(HeadError::Bad("chunked is not the final transfer coding"));
        }
        if codings.len() > 1 {
            return Err(HeadError::UnknownCoding);
        }
        head.framing = Framing::Chunked;
    } else if lengths == 1 && length > 0 {
        head.framing = Framing::Length(length);
    }
    head.keep_alive = !conn_close && (minor >= 1 || conn_keep_alive);
    Ok(Some((n, head)))
}

/// Decides between 414 and 431 for a head that has not ended yet but is already too big.
fn check_partial_size(buf: &[u8], limits: &HeadLimits) -> Result<(), HeadError> {
    // Method, spaces and "HTTP/1.1\r\n" around the target.
    const LINE_SLACK: usize = 32;
    let line_end = buf.iter().position(|&b| b == b'\n');
    match line_end {
        None if buf.len() > limits.max_uri_bytes + LINE_SLACK => Err(HeadError::UriTooLong),
        Some(end) if end > limits.max_uri_bytes + LINE_SLACK => Err(HeadError::UriTooLong),
        _ if buf.len() > limits.max_header_bytes => Err(HeadError::HeadersTooLarge),
        _ => Ok(()),
    }
}

/// 505 for a well-formed `HTTP/d.d` other than 1.x, 400 for anything else.
fn version_error(buf: &[u8]) -> HeadError {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1' =>
        {
            HeadError::Version
        }
        _ => HeadError::Bad("bad HTTP version"),
    }
}

fn parse_length(v: &[u8]) -> Result<u64, HeadError> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Bad("bad Content-Length"));
    }
    Ok(v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Bytes allowed in a Host value: an RFC 3986 authority (reg-name, IP literal, port).
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b)
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_header_bytes: 1024,
        max_uri_bytes: 256,
    };

    fn parse(raw: &str) -> Result<Option<(usize, Head<'_>)>, HeadError> {
        parse_head(raw.as_bytes(), &LIMITS)
    }

    #[test]
    fn framing_and_errors() {
        use Framing::*;
        let ok = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
            ("GET / HTTP/1.0\r\n\r\n", None),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
                Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                None,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                Chunked,
            ),
            ("GET / HTTP/1.1\nHost: a\n\n", None),
        ];
        for (raw, framing) in ok {
            let (n, h) = parse(raw).unwrap().unwrap();
            assert_eq!(n, raw.len(), "{raw:?}");
            assert_eq!(h.framing, framing, "{raw:?}");
        }
        let bad = [
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            ("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            ("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ];
        for (raw, status) in bad {
            assert_eq!(
                parse(raw).map(|_| ()).unwrap_err().status(),
                status,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn limits_and_partial() {
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let long_uri = format!("GET /{} HTTP/1.1\r\n", "a".repeat(400));
        assert_eq!(parse(&long_uri).unwrap_err(), HeadError::UriTooLong);
        let long_uri_partial = format!("GET /{}", "a".repeat(400));
        assert_eq!(parse(&long_uri_partial).unwrap_err(), HeadError::UriTooLong);
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "b".repeat(2000));
        assert_eq!(parse(&big).unwrap_err(), HeadError::HeadersTooLarge);
        let many: String = (0..150).map(|i| format!("X{i}: y\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        let limits = HeadLimits {
            max_header_bytes: 1 << 20,
            max_uri_bytes: 256,
        };
        assert_eq!(
            parse_head(raw.as_bytes(), &limits).unwrap_err(),
            HeadError::HeadersTooLarge
        );
    }

    #[test]
    fn connection_semantics() {
        let ka = |raw: &str| parse(raw).unwrap().unwrap().1.keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }
}
