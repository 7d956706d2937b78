//! Test harness: start the real `plumb` binary, find the addresses it listens on, talk to it
//! over real sockets, and stop it by PID. Every wait has a deadline; nothing here forks the
//! test process (children are spawned with `std::process::Command`, i.e. fork+exec inside
//! std, never a bare fork).
#![allow(dead_code)]

pub mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use plumb::net::{Addr, Stream};

pub const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The transports every suite runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    V4,
    V6,
    Unix,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::V4, Transport::V6, Transport::Unix];

    /// A `--listen` value on a free port or a fresh temp path; `None` (with a printed reason)
    /// when the machine lacks the transport.
    pub fn listen_arg(self, dir: &tempfile::TempDir) -> Option<String> {
        match self {
            Transport::V4 => Some("127.0.0.1:0".into()),
            Transport::V6 => {
                if has_ipv6() {
                    Some("[::1]:0".into())
                } else {
                    eprintln!("skipping IPv6: this machine has no ::1");
                    None
                }
            }
            Transport::Unix => Some(format!("unix:{}", dir.path().join("s.sock").display())),
        }
    }
}

/// Whether ::1 can be bound here.
pub fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// A loopback `host:port` where nobody listens: a port the kernel just handed out, closed
/// again, so connecting to it is refused.
pub fn unreachable_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Calls `$suite!` with one `name => Model` entry per model the binary has, so the per-model
/// suites share one list (and their `every_model_is_tested` checks guard it).
#[macro_export]
macro_rules! for_every_model {
    ($suite:ident) => {
        $suite! {
            iterative => plumb::models::Model::Iterative,
            fork_wait => plumb::models::Model::ForkWait,
            fork => plumb::models::Model::Fork,
            thread => plumb::models::Model::Thread,
            pool => plumb::models::Model::Pool,
            prefork => plumb::models::Model::Prefork,
            event => plumb::models::Model::Event,
        }
    };
}

/// A running `plumb` server.
pub struct Server {
    child: Option<Child>,
    /// The addresses from the `listening on` lines, in order.
    pub addrs: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `plumb ARGS` and waits until it has printed one `listening on` line per
    /// `--listen`/`-l` argument (at least one).
    pub fn start(args: &[&str]) -> Server {
        let want = args
            .iter()
            .filter(|a| **a == "--listen" || **a == "-l")
            .count()
            .max(1);
        Self::start_with(args, want)
    }

    pub fn start_with(args: &[&str], want_listeners: usize) -> Server {
        let mut child = Command::new(PLUMB)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plumb");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = plumb::net::parse_listening_line(&line) {
                    let _ = tx.send(addr.to_string());
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        // Drain stdout so a chatty server never blocks on a full pipe.
        let out = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str("[stdout] ");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut addrs = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while addrs.len() < want_listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(a) => addrs.push(a),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "plumb {args:?} did not start listening; stderr:\n{}",
                        stderr.lock().unwrap()
                    );
                }
            }
        }
        Server {
            child: Some(child),
            addrs,
            stderr,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addrs[0]
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Everything the server printed so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: i32) {
        plumb_sys::kill(self.pid(), sig).expect("kill");
    }

    /// SIGTERM, then waits (with a deadline) for the exit. Returns the status and stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(plumb_sys::signal::SIGTERM);
        let status = self
            .wait_exit(DEADLINE)
            .expect("plumb did not exit after SIGTERM");
        // Let the reader threads catch the last lines.
        thread::sleep(Duration::from_millis(50));
        (status, self.stderr())
    }

    /// Waits up to `d` for the server to exit.
    pub fn wait_exit(&mut self, d: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + d;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connects to an address printed by the server.
pub fn connect(addr: &str) -> Stream {
    let a = Addr::parse(addr, None).expect("address");
    let s = Stream::connect(&a, Some(DEADLINE)).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    set_timeouts(&s);
    s
}

/// Read/write timeouts, so a test that waits for bytes that never come fails instead of hanging.
pub fn set_timeouts(s: &Stream) {
    match s {
        Stream::Tcp(t) => {
            t.set_read_timeout(Some(DEADLINE)).unwrap();
            t.set_write_timeout(Some(DEADLINE)).unwrap();
        }
        Stream::Unix(u) => {
            u.set_read_timeout(Some(DEADLINE)).unwrap();
            u.set_write_timeout(Some(DEADLINE)).unwrap();
        }
    }
}

/// Reads until EOF.
pub fn read_to_end(s: &mut Stream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read to EOF");
    v
}

/// Writes all and half-closes.
pub fn send_and_shutdown(s: &mut Stream, data: &[u8]) {
    s.write_all(data).expect("write");
    s.shutdown_write().expect("shutdown");
}

/// Polls `f` until it is true or the deadline passes.
pub fn wait_until(d: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Direct children of `pid` (all threads), from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
    }
    out
}

/// The state letter of a process (`Z` for a zombie), or None if it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Deterministic pseudo-random bytes (xorshift), so a failing test can be replayed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// SHA-256 of a byte stream, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `plumb ARGS` to completion with a deadline; returns (exit code, stdout, stderr).
pub fn run_plumb(args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = Command::new(PLUMB)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plumb");
    let mut inp = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = inp.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let mut err = child.stderr.take().unwrap();
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + DEADLINE * 3;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("plumb {args:?} did not finish in time");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    (
        status.code().unwrap_or(-1),
        reader.join().unwrap(),
        err_reader.join().unwrap(),
    )
}

/// Open descriptors of a process (entries of /proc/PID/fd), 0 once it is gone.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `pid` and all its descendants, from /proc.
pub fn process_tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let kids = children_of(all[i]);
        all.extend(kids);
        i += 1;
    }
    all
}

/// Open descriptors summed over `pid` and its descendants.
pub fn tree_fds(pid: i32) -> usize {
    process_tree(pid).into_iter().map(open_fds).sum()
}

/// Waits until `sample` has returned the same value for `quiet` in a row (a process that has
/// stopped growing), or the deadline passes; returns the last value.
pub fn settled(quiet: Duration, mut sample: impl FnMut() -> usize) -> usize {
    let deadline = Instant::now() + DEADLINE;
    let mut last = sample();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        let now = sample();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    last
}

/// Runs `plumb ARGS` that must fail at start-up: returns (exit code, stderr), checking that
/// it printed no `listening on` line first and said what is wrong in exactly one line.
pub fn start_fails(args: &[&str]) -> (i32, String) {
    let (code, _, err) = run_plumb(args, b"");
    assert!(
        !err.contains("listening on"),
        "plumb {args:?} said it listens before failing: {err}"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "plumb {args:?}: not one line: {err:?}"
    );
    assert!(!err.contains("os error"), "plumb {args:?}: {err}");
    (code, err)
}
