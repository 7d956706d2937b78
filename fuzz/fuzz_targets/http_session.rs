//! Fuzzes the HTTP session the way a driver runs it: the input is cut into reads of
//! fuzzer-chosen sizes, unconsumed bytes are offered again, writes are short, and timeouts,
//! drains and EOF arrive at fuzzer-chosen moments, on a virtual clock, over an in-memory
//! document root. The session must never panic, never
//! consume more than it was given, and always reach `Close` once the client is gone.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use plumb_proto::http::{Config, Docroot, HttpSession, MemDocroot};
use plumb_proto::{Action, Peer, Session, Wall};

/// A document root in memory with a small file, a large one, an index, a listing and a
/// dotfile: the fuzzer touches no filesystem.
fn root() -> Arc<dyn Docroot> {
    static ROOT: OnceLock<Arc<dyn Docroot>> = OnceLock::new();
    Arc::clone(ROOT.get_or_init(|| {
        Arc::new(
            MemDocroot::new()
                .file("a.txt", b"hello")
                .file("big.bin", &[7u8; 40_000])
                .file("site/index.html", b"<h1>x</h1>")
                .file("list/x <&> y.txt", b"x")
                .file("list/sub dir/z", b"z")
                .file(".hidden", b"h")
                .forbidden("fifo"),
        )
    }))
}

/// Performs actions until the session waits or closes; true on close.
fn perform(s: &mut HttpSession, write_limit: usize, now: Instant) -> bool {
    // Bounded well above the most actions a legitimate answer needs (1-byte writes of a
    // listing or multipart body), so a session that loops forever is caught.
    for _ in 0..2_000_000 {
        match s.next_action() {
            Action::Write(_, b) => {
                let n = b.len().min(write_limit);
                s.written(Peer::Client, n, now);
            }
            Action::SendBody { len, .. } => {
                s.written(Peer::Client, (len as usize).min(write_limit * 4), now);
            }
            Action::Shutdown(_) => {}
            Action::Close => return true,
            Action::Wait => return false,
            other => panic!("a static-file session never asks for {other:?}"),
        }
        while s.take_log().is_some() {}
    }
    panic!("the session never waits or closes");
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let cfg = Config {
        max_requests: u64::from(knobs & 3),
        hidden: knobs & 4 != 0,
        ..Config::default()
    };
    // A virtual clock: one base instant, advanced by the fuzzer's steps (never read again).
    let mut now = Instant::now();
    let wall = Wall::new(now, std::time::UNIX_EPOCH + Duration::from_secs(1_764_000_000));
    let mut s = HttpSession::new(Arc::new(cfg), root(), "127.0.0.1:1", now, wall);
    let write_limit = 1 + usize::from(knobs >> 3) * 97;
    let mut held: Vec<u8> = Vec::new();
    let mut rest = data;
    let mut closed = false;
    while !rest.is_empty() && !closed {
        // The first byte of each step picks the read size and an event.
        let step = rest[0];
        rest = &rest[1..];
        let take = (usize::from(step & 0x3f) * 7 + 1).min(rest.len());
        held.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        if s.wants_read(Peer::Client) {
            let n = s.feed(Peer::Client, &held, now);
            assert!(n <= held.len());
            held.drain(..n);
        }
        match step >> 6 {
            1 => {
                now = s.deadline().unwrap_or(now).max(now) + Duration::from_millis(1);
                s.timed_out(now);
            }
            2 if step & 0x20 != 0 => s.drain(now),
            _ => now += Duration::from_micros(u64::from(step)),
        }
        closed = perform(&mut s, write_limit, now);
    }
    if !closed {
        s.eof(Peer::Client, now);
        closed = perform(&mut s, write_limit, now);
    }
    if !closed {
        // Lingering after a shutdown ends at its deadline.
        if let Some(d) = s.deadline() {
            now = now.max(d);
            s.timed_out(now);
        }
        closed = perform(&mut s, write_limit, now);
    }
    assert!(closed, "the session did not close after the client's EOF");
});
