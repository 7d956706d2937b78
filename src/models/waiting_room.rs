//! The pool's waiting room: connections that are waiting for input (an idle keep-alive
//! client, a slowloris trickling its headers, an echo client thinking) wait here, watched by
//! one epoll thread, instead of each pinning a pool worker. When a parked connection becomes
//! readable, reaches its session's deadline, or the server drains or stops, it goes back on the
//! pool's queue and the next free worker resumes it.
//!
//! This is the "half-sync/half-async" pool (Apache's event MPM, Jetty): workers only ever hold
//! connections that have work, so a few hundred slow clients cannot starve a pool of 32
//! threads. Costs one epoll registration per park and a queue hop per resume.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::driver::Connection;
use crate::shutdown::Shutdown;

const WAKER: Token = Token(usize::MAX);
const DRAIN: Token = Token(usize::MAX - 1);
const HARD: Token = Token(usize::MAX - 2);

/// Hands parked connections to the waiting-room thread.
#[derive(Clone)]
pub(crate) struct Parker {
    inbox: Arc<Mutex<Vec<Connection>>>,
    waker: Arc<Waker>,
}

impl Parker {
    pub(crate) fn park(&self, c: Connection) {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        // A failed wake leaves the connection parked until the next event; log it.
        if let Err(e) = self.waker.wake() {
            log::warn!("waiting room wake: {e}");
        }
    }

    /// Asks the waiting-room thread to end (once it holds no connection).
    pub(crate) fn close(&self) {
        let _ = self.waker.wake();
    }
}

pub(crate) struct WaitingRoom {
    poll: Poll,
    inbox: Arc<Mutex<Vec<Connection>>>,
    parked: HashMap<usize, (Connection, Vec<i32>)>,
    deadlines: BinaryHeap<Reverse<(Instant, usize)>>,
    next_id: usize,
    drain_fd: i32,
    drain_seen: bool,
    hard_seen: bool,
}

impl WaitingRoom {
    pub(crate) fn new(shutdown: &Shutdown) -> io::Result<(WaitingRoom, Parker)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry().register(
            &mut SourceFd(&shutdown.drain_fd()),
            DRAIN,
            Interest::READABLE,
        )?;
        poll.registry()
            .register(&mut SourceFd(&shutdown.hard_fd()), HARD, Interest::READABLE)?;
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let room = WaitingRoom {
            poll,
            inbox: Arc::clone(&inbox),
            parked: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_id: 0,
            drain_fd: shutdown.drain_fd(),
            drain_seen: false,
            hard_seen: false,
        };
        Ok((room, Parker { inbox, waker }))
    }

    /// Runs until `closing` is set and no connection is parked. Ready connections go to
    /// `resume`.
    pub(crate) fn run(
        mut self,
        resume: mpsc::Sender<Connection>,
        closing: &std::sync::atomic::AtomicBool,
    ) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let timeout = self
                .deadlines
                .peek()
                .map(|Reverse((t, _))| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::warn!("waiting room poll: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let mut ready: Vec<usize> = Vec::new();
            for ev in &events {
                match ev.token() {
                    WAKER => {}
                    DRAIN => {
                        // A one-time broadcast: everyone parked now hears it once.
                        self.drain_seen = true;
                        let _ = self
                            .poll
                            .registry()
                            .deregister(&mut SourceFd(&self.drain_fd));
                        ready.extend(self.parked.keys().copied());
                    }
                    HARD => {
                        self.hard_seen = true;
                        ready.extend(self.parked.keys().copied());
                    }
                    Token(id) => ready.push(id),
                }
            }
            let now = Instant::now();
            while let Some(Reverse((t, id))) = self.deadlines.peek().copied() {
                if t > now {
                    break;
                }
                self.deadlines.pop();
                ready.push(id);
            }
            for id in ready {
                if let Some((c, fds)) = self.parked.remove(&id) {
                    for fd in fds {
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                    let _ = resume.send(c);
                }
            }
            let arrivals =
                std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()));
            for c in arrivals {
                self.admit(c, &resume);
            }
            if closing.load(std::sync::atomic::Ordering::SeqCst) && self.parked.is_empty() {
                return;
            }
        }
    }

    fn admit(&mut self, c: Connection, resume: &mpsc::Sender<Connection>) {
        let (fds, deadline) = c.interest();
        // Stopped, or drained while on its way here, or nothing that could ever wake it:
        // straight back to a worker.
        if self.hard_seen
            || (self.drain_seen && !c.drained())
            || (fds.is_empty() && deadline.is_none())
        {
            let _ = resume.send(c);
            return;
        }
        let id = self.next_id;
        self.next_id = (self.next_id + 1) % (usize::MAX - 3);
        for &fd in &fds {
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), Token(id), Interest::READABLE)
            {
                log::warn!("waiting room register: {e}");
            }
        }
        if let Some(t) = deadline {
            self.deadlines.push(Reverse((t, id)));
        }
        self.parked.insert(id, (c, fds));
    }
}
