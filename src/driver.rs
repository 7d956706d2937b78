//! The blocking driver: runs one session on one connection until it is done. Every blocking
//! model (iterative, fork-wait, fork, thread, pool, prefork) calls [`serve_connection`]; they
//! differ only in *who* calls it.
//!
//! The loop is the lecture's read → process → write, made robust in one place:
//! short reads and writes, `EINTR`, input the session has not consumed yet, the session's
//! deadlines (header and keep-alive timeouts), a relay's second socket, and the shutdown
//! broadcasts. Waiting for input uses `poll(2)` on the client (and upstream) together with
//! the drain and hard-stop descriptors; writes block, in slices of [`WRITE_TICK`] so that a
//! client that stops reading cannot hold a worker past the hard stop or the write timeout.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use plumb_proto::{Action, Peer, Session};
use plumb_sys::{PollFd, events};

use crate::net::Stream;
use crate::report::{Record, Reporter};
use crate::services::Service;
use crate::shutdown;

/// How long one blocking write may wait before the driver re-checks the hard stop.
const WRITE_TICK: Duration = Duration::from_millis(250);
/// Read size per `read(2)`.
const READ_CHUNK: usize = 64 * 1024;
/// How long a pool worker waits on a connection before parking it, when no other work is
/// queued.
const PARK_AFTER: Duration = Duration::from_millis(2);

thread_local! {
    /// One read buffer per thread, zeroed once: a fresh 64 KiB array per read would cost a
    /// memset every time.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}
/// Most unconsumed input kept per peer before the driver stops reading from it.
const MAX_PENDING_INPUT: usize = 1024 * 1024;

/// What a driver needs besides the connection.
pub struct DriverContext<'a> {
    pub service: &'a dyn Service,
    pub reporter: &'a Reporter,
    /// Drain broadcast (see [`crate::shutdown`]).
    pub drain_fd: i32,
    /// Hard-stop broadcast.
    pub hard_fd: i32,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// Who serves (pid or thread number), for the connection record.
    pub by: u32,
}

/// Bytes moved on one connection.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    bytes_in: u64,
    bytes_out: u64,
}

/// Serves one accepted connection to its end and reports its record.
pub fn serve_connection(client: Stream, peer: &str, ctx: &DriverContext<'_>) {
    let mut c = Connection::new(client, peer.to_string(), ctx);
    c.drive(ctx, Mode::Block);
    c.finish(ctx);
}

/// How [`Connection::drive`] waits for input.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// Block until the session is done (a thread or process per connection).
    Block,
    /// Stop with [`Progress::Idle`] instead of waiting long (the pool). The function says
    /// whether other work is queued: then the connection waits for nothing and gives its
    /// worker up after [`YIELD_AFTER`] turns, so busy keep-alive clients cannot monopolise
    /// the workers while others queue.
    Park(&'a dyn Fn() -> bool),
}

/// Turns (waits for the next input) a pool worker gives one connection while others queue.
pub const YIELD_AFTER: u32 = 8;

/// What [`Connection::drive`] stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The session is over; call [`Connection::finish`].
    Done,
    /// Waiting for input or a deadline, and parking was allowed: nothing will happen until
    /// one of [`Connection::interest`] fires.
    Idle,
}

/// One connection and its session, which can be driven to its end in one go (the blocking
/// models) or suspended while it waits for input and resumed later, possibly on another
/// thread (the pool's waiting room).
pub struct Connection {
    conn: Conn,
    session: Box<dyn Session + Send>,
    peer: String,
    start: Instant,
    drained: bool,
    failed: bool,
}

impl Connection {
    pub fn new(client: Stream, peer: String, ctx: &DriverContext<'_>) -> Connection {
        let session = ctx.service.session(&peer);
        // A blocking socket whose writes wake up every tick to check the hard stop.
        let failed = client.set_write_timeout(Some(WRITE_TICK)).is_err();
        let _ = client.set_nodelay();
        Connection {
            conn: Conn {
                client,
                upstream: None,
                pending: [Vec::new(), Vec::new()],
                counts: Counts::default(),
            },
            session,
            peer,
            start: Instant::now(),
            drained: false,
            failed,
        }
    }

    /// Runs the session until it is done, or (in [`Mode::Park`]) until it would wait.
    pub fn drive(&mut self, ctx: &DriverContext<'_>, mode: Mode<'_>) -> Progress {
        if self.failed {
            return Progress::Done;
        }
        match self
            .conn
            .run(self.session.as_mut(), ctx, &mut self.drained, mode)
        {
            Ok(p) => p,
            Err(e) => {
                log::debug!("connection from {}: {e}", self.peer);
                self.failed = true;
                Progress::Done
            }
        }
    }

    /// The descriptors to watch for readability and the session's deadline, while parked.
    pub fn interest(&self) -> (Vec<i32>, Option<Instant>) {
        let mut fds = Vec::with_capacity(2);
        for p in [Peer::Client, Peer::Upstream] {
            if let Some(fd) = self.conn.read_fd(self.session.as_ref(), p) {
                fds.push(fd);
            }
        }
        (fds, self.session.deadline())
    }

    /// Whether the session has been told about the drain.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Reports the connection record (and any last log lines); closes the sockets.
    pub fn finish(mut self, ctx: &DriverContext<'_>) {
        self.session.closed();
        while let Some(line) = self.session.take_log() {
            ctx.reporter.send(Record::Access(line));
        }
        ctx.reporter.send(Record::Connection {
            peer: self.peer,
            bytes_in: self.conn.counts.bytes_in,
            bytes_out: self.conn.counts.bytes_out,
            duration_us: self.start.elapsed().as_micros() as u64,
            by: ctx.by,
        });
    }
}

struct Conn {
    client: Stream,
    upstream: Option<Stream>,
    /// Input not yet consumed by the session, per peer (index 0 client, 1 upstream).
    pending: [Vec<u8>; 2],
    counts: Counts,
}

fn idx(p: Peer) -> usize {
    match p {
        Peer::Client => 0,
        Peer::Upstream => 1,
    }
}

impl Conn {
    fn sock(&mut self, p: Peer) -> io::Result<&mut Stream> {
        match p {
            Peer::Client => Ok(&mut self.client),
            Peer::Upstream => self
                .upstream
                .as_mut()
                .ok_or_else(|| io::Error::other("no upstream")),
        }
    }

    /// The descriptor of `p` if the session wants to read from it now.
    fn read_fd(&self, s: &dyn Session, p: Peer) -> Option<i32> {
        if !s.wants_read(p) || self.pending[idx(p)].len() >= MAX_PENDING_INPUT {
            return None;
        }
        match p {
            Peer::Client => Some(self.client.as_raw_fd()),
            Peer::Upstream => self.upstream.as_ref().map(|u| u.as_raw_fd()),
        }
    }

    fn run(
        &mut self,
        s: &mut dyn Session,
        ctx: &DriverContext<'_>,
        drained: &mut bool,
        mode: Mode<'_>,
    ) -> io::Result<Progress> {
        let mut turns = 0u32;
        loop {
            while let Some(line) = s.take_log() {
                ctx.reporter.send(Record::Access(line));
            }
            let last = s.closes_after_output();
            match s.next_action() {
                Action::Write(p, buf) => {
                    let n = write_some(self.sock(p)?, buf, last, ctx)?;
                    if p == Peer::Client {
                        self.counts.bytes_out += n as u64;
                    }
                    s.written(p, n);
                }
                Action::SendFile { file, offset, len } => {
                    let n = send_file(&self.client, file, offset, len, ctx)?;
                    self.counts.bytes_out += n as u64;
                    s.written(Peer::Client, n);
                }
                Action::Connect => match ctx.service.upstream() {
                    Some(addr) => match Stream::connect(addr, Some(Duration::from_secs(10))) {
                        Ok(up) => {
                            up.set_write_timeout(Some(WRITE_TICK))?;
                            let _ = up.set_nodelay();
                            self.upstream = Some(up);
                            s.connected(true);
                        }
                        Err(e) => {
                            ctx.reporter.send(Record::Error(format!(
                                "{}: cannot reach upstream: {e}",
                                ctx.service.name()
                            )));
                            s.connected(false);
                        }
                    },
                    None => s.connected(false),
                },
                Action::Shutdown(p) => {
                    // The peer may already be gone; the session learns that from its reads.
                    let _ = self.sock(p)?.shutdown_write();
                }
                Action::Close => return Ok(Progress::Done),
                Action::Wait => {
                    if self.refeed(s) {
                        continue;
                    }
                    let patience = match mode {
                        Mode::Block => None,
                        Mode::Park(others_waiting) => {
                            turns += 1;
                            let busy = others_waiting();
                            if busy && turns > YIELD_AFTER {
                                return Ok(Progress::Idle);
                            }
                            Some(if busy { Duration::ZERO } else { PARK_AFTER })
                        }
                    };
                    match self.wait(s, ctx, drained, patience)? {
                        Waited::Event => {}
                        Waited::HardStop => return Ok(Progress::Done),
                        Waited::Nothing => return Ok(Progress::Idle),
                    }
                }
            }
        }
    }

    /// Offers held input again (the session may have room now). True if it took some.
    fn refeed(&mut self, s: &mut dyn Session) -> bool {
        let mut progress = false;
        for p in [Peer::Client, Peer::Upstream] {
            let buf = &mut self.pending[idx(p)];
            if !buf.is_empty() && s.wants_read(p) {
                let n = s.feed(p, buf);
                buf.drain(..n);
                progress |= n > 0;
            }
        }
        progress
    }

    /// Waits for input, a deadline or a shutdown notice; with a `patience`, waits at most
    /// that long and reports `Nothing` when nothing happened.
    fn wait(
        &mut self,
        s: &mut dyn Session,
        ctx: &DriverContext<'_>,
        drained: &mut bool,
        patience: Option<Duration>,
    ) -> io::Result<Waited> {
        let mut fds = Vec::with_capacity(4);
        let mut peers = Vec::with_capacity(2);
        for p in [Peer::Client, Peer::Upstream] {
            if let Some(fd) = self.read_fd(s, p) {
                fds.push(PollFd::new(fd, events::READ));
                peers.push(p);
            }
        }
        let first_ctl = fds.len();
        fds.push(PollFd::new(ctx.hard_fd, events::READ));
        if !*drained {
            fds.push(PollFd::new(ctx.drain_fd, events::READ));
        }
        let deadline = s.deadline();
        let timeout = if let Some(patience) = patience {
            // A short wait first: a keep-alive client's next request usually follows within
            // microseconds, and catching it here saves a park and resume round trip.
            let left = deadline.map_or(patience, |d| d.saturating_duration_since(Instant::now()));
            Some(left.min(patience))
        } else {
            deadline.map(|d| d.saturating_duration_since(Instant::now()))
        };
        let ready = plumb_sys::poll(&mut fds, timeout)?;
        if fds[first_ctl].ready() {
            return Ok(Waited::HardStop);
        }
        if !*drained && fds[first_ctl + 1].ready() {
            *drained = true;
            s.drain();
            return Ok(Waited::Event);
        }
        if ready == 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                s.timed_out(Instant::now());
                return Ok(Waited::Event);
            }
            return Ok(if patience.is_some() {
                Waited::Nothing
            } else {
                Waited::Event
            });
        }
        SCRATCH.with_borrow_mut(|chunk| self.read_ready(s, &peers, &fds, chunk))?;
        Ok(Waited::Event)
    }

    /// Reads from every ready peer into `chunk` and feeds the session.
    fn read_ready(
        &mut self,
        s: &mut dyn Session,
        peers: &[Peer],
        fds: &[PollFd],
        chunk: &mut [u8],
    ) -> io::Result<()> {
        for (i, &p) in peers.iter().enumerate() {
            if !fds[i].ready() {
                continue;
            }
            let n = match self.sock(p)?.read(chunk) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            if p == Peer::Client {
                self.counts.bytes_in += n as u64;
            }
            if n == 0 {
                s.eof(p);
                continue;
            }
            let held = &mut self.pending[idx(p)];
            if held.is_empty() {
                // The common case: the session parses straight from the read buffer.
                let used = s.feed(p, &chunk[..n]);
                held.extend_from_slice(&chunk[used..n]);
            } else {
                held.extend_from_slice(&chunk[..n]);
                let used = s.feed(p, held);
                held.drain(..used);
            }
        }
        Ok(())
    }
}

/// What one wait produced.
enum Waited {
    /// Something happened (input, EOF, deadline, drain): ask the session again.
    Event,
    /// The hard stop fired: close now.
    HardStop,
    /// Parking allowed and nothing to do yet.
    Nothing,
}

/// One blocking write of a prefix of `buf`, retried while the socket buffer is full until the
/// write timeout or the hard stop; `last` when the connection ends after it (see
/// [`Stream::send`]).
fn write_some(
    sock: &mut Stream,
    buf: &[u8],
    last: bool,
    ctx: &DriverContext<'_>,
) -> io::Result<usize> {
    let start = Instant::now();
    loop {
        match sock.send(buf, last) {
            Ok(0) if !buf.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stalled(start, ctx)?,
            Err(e) => return Err(e),
        }
    }
}

fn send_file(
    sock: &Stream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    ctx: &DriverContext<'_>,
) -> io::Result<usize> {
    let start = Instant::now();
    let mut off = offset;
    loop {
        match plumb_sys::sendfile(sock, file, &mut off, len as usize) {
            Ok(0) if len > 0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stalled(start, ctx)?,
            Err(e) => return Err(e),
        }
    }
}

fn stalled(start: Instant, ctx: &DriverContext<'_>) -> io::Result<()> {
    if shutdown::fired(ctx.hard_fd) {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "hard stop"));
    }
    if start.elapsed() >= ctx.write_timeout {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "write timeout: peer is not reading",
        ));
    }
    Ok(())
}
