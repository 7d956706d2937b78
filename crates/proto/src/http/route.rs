//! Routing one request: the method check, the target resolved to a safe path under the
//! root, then a file (served through [`super::conditional`]) or a directory (redirected to
//! its slash form, answered with its `index.html`, or listed).

use std::path::Path;

use super::docroot::{OpenError, Opened};
use super::encode::Reply;
use super::listing::{listing_html, listing_json, sort_listing};
use super::parse::Head;
use super::path::{PathError, SafePath, resolve_target};
use super::session::HttpSession;

/// Methods RFC 9110 defines (plus PATCH) that this server knows but does not allow: 405.
/// Anything else is 501.
pub fn is_known_method(m: &str) -> bool {
    matches!(
        m,
        "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH"
    )
}

impl HttpSession {
    /// Answers a complete GET or HEAD (or refuses the method): the target resolved under
    /// the root, a file served, a directory redirected to its slash form, answered with its
    /// `index.html` or listed.
    pub(super) fn route(&mut self, r: &Reply<'_>, head: &Head<'_>) {
        if head.expect_unknown {
            return self.error(r, 417, "");
        }
        if self.cgi_route(r, head) {
            return;
        }
        if head.method != "GET" && head.method != "HEAD" {
            if is_known_method(head.method) {
                return self.error(r, 405, "Allow: GET, HEAD\r\n");
            }
            return self.error(r, 501, "");
        }
        let path = match resolve_target(head.target, self.cfg.hidden) {
            Ok(p) => p,
            Err(PathError::Hidden) => return self.error(r, 404, ""),
            Err(_) => return self.error(r, 400, ""),
        };
        let rel = path.relative();
        match self.root.open(rel) {
            Ok(opened) if opened.meta.is_dir => self.directory(r, head, &path, rel),
            Ok(_) if path.trailing_slash => self.error(r, 404, ""),
            Ok(opened) => {
                let name = String::from_utf8_lossy(path.name());
                self.serve_file(r, head, rel, opened, &name);
            }
            Err(OpenError::NotFound) => self.error(r, 404, ""),
            Err(OpenError::Forbidden) => self.error(r, 403, ""),
            Err(OpenError::Other(_)) => self.error(r, 500, ""),
        }
    }

    fn directory(&mut self, r: &Reply<'_>, head: &Head<'_>, path: &SafePath, rel: &Path) {
        if !path.trailing_slash {
            let mut location = path.url(true);
            if let Some(q) = &path.query {
                location.push('?');
                location.push_str(q);
            }
            return self.error(r, 301, &format!("Location: {location}\r\n"));
        }
        let index = rel.join("index.html");
        match self.root.open(&index) {
            Ok(opened) if !opened.meta.is_dir => {
                return self.serve_file(r, head, &index, opened, "index.html");
            }
            Ok(_) | Err(OpenError::NotFound) => {}
            Err(OpenError::Forbidden) => return self.error(r, 403, ""),
            Err(OpenError::Other(_)) => return self.error(r, 500, ""),
        }
        let mut entries = match self.root.list(rel, self.cfg.hidden) {
            Ok(e) => e,
            Err(OpenError::NotFound) => return self.error(r, 404, ""),
            Err(OpenError::Forbidden) => return self.error(r, 403, ""),
            Err(OpenError::Other(_)) => return self.error(r, 500, ""),
        };
        sort_listing(&mut entries);
        let url_path = if rel.as_os_str().is_empty() {
            "/".to_string()
        } else {
            format!("/{}/", rel.to_string_lossy())
        };
        if head.accept_json {
            let body = listing_json(&url_path, &entries);
            self.simple(r, 200, "", "application/json", body.as_bytes());
        } else {
            let body = listing_html(&url_path, &entries);
            self.simple(r, 200, "", "text/html; charset=utf-8", body.as_bytes());
        }
    }

    /// Answers with `opened`; if it changed while it was read, once more from a fresh open
    /// (which sees the change), and a 500 if it changes again.
    fn serve_file(
        &mut self,
        r: &Reply<'_>,
        head: &Head<'_>,
        rel: &Path,
        opened: Opened,
        name: &str,
    ) {
        if self.answer_file(r, head, opened, name) {
            return;
        }
        let served = match self.root.open(rel) {
            Ok(again) if !again.meta.is_dir => self.answer_file(r, head, again, name),
            _ => false,
        };
        if !served {
            self.error(r, 500, "");
        }
    }
}
