//! End-to-end suite for `plumb exec` (a program per connection) and `plumb relay --to exec:`,
//! run over every concurrency model: under fork and fork-wait the program gets the socket
//! itself, under the others it runs on pipes the server relays, and both pass the same suite.

mod common;

use std::io::{Read, Write};

use std::time::{Duration, Instant};

use common::*;
use plumb::models::Model;

/// Starts `plumb exec --model M --listen ADDR EXTRA... -- PROGRAM...`.
fn start(model: Model, listen: &str, extra: &[&str], program: &[&str]) -> Server {
    let mut args = vec![
        "exec",
        "--model",
        model.name(),
        "--listen",
        listen,
        "--workers",
        "4",
        "--threads",
        "8",
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(program);
    Server::start(&args)
}

/// Sends `len` pseudo-random bytes through `cat` while reading concurrently, half-closes,
/// compares checksums.
fn through_cat(server: &Server, len: usize, what: &str) {
    let data = random_bytes(len, 0xca7 ^ len as u64);
    let want = sha256_hex(&data);
    let mut s = connect(server.addr());
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in data.chunks(1 << 20) {
            w.write_all(chunk).unwrap();
        }
        w.shutdown_write().unwrap();
    });
    // Hash as it comes: 1 GiB is not kept in memory twice.
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        got += n;
    }
    writer.join().unwrap();
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(got, len, "{what}: length");
    assert_eq!(hex, want, "{what}: checksum");
}

/// `exec -- cat` is an echo server: a checksummed transfer over every transport (1 GiB over
/// TCP for the event loop and fork, the two paths; 16 MiB elsewhere), and half-close both
/// ways: the client's EOF reaches the program, and the program's end reaches the client
/// while the client's side is still open.
fn cat_is_an_echo_server(model: Model) {
    for t in Transport::ALL {
        let dir = tempfile::tempdir().unwrap();
        let Some(listen) = t.listen_arg(&dir) else {
            continue;
        };
        let server = start(model, &listen, &[], &["cat"]);
        let big = matches!(model, Model::Event | Model::Fork) && t == Transport::V4;
        let len = if big { 1 << 30 } else { 16 << 20 };
        through_cat(&server, len, &format!("{model} {t:?}"));
        // Small writes and NUL bytes, then half-close: everything comes back, then EOF.
        let mut s = connect(server.addr());
        for piece in [&b"\0"[..], b"a\0b", b"", b"\xff last"] {
            s.write_all(piece).unwrap();
        }
        s.shutdown_write().unwrap();
        assert_eq!(read_to_end(&mut s), b"\0a\0b\xff last", "{model} {t:?}");
        let (st, err) = server.stop();
        assert!(st.success(), "{model} {t:?}: {st:?}\n{err}");
    }
    // The program ends first: the client sees its output and EOF without closing its side.
    let dir = tempfile::tempdir().unwrap();
    let server = start(model, "127.0.0.1:0", &[], &["sh", "-c", "echo bye"]);
    let mut s = connect(server.addr());
    assert_eq!(read_to_end(&mut s), b"bye\n", "{model}");
    drop(dir);
    server.stop();
}

/// A client's own uid, from /proc.
fn my_uid_gid() -> (String, String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_string()
    };
    (field("Uid:"), field("Gid:"))
}

/// tcp-environ over IPv4, IPv6 and UNIX: the program sees both ends of its connection.
fn environment(model: Model) {
    let script = "echo \"$PROTO|$TCPREMOTEIP|$TCPREMOTEPORT|$TCPLOCALIP|$TCPLOCALPORT|\
                  $UNIXREMOTEPID|$UNIXREMOTEUID|$UNIXREMOTEGID|$EXTRA\"";
    for t in Transport::ALL {
        let dir = tempfile::tempdir().unwrap();
        let Some(listen) = t.listen_arg(&dir) else {
            continue;
        };
        let server = start(
            model,
            &listen,
            &["--env", "EXTRA=x=1"],
            &["sh", "-c", script],
        );
        let mut s = connect(server.addr());
        let want = match &s {
            Stream::Tcp(tcp) => {
                let me = tcp.local_addr().unwrap();
                let them = tcp.peer_addr().unwrap();
                format!(
                    "TCP|{}|{}|{}|{}||||x=1\n",
                    me.ip(),
                    me.port(),
                    them.ip(),
                    them.port()
                )
            }
            Stream::Unix(_) => {
                let (uid, gid) = my_uid_gid();
                format!("UNIX|||||{}|{uid}|{gid}|x=1\n", std::process::id())
            }
        };
        s.shutdown_write().unwrap();
        let got = String::from_utf8(read_to_end(&mut s)).unwrap();
        assert_eq!(got, want, "{model} {t:?}");
        server.stop();
    }
    // --clear-env: only the connection's variables and --env.
    let server = start(
        model,
        "127.0.0.1:0",
        &["--clear-env", "--env", "A=b"],
        &["/usr/bin/env"],
    );
    let mut s = connect(server.addr());
    let got = String::from_utf8(read_to_end(&mut s)).unwrap();
    let mut names: Vec<&str> = got.lines().filter_map(|l| l.split('=').next()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "A",
            "PROTO",
            "TCPLOCALIP",
            "TCPLOCALPORT",
            "TCPREMOTEIP",
            "TCPREMOTEPORT"
        ],
        "{model}: {got}"
    );
    server.stop();
}

/// The program's descriptors are exactly 0, 1 and 2 (no listener, no record pipe, no other
/// connection leaks into it), and its stderr reaches the server's stderr with the peer and
/// pid, never the client.
fn descriptors_and_stderr(model: Model) {
    let server = start(
        model,
        "127.0.0.1:0",
        &[],
        &["sh", "-c", "ls /proc/$$/fd; echo oops-$$ >&2"],
    );
    // Another connection open meanwhile must not be inherited either.
    let _other = connect(server.addr());
    let mut s = connect(server.addr());
    let local = match &s {
        Stream::Tcp(t) => t.local_addr().unwrap().to_string(),
        Stream::Unix(_) => unreachable!(),
    };
    let got = String::from_utf8(read_to_end(&mut s)).unwrap();
    assert_eq!(got, "0\n1\n2\n", "{model}: the program's descriptors");
    assert!(
        wait_until(DEADLINE, || server.stderr().lines().any(|l| l
            .starts_with(&format!("{local} pid "))
            && l.contains(": oops-"))),
        "{model}: no prefixed stderr line:\n{}",
        server.stderr()
    );
    server.stop();
}

/// Pids a script printed, one per line.
fn pids(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn gone(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z'))
}

/// A program that ignores its stdin's EOF gets SIGTERM `--kill-after` after the client is
/// done, with its whole process group (the background grandchild too); one that ignores
/// SIGTERM gets SIGKILL after as long again. The exit statuses are in the connection log.
fn kill_after(model: Model) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conn.log");
    let log_s = log.to_str().unwrap();
    let server = start(
        model,
        "127.0.0.1:0",
        &["--kill-after", "0.3", "--log", log_s],
        &[
            "sh",
            "-c",
            "if [ \"$NOTERM\" = 1 ]; then trap '' TERM; fi; sleep 300 & echo $!; echo $$; sleep 300",
        ],
    );
    let mut s = connect(server.addr());
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    s.shutdown_write().unwrap();
    let started = Instant::now();
    let mut rest = read_to_end(&mut s);
    rest.insert(0, first[0]);
    let seen = pids(&String::from_utf8(rest).unwrap());
    assert_eq!(seen.len(), 2, "{model}: pids {seen:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{model}: closed before --kill-after"
    );
    for p in &seen {
        assert!(
            wait_until(DEADLINE, || gone(*p)),
            "{model}: process {p} of the group survived"
        );
    }
    let records = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(DEADLINE, || records().contains("exit=signal:15")),
        "{model}: no SIGTERM exit in the log:\n{}",
        records()
    );
    server.stop();

    // SIGTERM ignored: SIGKILL follows.
    let server = start(
        model,
        "127.0.0.1:0",
        &["--kill-after", "0.3", "--log", log_s, "--env", "NOTERM=1"],
        &[
            "sh",
            "-c",
            "if [ \"$NOTERM\" = 1 ]; then trap '' TERM; fi; sleep 300 & echo $!; echo $$; sleep 300",
        ],
    );
    let mut s = connect(server.addr());
    s.shutdown_write().unwrap();
    let seen = pids(&String::from_utf8(read_to_end(&mut s)).unwrap());
    assert_eq!(seen.len(), 2, "{model}: pids {seen:?}");
    for p in &seen {
        assert!(
            wait_until(DEADLINE, || gone(*p)),
            "{model}: process {p} survived SIGKILL"
        );
    }
    assert!(
        wait_until(DEADLINE, || records().contains("exit=signal:9")),
        "{model}: no SIGKILL exit in the log:\n{}",
        records()
    );
    server.stop();
}

/// `--timeout`: a program that runs too long is stopped even while its client stays.
fn timeout(model: Model) {
    let server = start(
        model,
        "127.0.0.1:0",
        &["--timeout", "0.3", "--kill-after", "0.3"],
        &["sleep", "300"],
    );
    let mut s = connect(server.addr());
    let t0 = Instant::now();
    assert_eq!(read_to_end(&mut s), b"", "{model}");
    assert!(t0.elapsed() >= Duration::from_millis(250), "{model}");
    server.stop();
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|r| r.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A program writing 64 MiB to a client that reads slowly: no deadlock, every byte arrives,
/// and the server's memory does not grow with what is in flight (the windows and the pipe
/// hold it back).
fn slow_reader(model: Model) {
    let server = start(
        model,
        "127.0.0.1:0",
        &[],
        &["head", "-c", "67108864", "/dev/zero"],
    );
    let mut s = connect(server.addr());
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    let base = rss_kib(server.pid());
    let mut peak = base;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 0));
        got += n;
        peak = peak.max(rss_kib(server.pid()));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(got, 64 << 20, "{model}");
    assert!(
        peak < base + 16 * 1024,
        "{model}: server RSS grew from {base} KiB to {peak} KiB"
    );
    server.stop();
}

/// Zombies among `pid`'s descendants.
fn zombies(pid: i32) -> Vec<i32> {
    process_tree(pid)
        .into_iter()
        .skip(1)
        .filter(|&p| proc_state(p) == Some('Z'))
        .collect()
}

/// Many short programs: afterwards no zombie, no child left but the model's own workers, and
/// the same descriptors as at the start.
fn many_short_children(model: Model) {
    let n = match model {
        Model::Event | Model::Fork => 10_000,
        _ => 1_000,
    };
    let server = start(model, "127.0.0.1:0", &[], &["/bin/echo", "hi"]);
    let mut c = connect(server.addr());
    assert_eq!(read_to_end(&mut c), b"hi\n");
    drop(c);
    let pid = server.pid();
    let settle = || settled(Duration::from_millis(300), || open_fds(pid));
    let before = settle();
    let workers = || children_of(pid).len();
    let workers_before = settled(Duration::from_millis(300), workers);
    for i in 0..n {
        let mut c = connect(server.addr());
        assert_eq!(read_to_end(&mut c), b"hi\n", "{model}: connection {i}");
    }
    assert!(
        wait_until(DEADLINE, || zombies(pid).is_empty()),
        "{model}: zombies {:?}",
        zombies(pid)
    );
    assert_eq!(
        settled(Duration::from_millis(300), workers),
        workers_before,
        "{model}: children left"
    );
    assert_eq!(settle(), before, "{model}: descriptors");
    let (st, err) = server.stop();
    assert!(st.success(), "{err}");
    assert!(
        err.contains(&format!("served {} connections", n + 1)),
        "{model}: {err}"
    );
}

/// `--max-per-ip 1`: a second connection from the same address is closed at once, without a
/// program; once the first ends, a new one is served.
fn max_per_ip(model: Model) {
    if matches!(model, Model::Iterative | Model::ForkWait | Model::Prefork) {
        return; // one connection at a time (prefork refuses the option: see usage tests)
    }
    let server = start(
        model,
        "127.0.0.1:0",
        &["--max-per-ip", "1"],
        &["sh", "-c", "echo in; cat"],
    );
    let mut first = connect(server.addr());
    let mut line = [0u8; 3];
    first.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"in\n");
    let mut second = connect(server.addr());
    let mut got = Vec::new();
    let _ = second.read_to_end(&mut got); // EOF, or a reset
    assert_eq!(got, b"", "{model}: the second connection ran a program");
    first.shutdown_write().unwrap();
    assert_eq!(read_to_end(&mut first), b"");
    // The place is given back once the first connection has ended.
    assert!(
        wait_until(DEADLINE, || {
            let mut third = connect(server.addr());
            let mut got = Vec::new();
            third.shutdown_write().unwrap();
            let _ = third.read_to_end(&mut got);
            got == b"in\n"
        }),
        "{model}: no connection served after the first ended"
    );
    server.stop();
}

/// A program that cannot be run: the connection closes and the server says why.
fn missing_program(model: Model) {
    let server = start(model, "127.0.0.1:0", &[], &["/nonexistent/program"]);
    let mut s = connect(server.addr());
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got, b"", "{model}");
    assert!(
        wait_until(DEADLINE, || server
            .stderr()
            .contains("cannot run /nonexistent/program")),
        "{model}: {}",
        server.stderr()
    );
    // And the next connection is served as well (the server lives on).
    let mut s = connect(server.addr());
    let _ = s.read_to_end(&mut got);
    server.stop();
}

/// `relay --to exec:COMMAND`: each client's upstream is a fresh shell command on pipes.
fn relay_to_exec(model: Model) {
    let server = Server::start(&[
        "relay",
        "--model",
        model.name(),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--to",
        "exec:tr a-z A-Z",
    ]);
    for _ in 0..3 {
        let mut s = connect(server.addr());
        send_and_shutdown(&mut s, b"hello relay\n");
        assert_eq!(read_to_end(&mut s), b"HELLO RELAY\n", "{model}");
    }
    through_cat_like_tr(&server, model);
    server.stop();
}

/// 8 MiB of lowercase letters through `tr`, concurrently read back as uppercase.
fn through_cat_like_tr(server: &Server, model: Model) {
    let data: Vec<u8> = random_bytes(8 << 20, 7)
        .into_iter()
        .map(|b| b'a' + b % 26)
        .collect();
    let want: Vec<u8> = data.iter().map(u8::to_ascii_uppercase).collect();
    let mut s = connect(server.addr());
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown_write().unwrap();
    });
    let got = read_to_end(&mut s);
    writer.join().unwrap();
    assert!(got == want, "{model}: 8 MiB through tr");
}

macro_rules! suite {
    ($($name:ident => $model:expr,)*) => {
        $(
            mod $name {

                #[test] fn cat_is_an_echo_server() { super::cat_is_an_echo_server($model) }
                #[test] fn environment() { super::environment($model) }
                #[test] fn descriptors_and_stderr() { super::descriptors_and_stderr($model) }
                #[test] fn kill_after() { super::kill_after($model) }
                #[test] fn timeout() { super::timeout($model) }
                #[test] fn slow_reader() { super::slow_reader($model) }
                #[test] fn many_short_children() { super::many_short_children($model) }
                #[test] fn max_per_ip() { super::max_per_ip($model) }
                #[test] fn missing_program() { super::missing_program($model) }
                #[test] fn relay_to_exec() { super::relay_to_exec($model) }
            }
        )*
        #[test]
        fn every_model_is_tested() {
            let tested = [$($model),*];
            for m in Model::ALL {
                assert!(tested.contains(m), "{m} has no exec suite");
            }
        }
    };
}

for_every_model!(suite);

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    for args in [
        &["exec"][..],
        &["exec", "--"],
        &["exec", "--env", "novalue", "--", "cat"],
        &["exec", "--max-per-ip", "0", "--", "cat"],
        &["exec", "--timeout", "0", "--", "cat"],
        &["exec", "--kill-after", "-1", "--", "cat"],
        &[
            "exec",
            "--model",
            "prefork",
            "--max-per-ip",
            "2",
            "--",
            "cat",
        ],
        &["relay", "--to", "exec:", "--listen", "127.0.0.1:0"],
    ] {
        let (code, err) = start_fails(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}
