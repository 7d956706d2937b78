//! Shutdown as a user at a terminal meets it: the first Ctrl-C (SIGINT) or SIGTERM says in one
//! line that the server is draining and for how long, open connections carry on, and a second
//! signal during the grace period stops the server at once instead of being ignored. Run over
//! every model.

mod common;

use std::io::{Read, Write};

use common::*;
use plumb::models::Model;

/// The grace period is far longer than any deadline of the test, so an exit within the
/// deadline can only come from the second signal.
fn second_signal_stops_at_once(model: Model, sig: i32) {
    let mut server = Server::start(&[
        "echo",
        "--model",
        model.name(),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--grace",
        "600",
    ]);
    let mut c = connect(server.addr());
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    server.signal(sig);
    assert!(
        wait_until(DEADLINE, || server.stderr().contains("draining")),
        "{model}: no draining line:\n{}",
        server.stderr()
    );
    let err = server.stderr();
    let line = err.lines().find(|l| l.contains("draining")).unwrap();
    assert!(
        line.contains("600 s"),
        "{model}: the line says how long: {line}"
    );
    // The open connection is still served during the drain.
    c.write_all(b"pong").unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong", "{model}");
    server.signal(sig);
    let st = server
        .wait_exit(DEADLINE)
        .unwrap_or_else(|| panic!("{model}: a second signal did not stop the server"));
    assert!(st.success(), "{model}: {st:?}\n{}", server.stderr());
    assert_eq!(
        server.stderr().matches("draining").count(),
        1,
        "{model}: one draining line"
    );
    // The server closed the connection it cut short.
    assert_eq!(read_to_end(&mut c), b"", "{model}");
}

/// `-q` keeps the draining line off stderr like every other notice.
#[test]
fn quiet_has_no_draining_line() {
    let mut server = Server::start(&["echo", "-q", "--listen", "127.0.0.1:0", "--grace", "600"]);
    let mut c = connect(server.addr());
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    server.signal(plumb_sys::signal::SIGINT);
    server.signal(plumb_sys::signal::SIGINT);
    // A second signal can arrive before the first drain began; keep asking until it stops.
    assert!(wait_until(DEADLINE, || {
        if server
            .wait_exit(std::time::Duration::from_millis(200))
            .is_some()
        {
            return true;
        }
        let _ = plumb_sys::kill(server.pid(), plumb_sys::signal::SIGINT);
        false
    }));
    assert!(!server.stderr().contains("draining"), "{}", server.stderr());
}

macro_rules! suite {
    ($($name:ident => $model:expr),* $(,)?) => {
        $(mod $name {
            use super::*;
            #[test] fn second_sigint_stops_at_once() {
                second_signal_stops_at_once($model, plumb_sys::signal::SIGINT)
            }
            #[test] fn second_sigterm_stops_at_once() {
                second_signal_stops_at_once($model, plumb_sys::signal::SIGTERM)
            }
        })*
    };
}

for_every_model!(suite);
