//! Bandwidth, like lmbench's bw_pipe / bw_unix / bw_tcp and the reference `bw.c`: the parent
//! writes `chunk`-sized `write`s, a forked child reads with a buffer of the same size and times
//! from its first byte to its last; MB/s with MB = 10^6 bytes. Each run gets a fresh channel
//! and child, so a file run starts from an empty file (and its file is removed afterwards).

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::channel::{Channel, Link, Pair};
use super::method::{self, Plan, ScratchDir};

/// Bytes per run are kept under this; a file run under [`FILE_CEILING`] (it goes to disk
/// eventually, and the point is made long before).
const CEILING: u64 = 16 << 30;
const FILE_CEILING: u64 = 256 << 20;
/// The calibration run's size.
const CALIBRATION: u64 = 8 << 20;

/// What one channel measured.
#[derive(Debug, Clone)]
pub struct Bandwidth {
    pub channel: Channel,
    pub chunk: usize,
    /// Bytes per run.
    pub bytes: u64,
    pub runs: usize,
    /// Median over the runs, in 10^6 bytes per second.
    pub mb_per_s: f64,
}

/// Settings of a bandwidth measurement.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub chunk: usize,
    pub child_cpu: Option<usize>,
}

/// Measures `channel`'s bandwidth.
///
/// # Errors
/// Channel setup, fork, or I/O failures on either side.
pub fn measure(channel: Channel, dir: &Path, setup: Setup, plan: &Plan) -> io::Result<Bandwidth> {
    let chunk = setup.chunk as u64;
    let ceiling = if channel == Channel::File {
        FILE_CEILING
    } else {
        CEILING
    };
    let buf = vec![b'z'; setup.chunk];
    let bytes = match plan.bytes {
        Some(b) => b.max(1),
        None => {
            // The calibration run is also the warm-up.
            let calibration = CALIBRATION.max(chunk * 16).min(ceiling);
            let took = one_run(channel, dir, setup, &buf, calibration)?;
            let n = plan.size_for(calibration / chunk, took, 16, ceiling / chunk);
            n * chunk
        }
    };
    let mut rates = Vec::with_capacity(plan.runs);
    for _ in 0..plan.runs.max(1) {
        let took = one_run(channel, dir, setup, &buf, bytes)?;
        rates.push(bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6);
    }
    Ok(Bandwidth {
        channel,
        chunk: setup.chunk,
        bytes,
        runs: rates.len(),
        mb_per_s: method::median(rates.into_iter()),
    })
}

/// One run: fork a reader, write `total` bytes, return the time the reader measured.
fn one_run(
    channel: Channel,
    dir: &Path,
    setup: Setup,
    buf: &[u8],
    total: u64,
) -> io::Result<Duration> {
    let run_dir = ScratchDir::new_in(dir, "bw")?;
    let pair = Pair::new(channel, run_dir.path())?;
    // The reader reports its figures to the parent over a pipe of their own.
    let (report_rx, report_tx) = plumb_sys::pipe()?;
    let chunk = setup.chunk;
    let ((ours, report_rx), helper) = method::spawn_helper(
        "bandwidth reader",
        (pair.parent, report_rx),
        (pair.child, report_tx),
        setup.child_cpu,
        |(end, report)| {
            let took = read_all(end.into_link(false)?, chunk, total)?;
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            plumb_sys::write_all(&report, &nanos.to_ne_bytes())
        },
    )?;
    let mut link = ours.into_link(false)?;
    write_all(&mut link, buf, total)?;
    let mut report = [0u8; 8];
    let mut got = 0;
    while got < report.len() {
        let n = plumb_sys::read(&report_rx, &mut report[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    helper.finish()?;
    if got < report.len() {
        return Err(io::Error::other("the reader sent no figures"));
    }
    Ok(Duration::from_nanos(u64::from_ne_bytes(report)))
}

/// The writer: `total` bytes in `buf`-sized writes.
fn write_all(link: &mut Link, buf: &[u8], total: u64) -> io::Result<()> {
    let mut sent = 0u64;
    while sent < total {
        let want = (total - sent).min(buf.len() as u64) as usize;
        let n = link.send(&buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n as u64;
    }
    Ok(())
}

/// The reader: reads until `total` bytes have arrived; the time from the first byte to the
/// last.
fn read_all(mut link: Link, chunk: usize, total: u64) -> io::Result<Duration> {
    let mut buf = vec![0u8; chunk];
    let mut got = 0u64;
    let mut first: Option<Instant> = None;
    while got < total {
        let n = link.recv(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the writer stopped after {got} of {total} bytes"),
            ));
        }
        first.get_or_insert_with(Instant::now);
        got += n as u64;
    }
    Ok(first.map_or(Duration::ZERO, |t| t.elapsed()))
}
