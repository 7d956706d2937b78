//! The pool's waiting room: connections that are waiting for input (an idle keep-alive
//! client, a slowloris trickling its headers, an echo client thinking) wait here, watched by
//! one epoll thread, instead of each pinning a pool worker. When a parked connection becomes
//! readable, reaches its session's deadline, or the server drains or stops, it goes back on the
//! pool's job queue directly (no hop through another thread) and the next free worker resumes it.
//! A connection whose write is blocked (a client that stopped reading) waits here too, for
//! writability.
//!
//! This is the "half-sync/half-async" pool (Apache's event MPM, Jetty): workers only ever hold
//! connections that have work, so a few hundred slow clients cannot starve a pool of 32
//! threads. Costs one epoll registration per park and a queue hop per resume.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::drive::Connection;
use crate::drive::timers::{Deadlines, Due};
use crate::shutdown::Shutdown;

const WAKER: Token = Token(usize::MAX);
const DRAIN: Token = Token(usize::MAX - 1);
const HARD: Token = Token(usize::MAX - 2);

/// The handle workers use to park a connection.
#[derive(Clone)]
pub(crate) struct Parker {
    inbox: Arc<Mutex<Vec<Connection>>>,
    waker: Arc<Waker>,
}

impl Parker {
    pub(crate) fn park(&self, c: Connection) {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        if let Err(e) = self.waker.wake() {
            log::warn!("waiting room wake: {e}");
        }
    }

    /// Wakes the room so it notices the pool is closing.
    pub(crate) fn close(&self) {
        let _ = self.waker.wake();
    }
}

pub(crate) struct WaitingRoom {
    poll: Poll,
    inbox: Arc<Mutex<Vec<Connection>>>,
    /// Parked connections by id, with the descriptors registered for them and the deadline
    /// armed for them.
    parked: HashMap<usize, (Connection, Vec<i32>, Option<Instant>)>,
    deadlines: Deadlines,
    next_id: usize,
    drain_fd: i32,
    write_timeout: Duration,
    drain_seen: bool,
    hard_seen: bool,
}

impl WaitingRoom {
    pub(crate) fn new(
        shutdown: &Shutdown,
        write_timeout: Duration,
    ) -> io::Result<(WaitingRoom, Parker)> {
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
            deadlines: Deadlines::default(),
            next_id: 0,
            drain_fd: shutdown.drain_fd(),
            write_timeout,
            drain_seen: false,
            hard_seen: false,
        };
        Ok((room, Parker { inbox, waker }))
    }

    /// Watches parked connections and hands each to `resume` (the pool's job queue) when it
    /// has something to do, until `closing` is set and the room is empty.
    pub(crate) fn run(
        mut self,
        resume: &dyn Fn(Connection),
        closing: &std::sync::atomic::AtomicBool,
    ) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let timeout = self
                .deadlines
                .next()
                .map(|t| t.saturating_duration_since(now));
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
            while let Some(due) = self.deadlines.pop_due(now) {
                // An entry of a connection resumed meanwhile finds nothing: harmless.
                ready.push(due.slot);
            }
            for id in ready {
                if let Some((c, fds, _)) = self.parked.remove(&id) {
                    for fd in fds {
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                    resume(c);
                }
            }
            let arrivals =
                std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()));
            for c in arrivals {
                self.admit(c, resume);
            }
            if closing.load(std::sync::atomic::Ordering::SeqCst) && self.parked.is_empty() {
                return;
            }
        }
    }

    fn admit(&mut self, c: Connection, resume: &dyn Fn(Connection)) {
        let interest = c.interest();
        let deadline = c.deadline(self.write_timeout);
        if self.hard_seen
            || (self.drain_seen && !c.drained())
            || (interest.is_empty() && deadline.is_none())
        {
            resume(c);
            return;
        }
        let id = self.next_id;
        self.next_id = (self.next_id + 1) % (usize::MAX - 3);
        let mut fds = Vec::with_capacity(interest.len());
        for i in &interest {
            let want = match (i.read, i.write) {
                (true, true) => Interest::READABLE | Interest::WRITABLE,
                (false, true) => Interest::WRITABLE,
                _ => Interest::READABLE,
            };
            match self
                .poll
                .registry()
                .register(&mut SourceFd(&i.fd), Token(id), want)
            {
                Ok(()) => fds.push(i.fd),
                Err(e) => log::warn!("waiting room register: {e}"),
            }
        }
        if let Some(at) = deadline {
            self.deadlines.push(Due {
                at,
                slot: id,
                id: 0,
            });
        }
        self.parked.insert(id, (c, fds, deadline));
        self.compact_deadlines();
    }

    /// Every park arms a deadline (the keep-alive timeout) that stays in the heap after the
    /// connection is resumed: a busy pool parks tens of thousands of times a second, so drop
    /// the entries of connections no longer parked once they outnumber the parked ones (the
    /// event loop does the same).
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.parked.len() + 1024 {
            return;
        }
        let parked = &self.parked;
        self.deadlines
            .retain(|due| parked.get(&due.slot).is_some_and(|p| p.2 == Some(due.at)));
    }
}
