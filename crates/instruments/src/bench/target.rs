//! What `plumb bench` talks to: parsing the target URL (`http://`, `http+unix:`, `echo://`,
//! `unix:`), building the request bytes once, and a pre-flight exchange that turns an
//! unreachable, refusing or wrong-protocol target into one clear error before the run.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::response::{EchoReader, HttpReader, RPC_ERROR, Reader, RpcReader, Step};
use plumb::net::Addr;
use plumb_proto::framing::{Framing, encode};

/// Where the connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A parsed target, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// TCP host and port, or a UNIX socket path.
    pub addr: Addr,
    pub protocol: ProtocolSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolSpec {
    /// HTTP/1.1: the request path and the Host header value.
    Http { path: String, host: String },
    /// The echo protocol.
    Echo,
    /// JSON-RPC 2.0 in one of proto's framings.
    Rpc,
}

impl TargetSpec {
    /// Parses `http://HOST[:PORT][/PATH]`, `http://[V6]:PORT/`, `http+unix:/SOCK[:/PATH]`,
    /// `echo://HOST:PORT`, `unix:/PATH` (echo), `rpc://HOST:PORT` and `rpc+unix:/PATH`
    /// (JSON-RPC).
    ///
    /// # Errors
    /// A malformed target, with the forms that are accepted.
    pub fn parse(s: &str) -> Result<TargetSpec, String> {
        let bad = |why: &str| format!("invalid target '{s}': {why}");
        if let Some(rest) = s.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if authority.is_empty() {
                return Err(bad("missing host"));
            }
            let addr = Addr::parse(authority, Some(80)).map_err(|e| bad(&e.to_string()))?;
            check_path(path).map_err(&bad)?;
            Ok(TargetSpec {
                addr,
                protocol: ProtocolSpec::Http {
                    path: path.to_string(),
                    host: authority.to_string(),
                },
            })
        } else if let Some(rest) = s.strip_prefix("http+unix:") {
            let (sock, path) = match rest.find(":/") {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, "/"),
            };
            let addr =
                Addr::parse(&format!("unix:{sock}"), None).map_err(|e| bad(&e.to_string()))?;
            check_path(path).map_err(&bad)?;
            Ok(TargetSpec {
                addr,
                protocol: ProtocolSpec::Http {
                    path: path.to_string(),
                    host: "localhost".to_string(),
                },
            })
        } else if let Some(rest) = s.strip_prefix("echo://") {
            let addr =
                Addr::parse(rest.trim_end_matches('/'), None).map_err(|e| bad(&e.to_string()))?;
            Ok(TargetSpec {
                addr,
                protocol: ProtocolSpec::Echo,
            })
        } else if let Some(rest) = s.strip_prefix("rpc://") {
            let addr =
                Addr::parse(rest.trim_end_matches('/'), None).map_err(|e| bad(&e.to_string()))?;
            Ok(TargetSpec {
                addr,
                protocol: ProtocolSpec::Rpc,
            })
        } else if let Some(rest) = s.strip_prefix("rpc+unix:") {
            let addr =
                Addr::parse(&format!("unix:{rest}"), None).map_err(|e| bad(&e.to_string()))?;
            Ok(TargetSpec {
                addr,
                protocol: ProtocolSpec::Rpc,
            })
        } else if s.starts_with("unix:") {
            let addr = Addr::parse(s, None).map_err(|e| bad(&e.to_string()))?;
            Ok(TargetSpec {
                addr,
                protocol: ProtocolSpec::Echo,
            })
        } else {
            Err(bad(
                "expected http://HOST:PORT/PATH, http+unix:/SOCKET[:/PATH], echo://HOST:PORT, unix:/PATH, rpc://HOST:PORT or rpc+unix:/PATH",
            ))
        }
    }
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if path.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("the path must be URL-encoded (no spaces or control characters)")
    }
}

/// The bytes of one HTTP request: `METHOD PATH HTTP/1.1`, Host, the extra headers (a Host or
/// Connection among them replaces the default), `Connection: close` when asked, and with a
/// body its `Content-Length` and the body itself (a POST, PUT or PATCH without one says
/// `Content-Length: 0`, which servers that insist on a length want). Nothing else, so the
/// server parses as little as under wrk.
///
/// # Errors
/// A method that is not an HTTP token (or is HEAD or CONNECT, whose responses bench cannot
/// frame), a header without a colon or with a line break in it, or a Content-Length or
/// Transfer-Encoding header (the length is the body's).
pub fn build_http_request(
    method: &str,
    path: &str,
    host: &str,
    extra: &[String],
    close: bool,
    body: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    // RFC 9110 tchar: what a method may be made of.
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || !method.bytes().all(tchar) {
        return Err(format!(
            "invalid method '{method}': expected a token such as GET or POST"
        ));
    }
    if method.eq_ignore_ascii_case("HEAD") || method.eq_ignore_ascii_case("CONNECT") {
        return Err(format!(
            "-m {method} is not supported: its responses cannot be framed like the others"
        ));
    }
    let mut parsed = Vec::new();
    for h in extra {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("invalid header '{h}': expected 'Name: value'"))?;
        let name = name.trim();
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
            || value.contains(['\r', '\n'])
        {
            return Err(format!("invalid header '{h}'"));
        }
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(format!(
                "-H {name} is not allowed: bench sends the --body with its own Content-Length"
            ));
        }
        parsed.push((name.to_string(), value.trim().to_string()));
    }
    let has = |n: &str| parsed.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    if close && !has("connection") {
        req.push_str("Connection: close\r\n");
    }
    for (k, v) in &parsed {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let wants_length = ["POST", "PUT", "PATCH"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method));
    match body {
        Some(b) => req.push_str(&format!("Content-Length: {}\r\n", b.len())),
        None if wants_length => req.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    Ok(bytes)
}

/// The id every benchmarked JSON-RPC request carries (responses are counted in order; with
/// one id, an answer out of order is still an answer to one of the outstanding calls).
pub const RPC_ID: &str = "1";

/// One framed JSON-RPC request: `{"jsonrpc":"2.0","method":M,"params":P,"id":1}` in
/// `framing`.
///
/// # Errors
/// PARAMS that are not a JSON array or object.
pub fn build_rpc_request(
    framing: Framing,
    method: &str,
    params: Option<&str>,
) -> Result<Vec<u8>, String> {
    let mut body = String::from(r#"{"jsonrpc":"2.0","method":"#);
    body.push_str(&serde_json::to_string(method).map_err(|e| e.to_string())?);
    if let Some(p) = params {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(p).map_err(|e| format!("--params is not JSON ({e})"))?;
        if !raw.get().starts_with(['[', '{']) {
            return Err("--params must be a JSON array or object".into());
        }
        // A raw newline can only be whitespace between tokens: a space is the same JSON.
        body.push_str(r#","params":"#);
        body.push_str(&raw.get().replace(['\r', '\n'], " "));
    }
    body.push_str(&format!(r#","id":{RPC_ID}}}"#));
    let mut out = Vec::new();
    encode(framing, body.as_bytes(), &mut out);
    Ok(out)
}

/// The echo message: `size` bytes of a recognisable pattern.
pub fn echo_message(size: usize) -> Arc<[u8]> {
    (0..size)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
        .collect::<Vec<u8>>()
        .into()
}

/// A resolved, checked target ready for the load generator.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: Endpoint,
    /// One request (HTTP) or one message (echo).
    pub request: Arc<[u8]>,
    pub is_http: bool,
    /// JSON-RPC targets: the framing of requests and answers.
    pub rpc: Option<Framing>,
    /// The target as the user wrote it, for messages.
    pub shown: String,
}

impl Target {
    /// A fresh response reader for one connection.
    pub fn reader(&self) -> Reader {
        if let Some(framing) = self.rpc {
            Reader::Rpc(RpcReader::new(framing, RPC_ID.into()))
        } else if self.is_http {
            Reader::Http(HttpReader::new())
        } else {
            Reader::Echo(EchoReader::new(Arc::clone(&self.request)))
        }
    }
}

/// Resolves the address, connects (trying every resolved address in order), sends one
/// request and checks the answer. A server that closes without a byte or does not answer
/// within `timeout` passes (the run will count it); a refused connection or an answer in the
/// wrong protocol does not.
///
/// # Errors
/// One line saying what is wrong with the target.
pub fn preflight(
    spec: &TargetSpec,
    request: Arc<[u8]>,
    rpc: Option<Framing>,
    shown: &str,
    timeout: Duration,
) -> anyhow::Result<Target> {
    let is_http = matches!(spec.protocol, ProtocolSpec::Http { .. });
    let candidates: Vec<Endpoint> = match &spec.addr {
        Addr::Unix(p) => vec![Endpoint::Unix(p.clone())],
        tcp => tcp
            .resolve()
            .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?
            .into_iter()
            .map(Endpoint::Tcp)
            .collect(),
    };
    let mut last_err = None;
    for endpoint in candidates {
        match connect_blocking(&endpoint, timeout) {
            Ok(stream) => {
                let target = Target {
                    endpoint,
                    request: Arc::clone(&request),
                    is_http,
                    rpc,
                    shown: shown.to_string(),
                };
                check_answer(stream, &target, timeout)?;
                return Ok(target);
            }
            Err(e) => last_err = Some(e),
        }
    }
    let e = last_err.unwrap_or_else(|| io::ErrorKind::NotFound.into());
    Err(anyhow::anyhow!(
        "cannot connect to {shown}: {}",
        describe(&e)
    ))
}

/// A short, lower-case description of an OS error ("connection refused").
pub fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        io::ErrorKind::NotFound => "no such socket".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            // "Connection reset by peer (os error 104)" -> "connection reset by peer"
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

enum Blocking {
    Tcp(TcpStream),
    Unix(UnixStream),
}

fn connect_blocking(endpoint: &Endpoint, timeout: Duration) -> io::Result<Blocking> {
    let timeout = timeout.max(Duration::from_millis(1));
    match endpoint {
        Endpoint::Tcp(sa) => {
            let s = TcpStream::connect_timeout(sa, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Ok(Blocking::Tcp(s))
        }
        Endpoint::Unix(p) => {
            let s = UnixStream::connect(p)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Ok(Blocking::Unix(s))
        }
    }
}

fn check_answer(stream: Blocking, target: &Target, timeout: Duration) -> anyhow::Result<()> {
    let (mut r, mut w): (Box<dyn Read>, Box<dyn Write>) = match stream {
        Blocking::Tcp(s) => (Box::new(s.try_clone()?), Box::new(s)),
        Blocking::Unix(s) => (Box::new(s.try_clone()?), Box::new(s)),
    };
    let shown = &target.shown;
    // An echo target gets a probe that ends like an HTTP request head: an HTTP server
    // answers it at once (a 400), where the run's plain message would leave it waiting for
    // the end of a head and the run would count nothing but silence.
    let probe: Option<Arc<[u8]>> =
        (!target.is_http && target.rpc.is_none()).then(|| ECHO_PROBE.into());
    let first: &[u8] = probe.as_deref().unwrap_or(&target.request);
    if let Err(e) = w.write_all(first) {
        // A server that closes at once is the run's to count, not a setup error.
        log::debug!("pre-flight write to {shown}: {e}");
        return Ok(());
    }
    let mut reader = match &probe {
        Some(p) => Reader::Echo(EchoReader::new(Arc::clone(p))),
        None => target.reader(),
    };
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + timeout;
    let mut got_any = false;
    while Instant::now() < deadline {
        let n = match r.read(&mut buf) {
            Ok(0) => {
                return match reader.eof() {
                    Some(_) => Ok(()),
                    None if got_any && target.rpc.is_some() => Err(anyhow::anyhow!(
                        "{shown} closed the connection before answering the call{}",
                        framing_hint(target, &answer)
                    )),
                    None if got_any && !target.is_http => Err(anyhow::anyhow!(
                        "{shown} is not an echo server (it closed before echoing the message)"
                    )),
                    None => Ok(()),
                };
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(()),
        };
        got_any = true;
        if answer.len() < 200 {
            answer.extend_from_slice(&buf[..n.min(200)]);
        }
        let mut off = 0;
        while off < n {
            match reader.feed(&buf[off..n]) {
                Ok((_, Step::Done(done))) if done.status == RPC_ERROR => {
                    // Every call would fail the same way: say why before the run.
                    let from = answer.iter().position(|&b| b == b'{').unwrap_or(0);
                    let text: String = String::from_utf8_lossy(&answer[from..])
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(160)
                        .collect();
                    anyhow::bail!("{shown} answers the call with an error: {text}")
                }
                Ok((_, Step::Done(_))) => return Ok(()),
                Err(e) if target.rpc.is_some() => anyhow::bail!(
                    "{shown} did not answer with JSON-RPC ({e}): {}{}",
                    describe_answer(&answer),
                    framing_hint(target, &answer)
                ),
                Ok((used, Step::More)) => off += used,
                Err(e) if target.is_http => {
                    anyhow::bail!("{shown} did not answer with HTTP/1.x: {e}")
                }
                Err(_) => anyhow::bail!(
                    "{shown} is not an echo server (it answered {})",
                    describe_answer(&answer)
                ),
            }
        }
    }
    Ok(())
}

/// ", or not in FRAMING framing" when the answer looks like another framing or protocol.
fn framing_hint(target: &Target, answer: &[u8]) -> String {
    match target.rpc {
        Some(f) if !answer.is_empty() => format!(" (is --framing {f} right?)"),
        _ => String::new(),
    }
}

/// The pre-flight message to an echo target: a line no HTTP server accepts as a request, and
/// the blank line that ends a request head, so one answers at once.
const ECHO_PROBE: &[u8] = b"plumb-bench-echo-probe\r\n\r\n";

/// What a server that is not an echo server said, for the error: "like an HTTP server
/// ('HTTP/1.1 400 Bad Request')", or its first line, printable characters only.
fn describe_answer(answer: &[u8]) -> String {
    let line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let line: String = String::from_utf8_lossy(line)
        .chars()
        .filter(|c| !c.is_control())
        .take(60)
        .collect();
    if answer.starts_with(b"HTTP/") {
        format!("like an HTTP server: '{line}'")
    } else if line.is_empty() {
        "with different bytes".to_string()
    } else {
        format!("with different bytes: '{line}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_target_form() {
        let http = |host: &str, port: u16, path: &str, hosthdr: &str| TargetSpec {
            addr: Addr::Tcp {
                host: host.into(),
                port,
            },
            protocol: ProtocolSpec::Http {
                path: path.into(),
                host: hosthdr.into(),
            },
        };
        let cases: &[(&str, TargetSpec)] = &[
            (
                "http://127.0.0.1:8080/index.html",
                http("127.0.0.1", 8080, "/index.html", "127.0.0.1:8080"),
            ),
            ("http://localhost", http("localhost", 80, "/", "localhost")),
            ("http://[::1]:9000/", http("::1", 9000, "/", "[::1]:9000")),
            (
                "http+unix:/tmp/s.sock:/a/b",
                TargetSpec {
                    addr: Addr::Unix("/tmp/s.sock".into()),
                    protocol: ProtocolSpec::Http {
                        path: "/a/b".into(),
                        host: "localhost".into(),
                    },
                },
            ),
            (
                "http+unix:/tmp/s.sock",
                TargetSpec {
                    addr: Addr::Unix("/tmp/s.sock".into()),
                    protocol: ProtocolSpec::Http {
                        path: "/".into(),
                        host: "localhost".into(),
                    },
                },
            ),
            (
                "echo://127.0.0.1:7007",
                TargetSpec {
                    addr: Addr::Tcp {
                        host: "127.0.0.1".into(),
                        port: 7007,
                    },
                    protocol: ProtocolSpec::Echo,
                },
            ),
            (
                "unix:/tmp/e.sock",
                TargetSpec {
                    addr: Addr::Unix("/tmp/e.sock".into()),
                    protocol: ProtocolSpec::Echo,
                },
            ),
        ];
        for (s, want) in cases {
            assert_eq!(&TargetSpec::parse(s).unwrap(), want, "{s}");
        }
        let rpc = TargetSpec::parse("rpc://127.0.0.1:7070").unwrap();
        assert_eq!(rpc.protocol, ProtocolSpec::Rpc);
        assert_eq!(
            rpc.addr,
            Addr::Tcp {
                host: "127.0.0.1".into(),
                port: 7070
            }
        );
        let rpc = TargetSpec::parse("rpc+unix:/tmp/r.sock").unwrap();
        assert_eq!(rpc.protocol, ProtocolSpec::Rpc);
        assert_eq!(rpc.addr, Addr::Unix("/tmp/r.sock".into()));
    }

    #[test]
    fn rpc_requests_are_framed_with_params_verbatim() {
        let r = build_rpc_request(
            Framing::Lsp,
            "rpc.echo",
            Some("{\"n\":\n12345678901234567890123}"),
        )
        .unwrap();
        let body = r#"{"jsonrpc":"2.0","method":"rpc.echo","params":{"n": 12345678901234567890123},"id":1}"#;
        assert_eq!(
            String::from_utf8(r).unwrap(),
            format!("Content-Length: {}\r\n\r\n{body}", body.len())
        );
        let r = build_rpc_request(Framing::Ndjson, "t", None).unwrap();
        assert_eq!(r, b"{\"jsonrpc\":\"2.0\",\"method\":\"t\",\"id\":1}\n");
        for bad in ["3", "{", "\"s\""] {
            assert!(
                build_rpc_request(Framing::Ndjson, "t", Some(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_malformed_targets() {
        for s in [
            "ftp://x",
            "127.0.0.1:80",
            "http://",
            "http://h:99999/",
            "echo://nohost",
            "http://h:1/a b",
            "unix:",
            "rpc://nohost",
            "rpc+unix:",
        ] {
            assert!(TargetSpec::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn request_has_defaults_overrides_and_close() {
        let r =
            build_http_request("GET", "/x", "h:1", &["Host: other".into()], true, None).unwrap();
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("GET /x HTTP/1.1\r\n"));
        assert!(r.contains("Host: other\r\n") && !r.contains("Host: h:1"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!r.contains("Content-Length"));
        let bad = |m: &str, h: &[&str]| {
            let h: Vec<String> = h.iter().map(|s| s.to_string()).collect();
            build_http_request(m, "/", "h", &h, false, Some(b"x")).is_err()
        };
        assert!(bad("GET", &["nocolon"]));
        assert!(bad("GET", &["A: b\r\nC: d"]));
        assert!(bad("GET", &["content-length: 3"]));
        assert!(bad("GET", &["Transfer-Encoding: chunked"]));
        assert!(bad("", &[]));
        assert!(bad("PO ST", &[]));
        assert!(bad("head", &[]));
        assert!(bad("CONNECT", &[]));
        assert!(!bad("POST", &["Content-Type: application/json"]));
    }

    #[test]
    fn request_with_a_body_carries_its_length_and_bytes() {
        let body = b"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"id\":1}";
        let h = vec!["Content-Type: application/json".to_string()];
        let r = build_http_request("POST", "/rpc", "h:1", &h, false, Some(body)).unwrap();
        let want = format!(
            "POST /rpc HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            std::str::from_utf8(body).unwrap()
        );
        assert_eq!(String::from_utf8(r).unwrap(), want);
        // A bodiless POST says so; a DELETE without a body says nothing.
        let r = build_http_request("POST", "/", "h", &[], false, None).unwrap();
        assert!(
            String::from_utf8(r)
                .unwrap()
                .ends_with("Content-Length: 0\r\n\r\n")
        );
        let r = build_http_request("DELETE", "/", "h", &[], false, None).unwrap();
        assert_eq!(r, b"DELETE / HTTP/1.1\r\nHost: h\r\n\r\n");
    }
}
