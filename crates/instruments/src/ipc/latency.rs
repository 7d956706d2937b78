//! Ping-pong latency, like lmbench's lat_pipe / lat_unix / lat_tcp and the reference
//! `pingpong.c`: the parent sends a `size`-byte message, the forked child sends it back, and
//! each round trip is timed with the monotonic clock. One child per channel serves every
//! warm-up, calibration and run; the first byte of a message says "echo" or "quit".

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::channel::{Channel, Link, Pair};
use super::method::{self, Plan, ScratchDir, Spread};

const ECHO: u8 = b'p';
const QUIT: u8 = b'q';

/// Round trips per run are kept between these (the floor keeps p99 meaningful).
const MIN_ITERS: u64 = 200;
const MAX_ITERS: u64 = 20_000_000;

/// What one channel measured.
#[derive(Debug, Clone)]
pub struct Latency {
    pub channel: Channel,
    pub size: usize,
    /// Round trips per run.
    pub iters: u64,
    pub runs: usize,
    /// Median over the runs of each figure.
    pub spread: Spread,
}

/// Settings of a latency measurement.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub size: usize,
    pub child_cpu: Option<usize>,
    pub spin: bool,
}

/// Measures round trips over `channel` with a forked echo child.
///
/// # Errors
/// Channel setup, fork, or I/O failures on either side.
pub fn measure(channel: Channel, dir: &Path, setup: Setup, plan: &Plan) -> io::Result<Latency> {
    // Lives until the child is done: the file channel's child watches its file by path.
    let scratch = ScratchDir::new_in(dir, "lat")?;
    let pair = Pair::new(channel, scratch.path())?;
    let (ours, helper) = method::spawn_helper(
        "ping-pong",
        pair.parent,
        pair.child,
        setup.child_cpu,
        |end| echo(end.into_link(setup.spin)?, setup.size),
    )?;
    let mut pinger = Pinger::new(ours.into_link(setup.spin)?, setup.size);

    let (iters, spreads) = pinger.runs(plan)?;
    pinger.quit()?;
    helper.finish()?;
    Ok(Latency {
        channel,
        size: setup.size,
        iters,
        runs: spreads.len(),
        spread: method::median_spread(&spreads),
    })
}

/// The child: send every message back until told to quit (or the parent goes away).
fn echo(mut link: Link, size: usize) -> io::Result<()> {
    let mut buf = vec![0u8; size];
    loop {
        match link.recv_exact(&mut buf) {
            Ok(()) => {}
            // The parent is gone: nothing left to serve.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        if buf[0] == QUIT {
            return Ok(());
        }
        link.send_all(&buf)?;
    }
}

/// The parent's side: sends messages, times the round trips.
struct Pinger {
    link: Link,
    message: Vec<u8>,
    reply: Vec<u8>,
    samples: Vec<u64>,
}

impl Pinger {
    fn new(link: Link, size: usize) -> Pinger {
        let mut message = vec![b'x'; size];
        message[0] = ECHO;
        Pinger {
            link,
            message,
            reply: vec![0; size],
            samples: Vec::new(),
        }
    }

    /// `n` untimed round trips.
    fn warm_up(&mut self, n: u64) -> io::Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            self.link.send_all(&self.message)?;
            self.link.recv_exact(&mut self.reply)?;
        }
        Ok(start.elapsed())
    }

    /// `n` round trips, each timed into `samples` (allocated beforehand, so the loop does
    /// nothing but the two system calls and two clock reads, as `pingpong.c`). Returns the
    /// whole run's time.
    fn timed(&mut self, n: u64) -> io::Result<Duration> {
        self.samples.clear();
        self.samples.reserve(n as usize);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            self.link.send_all(&self.message)?;
            self.link.recv_exact(&mut self.reply)?;
            self.samples.push(t.elapsed().as_nanos() as u64);
        }
        Ok(start.elapsed())
    }

    /// Warm-up and calibration, then the runs; returns the round trips per run and each
    /// run's spread.
    fn runs(&mut self, plan: &Plan) -> io::Result<(u64, Vec<Spread>)> {
        let iters = match plan.iters {
            Some(n) => n.max(1),
            None => {
                let (done, took) =
                    method::calibrate(16, MAX_ITERS, plan.calibration_time(), |n| self.warm_up(n))?;
                plan.size_for(done, took, MIN_ITERS, MAX_ITERS)
            }
        };
        let mut spreads = Vec::with_capacity(plan.runs);
        for _ in 0..plan.runs.max(1) {
            // 1% warm-up before each run, as pingpong.c does.
            self.warm_up(iters / 100)?;
            let total = self.timed(iters)?;
            spreads.push(method::spread(total, &self.samples)?);
        }
        Ok((iters, spreads))
    }

    fn quit(&mut self) -> io::Result<()> {
        self.message[0] = QUIT;
        self.link.send_all(&self.message)
    }
}
