//! What it costs to start a unit of concurrency, like lmbench's lat_proc: fork + `_exit` +
//! wait, fork + exec of a trivial program + wait, and a thread spawn + join. The material's
//! claim that processes are expensive and threads cheaper, in nanoseconds.
//!
//! Each fork goes through `plumb_sys::ipc::fork_run`, which checks that the process is
//! single-threaded first (one `stat` of `/proc/self/task`, about a microsecond, included in
//! the fork figures). The thread cost is measured last, after every fork.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use plumb_sys::ExitStatus;
use plumb_sys::ipc::Exec;

use super::method::{self, Plan, Spread};

const MIN_ITERS: u64 = 20;
const MAX_ITERS: u64 = 1_000_000;

/// A unit of concurrency whose start-up cost is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    Fork,
    ForkExec,
    Thread,
}

impl Cost {
    /// In the order they are measured: threads last, so no fork ever sees a second thread.
    pub const ALL: [Cost; 3] = [Cost::Fork, Cost::ForkExec, Cost::Thread];

    /// The short name used on the command line and in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Cost::Fork => "fork",
            Cost::ForkExec => "exec",
            Cost::Thread => "thread",
        }
    }

    /// What one operation is, for the table.
    pub fn describe(self) -> &'static str {
        match self {
            Cost::Fork => "fork + _exit + waitpid",
            Cost::ForkExec => "fork + execv(true) + waitpid",
            Cost::Thread => "thread spawn + join",
        }
    }

    pub fn from_name(name: &str) -> Option<Cost> {
        Cost::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// What one cost measured.
#[derive(Debug, Clone)]
pub struct CostFigure {
    pub cost: Cost,
    /// Operations per run.
    pub iters: u64,
    pub runs: usize,
    pub spread: Spread,
}

/// The trivial program fork+exec runs.
///
/// # Errors
/// `NotFound` when there is no `true` binary.
pub fn trivial_program() -> io::Result<PathBuf> {
    ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "fork+exec needs /bin/true or /usr/bin/true",
            )
        })
}

/// Measures `cost`.
///
/// # Errors
/// fork, exec, thread creation failures, or a child that did not exit cleanly.
pub fn measure(cost: Cost, plan: &Plan) -> io::Result<CostFigure> {
    let exec = match cost {
        Cost::ForkExec => {
            let path = trivial_program()?;
            Some(Exec::new(&path, &[OsStr::new("true")])?)
        }
        _ => None,
    };
    let op = || -> io::Result<()> {
        match cost {
            Cost::Fork => fork_and_wait(|| 0),
            Cost::ForkExec => {
                let exec = exec
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no program"))?;
                fork_and_wait(|| {
                    let _ = exec.run();
                    127
                })
            }
            Cost::Thread => std::thread::Builder::new()
                .spawn(|| {})?
                .join()
                .map_err(|_| io::Error::other("the thread panicked")),
        }
    };
    let iters = match plan.iters {
        Some(n) => n.max(1),
        None => {
            let (done, took) = method::calibrate(4, MAX_ITERS, plan.calibration_time(), |n| {
                let start = Instant::now();
                for _ in 0..n {
                    op()?;
                }
                Ok(start.elapsed())
            })?;
            plan.size_for(done, took, MIN_ITERS, MAX_ITERS)
        }
    };
    let mut samples = Vec::with_capacity(iters as usize);
    let mut spreads = Vec::with_capacity(plan.runs);
    for _ in 0..plan.runs.max(1) {
        samples.clear();
        let start = Instant::now();
        for _ in 0..iters {
            let t = Instant::now();
            op()?;
            samples.push(t.elapsed().as_nanos() as u64);
        }
        spreads.push(method::spread(start.elapsed(), &samples)?);
    }
    Ok(CostFigure {
        cost,
        iters,
        runs: spreads.len(),
        spread: method::median_spread(&spreads),
    })
}

fn fork_and_wait(child: impl FnOnce() -> i32) -> io::Result<()> {
    let pid = plumb_sys::ipc::fork_run(child)?;
    match plumb_sys::wait(pid)?.1 {
        ExitStatus::Exited(0) => Ok(()),
        other => Err(io::Error::other(format!(
            "the child ended with {other:?} (exec failed?)"
        ))),
    }
}

/// How long the single-threadedness check before each fork takes, to put the fork figures
/// in proportion.
///
/// # Errors
/// When `/proc` is not mounted.
pub fn fork_check_overhead() -> io::Result<Duration> {
    const N: u32 = 1000;
    let start = Instant::now();
    for _ in 0..N {
        plumb_sys::ipc::thread_count()?;
    }
    Ok(start.elapsed() / N)
}
