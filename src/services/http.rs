//! The HTTP static-file service (`plumb serve`): one sans-IO
//! [`plumb_proto::http::HttpSession`] per connection over a shared document root, and where
//! CGI scripts' standard error goes ([`ScriptStderr`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use plumb_proto::http::{Config, Docroot, HttpSession};
use plumb_proto::{Session, Wall};

use super::Service;

pub struct HttpService {
    pub config: Arc<Config>,
    pub root: Arc<dyn Docroot>,
}

impl Service for HttpService {
    fn name(&self) -> &'static str {
        "http"
    }
    fn client_speaks_first(&self) -> bool {
        true
    }
    fn session(&self, peer: &str, now: Instant) -> Box<dyn Session + Send> {
        Box::new(HttpSession::new(
            Arc::clone(&self.config),
            Arc::clone(&self.root),
            peer,
            now,
            Wall::new(now, SystemTime::now()),
        ))
    }
}

/// CGI scripts' stderr lines, to the server's stderr (`plumb: cgi /cgi-bin/x: LINE`), one
/// write per line so lines of concurrent scripts do not interleave.
#[derive(Debug, Default)]
pub struct ScriptStderr;

impl plumb_proto::http::cgi::ScriptLog for ScriptStderr {
    fn line(&self, script: &str, line: &[u8]) {
        use std::io::Write as _;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut text = format!("plumb: cgi {script}: ").into_bytes();
        text.extend_from_slice(line);
        text.push(b'\n');
        // A closed stderr loses the line; the script and the server go on.
        let _ = std::io::stderr().lock().write_all(&text);
    }
}
