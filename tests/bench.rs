//! End-to-end tests of `plumb bench`: against a real `plumb echo` (counts, pipelining, UNIX
//! sockets, --rate), against small misbehaving HTTP servers written here (500s, early closes,
//! silence), the --json document, the one-line errors for bad targets and options, exit
//! statuses (nothing answered, --fail-on-errors) and SIGINT mid-run.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::{Server, run_plumb};
use serde_json::Value;

fn bench_json(args: &[&str]) -> Value {
    let (code, v, err) = bench_json_status(args);
    assert_eq!(code, 0, "plumb bench {args:?} failed: {err}");
    v
}

/// Runs `plumb bench ARGS --json`: (exit code, the JSON on stdout, stderr).
fn bench_json_status(args: &[&str]) -> (i32, Value, String) {
    let mut full = vec!["bench"];
    full.extend_from_slice(args);
    full.push("--json");
    let (code, out, err) = run_plumb(&full, b"");
    let v = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "plumb {full:?} (exit {code}, {err}) printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    });
    (code, v, err)
}

fn errors(v: &Value) -> BTreeMap<String, u64> {
    v["errors"]
        .as_object()
        .expect("errors object")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().expect("count")))
        .collect()
}

fn assert_no_errors(v: &Value) {
    let e = errors(v);
    assert!(e.values().all(|n| *n == 0), "errors: {e:?}");
}

fn echo_server() -> Server {
    Server::start(&["echo", "--listen", "127.0.0.1:0", "--model", "thread", "-q"])
}

#[test]
fn counts_exactly_the_requests_asked_for_against_plumb_echo() {
    let server = echo_server();
    let target = format!("echo://{}", server.addr());
    for (extra, n) in [
        (&["-c", "4"][..], 500u64),
        (&["-c", "3", "-t", "2", "--size", "1000"][..], 301),
        (&["-c", "2", "--pipeline", "8"][..], 403),
        (&["-c", "2", "--close"][..], 50),
        // Sizes read as everywhere else (this was a usage error).
        (&["-c", "2", "--size", "1KiB"][..], 40),
    ] {
        let n_s = n.to_string();
        let mut args = vec![target.as_str(), "-n", &n_s];
        args.extend_from_slice(extra);
        let v = bench_json(&args);
        assert_eq!(v["requests"], n, "{args:?}: {v}");
        assert_eq!(v["status"]["echo"], n, "{args:?}");
        assert_no_errors(&v);
        let size: u64 = if extra.contains(&"1000") {
            1000
        } else if extra.contains(&"1KiB") {
            1024
        } else {
            64
        };
        assert_eq!(v["bytes"], n * size, "{args:?}");
    }
    server.stop();
}

#[test]
fn benches_an_echo_server_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("unix:{}", dir.path().join("e.sock").display());
    let server = Server::start(&["echo", "--listen", &path, "--model", "pool", "-q"]);
    let v = bench_json(&[&path, "-n", "200", "-c", "4"]);
    assert_eq!(v["requests"], 200);
    assert_no_errors(&v);
    server.stop();
}

#[test]
fn json_has_every_documented_field() {
    let server = echo_server();
    let v = bench_json(&[
        &format!("echo://{}", server.addr()),
        "-d",
        "300ms",
        "-c",
        "2",
    ]);
    for key in [
        "requests",
        "duration_s",
        "requests_per_sec",
        "bytes_per_sec",
        "latency_us",
        "status",
        "errors",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(v["latency_us"][key].as_f64().is_some(), "latency_us.{key}");
    }
    for key in ["connect", "read", "write", "timeout", "bad_response"] {
        assert!(v["errors"][key].as_u64().is_some(), "errors.{key}");
    }
    assert!(v["requests"].as_u64().unwrap() > 0);
    let d = v["duration_s"].as_f64().unwrap();
    assert!((0.29..0.5).contains(&d), "duration {d}");
    let p50 = v["latency_us"]["p50"].as_f64().unwrap();
    let max = v["latency_us"]["max"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max);
    server.stop();
}

#[test]
fn rate_holds_the_asked_throughput() {
    let server = echo_server();
    let v = bench_json(&[
        &format!("echo://{}", server.addr()),
        "--rate",
        "400",
        "-d",
        "2",
        "-c",
        "4",
    ]);
    let n = v["requests"].as_u64().unwrap() as f64;
    // 400 req/s for 2 s: 800 requests, within a few percent.
    assert!(
        (776.0..=824.0).contains(&n),
        "{n} requests at --rate 400 for 2 s"
    );
    assert_eq!(v["rate"], 400.0);
    assert_no_errors(&v);
    server.stop();
}

/// How the test HTTP server answers the k-th request (from 0) on a connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Every response is a 500.
    AlwaysError,
    /// Two good responses per connection, then half a head and a close.
    CloseEarly,
    /// Accepts and reads, never answers.
    Silent,
    /// Greets with a line at once, as SSH or SMTP do, then stays silent.
    Banner,
}

/// A tiny HTTP/1.1 server on 127.0.0.1:0, one thread per connection (threads only; the test
/// process never forks). Stops accepting when dropped.
struct TestHttp {
    addr: String,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl TestHttp {
    fn start(behaviour: Behaviour) -> TestHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let acceptor = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let flag = Arc::clone(&flag);
                thread::spawn(move || serve(conn, behaviour, &flag));
            }
        });
        TestHttp {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for TestHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocked accept.
        let _ = TcpStream::connect(&self.addr);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn serve(mut conn: TcpStream, behaviour: Behaviour, stop: &AtomicBool) {
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let mut served = 0;
    if let Behaviour::Banner = behaviour {
        let _ = conn.write_all(b"SSH-2.0-test\r\n");
    }
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            let reply: &[u8] = match behaviour {
                Behaviour::AlwaysError => {
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"
                }
                Behaviour::CloseEarly if served < 2 => {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                }
                Behaviour::CloseEarly => {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
                    return;
                }
                Behaviour::Silent | Behaviour::Banner => b"",
            };
            if conn.write_all(reply).is_err() {
                return;
            }
            served += 1;
        }
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(_) if !stop.load(Ordering::Relaxed) => {}
            Err(_) => return,
        }
    }
}

#[test]
fn counts_500_responses_as_status_errors() {
    let server = TestHttp::start(Behaviour::AlwaysError);
    let v = bench_json(&[&format!("http://{}/", server.addr), "-n", "50", "-c", "2"]);
    assert_eq!(v["requests"], 50);
    assert_eq!(v["status"]["500"], 50);
    let e = errors(&v);
    assert_eq!(e["status"], 50, "{e:?}");
    // The text summary says it too.
    let (code, out, _) = run_plumb(
        &[
            "bench",
            &format!("http://{}/", server.addr),
            "-n",
            "10",
            "-c",
            "1",
        ],
        b"",
    );
    assert_eq!(code, 0);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("500: 10"), "{out}");
    assert!(out.contains("10 with status >= 400"), "{out}");
}

#[test]
fn counts_connections_closed_mid_response() {
    let server = TestHttp::start(Behaviour::CloseEarly);
    let v = bench_json(&[&format!("http://{}/", server.addr), "-n", "60", "-c", "1"]);
    let e = errors(&v);
    let ok = v["status"]["200"].as_u64().unwrap_or(0);
    // Every third request on a connection is cut short: 40 complete, 20 closed.
    assert_eq!(ok, 40, "{v}");
    assert_eq!(e["closed"], 20, "{e:?}");
    assert_eq!(v["requests"], 40);
    let (_, out, _) = run_plumb(
        &[
            "bench",
            &format!("http://{}/", server.addr),
            "-n",
            "6",
            "-c",
            "1",
        ],
        b"",
    );
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("2 closed early"), "{out}");
}

#[test]
fn counts_timeouts_against_a_silent_server_and_exits_1_with_no_latency() {
    let server = TestHttp::start(Behaviour::Silent);
    let target = format!("http://{}/", server.addr);
    let (code, v, err) = bench_json_status(&[&target, "-d", "1", "-c", "2", "--timeout", "200ms"]);
    assert_eq!(v["requests"], 0);
    assert!(errors(&v)["timeout"] >= 4, "{v}");
    // Nothing answered: no latency was measured, so none is reported (not 0.0, the best
    // value there is), and the run is a failure.
    for key in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(v["latency_us"][key].is_null(), "latency_us.{key}: {v}");
    }
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("answered none of the requests"), "{err}");
    let (code, out, err) = run_plumb(
        &[
            "bench",
            &target,
            "-d",
            "0.5",
            "-c",
            "1",
            "--timeout",
            "200ms",
        ],
        b"",
    );
    assert_eq!(code, 1, "{err}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("p50 -  p90 -  p99 -  p99.9 -  max -"), "{out}");
    assert!(!out.contains("0.0 us"), "{out}");
}

#[test]
fn echo_bench_of_an_http_server_says_it_is_not_an_echo_server() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "hello\n").unwrap();
    let server = Server::start(&[
        "serve",
        root.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "-q",
    ]);
    let (code, out, err) = run_plumb(
        &[
            "bench",
            &format!("echo://{}", server.addr()),
            "-d",
            "1",
            "-c",
            "2",
        ],
        b"",
    );
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not an echo server"), "{err}");
    assert!(err.contains("HTTP"), "{err}");
    server.stop();
}

#[test]
fn fail_on_errors_makes_any_error_exit_1() {
    let server = TestHttp::start(Behaviour::AlwaysError);
    let target = format!("http://{}/", server.addr);
    // Answered (with 500s): a measurement, exit 0 by default...
    let (code, _, err) = run_plumb(&["bench", &target, "-n", "10", "-c", "1"], b"");
    assert_eq!(code, 0, "{err}");
    // ...and a failure for CI with --fail-on-errors, still with the report on stdout.
    let (code, out, err) = run_plumb(
        &["bench", &target, "-n", "10", "-c", "1", "--fail-on-errors"],
        b"",
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("10 status"), "{err}");
    assert!(String::from_utf8(out).unwrap().contains("500: 10"));
    // A clean run passes with the flag.
    let echo = echo_server();
    let (code, _, err) = run_plumb(
        &[
            "bench",
            &format!("echo://{}", echo.addr()),
            "-n",
            "50",
            "-c",
            "2",
            "--fail-on-errors",
        ],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    echo.stop();
}

/// An echo server in this process (threads only) that counts the bytes it echoed, so a test
/// can wait until a bench has really been measuring.
fn counting_echo_server() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let echoed = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&echoed);
    // The acceptor stays blocked in accept when the test ends; the process exit ends it.
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let count = Arc::clone(&count);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                            count.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    (addr, echoed)
}

#[test]
fn sigint_stops_the_run_and_prints_what_was_measured() {
    let (addr, echoed) = counting_echo_server();
    // A minute-long run; the test stops it with SIGINT long before.
    let mut child = Command::new(common::PLUMB)
        .args([
            "bench",
            &format!("echo://{addr}"),
            "-d",
            "60",
            "-c",
            "2",
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plumb bench");
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Past the pre-flight message: 500 echoed 64-byte messages mean the run is measuring.
    let measuring = common::wait_until(common::DEADLINE, || {
        echoed.load(Ordering::Relaxed) >= 500 * 64
    });
    if !measuring {
        let _ = child.kill();
        let _ = child.wait();
        panic!("bench never got going");
    }
    plumb_sys::kill(child.id() as i32, plumb_sys::signal::SIGINT).expect("SIGINT");
    let mut status = None;
    common::wait_until(common::DEADLINE, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("bench did not stop on SIGINT");
    };
    let out = reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    assert!(err.contains("interrupted"), "{err}");
    let v: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("no report after SIGINT ({e}): {err}"));
    assert!(v["requests"].as_u64().unwrap() > 0, "{v}");
    assert!(v["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["duration_s"].as_f64().unwrap() < 60.0, "{v}");
    assert_no_errors(&v);
}

#[test]
fn unreachable_target_is_one_line_and_exit_1() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for target in [
        format!("http://127.0.0.1:{port}/"),
        format!("echo://127.0.0.1:{port}"),
        "unix:/nonexistent/plumb.sock".to_string(),
    ] {
        let (code, out, err) = run_plumb(&["bench", &target, "-n", "1"], b"");
        assert_eq!(code, 1, "{target}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("plumb: cannot connect to"), "{err}");
    }
}

#[test]
fn wrong_protocol_is_one_line_and_exit_1() {
    let server = echo_server();
    let (code, _, err) = run_plumb(
        &["bench", &format!("http://{}/", server.addr()), "-n", "1"],
        b"",
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("did not answer with HTTP"), "{err}");
    let banner = TestHttp::start(Behaviour::Banner);
    let (code, _, err) = run_plumb(
        &["bench", &format!("echo://{}", banner.addr), "-n", "1"],
        b"",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not an echo server"), "{err}");
    let (code, _, err) = run_plumb(
        &["bench", &format!("http://{}/", banner.addr), "-n", "1"],
        b"",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not answer with HTTP"), "{err}");
    server.stop();
}

#[test]
fn bad_options_exit_2_with_one_line() {
    for args in [
        &["bench", "http://127.0.0.1:1/", "-c", "0"][..],
        &["bench", "http://127.0.0.1:1/", "-d", "soon"],
        &["bench", "ftp://127.0.0.1:1/"],
        &["bench", "http://127.0.0.1:1/", "--rate=-5"],
        &["bench", "http://127.0.0.1:1/", "--close", "--pipeline", "4"],
        &["bench", "http://127.0.0.1:1/", "-H", "no colon"],
        &["bench", "echo://127.0.0.1:1", "--size", "0"],
        &["bench", "echo://127.0.0.1:1", "--size", "1x"],
        &["bench", "echo://127.0.0.1:1", "--size", "1.5K"],
        &["bench", "echo://127.0.0.1:1", "--size", "1TiB"],
        &["bench", "http://127.0.0.1:1/", "-t", "4", "-c", "2"],
    ] {
        let (code, _, err) = run_plumb(args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("plumb: "), "{err}");
    }
}

#[test]
fn benches_http_over_a_unix_socket() {
    use std::os::unix::net::UnixListener;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // A thread per connection; every request (ending at the blank line) gets a 200. The
    // acceptor thread is left blocked in accept when the test ends; the socket file goes
    // with the temp dir.
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if conn.write_all(ok).is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    let target = format!("http+unix:{}:/x", path.display());
    let v = bench_json(&[&target, "-n", "300", "-c", "3"]);
    assert_eq!(v["requests"], 300, "{v}");
    assert_eq!(v["status"]["200"], 300);
    assert_no_errors(&v);
}

/// A loopback HTTP server for the -m/--body tests: a thread per connection reads each request
/// whole (head, then as many body bytes as its Content-Length says), sends the exact bytes
/// to the test, and answers 200 with a small JSON body. The acceptor thread is left blocked
/// in accept when the test ends.
fn recording_http_server() -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        if pending.len() < end + 4 + len {
                            break;
                        }
                        let request: Vec<u8> = pending.drain(..end + 4 + len).collect();
                        let _ = tx.send(request);
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
                        if conn.write_all(ok).is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn method_and_body_reach_the_wire_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let body = br#"{"jsonrpc":"2.0","method":"rpc.echo","params":{"name":"plumb"},"id":1}"#;
    let file = dir.path().join("call.json");
    std::fs::write(&file, body).unwrap();
    let file = file.to_str().unwrap().to_string();
    // -m PUT with a body from a file; --body alone (a POST) from standard input.
    let cases: [(&[&str], &[u8], &str); 2] = [
        (&["-m", "PUT", "--body", &file], b"", "PUT"),
        (&["--body", "-"], body, "POST"),
    ];
    for (extra, stdin, method) in cases {
        let (addr, requests) = recording_http_server();
        let target = format!("http://{addr}/rpc");
        let mut args = vec![
            "bench",
            &target,
            "-n",
            "20",
            "-c",
            "2",
            "--pipeline",
            "2",
            "-H",
            "Content-Type: application/json",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run_plumb(&args, stdin);
        assert_eq!(code, 0, "{args:?}: {err}");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["requests"], 20, "{v}");
        assert_eq!(v["status"]["200"], 20, "{v}");
        assert_no_errors(&v);
        let want = format!(
            "{method} /rpc HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            std::str::from_utf8(body).unwrap()
        );
        // Every request the server saw (the pre-flight one and the 20 measured; pipelined
        // ones too) is exactly these bytes.
        let seen: Vec<Vec<u8>> = requests.try_iter().collect();
        assert!(seen.len() >= 21, "{} requests seen", seen.len());
        for r in &seen {
            assert_eq!(String::from_utf8_lossy(r), want);
        }
    }
}

#[test]
fn bad_method_and_body_options_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    for args in [
        &["bench", "http://127.0.0.1:1/", "-m", "HEAD"][..],
        &["bench", "http://127.0.0.1:1/", "-m", "PO ST"],
        &["bench", "http://127.0.0.1:1/", "--body", missing],
        &[
            "bench",
            "http://127.0.0.1:1/",
            "--body",
            "-",
            "-H",
            "Content-Length: 3",
        ],
        &["bench", "echo://127.0.0.1:1", "-m", "POST"],
        &["bench", "unix:/tmp/x.sock", "--body", "-"],
    ] {
        let (code, _, err) = run_plumb(args, b"{}");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("plumb: "), "{err}");
    }
    let (_, _, err) = run_plumb(&["bench", "http://127.0.0.1:1/", "--body", missing], b"");
    assert!(err.contains("no such file"), "{err}");
}

/// A loopback JSON-RPC server for the bench tests, in `framing`: a thread per connection
/// checks that every frame is exactly `want` and answers a result, or an error response for
/// every frame after the first `ok_first` of a connection; it counts the frames. The acceptor thread is left blocked in accept.
fn framed_rpc_server(
    framing: plumb_proto::framing::Framing,
    want: Vec<u8>,
    ok_first: u64,
) -> (String, Arc<AtomicU64>, Arc<AtomicU64>) {
    use plumb_proto::framing::{BufDecoder, encode};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (frames, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (f, w) = (Arc::clone(&frames), Arc::clone(&wrong));
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (f, w, want) = (Arc::clone(&f), Arc::clone(&w), want.clone());
            thread::spawn(move || {
                let mut dec = BufDecoder::new(framing, 1 << 20);
                let mut buf = [0u8; 4096];
                let mut seen = 0;
                loop {
                    let mut out = Vec::new();
                    while let Ok(Some(body)) = dec.next_frame() {
                        f.fetch_add(1, Ordering::Relaxed);
                        seen += 1;
                        let fail = seen > ok_first;
                        if body != want.as_slice() {
                            w.fetch_add(1, Ordering::Relaxed);
                        }
                        let answer: &[u8] = if fail {
                            br#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"no"},"id":1}"#
                        } else {
                            br#"{"jsonrpc":"2.0","result":{"name":"plumb"},"id":1}"#
                        };
                        encode(framing, answer, &mut out);
                    }
                    if conn.write_all(&out).is_err() {
                        return;
                    }
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => dec.push(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, frames, wrong)
}

#[test]
fn benches_a_json_rpc_server_in_every_framing_with_exact_request_bytes() {
    use plumb_proto::framing::Framing;
    // The params' newline is whitespace, sent as a space (ndjson has no room for it).
    let body =
        br#"{"jsonrpc":"2.0","method":"rpc.echo","params":{"name": "plumb"},"id":1}"#.to_vec();
    for framing in Framing::ALL {
        let (addr, frames, wrong) = framed_rpc_server(framing, body.clone(), u64::MAX);
        let target = format!("rpc://{addr}");
        let v = bench_json(&[
            &target,
            "-n",
            "300",
            "-c",
            "3",
            "--pipeline",
            "4",
            "--framing",
            framing.name(),
            "--params",
            "{\"name\":\n\"plumb\"}",
        ]);
        assert_eq!(v["requests"], 300, "{framing}: {v}");
        assert_eq!(v["status"]["result"], 300, "{framing}: {v}");
        assert_no_errors(&v);
        // The pre-flight call and the 300 measured, each byte for byte the request.
        assert!(frames.load(Ordering::Relaxed) >= 301, "{framing}");
        assert_eq!(wrong.load(Ordering::Relaxed), 0, "{framing}");
    }
}

#[test]
fn json_rpc_error_answers_are_an_error_kind_and_fail_the_preflight() {
    use plumb_proto::framing::Framing;
    let body = br#"{"jsonrpc":"2.0","method":"rpc.echo","id":1}"#.to_vec();
    let (addr, _, _) = framed_rpc_server(Framing::Ndjson, body.clone(), 0);
    let (code, err) = common::start_fails(&["bench", &format!("rpc://{addr}"), "-n", "5"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("answers the call with an error") && err.contains("-32000"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Errors during the run (the pre-flight call was answered): counted, with their kind.
    let (addr, _, _) = framed_rpc_server(Framing::Ndjson, body, 1);
    let target = format!("rpc://{addr}");
    let v = bench_json(&[&target, "-n", "10", "-c", "1"]);
    assert_eq!(v["requests"], 10, "{v}");
    assert_eq!(v["status"]["result"], 1, "{v}");
    assert_eq!(v["status"]["error"], 9, "{v}");
    assert_eq!(errors(&v)["rpc_error"], 9, "{v}");
    let (code, _, err) = bench_json_status(&[&target, "-n", "10", "-c", "1", "--fail-on-errors"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("9 rpc_error"), "{err}");
    // A server that speaks another framing is named as such.
    let (addr, _, _) = framed_rpc_server(
        Framing::Lsp,
        br#"{"jsonrpc":"2.0","method":"rpc.echo","id":1}"#.to_vec(),
        u64::MAX,
    );
    let (code, err) = common::start_fails(&[
        "bench",
        &format!("rpc://{addr}"),
        "-n",
        "5",
        "--framing",
        "len32",
        "--timeout",
        "1",
    ]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for args in [
        &["bench", "rpc://127.0.0.1:1", "--params", "3"][..],
        &["bench", "rpc://127.0.0.1:1", "--params", "{"],
        &["bench", "rpc://127.0.0.1:1", "--framing", "xml"],
        &["bench", "rpc://127.0.0.1:1", "--body", "-"],
        &["bench", "rpc://127.0.0.1:1", "--size", "10"],
        &["bench", "http://127.0.0.1:1/", "--params", "[1]"],
        &["bench", "echo://127.0.0.1:1", "--framing", "lsp"],
    ] {
        let (code, _, err) = run_plumb(args, b"");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn benches_plumb_rpc_serve_over_tcp_and_unix_built_ins_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    let unix = format!("unix:{}", dir.path().join("rpc.sock").display());
    let server = Server::start(&[
        "rpc",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &unix,
        "--model",
        "event",
        "--method",
        "t=true",
        "-q",
    ]);
    let params = r#"{"name":"plumb","text":"0123456789012345678901234567890123456789012345678901234567890123"}"#;
    let tcp = format!("rpc://{}", server.addr());
    let sock = format!("rpc+unix:{}", &unix["unix:".len()..]);
    for (target, extra) in [
        (&tcp, &["--params", params, "-c", "4"][..]),
        (&tcp, &["--params", params, "-c", "2", "--pipeline", "8"]),
        (&sock, &["--params", params, "-c", "3", "-t", "2"]),
        // A command method: a fork and exec of `true` per call.
        (&tcp, &["-m", "t", "-c", "2"]),
    ] {
        let mut args = vec![target.as_str(), "-n", "200"];
        args.extend_from_slice(extra);
        let v = bench_json(&args);
        assert_eq!(v["requests"], 200, "{args:?}: {v}");
        assert_eq!(v["status"]["result"], 200, "{args:?}: {v}");
        assert_no_errors(&v);
        assert!(v["bytes"].as_u64().unwrap() > 200 * 30, "{v}");
    }
    // An unknown method fails the pre-flight with the server's own error.
    let (code, err) = common::start_fails(&["bench", &tcp, "-m", "nosuch", "-n", "5"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("-32601"), "{err}");
    server.stop();
}
