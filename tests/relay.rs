//! End-to-end tests of `plumb relay` over every model: exact bytes both ways, half-close in
//! each direction, UNIX <-> TCP both ways, and an unreachable upstream; the byte tests run
//! with splice(2) (the default) and with `--no-splice` (user-space copies).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::*;
use plumb::models::Model;

fn relay(model: Model, listen: &str, to: &str) -> Server {
    relay_mode(model, listen, to, true)
}

fn relay_mode(model: Model, listen: &str, to: &str, splice: bool) -> Server {
    let mut args = vec![
        "relay",
        "--model",
        model.name(),
        "--listen",
        listen,
        "--to",
        to,
        "--workers",
        "4",
        "--threads",
        "8",
    ];
    if !splice {
        args.push("--no-splice");
    }
    Server::start(&args)
}

fn roundtrip(addr: &str, len: usize, seed: u64) {
    let data = random_bytes(len, seed);
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown_write().unwrap();
    });
    let got = read_to_end(&mut s);
    writer.join().unwrap();
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(&data),
        "{addr}: {len} bytes through the relay"
    );
}

#[test]
fn relays_exact_bytes_under_every_model_and_transport() {
    let dir = tempfile::tempdir().unwrap();
    let echo_sock = format!("unix:{}", dir.path().join("echo.sock").display());
    let echo = Server::start(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &echo_sock,
        "--model",
        "thread",
    ]);
    let (echo_tcp, echo_unix) = (echo.addrs[0].clone(), echo.addrs[1].clone());
    for &model in Model::ALL {
        for t in Transport::ALL {
            let d = tempfile::tempdir().unwrap();
            let Some(listen) = t.listen_arg(&d) else {
                continue;
            };
            // TCP -> TCP, UNIX -> TCP, and every transport -> UNIX.
            for upstream in [&echo_tcp, &echo_unix] {
                for splice in [true, false] {
                    let r = relay_mode(model, &listen, upstream, splice);
                    roundtrip(r.addr(), 8 << 20, 11);
                    let (st, err) = r.stop();
                    assert!(
                        st.success(),
                        "{model} {t:?} -> {upstream} splice={splice}: {err}"
                    );
                }
            }
        }
    }
    echo.stop();
}

/// The upstream finishes first: the client reads its data and EOF, and can still send; the
/// upstream receives what the client sent after that.
#[test]
fn half_close_from_the_upstream_side() {
    for &model in Model::ALL {
        let up = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_addr = up.local_addr().unwrap().to_string();
        let upstream = thread::spawn(move || {
            let (mut s, _) = up.accept().unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s.write_all(b"greeting").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let r = relay(model, "127.0.0.1:0", &up_addr);
        let mut c = connect(r.addr());
        assert_eq!(read_to_end(&mut c), b"greeting", "{model}");
        c.write_all(b"late words").unwrap();
        c.shutdown_write().unwrap();
        assert_eq!(upstream.join().unwrap(), b"late words", "{model}");
        r.stop();
    }
}

#[test]
fn unreachable_upstream_closes_the_client_and_is_logged() {
    let nobody = unreachable_addr();
    for &model in Model::ALL {
        let r = relay(model, "127.0.0.1:0", &nobody);
        let mut c = connect(r.addr());
        let _ = c.write_all(b"anyone?");
        let mut buf = Vec::new();
        // A clean close (EOF) or a reset: either way, no data and the connection ends.
        let _ = c.read_to_end(&mut buf);
        assert!(buf.is_empty(), "{model}");
        assert!(
            wait_until(DEADLINE, || r.stderr().contains("cannot reach upstream")),
            "{model}: {}",
            r.stderr()
        );
        // The relay keeps serving.
        let (st, _) = r.stop();
        assert!(st.success());
    }
}
