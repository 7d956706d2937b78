//! The server under test, as a child process: started from this same binary on a free
//! loopback port (the port is read from its `plumb: listening on ADDR` line), watched through
//! /proc (CPU time and resident memory of its whole process tree, so forked children count),
//! and stopped by PID: SIGTERM, a deadline, then SIGKILL for whatever is left.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print its listening line.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(3);
/// /proc reports CPU times in USER_HZ ticks, which Linux fixes at 100 per second.
const TICKS_PER_SEC: f64 = 100.0;

/// A running server child.
pub struct ChildServer {
    child: Child,
    /// The address it listens on, as printed.
    pub addr: String,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl ChildServer {
    /// Runs `EXE ARGS` (a plumb executable) and waits for its listening line.
    ///
    /// # Errors
    /// The executable cannot be run, or the server exits or stays silent past the deadline;
    /// the message carries the server's last stderr line.
    pub fn start(exe: &std::path::Path, args: &[String]) -> anyhow::Result<ChildServer> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot start {} {}: {e}", exe.display(), args.join(" "))
            })?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(err) = child.stderr.take() {
            let sink = Arc::clone(&tail);
            thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = plumb::net::parse_listening_line(&line) {
                        let _ = tx.send(addr.to_string());
                    }
                    let mut t = sink.lock().unwrap_or_else(|p| p.into_inner());
                    t.push_back(line);
                    if t.len() > 20 {
                        t.pop_front();
                    }
                }
            });
        }
        let mut server = ChildServer {
            child,
            addr: String::new(),
            stderr_tail: tail,
        };
        match rx.recv_timeout(START_DEADLINE) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(_) => {
                server.stop();
                Err(anyhow::anyhow!(
                    "plumb {} did not start listening{}",
                    args.join(" "),
                    server.last_words()
                ))
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// ": <the server's last error line>" (or its last line), or nothing.
    pub fn last_words(&self) -> String {
        let t = self.stderr_tail.lock().unwrap_or_else(|p| p.into_inner());
        let line = t
            .iter()
            .rev()
            .find(|l| l.starts_with("plumb: ") || l.starts_with("error: "))
            .or(t.back());
        line.map_or(String::new(), |l| {
            let l = l.strip_prefix("plumb: ").unwrap_or(l);
            format!(": {}", l.strip_prefix("error: ").unwrap_or(l))
        })
    }

    /// SIGTERM, wait up to the deadline, then SIGKILL the server and anything it forked that
    /// is still alive. Returns true when it exited on SIGTERM alone.
    pub fn stop(&mut self) -> bool {
        let pid = self.pid();
        let tree = process_tree(pid);
        let _ = plumb_sys::kill(pid, plumb_sys::signal::SIGTERM);
        let deadline = Instant::now() + STOP_DEADLINE;
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                clean = true;
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        if !clean {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Forked children outlive a killed parent; they are ours, end them too.
        for p in tree.into_iter().filter(|&p| p != pid) {
            if is_plumb(p) {
                let _ = plumb_sys::kill(p, plumb_sys::signal::SIGKILL);
            }
        }
        clean
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn is_plumb(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "plumb")
}

/// `pid` and every descendant, from /proc/PID/task/*/children.
pub fn process_tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() && out.len() < 100_000 {
        let p = out[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    out
}

/// CPU seconds used by the tree: each process's user + system time plus that of its
/// children it has already reaped (so short-lived forked children are counted too).
pub fn tree_cpu_seconds(pid: i32) -> f64 {
    let ticks: u64 = process_tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| cpu_ticks(&s))
        .sum();
    ticks as f64 / TICKS_PER_SEC
}

/// utime + stime + cutime + cstime from a /proc/PID/stat line.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses; fields follow the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page, so utime (14) is index 11.
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(n(11)? + n(12)? + n(13)? + n(14)?)
}

/// Resident memory of the tree in KiB (the sum of VmRSS; pages shared between forked
/// processes are counted once per process, as `ps` would).
pub fn tree_rss_kib(pid: i32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum()
}

/// Samples the tree's RSS every `every` on its own thread and keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: i32, every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(tree_rss_kib(pid)));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak));
        let handle = thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    p.fetch_max(tree_rss_kib(pid), Ordering::Relaxed);
                    thread::sleep(every);
                }
            })
            .ok();
        RssSampler { stop, peak, handle }
    }

    /// Stops sampling and returns the peak in KiB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_odd_command_names() {
        let stat = "1234 (we ird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0";
        assert_eq!(cpu_ticks(stat), Some(7 + 3 + 2 + 1));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_a_tree_cpu_time_and_rss() {
        let me = std::process::id() as i32;
        assert!(process_tree(me).contains(&me));
        assert!(tree_rss_kib(me) > 0);
        assert!(tree_cpu_seconds(me) >= 0.0);
    }
}
