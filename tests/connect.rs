//! End-to-end tests of `plumb connect`: against `plumb echo` and against listeners the test
//! opens itself (a peer that talks while we write; a peer that answers after our EOF).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::*;

#[test]
fn pipes_stdin_through_echo_and_back() {
    for t in [Transport::V4, Transport::V6, Transport::Unix] {
        let dir = tempfile::tempdir().unwrap();
        let Some(listen) = t.listen_arg(&dir) else {
            continue;
        };
        let server = Server::start(&["echo", "--listen", &listen]);
        let data = random_bytes(5 << 20, 7);
        let (code, out, err) = run_plumb(&["connect", server.addr()], &data);
        assert_eq!(code, 0, "{t:?}: {err}");
        assert_eq!(out.len(), data.len(), "{t:?}");
        assert!(out == data, "{t:?}: bytes differ");
        server.stop();
    }
}

/// The peer sends 4 MiB before reading anything. A client that writes all of stdin before
/// reading would deadlock here (both sides blocked in write with full buffers).
#[test]
fn no_deadlock_when_peer_talks_while_we_write() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let from_peer = random_bytes(4 << 20, 1);
    let to_peer = random_bytes(4 << 20, 2);
    let sent = from_peer.clone();
    let peer = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(&sent).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap(); // until the client's half-close
        s.write_all(b"bye after your EOF").unwrap();
        got
    });
    let (code, out, err) = run_plumb(&["connect", &addr], &to_peer);
    assert_eq!(code, 0, "{err}");
    let got = peer.join().unwrap();
    assert!(got == to_peer, "the peer received our stdin exactly");
    let mut want = from_peer;
    want.extend_from_slice(b"bye after your EOF");
    assert!(
        out == want,
        "we printed everything, including what came after our EOF"
    );
}

#[test]
fn connect_errors_are_one_line_exit_1() {
    // A port with nobody listening: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}", dir.path().join("nobody.sock").display());
    for (addr, needle) in [
        (format!("127.0.0.1:{port}"), "refused"),
        (missing, "no such file or directory"),
    ] {
        let (code, out, err) = run_plumb(&["connect", &addr], b"");
        assert_eq!(code, 1, "{addr}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{addr}: {err}");
        assert!(
            err.starts_with("plumb: ") && err.contains(needle),
            "{addr}: {err}"
        );
    }
}

#[test]
fn closed_stdout_is_a_clean_exit() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.bin");
    std::fs::write(&input, random_bytes(8 << 20, 3)).unwrap();
    let script = format!(
        "set -o pipefail; {PLUMB} connect {} < {} | head -c 10 > /dev/null",
        server.addr(),
        input.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop();
}
