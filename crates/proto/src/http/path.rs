//! Request targets to safe paths under the document root: the one place that decides which
//! names a client may ask for.
//!
//! The target is percent-decoded exactly once and may not contain NUL in any form. It is then
//! normalised segment by segment: empty and `.` segments vanish, `..` removes the previous
//! one, and a `..` that would climb above the root is an error, never a clamp. What comes
//! out is a list of plain names, none of them `.` or `..`, none containing `/`.
//!
//! Names are bytes, as Linux file names are: a name that is not UTF-8 (a listing links it
//! percent-encoded) and a name with a backslash are served like any other. Only `/` separates
//! and only a `..` segment climbs, so neither can leave the root: an overlong `%c0%ae` is two
//! bytes of a name, not a dot, and `..\x` is one name. (Refusing them made listed files
//! unfetchable: `back\slash.txt` was listed but answered 400.)

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why a target cannot name anything under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form or absolute-form (`*`, `host:port`, garbage).
    BadForm,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A NUL byte, raw or encoded.
    Nul,
    /// `..` climbing above the root.
    Escapes,
    /// A segment starts with `.` and hidden files are not served.
    Hidden,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::BadForm => "request target is not a path",
            PathError::BadEscape => "bad percent-escape",
            PathError::Nul => "NUL byte in path",
            PathError::Escapes => "path climbs above the root",
            PathError::Hidden => "hidden file",
        })
    }
}

/// A normalised path under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath {
    /// Decoded names from the root down, joined by `/` (empty for the root itself): one
    /// buffer, so resolving a target costs one allocation (two with escapes).
    rel: Vec<u8>,
    /// The decoded path ended in `/` (or is the root): the client asked for a directory.
    pub trailing_slash: bool,
    /// The raw query string (after `?`), if any, for redirects.
    pub query: Option<String>,
}

impl SafePath {
    /// The path relative to the root, `/`-separated (empty for the root).
    pub fn relative(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.rel))
    }

    /// The decoded names from the root down; none for the root.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.rel.split(|&b| b == b'/').filter(|s| !s.is_empty())
    }

    /// The last name (empty for the root).
    pub fn name(&self) -> &[u8] {
        self.rel.rsplit(|&b| b == b'/').next().unwrap_or(b"")
    }

    /// The canonical URL path, each segment percent-encoded, starting with `/`, with a
    /// trailing slash when `dir`. Built from the normalised segments, never from the raw
    /// target, so a redirect cannot point off-site (`//evil.example/x`).
    pub fn url(&self, dir: bool) -> String {
        let mut s = String::from("/");
        for (i, seg) in self.segments().enumerate() {
            if i > 0 {
                s.push('/');
            }
            s.extend(percent_encoding::percent_encode(seg, SEGMENT));
        }
        if dir && !self.rel.is_empty() {
            s.push('/');
        }
        s
    }
}

/// Characters kept verbatim in an encoded path segment: RFC 3986 unreserved plus a few
/// sub-delims that are safe in HTML attributes too.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment (a file name, any bytes) for use in a URL.
pub fn encode_segment(name: &[u8]) -> String {
    percent_encoding::percent_encode(name, SEGMENT).to_string()
}

/// Resolves a request target (origin-form `/a/b?q` or absolute-form `http://h/a/b`) to a
/// normalised path.
///
/// # Errors
/// Any [`PathError`]; `Hidden` only when `hidden` is false and a segment starts with `.`.
pub fn resolve_target(target: &str, hidden: bool) -> Result<SafePath, PathError> {
    let path_and_query = strip_absolute_form(target)?;
    let (raw_path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // A fragment is never sent by a conforming client; drop it rather than serve "a#b".
    let raw_path = raw_path.split('#').next().unwrap_or("");
    if !raw_path.starts_with('/') {
        return Err(PathError::BadForm);
    }
    // Most paths have no escapes: then they are normalised straight from the request.
    let decoded_bytes;
    let decoded: &[u8] = if raw_path.contains('%') {
        decoded_bytes = percent_decode_once(raw_path.as_bytes())?;
        &decoded_bytes
    } else {
        raw_path.as_bytes()
    };
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    let mut rel = Vec::with_capacity(decoded.len());
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => rel.truncate(i),
                None if rel.is_empty() => return Err(PathError::Escapes),
                None => rel.clear(),
            },
            name => {
                if !rel.is_empty() {
                    rel.push(b'/');
                }
                rel.extend_from_slice(name);
            }
        }
    }
    if !hidden && rel.split(|&b| b == b'/').any(|s| s.starts_with(b".")) {
        return Err(PathError::Hidden);
    }
    // "/a/." and "/a/.." name directories, like "/a/".
    let trailing_slash = decoded.ends_with(b"/")
        || decoded.ends_with(b"/.")
        || decoded.ends_with(b"/..")
        || rel.is_empty();
    Ok(SafePath {
        rel,
        trailing_slash,
        query: query.map(str::to_string),
    })
}

/// `http://host:port/path?q` → `/path?q`; origin-form is returned as is.
fn strip_absolute_form(target: &str) -> Result<&str, PathError> {
    if target.starts_with('/') {
        return Ok(target);
    }
    let lower_scheme = |s: &str| {
        target
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    };
    let rest = if lower_scheme("http://") {
        &target[7..]
    } else if lower_scheme("https://") {
        &target[8..]
    } else {
        return Err(PathError::BadForm);
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Ok(&rest[i..]),
        // "http://host" or "http://host?q": the path is "/".
        _ => Ok("/"),
    }
}

/// Decodes `%XX` escapes once. A `%` without two hex digits is an error, not a literal.
fn percent_decode_once(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                raw.get(i + 1).and_then(|&b| hex(b)),
                raw.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_refuses() {
        use PathError::*;
        let ok = |t: &str, want: &[&str], slash: bool| {
            let p = resolve_target(t, false).unwrap_or_else(|e| panic!("{t}: {e}"));
            let want: Vec<&[u8]> = want.iter().map(|w| w.as_bytes()).collect();
            assert_eq!(p.segments().collect::<Vec<_>>(), want, "{t}");
            assert_eq!(p.trailing_slash, slash, "{t}");
        };
        ok("/", &[], true);
        ok("/a/b.txt", &["a", "b.txt"], false);
        ok("/a/b/", &["a", "b"], true);
        ok("//a///b", &["a", "b"], false);
        ok("/a/./b/../c", &["a", "c"], false);
        ok("/a/..", &[], true);
        ok("/a%20b/%E2%82%AC", &["a b", "€"], false);
        ok("/%252e%252e/x", &["%2e%2e", "x"], false); // decoded once only
        ok("/a?x=../../etc", &["a"], false);
        ok("http://h:8/x/y?q", &["x", "y"], false);
        ok("HTTP://h", &[], true);
        ok("/a%2fb", &["a", "b"], false);
        // Names are bytes: a backslash is a character, overlong UTF-8 is two bytes of a name.
        ok("/a\\..\\b", &["a\\..\\b"], false);
        ok("/back%5Cslash.txt", &["back\\slash.txt"], false);
        ok("/x%5c..%5cetc", &["x\\..\\etc"], false);
        let p = resolve_target("/%c0%ae%c0%ae/x%ff", false).unwrap();
        assert_eq!(
            p.segments().collect::<Vec<_>>(),
            [&b"\xc0\xae\xc0\xae"[..], b"x\xff"]
        );
        assert_eq!(
            p.url(false),
            "/%C0%AE%C0%AE/x%FF",
            "encoded back, byte for byte"
        );

        let bad = [
            ("/..", Escapes),
            ("/../etc/passwd", Escapes),
            ("/a/../../etc", Escapes),
            ("/%2e%2e/etc", Escapes),
            ("/%2E%2E%2Fetc", Escapes),
            ("/..%2f..%2fetc", Escapes),
            ("/.%2e/x", Escapes),
            ("/a%00b", Nul),
            ("/%", BadEscape),
            ("/%4", BadEscape),
            ("/%zz", BadEscape),
            ("*", BadForm),
            ("example.com:443", BadForm),
            ("a/b", BadForm),
            ("/.git/config", Hidden),
            ("/a/.env", Hidden),
            ("/%2egit", Hidden),
        ];
        for (t, want) in bad {
            assert_eq!(resolve_target(t, false), Err(want), "{t}");
        }
        assert!(resolve_target("/.well-known/x", true).is_ok());
        assert_eq!(resolve_target("/../x", true), Err(Escapes));
    }

    #[test]
    fn urls_are_encoded_from_segments() {
        let p = resolve_target("/a%20b/%3Cx%3E&y", false).unwrap();
        assert_eq!(p.url(false), "/a%20b/%3Cx%3E%26y");
        assert_eq!(p.url(true), "/a%20b/%3Cx%3E%26y/");
        let p = resolve_target("//evil.example/x", false).unwrap();
        assert_eq!(p.url(true), "/evil.example/x/");
        assert_eq!(resolve_target("/", false).unwrap().url(true), "/");
    }
}
