//! CGI/1.1 (RFC 3875) inside the HTTP session: which requests run a script (`--cgi` patterns
//! resolved through the [`Docroot`]), the meta-variables a script gets, the parser of the
//! header section it writes, and the state of one exchange (the child on pipes, the request
//! body streamed to its stdin, its stdout streamed back as the response).
//!
//! The session hands an exchange everything that concerns a child peer and, while one runs,
//! the client's input too (the request body). Buffers are bounded both ways: the body waits
//! in the kernel once [`STDIN_WINDOW`] bytes are queued for the script (`wants_read` is the
//! backpressure), and the script's output waits in its pipe while the client's output queue
//! is over budget. Only a chunked request body is gathered whole (up to [`CHUNKED_MAX`]), so
//! that `CONTENT_LENGTH` can be set as RFC 3875 requires; a larger one is answered 411.
//!
//! Response framing: a `Content-Length` from the script is passed on; without one the body
//! goes out chunked to an HTTP/1.1 client (keep-alive kept) and until the close to an HTTP/1.0
//! one. A script that exits (or closes its stdout) before a valid header section is a 502; one
//! still running at `--cgi-timeout` is a 504 when nothing was sent yet, else the connection is
//! cut. Either way its process group is killed; the driver reaps it.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::chunked::ChunkedBody;
use super::docroot::OpenError;
use super::encode::{Reply, push_date, reason};
use super::parse::{Framing, Head, parse_head};
use super::path::{SafePath, resolve_target};
use super::session::HttpSession;
use crate::session::{Action, ChildId, Exit, OutBuf, Peer, SpawnRequest, Stdio};

/// Request-body bytes queued for a script's stdin before the client is read no further.
pub const STDIN_WINDOW: usize = 64 * 1024;
/// Largest chunked request body gathered (to set `CONTENT_LENGTH`); larger is 411.
pub const CHUNKED_MAX: u64 = 1024 * 1024;
/// Largest header section a script may write; larger is 502.
pub const MAX_SCRIPT_HEAD: usize = 16 * 1024;
/// Most header lines in a script's header section.
const MAX_SCRIPT_HEADERS: usize = 64;
/// Local redirects followed for one request before answering 500 (a loop).
pub const MAX_LOCAL_REDIRECTS: u8 = 8;
/// Longest stderr line passed to the log in one piece.
const MAX_STDERR_LINE: usize = 4096;
/// The methods a script may be asked to handle.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
const SIGKILL: i32 = 9;
/// The child slot of a session's script: one exchange at a time, so one slot.
pub const SLOT: ChildId = ChildId(0);
/// After a timeout's kill, how long the script's pipes may take to reach EOF.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Where a script's standard error goes: the server's log (the service implements it).
pub trait ScriptLog: Send + Sync {
    /// One line (without its newline) written by the script at URL path `script`.
    fn line(&self, script: &str, line: &[u8]);
}

/// Which request paths run as CGI scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Every path under these (decoded) segments: `/cgi-bin/` is `["cgi-bin"]`.
    Prefix(Vec<Vec<u8>>),
    /// Every file whose name ends in `.EXT` (the extension without its dot).
    Extension(String),
}

impl Pattern {
    /// `/cgi-bin/` (a path prefix, matched segment by segment) or `*.cgi` (an extension).
    ///
    /// # Errors
    /// Anything else, with the reason.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        if let Some(ext) = s.strip_prefix("*.") {
            if ext.is_empty()
                || !ext
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!("{s:?}: an extension pattern is *.EXT, as *.cgi"));
            }
            return Ok(Pattern::Extension(ext.to_string()));
        }
        if !s.starts_with('/') || s.contains(['?', '#']) {
            return Err(format!(
                "{s:?}: a pattern is a path prefix such as /cgi-bin/ or an extension such as *.cgi"
            ));
        }
        let path = resolve_target(s, true).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Pattern::Prefix(
            path.segments().map(<[u8]>::to_vec).collect(),
        ))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Extension(e) => write!(f, "*.{e}"),
            Pattern::Prefix(segs) => {
                f.write_str("/")?;
                for s in segs {
                    write!(f, "{}/", String::from_utf8_lossy(s))?;
                }
                Ok(())
            }
        }
    }
}

/// The CGI settings of a server.
#[derive(Clone)]
pub struct CgiConfig {
    /// No patterns: no CGI at all (the static server costs one `is_empty` per request).
    pub patterns: Vec<Pattern>,
    /// Wall time a script may run per request.
    pub timeout: Duration,
    /// The environment every script starts from (nothing else of the server's is inherited:
    /// a `PATH`, usually).
    pub env: Vec<(String, String)>,
    /// `SERVER_SOFTWARE`.
    pub software: String,
    /// The server's own address (`host:port`), for `SERVER_NAME` and `SERVER_PORT` when the
    /// request's `Host` does not give them; set once the listener is bound.
    pub local: Arc<OnceLock<String>>,
    /// Where script stderr lines go (dropped when `None`).
    pub log: Option<Arc<dyn ScriptLog>>,
}

impl Default for CgiConfig {
    fn default() -> Self {
        CgiConfig {
            patterns: Vec::new(),
            timeout: Duration::from_secs(60),
            env: Vec::new(),
            software: "plumb".to_string(),
            local: Arc::new(OnceLock::new()),
            log: None,
        }
    }
}

impl fmt::Debug for CgiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CgiConfig")
            .field("patterns", &self.patterns)
            .field("timeout", &self.timeout)
            .field("software", &self.software)
            .finish_non_exhaustive()
    }
}

/// A script as the docroot resolves it (see [`super::docroot::Docroot::script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The program to run (an absolute path).
    pub program: String,
    /// Its directory: the script runs there.
    pub dir: String,
    /// The document root on disk (`DOCUMENT_ROOT`, and `PATH_TRANSLATED` is under it).
    pub root: String,
}

/// A request that runs a script: the script and how the request path splits around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub script: Script,
    /// The script's URL path (decoded), as `SCRIPT_NAME`.
    pub script_name: String,
    /// The decoded rest of the path after the script (empty or starting with `/`).
    pub path_info: String,
    pub query: String,
}

/// How a request path relates to CGI.
#[derive(Debug)]
pub enum Dispatch {
    /// No pattern matches: a static file.
    Static,
    /// A script to run.
    Run(Target),
    /// A pattern matches but nothing can run: this status (403 for a directory or a file that
    /// is not executable, 404, 500).
    Refuse(u16),
}

/// A script's response header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptHead {
    /// From `Status:` (code and reason), if given.
    pub status: Option<(u16, String)>,
    pub location: Option<String>,
    pub content_type: bool,
    pub content_length: Option<u64>,
    /// Headers passed on to the client, as written (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Why a script's header section is not a valid CGI response (each is a 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptHeadError {
    Syntax,
    TooLarge,
    BadStatus,
    BadLength,
    /// None of `Content-Type`, `Location` and `Status`.
    NoCgiField,
}

/// Parses the header section at the start of a script's output (lines ending in LF or CRLF,
/// ended by an empty line). `Ok(None)`: not complete yet.
///
/// # Errors
/// A [`ScriptHeadError`] when the output can no longer become a valid CGI response.
pub fn parse_script_head(buf: &[u8]) -> Result<Option<(usize, ScriptHead)>, ScriptHeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_SCRIPT_HEADERS];
    let (n, headers) = match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) if buf.len() > MAX_SCRIPT_HEAD => {
            return Err(ScriptHeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ScriptHeadError::TooLarge),
        Err(_) => return Err(ScriptHeadError::Syntax),
    };
    if n > MAX_SCRIPT_HEAD {
        return Err(ScriptHeadError::TooLarge);
    }
    let mut head = ScriptHead {
        status: None,
        location: None,
        content_type: false,
        content_length: None,
        headers: Vec::new(),
    };
    for h in headers {
        let value = super::parse::trim(h.value);
        let is = |n: &str| h.name.eq_ignore_ascii_case(n);
        if is("status") {
            head.status = Some(parse_status(value)?);
        } else if is("location") {
            let loc = std::str::from_utf8(value).map_err(|_| ScriptHeadError::Syntax)?;
            if loc.is_empty() || head.location.is_some() {
                return Err(ScriptHeadError::Syntax);
            }
            head.location = Some(loc.to_string());
        } else if is("content-length") {
            let ok = !value.is_empty() && value.len() <= 18 && value.iter().all(u8::is_ascii_digit);
            let len = ok
                .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or(ScriptHeadError::BadLength)?;
            if head.content_length.is_some_and(|l| l != len) {
                return Err(ScriptHeadError::BadLength);
            }
            head.content_length = Some(len);
        } else if is("connection")
            || is("keep-alive")
            || is("transfer-encoding")
            || is("date")
            || is("server")
        {
            // Hop-by-hop, or the server's own: the server frames and labels the response.
        } else {
            if is("content-type") {
                head.content_type = true;
            }
            head.headers.push((h.name.to_string(), value.to_vec()));
        }
    }
    if head.status.is_none() && head.location.is_none() && !head.content_type {
        return Err(ScriptHeadError::NoCgiField);
    }
    Ok(Some((n, head)))
}

/// `Status: 404 Not Found` → (404, "Not Found").
fn parse_status(v: &[u8]) -> Result<(u16, String), ScriptHeadError> {
    let digits = v.get(..3).ok_or(ScriptHeadError::BadStatus)?;
    if !digits.iter().all(u8::is_ascii_digit) || v.get(3).is_some_and(|&b| b != b' ') {
        return Err(ScriptHeadError::BadStatus);
    }
    let code = digits
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    if !(200..=599).contains(&code) {
        return Err(ScriptHeadError::BadStatus);
    }
    let phrase: String = v
        .get(4..)
        .unwrap_or(b"")
        .iter()
        .filter(|b| b.is_ascii_graphic() || **b == b' ')
        .map(|&b| b as char)
        .collect();
    Ok((code, phrase.trim().to_string()))
}

/// The reason phrase for a status a script or this module produces.
fn phrase(status: u16) -> &'static str {
    match status {
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        401 => "Unauthorized",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        s => reason(s),
    }
}

/// Whether a response with this status to this method has a body.
fn has_body(status: u16, is_head: bool) -> bool {
    !is_head && status != 204 && status != 304 && status >= 200
}

/// Splits `host[:port]` (an IPv6 literal in brackets).
fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((ip, tail)) = rest.split_once(']') {
            return (ip, tail.strip_prefix(':'));
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (host, None),
    }
}

/// The meta-variables of RFC 3875 section 4.1 for a request (its raw head bytes, already
/// parsed once as `head`), then `HTTP_*` for its headers. Never `HTTP_PROXY` (httpoxy: a
/// client's `Proxy:` header would become the script's outgoing proxy), never the
/// credentials of `Authorization` or `Proxy-Authorization`, never a header whose name could
/// collide with another once `-` becomes `_` (names with `_` or other bytes are dropped), and
/// not the framing headers: the script reads `CONTENT_LENGTH` bytes, already de-chunked.
pub fn meta_variables(
    raw_head: &[u8],
    head: &Head<'_>,
    target: &Target,
    peer: &str,
    content_length: Option<u64>,
    cfg: &CgiConfig,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = cfg.env.clone();
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("SERVER_SOFTWARE", cfg.software.clone());
    set(
        "SERVER_PROTOCOL",
        format!("HTTP/1.{}", if head.minor == 0 { 0 } else { 1 }),
    );
    set("REQUEST_METHOD", head.method.to_string());
    set("REQUEST_URI", head.target.to_string());
    set("SCRIPT_NAME", target.script_name.clone());
    set("SCRIPT_FILENAME", target.script.program.clone());
    set("DOCUMENT_ROOT", target.script.root.clone());
    set("QUERY_STRING", target.query.clone());
    set("PATH_INFO", target.path_info.clone());
    if !target.path_info.is_empty() {
        set(
            "PATH_TRANSLATED",
            format!(
                "{}{}",
                target.script.root.trim_end_matches('/'),
                target.path_info
            ),
        );
    }
    // Some interpreters (php-cgi) refuse to run without it.
    set("REDIRECT_STATUS", "200".into());
    match peer.parse::<std::net::SocketAddr>() {
        Ok(a) => {
            set("REMOTE_ADDR", a.ip().to_string());
            set("REMOTE_PORT", a.port().to_string());
        }
        // A UNIX socket has no address: the peer as the log gives it.
        Err(_) => set("REMOTE_ADDR", peer.to_string()),
    }
    let mut slots = [httparse::EMPTY_HEADER; super::parse::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let headers: &[httparse::Header<'_>] = match req.parse(raw_head) {
        Ok(_) => req.headers,
        Err(_) => &[],
    };
    let local = cfg.local.get().map(String::as_str).unwrap_or("");
    let (local_name, local_port) = split_host(local);
    let host = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(super::parse::trim(h.value)).ok())
        .filter(|h| !h.is_empty());
    let (name, port) = match host {
        Some(h) => split_host(h),
        None => (local_name, None),
    };
    let name = if name.is_empty() { "localhost" } else { name };
    let port = port
        .or(Some(local_port.unwrap_or("80")))
        .unwrap_or("80")
        .to_string();
    set("SERVER_NAME", name.to_string());
    set("SERVER_PORT", port);
    if let Some(len) = content_length {
        set("CONTENT_LENGTH", len.to_string());
    }
    let mut http: Vec<(String, String)> = Vec::new();
    for h in headers {
        let name = h.name;
        let value = String::from_utf8_lossy(super::parse::trim(h.value));
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("content-type") {
            set("CONTENT_TYPE", value.into_owned());
            continue;
        }
        if is("proxy")
            || is("authorization")
            || is("proxy-authorization")
            || is("content-length")
            || is("transfer-encoding")
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            continue;
        }
        let key: String = std::iter::once("HTTP_".to_string())
            .chain(name.chars().map(|c| {
                if c == '-' {
                    "_".to_string()
                } else {
                    c.to_ascii_uppercase().to_string()
                }
            }))
            .collect();
        // Repeated fields are one variable, joined as RFC 3875 4.1.18 says.
        match http.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(&value);
            }
            None => http.push((key, value.into_owned())),
        }
    }
    env.extend(http);
    env
}

/// The request body as it reaches the script.
#[derive(Debug)]
enum BodyIn {
    /// All of it has arrived (or there was none).
    Done,
    Length(u64),
    Chunked(ChunkedBody),
    /// The client stopped sending before its end: the connection cannot carry another request.
    Cut,
}

/// How far the child got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    /// Not asked for yet (a chunked body is gathered first).
    NotYet,
    /// `Action::Spawn` returned, `spawned` not yet reported.
    Asked,
    Running,
    /// `spawned(false)`: never ran.
    Failed,
}

/// What the script's stdout is at.
#[derive(Debug)]
enum Stdout {
    /// The header section, still arriving.
    Head(Vec<u8>),
    /// The body, framed for the client.
    Body(Framing2),
    /// Read and dropped (a HEAD, a 204, after a 502, a local redirect).
    Discard,
}

/// How the response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing2 {
    /// `Content-Length` from the script: this many bytes left.
    Length(u64),
    Chunked,
    /// Until the close (HTTP/1.0 without a length).
    Close,
}

/// One CGI request in flight.
#[derive(Debug)]
pub(super) struct Exchange {
    /// The request head as it came (log line, local redirects).
    raw_head: Vec<u8>,
    req: SpawnRequest,
    script_name: String,
    child: Child,
    body: BodyIn,
    /// Body bytes waiting to be written to the script.
    to_stdin: OutBuf,
    stdin_open: bool,
    stdout: Stdout,
    stdout_eof: bool,
    stderr_line: Vec<u8>,
    stderr_eof: bool,
    exited: bool,
    /// A response head was queued (a timeout then cuts rather than answers 504).
    answered: bool,
    status: u16,
    /// Response body bytes queued.
    body_bytes: u64,
    /// The response's framing broke (a script shorter than its `Content-Length`).
    broken: bool,
    keep_alive: bool,
    is_head: bool,
    minor: u8,
    deadline: Instant,
    kill: Option<i32>,
    /// Close at once (a timeout after the answer began).
    abort: bool,
    timed_out: bool,
    client_eof: bool,
    draining: bool,
    /// A local redirect to re-dispatch once the script is gone.
    redirect: Option<String>,
    redirects: u8,
}

/// What the exchange wants next (decided without holding a borrow).
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    Close,
    Kill(i32),
    Spawn,
    Output,
    Stdin,
    ShutdownStdin,
    Wait,
}

impl HttpSession {
    /// How the request at `path` relates to CGI (`Dispatch::Static` when no pattern
    /// matches). Scripts follow the static rules: the path was normalised (no traversal),
    /// hidden names were refused by [`resolve_target`], and the docroot applies the symlink
    /// rule and accepts only executable regular files.
    pub(super) fn cgi_dispatch(&self, path: &SafePath) -> Dispatch {
        let segments: Vec<&[u8]> = path.segments().collect();
        let mut candidates: Vec<usize> = Vec::new();
        let mut under_prefix = false;
        for p in &self.cfg.cgi.patterns {
            match p {
                Pattern::Prefix(pre) => {
                    if segments.len() >= pre.len()
                        && segments.iter().zip(pre).all(|(a, b)| *a == b.as_slice())
                    {
                        under_prefix = true;
                        candidates.extend(pre.len() + 1..=segments.len());
                    }
                }
                Pattern::Extension(ext) => {
                    for (i, s) in segments.iter().enumerate() {
                        let suffix = s.len() > ext.len() + 1
                            && s[s.len() - ext.len() - 1] == b'.'
                            && s[s.len() - ext.len()..].eq_ignore_ascii_case(ext.as_bytes());
                        if suffix {
                            candidates.push(i + 1);
                        }
                    }
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        for n in candidates {
            let rel: PathBuf = segments[..n]
                .iter()
                .map(|s| Path::new(OsStr::from_bytes(s)))
                .collect();
            let script = match self.root.script(&rel) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(OpenError::NotFound) => return Dispatch::Refuse(404),
                Err(OpenError::Forbidden) => return Dispatch::Refuse(403),
                Err(OpenError::Other(_)) => return Dispatch::Refuse(500),
            };
            let lossy = |segs: &[&[u8]]| -> String {
                segs.iter()
                    .map(|s| format!("/{}", String::from_utf8_lossy(s)))
                    .collect()
            };
            let mut path_info = lossy(&segments[n..]);
            if path.trailing_slash && n < segments.len() {
                path_info.push('/');
            }
            return Dispatch::Run(Target {
                script,
                script_name: lossy(&segments[..n]),
                path_info,
                query: path.query.clone().unwrap_or_default(),
            });
        }
        if under_prefix {
            // A directory under a script prefix: its scripts are not for listing.
            return Dispatch::Refuse(403);
        }
        Dispatch::Static
    }

    /// The route hook: a request for a CGI path that did not start a script (a refused one,
    /// or a method scripts do not get) is answered here. True when answered.
    pub(super) fn cgi_route(&mut self, r: &Reply<'_>, head: &Head<'_>) -> bool {
        if self.cfg.cgi.patterns.is_empty() {
            return false;
        }
        let Ok(path) = resolve_target(head.target, self.cfg.hidden) else {
            return false;
        };
        let status = match self.cgi_dispatch(&path) {
            Dispatch::Static => return false,
            Dispatch::Refuse(s) => s,
            // Reaches the route only when the method is not one for scripts, or as the
            // target of a local redirect that could not start.
            Dispatch::Run(_) if !METHODS.contains(&head.method) => {
                if super::route::is_known_method(head.method) {
                    let allow = format!("Allow: {}\r\n", METHODS.join(", "));
                    self.error(r, 405, &allow);
                } else {
                    self.error(r, 501, "");
                }
                return true;
            }
            Dispatch::Run(_) => 500,
        };
        self.error(r, status, "");
        true
    }

    /// The head hook: starts a script for a complete request head (`raw` its bytes) when its
    /// path is a CGI script and its method one scripts get. True when an exchange started
    /// (or the request was answered); false leaves it to the static path.
    pub(super) fn cgi_start(&mut self, head: &Head<'_>, raw: &[u8], redirects: u8) -> bool {
        if self.cfg.cgi.patterns.is_empty() || !METHODS.contains(&head.method) {
            return false;
        }
        if head.expect_unknown {
            return false;
        }
        let path = match resolve_target(head.target, self.cfg.hidden) {
            Ok(p) => p,
            // The static path answers these (404, 400).
            Err(_) => return false,
        };
        let Dispatch::Run(target) = self.cgi_dispatch(&path) else {
            return false;
        };
        let (body, content_length) = match head.framing {
            Framing::None => (BodyIn::Done, None),
            Framing::Length(n) => (BodyIn::Length(n), Some(n)),
            Framing::Chunked => (BodyIn::Chunked(ChunkedBody::default()), None),
        };
        let env = meta_variables(
            raw,
            head,
            &target,
            &self.peer_addr,
            content_length,
            &self.cfg.cgi,
        );
        let req = SpawnRequest {
            program: target.script.program.clone(),
            args: Vec::new(),
            env,
            clear_env: true,
            cwd: Some(target.script.dir.clone()),
        };
        if head.expect_continue && head.minor >= 1 && !matches!(body, BodyIn::Done) {
            self.out.push_bytes(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let keep_alive = self.keep_alive(head);
        self.cgi = Some(Box::new(Exchange {
            raw_head: raw.to_vec(),
            req,
            script_name: target.script_name,
            // Asked for by `next_action`, at once or (chunked) once the body is in.
            child: Child::NotYet,
            body,
            to_stdin: OutBuf::default(),
            stdin_open: true,
            stdout: Stdout::Head(Vec::new()),
            stdout_eof: false,
            stderr_line: Vec::new(),
            stderr_eof: false,
            exited: false,
            answered: false,
            status: 0,
            body_bytes: 0,
            broken: false,
            keep_alive,
            is_head: head.method == "HEAD",
            minor: head.minor,
            deadline: self.now + self.cfg.cgi.timeout,
            kill: None,
            abort: false,
            timed_out: false,
            client_eof: false,
            draining: false,
            redirect: None,
            redirects,
        }));
        self.cgi_stop_timers();
        true
    }

    /// Whether the exchange may start its child now.
    fn ready_to_spawn(ex: &Exchange) -> bool {
        ex.child == Child::NotYet && !matches!(ex.body, BodyIn::Chunked(_))
    }

    /// What to do next while an exchange runs (`None`: no exchange).
    pub(super) fn cgi_step(&mut self) -> Option<Step> {
        let out_empty = self.out.is_empty();
        let ex = self.cgi.as_mut()?;
        if ex.abort {
            return Some(Step::Close);
        }
        if let Some(sig) = ex.kill.take()
            && ex.child == Child::Running
            && !ex.exited
        {
            return Some(Step::Kill(sig));
        }
        if Self::ready_to_spawn(ex) {
            ex.child = Child::Asked;
            return Some(Step::Spawn);
        }
        if !out_empty {
            return Some(Step::Output);
        }
        if ex.child == Child::Running && ex.stdin_open {
            if !ex.to_stdin.is_empty() {
                return Some(Step::Stdin);
            }
            if !matches!(ex.body, BodyIn::Length(_)) {
                ex.stdin_open = false;
                return Some(Step::ShutdownStdin);
            }
        }
        Some(Step::Wait)
    }

    /// The action for a step of [`HttpSession::cgi_step`].
    pub(super) fn cgi_action(&mut self, step: Step) -> Action<'_> {
        match step {
            Step::Close => Action::Close,
            Step::Kill(sig) => Action::Kill(SLOT, sig),
            Step::ShutdownStdin => Action::Shutdown(Peer::Child(SLOT, Stdio::Stdin)),
            Step::Wait => Action::Wait,
            Step::Output => self.out.next_action().unwrap_or(Action::Wait),
            Step::Spawn => match &self.cgi {
                Some(ex) => Action::Spawn(SLOT, &ex.req),
                None => Action::Wait,
            },
            Step::Stdin => match &self.cgi {
                Some(ex) => Action::Write(Peer::Child(SLOT, Stdio::Stdin), ex.to_stdin.pending()),
                None => Action::Wait,
            },
        }
    }

    /// `wants_read` for the child's peers, and for the client while an exchange runs.
    pub(super) fn cgi_wants_read(&self, peer: Peer) -> bool {
        let Some(ex) = &self.cgi else {
            // An exchange ends only once its pipes are at EOF: nothing more to read.
            return false;
        };
        match peer {
            Peer::Client => match ex.body {
                BodyIn::Length(_) => !ex.stdin_open || ex.to_stdin.len() < STDIN_WINDOW,
                BodyIn::Chunked(_) => true,
                BodyIn::Done | BodyIn::Cut => false,
            },
            Peer::Child(SLOT, Stdio::Stdout) => {
                !ex.stdout_eof
                    && (matches!(ex.stdout, Stdout::Head(_) | Stdout::Discard)
                        || !self.out.over_budget())
            }
            Peer::Child(SLOT, Stdio::Stderr) => !ex.stderr_eof,
            _ => false,
        }
    }

    /// Input from a child's pipe, or the client's body while an exchange runs.
    pub(super) fn cgi_feed(&mut self, peer: Peer, input: &[u8]) -> usize {
        if self.cgi.is_none() {
            return input.len();
        }
        let used = match peer {
            Peer::Client => self.cgi_body(input),
            Peer::Child(SLOT, Stdio::Stdout) => self.cgi_stdout(input),
            Peer::Child(SLOT, Stdio::Stderr) => {
                self.cgi_stderr(input);
                input.len()
            }
            _ => input.len(),
        };
        self.cgi_maybe_finish();
        used
    }

    /// Request-body bytes: queued for the script's stdin (dropped once it stopped reading).
    fn cgi_body(&mut self, input: &[u8]) -> usize {
        let Some(ex) = self.cgi.as_mut() else {
            return 0;
        };
        match &mut ex.body {
            BodyIn::Length(left) => {
                let room = if ex.stdin_open {
                    STDIN_WINDOW.saturating_sub(ex.to_stdin.len())
                } else {
                    usize::MAX
                };
                let take = (*left).min(input.len() as u64).min(room as u64) as usize;
                *left -= take as u64;
                if ex.stdin_open {
                    ex.to_stdin.extend(&input[..take]);
                }
                if *left == 0 {
                    ex.body = BodyIn::Done;
                }
                take
            }
            BodyIn::Chunked(decoder) => {
                let stdin = &mut ex.to_stdin;
                let step = decoder.feed_data(input, &mut |d| stdin.extend(d));
                match step {
                    Ok(_) if decoder.total > CHUNKED_MAX => {
                        self.cgi_refuse_body(411);
                        input.len()
                    }
                    Ok(n) => {
                        if decoder.is_done() {
                            let total = decoder.total;
                            ex.req
                                .env
                                .push(("CONTENT_LENGTH".into(), total.to_string()));
                            ex.body = BodyIn::Done;
                        }
                        n
                    }
                    Err(_) => {
                        self.cgi_refuse_body(400);
                        input.len()
                    }
                }
            }
            BodyIn::Done | BodyIn::Cut => 0,
        }
    }

    /// A chunked body that cannot be given to a script (malformed: 400, too large: 411): the
    /// answer, and the connection closes. No child was started yet.
    fn cgi_refuse_body(&mut self, status: u16) {
        let Some(ex) = self.cgi.take() else { return };
        let raw = ex.raw_head;
        if let Ok(Some((_, head))) = parse_head(&raw, &self.cfg.limits) {
            let r = Reply {
                head: Some(&head),
                raw_line: b"",
                keep_alive: false,
                is_head: head.method == "HEAD",
            };
            self.cgi_error(&r, status);
        }
        self.cgi_after(false, false, false);
    }

    /// Script output: its header section, then its body for the client.
    fn cgi_stdout(&mut self, input: &[u8]) -> usize {
        let over = self.out.over_budget();
        let Some(ex) = self.cgi.as_mut() else {
            return input.len();
        };
        let parsed = match &mut ex.stdout {
            Stdout::Discard => return input.len(),
            Stdout::Head(buf) => {
                buf.extend_from_slice(input);
                match parse_script_head(buf) {
                    Ok(None) => return input.len(),
                    Ok(Some((n, head))) => Ok((head, buf.split_off(n))),
                    Err(e) => Err(e),
                }
            }
            Stdout::Body(_) if over => return 0,
            Stdout::Body(framing) => {
                let take = match framing {
                    Framing2::Length(left) => {
                        let take = (*left).min(input.len() as u64) as usize;
                        *left -= take as u64;
                        take
                    }
                    Framing2::Chunked | Framing2::Close => input.len(),
                };
                let chunked = *framing == Framing2::Chunked;
                ex.body_bytes += take as u64;
                if take > 0 {
                    if chunked {
                        self.out.push_bytes(format!("{take:x}\r\n").as_bytes());
                        self.out.push_bytes(&input[..take]);
                        self.out.push_bytes(b"\r\n");
                    } else {
                        self.out.push_bytes(&input[..take]);
                    }
                }
                // Bytes past the announced length are dropped.
                return input.len();
            }
        };
        match parsed {
            Err(_) => {
                self.cgi_bad_gateway();
                input.len()
            }
            Ok((head, rest)) => {
                self.cgi_respond(head);
                // What came after the header section is body (the head ended in this input).
                let used = self.cgi_stdout(&rest).min(rest.len());
                input.len().saturating_sub(rest.len() - used)
            }
        }
    }

    /// The script's header section is in: the response head goes out (or a local redirect
    /// waits for the script to end).
    fn cgi_respond(&mut self, sh: ScriptHead) {
        let now = self.now;
        let wall = self.wall.time_at(now);
        let Some(ex) = self.cgi.as_mut() else { return };
        if let Some(loc) = &sh.location
            && loc.starts_with('/')
            && !loc.starts_with("//")
            && sh.status.as_ref().is_none_or(|(s, _)| *s == 200)
        {
            // RFC 3875 6.2.2: the server answers with the resource at that path itself.
            ex.redirect = Some(loc.clone());
            ex.stdout = Stdout::Discard;
            return;
        }
        let (status, phrase_given) = match (&sh.status, &sh.location) {
            (Some((s, p)), _) => (*s, p.clone()),
            (None, Some(_)) => (302, String::new()),
            (None, None) => (200, String::new()),
        };
        let with_body = has_body(status, ex.is_head);
        let framing = match sh.content_length {
            _ if !has_body(status, false) => None,
            Some(len) => Some(Framing2::Length(len)),
            None if ex.minor >= 1 => Some(Framing2::Chunked),
            None => Some(Framing2::Close),
        };
        if framing == Some(Framing2::Close) || ex.draining {
            ex.keep_alive = false;
        }
        let mut h: Vec<u8> = Vec::with_capacity(512);
        let phrase = if phrase_given.is_empty() {
            phrase(status).to_string()
        } else {
            phrase_given
        };
        let _ = write!(h, "HTTP/1.1 {status} {phrase}\r\nServer: plumb\r\nDate: ");
        push_date(&mut h, wall);
        h.extend_from_slice(b"\r\n");
        if !ex.keep_alive {
            h.extend_from_slice(b"Connection: close\r\n");
        } else if ex.minor == 0 {
            h.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        for (name, value) in &sh.headers {
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(value);
            h.extend_from_slice(b"\r\n");
        }
        if let Some(loc) = &sh.location {
            let _ = write!(h, "Location: {loc}\r\n");
        }
        match framing {
            Some(Framing2::Length(len)) => {
                let _ = write!(h, "Content-Length: {len}\r\n");
            }
            Some(Framing2::Chunked) if with_body => {
                h.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            }
            _ => {}
        }
        h.extend_from_slice(b"\r\n");
        ex.status = status;
        ex.answered = true;
        ex.stdout = match framing {
            Some(f) if with_body => Stdout::Body(f),
            _ => Stdout::Discard,
        };
        self.out.push_bytes(&h);
    }

    /// The script ended (or closed its output) without a valid header section: 502, and it
    /// is killed if it still runs.
    fn cgi_bad_gateway(&mut self) {
        let Some(ex) = self.cgi.as_mut() else { return };
        ex.stdout = Stdout::Discard;
        if !ex.exited {
            ex.kill = Some(SIGKILL);
        }
        self.cgi_answer_error(502);
    }

    /// Queues an error answer for the exchange's request (and logs it).
    fn cgi_answer_error(&mut self, status: u16) {
        let Some(ex) = self.cgi.as_mut() else { return };
        ex.answered = true;
        ex.status = status;
        if ex.draining || status == 504 {
            ex.keep_alive = false;
        }
        self.with_cgi_request(|s, r| s.cgi_error(r, status));
        if let Some(ex) = self.cgi.as_mut() {
            // Logged already.
            ex.status = 0;
        }
    }

    /// Runs `f` with the exchange's request as a [`Reply`], parsed again from the head kept
    /// for it (the parsed head borrows the input it came from, long consumed).
    fn with_cgi_request(&mut self, f: impl FnOnce(&mut Self, &Reply<'_>)) {
        let Some(ex) = self.cgi.as_mut() else { return };
        let raw = std::mem::take(&mut ex.raw_head);
        let keep_alive = ex.keep_alive;
        if let Ok(Some((_, head))) = parse_head(&raw, &self.cfg.limits) {
            let r = Reply {
                head: Some(&head),
                raw_line: b"",
                keep_alive,
                is_head: head.method == "HEAD",
            };
            f(self, &r);
        }
        if let Some(ex) = self.cgi.as_mut() {
            ex.raw_head = raw;
        }
    }

    /// An error response with the reason phrases this module needs (502, 504, 411), then
    /// its log line.
    fn cgi_error(&mut self, r: &Reply<'_>, status: u16) {
        let body = format!("{status} {}\n", phrase(status));
        let wall = self.wall.time_at(self.now);
        let minor = r.head.map_or(1, |h| h.minor);
        let mut h: Vec<u8> = Vec::with_capacity(256);
        let _ = write!(
            h,
            "HTTP/1.1 {status} {}\r\nServer: plumb\r\nDate: ",
            phrase(status)
        );
        push_date(&mut h, wall);
        h.extend_from_slice(b"\r\n");
        if !r.keep_alive {
            h.extend_from_slice(b"Connection: close\r\n");
        } else if minor == 0 {
            h.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        let _ = write!(
            h,
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if !r.is_head {
            h.extend_from_slice(body.as_bytes());
        }
        self.out.push_bytes(&h);
        let sent = if r.is_head { 0 } else { body.len() as u64 };
        self.log(r, status, sent);
    }

    /// Script stderr, line by line, to the server's log.
    fn cgi_stderr(&mut self, input: &[u8]) {
        let log = self.cfg.cgi.log.clone();
        let Some(ex) = self.cgi.as_mut() else { return };
        let mut rest = input;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            ex.stderr_line.extend_from_slice(&rest[..nl]);
            if let Some(log) = &log {
                log.line(&ex.script_name, &ex.stderr_line);
            }
            ex.stderr_line.clear();
            rest = &rest[nl + 1..];
        }
        ex.stderr_line.extend_from_slice(rest);
        if ex.stderr_line.len() > MAX_STDERR_LINE {
            if let Some(log) = &log {
                log.line(&ex.script_name, &ex.stderr_line);
            }
            ex.stderr_line.clear();
        }
    }

    /// A peer of the exchange reached EOF (for the stdin, the script stopped reading).
    pub(super) fn cgi_eof(&mut self, peer: Peer) {
        let log = self.cfg.cgi.log.clone();
        let Some(ex) = self.cgi.as_mut() else { return };
        match peer {
            Peer::Client => {
                ex.client_eof = true;
                if !matches!(ex.body, BodyIn::Done) {
                    ex.body = BodyIn::Cut;
                }
            }
            Peer::Child(SLOT, Stdio::Stdin) => {
                ex.stdin_open = false;
                ex.to_stdin = OutBuf::default();
            }
            Peer::Child(SLOT, Stdio::Stdout) => {
                ex.stdout_eof = true;
                match &ex.stdout {
                    Stdout::Head(_) => self.cgi_bad_gateway(),
                    Stdout::Body(Framing2::Length(left)) if *left > 0 => ex.broken = true,
                    _ => {}
                }
            }
            Peer::Child(SLOT, Stdio::Stderr) => {
                ex.stderr_eof = true;
                if !ex.stderr_line.is_empty() {
                    if let Some(log) = &log {
                        log.line(&ex.script_name, &ex.stderr_line);
                    }
                    ex.stderr_line.clear();
                }
            }
            Peer::Upstream | Peer::Child(..) => {}
        }
        self.cgi_maybe_finish();
    }

    /// `n` bytes went to the script's stdin.
    pub(super) fn cgi_written(&mut self, n: usize) {
        if let Some(ex) = self.cgi.as_mut() {
            ex.to_stdin.consume(n);
        }
    }

    /// The outcome of the spawn.
    pub(super) fn cgi_spawned(&mut self, ok: bool) {
        let Some(ex) = self.cgi.as_mut() else { return };
        if ok {
            ex.child = Child::Running;
            return;
        }
        ex.child = Child::Failed;
        ex.stdout = Stdout::Discard;
        self.cgi_answer_error(500);
        self.cgi_maybe_finish();
    }

    /// The script was reaped.
    pub(super) fn cgi_exited(&mut self, _how: Exit) {
        if let Some(ex) = self.cgi.as_mut() {
            ex.exited = true;
        }
        self.cgi_maybe_finish();
    }

    /// `--cgi-timeout` passed: 504 when nothing was answered yet, else the connection is
    /// cut. The script's group is killed either way.
    pub(super) fn cgi_timed_out(&mut self, now: Instant) {
        let Some(ex) = self.cgi.as_mut() else { return };
        if now < ex.deadline {
            return;
        }
        if ex.timed_out {
            // Killed, yet its pipes stay open (a descendant that left the process group
            // holds them): give up on it.
            ex.abort = true;
            return;
        }
        ex.timed_out = true;
        ex.deadline = now + KILL_GRACE;
        if ex.child == Child::Running && !ex.exited {
            ex.kill = Some(SIGKILL);
        }
        if ex.answered {
            ex.abort = true;
            return;
        }
        ex.stdout = Stdout::Discard;
        ex.keep_alive = false;
        if matches!(ex.body, BodyIn::Length(_) | BodyIn::Chunked(_)) {
            ex.body = BodyIn::Cut;
        }
        self.cgi_answer_error(504);
        self.cgi_maybe_finish();
    }

    /// The exchange's deadline.
    pub(super) fn cgi_deadline(&self) -> Option<Instant> {
        self.cgi.as_ref().map(|ex| ex.deadline)
    }

    /// The server drains: this request is the connection's last.
    pub(super) fn cgi_drain(&mut self) {
        if let Some(ex) = self.cgi.as_mut() {
            ex.draining = true;
            if !ex.answered {
                ex.keep_alive = false;
            }
        }
    }

    /// The connection ended: a response still streaming is logged with what went out.
    pub(super) fn cgi_closed(&mut self) {
        if let Some(ex) = self.cgi.as_mut() {
            let body = ex.body_bytes;
            self.cgi_log_response(body);
        }
    }

    /// The log line of the script's own response (error answers log themselves).
    fn cgi_log_response(&mut self, body_bytes: u64) {
        let Some(ex) = self.cgi.as_mut() else { return };
        if ex.status == 0 {
            return;
        }
        let status = std::mem::replace(&mut ex.status, 0);
        self.with_cgi_request(|s, r| s.log(r, status, body_bytes));
    }

    /// Ends the exchange once the script is gone and its output read (both pipes at EOF, so
    /// no stale pipe is polled afterwards): the response's end (the last chunk), its log
    /// line, then the next request, a local redirect, or the close.
    fn cgi_maybe_finish(&mut self) {
        let Some(ex) = self.cgi.as_ref() else { return };
        let gone = match ex.child {
            Child::Running => ex.exited && ex.stdout_eof && ex.stderr_eof,
            Child::Failed => true,
            Child::NotYet | Child::Asked => false,
        };
        if !gone {
            return;
        }
        if let Stdout::Body(Framing2::Chunked) = ex.stdout {
            self.out.push_bytes(b"0\r\n\r\n");
        }
        let body_complete = matches!(ex.body, BodyIn::Done);
        // A body shorter than its Content-Length can only be told by the close.
        let keep = ex.keep_alive && body_complete && !ex.broken && !ex.client_eof;
        let client_eof = ex.client_eof;
        if ex.redirect.is_some() && ex.redirects >= MAX_LOCAL_REDIRECTS {
            if let Some(ex) = self.cgi.as_mut() {
                ex.redirect = None;
                ex.keep_alive = false;
            }
            self.cgi_answer_error(500);
            self.cgi = None;
            return self.cgi_after(false, body_complete, client_eof);
        }
        let body = ex.body_bytes;
        self.cgi_log_response(body);
        let Some(ex) = self.cgi.take() else { return };
        match &ex.redirect {
            Some(loc) => self.cgi_redirect(&ex, loc, keep),
            None => self.cgi_after(keep, body_complete, client_eof),
        }
    }

    /// Answers a local redirect: the request once more as a GET (or HEAD) of `loc`, with the
    /// original headers minus its body framing.
    fn cgi_redirect(&mut self, ex: &Exchange, loc: &str, keep: bool) {
        let limits = self.cfg.limits;
        let Ok(Some((_, old))) = parse_head(&ex.raw_head, &limits) else {
            return self.cgi_after(false, false, ex.client_eof);
        };
        let method = if old.method == "HEAD" { "HEAD" } else { "GET" };
        let mut raw = format!("{method} {loc} HTTP/1.{}\r\n", old.minor).into_bytes();
        let mut slots = [httparse::EMPTY_HEADER; super::parse::MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        if req.parse(&ex.raw_head).is_ok() {
            for h in req.headers.iter() {
                let is = |n: &str| h.name.eq_ignore_ascii_case(n);
                if is("content-length") || is("transfer-encoding") || is("expect") {
                    continue;
                }
                raw.extend_from_slice(h.name.as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(h.value);
                raw.extend_from_slice(b"\r\n");
            }
        }
        if !keep {
            raw.extend_from_slice(b"Connection: close\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        let head = match parse_head(&raw, &limits) {
            Ok(Some((_, head))) => head,
            _ => {
                // A Location the server cannot parse as a request target.
                let r = Reply {
                    head: Some(&old),
                    raw_line: b"",
                    keep_alive: false,
                    is_head: old.method == "HEAD",
                };
                self.cgi_error(&r, 502);
                return self.cgi_after(false, matches!(ex.body, BodyIn::Done), ex.client_eof);
            }
        };
        if self.cgi_start(&head, &raw, ex.redirects + 1) {
            if let Some(new) = self.cgi.as_mut() {
                new.client_eof = ex.client_eof;
            }
            return;
        }
        self.respond_redirected(&head, ex.client_eof);
        if !keep && !matches!(ex.body, BodyIn::Done) {
            self.cgi_after(false, false, ex.client_eof);
        }
    }
}
