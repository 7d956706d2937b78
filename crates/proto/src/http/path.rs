//! Request targets to safe paths under the document root: the one place that decides which
//! names a client may ask for.
//!
//! The target is percent-decoded exactly once, must be valid UTF-8 (which rejects overlong
//! encodings such as `%c0%ae`), and may not contain NUL or backslash in any form. It is then
//! normalised segment by segment: empty and `.` segments vanish, `..` removes the previous
//! one, and a `..` that would climb above the root is an error, never a clamp. What comes
//! out is a list of plain names, none of them `.` or `..`, none containing `/`.

use std::fmt;

/// Why a target cannot name anything under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form or absolute-form (`*`, `host:port`, garbage).
    BadForm,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8 (including overlong encodings).
    NotUtf8,
    /// A NUL byte, raw or encoded.
    Nul,
    /// A backslash, raw or encoded (a Windows separator: refused outright).
    Backslash,
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
            PathError::NotUtf8 => "path is not UTF-8",
            PathError::Nul => "NUL byte in path",
            PathError::Backslash => "backslash in path",
            PathError::Escapes => "path climbs above the root",
            PathError::Hidden => "hidden file",
        })
    }
}

/// A normalised path under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath {
    /// Decoded names from the root down, joined by `/` (`""` for the root itself): one
    /// string, so resolving a target costs one allocation (two with escapes).
    rel: String,
    /// The decoded path ended in `/` (or is the root): the client asked for a directory.
    pub trailing_slash: bool,
    /// The raw query string (after `?`), if any, for redirects.
    pub query: Option<String>,
}

impl SafePath {
    /// The path relative to the root, `/`-separated (`""` for the root).
    pub fn relative(&self) -> &str {
        &self.rel
    }

    /// The decoded names from the root down; none for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.rel.split('/').filter(|s| !s.is_empty())
    }

    /// The last name (`""` for the root).
    pub fn name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or("")
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
            s.extend(percent_encoding::utf8_percent_encode(seg, SEGMENT));
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

/// Percent-encodes one path segment (a file name) for use in a URL.
pub fn encode_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, SEGMENT).to_string()
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
    let decoded: &str = if raw_path.contains('%') {
        decoded_bytes = percent_decode_once(raw_path.as_bytes())?;
        std::str::from_utf8(&decoded_bytes).map_err(|_| PathError::NotUtf8)?
    } else {
        raw_path
    };
    if decoded.contains('\0') {
        return Err(PathError::Nul);
    }
    if decoded.contains('\\') {
        return Err(PathError::Backslash);
    }
    let mut rel = String::with_capacity(decoded.len());
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => match rel.rfind('/') {
                Some(i) => rel.truncate(i),
                None if rel.is_empty() => return Err(PathError::Escapes),
                None => rel.clear(),
            },
            name => {
                if !rel.is_empty() {
                    rel.push('/');
                }
                rel.push_str(name);
            }
        }
    }
    if !hidden && rel.split('/').any(|s| s.starts_with('.')) {
        return Err(PathError::Hidden);
    }
    // "/a/." and "/a/.." name directories, like "/a/".
    let trailing_slash = decoded.ends_with('/')
        || decoded.ends_with("/.")
        || decoded.ends_with("/..")
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

        let bad = [
            ("/..", Escapes),
            ("/../etc/passwd", Escapes),
            ("/a/../../etc", Escapes),
            ("/%2e%2e/etc", Escapes),
            ("/%2E%2E%2Fetc", Escapes),
            ("/..%2f..%2fetc", Escapes),
            ("/.%2e/x", Escapes),
            ("/%c0%ae%c0%ae/x", NotUtf8),
            ("/%e0%80%ae", NotUtf8),
            ("/%ff", NotUtf8),
            ("/a%00b", Nul),
            ("/a\\..\\b", Backslash),
            ("/a%5c..%5cb", Backslash),
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
