//! HTTP helpers for the end-to-end tests: a raw client that writes exact bytes and reads
//! responses framed by their Content-Length (1xx answers included), plus a document root
//! with known files.

use std::io::{Read, Write};
use std::time::Duration;

use super::{Stream, connect};

/// One parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection that reads responses one at a time, keeping any bytes past the current one.
pub struct Client {
    pub stream: Stream,
    buf: Vec<u8>,
    /// The last read hit the read timeout.
    pub timed_out: bool,
}

impl Client {
    pub fn new(addr: &str) -> Client {
        Client {
            stream: connect(addr),
            buf: Vec::new(),
            timed_out: false,
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    /// Reads more bytes; false at EOF, a reset or the read timeout (then `timed_out` is set).
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                self.timed_out = true;
                false
            }
            Err(e) => panic!("read response: {e}"),
        }
    }

    /// The next response (1xx included), or None if the server closed (or the read timed
    /// out) before sending one.
    /// `head_request`: the response has no body whatever its Content-Length says.
    pub fn try_response(&mut self, head_request: bool) -> Option<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.buf).expect("well-formed response head") {
                httparse::Status::Complete(n) => {
                    let status = r.code.expect("status");
                    let headers: Vec<(String, String)> = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let len: usize = if head_request || status == 304 || status < 200 {
                        0
                    } else {
                        headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                            .map(|(_, v)| v.parse().expect("numeric Content-Length"))
                            .expect("every response has a Content-Length")
                    };
                    while self.buf.len() < n + len {
                        assert!(self.fill(), "EOF inside a response body");
                    }
                    let body = self.buf[n..n + len].to_vec();
                    self.buf.drain(..n + len);
                    return Some(Response {
                        status,
                        headers,
                        body,
                    });
                }
                httparse::Status::Partial => {
                    if !self.fill() {
                        if self.timed_out {
                            return None;
                        }
                        assert!(self.buf.is_empty(), "EOF inside a response head");
                        return None;
                    }
                }
            }
        }
    }

    pub fn response(&mut self, head_request: bool) -> Response {
        self.try_response(head_request)
            .expect("a response before EOF")
    }

    /// The next final (non-1xx) response.
    pub fn final_response(&mut self) -> Response {
        loop {
            let r = self.response(false);
            if r.status >= 200 {
                return r;
            }
        }
    }

    /// True if the server closes with nothing more to say.
    pub fn at_eof(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }

    pub fn set_read_timeout(&self, d: Duration) {
        match &self.stream {
            Stream::Tcp(t) => t.set_read_timeout(Some(d)).unwrap(),
            Stream::Unix(u) => u.set_read_timeout(Some(d)).unwrap(),
        }
    }
}

/// Starts `plumb serve ROOT` under `model` on a free IPv4 port, with small pools (2 prefork
/// workers, 4 threads) and any `extra` options.
pub fn start_serve(
    model: plumb::models::Model,
    root: &std::path::Path,
    extra: &[&str],
) -> super::Server {
    let mut args = vec!["--workers", "2", "--threads", "4"];
    args.extend_from_slice(extra);
    start_serve_default_pools(model, root, &args)
}

/// Starts `plumb serve ROOT` under `model` on a free IPv4 port, with the model's own pool
/// sizes and any `extra` options.
pub fn start_serve_default_pools(
    model: plumb::models::Model,
    root: &std::path::Path,
    extra: &[&str],
) -> super::Server {
    let root = root.to_str().expect("UTF-8 temp path");
    let mut args = vec![
        "serve",
        root,
        "--listen",
        "127.0.0.1:0",
        "--model",
        model.name(),
    ];
    args.extend_from_slice(extra);
    super::Server::start(&args)
}

/// `GET path` (HTTP/1.1, Host set) plus extra header lines.
pub fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n").into_bytes()
}

/// One request on a fresh connection.
pub fn fetch(addr: &str, raw: &[u8]) -> Response {
    let mut c = Client::new(addr);
    c.send(raw);
    c.final_response()
}
