//! Conditional requests and byte ranges: validators (a strong ETag, Last-Modified), the
//! precondition rules of RFC 9110 §13 (`If-Match`, `If-None-Match`, `If-Modified-Since`,
//! `If-Unmodified-Since`, `If-Range`), `Range` plans with their amplification bounds (§14),
//! multipart/byteranges framing, and the answer for one opened file that applies them.

use std::io::Write as _;
use std::time::UNIX_EPOCH;

use super::docroot::{Meta, Opened};
use super::encode::{Reply, content_type};
use super::parse::Head;
use super::session::HttpSession;

/// A strong entity tag from inode, size and modification time: it changes whenever the
/// content plausibly does, and two files never share one. Held on the stack: a response
/// costs no allocation for it.
#[derive(Clone, Copy)]
pub struct ETag {
    buf: [u8; 64],
    len: usize,
}

impl ETag {
    pub fn of(meta: &Meta) -> ETag {
        let (secs, nanos) = meta.mtime();
        let mut tag = ETag {
            buf: [0; 64],
            len: 0,
        };
        let mut w = &mut tag.buf[..];
        // At most 2 + 3 * 16 + 8 + 3 = 61 bytes: it fits.
        let _ = std::io::Write::write_fmt(
            &mut w,
            format_args!("\"{:x}-{:x}-{:x}.{:x}\"", meta.inode, meta.len, secs, nanos),
        );
        tag.len = 64 - w.len();
        tag
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII was written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("\"\"")
    }
}

impl std::fmt::Debug for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    /// 304.
    NotModified,
    /// 412.
    Failed,
}

/// Conditional headers of a GET or HEAD, as borrowed from the request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
}

/// RFC 9110 §13.2.2, steps 1-4, for a GET or HEAD of an existing file.
pub fn evaluate(c: &Conditions<'_>, etag: &str, modified_secs: u64) -> Precondition {
    if let Some(v) = c.if_match {
        if !tag_list_matches(v, etag, true) {
            return Precondition::Failed;
        }
    } else if c
        .if_unmodified_since
        .and_then(parse_date)
        .is_some_and(|t| modified_secs > t)
    {
        return Precondition::Failed;
    }
    if let Some(v) = c.if_none_match {
        if tag_list_matches(v, etag, false) {
            return Precondition::NotModified;
        }
    } else if c
        .if_modified_since
        .and_then(parse_date)
        .is_some_and(|t| modified_secs <= t)
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether `If-Range` allows the range: a strong tag equal to ours, or a date equal to
/// Last-Modified. Anything else means "send the whole file".
pub fn if_range_allows(v: &[u8], etag: &str, modified_secs: u64) -> bool {
    if v.starts_with(b"\"") || v.starts_with(b"W/") {
        return v == etag.as_bytes();
    }
    parse_date(v) == Some(modified_secs)
}

fn parse_date(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?;
    let t = httpdate::parse_http_date(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// `*` or a list of entity tags, compared strongly (If-Match) or weakly (If-None-Match).
fn tag_list_matches(list: &[u8], ours: &str, strong: bool) -> bool {
    if super::parse::trim(list) == b"*" {
        return true;
    }
    let ours = ours.as_bytes();
    let mut rest = list;
    loop {
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with(b"W/");
        if weak {
            rest = &rest[2..];
        }
        let [b'"', body @ ..] = rest else {
            return false; // malformed list: matches nothing
        };
        let Some(end) = body.iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &rest[..end + 2];
        if tag == ours && !(strong && weak) {
            return true;
        }
        rest = &rest[end + 2..];
    }
}

/// Most range specs read from one header; more and the header is ignored.
const MAX_RANGE_SPECS: usize = 100;
/// Most parts in a multipart/byteranges answer (after merging); more and the whole file is
/// sent instead, which bounds the answer by the file size.
pub const MAX_PARTS: usize = 16;
/// Ranges closer than this are merged: a part header costs about as much.
const MERGE_GAP: u64 = 80;

/// What a `Range` header asks for, once checked against the file length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangePlan {
    /// Ignore the header: send the whole file (invalid syntax, another unit, too many parts).
    Full,
    /// Sorted, merged, inclusive `(first, last)` byte ranges, at most [`MAX_PARTS`].
    Parts(Vec<(u64, u64)>),
    /// 416.
    Unsatisfiable,
}

/// Plans the answer to `Range: v` for a file of `len` bytes. Overlapping and nearby ranges
/// are merged, so no byte is sent twice and the answer is never much larger than the file.
pub fn plan_ranges(v: &[u8], len: u64) -> RangePlan {
    let v = super::parse::trim(v);
    let Some(specs) = v
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case(b"bytes="))
        .map(|_| &v[6..])
    else {
        return RangePlan::Full;
    };
    let mut wanted = Vec::new();
    let mut count = 0;
    for spec in specs.split(|&b| b == b',').map(super::parse::trim) {
        if spec.is_empty() {
            continue;
        }
        count += 1;
        if count > MAX_RANGE_SPECS {
            return RangePlan::Full;
        }
        let Some(dash) = spec.iter().position(|&b| b == b'-') else {
            return RangePlan::Full;
        };
        let (first, last) = (&spec[..dash], &spec[dash + 1..]);
        let range = match (number(first), number(last)) {
            (Some(a), Some(b)) if !first.is_empty() && !last.is_empty() => {
                if a > b {
                    return RangePlan::Full;
                }
                (a < len).then(|| (a, b.min(len - 1)))
            }
            (Some(a), _) if !first.is_empty() && last.is_empty() => (a < len).then(|| (a, len - 1)),
            (_, Some(n)) if first.is_empty() && !last.is_empty() => {
                (n > 0 && len > 0).then(|| (len - n.min(len), len - 1))
            }
            _ => return RangePlan::Full,
        };
        wanted.extend(range);
    }
    if count == 0 {
        return RangePlan::Full;
    }
    if wanted.is_empty() {
        return RangePlan::Unsatisfiable;
    }
    wanted.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(wanted.len());
    for (a, b) in wanted {
        match merged.last_mut() {
            Some(prev) if a <= prev.1.saturating_add(MERGE_GAP) => prev.1 = prev.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    if merged.len() > MAX_PARTS {
        return RangePlan::Full;
    }
    RangePlan::Parts(merged)
}

/// A decimal number (empty is `Some(0)`, callers check emptiness), at most 18 digits.
fn number(d: &[u8]) -> Option<u64> {
    if d.len() > 18 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(d.iter().fold(0u64, |n, &c| n * 10 + u64::from(c - b'0')))
}

/// The part header preceding each part of a multipart/byteranges body.
pub fn part_header(
    boundary: &str,
    mime: &str,
    charset: &str,
    (a, b): (u64, u64),
    len: u64,
) -> String {
    format!(
        "\r\n--{boundary}\r\nContent-Type: {mime}{charset}\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n"
    )
}

/// The closing delimiter of a multipart/byteranges body.
pub fn multipart_end(boundary: &str) -> String {
    format!("\r\n--{boundary}--\r\n")
}

impl HttpSession {
    /// Answers with `opened`. False, with nothing queued, when a small body did not have the
    /// length the metadata said (the file changed after it was looked at).
    pub(super) fn answer_file(
        &mut self,
        r: &Reply<'_>,
        head: &Head<'_>,
        opened: Opened,
        name: &str,
    ) -> bool {
        let Opened { body: file, meta } = opened;
        let tag = ETag::of(&meta);
        let (modified_secs, _) = meta.mtime();
        let validators = |b: &mut Vec<u8>| {
            b.extend_from_slice(b"Last-Modified: ");
            let _ = write!(b, "{}", httpdate::HttpDate::from(meta.modified));
            b.extend_from_slice(b"\r\nETag: ");
            b.extend_from_slice(tag.as_str().as_bytes());
            b.extend_from_slice(b"\r\n");
        };
        let conditions = Conditions {
            if_match: head.if_match,
            if_none_match: head.if_none_match,
            if_modified_since: head.if_modified_since,
            if_unmodified_since: head.if_unmodified_since,
        };
        match evaluate(&conditions, tag.as_str(), modified_secs) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                self.simple_with(r, 304, &validators, "", b"");
                return true;
            }
            Precondition::Failed => {
                self.error(r, 412, "");
                return true;
            }
        }
        let len = meta.len;
        let plan = match head.range {
            Some(v)
                if head
                    .if_range
                    .is_none_or(|ir| if_range_allows(ir, tag.as_str(), modified_secs)) =>
            {
                plan_ranges(v, len)
            }
            _ => RangePlan::Full,
        };
        let (mime, charset) = content_type(name);
        let typed = |b: &mut Vec<u8>| {
            validators(b);
            b.extend_from_slice(b"Content-Type: ");
            b.extend_from_slice(mime.as_bytes());
            b.extend_from_slice(charset.as_bytes());
            b.extend_from_slice(b"\r\n");
        };
        match plan {
            RangePlan::Unsatisfiable => {
                self.error(r, 416, &format!("Content-Range: bytes */{len}\r\n"));
                true
            }
            RangePlan::Full => self.send_ranges(r, 200, &typed, &file, len, &[(0, len)], None),
            RangePlan::Parts(parts) if parts.len() == 1 => {
                let (a, b) = parts[0];
                let ranged = |buf: &mut Vec<u8>| {
                    typed(buf);
                    let _ = write!(buf, "Content-Range: bytes {a}-{b}/{len}\r\n");
                };
                self.send_ranges(r, 206, &ranged, &file, len, &[(a, b + 1 - a)], None)
            }
            RangePlan::Parts(parts) => {
                self.boundary_seq += 1;
                let boundary = format!(
                    "plumb-{:x}-{:x}",
                    meta.inode ^ modified_secs,
                    self.boundary_seq
                );
                let multi = |b: &mut Vec<u8>| {
                    validators(b);
                    let _ = write!(
                        b,
                        "Content-Type: multipart/byteranges; boundary={boundary}\r\n"
                    );
                };
                let pieces: Vec<(u64, u64)> = parts.iter().map(|&(a, b)| (a, b + 1 - a)).collect();
                let headers: Vec<String> = parts
                    .iter()
                    .map(|&p| part_header(&boundary, mime, charset, p, len))
                    .collect();
                let end = multipart_end(&boundary);
                let multipart = Some((&headers[..], &end[..]));
                self.send_ranges(r, 206, &multi, &file, len, &pieces, multipart)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::docroot::test_meta as meta;
    use std::time::Duration;

    #[test]
    fn ranges() {
        use RangePlan::*;
        let cases: &[(&str, u64, RangePlan)] = &[
            ("bytes=0-9", 100, Parts(vec![(0, 9)])),
            ("bytes=90-", 100, Parts(vec![(90, 99)])),
            ("bytes=-10", 100, Parts(vec![(90, 99)])),
            ("bytes=-1000", 100, Parts(vec![(0, 99)])),
            ("bytes=50-1000", 100, Parts(vec![(50, 99)])),
            ("BYTES = 0-1", 100, Full),
            ("Bytes=0-1", 100, Parts(vec![(0, 1)])),
            ("bytes=0-0,-1", 1000, Parts(vec![(0, 0), (999, 999)])),
            ("bytes=0-10,5-20", 100, Parts(vec![(0, 20)])),
            ("bytes=0-0,0-0,0-0", 100, Parts(vec![(0, 0)])),
            ("bytes=200-300", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=5-1", 100, Full),
            ("bytes=x-1", 100, Full),
            ("bytes=1", 100, Full),
            ("bytes=", 100, Full),
            ("items=0-1", 100, Full),
            ("bytes=--1", 100, Full),
            ("bytes=+1-2", 100, Full),
            ("bytes=0-1,,4-5", 100, Parts(vec![(0, 5)])),
        ];
        for (h, len, want) in cases {
            assert_eq!(&plan_ranges(h.as_bytes(), *len), want, "{h} len {len}");
        }
        // Many small scattered ranges: bounded by sending the whole file.
        let many: Vec<String> = (0..50)
            .map(|i| format!("{}-{}", i * 1000, i * 1000))
            .collect();
        assert_eq!(
            plan_ranges(format!("bytes={}", many.join(",")).as_bytes(), 100_000),
            Full
        );
        let too_many = vec!["0-0"; 101].join(",");
        assert_eq!(
            plan_ranges(format!("bytes={too_many}").as_bytes(), 10),
            Full
        );
    }

    #[test]
    fn preconditions() {
        use Precondition::*;
        let m = meta(10, false);
        let tag = ETag::of(&m);
        let tag = tag.as_str();
        let secs = 1_000_000_000;
        assert_eq!(tag, "\"7-a-3b9aca00.0\"");
        let date = httpdate::fmt_http_date(m.modified);
        let earlier = httpdate::fmt_http_date(m.modified - Duration::from_secs(10));
        let weak = format!("W/{tag}");
        let listed = format!("\"a\", {tag}");
        fn c<'a>(
            im: Option<&'a str>,
            inm: Option<&'a str>,
            ims: Option<&'a str>,
            ius: Option<&'a str>,
        ) -> Conditions<'a> {
            Conditions {
                if_match: im.map(str::as_bytes),
                if_none_match: inm.map(str::as_bytes),
                if_modified_since: ims.map(str::as_bytes),
                if_unmodified_since: ius.map(str::as_bytes),
            }
        }
        let cases = [
            (c(None, None, None, None), Proceed),
            (c(Some(tag), None, None, None), Proceed),
            (c(Some("*"), None, None, None), Proceed),
            (c(Some("\"other\""), None, None, None), Failed),
            (c(Some(&weak), None, None, None), Failed),
            (c(Some(&listed), None, None, None), Proceed),
            (c(None, Some(tag), None, None), NotModified),
            (c(None, Some(&weak), None, None), NotModified),
            (c(None, Some("*"), None, None), NotModified),
            (c(None, Some("\"other\""), None, None), Proceed),
            (c(None, Some("\"other\""), Some(&date), None), Proceed),
            (c(None, None, Some(&date), None), NotModified),
            (c(None, None, Some(&earlier), None), Proceed),
            (c(None, None, Some("garbage"), None), Proceed),
            (c(None, None, None, Some(&earlier)), Failed),
            (c(None, None, None, Some(&date)), Proceed),
            (c(Some(tag), None, None, Some(&earlier)), Proceed),
        ];
        for (i, (cond, want)) in cases.iter().enumerate() {
            assert_eq!(evaluate(cond, tag, secs), *want, "case {i}");
        }
        assert!(if_range_allows(tag.as_bytes(), tag, secs));
        assert!(!if_range_allows(weak.as_bytes(), tag, secs));
        assert!(if_range_allows(date.as_bytes(), tag, secs));
        assert!(!if_range_allows(earlier.as_bytes(), tag, secs));
    }
}
