//! Fuzzes the JSON-RPC session (framing + JSON-RPC + command calls) the way a driver runs
//! it: client bytes in fuzzer-chosen read sizes (unconsumed bytes offered again), short
//! writes, and the children the session asks for played by the fuzzer (output on stdout and
//! stderr, EOFs, exits, kills honoured), with timeouts, drains and EOF at fuzzer-chosen
//! moments on a virtual clock. The session must never panic, never consume more than it was
//! given, never reuse a child slot still in use, write only well-formed frames of JSON, and
//! always close once the client is gone and its children are done.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use plumb_proto::framing::{self, Framing};
use plumb_proto::jsonrpc::session::{CommandMethod, Config, RpcSession};
use plumb_proto::session::{ChildId, Exit, Stdio};
use plumb_proto::{Action, Peer, Session};

/// A child as the fuzzer plays it.
struct Kid {
    id: ChildId,
    out_open: bool,
    err_open: bool,
    exited: bool,
    killed: bool,
}

impl Kid {
    fn done(&self) -> bool {
        self.exited && !self.out_open && !self.err_open
    }
}

struct Driver {
    s: RpcSession,
    kids: Vec<Kid>,
    out: Vec<u8>,
    write_limit: usize,
}

impl Driver {
    /// Performs actions until the session waits or closes; true on close.
    fn perform(&mut self, now: Instant) -> bool {
        for _ in 0..1_000_000 {
            self.kids.retain(|k| !k.done());
            match self.s.next_action() {
                Action::Write(Peer::Client, b) => {
                    let n = b.len().min(self.write_limit);
                    self.out.extend_from_slice(&b[..n]);
                    self.s.written(Peer::Client, n, now);
                }
                Action::Write(p @ Peer::Child(_, Stdio::Stdin), b) => {
                    let n = b.len().min(self.write_limit);
                    self.s.written(p, n, now);
                }
                Action::Spawn(id, req) => {
                    assert_eq!(req.program, "/bin/sh");
                    assert!(
                        self.kids.iter().all(|k| k.id != id),
                        "slot {id:?} spawned while in use"
                    );
                    self.kids.push(Kid {
                        id,
                        out_open: true,
                        err_open: true,
                        exited: false,
                        killed: false,
                    });
                    self.s.spawned(id, Some(1000 + u32::from(id.0)), now);
                }
                Action::Kill(id, _) => {
                    if let Some(k) = self.kids.iter_mut().find(|k| k.id == id) {
                        k.killed = true;
                    }
                }
                Action::Shutdown(Peer::Child(id, s)) => {
                    if let Some(k) = self.kids.iter_mut().find(|k| k.id == id) {
                        match s {
                            Stdio::Stdout => k.out_open = false,
                            Stdio::Stderr => k.err_open = false,
                            Stdio::Stdin => {}
                        }
                    }
                }
                Action::Wait => return false,
                Action::Close => return true,
                other => panic!("an RPC session never asks for {other:?}"),
            }
            while self.s.take_log().is_some() {}
        }
        panic!("the session never waits or closes");
    }

    /// The fuzzer's move for one child: `op` picks what it does.
    fn child_step(&mut self, op: u8, bytes: &[u8], now: Instant) {
        if self.kids.is_empty() {
            return;
        }
        let i = usize::from(op) % self.kids.len();
        let k = &mut self.kids[i];
        let id = k.id;
        match (op >> 4) & 7 {
            0 | 1 if k.out_open => {
                let n = self.s.feed(Peer::Child(id, Stdio::Stdout), bytes, now);
                assert!(n <= bytes.len());
            }
            2 if k.err_open => {
                let n = self.s.feed(Peer::Child(id, Stdio::Stderr), bytes, now);
                assert!(n <= bytes.len());
            }
            3 if k.out_open => {
                k.out_open = false;
                self.s.eof(Peer::Child(id, Stdio::Stdout), now);
            }
            4 if k.err_open => {
                k.err_open = false;
                self.s.eof(Peer::Child(id, Stdio::Stderr), now);
            }
            5 => self.s.eof(Peer::Child(id, Stdio::Stdin), now),
            _ if !k.exited => {
                k.exited = true;
                let how = if k.killed {
                    Exit::Signal(9)
                } else if op & 0x80 != 0 {
                    Exit::Code(i32::from(op & 3))
                } else {
                    Exit::Signal(15)
                };
                self.s.exited(id, how, now);
            }
            _ => {}
        }
    }

    /// Every child ends: killed ones die, the rest close their output and exit 0.
    fn end_children(&mut self, now: Instant) {
        while let Some(k) = self.kids.iter_mut().find(|k| !k.done()) {
            let id = k.id;
            if k.out_open {
                k.out_open = false;
                self.s.eof(Peer::Child(id, Stdio::Stdout), now);
            }
            if k.err_open {
                k.err_open = false;
                self.s.eof(Peer::Child(id, Stdio::Stderr), now);
            }
            if !k.exited {
                k.exited = true;
                self.s.exited(id, Exit::Code(0), now);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let framing = Framing::ALL[usize::from(knobs & 3)];
    let methods = vec![
        CommandMethod {
            name: "a".into(),
            command: "true".into(),
        },
        CommandMethod {
            name: "b".into(),
            command: "cat".into(),
        },
    ];
    let max_calls = 1 + usize::from((knobs >> 2) & 3);
    let Ok(mut cfg) = Config::new(framing, 4096, 8, Duration::from_secs(5), methods, max_calls)
    else {
        return;
    };
    cfg.log = knobs & 0x10 != 0;
    cfg.finish_on_eof = knobs & 0x20 != 0;
    let slots_cfg = Arc::new(cfg);
    let mut d = Driver {
        s: RpcSession::new(Arc::clone(&slots_cfg), "127.0.0.1:1"),
        kids: Vec::new(),
        out: Vec::new(),
        write_limit: 1 + usize::from(knobs >> 6) * 500,
    };
    let mut now = Instant::now();
    let mut held: Vec<u8> = Vec::new();
    let mut rest = data;
    let mut closed = false;
    while !rest.is_empty() && !closed {
        let step = rest[0];
        rest = &rest[1..];
        let take = (usize::from(step & 0x1f) * 11 + 1).min(rest.len());
        let (bytes, tail) = rest.split_at(take);
        rest = tail;
        match step >> 5 {
            0..=3 => {
                held.extend_from_slice(bytes);
                if d.s.wants_read(Peer::Client) {
                    let n = d.s.feed(Peer::Client, &held, now);
                    assert!(n <= held.len());
                    held.drain(..n);
                }
            }
            4 | 5 => {
                let op = bytes.first().copied().unwrap_or(0);
                d.child_step(op, bytes.get(1..).unwrap_or_default(), now);
            }
            6 => {
                now = d.s.deadline().unwrap_or(now).max(now) + Duration::from_millis(1);
                d.s.timed_out(now);
            }
            _ if step & 1 != 0 => d.s.drain(now),
            _ => now += Duration::from_millis(u64::from(step)),
        }
        closed = d.perform(now);
    }
    if !closed {
        d.s.eof(Peer::Client, now);
        closed = d.perform(now);
    }
    // Children end (the driver reaps them); timeouts fire; the session must then close.
    for _ in 0..4 {
        if closed {
            break;
        }
        d.end_children(now);
        closed = d.perform(now);
        if !closed {
            now = d.s.deadline().unwrap_or(now).max(now) + Duration::from_millis(1);
            d.s.timed_out(now);
            closed = d.perform(now);
        }
    }
    assert!(closed, "the session did not close after the client's EOF");
    d.s.closed(now);
    drop(d.s);
    assert_eq!(slots_cfg.slots.running(), 0, "a command slot was not given back");
    // Everything written is whole frames of JSON.
    let mut dec = framing::BufDecoder::new(framing, 1 << 24);
    dec.push(&d.out);
    while let Some(f) = dec.next_frame().expect("the session's own framing") {
        assert!(
            serde_json::from_slice::<&serde_json::value::RawValue>(f).is_ok(),
            "not JSON: {:?}",
            String::from_utf8_lossy(f)
        );
    }
});
