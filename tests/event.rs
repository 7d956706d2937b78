//! End-to-end tests of what only the event model promises: thousands of idle connections held
//! by one process while others are served, and a peer that stops reading cut off by the write
//! timeout without stalling the loop. The EMFILE pause is tested with the other in-process
//! models in tests/echo.rs.
//! The shared suites (tests/echo.rs, tests/relay.rs, ...) cover the protocols under `event`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::http::{Client, get};
use common::*;

/// Idle connections the main test holds open.
const IDLE: usize = 2000;

fn open_sockets(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// What the idle connections speak.
#[derive(Debug, Clone, Copy)]
enum Proto {
    Echo,
    Http,
}

/// One exchange on an open connection: an echo of `n`, or `GET /a.txt` (kept alive).
fn exchange(proto: Proto, c: &mut Client, n: usize) {
    match proto {
        Proto::Echo => {
            let msg = format!("{n:05}");
            c.send(msg.as_bytes());
            let mut buf = [0u8; 5];
            c.stream
                .read_exact(&mut buf)
                .unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(&buf, msg.as_bytes());
        }
        Proto::Http => {
            c.send(&get("/a.txt", ""));
            let r = c.response(false);
            assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]), "{n}");
            assert!(!r.closes(), "{n}: kept alive");
        }
    }
}

/// Opens a fresh connection and makes one exchange on it.
fn one_request(proto: Proto, addr: &str, n: usize) {
    let mut c = Client::new(addr);
    exchange(proto, &mut c, n);
}

/// Holds [`IDLE`] connections open (each used once, then idle) while other clients keep
/// being served, then checks every idle connection still answers.
fn holds_idle_connections(proto: Proto) {
    let (soft, _) = plumb_sys::nofile_limit().unwrap();
    let limit = plumb_sys::raise_nofile_limit().unwrap_or(soft);
    assert!(
        limit as usize > IDLE + 200,
        "this test needs {} descriptors; the hard limit is {limit}",
        IDLE + 200
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    let root = dir.path().to_str().unwrap();
    let common = [
        "--model",
        "event",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "-q",
    ];
    let mut args: Vec<&str> = match proto {
        Proto::Echo => vec!["echo"],
        // Idle keep-alive connections must outlive the test's slowest phase.
        Proto::Http => vec!["serve", root, "--keepalive-timeout", "120"],
    };
    args.extend(common);
    let server = Server::start(&args);
    let addr = server.addr().to_string();

    // Normal traffic keeps flowing on fresh connections the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (addr, stop) = (addr.clone(), stop.clone());
        thread::spawn(move || {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) {
                one_request(proto, &addr, served);
                served += 1;
            }
            served
        })
    };

    let mut idle: Vec<Client> = (0..IDLE).map(|_| Client::new(&addr)).collect();
    for (i, c) in idle.iter_mut().enumerate() {
        exchange(proto, c, i);
    }
    // Accepted, not just queued in the backlog: the server holds a socket for each.
    assert!(
        wait_until(DEADLINE, || open_sockets(server.pid()) >= IDLE),
        "server holds {} sockets",
        open_sockets(server.pid())
    );
    // Idle for a while, with requests served meanwhile.
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(500) {
        one_request(proto, &addr, n);
        n += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let served = traffic.join().unwrap();
    assert!(
        served > 0,
        "no request served while the idle connections were held"
    );

    // Every idle connection is still open and answers.
    for (i, c) in idle.iter_mut().enumerate() {
        exchange(proto, c, i);
    }
    drop(idle);
    let (st, err) = server.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn holds_2000_idle_echo_connections_while_serving_others() {
    holds_idle_connections(Proto::Echo);
}

#[test]
fn holds_2000_idle_keep_alive_http_connections_while_serving_others() {
    holds_idle_connections(Proto::Http);
}

/// `plumb SERVICE... --model event --workers 1 --listen 127.0.0.1:0 EXTRA... -q`: everything
/// on one event loop.
fn one_event_loop(service: &[&str], extra: &[&str]) -> Server {
    let mut args = service.to_vec();
    args.extend_from_slice(&[
        "--model",
        "event",
        "--workers",
        "1",
        "--listen",
        "127.0.0.1:0",
    ]);
    args.extend_from_slice(extra);
    args.push("-q");
    Server::start(&args)
}

#[test]
fn a_peer_that_stops_reading_is_cut_off_and_others_are_served() {
    let server = one_event_loop(&["echo"], &["--write-timeout", "0.5"]);
    let addr = server.addr().to_string();
    // Writes without ever reading: the echo fills our receive buffer, then the server's send
    // buffer, then its window; its write stalls and the timeout closes the connection.
    let hog = TcpStream::connect(&addr).unwrap();
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let deadline = Instant::now() + DEADLINE;
    let mut hog_w = &hog;
    let cut_off = loop {
        // Meanwhile the single loop keeps serving everyone else.
        one_request(Proto::Echo, &addr, 0);
        match hog_w.write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break true, // reset by the server
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    assert!(cut_off, "the stalled connection was never closed");
    let (st, err) = server.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn one_loop_relays_a_hundred_clients_at_once() {
    let echo = Server::start(&["echo", "--model", "event", "--listen", "127.0.0.1:0", "-q"]);
    let relay = one_event_loop(&["relay", "--to", echo.addr()], &[]);
    let clients: Vec<_> = (0..100u64)
        .map(|i| {
            let addr = relay.addr().to_string();
            thread::spawn(move || {
                let data = random_bytes(256 * 1024, i + 1);
                let mut s = connect(&addr);
                let mut w = s.try_clone().unwrap();
                let sent = data.clone();
                let writer = thread::spawn(move || send_and_shutdown(&mut w, &sent));
                let got = read_to_end(&mut s);
                writer.join().unwrap();
                assert_eq!(sha256_hex(&got), sha256_hex(&data), "client {i}");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let (st, err) = relay.stop();
    assert!(st.success(), "{err}");
    echo.stop();
}

#[test]
fn one_loop_sends_a_large_file_to_many_clients_at_once_in_turns() {
    // Each sendfile burst is bounded and the connection then yields to the others: every
    // client gets its copy byte-exact, on a kept-alive connection, twice.
    let dir = tempfile::tempdir().unwrap();
    let big = random_bytes(3 * 1024 * 1024 + 123, 9);
    std::fs::write(dir.path().join("big.bin"), &big).unwrap();
    let server = common::http::start_serve(
        plumb::models::Model::Event,
        dir.path(),
        &["--workers", "1", "-q"],
    );
    let want = sha256_hex(&big);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr().to_string();
            thread::spawn(move || {
                let mut c = Client::new(&addr);
                (0..2)
                    .map(|_| {
                        c.send(&get("/big.bin", ""));
                        sha256_hex(&c.response(false).body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in clients {
        for got in t.join().unwrap() {
            assert_eq!(got, want);
        }
    }
    let (st, err) = server.stop();
    assert!(st.success(), "{err}");
}
