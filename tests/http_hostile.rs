//! Hostile input for `plumb serve`: a table of raw requests (framing and smuggling, request
//! line and header syntax, limits, path traversal in every encoding, ranges, conditionals),
//! each answered with the exact status (or one of the set RFC 9110/9112 allows) or a clean
//! close, after which the server still answers a normal request on a new connection.
//! Runs under every model.

mod common;

use std::path::Path;

use common::http::{Client, get, start_serve};
use common::*;
use plumb::models::Model;

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// One of these final statuses.
    Status(&'static [u16]),
    /// One of these statuses, and then the connection closes.
    StatusThenClose(&'static [u16]),
}
use Want::*;

struct Case {
    name: &'static str,
    raw: Vec<u8>,
    want: Want,
}

fn case(name: &'static str, raw: impl Into<Vec<u8>>, want: Want) -> Case {
    Case {
        name,
        raw: raw.into(),
        want,
    }
}

const OK: Want = Status(&[200]);
const BAD: Want = StatusThenClose(&[400]);
/// A target that names nothing: 400, the connection may stay open (framing is intact).
const BAD_TARGET: Want = Status(&[400]);
const NOT_FOUND: Want = Status(&[404]);
/// Traversal attempts: refused as a bad request or as a missing file, never served.
const REFUSED: Want = Status(&[400, 404]);

fn cases() -> Vec<Case> {
    let h = "Host: t\r\n";
    let long_uri = format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(10_000));
    let big_header = format!("GET / HTTP/1.1\r\n{h}X-Big: {}\r\n\r\n", "b".repeat(20_000));
    let many_headers: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\n{h}{many_headers}\r\n");
    let smuggled = "GET /secret.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    let cl_smuggle = format!(
        "GET /a.txt HTTP/1.1\r\n{h}Content-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let many_ranges = format!("Range: bytes={}\r\n", vec!["0-0"; 200].join(","));
    let overlapping = format!("Range: bytes={}\r\n", vec!["0-99"; 60].join(","));
    vec![
        // Framing and smuggling.
        case(
            "CL and TE",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "TE and CL",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "duplicate CL, different",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            BAD,
        ),
        case(
            "duplicate CL, same",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: 2\r\nContent-Length: 2\r\n\r\nab"),
            Status(&[400, 200]),
        ),
        case(
            "CL list",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: 2, 2\r\n\r\nab"),
            Status(&[400, 200]),
        ),
        case(
            "CL negative",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: -1\r\n\r\n"),
            BAD,
        ),
        case(
            "CL plus sign",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: +2\r\n\r\nab"),
            BAD,
        ),
        case(
            "CL not a number",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: abc\r\n\r\n"),
            BAD,
        ),
        case(
            "CL hex",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: 0x2\r\n\r\nab"),
            BAD,
        ),
        case(
            "CL overflow",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: 184467440737095516160\r\n\r\n"),
            StatusThenClose(&[400, 413]),
        ),
        case(
            "CL empty",
            format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length:\r\n\r\n"),
            BAD,
        ),
        case(
            "CL body too large",
            format!("POST /a.txt HTTP/1.1\r\n{h}Content-Length: 2000000000\r\n\r\n"),
            StatusThenClose(&[413]),
        ),
        case("CL body discarded, not a request", cl_smuggle, OK),
        case(
            "chunked GET",
            format!(
                "GET /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
            OK,
        ),
        case(
            "chunked with ext and trailer",
            format!(
                "GET /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
            ),
            OK,
        ),
        case(
            "TE gzip, chunked",
            format!("POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            StatusThenClose(&[501]),
        ),
        case(
            "TE chunked, gzip",
            format!("POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
            BAD,
        ),
        case(
            "TE xchunked",
            format!("POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
            StatusThenClose(&[400, 501]),
        ),
        case(
            "TE twice",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "TE in HTTP/1.0",
            "POST /a.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            BAD,
        ),
        case(
            "TE with space before colon",
            format!("POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
            BAD,
        ),
        case(
            "chunk size not hex",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "chunk size overflow",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nx\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "chunk size negative",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "chunk data overrun",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "chunk bare LF",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "chunk size with junk",
            format!(
                "POST /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n"
            ),
            BAD,
        ),
        case(
            "expect 100-continue",
            format!(
                "GET /a.txt HTTP/1.1\r\n{h}Expect: 100-continue\r\nContent-Length: 2\r\n\r\nab"
            ),
            OK,
        ),
        case(
            "expect unknown",
            format!("GET /a.txt HTTP/1.1\r\n{h}Expect: teapot\r\n\r\n"),
            StatusThenClose(&[417]),
        ),
        // Request line and header syntax.
        case("no Host in 1.1", "GET /a.txt HTTP/1.1\r\n\r\n", BAD),
        case(
            "two Hosts",
            format!("GET /a.txt HTTP/1.1\r\n{h}Host: u\r\n\r\n"),
            BAD,
        ),
        case(
            "Host with space",
            "GET /a.txt HTTP/1.1\r\nHost: a b\r\n\r\n",
            BAD,
        ),
        case(
            "Host with slash",
            "GET /a.txt HTTP/1.1\r\nHost: a/b\r\n\r\n",
            BAD,
        ),
        case(
            "HTTP/1.0 without Host",
            "GET /a.txt HTTP/1.0\r\n\r\n",
            StatusThenClose(&[200]),
        ),
        case(
            "lowercase method",
            format!("get /a.txt HTTP/1.1\r\n{h}\r\n"),
            Status(&[501, 400]),
        ),
        case(
            "method with (",
            format!("GE(T /a.txt HTTP/1.1\r\n{h}\r\n"),
            BAD,
        ),
        case(
            "double space",
            format!("GET  /a.txt HTTP/1.1\r\n{h}\r\n"),
            BAD,
        ),
        case(
            "tab separator",
            format!("GET\t/a.txt HTTP/1.1\r\n{h}\r\n"),
            BAD,
        ),
        case("HTTP/0.9 line", "GET /a.txt\r\n\r\n", BAD),
        case(
            "HTTP/2.0",
            format!("GET /a.txt HTTP/2.0\r\n{h}\r\n"),
            StatusThenClose(&[505, 400]),
        ),
        case(
            "HTTP/1.2",
            format!("GET /a.txt HTTP/1.2\r\n{h}\r\n"),
            Status(&[200, 400, 505]),
        ),
        case(
            "version garbage",
            format!("GET /a.txt HTTP/x.y\r\n{h}\r\n"),
            BAD,
        ),
        case(
            "lowercase version",
            format!("GET /a.txt http/1.1\r\n{h}\r\n"),
            BAD,
        ),
        case(
            "obs-fold",
            format!("GET /a.txt HTTP/1.1\r\n{h}X-A: b\r\n  folded\r\n\r\n"),
            BAD,
        ),
        case(
            "space before colon",
            format!("GET /a.txt HTTP/1.1\r\n{h}X-A : b\r\n\r\n"),
            BAD,
        ),
        case(
            "header without colon",
            format!("GET /a.txt HTTP/1.1\r\n{h}NoColon\r\n\r\n"),
            BAD,
        ),
        case(
            "empty header name",
            format!("GET /a.txt HTTP/1.1\r\n{h}: v\r\n\r\n"),
            BAD,
        ),
        case(
            "NUL in header value",
            format!("GET /a.txt HTTP/1.1\r\n{h}X-A: a\0b\r\n\r\n"),
            BAD,
        ),
        case(
            "bare CR in header value",
            format!("GET /a.txt HTTP/1.1\r\n{h}X-A: a\rb\r\n\r\n"),
            BAD,
        ),
        case(
            "space before first header",
            format!("GET /a.txt HTTP/1.1\r\n {h}\r\n"),
            BAD,
        ),
        case(
            "bare LF line ends",
            "GET /a.txt HTTP/1.1\nHost: t\n\n",
            Status(&[200, 400]),
        ),
        case(
            "leading empty line",
            format!("\r\nGET /a.txt HTTP/1.1\r\n{h}\r\n"),
            Status(&[200, 400]),
        ),
        case(
            "binary garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            BAD,
        ),
        case(
            "target without slash",
            format!("GET a.txt HTTP/1.1\r\n{h}\r\n"),
            BAD_TARGET,
        ),
        case(
            "asterisk target on GET",
            format!("GET * HTTP/1.1\r\n{h}\r\n"),
            BAD_TARGET,
        ),
        case(
            "authority target on GET",
            format!("GET t:80 HTTP/1.1\r\n{h}\r\n"),
            BAD_TARGET,
        ),
        case(
            "absolute-form",
            format!("GET http://t/a.txt HTTP/1.1\r\n{h}\r\n"),
            OK,
        ),
        case(
            "absolute-form with port and query",
            format!("GET http://t:80/a.txt?x=1 HTTP/1.1\r\n{h}\r\n"),
            OK,
        ),
        case(
            "CONNECT",
            format!("CONNECT t:443 HTTP/1.1\r\n{h}\r\n"),
            Status(&[405]),
        ),
        case(
            "OPTIONS *",
            format!("OPTIONS * HTTP/1.1\r\n{h}\r\n"),
            Status(&[405, 200]),
        ),
        case(
            "POST",
            format!("POST /a.txt HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n"),
            Status(&[405]),
        ),
        case(
            "DELETE",
            format!("DELETE /a.txt HTTP/1.1\r\n{h}\r\n"),
            Status(&[405]),
        ),
        case(
            "unknown method",
            format!("BREW /a.txt HTTP/1.1\r\n{h}\r\n"),
            Status(&[501]),
        ),
        // Limits.
        case("URI too long", long_uri, StatusThenClose(&[414])),
        case(
            "header section too large",
            big_header,
            StatusThenClose(&[431]),
        ),
        case("too many headers", many_headers, StatusThenClose(&[431])),
        // Traversal in every encoding.
        case(
            "dot-dot",
            format!("GET /../secret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "dot-dot deep",
            format!("GET /sub/../../secret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "encoded dot-dot",
            format!("GET /%2e%2e/secret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "encoded dot-dot upper",
            format!("GET /%2E%2E%2Fsecret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "encoded slash",
            format!("GET /..%2fsecret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "half-encoded dot-dot",
            format!("GET /.%2e/secret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "double-encoded",
            format!("GET /%252e%252e/secret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "overlong UTF-8 dot",
            format!("GET /%c0%ae%c0%ae/secret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "overlong UTF-8 slash",
            format!("GET /..%c0%afsecret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "backslash",
            format!("GET /..\\secret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "encoded backslash",
            format!("GET /..%5csecret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "NUL",
            format!("GET /a.txt%00.html HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "absolute-form traversal",
            format!("GET http://t/../secret.txt HTTP/1.1\r\n{h}\r\n"),
            REFUSED,
        ),
        case(
            "absolute path inside",
            format!("GET //etc/passwd HTTP/1.1\r\n{h}\r\n"),
            NOT_FOUND,
        ),
        case(
            "bad escape",
            format!("GET /%zz HTTP/1.1\r\n{h}\r\n"),
            BAD_TARGET,
        ),
        case(
            "truncated escape",
            format!("GET /a%2 HTTP/1.1\r\n{h}\r\n"),
            BAD_TARGET,
        ),
        case(
            // Names are bytes: a name that is not UTF-8 is looked up like any other.
            "invalid UTF-8",
            format!("GET /%ff%fe HTTP/1.1\r\n{h}\r\n"),
            NOT_FOUND,
        ),
        case(
            "dotfile",
            format!("GET /.env HTTP/1.1\r\n{h}\r\n"),
            NOT_FOUND,
        ),
        case(
            "encoded dotfile",
            format!("GET /%2eenv HTTP/1.1\r\n{h}\r\n"),
            NOT_FOUND,
        ),
        case(
            "dot directory",
            format!("GET /.git/config HTTP/1.1\r\n{h}\r\n"),
            NOT_FOUND,
        ),
        case(
            "symlink out of the root",
            format!("GET /escape HTTP/1.1\r\n{h}\r\n"),
            Status(&[403, 404]),
        ),
        case(
            "file as directory",
            format!("GET /a.txt/ HTTP/1.1\r\n{h}\r\n"),
            NOT_FOUND,
        ),
        // Ranges.
        case(
            "range single",
            get("/a.txt", "Range: bytes=0-1\r\n"),
            Status(&[206]),
        ),
        case(
            "range suffix",
            get("/a.txt", "Range: bytes=-2\r\n"),
            Status(&[206]),
        ),
        case(
            "range multi",
            get("/a.txt", "Range: bytes=0-0,3-3\r\n"),
            Status(&[206]),
        ),
        case(
            "range unsatisfiable",
            get("/a.txt", "Range: bytes=100-\r\n"),
            Status(&[416]),
        ),
        case("range reversed", get("/a.txt", "Range: bytes=3-1\r\n"), OK),
        case(
            "range other unit",
            get("/a.txt", "Range: items=0-1\r\n"),
            OK,
        ),
        case("range garbage", get("/a.txt", "Range: bytes=a-b\r\n"), OK),
        case(
            "range overflow",
            get("/a.txt", "Range: bytes=0-99999999999999999999999\r\n"),
            Status(&[200, 206]),
        ),
        case(
            "too many ranges",
            get("/a.txt", &many_ranges),
            Status(&[200, 206]),
        ),
        case(
            "overlapping ranges",
            get("/a.txt", &overlapping),
            Status(&[200, 206]),
        ),
        case(
            "two Range headers",
            get("/a.txt", "Range: bytes=0-1\r\nRange: bytes=2-3\r\n"),
            Status(&[200, 206, 400]),
        ),
        case(
            "If-Range stale",
            get("/a.txt", "Range: bytes=0-1\r\nIf-Range: \"old\"\r\n"),
            OK,
        ),
        // Conditionals.
        case(
            "If-None-Match star",
            get("/a.txt", "If-None-Match: *\r\n"),
            Status(&[304]),
        ),
        case(
            "If-Match mismatch",
            get("/a.txt", "If-Match: \"nope\"\r\n"),
            Status(&[412]),
        ),
        case("If-Match star", get("/a.txt", "If-Match: *\r\n"), OK),
        case(
            "If-Match malformed",
            get("/a.txt", "If-Match: nope\r\n"),
            Status(&[412]),
        ),
        case(
            "If-Unmodified-Since past",
            get(
                "/a.txt",
                "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
            ),
            Status(&[412]),
        ),
        case(
            "If-Modified-Since future",
            get(
                "/a.txt",
                "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n",
            ),
            Status(&[304]),
        ),
        case(
            "If-Modified-Since garbage",
            get("/a.txt", "If-Modified-Since: yesterday\r\n"),
            OK,
        ),
        case(
            "If-None-Match list",
            get("/a.txt", "If-None-Match: \"a\", \"b\"\r\n"),
            OK,
        ),
    ]
}

fn run_cases(model: Model) {
    let dir = tempfile::tempdir().unwrap();
    // The root is a subdirectory, so there is something above it to climb to.
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"TOP SECRET").unwrap();
    std::fs::write(root.join("a.txt"), b"hello").unwrap();
    std::fs::write(root.join(".env"), b"TOP SECRET").unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("escape")).unwrap();
    let server = start(model, &root);
    let addr = server.addr().to_string();
    let table = cases();
    assert!(table.len() >= 60, "the suite has {} cases", table.len());
    let mut failures = Vec::new();
    for c in &table {
        let ctx = format!("model {model}, case {:?}", c.name);
        if let Err(e) = std::panic::catch_unwind(|| run_case(&addr, c, &ctx)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| format!("{ctx}: panicked"));
            failures.push(msg);
        }
    }
    server.stop();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn run_case(addr: &str, c: &Case, ctx: &str) {
    let mut client = Client::new(addr);
    client.send(&c.raw);
    let r = loop {
        match client.try_response(c.raw.starts_with(b"HEAD")) {
            Some(r) if r.status < 200 => continue,
            Some(r) => break r,
            None => panic!("{ctx}: closed without a response"),
        }
    };
    let (allowed, must_close) = match c.want {
        Status(s) => (s, false),
        StatusThenClose(s) => (s, true),
    };
    assert!(
        allowed.contains(&r.status),
        "{ctx}: got {} {:?}",
        r.status,
        r.text()
    );
    assert!(
        !r.text().contains("TOP SECRET"),
        "{ctx}: served a file outside the root"
    );
    if must_close {
        assert!(r.closes(), "{ctx}: no Connection: close");
        assert!(client.at_eof(), "{ctx}: connection stays open");
    }
    drop(client);
    // The server keeps serving.
    let mut next = Client::new(addr);
    next.send(&get("/a.txt", "Connection: close\r\n"));
    let r = next.final_response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello"),
        "{ctx}: after"
    );
}

/// The body of a CL-framed request is never parsed as a request: only one response comes.
fn no_smuggling(model: Model) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    let server = start(model, dir.path());
    let inner = "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut c = Client::new(server.addr());
    c.send(
        format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{inner}",
            inner.len()
        )
        .as_bytes(),
    );
    c.send(&get("/a.txt", "Connection: close\r\n"));
    assert_eq!(c.final_response().status, 200);
    assert_eq!(
        c.final_response().status,
        200,
        "the body was taken for a request"
    );
    assert!(c.at_eof());
    // Chunked, the same.
    let mut c = Client::new(server.addr());
    c.send(format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len()).as_bytes());
    c.send(&get("/a.txt", "Connection: close\r\n"));
    assert_eq!(c.final_response().status, 200);
    assert_eq!(
        c.final_response().status,
        200,
        "the chunked body was taken for a request"
    );
    server.stop();
}

fn start(model: Model, root: &Path) -> Server {
    start_serve(model, root, &["-q"])
}

macro_rules! per_model {
    ($($name:ident => $model:expr),* $(,)?) => {
        mod table { use super::*; $(#[test] fn $name() { run_cases($model); })* }
        mod smuggling { use super::*; $(#[test] fn $name() { no_smuggling($model); })* }
        #[test]
        fn every_model_is_tested() {
            assert_eq!(&[$($model),*][..], Model::ALL);
        }
    };
}

for_every_model!(per_model);
