//! Slowloris: 200 connections each dribbling a request head at one byte per second must not
//! stop normal requests from being answered promptly. Runs under the models that claim to
//! handle it (pool; event once it exists). The promptness bound is a deadline on each
//! request (a hang detector), not a performance assertion.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::http::{Client, get};
use common::*;

const SLOW_CLIENTS: usize = 200;
/// How long normal requests are checked while the slow clients dribble.
const WATCH: Duration = Duration::from_secs(8);
/// Each normal request must be answered within this.
const PROMPT: Duration = Duration::from_secs(2);

fn slow_clients_do_not_starve_others(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
    // A header timeout longer than the test: the slow clients stay connected throughout,
    // so what is tested is concurrency, not the timeout cutting them off.
    let server = Server::start(&[
        "serve",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--model",
        model,
        "--header-timeout",
        "60",
        "-q",
    ]);
    let addr = server.addr().to_string();
    let mut slow: Vec<Stream> = (0..SLOW_CLIENTS).map(|_| connect(&addr)).collect();
    let head = b"GET /a.txt HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut sent = 0;
    let mut answered = 0;
    let mut next_drip = start;
    while start.elapsed() < WATCH {
        if Instant::now() >= next_drip {
            // One more header byte on every slow connection (never the final CRLF).
            for s in &mut slow {
                let _ = s.write_all(&head[sent..sent + 1]);
            }
            sent = (sent + 1).min(head.len() - 3);
            next_drip += Duration::from_secs(1);
        }
        let t = Instant::now();
        let mut c = Client::new(&addr);
        c.set_read_timeout(PROMPT);
        c.send(&get("/a.txt", "Connection: close\r\n"));
        let r = c.try_response(false);
        let took = t.elapsed();
        assert!(
            r.as_ref().is_some_and(|r| r.status == 200) && took <= PROMPT,
            "model {model}: a normal request was not answered within {PROMPT:?} \
             ({took:?}, {answered} answered so far) while {SLOW_CLIENTS} slow clients dribble"
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(slow);
    server.stop();
}

#[test]
fn pool() {
    slow_clients_do_not_starve_others("pool");
}

/// One thread per connection (up to --max-connections) also keeps serving.
#[test]
fn thread() {
    slow_clients_do_not_starve_others("thread");
}

/// One event loop holds every slow client and still answers at once.
#[test]
fn event() {
    slow_clients_do_not_starve_others("event");
}
