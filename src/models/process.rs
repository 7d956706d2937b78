//! What the process models (fork-wait, fork, prefork) share: the single-threaded parent that
//! forks children, reaps them, reads their connection records from the record pipe, and runs
//! the shutdown (drain, grace period, SIGTERM, SIGKILL as the last resort).
//!
//! The parent never starts a thread, so `fork` is always called from a single-threaded
//! process, and it never blocks on anything but `poll`, so records from children cannot fill
//! the pipe while it waits (a child blocked on a full pipe while its parent waits for it would
//! be a deadlock).

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plumb_sys::{ExitStatus, PollFd, events, pid_t, signal};

use super::Server;
use crate::net::Stream;
use crate::report::{Collector, Record, Reporter, Summary};
use crate::services::exec::ExecPlan;

/// Longest stderr line of a handed-over program kept whole (as on pipes).
const MAX_STDERR_LINE: usize = 2048;

/// A connection whose socket a forked child became the program on (`plumb exec` under fork
/// and fork-wait, as inetd runs programs). The parent keeps its copy of the socket only to
/// see the client shut down its side (`POLLRDHUP`, no byte read), which starts the
/// kill-after wait; it reads the program's stderr from a pipe, and reports the connection
/// when it reaps the program.
struct Handed {
    socket: Stream,
    stderr: Option<OwnedFd>,
    partial: Vec<u8>,
    peer: String,
    ip: Option<IpAddr>,
    started: Instant,
    client_done: bool,
    /// When the next signal goes to the program's group, and which.
    next_signal: Option<(Instant, i32)>,
    kill_after: Duration,
}

impl Handed {
    /// Lines from the program's stderr, read without blocking; at EOF (or `last`) the
    /// unfinished line too.
    fn read_stderr(&mut self, pid: pid_t, last: bool, collector: &mut Collector) {
        let mut buf = [0u8; 4096];
        let mut eof = false;
        if let Some(fd) = &self.stderr {
            loop {
                match plumb_sys::read(fd, &mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
                if self.partial.len() > 64 * 1024 {
                    break; // the rest on the next wake
                }
            }
        }
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            self.line(pid, &line[..nl], collector);
        }
        while self.partial.len() >= MAX_STDERR_LINE {
            let line: Vec<u8> = self.partial.drain(..MAX_STDERR_LINE).collect();
            self.line(pid, &line, collector);
        }
        if eof || last {
            if !self.partial.is_empty() {
                let line = std::mem::take(&mut self.partial);
                self.line(pid, &line, collector);
            }
            if eof {
                self.stderr = None;
            }
        }
    }

    fn line(&self, pid: pid_t, bytes: &[u8], collector: &mut Collector) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        collector.handle(Record::Stderr(format!("{} pid {pid}: {text}", self.peer)));
    }
}

pub(crate) struct Parent<'a> {
    pub(crate) server: &'a Server,
    collector: Collector,
    records: OwnedFd,
    reporter: Reporter,
    pub(crate) children: HashSet<pid_t>,
    /// Children that became the program on their connection's socket.
    handed: HashMap<pid_t, Handed>,
}

impl<'a> Parent<'a> {
    pub(crate) fn new(server: &'a Server) -> io::Result<Parent<'a>> {
        let collector = Collector::new(&server.logs)?;
        let (records, w) = plumb_sys::pipe()?;
        plumb_sys::set_nonblocking(&records, true)?;
        Ok(Parent {
            server,
            collector,
            records,
            reporter: Reporter::Pipe(Arc::new(w)),
            children: HashSet::new(),
            handed: HashMap::new(),
        })
    }

    /// Forks a child that becomes `plan`'s program with `stream` as its stdin and stdout and
    /// a pipe to us as its stderr. A connection over `--max-per-ip` is closed instead, and a
    /// program that cannot be run says so on that stderr and exits 127 (as a shell does).
    ///
    /// # Errors
    /// `fork` or `pipe` failed.
    pub(crate) fn hand_over(
        &mut self,
        stream: Stream,
        peer: &str,
        plan: &ExecPlan,
    ) -> io::Result<Option<pid_t>> {
        let info = stream.peer_info();
        let ip = plan.counted_ip(&info);
        if let (Some(ip), Some(max)) = (ip, plan.max_per_ip)
            && self.handed.values().filter(|h| h.ip == Some(ip)).count() >= max
        {
            log::debug!("{peer}: refused, --max-per-ip {max} reached");
            return Ok(None); // dropping the stream closes it
        }
        let image = match plan.image(&info) {
            Ok(image) => image,
            Err(e) => {
                self.collector
                    .handle(Record::Error(format!("exec: {peer}: {e}")));
                return Ok(None);
            }
        };
        let (err_r, err_w) = plumb_sys::pipe()?;
        plumb_sys::set_nonblocking(&err_r, true)?;
        let (shutdown, program) = (&self.server.shutdown, &plan.program);
        let (sock, err_fd) = (stream.as_raw_fd(), err_w.as_raw_fd());
        let pid = plumb_sys::process::fork_run(|| {
            shutdown.in_child();
            let e = plumb_sys::exec_on_socket(&image, sock, err_fd);
            // Still us: say why on the program's stderr (fd 2 may be the pipe by now).
            let msg = format!("plumb: cannot run {program}: {}\n", crate::net::words(&e));
            let _ = plumb_sys::write_all(&err_w, msg.as_bytes());
            127
        })?;
        drop(err_w);
        self.children.insert(pid);
        let now = Instant::now();
        self.handed.insert(
            pid,
            Handed {
                socket: stream,
                stderr: Some(err_r),
                partial: Vec::new(),
                peer: peer.to_string(),
                ip,
                started: now,
                client_done: false,
                next_signal: plan.timeout.map(|t| (now + t, signal::SIGTERM)),
                kill_after: plan.kill_after,
            },
        );
        Ok(Some(pid))
    }

    /// What the parent watches besides its own descriptors: the record pipe, and for each
    /// handed-over program its stderr and (until the client shuts down) its socket.
    pub(crate) fn watch(&self) -> Vec<PollFd> {
        let mut fds = vec![PollFd::new(self.records_fd(), events::READ)];
        for h in self.handed.values() {
            if let Some(fd) = &h.stderr {
                fds.push(PollFd::new(fd.as_raw_fd(), events::READ));
            }
            if !h.client_done {
                fds.push(PollFd::new(h.socket.as_raw_fd(), events::PEER_SHUT));
            }
        }
        fds
    }

    /// Reads the handed-over programs' stderr, notes clients that shut down, and sends the
    /// signals that are due (to the program's process group).
    fn tend_handed(&mut self) {
        if self.handed.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut socks: Vec<(pid_t, PollFd)> = self
            .handed
            .iter()
            .filter(|(_, h)| !h.client_done)
            .map(|(&pid, h)| (pid, PollFd::new(h.socket.as_raw_fd(), events::PEER_SHUT)))
            .collect();
        let mut fds: Vec<PollFd> = socks.iter().map(|(_, f)| *f).collect();
        let _ = plumb_sys::poll(&mut fds, Some(Duration::ZERO));
        for ((pid, _), f) in socks.iter_mut().zip(&fds) {
            if f.ready()
                && let Some(h) = self.handed.get_mut(pid)
            {
                h.client_done = true;
                if h.next_signal.is_none() {
                    h.next_signal = Some((now + h.kill_after, signal::SIGTERM));
                }
            }
        }
        for (&pid, h) in &mut self.handed {
            h.read_stderr(pid, false, &mut self.collector);
            if let Some((at, sig)) = h.next_signal
                && at <= now
            {
                let _ = plumb_sys::kill(-pid, sig);
                h.next_signal =
                    (sig == signal::SIGTERM).then(|| (now + h.kill_after, signal::SIGKILL));
            }
        }
    }

    /// The earliest signal due to a handed-over program.
    fn next_handed_deadline(&self) -> Option<Instant> {
        self.handed
            .values()
            .filter_map(|h| h.next_signal.map(|(at, _)| at))
            .min()
    }

    /// A child was reaped: if it was a handed-over program, its last stderr and its record.
    fn reaped(&mut self, pid: pid_t, status: ExitStatus) {
        self.children.remove(&pid);
        if let Some(mut h) = self.handed.remove(&pid) {
            h.read_stderr(pid, true, &mut self.collector);
            // A descendant may hold the group on: it goes with the program.
            let _ = plumb_sys::kill(-pid, signal::SIGKILL);
            self.collector.handle(Record::Handed {
                peer: std::mem::take(&mut h.peer),
                duration_us: h.started.elapsed().as_micros() as u64,
                by: pid as u32,
                exit: crate::report::exit_of(status),
            });
        }
    }

    /// The read end of the record pipe, for the parent's poll set.
    pub(crate) fn records_fd(&self) -> i32 {
        self.records.as_raw_fd()
    }

    /// Forks a child that runs `body` and exits. The child closes its copies of the shutdown
    /// write ends and resets its signal handlers first. Goes through sys's checked fork: it
    /// refuses when the process has more than one thread, and a panic in the child ends the
    /// child (exit code 101), never unwinds into a copy of the parent's loop.
    pub(crate) fn spawn(&mut self, body: impl FnOnce(&Reporter)) -> io::Result<pid_t> {
        let (shutdown, reporter) = (&self.server.shutdown, &self.reporter);
        let pid = plumb_sys::process::fork_run(|| {
            shutdown.in_child();
            body(reporter);
            0
        })?;
        self.children.insert(pid);
        Ok(pid)
    }

    /// Reads pending records and reaps every exited child; returns the ones reaped.
    pub(crate) fn service(&mut self) -> Vec<(pid_t, ExitStatus)> {
        self.collector.pump(&self.records);
        self.tend_handed();
        let mut reaped = Vec::new();
        while let Ok(Some((pid, status))) = plumb_sys::try_wait(-1) {
            self.reaped(pid, status);
            reaped.push((pid, status));
        }
        if !reaped.is_empty() {
            self.collector.flush_batch();
        }
        reaped
    }

    /// Waits up to `timeout` for a record, a signal (SIGCHLD, SIGTERM) or a shutdown notice,
    /// then services the children.
    /// How long the parent may sleep: forever, unless a terminal log holds lines, which go
    /// out within [`crate::report::TERMINAL_FLUSH`].
    pub(crate) fn patience(&self) -> Option<Duration> {
        let flush = self
            .collector
            .holds_lines()
            .then_some(crate::report::TERMINAL_FLUSH);
        let signal = self
            .next_handed_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        match (flush, signal) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> Vec<(pid_t, ExitStatus)> {
        let timeout = match (timeout, self.patience()) {
            (Some(t), Some(p)) => Some(t.min(p)),
            (t, p) => t.or(p),
        };
        let mut fds = self.watch();
        fds.push(PollFd::new(self.server.shutdown.wake_fd(), events::READ));
        let _ = plumb_sys::poll(&mut fds, timeout);
        self.server.shutdown.check();
        self.service()
    }

    /// Drains: children finish within the grace period, then get SIGTERM, then SIGKILL.
    /// Every child is reaped before this returns.
    pub(crate) fn finish(mut self) -> Summary {
        let deadline = self.server.shutdown.begin_drain();
        // The grace period, cut short by a second SIGINT/SIGTERM.
        self.wait_children_until(deadline, true);
        self.server.shutdown.hard_stop();
        self.wait_children_until(Instant::now() + Duration::from_secs(1), false);
        // A handed-over program leads its own process group: the signal goes to the group.
        let target = |pid: pid_t, handed: &HashMap<pid_t, Handed>| {
            if handed.contains_key(&pid) { -pid } else { pid }
        };
        for &pid in &self.children {
            let _ = plumb_sys::kill(target(pid, &self.handed), signal::SIGTERM);
        }
        self.wait_children_until(Instant::now() + Duration::from_secs(1), false);
        for &pid in &self.children {
            let _ = plumb_sys::kill(target(pid, &self.handed), signal::SIGKILL);
        }
        while !self.children.is_empty() {
            match plumb_sys::wait(-1) {
                Ok((pid, status)) => self.reaped(pid, status),
                Err(_) => break,
            }
        }
        self.service();
        self.collector.finish()
    }

    /// Waits until every child has ended or `deadline`; with `until_signal`, also until a
    /// stop signal arrives (the drain began after one, so this is a second).
    fn wait_children_until(&mut self, deadline: Instant, until_signal: bool) {
        while !self.children.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            self.wait(Some(deadline - now));
            if until_signal && self.server.shutdown.stop_requested() {
                return;
            }
        }
    }
}
