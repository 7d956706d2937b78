//! CGI/1.1 in `plumb serve --cgi`, end to end under every model: shell scripts written into a
//! temporary root (chmod +x) and run by the real binary. One script per meta-variable group;
//! a 100 MB upload and a 100 MB download, byte-exact with the server's memory bounded; the
//! httpoxy rule; Status and Location (local and client redirects); 502 and 504; chunked
//! request bodies; keep-alive after a script; non-executable files, directories and traversal;
//! and /proc after many requests: no zombie, no leaked descriptor.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::http::start_serve;
use common::*;
use plumb::models::Model;
use sha2::Digest;

/// A document root with a `cgi-bin` of scripts.
struct Site {
    _dir: tempfile::TempDir,
    /// The root (a subdirectory, so there is something above it to climb to).
    root: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("cgi-bin/sub")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"TOP SECRET").unwrap();
        std::fs::write(root.join("hello.txt"), b"hello\n").unwrap();
        Site { _dir: dir, root }
    }

    /// Writes an executable shell script at `rel` (under the root).
    fn script(&self, rel: &str, body: &str) -> &Site {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    fn above(&self) -> &Path {
        self.root.parent().unwrap()
    }
}

/// One response as read off the wire, whatever its framing.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `NAME=value` lines of a body as pairs.
    fn vars(&self) -> Vec<(String, String)> {
        self.text()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn var(&self, name: &str) -> Option<String> {
        self.vars()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A client connection that reads responses framed by Content-Length, chunked coding, or
/// the close.
struct Conn {
    r: BufReader<Stream>,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        let s = connect(addr);
        Conn {
            r: BufReader::with_capacity(256 * 1024, s),
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.r.get_mut().write_all(raw).unwrap();
    }

    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end_matches(['\r', '\n']).to_string()),
        }
    }

    /// The next final response (1xx skipped), its body handed to `sink` as it arrives.
    /// None when the connection ends before a whole response.
    fn response_into(&mut self, head_req: bool, sink: &mut dyn FnMut(&[u8])) -> Option<Resp> {
        loop {
            let status_line = self.line()?;
            let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
            let mut headers = Vec::new();
            loop {
                let l = self.line()?;
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':')?;
                headers.push((k.to_string(), v.trim().to_string()));
            }
            if status < 200 {
                continue;
            }
            let mut resp = Resp {
                status,
                headers,
                body: Vec::new(),
                chunked: false,
            };
            if head_req || status == 204 || status == 304 {
                return Some(resp);
            }
            if let Some(len) = resp.header("content-length") {
                let mut left: u64 = len.parse().ok()?;
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let n = self.r.read(&mut buf[..left.min(65536) as usize]).ok()?;
                    if n == 0 {
                        return None;
                    }
                    sink(&buf[..n]);
                    left -= n as u64;
                }
            } else if resp
                .header("transfer-encoding")
                .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
            {
                resp.chunked = true;
                loop {
                    let size = u64::from_str_radix(self.line()?.split(';').next()?, 16).ok()?;
                    if size == 0 {
                        while !self.line()?.is_empty() {}
                        break;
                    }
                    let mut left = size;
                    let mut buf = vec![0u8; 64 * 1024];
                    while left > 0 {
                        let n = self.r.read(&mut buf[..left.min(65536) as usize]).ok()?;
                        if n == 0 {
                            return None;
                        }
                        sink(&buf[..n]);
                        left -= n as u64;
                    }
                    if !self.line()?.is_empty() {
                        return None;
                    }
                }
            } else {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match self.r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sink(&buf[..n]),
                    }
                }
            }
            return Some(resp);
        }
    }

    fn try_response(&mut self, head_req: bool) -> Option<Resp> {
        let mut body = Vec::new();
        let mut r = self.response_into(head_req, &mut |b| body.extend_from_slice(b))?;
        r.body = body;
        Some(r)
    }

    fn response(&mut self) -> Resp {
        self.try_response(false).expect("a whole response")
    }

    /// True once the server has closed the connection (EOF or reset) with nothing more.
    fn at_eof(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

fn fetch(addr: &str, raw: &str) -> Resp {
    let mut c = Conn::new(addr);
    c.send(raw.as_bytes());
    c.response()
}

fn get(addr: &str, path: &str) -> Resp {
    fetch(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

fn serve(model: Model, site: &Site, extra: &[&str]) -> Server {
    let mut args = vec!["--cgi", "/cgi-bin/"];
    args.extend_from_slice(extra);
    start_serve(model, &site.root, &args)
}

/// Prints the named variables as NAME=value lines (unset ones as NAME=<unset>).
fn printer(names: &[&str]) -> String {
    let mut s = String::from("printf 'Content-Type: text/plain\\r\\n\\r\\n'\n");
    for n in names {
        s.push_str(&format!("echo \"{n}=${{{n}-<unset>}}\"\n"));
    }
    s
}

fn request_group(model: Model) {
    let site = Site::new();
    site.script(
        "cgi-bin/req.cgi",
        &printer(&[
            "REQUEST_METHOD",
            "SCRIPT_NAME",
            "PATH_INFO",
            "PATH_TRANSLATED",
            "QUERY_STRING",
            "REQUEST_URI",
            "GATEWAY_INTERFACE",
            "SERVER_PROTOCOL",
        ]),
    );
    let server = serve(model, &site, &["-q"]);
    let r = get(server.addr(), "/cgi-bin/req.cgi/a%20b/c/?x=1&y=%41");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.var("REQUEST_METHOD").unwrap(), "GET");
    assert_eq!(r.var("SCRIPT_NAME").unwrap(), "/cgi-bin/req.cgi");
    assert_eq!(r.var("PATH_INFO").unwrap(), "/a b/c/", "decoded");
    let translated = format!(
        "{}/a b/c/",
        std::fs::canonicalize(&site.root).unwrap().display()
    );
    assert_eq!(r.var("PATH_TRANSLATED").unwrap(), translated);
    assert_eq!(r.var("QUERY_STRING").unwrap(), "x=1&y=%41", "not decoded");
    assert_eq!(
        r.var("REQUEST_URI").unwrap(),
        "/cgi-bin/req.cgi/a%20b/c/?x=1&y=%41"
    );
    assert_eq!(r.var("GATEWAY_INTERFACE").unwrap(), "CGI/1.1");
    assert_eq!(r.var("SERVER_PROTOCOL").unwrap(), "HTTP/1.1");
    // No PATH_INFO: empty, and no PATH_TRANSLATED; HTTP/1.0.
    let r = fetch(server.addr(), "DELETE /cgi-bin/req.cgi HTTP/1.0\r\n\r\n");
    assert_eq!(r.var("REQUEST_METHOD").unwrap(), "DELETE");
    assert_eq!(r.var("PATH_INFO").unwrap(), "");
    assert_eq!(r.var("PATH_TRANSLATED").unwrap(), "<unset>");
    assert_eq!(r.var("QUERY_STRING").unwrap(), "");
    assert_eq!(r.var("SERVER_PROTOCOL").unwrap(), "HTTP/1.0");
    server.stop();
}

fn server_and_client_group(model: Model) {
    let site = Site::new();
    site.script(
        "cgi-bin/srv.cgi",
        &printer(&[
            "SERVER_NAME",
            "SERVER_PORT",
            "SERVER_SOFTWARE",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "DOCUMENT_ROOT",
            "SCRIPT_FILENAME",
            "PWD",
        ]),
    );
    let server = serve(model, &site, &["-q"]);
    let port = server.addr().rsplit_once(':').unwrap().1.to_string();
    let mut c = Conn::new(server.addr());
    let local = match &c.r.get_ref() {
        Stream::Tcp(t) => t.local_addr().unwrap(),
        Stream::Unix(_) => unreachable!("TCP"),
    };
    c.send(b"GET /cgi-bin/srv.cgi HTTP/1.1\r\nHost: example.test:8081\r\n\r\n");
    let r = c.response();
    assert_eq!(r.var("SERVER_NAME").unwrap(), "example.test");
    assert_eq!(r.var("SERVER_PORT").unwrap(), "8081");
    assert!(
        r.var("SERVER_SOFTWARE").unwrap().starts_with("plumb/"),
        "{r:?}"
    );
    assert_eq!(r.var("REMOTE_ADDR").unwrap(), "127.0.0.1");
    assert_eq!(r.var("REMOTE_PORT").unwrap(), local.port().to_string());
    let real_root = std::fs::canonicalize(&site.root).unwrap();
    assert_eq!(
        r.var("DOCUMENT_ROOT").unwrap(),
        real_root.display().to_string()
    );
    assert_eq!(
        r.var("SCRIPT_FILENAME").unwrap(),
        real_root.join("cgi-bin/srv.cgi").display().to_string()
    );
    assert_eq!(
        r.var("PWD").unwrap(),
        real_root.join("cgi-bin").display().to_string(),
        "a script runs in its directory"
    );
    // A Host without a port: the port the request came in on; no Host: the listener's.
    c.send(b"GET /cgi-bin/srv.cgi HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let r = c.response();
    assert_eq!(r.var("SERVER_NAME").unwrap(), "example.test");
    assert_eq!(r.var("SERVER_PORT").unwrap(), port);
    let r = fetch(server.addr(), "GET /cgi-bin/srv.cgi HTTP/1.0\r\n\r\n");
    assert_eq!(r.var("SERVER_NAME").unwrap(), "127.0.0.1");
    assert_eq!(r.var("SERVER_PORT").unwrap(), port);
    server.stop();
}

fn header_group(model: Model) {
    let site = Site::new();
    site.script(
        "cgi-bin/hdr.cgi",
        "printf 'Content-Type: text/plain\\r\\n\\r\\n'\nenv | sort\n",
    );
    let server = serve(model, &site, &["-q"]);
    let r = fetch(
        server.addr(),
        "GET /cgi-bin/hdr.cgi HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         X-Custom-Thing: v1\r\nAccept: text/x\r\nCookie: a=1\r\nCookie: b=2\r\n\
         Proxy: http://evil.example:3128\r\nAuthorization: Basic c2VjcmV0\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\nX_Under: spoof\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    assert_eq!(r.var("HTTP_X_CUSTOM_THING").unwrap(), "v1");
    assert_eq!(r.var("HTTP_ACCEPT").unwrap(), "text/x");
    assert_eq!(r.var("HTTP_COOKIE").unwrap(), "a=1, b=2", "joined");
    assert_eq!(r.var("HTTP_HOST").unwrap(), "t");
    // httpoxy: a client's Proxy header must never become the script's proxy.
    assert!(!text.contains("HTTP_PROXY="), "{text}");
    assert!(!text.contains("evil.example"), "{text}");
    assert!(!text.contains("c2VjcmV0"), "credentials leaked: {text}");
    assert!(!text.contains("HTTP_AUTHORIZATION"), "{text}");
    assert!(
        !text.contains("spoof"),
        "a name with _ would collide: {text}"
    );
    // Only PATH of the server's environment (cargo sets CARGO_* for this test and its
    // children): the script does not inherit the rest.
    assert!(r.var("PATH").is_some());
    assert!(
        !text.contains("CARGO_"),
        "the server's environment leaked: {text}"
    );
    server.stop();
}

fn body_group(model: Model) {
    let site = Site::new();
    site.script(
        "cgi-bin/body.cgi",
        "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
         echo \"CONTENT_LENGTH=${CONTENT_LENGTH-<unset>}\"\n\
         echo \"CONTENT_TYPE=${CONTENT_TYPE-<unset>}\"\n\
         echo \"HTTP_TRANSFER_ENCODING=${HTTP_TRANSFER_ENCODING-<unset>}\"\n\
         echo \"BODY=$(cat)\"\n",
    );
    let server = serve(model, &site, &["-q"]);
    let r = fetch(
        server.addr(),
        "POST /cgi-bin/body.cgi HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\na=1&b=2",
    );
    assert_eq!(r.var("CONTENT_LENGTH").unwrap(), "7");
    assert_eq!(
        r.var("CONTENT_TYPE").unwrap(),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(r.var("BODY").unwrap(), "a=1&b=2");
    // Chunked: de-chunked, CONTENT_LENGTH set, the framing header not passed.
    let r = fetch(
        server.addr(),
        "PUT /cgi-bin/body.cgi HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.var("CONTENT_LENGTH").unwrap(), "7");
    assert_eq!(r.var("BODY").unwrap(), "abcdefg");
    assert_eq!(r.var("HTTP_TRANSFER_ENCODING").unwrap(), "<unset>");
    // No body: no CONTENT_LENGTH, and stdin is at EOF at once.
    let r = get(server.addr(), "/cgi-bin/body.cgi");
    assert_eq!(r.var("CONTENT_LENGTH").unwrap(), "<unset>");
    assert_eq!(r.var("BODY").unwrap(), "");
    // Expect: 100-continue gets its 100 before the body is sent.
    let mut c = Conn::new(server.addr());
    c.send(
        b"POST /cgi-bin/body.cgi HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\
          Content-Length: 3\r\n\r\n",
    );
    assert_eq!(c.line().unwrap(), "HTTP/1.1 100 Continue");
    assert_eq!(c.line().unwrap(), "");
    c.send(b"xyz");
    assert_eq!(c.response().var("BODY").unwrap(), "xyz");
    // A chunked body over the gathering limit: 411 (send it with a Content-Length).
    let mut c = Conn::new(server.addr());
    c.send(b"POST /cgi-bin/body.cgi HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let piece = vec![b'x'; 256 * 1024];
    for _ in 0..5 {
        let _ =
            c.r.get_mut()
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes());
        let _ = c.r.get_mut().write_all(&piece);
        let _ = c.r.get_mut().write_all(b"\r\n");
    }
    let r = c.response();
    assert_eq!(r.status, 411);
    // Malformed chunked framing: 400.
    let r = fetch(
        server.addr(),
        "POST /cgi-bin/body.cgi HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert_eq!(r.status, 400);
    server.stop();
}

/// The largest VmRSS of any plumb process under `pid`, in kB.
fn plumb_rss_kb(pid: i32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "plumb")
        })
        .filter_map(|p| {
            let s = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            l.split_whitespace().nth(1)?.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Samples [`plumb_rss_kb`] until stopped; the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: i32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(plumb_rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak_kb(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

const BIG: u64 = 100 * 1000 * 1000;
/// Peak RSS allowed for a server process while 100 MB go through it.
const RSS_LIMIT_KB: u64 = 40 * 1024;

fn large_upload_and_download(model: Model) {
    let site = Site::new();
    site.script(
        "cgi-bin/sha.cgi",
        "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
         echo \"LEN=$CONTENT_LENGTH\"\nsha256sum | cut -d' ' -f1\n",
    );
    // 10 MB of known bytes, sent ten times by the script (no length: chunked).
    let block = random_bytes(10_000_000, 13);
    std::fs::write(site.above().join("block.bin"), &block).unwrap();
    let block_path = site.above().join("block.bin");
    site.script(
        "cgi-bin/big.cgi",
        &format!(
            "printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'\n\
             for i in 0 1 2 3 4 5 6 7 8 9; do cat '{}'; done\n",
            block_path.display()
        ),
    );
    site.script(
        "cgi-bin/biglen.cgi",
        &format!(
            "printf 'Content-Type: application/octet-stream\\r\\nContent-Length: {BIG}\\r\\n\\r\\n'\n\
             for i in 0 1 2 3 4 5 6 7 8 9; do cat '{}'; done\n",
            block_path.display()
        ),
    );
    let server = serve(model, &site, &["-q"]);
    let before = plumb_rss_kb(server.pid());
    let watch = RssWatch::start(server.pid());

    // Upload: 100 MB with a Content-Length, the script checksums its stdin.
    let mut c = Conn::new(server.addr());
    c.send(
        format!("POST /cgi-bin/sha.cgi HTTP/1.1\r\nHost: t\r\nContent-Length: {BIG}\r\n\r\n")
            .as_bytes(),
    );
    let mut want = sha2::Sha256::new();
    let mut chunk = block.clone();
    for i in 0..10u8 {
        chunk[0] = i;
        want.update(&chunk);
        c.r.get_mut().write_all(&chunk).unwrap();
    }
    let want: String = want.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let r = c.response();
    assert_eq!(r.status, 200);
    let text = r.text();
    assert_eq!(text, format!("LEN={BIG}\n{want}\n"), "byte-exact upload");

    // Download, chunked, on the same connection.
    let block_sha = sha256_hex(&block);
    for path in ["/cgi-bin/big.cgi", "/cgi-bin/biglen.cgi"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let mut hasher = sha2::Sha256::new();
        let (mut total, mut in_block) = (0u64, 0usize);
        let mut shas: Vec<String> = Vec::new();
        let r = c
            .response_into(false, &mut |mut b: &[u8]| {
                total += b.len() as u64;
                while !b.is_empty() {
                    let take = (block.len() - in_block).min(b.len());
                    hasher.update(&b[..take]);
                    in_block += take;
                    b = &b[take..];
                    if in_block == block.len() {
                        let h = std::mem::take(&mut hasher);
                        shas.push(h.finalize().iter().map(|x| format!("{x:02x}")).collect());
                        in_block = 0;
                    }
                }
            })
            .expect("a whole download");
        assert_eq!(r.status, 200);
        assert_eq!(r.chunked, path == "/cgi-bin/big.cgi", "{r:?}");
        assert_eq!(total, BIG, "{path}");
        assert_eq!(shas, vec![block_sha.clone(); 10], "{path}: byte-exact");
    }
    let peak = watch.peak_kb();
    eprintln!(
        "model {model}: plumb VmRSS {before} kB before, peak {peak} kB while 300 MB went through"
    );
    assert!(
        peak < RSS_LIMIT_KB,
        "model {model}: a server process reached {peak} kB moving 100 MB bodies"
    );
    server.stop();
}

fn status_and_location(model: Model) {
    let site = Site::new();
    site.script(
        "cgi-bin/status.cgi",
        "printf 'Status: 404 Nothing Here\\r\\nContent-Type: text/plain\\r\\nX-Script: yes\\r\\n\
         Set-Cookie: a=1\\r\\nSet-Cookie: b=2\\r\\n\\r\\nnope'\n",
    )
    .script(
        "cgi-bin/created.cgi",
        "printf 'Status: 201\\nContent-Type: text/plain\\n\\nmade'\n",
    )
    .script(
        "cgi-bin/away.cgi",
        "printf 'Location: http://example.test/elsewhere?q=1\\r\\n\\r\\n'\n",
    )
    .script(
        "cgi-bin/moved.cgi",
        "printf 'Status: 301 Moved Permanently\\r\\nLocation: /new/place\\r\\n\\r\\n'\n",
    )
    .script(
        "cgi-bin/local.cgi",
        "cat >/dev/null\nprintf 'Location: /hello.txt\\r\\n\\r\\n'\n",
    )
    .script(
        "cgi-bin/chain.cgi",
        "printf 'Location: /cgi-bin/req.cgi/more?from=chain\\r\\n\\r\\n'\n",
    )
    .script(
        "cgi-bin/req.cgi",
        &printer(&[
            "REQUEST_METHOD",
            "PATH_INFO",
            "QUERY_STRING",
            "CONTENT_LENGTH",
        ]),
    )
    .script(
        "cgi-bin/loop.cgi",
        "printf 'Location: /cgi-bin/loop.cgi\\r\\n\\r\\n'\n",
    )
    .script(
        "cgi-bin/nobody.cgi",
        "printf 'Status: 204 No Content\\r\\n\\r\\nignored'\n",
    );
    let server = serve(model, &site, &["-q"]);
    let a = server.addr();
    let r = get(a, "/cgi-bin/status.cgi");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, b"nope");
    assert_eq!(r.header("x-script"), Some("yes"));
    let cookies: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    let r = get(a, "/cgi-bin/created.cgi");
    assert_eq!(
        (r.status, r.text().as_str()),
        (201, "made"),
        "LF-only lines"
    );
    // A client redirect: 302 with the script's Location.
    let r = get(a, "/cgi-bin/away.cgi");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://example.test/elsewhere?q=1")
    );
    let r = get(a, "/cgi-bin/moved.cgi");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/new/place"));
    // Local redirects: the server answers with that path itself (RFC 3875 6.2.2), a POST
    // turned into a GET of the new target.
    let r = fetch(
        a,
        "POST /cgi-bin/local.cgi HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "hello\n"), "{r:?}");
    assert!(r.header("location").is_none());
    let r = fetch(
        a,
        "POST /cgi-bin/chain.cgi HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.var("REQUEST_METHOD").unwrap(), "GET");
    assert_eq!(r.var("PATH_INFO").unwrap(), "/more");
    assert_eq!(r.var("QUERY_STRING").unwrap(), "from=chain");
    assert_eq!(r.var("CONTENT_LENGTH").unwrap(), "<unset>");
    // A redirect loop ends.
    assert_eq!(get(a, "/cgi-bin/loop.cgi").status, 500);
    // No body for 204, whatever the script wrote; the connection stays usable.
    let mut c = Conn::new(a);
    c.send(b"GET /cgi-bin/nobody.cgi HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 204);
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().text(), "hello\n");
    server.stop();
}

fn bad_gateway_and_timeout(model: Model) {
    let site = Site::new();
    site.script("cgi-bin/nohead.cgi", "echo just some text\n")
        .script("cgi-bin/empty.cgi", "exit 0\n")
        .script(
            "cgi-bin/nofield.cgi",
            "printf 'X-Only: this\\r\\n\\r\\nbody'\n",
        )
        .script(
            "cgi-bin/badstatus.cgi",
            "printf 'Status: abc\\r\\n\\r\\n'\n",
        )
        .script("cgi-bin/crash.cgi", "printf 'Content-Ty'\nkill -9 $$\n")
        .script("cgi-bin/slow.cgi", "echo started >&2\nsleep 30\n")
        .script(
            "cgi-bin/slowbody.cgi",
            "printf 'Content-Type: text/plain\\r\\n\\r\\npart'\nsleep 30\n",
        );
    let server = serve(model, &site, &["--cgi-timeout", "1"]);
    let a = server.addr();
    for s in ["nohead", "empty", "nofield", "badstatus", "crash"] {
        let r = get(a, &format!("/cgi-bin/{s}.cgi"));
        assert_eq!(r.status, 502, "{s}: {r:?}");
    }
    // Keep-alive survives a 502.
    let mut c = Conn::new(a);
    c.send(b"GET /cgi-bin/empty.cgi HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 502);
    c.send(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
    // Nothing sent yet at the timeout: 504, and the script is gone.
    let t = Instant::now();
    let r = get(a, "/cgi-bin/slow.cgi");
    assert_eq!(r.status, 504);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // The answer began: the connection is cut (no last chunk).
    let mut c = Conn::new(a);
    c.send(b"GET /cgi-bin/slowbody.cgi HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        c.try_response(false).is_none(),
        "a cut response is not whole"
    );
    let no_sleepers = wait_until(DEADLINE, || {
        process_tree(server.pid()).into_iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).map_or(true, |c| c.trim() != "sleep")
        })
    });
    assert!(
        no_sleepers,
        "timed-out scripts were killed with their group"
    );
    let (_, err) = server.stop();
    assert!(
        err.contains("plumb: cgi /cgi-bin/slow.cgi: started"),
        "script stderr reaches the server's: {err}"
    );
}

fn keep_alive_and_pipelining(model: Model) {
    let site = Site::new();
    site.script(
        "cgi-bin/hi.cgi",
        "printf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"hi $REQUEST_METHOD $QUERY_STRING\"\n",
    )
    .script(
        "cgi-bin/len.cgi",
        "printf 'Content-Type: text/plain\\r\\nContent-Length: 3\\r\\n\\r\\nabc'\n",
    )
    .script(
        "cgi-bin/cat.cgi",
        "printf 'Content-Type: text/plain\\r\\n\\r\\n'\ncat\n",
    );
    let server = serve(model, &site, &["-q"]);
    let mut c = Conn::new(server.addr());
    for i in 0..3 {
        c.send(format!("GET /cgi-bin/hi.cgi?{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.response();
        assert!(r.chunked, "no length from the script: chunked");
        assert!(r.header("connection").is_none(), "{r:?}");
        assert_eq!(r.text(), format!("hi GET {i}\n"));
    }
    c.send(b"GET /cgi-bin/len.cgi HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!((r.chunked, r.header("content-length")), (false, Some("3")));
    c.send(b"HEAD /cgi-bin/hi.cgi HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.try_response(true).unwrap();
    assert_eq!(r.status, 200);
    // Pipelined: a POST, a static file and a script in one write, answered in order.
    c.send(
        b"POST /cgi-bin/cat.cgi HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /cgi-bin/hi.cgi?last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(c.response().text(), "hello");
    assert_eq!(c.response().text(), "hello\n");
    let r = c.response();
    assert_eq!(r.text(), "hi GET last\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.at_eof());
    // HTTP/1.0 without a length: the body runs to the close.
    let r = fetch(server.addr(), "GET /cgi-bin/hi.cgi?old HTTP/1.0\r\n\r\n");
    assert!(!r.chunked);
    assert_eq!(r.text(), "hi GET old\n");
    // Static files keep refusing the methods scripts get.
    let r = fetch(
        server.addr(),
        "POST /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(r.status, 405);
    server.stop();
}

fn refusals_and_traversal(model: Model) {
    let site = Site::new();
    site.script("cgi-bin/ok.cgi", &printer(&["SCRIPT_NAME", "PATH_INFO"]))
        .script("cgi-bin/.hidden.cgi", &printer(&["SCRIPT_NAME"]))
        .script("app/run.cgi", &printer(&["SCRIPT_NAME", "PATH_INFO"]))
        .script("outside.cgi", &printer(&["SCRIPT_NAME"]));
    std::fs::write(
        site.root.join("cgi-bin/source.sh"),
        "#!/bin/sh\necho SECRET SOURCE\n",
    )
    .unwrap();
    std::fs::write(site.root.join("app/notes.txt"), "plain").unwrap();
    let outside = site.above().join("evil.cgi");
    std::fs::write(
        &outside,
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nEVIL'\n",
    )
    .unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&outside, site.root.join("cgi-bin/link.cgi")).unwrap();
    std::os::unix::fs::symlink("/bin/sh", site.root.join("cgi-bin/sh")).unwrap();
    let server = start_serve(
        model,
        &site.root,
        &["-q", "--cgi", "/cgi-bin/", "--cgi", "*.cgi"],
    );
    let a = server.addr();
    // Not executable under the prefix: 403, never the source.
    let r = get(a, "/cgi-bin/source.sh");
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("SECRET"));
    // Directories under the prefix are not listed.
    assert_eq!(get(a, "/cgi-bin/").status, 403);
    assert_eq!(get(a, "/cgi-bin/sub/").status, 403);
    assert_eq!(get(a, "/cgi-bin/missing.cgi").status, 404);
    // Symlinks out of the root are refused, to a script as to a file.
    assert_eq!(get(a, "/cgi-bin/link.cgi").status, 403);
    assert_eq!(get(a, "/cgi-bin/sh").status, 403);
    // Dotfiles: hidden, as for static files.
    assert_eq!(get(a, "/cgi-bin/.hidden.cgi").status, 404);
    // Traversal in every spelling: refused before any script is looked up.
    for t in [
        "/cgi-bin/../../evil.cgi",
        "/cgi-bin/%2e%2e/%2e%2e/evil.cgi",
        "/cgi-bin/..%2f..%2fevil.cgi",
        "/cgi-bin/ok.cgi/../../../evil.cgi",
        "/cgi-bin/ok.cgi%00.txt",
    ] {
        let r = get(a, t);
        assert!([400, 404].contains(&r.status), "{t}: {r:?}");
        assert!(!r.text().contains("EVIL"), "{t}");
    }
    // The path is normalised: a `..` that stays inside reaches the script.
    let r = get(a, "/cgi-bin/sub/../ok.cgi/x");
    assert_eq!(r.var("SCRIPT_NAME").unwrap(), "/cgi-bin/ok.cgi");
    assert_eq!(r.var("PATH_INFO").unwrap(), "/x");
    // The extension pattern: anywhere in the tree, PATH_INFO after the script.
    let r = get(a, "/app/run.cgi/extra/path");
    assert_eq!(r.var("SCRIPT_NAME").unwrap(), "/app/run.cgi");
    assert_eq!(r.var("PATH_INFO").unwrap(), "/extra/path");
    assert_eq!(
        get(a, "/app/notes.txt").text(),
        "plain",
        "other files stay static"
    );
    assert_eq!(get(a, "/outside.cgi").status, 200);
    // Methods scripts do not get.
    let r = fetch(
        a,
        "TRACE /cgi-bin/ok.cgi HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("POST"));
    server.stop();
}

fn no_zombies_no_leaks(model: Model) {
    let site = Site::new();
    site.script(
        "cgi-bin/hi.cgi",
        "printf 'Content-Type: text/plain\\r\\n\\r\\nhi'\n",
    )
    .script(
        "cgi-bin/ignore.cgi",
        "printf 'Content-Type: text/plain\\r\\n\\r\\nx'\n",
    )
    .script("cgi-bin/bad.cgi", "exit 3\n");
    let server = serve(model, &site, &["-q"]);
    let a = server.addr().to_string();
    // Warm up (the pools start their workers), then the baseline.
    for _ in 0..3 {
        assert_eq!(get(&a, "/cgi-bin/hi.cgi").status, 200);
    }
    let pid = server.pid();
    let base = settled(Duration::from_millis(300), || tree_fds(pid));
    let body = vec![b'z'; 200_000];
    for i in 0..60 {
        let mut c = Conn::new(&a);
        for j in 0..3 {
            match (i + j) % 3 {
                0 => c.send(b"GET /cgi-bin/hi.cgi HTTP/1.1\r\nHost: t\r\n\r\n"),
                1 => {
                    // A body the script never reads.
                    c.send(
                        format!(
                            "POST /cgi-bin/ignore.cgi HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    let _ = c.r.get_mut().write_all(&body);
                }
                _ => c.send(b"GET /cgi-bin/bad.cgi HTTP/1.1\r\nHost: t\r\n\r\n"),
            }
            match c.try_response(false) {
                Some(r) => assert!([200, 502].contains(&r.status), "{r:?}"),
                // After an unread body the server may close instead of reading it all.
                None => break,
            }
        }
    }
    let zombie_free = wait_until(DEADLINE, || {
        process_tree(pid)
            .into_iter()
            .all(|p| proc_state(p) != Some('Z'))
    });
    assert!(zombie_free, "model {model}: a zombie under the server");
    let scripts_gone = wait_until(DEADLINE, || {
        process_tree(pid).into_iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).map_or(true, |c| c.trim() == "plumb")
        })
    });
    assert!(scripts_gone, "model {model}: a script outlived its request");
    let after = settled(Duration::from_millis(300), || tree_fds(pid));
    assert!(
        after <= base,
        "model {model}: {base} descriptors before, {after} after 180 CGI requests"
    );
    server.stop();
}

macro_rules! per_model {
    ($($name:ident => $model:expr),* $(,)?) => {
        mod request_vars { use super::*; $(#[test] fn $name() { request_group($model); })* }
        mod server_client_vars { use super::*; $(#[test] fn $name() { server_and_client_group($model); })* }
        mod header_vars { use super::*; $(#[test] fn $name() { header_group($model); })* }
        mod body_vars { use super::*; $(#[test] fn $name() { body_group($model); })* }
        mod large_bodies { use super::*; $(#[test] fn $name() { large_upload_and_download($model); })* }
        mod status_location { use super::*; $(#[test] fn $name() { status_and_location($model); })* }
        mod bad_gateway_timeout { use super::*; $(#[test] fn $name() { bad_gateway_and_timeout($model); })* }
        mod keep_alive { use super::*; $(#[test] fn $name() { keep_alive_and_pipelining($model); })* }
        mod refusals { use super::*; $(#[test] fn $name() { refusals_and_traversal($model); })* }
        mod proc_clean { use super::*; $(#[test] fn $name() { no_zombies_no_leaks($model); })* }
        #[test]
        fn every_model_is_tested() {
            assert_eq!(&[$($model),*][..], Model::ALL);
        }
    };
}

for_every_model!(per_model);

#[test]
fn bad_cgi_options_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for bad in [
        &["serve", d, "--cgi", "cgi-bin"][..],
        &["serve", d, "--cgi", "*."],
        &["serve", d, "--cgi", "/a/../../b"],
        &["serve", d, "--cgi", "/x", "--cgi-timeout", "0"],
        &["serve", d, "--cgi", "/x", "--cgi-timeout", "-1"],
    ] {
        let (code, err) = start_fails(bad);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
}
