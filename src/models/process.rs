//! What the process models (fork-wait, fork, prefork) share: the single-threaded parent that
//! forks children, reaps them, reads their connection records from the record pipe, and runs
//! the shutdown (drain, grace period, SIGTERM, SIGKILL as the last resort).
//!
//! The parent never starts a thread, so `fork` is always called from a single-threaded
//! process, and it never blocks on anything but `poll`, so records from children cannot fill
//! the pipe while it waits (a child blocked on a full pipe while its parent waits for it would
//! be a deadlock).

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plumb_sys::{ExitStatus, PollFd, events, pid_t, signal};

use super::Server;
use crate::report::{Collector, Reporter, Summary};

pub(crate) struct Parent<'a> {
    pub(crate) server: &'a Server,
    collector: Collector,
    records: OwnedFd,
    reporter: Reporter,
    pub(crate) children: HashSet<pid_t>,
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
        })
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
        let mut reaped = Vec::new();
        while let Ok(Some((pid, status))) = plumb_sys::try_wait(-1) {
            self.children.remove(&pid);
            reaped.push((pid, status));
        }
        reaped
    }

    /// Waits up to `timeout` for a record, a signal (SIGCHLD, SIGTERM) or a shutdown notice,
    /// then services the children.
    /// How long the parent may sleep: forever, unless a terminal log holds lines, which go
    /// out within [`crate::report::TERMINAL_FLUSH`].
    pub(crate) fn patience(&self) -> Option<Duration> {
        self.collector
            .holds_lines()
            .then_some(crate::report::TERMINAL_FLUSH)
    }

    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> Vec<(pid_t, ExitStatus)> {
        let timeout = match (timeout, self.patience()) {
            (Some(t), Some(p)) => Some(t.min(p)),
            (t, p) => t.or(p),
        };
        let mut fds = [
            PollFd::new(self.records_fd(), events::READ),
            PollFd::new(self.server.shutdown.wake_fd(), events::READ),
        ];
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
        for &pid in &self.children {
            let _ = plumb_sys::kill(pid, signal::SIGTERM);
        }
        self.wait_children_until(Instant::now() + Duration::from_secs(1), false);
        for &pid in &self.children {
            let _ = plumb_sys::kill(pid, signal::SIGKILL);
        }
        while !self.children.is_empty() {
            match plumb_sys::wait(-1) {
                Ok((pid, _)) => {
                    self.children.remove(&pid);
                }
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
