//! Directory listings: entries sorted directories first, then by name, as an HTML page or
//! as JSON (for `Accept: application/json`), with names escaped for each and links
//! percent-encoded from the real bytes of the name.

use std::fmt::Write as _;

use super::docroot::ListEntry;
use super::path::encode_segment;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::docroot::test_meta as meta;

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
}
