//! Pure pieces of a response: status lines, validators (ETag, Last-Modified) and the
//! conditional-request rules of RFC 9110 §13, byte ranges (§14) with their amplification
//! bounds, MIME types, directory listings in HTML and JSON, and the Combined Log Format line.
//! No I/O here: everything takes values and returns bytes or decisions.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::docroot::{ListEntry, Meta};
use super::path::encode_segment;

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

/// Methods RFC 9110 defines (plus PATCH) that this server knows but does not allow: 405.
/// Anything else is 501.
pub fn is_known_method(m: &str) -> bool {
    matches!(
        m,
        "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH"
    )
}

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

/// HTML-escapes text for element content and quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Directories first, then by name.
pub fn sort_listing(entries: &mut [ListEntry]) {
    entries.sort_by(|a, b| {
        b.meta
            .is_dir
            .cmp(&a.meta.is_dir)
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// The HTML listing of the directory at URL path `url_path` (ends with `/`, decoded).
pub fn listing_html(url_path: &str, entries: &[ListEntry]) -> String {
    let title = escape_html(url_path);
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:0 1em;text-align:left}}\
         td.n{{text-align:right}}</style></head>\n<body><h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n"
    );
    if url_path != "/" {
        s.push_str("<tr><td><a href=\"../\">../</a></td><td class=\"n\">-</td><td></td></tr>\n");
    }
    for e in entries {
        let slash = if e.meta.is_dir { "/" } else { "" };
        let size = if e.meta.is_dir {
            "-".to_string()
        } else {
            e.meta.len.to_string()
        };
        let _ = writeln!(
            s,
            "<tr><td><a href=\"./{href}{slash}\">{name}{slash}</a></td><td class=\"n\">{size}</td><td>{date}</td></tr>",
            href = encode_segment(&e.name),
            name = escape_html(&e.display_name()),
            date = httpdate::fmt_http_date(e.meta.modified),
        );
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

/// The JSON listing: `{"path": ..., "entries": [{"name", "type", "size", "modified", "href"}]}`
/// with `modified` in seconds since the epoch.
pub fn listing_json(url_path: &str, entries: &[ListEntry]) -> String {
    let mut s = format!("{{\"path\":{},\"entries\":[", json_string(url_path));
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let (secs, _) = e.meta.mtime();
        let slash = if e.meta.is_dir { "/" } else { "" };
        let _ = write!(
            s,
            "{{\"name\":{},\"type\":\"{}\",\"size\":{},\"modified\":{secs},\"href\":{}}}",
            json_string(&e.display_name()),
            if e.meta.is_dir { "dir" } else { "file" },
            e.meta.len,
            json_string(&format!("{}{slash}", encode_segment(&e.name))),
        );
    }
    s.push_str("]}\n");
    s
}

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

/// Seconds since the epoch of a time (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(len: u64, is_dir: bool) -> Meta {
        Meta {
            is_dir,
            len,
            inode: 7,
            modified: UNIX_EPOCH + Duration::from_secs(1_000_000_000),
        }
    }

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

    #[test]
    fn listings_escape_and_encode() {
        let mut entries = vec![
            ListEntry {
                name: "b <&> \"q\".txt".into(),
                meta: meta(3, false),
            },
            ListEntry {
                name: "a dir".into(),
                meta: meta(0, true),
            },
            ListEntry {
                name: "é.txt".into(),
                meta: meta(1, false),
            },
            ListEntry {
                name: b"bad\xff\\name".to_vec(),
                meta: meta(2, false),
            },
        ];
        sort_listing(&mut entries);
        assert_eq!(entries[0].name, b"a dir");
        let html = listing_html("/x <y>/", &entries);
        assert!(html.contains("Index of /x &lt;y&gt;/"));
        assert!(html.contains("href=\"./a%20dir/\">a dir/</a>"));
        assert!(html.contains(
            "href=\"./b%20%3C%26%3E%20%22q%22.txt\">b &lt;&amp;&gt; &quot;q&quot;.txt</a>"
        ));
        assert!(html.contains("href=\"./%C3%A9.txt\">é.txt</a>"));
        // Not UTF-8: the link has the real bytes, the text a lossy form.
        assert!(
            html.contains("href=\"./bad%FF%5Cname\">bad\u{fffd}\\name</a>"),
            "{html}"
        );
        assert!(html.contains("href=\"../\""));
        assert!(!listing_html("/", &entries).contains("href=\"../\""));
        let json = listing_json("/", &entries);
        assert!(json.contains("{\"name\":\"b <&> \\\"q\\\".txt\",\"type\":\"file\",\"size\":3"));
        assert!(json.contains("\"type\":\"dir\""));
        assert!(
            json.contains("\"name\":\"bad\u{fffd}\\\\name\",\"type\":\"file\",\"size\":2,"),
            "{json}"
        );
        assert!(json.contains("\"href\":\"bad%FF%5Cname\""), "{json}");
    }

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
