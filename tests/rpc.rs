//! End-to-end suite for `plumb rpc serve`: the JSON-RPC 2.0 specification's examples sent
//! byte for byte under every model and each framing, hostile input, commands as methods
//! (concurrency, timeout, floods, a vanishing client), descriptors and children after 10,000
//! command calls, and `--listen stdio`.

mod common;

use std::io::{Read, Write};

use std::time::{Duration, Instant};

use common::*;
use plumb::models::Model;
use plumb::net::Stream;
use plumb_proto::framing::{self, BufDecoder, Framing};
use serde_json::{Value, json};

/// The specification's example methods, as commands (jq reads the params on stdin).
const SPEC_METHODS: [&str; 3] = [
    r#"subtract=jq 'if type == "array" then .[0] - .[1] else .minuend - .subtrahend end'"#,
    "sum=jq add",
    r#"get_data=echo '["hello", 5]'"#,
];

/// `plumb rpc serve --model M --framing F --listen 127.0.0.1:0 ... EXTRA`.
fn start(model: Model, framing: Framing, extra: &[&str]) -> Server {
    let mut args = vec![
        "rpc",
        "serve",
        "--model",
        model.name(),
        "--framing",
        framing.name(),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--threads",
        "8",
        "-q",
    ];
    for m in SPEC_METHODS {
        args.extend(["--method", m]);
    }
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A client speaking one framing over one connection.
struct Rpc {
    s: Stream,
    framing: Framing,
    dec: BufDecoder,
}

impl Rpc {
    fn connect(addr: &str, framing: Framing) -> Rpc {
        Rpc {
            s: connect(addr),
            framing,
            dec: BufDecoder::new(framing, 64 << 20),
        }
    }

    fn framed(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        framing::encode(self.framing, body, &mut out);
        out
    }

    /// Sends one message, framed.
    fn send(&mut self, body: &str) {
        let wire = self.framed(body.as_bytes());
        self.s.write_all(&wire).expect("write");
    }

    fn write_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// The next frame's bytes, `None` at EOF.
    fn recv_frame(&mut self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            if let Some(f) = self.dec.next_frame().expect("server framing") {
                return Some(f.to_vec());
            }
            match self.s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.dec.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn recv(&mut self) -> Value {
        let f = self.recv_frame().expect("a response, not EOF");
        serde_json::from_slice(&f)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&f)))
    }

    fn call(&mut self, body: &str) -> Value {
        self.send(body);
        self.recv()
    }

    /// EOF follows (after whatever is still buffered).
    fn expect_eof(&mut self) {
        assert_eq!(
            self.recv_frame()
                .map(|f| String::from_utf8_lossy(&f).into_owned()),
            None
        );
    }
}

/// A response as the specification prints it: `data` is this server's addition, and a
/// batch's order is free ("in any order"), so batches compare sorted.
fn normal(v: &Value) -> Value {
    match v {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(normal).collect();
            items.sort_by_key(|x| x.to_string());
            Value::Array(items)
        }
        Value::Object(o) => {
            let mut o = o.clone();
            if let Some(Value::Object(e)) = o.get_mut("error") {
                e.remove("data");
            }
            Value::Object(o)
        }
        other => other.clone(),
    }
}

fn spec(text: &str) -> Value {
    normal(&serde_json::from_str(text).expect("the spec's answer is JSON"))
}

/// Section 7 of the JSON-RPC 2.0 specification: each request byte for byte, and its answer
/// (`None`: nothing at all comes back).
const SPEC_EXAMPLES: [(&str, Option<&str>); 15] = [
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#,
        Some(r#"{"jsonrpc": "2.0", "result": 19, "id": 1}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}"#,
        Some(r#"{"jsonrpc": "2.0", "result": -19, "id": 2}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}"#,
        Some(r#"{"jsonrpc": "2.0", "result": 19, "id": 3}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}"#,
        Some(r#"{"jsonrpc": "2.0", "result": 19, "id": 4}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#,
        None,
    ),
    (r#"{"jsonrpc": "2.0", "method": "foobar"}"#, None),
    (
        r#"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#,
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}"#,
        ),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#,
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}"#,
        ),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#,
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}"#,
        ),
    ),
    (
        "[\n  {\"jsonrpc\": \"2.0\", \"method\": \"sum\", \"params\": [1,2,4], \"id\": \"1\"},\n  {\"jsonrpc\": \"2.0\", \"method\"\n]",
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}"#,
        ),
    ),
    (
        "[]",
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}"#,
        ),
    ),
    (
        "[1]",
        Some(
            r#"[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}]"#,
        ),
    ),
    (
        "[1,2,3]",
        Some(
            r#"[
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
]"#,
        ),
    ),
    (
        r#"[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]"#,
        Some(
            r#"[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    ]"#,
        ),
    ),
    (
        r#"[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]"#,
        None,
    ),
];

/// A request whose answer marks the end of what came before: responses on one connection
/// to messages without commands come in order, so if this is the next frame, nothing was
/// sent in between.
const MARK: &str = r#"{"jsonrpc":"2.0","method":"rpc.echo","params":["mark"],"id":"mark"}"#;

fn spec_examples(model: Model) {
    for framing in Framing::ALL {
        let server = start(model, framing, &[]);
        let mut c = Rpc::connect(server.addr(), framing);
        for (request, answer) in SPEC_EXAMPLES {
            // ndjson is one message per line: the spec's multi-line batches go on one line
            // (the bytes between tokens are whitespace either way).
            let request = if framing == Framing::Ndjson {
                request.replace('\n', " ")
            } else {
                request.to_string()
            };
            c.send(&request);
            match answer {
                Some(a) => assert_eq!(normal(&c.recv()), spec(a), "{model} {framing}: {request}"),
                None => {
                    c.send(MARK);
                    assert_eq!(
                        c.recv()["id"],
                        "mark",
                        "{model} {framing}: {request} got an answer"
                    );
                }
            }
        }
        drop(c);
        let (st, err) = server.stop();
        assert!(st.success(), "{model} {framing}: {st:?}\n{err}");
    }
}

/// Ids of every type come back byte for byte, big numbers included (never through f64).
fn ids_of_every_type(model: Model) {
    let server = start(model, Framing::Ndjson, &[]);
    let mut c = Rpc::connect(server.addr(), Framing::Ndjson);
    for id in [
        "12345678901234567890123",
        "-1",
        "0",
        "1.5e300",
        "3.0",
        "\"\"",
        "\"\\u00e9\\n\"",
        "\"caf\u{e9} \u{1f600}\"",
        "null",
    ] {
        for method in ["rpc.echo", "subtract", "nope"] {
            c.send(&format!(
                r#"{{"jsonrpc":"2.0","method":"{method}","params":[2,1],"id":{id}}}"#
            ));
            let raw = c.recv_frame().expect("answer");
            let text = String::from_utf8(raw).unwrap();
            assert!(
                text.ends_with(&format!(",\"id\":{id}}}")),
                "{model} {method} {id}: {text}"
            );
        }
    }
    // An id that is neither: invalid request, answered with id null.
    for id in ["[1]", "{\"a\":1}", "true"] {
        let v = c.call(&format!(
            r#"{{"jsonrpc":"2.0","method":"rpc.echo","id":{id}}}"#
        ));
        assert_eq!(v["error"]["code"], -32600, "{model} {id}");
        assert!(v["id"].is_null());
    }
    let _ = server.stop();
}

/// Frames split into one-byte writes, many requests in one write, bad UTF-8, deep nesting:
/// right answers, and the connection goes on.
fn hostile_input(model: Model) {
    for framing in Framing::ALL {
        let server = start(model, framing, &[]);
        let mut c = Rpc::connect(server.addr(), framing);
        let one = c.framed(br#"{"jsonrpc":"2.0","method":"subtract","params":[5,3],"id":"bytes"}"#);
        for b in &one {
            c.write_raw(std::slice::from_ref(b));
        }
        assert_eq!(c.recv()["result"], 2, "{model} {framing}: one-byte writes");
        let mut many = Vec::new();
        for i in 0..200 {
            many.extend(
                c.framed(
                    format!(r#"{{"jsonrpc":"2.0","method":"rpc.echo","params":[{i}],"id":{i}}}"#)
                        .as_bytes(),
                ),
            );
        }
        c.write_raw(&many);
        for i in 0..200 {
            let v = c.recv();
            assert_eq!(v["id"], i, "{model} {framing}: many in one write");
            assert_eq!(v["result"], json!([i]));
        }
        let bad_utf8 = c.framed(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"params\":[\"\xff\xc0\"],\"id\":1}",
        );
        c.write_raw(&bad_utf8);
        let v = c.recv();
        assert_eq!(
            (v["error"]["code"].clone(), v["id"].clone()),
            (json!(-32700), Value::Null)
        );
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        c.send(&deep);
        assert_eq!(
            c.recv()["error"]["code"],
            -32700,
            "{model} {framing}: deep nesting"
        );
        let deep_params = format!(
            r#"{{"jsonrpc":"2.0","method":"rpc.echo","params":{}1{},"id":1}}"#,
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        );
        c.send(&deep_params);
        assert_eq!(c.recv()["error"]["code"], -32700);
        c.send(r#"{"jsonrpc":"2.0","method":"rpc.echo","params":{"still":"here"},"id":2}"#);
        assert_eq!(
            c.recv()["result"]["still"],
            "here",
            "{model} {framing}: alive"
        );
        drop(c);
        let _ = server.stop();
    }
}

/// A frame past --max-frame is refused from its header: one error with id null, then the
/// connection closes; the server serves the next client.
fn oversize(model: Model) {
    for framing in Framing::ALL {
        let server = start(model, framing, &["--max-frame", "1000"]);
        let mut c = Rpc::connect(server.addr(), framing);
        let head: Vec<u8> = match framing {
            // No newline within the limit.
            Framing::Ndjson => vec![b' '; 1001],
            Framing::Lsp => b"Content-Length: 50000000\r\n\r\n".to_vec(),
            Framing::Len32 => 50_000_000u32.to_be_bytes().to_vec(),
            Framing::Netstring => b"50000000:".to_vec(),
        };
        c.write_raw(&head);
        let v = c.recv();
        assert_eq!(v["error"]["code"], -32600, "{model} {framing}");
        assert!(v["id"].is_null());
        c.expect_eof();
        let mut d = Rpc::connect(server.addr(), framing);
        assert_eq!(d.call(MARK)["id"], "mark");
        drop(d);
        let _ = server.stop();
    }
    // Malformed framing: an error, then close.
    for (framing, wire) in [
        (Framing::Lsp, &b"Content-Length: x\r\n\r\n{}"[..]),
        (Framing::Netstring, b"2:{};"),
    ] {
        let server = start(model, framing, &[]);
        let mut c = Rpc::connect(server.addr(), framing);
        c.write_raw(wire);
        assert_eq!(c.recv()["error"]["code"], -32700, "{model} {framing}");
        c.expect_eof();
        let _ = server.stop();
    }
}

/// Every process whose process group is `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        // state ppid pgrp ...
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A slow command beside fast ones: the fast answers come first; past the timeout a command's
/// whole process group is gone (its background job too) and the call gets -32001.
fn commands(model: Model) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("hang.pid");
    let hang = format!(
        "hang=echo $$ > {}; sleep 100 & sleep 100",
        pidfile.display()
    );
    let server = start(
        model,
        Framing::Ndjson,
        &[
            "--call-timeout",
            "2",
            "--method",
            "slow=sleep 1; echo '\"slow\"'",
            "--method",
            "fail=echo out; echo oops >&2; exit 3",
            "--method",
            "env=echo \"$PLUMB_RPC_METHOD $PLUMB_RPC_ID ${PLUMB_RPC_ID-unset}\"",
            "--method",
            &hang,
        ],
    );
    let mut c = Rpc::connect(server.addr(), Framing::Ndjson);
    c.send(r#"{"jsonrpc":"2.0","method":"slow","id":"slow"}"#);
    c.send(r#"{"jsonrpc":"2.0","method":"subtract","params":[3,1],"id":"fast1"}"#);
    c.send(r#"{"jsonrpc":"2.0","method":"rpc.echo","params":[1],"id":"fast2"}"#);
    let order: Vec<Value> = (0..3).map(|_| c.recv()["id"].clone()).collect();
    assert_eq!(
        order[2], "slow",
        "{model}: the slow one answers last: {order:?}"
    );
    let v = c.call(r#"{"jsonrpc":"2.0","method":"fail","id":1}"#);
    assert_eq!(v["error"]["code"], -32000, "{model}");
    assert_eq!(v["error"]["data"], json!({"exit": 3, "stderr": "oops\n"}));
    let v = c.call(r#"{"jsonrpc":"2.0","method":"env","id":"x"}"#);
    assert_eq!(v["result"], "env \"x\" \"x\"");
    c.send(r#"{"jsonrpc":"2.0","method":"env"}"#);
    assert_eq!(
        c.call(MARK)["id"],
        "mark",
        "a notification's command is not answered"
    );
    let started = Instant::now();
    let v = c.call(r#"{"jsonrpc":"2.0","method":"hang","id":"h"}"#);
    assert_eq!(v["error"]["code"], -32001, "{model}: {v}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let pgid = read_pid(&pidfile).expect("the command wrote its pid");
    assert!(
        wait_until(DEADLINE, || group_members(pgid).is_empty()),
        "{model}: process group {pgid} still has {:?}",
        group_members(pgid)
    );
    assert!(
        wait_until(DEADLINE, || no_zombies(server.pid())),
        "{model}: zombies"
    );
    drop(c);
    let (st, err) = server.stop();
    assert!(st.success(), "{model}: {st:?}\n{err}");
}

/// No process below `pid` is a zombie.
fn no_zombies(pid: i32) -> bool {
    process_tree(pid)
        .into_iter()
        .all(|p| proc_state(p) != Some('Z'))
}

/// A client that vanishes mid-call: its command is killed and reaped, and the server serves
/// the next client.
fn vanishing_client(model: Model) {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("v.pid");
    let wait = format!("wait=echo $$ > {}; exec sleep 100", pidfile.display());
    let server = start(model, Framing::Ndjson, &["--method", &wait]);
    let mut c = Rpc::connect(server.addr(), Framing::Ndjson);
    c.send(r#"{"jsonrpc":"2.0","method":"wait","id":1}"#);
    assert!(wait_until(DEADLINE, || read_pid(&pidfile).is_some()));
    let pid = read_pid(&pidfile).unwrap();
    drop(c);
    assert!(
        wait_until(DEADLINE, || proc_state(pid).is_none()),
        "{model}: command {pid} still there ({:?})",
        proc_state(pid)
    );
    let mut d = Rpc::connect(server.addr(), Framing::Ndjson);
    assert_eq!(d.call(MARK)["id"], "mark");
    drop(d);
    let _ = server.stop();
}

/// A command flooding stdout is killed (-32002) and one flooding stderr is answered with the
/// last 4 KiB only; the server's memory stays small.
fn floods(model: Model) {
    let server = start(
        model,
        Framing::Ndjson,
        &[
            "--method",
            "out=yes",
            "--method",
            "err=head -c 50000000 /dev/zero | tr '\\0' e >&2; echo end >&2; exit 1",
        ],
    );
    let mut c = Rpc::connect(server.addr(), Framing::Ndjson);
    let v = c.call(r#"{"jsonrpc":"2.0","method":"out","id":1}"#);
    assert_eq!(v["error"]["code"], -32002, "{model}: {v}");
    let v = c.call(r#"{"jsonrpc":"2.0","method":"err","id":2}"#);
    assert_eq!(v["error"]["code"], -32000, "{model}");
    let tail = v["error"]["data"]["stderr"].as_str().unwrap();
    assert!(
        tail.ends_with("eeeeend\n") && tail.len() == 4096,
        "{}",
        tail.len()
    );
    assert!(wait_until(DEADLINE, || no_zombies(server.pid())));
    let rss_kib = process_tree(server.pid())
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0);
    assert!(
        rss_kib < 64 * 1024,
        "{model}: a process of the server holds {rss_kib} KiB"
    );
    drop(c);
    let _ = server.stop();
}

macro_rules! suite {
    ($($name:ident => $model:expr),* $(,)?) => {
        $(mod $name {
            use super::*;
            #[test] fn rpc_spec_examples() { spec_examples($model) }
            #[test] fn rpc_ids_of_every_type() { ids_of_every_type($model) }
            #[test] fn rpc_hostile_input() { hostile_input($model) }
            #[test] fn rpc_oversize_and_malformed_frames() { oversize($model) }
            #[test] fn rpc_commands_concurrency_and_timeout() { commands($model) }
            #[test] fn rpc_vanishing_client() { vanishing_client($model) }
            #[test] fn rpc_floods() { floods($model) }
        })*
        #[test]
        fn suite_covers_every_model() {
            let covered: &[Model] = &[$($model),*];
            for m in Model::ALL {
                assert!(covered.contains(m), "model {m} has no rpc suite");
            }
        }
    };
}

for_every_model!(suite);

/// 10,000 command calls (pipelined over a few connections): afterwards the server has the
/// descriptors and the children it had before.
#[test]
fn ten_thousand_calls_leak_nothing() {
    let server = start(
        Model::Event,
        Framing::Ndjson,
        &["--method", "t=true", "--workers", "1"],
    );
    let pid = server.pid();
    // One call first, so whatever is opened once (the log, lazily) is in the baseline.
    let mut warm = Rpc::connect(server.addr(), Framing::Ndjson);
    assert_eq!(
        warm.call(r#"{"jsonrpc":"2.0","method":"t","id":0}"#)["result"],
        ""
    );
    drop(warm);
    let fds_before = settled(Duration::from_millis(200), || open_fds(pid));
    assert!(children_of(pid).is_empty());
    let addr = server.addr().to_string();
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = Rpc::connect(&addr, Framing::Ndjson);
                let (total, window) = (2500, 32);
                let mut sent = 0;
                let mut got = 0;
                while got < total {
                    while sent < total && sent - got < window {
                        c.send(&format!(
                            r#"{{"jsonrpc":"2.0","method":"t","id":{}}}"#,
                            k * 10_000 + sent
                        ));
                        sent += 1;
                    }
                    let v = c.recv();
                    assert_eq!(v["result"], "", "{v}");
                    got += 1;
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let fds_after = settled(Duration::from_millis(200), || open_fds(pid));
    assert_eq!(
        fds_after, fds_before,
        "descriptors before and after 10,000 calls"
    );
    assert!(
        wait_until(DEADLINE, || children_of(pid).is_empty()),
        "children left: {:?}",
        children_of(pid)
    );
    let (st, err) = server.stop();
    assert!(st.success(), "{st:?}\n{err}");
}

/// The access log: one line per call with peer, method, id, outcome and duration.
#[test]
fn access_log_has_one_line_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let log_arg = log.display().to_string();
    let server = Server::start(&[
        "rpc",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--method",
        "t=true",
        "--access-log",
        &log_arg,
    ]);
    let mut c = Rpc::connect(server.addr(), Framing::Ndjson);
    c.call(r#"{"jsonrpc":"2.0","method":"t","id":7}"#);
    c.call(r#"{"jsonrpc":"2.0","method":"nope","id":"x"}"#);
    c.send(r#"{"jsonrpc":"2.0","method":"rpc.echo"}"#);
    c.call(MARK);
    drop(c);
    let (st, _) = server.stop();
    assert!(st.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let re = |l: &str, method: &str, id: &str, outcome: &str| {
        let f: Vec<&str> = l.split(' ').collect();
        assert!(f[0].starts_with("127.0.0.1:"), "{l}");
        assert_eq!((f[1], f[2]), (method, id), "{l}");
        assert_eq!(f[3..f.len() - 1].join(" "), outcome, "{l}");
        assert!(f[f.len() - 1].ends_with("ms"), "{l}");
    };
    re(lines[0], "\"t\"", "7", "ok");
    re(lines[1], "\"nope\"", "\"x\"", "error -32601");
    re(lines[2], "\"rpc.echo\"", "-", "ok");
}

/// A drain lets a call in flight finish and answers it, then the server exits.
#[test]
fn drain_finishes_calls_in_flight() {
    for model in [Model::Event, Model::Thread, Model::Prefork] {
        let mut server = start(
            model,
            Framing::Ndjson,
            &["--method", "slow=sleep 1; echo 42"],
        );
        let mut c = Rpc::connect(server.addr(), Framing::Ndjson);
        c.send(r#"{"jsonrpc":"2.0","method":"slow","id":1}"#);
        c.call(MARK);
        server.signal(plumb_sys::signal::SIGTERM);
        assert_eq!(c.recv()["result"], 42, "{model}");
        c.expect_eof();
        let st = server.wait_exit(DEADLINE).expect("exits after the drain");
        assert!(st.success(), "{model}: {st:?}\n{}", server.stderr());
    }
}

/// `--listen stdio`: one session on the process's stdin/stdout, in every framing; it answers
/// what it was sent (commands included) and exits at EOF.
#[test]
fn stdio_serves_one_session_and_exits_at_eof() {
    for framing in Framing::ALL {
        let mut input = Vec::new();
        for body in [
            r#"{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}"#,
            r#"{"jsonrpc":"2.0","method":"rpc.echo","params":{"x":[1,2]},"id":2}"#,
            r#"{"jsonrpc":"2.0","method":"nope"}"#,
        ] {
            framing::encode(framing, body.as_bytes(), &mut input);
        }
        let mut args = vec![
            "rpc",
            "serve",
            "--listen",
            "stdio",
            "--framing",
            framing.name(),
            "-q",
        ];
        for m in SPEC_METHODS {
            args.extend(["--method", m]);
        }
        let (code, out, err) = run_plumb(&args, &input);
        assert_eq!(code, 0, "{framing}: {err}");
        let mut d = BufDecoder::new(framing, 1 << 20);
        d.push(&out);
        let mut got = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            got.push(serde_json::from_slice::<Value>(f).unwrap());
        }
        got.sort_by_key(|v| v["id"].to_string());
        assert_eq!(
            got,
            [
                json!({"jsonrpc":"2.0","result":19,"id":1}),
                json!({"jsonrpc":"2.0","result":{"x":[1,2]},"id":2}),
            ],
            "{framing}"
        );
    }
    let (code, _, err) = run_plumb(
        &["rpc", "serve", "--listen", "stdio", "--access-log", "-"],
        b"",
    );
    assert_eq!(code, 2, "{err}");
}

#[test]
fn usage_errors_are_one_line() {
    for args in [
        &["rpc", "serve", "--method", "noequals"][..],
        &["rpc", "serve", "--method", "rpc.x=true"],
        &["rpc", "serve", "--method", "a=true", "--method", "a=false"],
        &["rpc", "serve", "--framing", "xml"],
        &["rpc", "serve", "--max-calls", "0"],
        &["rpc", "serve", "--max-frame", "10"],
        &["rpc", "serve", "--call-timeout", "0"],
        &[
            "rpc",
            "serve",
            "--listen",
            "stdio",
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let (code, err) = start_fails(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}
