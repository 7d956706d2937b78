//! End-to-end tests of `plumb rpc call` against the real `plumb rpc serve`: over TCP, a UNIX
//! socket and `exec:` (a `plumb rpc serve --listen stdio` child, as an editor would start
//! it), in every framing; one call, --notify, --batch, error exits, the stdin line mode; and
//! the one-line errors for a refused connection, a silent server, a server that closes, bad
//! PARAMS and a program that exits. After the exec calls, no process they started is left.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use common::{PLUMB, Server, run_plumb, unreachable_addr, wait_until};
use serde_json::{Value, json};

/// Methods every test server has: one that succeeds with its stdin, one that fails.
const METHODS: [&str; 4] = [
    "--method",
    "cat=cat",
    "--method",
    "fail=echo broken >&2; exit 3",
];

/// `plumb rpc call ARGS` with `stdin`: (exit code, stdout, stderr).
fn call(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut full = vec!["rpc", "call"];
    full.extend_from_slice(args);
    let (code, out, err) = run_plumb(&full, stdin);
    (code, String::from_utf8(out).expect("UTF-8 stdout"), err)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// Processes whose command line contains `marker` (the exec'd servers of a test).
fn processes_with(marker: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// The exec: address of a stdio server in `framing`, tagged with `marker` so the test can
/// see that nothing of it outlives the call.
fn exec_addr(framing: &str, marker: &str) -> String {
    format!(
        "exec:{PLUMB} rpc serve --listen stdio -q --framing {framing} --method cat=cat \
         --method 'fail=echo broken >&2; exit 3' --method {marker}=true"
    )
}

/// The same conversation, whatever the transport or framing.
fn conversation(addr: &str, framing: &str) {
    let f = ["--framing", framing];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![addr.to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend(f.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str], stdin: &[u8]| {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        call(&args, stdin)
    };
    // A call: the result on stdout, exit 0; big numbers keep every digit.
    let (code, out, err) = run(
        &["rpc.echo", r#"{"n":12345678901234567890123,"s":"x"}"#],
        b"",
    );
    assert_eq!(code, 0, "{addr} {framing}: {err}");
    assert!(out.contains("12345678901234567890123"), "{out}");
    assert_eq!(parse(&out)["s"], "x", "{out}");
    assert_eq!(out.lines().count(), 1, "{out:?}");
    // Positional params to a command method: its stdin is the params.
    let (code, out, err) = run(&["cat", "[1, 2]"], b"");
    assert_eq!(code, 0, "{err}");
    assert_eq!(parse(&out), json!([1, 2]));
    // A notification: nothing printed, exit 0.
    let (code, out, err) = run(&["rpc.echo", "[1]", "--notify"], b"");
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // An unknown method: the error object on stderr, exit 1.
    let (code, out, err) = run(&["nosuch"], b"");
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert_eq!(parse(&err)["code"], -32601, "{err}");
    // A failing command: -32000 with its exit status and stderr.
    let (code, _, err) = run(&["fail"], b"");
    assert_eq!(code, 1);
    let e = parse(&err);
    assert_eq!(e["code"], -32000, "{err}");
    assert_eq!(e["data"]["exit"], 3, "{err}");
    assert!(
        e["data"]["stderr"].as_str().unwrap().contains("broken"),
        "{err}"
    );
    // A batch: the array (the notification in it has no answer); exit 1 as one failed.
    let batch = br#"[
        {"jsonrpc":"2.0","method":"rpc.echo","params":[1],"id":1},
        {"jsonrpc":"2.0","method":"rpc.echo","params":[2]},
        {"jsonrpc":"2.0","method":"nosuch","id":"b"}
    ]"#;
    let (code, out, err) = run(&["--batch", "-"], batch);
    assert_eq!(code, 1, "{err}");
    let answers = parse(&out);
    let answers = answers.as_array().expect("an array");
    assert_eq!(answers.len(), 2, "{out}");
    let by_id = |id: Value| answers.iter().find(|a| a["id"] == id).cloned();
    assert_eq!(by_id(json!(1)).unwrap()["result"], json!([1]));
    assert_eq!(by_id(json!("b")).unwrap()["error"]["code"], -32601);
    // A batch of only notifications: no answer at all, nothing printed, exit 0.
    let (code, out, err) = run(
        &["--batch", "-"],
        br#"[{"jsonrpc":"2.0","method":"rpc.echo"},{"jsonrpc":"2.0","method":"cat","params":[1]}]"#,
    );
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // An empty batch: one -32600 error object (not an array), on stderr, exit 1.
    let (code, _, err) = run(&["--batch", "-"], b"[]");
    assert_eq!(code, 1);
    assert_eq!(parse(&err)["code"], -32600, "{err}");
    // Line mode: one response line per request line, in order; blank lines and
    // notifications give none; a raw message is sent as it is.
    let lines = b"rpc.echo [1]\n\nrpc.echo {\"a\": 2}\n\
        {\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"params\":[3],\"id\":\"x\"}\n\
        {\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"params\":[4]}\n\
        {bad json\nnosuch\ncat [5]\n";
    let (code, out, err) = run(&[], lines);
    assert_eq!(code, 0, "{err}");
    let got: Vec<Value> = out.lines().map(parse).collect();
    assert_eq!(got.len(), 6, "{out}");
    assert_eq!(got[0]["result"], json!([1]));
    assert_eq!(got[1]["result"], json!({"a": 2}));
    assert_eq!(got[2]["result"], json!([3]));
    assert_eq!(got[2]["id"], "x");
    assert_eq!(got[3]["error"]["code"], -32700);
    assert_eq!(got[3]["id"], Value::Null);
    assert_eq!(got[4]["error"]["code"], -32601);
    assert_eq!(got[5]["result"], json!([5]));
    // Distinct generated ids.
    assert_ne!(got[0]["id"], got[1]["id"]);
}

#[test]
fn calls_over_tcp_and_unix_in_every_framing() {
    for framing in ["ndjson", "lsp", "len32", "netstring"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpc.sock");
        let unix = format!("unix:{}", path.display());
        let mut args = vec![
            "rpc",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &unix,
            "--framing",
            framing,
            "-q",
        ];
        args.extend_from_slice(&METHODS);
        let server = Server::start(&args);
        conversation(server.addr(), framing);
        conversation(&unix, framing);
        server.stop();
    }
}

#[test]
fn calls_a_stdio_server_through_exec_and_leaves_nothing_behind() {
    for framing in ["ndjson", "lsp"] {
        let marker = format!("marker{}x{framing}", std::process::id());
        conversation(&exec_addr(framing, &marker), framing);
        // Each call's server saw EOF and exited, or was killed; all reaped by plumb call.
        assert!(
            wait_until(Duration::from_secs(5), || processes_with(&marker)
                .is_empty()),
            "left running: {:?}",
            processes_with(&marker)
        );
    }
}

#[test]
fn failures_are_one_line_with_the_right_exit_code() {
    let one_line = |args: &[&str], stdin: &[u8], want_code: i32, want: &str| {
        let (code, out, err) = call(args, stdin);
        assert_eq!(code, want_code, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("plumb: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err} lacks {want:?}");
        assert!(!err.contains("os error"), "{err}");
    };
    let refused = unreachable_addr();
    one_line(&[&refused, "m"], b"", 1, "connection refused");
    one_line(
        &["unix:/nonexistent/rpc.sock", "m"],
        b"",
        1,
        "no such socket",
    );
    one_line(&["127.0.0.1:1", "m", "{bad"], b"", 2, "PARAMS is not JSON");
    one_line(&["127.0.0.1:1", "m", "3"], b"", 2, "array or object");
    one_line(&["127.0.0.1:1", "m", "--framing", "xml"], b"", 2, "xml");
    one_line(&["127.0.0.1:1", "m", "--timeout", "0"], b"", 2, "--timeout");
    one_line(&["nohost", "m"], b"", 2, "invalid address");
    one_line(&["exec:", "m"], b"", 2, "exec:");
    one_line(&["127.0.0.1:1", "--batch", "-"], b"{}", 2, "JSON array");
    one_line(&["127.0.0.1:1", "--batch", "-"], b"[1", 2, "not JSON");
    one_line(
        &["127.0.0.1:1", "--batch", "/nonexistent.json"],
        b"",
        2,
        "no such file",
    );
    one_line(&["exec:exit 3", "m"], b"", 1, "exit status: 3");
    // In line mode, a bad line stops the run with its line number.
    one_line(&["exec:cat"], b"\nm {bad\nrpc.echo [1]\n", 1, "line 2");

    // A server that accepts and never answers: a timeout; one that closes: said so.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let closing = TcpListener::bind("127.0.0.1:0").unwrap();
    let closing_addr = closing.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    thread::spawn(move || {
        for mut c in closing.incoming().flatten() {
            let mut buf = [0u8; 256];
            let _ = c.read(&mut buf);
        }
    });
    one_line(
        &[&silent_addr, "m", "--timeout", "0.3"],
        b"",
        1,
        "no answer from",
    );
    one_line(&[&closing_addr, "m"], b"", 1, "closed the connection");
}

#[test]
fn a_wrong_framing_is_named_in_the_timeout() {
    let mut args = vec![
        "rpc",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--framing",
        "lsp",
        "-q",
    ];
    args.extend_from_slice(&METHODS);
    let server = Server::start(&args);
    // Asked in len32, the LSP server answers nothing it can frame (or closes): either way
    // one line, exit 1.
    let (code, _, err) = call(
        &[
            server.addr(),
            "rpc.echo",
            "[1]",
            "--framing",
            "len32",
            "--timeout",
            "1",
        ],
        b"",
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    server.stop();
}
