//! Concurrency models: who runs the driver for each accepted connection. Every model has the
//! same entry point, `run(&Server) -> io::Result<Summary>`, and none knows which service it
//! runs. This file holds the registry and the pieces the models share: the accept wait (with
//! EMFILE back-off), a counting gate, and the in-process shutdown supervisor.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};
use std::thread as std_thread;
use std::time::{Duration, Instant};

use plumb_sys::{PollFd, events};

use crate::drive::Context;
use crate::net::{Listener, Stream};
use crate::report::{LogConfig, Reporter, Summary};
use crate::services::Service;
use crate::shutdown::Shutdown;

pub mod event;
pub mod fork;
pub mod fork_wait;
pub mod iterative;
pub mod pool;
pub mod prefork;
mod process;
pub mod thread;
mod waiting_room;

/// The models, in the order the lecture introduces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// One connection at a time (server v1).
    Iterative,
    /// Fork per connection, the parent waits for the child (server v2).
    ForkWait,
    /// Fork per connection, children reaped asynchronously.
    Fork,
    /// One thread per connection, capped by --max-connections.
    Thread,
    /// A fixed pool of --threads workers and a bounded --queue.
    Pool,
    /// --workers processes accepting on one listener; dead workers are replaced.
    Prefork,
    /// --workers non-blocking epoll loops, each with its own SO_REUSEPORT listener.
    Event,
}

impl Model {
    /// Every model, for `plumb compare` and the test-suite.
    pub const ALL: &[Model] = &[
        Model::Iterative,
        Model::ForkWait,
        Model::Fork,
        Model::Thread,
        Model::Pool,
        Model::Prefork,
        Model::Event,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Model::Iterative => "iterative",
            Model::ForkWait => "fork-wait",
            Model::Fork => "fork",
            Model::Thread => "thread",
            Model::Pool => "pool",
            Model::Prefork => "prefork",
            Model::Event => "event",
        }
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sizes and limits of the models.
#[derive(Debug, Clone)]
pub struct Options {
    /// Processes (prefork) or event loops.
    pub workers: usize,
    /// Pool threads.
    pub threads: usize,
    /// Accepted connections waiting for a pool thread.
    pub queue: usize,
    /// Most connections open at once (thread, pool, fork and event; the others serve one
    /// at a time or one per worker).
    pub max_connections: usize,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
}

/// Everything a model needs to run a server.
pub struct Server {
    pub listeners: Vec<Listener>,
    pub service: Arc<dyn Service>,
    pub options: Options,
    pub shutdown: Shutdown,
    pub logs: LogConfig,
    /// Which listeners speak TLS (by index in `listeners`).
    pub tls: crate::tls::Listeners,
}

impl Server {
    pub(crate) fn context<'a>(&'a self, reporter: &'a Reporter, by: u32) -> Context<'a> {
        Context {
            service: &*self.service,
            reporter,
            drain_fd: self.shutdown.drain_fd(),
            hard_fd: self.shutdown.hard_fd(),
            write_timeout: self.options.write_timeout,
            by,
            tls: &self.tls,
        }
    }
}

/// Runs `server` under `model` until a shutdown signal, then drains and returns the totals.
///
/// # Errors
/// Setup failures (threads or pipes that cannot be created, a log that cannot be opened).
pub fn run(model: Model, server: &Server) -> io::Result<Summary> {
    for l in &server.listeners {
        l.set_nonblocking(true)?;
    }
    match model {
        Model::Iterative => iterative::run(server),
        Model::ForkWait => fork_wait::run(server),
        Model::Fork => fork::run(server),
        Model::Thread => thread::run(server),
        Model::Pool => pool::run(server),
        Model::Prefork => prefork::run(server),
        Model::Event => event::run(server),
    }
}

/// What woke an accept loop.
pub(crate) enum Wake {
    /// A new connection and its peer address.
    Conn(Stream, String),
    /// The stop descriptor fired.
    Stop,
    /// One of the extra descriptors is readable.
    Extra,
    /// Nothing to do (a spurious wake, a lost race for a connection, an EMFILE pause).
    Idle,
}

/// Waits until a listener has a connection (and accepts it), `stop_fd` is readable, or one
/// of `extra` is readable. When the process is out of descriptors it pauses instead of
/// spinning on a listener that stays readable.
pub(crate) fn wait_for_work(
    listeners: &[Listener],
    stop_fd: RawFd,
    extra: &[RawFd],
    timeout: Option<Duration>,
) -> Wake {
    let extra: Vec<PollFd> = extra
        .iter()
        .map(|&fd| PollFd::new(fd, events::READ))
        .collect();
    wait_for_work_or(listeners, stop_fd, &extra, timeout)
}

/// [`wait_for_work`] with extra descriptors each watched for its own events (the process
/// models watch a handed-over connection for the client's shutdown, not for its data).
pub(crate) fn wait_for_work_or(
    listeners: &[Listener],
    stop_fd: RawFd,
    extra: &[PollFd],
    timeout: Option<Duration>,
) -> Wake {
    let mut fds: Vec<PollFd> = listeners
        .iter()
        .map(|l| PollFd::new(l.as_raw_fd(), events::READ))
        .collect();
    fds.push(PollFd::new(stop_fd, events::READ));
    fds.extend_from_slice(extra);
    match plumb_sys::poll(&mut fds, timeout) {
        Ok(0) => return Wake::Idle,
        Ok(_) => {}
        Err(e) => {
            log::warn!("poll: {e}");
            return Wake::Idle;
        }
    }
    let n = listeners.len();
    if fds[n].ready() {
        return Wake::Stop;
    }
    if fds[n + 1..].iter().any(|f| f.ready()) {
        return Wake::Extra;
    }
    for (l, f) in listeners.iter().zip(&fds) {
        if !f.ready() {
            continue;
        }
        match l.accept() {
            Ok((s, peer)) => return Wake::Conn(s, peer),
            Err(e) if is_out_of_descriptors(&e) => {
                emfile_pause(stop_fd);
                return Wake::Idle;
            }
            // Another worker took it, or the client gave up while queued.
            Err(_) => {}
        }
    }
    Wake::Idle
}

pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Out of descriptors: the pending connection stays in the backlog (the listener stays
/// readable), so wait a moment for descriptors to free up instead of spinning.
fn emfile_pause(stop_fd: RawFd) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!("plumb: out of file descriptors; pausing accepts until some are free");
    }
    let mut fds = [PollFd::new(stop_fd, events::READ)];
    let _ = plumb_sys::poll(&mut fds, Some(Duration::from_millis(100)));
}

/// A counting gate: at most `capacity` holders at once. The thread model caps its threads
/// with it, the pool bounds its queue; when the gate is full the acceptor stops accepting and
/// clients wait in the kernel's backlog.
pub(crate) struct Gate {
    used: Mutex<usize>,
    freed: Condvar,
    capacity: usize,
}

impl Gate {
    pub(crate) fn new(capacity: usize) -> Arc<Gate> {
        Arc::new(Gate {
            used: Mutex::new(0),
            freed: Condvar::new(),
            capacity: capacity.max(1),
        })
    }

    /// Takes a place, waiting up to `timeout`; false if none freed up in time.
    pub(crate) fn acquire(&self, timeout: Duration) -> bool {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let (mut used, _) = self
            .freed
            .wait_timeout_while(used, timeout, |u| *u >= self.capacity)
            .unwrap_or_else(|p| p.into_inner());
        if *used < self.capacity {
            *used += 1;
            true
        } else {
            false
        }
    }

    /// Waits until no place is held.
    pub(crate) fn wait_empty(&self) {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let _unused = self
            .freed
            .wait_while(used, |u| *u > 0)
            .unwrap_or_else(|p| p.into_inner());
    }

    pub(crate) fn release(&self) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(1);
        self.freed.notify_all();
    }
}

/// The in-process models' shutdown supervisor: a thread that waits for SIGINT/SIGTERM,
/// broadcasts the drain, and broadcasts the hard stop when the grace period ends (or exits
/// early once the model reports that every connection is done).
pub(crate) struct Supervisor {
    done_w: Option<OwnedFd>,
    handle: Option<std_thread::JoinHandle<()>>,
}

impl Supervisor {
    pub(crate) fn start(server: &Server) -> io::Result<Supervisor> {
        let (done_r, done_w) = plumb_sys::pipe()?;
        let wake = server.shutdown.wake_fd();
        let drain = server.shutdown.drain_fd();
        let stopper = server.shutdown.clone();
        let handle = std_thread::Builder::new()
            .name("plumb-shutdown".into())
            .spawn(move || {
                // Wait for a signal (or for the model to end on its own).
                loop {
                    let mut fds = [
                        PollFd::new(wake, events::READ),
                        PollFd::new(done_r.as_raw_fd(), events::READ),
                        PollFd::new(drain, events::READ),
                    ];
                    let _ = plumb_sys::poll(&mut fds, None);
                    if fds[1].ready() {
                        return;
                    }
                    if fds[2].ready() || stopper.check() {
                        break;
                    }
                }
                let deadline = stopper.begin_drain();
                while Instant::now() < deadline {
                    let mut fds = [
                        PollFd::new(done_r.as_raw_fd(), events::READ),
                        PollFd::new(wake, events::READ),
                    ];
                    let _ = plumb_sys::poll(
                        &mut fds,
                        Some(deadline.saturating_duration_since(Instant::now())),
                    );
                    if fds[0].ready() {
                        return;
                    }
                    // A second SIGINT/SIGTERM: the user does not want to wait.
                    if fds[1].ready() && stopper.stop_again() {
                        break;
                    }
                }
                stopper.hard_stop();
            })?;
        Ok(Supervisor {
            done_w: Some(done_w),
            handle: Some(handle),
        })
    }

    /// The model is done: let the supervisor thread go and join it.
    pub(crate) fn finish(mut self) {
        drop(self.done_w.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs an in-process model: a log thread collects records over a channel and a supervisor
/// thread turns signals into the drain and hard-stop broadcasts. `body` returns once every
/// connection it started has ended.
pub(crate) fn in_process(
    server: &Server,
    body: impl FnOnce(&Reporter) -> io::Result<()>,
) -> io::Result<Summary> {
    let collector = crate::report::Collector::new(&server.logs)?;
    let (reporter, logs) = crate::report::CollectorThread::spawn(collector);
    let supervisor = Supervisor::start(server)?;
    let result = body(&reporter);
    drop(reporter);
    supervisor.finish();
    let summary = logs.join();
    result.map(|()| summary)
}
