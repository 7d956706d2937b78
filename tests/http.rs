//! `plumb serve` end to end, under every model: files of 0 B, 1 KiB and 10 MiB byte-exact,
//! HEAD, keep-alive, pipelining, ranges, conditionals, listings with awkward names,
//! redirects, index.html, error statuses, and the access log (which crosses a pipe under
//! the fork models).

mod common;

use std::path::Path;

use common::http::{Client, Response, fetch, get, start_serve, start_serve_default_pools};
use common::*;
use plumb::models::Model;

/// A document root with known content.
struct Root {
    dir: tempfile::TempDir,
    one_k: Vec<u8>,
    big: Vec<u8>,
}

fn make_root() -> Root {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let one_k = random_bytes(1024, 1);
    let big = random_bytes(10 * 1024 * 1024, 2);
    std::fs::write(p.join("empty.txt"), b"").unwrap();
    std::fs::write(p.join("one_k.bin"), &one_k).unwrap();
    std::fs::write(p.join("big.bin"), &big).unwrap();
    for i in 0..10 {
        std::fs::write(p.join(format!("n{i}.txt")), format!("file number {i}\n")).unwrap();
    }
    let list = p.join("list");
    std::fs::create_dir(&list).unwrap();
    for name in [
        "a b.txt",
        "x<y>.txt",
        "Tom & Jerry.txt",
        "é€ ünï.txt",
        ".hidden",
    ] {
        std::fs::write(list.join(name), name.as_bytes()).unwrap();
    }
    std::fs::create_dir(list.join("sub dir")).unwrap();
    std::fs::create_dir(p.join("site")).unwrap();
    std::fs::write(p.join("site/index.html"), b"<h1>site</h1>\n").unwrap();
    Root { dir, one_k, big }
}

fn start(model: Model, root: &Path) -> Server {
    start_serve(model, root, &[])
}

fn suite(model: Model) {
    let root = make_root();
    let server = start(model, root.dir.path());
    let addr = server.addr().to_string();
    let ctx = format!("model {model}");

    // Sizes, byte-exact.
    let r = fetch(&addr, &get("/empty.txt", ""));
    assert_eq!((r.status, r.body.len()), (200, 0), "{ctx}");
    assert_eq!(r.header("content-length"), Some("0"));
    let r = fetch(&addr, &get("/one_k.bin", ""));
    assert_eq!(r.status, 200, "{ctx}");
    assert_eq!(r.body, root.one_k, "{ctx}");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    for h in ["date", "server", "etag", "last-modified"] {
        assert!(r.header(h).is_some(), "{ctx}: {h} missing");
    }
    let r = fetch(&addr, &get("/big.bin", ""));
    assert_eq!(r.status, 200, "{ctx}");
    assert_eq!(sha256_hex(&r.body), sha256_hex(&root.big), "{ctx}: 10 MiB");
    let r = fetch(&addr, &get("/n1.txt", ""));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    // HEAD: the same head, no body (the next response on the connection proves it).
    let mut c = Client::new(&addr);
    c.send(b"HEAD /one_k.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response(true);
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("1024")),
        "{ctx}"
    );
    c.send(&get("/n0.txt", ""));
    assert_eq!(
        c.response(false).text(),
        "file number 0\n",
        "{ctx}: HEAD sent a body"
    );

    // Keep-alive: several requests, one connection, then Connection: close.
    for i in 1..6 {
        c.send(&get(&format!("/n{i}.txt"), ""));
        let r = c.response(false);
        assert_eq!(r.text(), format!("file number {i}\n"), "{ctx}");
        assert!(!r.closes());
    }
    c.send(&get("/n9.txt", "Connection: close\r\n"));
    assert!(c.response(false).closes(), "{ctx}");
    assert!(c.at_eof(), "{ctx}: closes after Connection: close");

    // HTTP/1.0: closes unless keep-alive is asked for.
    let mut c = Client::new(&addr);
    c.send(b"GET /n2.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(
        c.response(false).header("connection"),
        Some("keep-alive"),
        "{ctx}"
    );
    c.send(b"GET /n3.txt HTTP/1.0\r\n\r\n");
    assert_eq!(c.response(false).text(), "file number 3\n");
    assert!(c.at_eof(), "{ctx}: HTTP/1.0 closes");

    // Pipelining: ten requests in one write, ten answers in order.
    let mut c = Client::new(&addr);
    let burst: Vec<u8> = (0..10)
        .flat_map(|i| get(&format!("/n{i}.txt"), ""))
        .collect();
    c.send(&burst);
    for i in 0..10 {
        assert_eq!(
            c.response(false).text(),
            format!("file number {i}\n"),
            "{ctx}: pipelined #{i}"
        );
    }
    drop(c);

    ranges(&addr, &root, &ctx);
    conditionals(&addr, &ctx);
    listings(&addr, &ctx);

    // Redirect, index.html, errors.
    let r = fetch(&addr, &get("/list", ""));
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/list/")),
        "{ctx}"
    );
    let r = fetch(&addr, &get("/site/", ""));
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "<h1>site</h1>\n"),
        "{ctx}"
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(fetch(&addr, &get("/nope.txt", "")).status, 404, "{ctx}");
    assert_eq!(fetch(&addr, &get("/list/.hidden", "")).status, 404, "{ctx}");
    let r = fetch(
        &addr,
        b"POST /n1.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD")),
        "{ctx}"
    );
    assert_eq!(
        fetch(&addr, b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n").status,
        501,
        "{ctx}"
    );

    // The access log: one Combined Log Format line per request, also from forked children.
    let want = [
        "\"GET /one_k.bin HTTP/1.1\" 200 1024 \"-\" \"-\"",
        "\"HEAD /one_k.bin HTTP/1.1\" 200 - ",
        "\"GET /nope.txt HTTP/1.1\" 404 ",
        "\"BREW /pot HTTP/1.1\" 501 ",
        "\"GET /n9.txt HTTP/1.1\" 200 ",
    ];
    let logged = wait_until(DEADLINE, || {
        let err = server.stderr();
        want.iter().all(|w| {
            err.lines()
                .any(|l| l.starts_with("127.0.0.1 - - [") && l.contains(w))
        })
    });
    assert!(
        logged,
        "{ctx}: access log lines missing:\n{}",
        server.stderr()
    );
    let (status, _) = server.stop();
    assert!(status.success(), "{ctx}: {status}");
}

fn ranges(addr: &str, root: &Root, ctx: &str) {
    let r = fetch(addr, &get("/one_k.bin", "Range: bytes=100-199\r\n"));
    assert_eq!(r.status, 206, "{ctx}");
    assert_eq!(r.header("content-range"), Some("bytes 100-199/1024"));
    assert_eq!(r.body, root.one_k[100..200], "{ctx}");
    let r = fetch(addr, &get("/one_k.bin", "Range: bytes=-24\r\n"));
    assert_eq!(
        (r.status, &r.body[..]),
        (206, &root.one_k[1000..]),
        "{ctx}: suffix"
    );
    // A large single range goes out with sendfile.
    let r = fetch(addr, &get("/big.bin", "Range: bytes=1000000-\r\n"));
    assert_eq!(r.status, 206, "{ctx}");
    assert_eq!(
        sha256_hex(&r.body),
        sha256_hex(&root.big[1_000_000..]),
        "{ctx}"
    );

    let r = fetch(addr, &get("/one_k.bin", "Range: bytes=0-9, 500-509\r\n"));
    assert_eq!(r.status, 206, "{ctx}");
    let parts = multipart(&r);
    assert_eq!(
        parts,
        vec![
            ("bytes 0-9/1024".to_string(), root.one_k[0..10].to_vec()),
            (
                "bytes 500-509/1024".to_string(),
                root.one_k[500..510].to_vec()
            ),
        ],
        "{ctx}: multipart"
    );
    let r = fetch(
        addr,
        &get("/big.bin", "Range: bytes=0-99999,5000000-5099999\r\n"),
    );
    let parts = multipart(&r);
    assert_eq!(parts.len(), 2, "{ctx}");
    assert_eq!(
        parts[1].1,
        root.big[5_000_000..5_100_000],
        "{ctx}: large multipart"
    );

    // Overlapping ranges do not amplify the answer.
    let many = vec!["0-1023"; 50].join(",");
    let r = fetch(
        addr,
        &get("/one_k.bin", &format!("Range: bytes={many}\r\n")),
    );
    assert!(
        r.body.len() <= 1024 + 200,
        "{ctx}: {} bytes for a 1 KiB file",
        r.body.len()
    );

    let r = fetch(addr, &get("/one_k.bin", "Range: bytes=5000-\r\n"));
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */1024")),
        "{ctx}"
    );
    let etag = fetch(addr, &get("/one_k.bin", ""))
        .header("etag")
        .unwrap()
        .to_string();
    let r = fetch(
        addr,
        &get(
            "/one_k.bin",
            &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
        ),
    );
    assert_eq!(r.status, 206, "{ctx}: If-Range matches");
    let r = fetch(
        addr,
        &get("/one_k.bin", "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n"),
    );
    assert_eq!(
        (r.status, r.body.len()),
        (200, 1024),
        "{ctx}: If-Range differs"
    );
}

/// Splits a multipart/byteranges body into (Content-Range, data) pairs.
fn multipart(r: &Response) -> Vec<(String, Vec<u8>)> {
    let ct = r.header("content-type").expect("content-type");
    let boundary = ct.split("boundary=").nth(1).expect("boundary");
    let delim = format!("\r\n--{boundary}");
    let body = &r.body;
    let find = |from: usize, pat: &[u8]| {
        body[from..]
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(0, delim.as_bytes()).expect("first boundary");
    loop {
        let after = at + delim.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let head_end = find(after, b"\r\n\r\n").expect("part head") + 4;
        let head = String::from_utf8_lossy(&body[after..head_end]).into_owned();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("part Content-Range")
            .to_string();
        let next = find(head_end, delim.as_bytes()).expect("next boundary");
        parts.push((range, body[head_end..next].to_vec()));
        at = next;
    }
    parts
}

fn conditionals(addr: &str, ctx: &str) {
    let r = fetch(addr, &get("/one_k.bin", ""));
    let etag = r.header("etag").unwrap().to_string();
    let modified = r.header("last-modified").unwrap().to_string();
    let r = fetch(
        addr,
        &get("/one_k.bin", &format!("If-None-Match: {etag}\r\n")),
    );
    assert_eq!((r.status, r.body.len()), (304, 0), "{ctx}");
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = fetch(
        addr,
        &get("/one_k.bin", &format!("If-Modified-Since: {modified}\r\n")),
    );
    assert_eq!(r.status, 304, "{ctx}");
    let r = fetch(addr, &get("/one_k.bin", "If-None-Match: \"other\"\r\n"));
    assert_eq!(r.status, 200, "{ctx}");
    let r = fetch(addr, &get("/one_k.bin", "If-Match: \"other\"\r\n"));
    assert_eq!(r.status, 412, "{ctx}");
    let r = fetch(addr, &get("/one_k.bin", &format!("If-Match: {etag}\r\n")));
    assert_eq!(r.status, 200, "{ctx}");
    let r = fetch(
        addr,
        &get(
            "/one_k.bin",
            "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
        ),
    );
    assert_eq!(r.status, 412, "{ctx}");
}

fn listings(addr: &str, ctx: &str) {
    let r = fetch(addr, &get("/list/", ""));
    assert_eq!(r.status, 200, "{ctx}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    for want in [
        "<a href=\"./sub%20dir/\">sub dir/</a>",
        "<a href=\"./a%20b.txt\">a b.txt</a>",
        "<a href=\"./x%3Cy%3E.txt\">x&lt;y&gt;.txt</a>",
        "<a href=\"./Tom%20%26%20Jerry.txt\">Tom &amp; Jerry.txt</a>",
        "<a href=\"./%C3%A9%E2%82%AC%20%C3%BCn%C3%AF.txt\">é€ ünï.txt</a>",
        "<a href=\"../\">../</a>",
    ] {
        assert!(html.contains(want), "{ctx}: listing lacks {want}:\n{html}");
    }
    assert!(!html.contains("hidden"), "{ctx}: dotfile listed");
    let pos = |s: &str| html.find(s).unwrap();
    assert!(
        pos("sub dir/") < pos("Tom &amp;") && pos("Tom &amp;") < pos("a b.txt"),
        "{ctx}: sorted"
    );
    // Each listed link leads to the file.
    let r = fetch(addr, &get("/list/x%3Cy%3E.txt", ""));
    assert_eq!(r.text(), "x<y>.txt", "{ctx}");
    let r = fetch(addr, &get("/list/%C3%A9%E2%82%AC%20%C3%BCn%C3%AF.txt", ""));
    assert_eq!(r.text(), "é€ ünï.txt", "{ctx}");

    let r = fetch(addr, &get("/list/", "Accept: application/json\r\n"));
    assert_eq!(r.header("content-type"), Some("application/json"), "{ctx}");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("valid JSON");
    let mut names: Vec<(String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    names.sort();
    let mut want: Vec<(String, String)> = [
        ("Tom & Jerry.txt", "file"),
        ("a b.txt", "file"),
        ("sub dir", "dir"),
        ("x<y>.txt", "file"),
        ("é€ ünï.txt", "file"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    want.sort();
    assert_eq!(names, want, "{ctx}");
    assert_eq!(v["path"], "/list/");
}

/// Header timeout (408, then close), keep-alive timeout (quiet close) and --max-requests.
fn timeouts(model: Model) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"hello").unwrap();
    let server = start_serve_default_pools(
        model,
        root.path(),
        &[
            "--header-timeout",
            "0.5",
            "--keepalive-timeout",
            "0.5",
            "--max-requests",
            "2",
            "-q",
        ],
    );
    let addr = server.addr();
    let ctx = format!("model {model}");

    let mut c = Client::new(addr);
    c.send(b"GET /a.txt HTTP/1.1\r\nHost:");
    let r = c.response(false);
    assert_eq!(r.status, 408, "{ctx}: slow head");
    assert!(r.closes() && c.at_eof(), "{ctx}");

    let mut c = Client::new(addr);
    c.send(&get("/a.txt", ""));
    assert_eq!(c.response(false).status, 200, "{ctx}");
    assert!(c.at_eof(), "{ctx}: idle keep-alive connection closes");
    drop(c);

    let mut c = Client::new(addr);
    c.send(&get("/a.txt", "").repeat(3));
    assert!(!c.response(false).closes(), "{ctx}");
    assert!(
        c.response(false).closes(),
        "{ctx}: the second of --max-requests 2 closes"
    );
    assert!(c.at_eof(), "{ctx}: the third is not answered");
    drop(c);
    server.stop();
}

/// SIGTERM closes idle keep-alive connections at once instead of holding the shutdown for
/// the keep-alive timeout or the grace period, and finishes an answer in flight with
/// `Connection: close`.
fn drain_closes_idle_connections(model: Model) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"hello").unwrap();
    let mut server = start_serve_default_pools(
        model,
        root.path(),
        &["--keepalive-timeout", "120", "--grace", "120", "-q"],
    );
    let ctx = format!("model {model}");
    let mut c = Client::new(server.addr());
    c.send(&get("/a.txt", ""));
    assert_eq!(c.response(false).status, 200, "{ctx}");
    server.signal(plumb_sys::signal::SIGTERM);
    assert!(
        c.at_eof(),
        "{ctx}: the idle connection is closed by the drain"
    );
    let status = server
        .wait_exit(DEADLINE)
        .expect("exits well before the grace period");
    assert!(status.success(), "{ctx}: {status}");
}

/// An edit in place within `--file-cache-valid` is served as it is now: the bug was the old
/// length, ETag and Last-Modified over the new bytes (`v2 this ` under `Content-Length: 8`),
/// and a 500 after a shrink.
fn edits_in_place_are_never_served_torn(model: Model) {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("e.txt");
    std::fs::write(&file, b"v1 short").unwrap();
    // A period far longer than the test: only a check of the descriptor can see the edits.
    let server = start_serve(model, root.path(), &["--file-cache-valid", "3600", "-q"]);
    let ctx = format!("model {model}");
    let mut tags = Vec::new();
    for content in [&b"v1 short"[..], b"v2 this is longer", b"v3"] {
        std::fs::write(&file, content).unwrap();
        // On a fresh connection, then twice on one kept-alive connection (a cache hit in
        // the worker that serves it, whatever the model). One connection at a time, for the
        // iterative models.
        let mut c = Client::new(server.addr());
        c.send(&[get("/e.txt", ""), get("/e.txt", "Connection: close\r\n")].concat());
        let (second, third) = (c.response(false), c.response(false));
        drop(c);
        for r in [fetch(server.addr(), &get("/e.txt", "")), second, third] {
            assert_eq!(r.status, 200, "{ctx}: {content:?}");
            assert_eq!(r.body, content, "{ctx}");
            let len = content.len().to_string();
            assert_eq!(r.header("content-length"), Some(&len[..]), "{ctx}");
            tags.push(r.header("etag").unwrap().to_string());
        }
        // A validator from before the edit does not match what is there now.
        if tags.len() > 3 {
            let old = &tags[tags.len() - 4];
            let r = fetch(
                server.addr(),
                &get("/e.txt", &format!("If-None-Match: {old}\r\n")),
            );
            assert_eq!((r.status, &r.body[..]), (200, content), "{ctx}");
        }
    }
    assert!(tags[..3].iter().all(|t| *t == tags[0]), "{ctx}: {tags:?}");
    assert!(tags[2] != tags[3] && tags[5] != tags[6], "{ctx}: {tags:?}");
    server.stop();
}

/// The body bytes the access log gives for the request with `target`, once it is there.
fn logged_bytes(server: &Server, target: &str) -> Option<u64> {
    let key = format!("\"GET {target} HTTP/1.1\" 200 ");
    let mut found = None;
    wait_until(DEADLINE, || {
        found = server.stderr().lines().find_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            let n = rest.split(' ').next()?;
            Some(if n == "-" { 0 } else { n.parse().ok()? })
        });
        found.is_some()
    });
    found
}

/// Reads from `c` until more than `n` bytes came (head included).
fn read_at_least(c: &mut Stream, n: usize) -> usize {
    use std::io::Read;
    let mut got = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    while got <= n {
        let k = c.read(&mut chunk).expect("read the body");
        assert!(k > 0, "EOF after {got} bytes");
        got += k;
    }
    got
}

/// The access log gives the body bytes that went out: exactly the length when the transfer
/// completes, less when the client goes away or the grace period cuts it. The bug: a download
/// stopped at 13.8 MB of 50 was logged `200 50000000`.
fn interrupted_downloads_log_what_went_out(model: Model) {
    use std::io::Write;
    const HUGE: u64 = 64 << 20;
    let root = tempfile::tempdir().unwrap();
    // Sparse: 64 MiB, far more than the socket buffers of both ends can hold.
    let huge = std::fs::File::create(root.path().join("huge.bin")).unwrap();
    huge.set_len(HUGE).unwrap();
    std::fs::write(root.path().join("two_m.bin"), random_bytes(2 << 20, 3)).unwrap();
    let mut server = start_serve(model, root.path(), &["--grace", "0.5"]);
    let ctx = format!("model {model}");

    // Complete: exact, for a body from memory and for one by sendfile.
    let r = fetch(server.addr(), &get("/two_m.bin", ""));
    assert_eq!(r.body.len(), 2 << 20, "{ctx}");
    assert_eq!(logged_bytes(&server, "/two_m.bin"), Some(2 << 20), "{ctx}");
    let r = fetch(
        server.addr(),
        &get("/two_m.bin?range", "Range: bytes=0-99\r\n"),
    );
    assert_eq!(r.body.len(), 100, "{ctx}");
    let want = "\"GET /two_m.bin?range HTTP/1.1\" 206 100 ";
    let logged = wait_until(DEADLINE, || server.stderr().contains(want));
    assert!(logged, "{ctx}: {}", server.stderr());

    // The client reads a little and goes away.
    let mut c = connect(server.addr());
    c.write_all(&get("/huge.bin?gone", "")).unwrap();
    let read = read_at_least(&mut c, 1 << 20) as u64;
    drop(c);
    let n = logged_bytes(&server, "/huge.bin?gone").expect("logged");
    assert!(
        n < HUGE && n + 1024 >= read,
        "{ctx}: logged {n}, client read {read}"
    );

    // A slow client when the server is stopped: the grace period ends the transfer.
    let mut c = connect(server.addr());
    c.write_all(&get("/huge.bin?stopped", "")).unwrap();
    let read = read_at_least(&mut c, 1 << 20) as u64;
    server.signal(plumb_sys::signal::SIGINT);
    let status = server
        .wait_exit(DEADLINE)
        .expect("exits after the grace period");
    assert!(status.success(), "{ctx}: {status}");
    drop(c);
    std::thread::sleep(std::time::Duration::from_millis(50)); // the reader threads' last lines
    let n = logged_bytes(&server, "/huge.bin?stopped").expect("logged");
    eprintln!("{ctx}: cut by the grace period at {n} of {HUGE} bytes, client read {read}");
    assert!(
        n < HUGE && n + 1024 >= read,
        "{ctx}: logged {n}, client read {read}"
    );
}

/// A large file edited in place while it is being sent (by sendfile) must not reach the
/// client as a complete response under the old length and validators: the bytes it holds may
/// mix two versions. The connection ends short instead. (Before, every byte went out and the
/// response looked whole.)
fn edited_while_sent_ends_short(model: Model) {
    use std::io::{Read, Seek, Write};
    const BIG: usize = 32 << 20;
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("big.bin");
    std::fs::write(&path, random_bytes(BIG, 11)).unwrap();
    let server = start_serve(model, root.path(), &[]);
    let ctx = format!("model {model}");
    let mut c = connect(server.addr());
    c.write_all(&get("/big.bin", "")).unwrap();
    let read = read_at_least(&mut c, 1 << 20);
    // An editor writing into the open file: same size, other bytes, new mtime.
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(&random_bytes(BIG, 12)).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest); // EOF or a reset: either way, short
    let head_and_body = read + rest.len();
    assert!(
        head_and_body < BIG,
        "{ctx}: the client got {head_and_body} bytes, a whole response of a file edited mid-send"
    );
    // The server goes on serving.
    let r = fetch(server.addr(), &get("/big.bin", ""));
    assert_eq!(r.body.len(), BIG, "{ctx}");
}

/// A root of awkward names: each regular file holds its own name; FIFOs and sockets beside
/// them cannot be served. Returns the root and the files (relative paths, as bytes).
fn awkward_root() -> (
    tempfile::TempDir,
    std::os::unix::net::UnixListener,
    Vec<Vec<u8>>,
) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join(OsStr::from_bytes(b"d\xe9j\xe0 vu"))).unwrap();
    let files: Vec<Vec<u8>> = [
        &b"back\\slash.txt"[..],
        b"caf\xe9 latin-1.txt",
        b"100% sure?#.txt",
        b"plain.txt",
        b"d\xe9j\xe0 vu/inner\xff.bin",
        b"d\xe9j\xe0 vu/x\\..\\y",
    ]
    .iter()
    .map(|f| f.to_vec())
    .collect();
    for f in &files {
        std::fs::write(p.join(OsStr::from_bytes(f)), f).unwrap();
    }
    let fifo = std::process::Command::new("mkfifo")
        .arg(p.join("a.fifo"))
        .status()
        .is_ok_and(|s| s.success());
    if !fifo {
        eprintln!("no mkfifo here: the FIFO case is not tested");
    }
    let sock = std::os::unix::net::UnixListener::bind(p.join("a.sock")).unwrap();
    (dir, sock, files)
}

/// The links of an HTML listing (`../` left out).
fn listed_links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|h| *h != "../")
        .map(|h| h.trim_start_matches("./").to_string())
        .collect()
}

/// Every link of every listing fetches (200, the file's own bytes), and every file is listed,
/// whatever its name. The bugs: `back\slash.txt` was listed but answered 400, a FIFO was
/// listed but answered 403, a name that is not UTF-8 was left out.
fn every_listed_link_fetches(model: Model) {
    let (root, _sock, files) = awkward_root();
    let server = start_serve(model, root.path(), &["-q"]);
    let addr = server.addr();
    let ctx = format!("model {model}");
    let mut fetched = Vec::new();
    let mut dirs = vec![String::from("/")];
    while let Some(dir) = dirs.pop() {
        let r = fetch(addr, &get(&dir, ""));
        assert_eq!(r.status, 200, "{ctx}: {dir}");
        let html = r.text();
        assert!(
            !html.contains("a.fifo") && !html.contains("a.sock"),
            "{ctx}: {html}"
        );
        let links = listed_links(&html);
        // The JSON listing links the same names.
        let r = fetch(addr, &get(&dir, "Accept: application/json\r\n"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("valid JSON");
        let hrefs: Vec<&str> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["href"].as_str().unwrap())
            .collect();
        assert_eq!(hrefs, links, "{ctx}: {dir}");
        for link in links {
            let url = format!("{dir}{link}");
            if link.ends_with('/') {
                dirs.push(url);
                continue;
            }
            let r = fetch(addr, &get(&url, ""));
            assert_eq!(r.status, 200, "{ctx}: {url}");
            fetched.push(r.body);
        }
    }
    fetched.sort();
    let mut want = files.clone();
    want.sort();
    assert_eq!(
        fetched, want,
        "{ctx}: every file listed, each link its file"
    );
    server.stop();
}

/// `wget -r` mirrors a site of awkward names without one failed link (it exited 8 before).
#[test]
fn wget_mirrors_awkward_names() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    if std::process::Command::new("wget")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: no wget here");
        return;
    }
    let (root, _sock, files) = awkward_root();
    let server = Server::start(&[
        "serve",
        root.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "-q",
    ]);
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("wget")
        .args([
            "-r",
            "-np",
            "-nH",
            "-q",
            "-e",
            "robots=off",
            "--tries=1",
            "--timeout=20",
        ])
        .arg("--restrict-file-names=nocontrol")
        .arg(format!("http://{}/", server.addr()))
        .current_dir(out.path())
        .status()
        .expect("run wget");
    assert!(status.success(), "wget -r: {status}");
    for f in &files {
        let got = std::fs::read(out.path().join(OsStr::from_bytes(f)))
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(f)));
        assert_eq!(&got, f);
    }
    server.stop();
}

macro_rules! per_model {
    ($($name:ident => $model:expr),* $(,)?) => {
        $(#[test] fn $name() {
            suite($model);
            timeouts($model);
            drain_closes_idle_connections($model);
            edits_in_place_are_never_served_torn($model);
            interrupted_downloads_log_what_went_out($model);
            edited_while_sent_ends_short($model);
            every_listed_link_fetches($model);
        })*
        /// The list above covers every model the binary has.
        #[test]
        fn every_model_is_tested() {
            let tested = [$($model),*];
            assert_eq!(&tested[..], Model::ALL);
        }
    };
}

for_every_model!(per_model);

#[test]
fn command_line_errors_are_one_line() {
    let (code, _, err) = run_plumb(&["serve", "/definitely/not/here"], b"");
    assert_eq!(code, 2);
    assert!(
        err.starts_with("plumb: cannot serve /definitely/not/here") && err.lines().count() == 1,
        "{err}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let (code, _, err) = run_plumb(&["serve", file.path().to_str().unwrap()], b"");
    assert_eq!(code, 2);
    assert!(err.contains("not a directory"), "{err}");
    let (code, _, err) = run_plumb(&["serve", ".", "--header-timeout", "-1"], b"");
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run_plumb(&["serve", ".", "--file-cache-valid=-1"], b"");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--file-cache-valid") && err.lines().count() == 1,
        "{err}"
    );
}

/// The open-file cache: a replaced or edited file is served as it is now, at once with
/// `--file-cache-valid 0`, within the period by default.
#[test]
fn edited_and_replaced_files_are_served_fresh() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("a.txt");
    std::fs::write(&file, b"one").unwrap();
    let r = root.path().to_str().unwrap();
    let strict = Server::start(&[
        "serve",
        r,
        "--listen",
        "127.0.0.1:0",
        "-q",
        "--file-cache-valid",
        "0",
    ]);
    let default = Server::start(&["serve", r, "--listen", "127.0.0.1:0", "-q"]);
    for s in [&strict, &default] {
        assert_eq!(fetch(s.addr(), &get("/a.txt", "")).text(), "one");
    }
    let tmp = root.path().join("a.tmp");
    std::fs::write(&tmp, b"second").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    assert_eq!(fetch(strict.addr(), &get("/a.txt", "")).text(), "second");
    std::fs::write(&file, b"third, in place").unwrap();
    let r = fetch(strict.addr(), &get("/a.txt", ""));
    assert_eq!(r.text(), "third, in place");
    assert_eq!(r.header("content-length"), Some("15"));
    // The default trusts an entry for a second: the edit shows within that.
    let seen = wait_until(DEADLINE, || {
        fetch(default.addr(), &get("/a.txt", "")).text() == "third, in place"
    });
    assert!(seen, "the default cache never showed the edit");
    strict.stop();
    default.stop();
}

#[test]
fn symlinks_quiet_and_access_log_file() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link")).unwrap();
    std::fs::write(root.path().join(".dot"), b"dot").unwrap();
    let log = root
        .path()
        .join("..")
        .join(format!("access-{}.log", std::process::id()));
    let log = outside.path().join(log.file_name().unwrap());
    let r = root.path().to_str().unwrap();
    let server = Server::start(&["serve", r, "--listen", "127.0.0.1:0", "-q"]);
    assert_eq!(fetch(server.addr(), &get("/link", "")).status, 403);
    assert_eq!(fetch(server.addr(), &get("/.dot", "")).status, 404);
    let (_, err) = server.stop();
    assert!(!err.contains("GET /link"), "-q logs nothing: {err}");

    let server = Server::start(&[
        "serve",
        r,
        "--listen",
        "127.0.0.1:0",
        "--follow-symlinks",
        "--hidden",
        "--access-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(fetch(server.addr(), &get("/link", "")).text(), "secret");
    assert_eq!(fetch(server.addr(), &get("/.dot", "")).text(), "dot");
    let ok = wait_until(DEADLINE, || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("\"GET /.dot HTTP/1.1\" 200 3"))
    });
    assert!(ok, "access log file");
    server.stop();
}

/// `serve --proxy`: a relay in front of a server; 502 (with Date and Server) when the upstream
/// is down, under every model.
#[test]
fn proxy_mode() {
    let root = make_root();
    let origin = start(Model::Pool, root.dir.path());
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    for model in [Model::Pool, Model::Fork] {
        let proxy = Server::start(&[
            "serve",
            "--proxy",
            origin.addr(),
            "--listen",
            "127.0.0.1:0",
            "--model",
            model.name(),
        ]);
        let r = fetch(proxy.addr(), &get("/big.bin", "Connection: close\r\n"));
        assert_eq!(sha256_hex(&r.body), sha256_hex(&root.big), "model {model}");
        proxy.stop();
    }
    for &model in Model::ALL {
        let proxy = Server::start(&[
            "serve",
            "--proxy",
            &dead_addr,
            "--listen",
            "127.0.0.1:0",
            "--model",
            model.name(),
        ]);
        let r = fetch(proxy.addr(), &get("/", ""));
        assert_eq!(r.status, 502, "model {model}");
        // Like every other answer (it had neither).
        assert_eq!(r.header("server"), Some("plumb"), "model {model}");
        let date = r.header("date").expect("a Date on the 502");
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        proxy.stop();
    }
    origin.stop();
}

/// IPv4, IPv6 and UNIX sockets all serve, and the log names the client of each.
#[test]
fn every_transport() {
    let root = make_root();
    let sock_dir = tempfile::tempdir().unwrap();
    for t in Transport::ALL {
        let Some(listen) = t.listen_arg(&sock_dir) else {
            continue;
        };
        let server = Server::start(&[
            "serve",
            root.dir.path().to_str().unwrap(),
            "--listen",
            &listen,
        ]);
        let r = fetch(server.addr(), &get("/one_k.bin", ""));
        assert_eq!(r.body, root.one_k, "{t:?}");
        let host = match t {
            Transport::V4 => "127.0.0.1 ",
            Transport::V6 => "::1 ",
            Transport::Unix => "unix ",
        };
        let logged = wait_until(DEADLINE, || {
            server
                .stderr()
                .lines()
                .any(|l| l.starts_with(host) && l.contains("GET /one_k.bin"))
        });
        assert!(logged, "{t:?}: {}", server.stderr());
        server.stop();
    }
}
