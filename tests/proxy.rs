//! End-to-end tests of `plumb serve --proxy ADDR` (the course assignment's proxy mode) over
//! every model: bytes relayed both ways with half-close, and `502 Bad Gateway` when the
//! upstream cannot be reached.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::*;
use plumb::models::Model;

fn proxy(model: Model, to: &str) -> Server {
    Server::start(&[
        "serve",
        "--proxy",
        to,
        "--listen",
        "127.0.0.1:0",
        "--model",
        model.name(),
        "--workers",
        "4",
        "--threads",
        "8",
    ])
}

#[test]
fn relays_a_request_and_its_answer() {
    // The upstream is an echo server: whatever request we send comes back byte for byte.
    let echo = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    for &model in Model::ALL {
        let p = proxy(model, echo.addr());
        let request = b"GET /x HTTP/1.1\r\nHost: upstream\r\n\r\n";
        let mut c = connect(p.addr());
        send_and_shutdown(&mut c, request);
        assert_eq!(read_to_end(&mut c), request, "{model}");
        let (st, err) = p.stop();
        assert!(st.success(), "{model}: {err}");
    }
    echo.stop();
}

#[test]
fn unreachable_upstream_is_502_bad_gateway() {
    let nobody = unreachable_addr();
    for &model in Model::ALL {
        let p = proxy(model, &nobody);
        let mut c = connect(p.addr());
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        c.read_to_end(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
            "{model}: {text}"
        );
        assert!(text.contains("Connection: close\r\n"), "{model}: {text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), len, "{model}: body matches Content-Length");
        assert!(
            wait_until(DEADLINE, || p.stderr().contains("cannot reach upstream")),
            "{model}: {}",
            p.stderr()
        );
        drop(c);
        let (st, _) = p.stop();
        assert!(st.success());
    }
}

#[test]
fn half_close_is_carried_both_ways() {
    for &model in Model::ALL {
        let up = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = up.local_addr().unwrap().to_string();
        let upstream = std::thread::spawn(move || {
            let (mut s, _) = up.accept().unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap(); // EOF arrives only through the proxy's half-close
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nanswer after EOF")
                .unwrap();
            got
        });
        let p = proxy(model, &up_addr);
        let mut c = connect(p.addr());
        send_and_shutdown(&mut c, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            read_to_end(&mut c),
            b"HTTP/1.0 200 OK\r\n\r\nanswer after EOF",
            "{model}"
        );
        assert_eq!(
            upstream.join().unwrap(),
            b"GET / HTTP/1.0\r\n\r\n",
            "{model}"
        );
        p.stop();
    }
}
