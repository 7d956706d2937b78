//! End-to-end tests of start-up (issue 10): a port someone holds is refused under every
//! model, a relay to itself is refused and a relay loop cannot exhaust descriptors, every
//! start-up mistake is one line before `listening on`, the start-up and summary lines read
//! well, `--help` names every default, and a log on a terminal is written in batches.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{fetch, get};
use common::*;
use plumb::models::Model;

/// Two document roots that answer `/who` differently, so a split port would show.
fn two_roots() -> (tempfile::TempDir, tempfile::TempDir) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(a.path().join("who"), b"A").unwrap();
    std::fs::write(b.path().join("who"), b"B").unwrap();
    (a, b)
}

fn serve_args<'a>(root: &'a str, listen: &'a str, model: Model) -> Vec<&'a str> {
    vec![
        "serve",
        root,
        "--listen",
        listen,
        "--model",
        model.name(),
        "--workers",
        "2",
        "--threads",
        "4",
        "-q",
    ]
}

/// A port held by `holder` is refused to `newcomer` (serve and echo), with one line and exit
/// 1, and the holder alone answers on it.
fn refused_beside(holder: Model, newcomer: Model) {
    let (a, b) = two_roots();
    let (ra, rb) = (a.path().to_str().unwrap(), b.path().to_str().unwrap());
    let first = Server::start(&serve_args(ra, "127.0.0.1:0", holder));
    let addr = first.addr().to_string();
    let want = format!("plumb: cannot listen on {addr}: address in use");
    let (code, err) = start_fails(&serve_args(rb, &addr, newcomer));
    assert_eq!(
        (code, err.trim()),
        (1, want.as_str()),
        "{holder} then {newcomer}"
    );
    let echo = [
        "echo",
        "--listen",
        &addr,
        "--model",
        newcomer.name(),
        "--workers",
        "2",
    ];
    let (code, err) = start_fails(&echo);
    assert_eq!(
        (code, err.trim()),
        (1, want.as_str()),
        "{holder}, echo {newcomer}"
    );
    for _ in 0..20 {
        assert_eq!(fetch(&addr, &get("/who", "")).body, b"A", "{holder}");
    }
    first.stop();
}

fn port_in_use_is_refused(model: Model) {
    // The event model's SO_REUSEPORT was the hole: both ways round, and against itself.
    refused_beside(Model::Event, model);
    refused_beside(model, Model::Event);
    // The same address twice in one command is a usage error; port 0 twice is two ports.
    let port = unreachable_addr();
    let (code, err) = start_fails(&["echo", "-m", model.name(), "-l", &port, "-l", &port]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("given twice"), "{err}");
    let s = Server::start(&[
        "echo",
        "-m",
        model.name(),
        "--workers",
        "2",
        "-l",
        "127.0.0.1:0",
        "-l",
        "127.0.0.1:0",
    ]);
    assert_ne!(s.addrs[0], s.addrs[1]);
    s.stop();
}

/// Two relays that relay to each other: each holds at most `--max-connections` connections
/// (processes, for fork) and the descriptors stop growing, instead of climbing until the
/// process limit.
fn relay_loop_is_capped(model: Model) {
    const CAP: usize = 8;
    let cap = CAP.to_string();
    let free = unreachable_addr();
    let relay = |listen: &str, to: &str| {
        Server::start(&[
            "relay",
            "--model",
            model.name(),
            "--listen",
            listen,
            "--to",
            to,
            "--max-connections",
            &cap,
            "--workers",
            "2",
            "--threads",
            "4",
            "--grace",
            "0.2",
            "-q",
        ])
    };
    let a = relay("127.0.0.1:0", &free);
    let b = relay(&free, a.addr());
    let base = tree_fds(a.pid()) + tree_fds(b.pid());
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = connect(b.addr());
        let _ = c.write_all(b"round and round");
        clients.push(c);
    }
    let fds = settled(Duration::from_millis(700), || {
        tree_fds(a.pid()) + tree_fds(b.pid())
    });
    // Each relay: two descriptors per connection and, for fork, a process per connection
    // with its inherited few; far below the thousands an uncapped loop reaches.
    let bound = base + 2 * 2 * CAP * 16;
    assert!(
        fds <= bound,
        "{model}: {fds} descriptors open (base {base})"
    );
    for s in [&a, &b] {
        let procs = process_tree(s.pid()).len();
        assert!(procs <= CAP + 3, "{model}: {procs} processes");
    }
    drop(clients);
    for s in [a, b] {
        let pid = s.pid();
        assert!(
            wait_until(DEADLINE, || process_tree(pid).iter().all(|&p| proc_state(
                p
            ) != Some(
                'Z'
            ))),
            "{model}: zombies"
        );
        let (_, err) = s.stop();
        assert!(!err.contains("panicked"), "{model}: {err}");
    }
}

macro_rules! suite {
    ($($name:ident => $model:expr),* $(,)?) => {
        $(mod $name {
            use super::*;
            #[test] fn port_in_use() { port_in_use_is_refused($model) }
            #[test] fn relay_loop_capped() { relay_loop_is_capped($model) }
        })*
    };
}

for_every_model!(suite);

#[test]
fn relay_to_itself_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let port = unreachable_addr();
    let p = port.rsplit_once(':').unwrap().1;
    let wild = format!("0.0.0.0:{p}");
    let local = format!("localhost:{p}");
    let unix = format!("unix:{}", sock.display());
    let unix_other = format!("unix:{}/../{}/r.sock", dir.path().display(), {
        dir.path().file_name().unwrap().to_str().unwrap()
    });
    let cases: [&[&str]; 4] = [
        &["relay", "--listen", &port, "--to", &port],
        &["relay", "--listen", &wild, "--to", &local],
        &["relay", "--listen", &unix, "--to", &unix_other],
        &["serve", "--listen", &port, "--proxy", &port],
    ];
    for &model in Model::ALL {
        for case in cases {
            let mut args = case.to_vec();
            args.extend(["--model", model.name()]);
            let (code, err) = start_fails(&args);
            assert_eq!(code, 2, "{args:?}: {err}");
            assert!(err.contains("this server's own address"), "{args:?}: {err}");
        }
    }
    assert!(
        !sock.exists(),
        "the refused listener's socket file is removed"
    );
}

#[test]
fn mistakes_are_one_line_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let missing = format!("unix:{}/no/such/dir/s.sock", dir.path().display());
    let log = format!("{}/no/such/dir/access.log", dir.path().display());
    // (arguments, exit code, what the line must say)
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["serve", root, "--listen", "http://127.0.0.1:8080/"],
            2,
            "a URL where an address is expected; use 127.0.0.1:8080".into(),
        ),
        (
            vec!["echo", "--listen", &missing],
            1,
            format!("plumb: cannot listen on {missing}: no such file or directory"),
        ),
        (
            vec!["connect", "--timeout", "0", "127.0.0.1:9"],
            2,
            "--timeout must be more than 0 seconds".into(),
        ),
        (
            vec![
                "serve",
                root,
                "--listen",
                "127.0.0.1:0",
                "--access-log",
                &log,
            ],
            1,
            format!("cannot open log {log}: no such file or directory"),
        ),
        (
            vec!["echo", "--listen", "127.0.0.1:0", "--log", &log],
            1,
            format!("cannot open log {log}: no such file or directory"),
        ),
        (
            vec![
                "serve",
                root,
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "100000",
            ],
            2,
            "--workers must be at most".into(),
        ),
        (
            vec!["serve", root, "--proxy", "127.0.0.1:9", "--hidden"],
            2,
            "cannot be used with".into(),
        ),
        (
            vec!["serve", "--proxy", "127.0.0.1:9", "--hidden"],
            2,
            "cannot be used with".into(),
        ),
        (
            vec!["serve", "--proxy", "127.0.0.1:9", "--file-cache-valid", "0"],
            2,
            "cannot be used with".into(),
        ),
    ];
    for (args, want_code, want) in cases {
        let (code, err) = start_fails(&args);
        assert_eq!(code, want_code, "{args:?}: {err}");
        assert!(err.contains(&want), "{args:?}: {err}");
        // The address is said once.
        if let Some(a) = args.iter().find(|a| a.starts_with("unix:")) {
            assert_eq!(err.matches(a).count(), 1, "{err}");
        }
    }
}

#[test]
fn start_up_and_summary_lines_read_well() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"hi").unwrap();
    let root = dir.path().to_str().unwrap();
    let s = Server::start(&["serve", root, "--listen", "127.0.0.1:0"]);
    let line = format!(
        "plumb: serving {root} on http://{}/ (model event)",
        s.addr()
    );
    assert!(s.stderr().contains(&line), "{}", s.stderr());
    assert_eq!(fetch(s.addr(), &get("/f", "")).status, 200);
    let (_, err) = s.stop();
    assert!(err.contains("served 1 connection, 1 request, "), "{err}");

    let sock = format!("unix:{}/s.sock", dir.path().display());
    let s = Server::start(&["serve", root, "--listen", &sock, "-q"]);
    assert!(
        s.stderr().contains(&format!(
            "plumb: serving {root} on {sock} (curl --unix-socket"
        )),
        "{}",
        s.stderr()
    );
    s.stop();

    let s = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let mut c = connect(s.addr());
    send_and_shutdown(&mut c, b"x");
    assert_eq!(read_to_end(&mut c), b"x");
    let (_, err) = s.stop();
    assert!(
        err.contains("plumb: served 1 connection, 1 byte in, 1 byte out"),
        "{err}"
    );
    assert!(!err.contains("request"), "echo has no requests: {err}");
}

#[test]
fn help_names_serve_and_every_default_address() {
    let help = |args: &[&str]| {
        let (code, out, _) = run_plumb(args, b"");
        assert_eq!(code, 0, "{args:?}");
        String::from_utf8(out).unwrap()
    };
    let top = help(&["--help"]);
    assert!(top.contains("plumb serve"), "{top}");
    for (cmd, addr) in [
        ("serve", "127.0.0.1:8080"),
        ("echo", "127.0.0.1:7007"),
        ("relay", "127.0.0.1:8081"),
    ] {
        assert!(top.contains(addr), "{top}");
        let h = help(&[cmd, "--help"]);
        assert!(h.contains(&format!("Default: {addr}")), "{cmd}: {h}");
    }
}

/// The per-request writes of the log thread (`plumb-log`), from /proc.
/// The writes of the thread that writes the log: the `plumb-log` thread of the in-process
/// models, or the single-threaded parent of the process models (`main`: its task is the pid).
fn log_thread_writes(pid: i32, process_model: bool) -> Option<u64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let is_writer = if process_model {
            t.file_name().to_str() == Some(&pid.to_string())
        } else {
            comm.trim() == "plumb-log"
        };
        if is_writer {
            let io = std::fs::read_to_string(t.path().join("io")).ok()?;
            return io
                .lines()
                .find_map(|l| l.strip_prefix("syscw: "))
                .and_then(|v| v.trim().parse().ok());
        }
    }
    None
}

/// An access log on a terminal (a pty from util-linux `script`) is written in batches, not a
/// `write` per request, and every line still comes out by the exit.
#[test]
fn access_log_on_a_terminal_is_batched_and_complete() {
    terminal_log("thread");
}

/// The same under a process model: the parent, which reads the children's records from the
/// pipe, flushes a terminal log on the same 100 ms timer (it flushed after every read).
#[test]
fn access_log_on_a_terminal_is_batched_under_fork() {
    terminal_log("fork");
}

fn terminal_log(model: &str) {
    let process_model = model == "fork";
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping: no script(1) to make a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"hi").unwrap();
    let cmd = format!(
        "exec {PLUMB} serve {} --listen 127.0.0.1:0 --model {model}",
        dir.path().display()
    );
    let mut script = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script");
    // However the test ends, script and the plumb under it end too.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            for pid in process_tree(self.0.id() as i32).into_iter().rev() {
                let _ = plumb_sys::kill(pid, plumb_sys::signal::SIGKILL);
            }
            let _ = self.0.wait();
        }
    }
    let out = script.stdout.take().unwrap();
    let mut script = Reap(script);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.trim_end_matches('\r').to_string());
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx.recv_timeout(DEADLINE).expect("plumb did not start");
        let found = plumb::net::parse_listening_line(&line).map(str::to_string);
        lines.push(line);
        if let Some(a) = found {
            break a;
        }
    };
    let pid = *children_of(script.0.id() as i32)
        .first()
        .expect("plumb under script");
    // The log thread starts just after the `listening on` line.
    assert!(
        wait_until(DEADLINE, || log_thread_writes(pid, process_model).is_some()),
        "no plumb-log thread with I/O counters"
    );
    let before = log_thread_writes(pid, process_model).unwrap();
    const N: usize = 300;
    let mut c = common::http::Client::new(&addr);
    let started = Instant::now();
    for _ in 0..N {
        c.send(&get("/f", ""));
        assert_eq!(c.response(false).status, 200);
    }
    let elapsed = started.elapsed();
    let writes = log_thread_writes(pid, process_model).unwrap() - before;
    // One flush per 100 ms (and a full buffer), not one per request.
    let most = 3 + 2 * (elapsed.as_millis() as u64 / 100);
    assert!(
        writes <= most.min(N as u64 / 3),
        "{writes} writes for {N} requests in {elapsed:?}"
    );
    // Complete and flushed: on the timer while running, and at exit.
    let deadline = Instant::now() + DEADLINE;
    while lines.iter().filter(|l| l.contains("GET /f")).count() < N && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
            lines.push(l);
        }
    }
    assert_eq!(
        lines.iter().filter(|l| l.contains("GET /f")).count(),
        N,
        "every access line reached the terminal while the server runs"
    );
    drop(c);
    plumb_sys::kill(pid, plumb_sys::signal::SIGTERM).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(st) = script.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "plumb under script did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(l);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("served 1 connection, 300 requests")),
        "{lines:?}"
    );
}

/// A log to a file is complete while the server runs (flushed on the batch or the timer,
/// not only at exit) and at exit.
#[test]
fn access_log_file_is_flushed_while_running_and_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"hi").unwrap();
    let log = dir.path().join("access.log");
    let root = dir.path().to_str().unwrap();
    for &model in Model::ALL {
        let _ = std::fs::remove_file(&log);
        let s = Server::start(&[
            "serve",
            root,
            "--listen",
            "127.0.0.1:0",
            "--model",
            model.name(),
            "--access-log",
            log.to_str().unwrap(),
            "--workers",
            "2",
        ]);
        for _ in 0..5 {
            assert_eq!(fetch(s.addr(), &get("/f", "")).status, 200);
        }
        let complete = |want: usize| {
            std::fs::read_to_string(&log).is_ok_and(|t| {
                t.ends_with('\n') && t.lines().filter(|l| l.contains("GET /f")).count() == want
            })
        };
        assert!(
            wait_until(DEADLINE, || complete(5)),
            "{model}: while running"
        );
        assert_eq!(fetch(s.addr(), &get("/f", "")).status, 200);
        s.stop();
        assert!(complete(6), "{model}: at exit");
    }
}

/// With no --max-connections, a relay under a low descriptor limit (128) holds at most what
/// the limit allows (two per connection) and never runs out of descriptors: more clients
/// wait in the backlog and are served once others leave.
#[test]
fn default_cap_keeps_a_relay_within_its_descriptors() {
    let echo = Server::start(&["echo", "--listen", "127.0.0.1:0", "--model", "thread", "-q"]);
    for model in [Model::Event, Model::Thread, Model::Pool] {
        let cmd = format!(
            "ulimit -n 128 && exec {PLUMB} relay --listen 127.0.0.1:0 --to {} --model {model} --workers 1 --threads 4 --grace 0.2",
            echo.addr()
        );
        let mut child = Command::new("sh")
            .args(["-c", &cmd])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let addr = loop {
            let mut line = String::new();
            assert!(err.read_line(&mut line).unwrap() > 0, "{model}: no start");
            if let Some(a) = plumb::net::parse_listening_line(line.trim()) {
                break a.to_string();
            }
        };
        let mut held: Vec<Stream> = (0..80)
            .map(|_| {
                let mut c = connect(&addr);
                c.write_all(b"x").unwrap();
                c
            })
            .collect();
        let fds = settled(Duration::from_millis(500), || open_fds(pid));
        assert!(fds <= 128, "{model}: {fds} descriptors");
        // The first clients are relayed; the rest wait their turn.
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut held[0], &mut b).unwrap();
        held.clear();
        let mut c = connect(&addr);
        send_and_shutdown(&mut c, b"after");
        assert_eq!(read_to_end(&mut c), b"after", "{model}");
        plumb_sys::kill(pid, plumb_sys::signal::SIGTERM).unwrap();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        let st = child.wait().unwrap();
        assert!(st.success(), "{model}: {rest}");
        assert!(!rest.contains("out of file descriptors"), "{model}: {rest}");
    }
    echo.stop();
}
