//! The chunked transfer coding (RFC 9112, section 7.1), decoded strictly and sans-IO. One
//! decoder for both roles: the server reads request bodies with it (`parse`, `session`) and
//! the client reads response bodies with it (`client`, used by the load generator).

/// Longest chunk-size line or trailer line in a chunked body.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section of a chunked body.
const MAX_TRAILERS: usize = 16 * 1024;

/// Where a chunked body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Reads (and discards) a chunked body, strictly: sizes are 1-16 hex digits, every line ends
/// in CRLF, chunk data is followed by CRLF, trailers are bounded.
#[derive(Debug, Clone)]
pub struct ChunkedBody {
    state: Chunk,
    /// Data bytes seen so far.
    pub total: u64,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        ChunkedBody {
            state: Chunk::Size,
            total: 0,
        }
    }
}

impl ChunkedBody {
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Consumes what it can from `input`; returns the count. Stops at the end of the body.
    ///
    /// # Errors
    /// Malformed framing (the connection must close).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, &'static str> {
        self.feed_data(input, &mut |_| {})
    }

    /// [`ChunkedBody::feed`] that also hands each piece of chunk data to `data`, in order
    /// (a CGI script's standard input gets the de-chunked body).
    ///
    /// # Errors
    /// Malformed framing (the connection must close).
    pub fn feed_data(
        &mut self,
        input: &[u8],
        data: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, &'static str> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                Chunk::Done => return Ok(used),
                Chunk::Data(left) => {
                    let take = (left.min(rest.len() as u64)) as usize;
                    if take > 0 {
                        data(&rest[..take]);
                    }
                    used += take;
                    self.total += take as u64;
                    if take as u64 == left {
                        self.state = Chunk::DataEnd;
                    } else {
                        self.state = Chunk::Data(left - take as u64);
                        return Ok(used);
                    }
                }
                Chunk::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(used);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF");
                    }
                    used += 2;
                    self.state = Chunk::Size;
                }
                Chunk::Size | Chunk::Trailers(_) => {
                    let Some(line) = take_line(rest)? else {
                        return Ok(used);
                    };
                    used += line.len() + 2;
                    if let Chunk::Trailers(seen) = self.state {
                        let seen = seen + line.len() + 2;
                        if seen > MAX_TRAILERS {
                            return Err("trailers too large");
                        }
                        self.state = if line.is_empty() {
                            Chunk::Done
                        } else if line.contains(&b':')
                            && !line.starts_with(b" ")
                            && !line.starts_with(b"\t")
                        {
                            Chunk::Trailers(seen)
                        } else {
                            return Err("bad trailer line");
                        };
                    } else {
                        let size = parse_chunk_size(line)?;
                        self.state = if size == 0 {
                            Chunk::Trailers(0)
                        } else {
                            Chunk::Data(size)
                        };
                    }
                }
            }
        }
    }
}

/// The next CRLF-terminated line of `rest` (without the CRLF), `None` if not complete yet.
fn take_line(rest: &[u8]) -> Result<Option<&[u8]>, &'static str> {
    match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            if nl == 0 || rest[nl - 1] != b'\r' {
                return Err("bare LF in chunked framing");
            }
            let line = &rest[..nl - 1];
            if line.iter().any(|&b| b == b'\r' || b == 0) {
                return Err("bare CR or NUL in chunked framing");
            }
            Ok(Some(line))
        }
        None if rest.len() > MAX_CHUNK_LINE => Err("chunk line too long"),
        None => Ok(None),
    }
}

/// `1*HEXDIG [ BWS ";" ext ]` → the size.
fn parse_chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("bad chunk size");
    }
    if digits > 15 {
        return Err("chunk size too large");
    }
    let ext = &line[digits..];
    let ext_ok = ext.is_empty() || ext.iter().find(|&&b| b != b' ' && b != b'\t') == Some(&b';');
    if !ext_ok {
        return Err("bad chunk size");
    }
    let mut size = 0u64;
    for &b in &line[..digits] {
        size = size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        let whole = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 7, whole.len()] {
            let mut c = ChunkedBody::default();
            let mut held: Vec<u8> = Vec::new();
            let mut consumed = 0;
            for piece in whole.chunks(step) {
                held.extend_from_slice(piece);
                let n = c.feed(&held).unwrap();
                consumed += n;
                held.drain(..n);
                if c.is_done() {
                    break;
                }
            }
            assert!(c.is_done(), "step {step}");
            assert_eq!(c.total, 21);
            assert_eq!(consumed, whole.len() - 4, "stops before the next request");
        }
        let bad: [&[u8]; 7] = [
            b"x\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"-1\r\n",
            b"ffffffffffffffffff\r\n",
            b"5 x\r\nhello\r\n",
            b"0\r\n folded\r\n\r\n",
        ];
        for raw in bad {
            assert!(
                ChunkedBody::default().feed(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
