//! The measuring method shared by every figure, after lmbench: warm up, size the repetitions
//! so one run lasts about the target time, do several runs and report the median of each
//! figure; the forked helper child (closing the parent's ends, pinned to its CPU, reaped or
//! killed by pid); and the statistics of a run (mean over the whole run, p50/p99 from an
//! HdrHistogram filled after the timed loop, never inside it).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use plumb_sys::{ExitStatus, pid_t};

/// How long runs are and how many there are.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The time one run aims for when its size is not fixed.
    pub run_time: Duration,
    /// Runs per figure; the median is reported.
    pub runs: usize,
    /// Fixed round trips (or operations) per run instead of auto-sizing.
    pub iters: Option<u64>,
    /// Fixed bytes per bandwidth run instead of auto-sizing.
    pub bytes: Option<u64>,
}

impl Plan {
    /// Given how long `done` operations took while calibrating, how many make a run of
    /// `run_time` (at least `floor`, at most `ceiling`).
    pub fn size_for(&self, done: u64, took: Duration, floor: u64, ceiling: u64) -> u64 {
        let per_op = took.as_secs_f64() / done.max(1) as f64;
        let want = if per_op > 0.0 {
            self.run_time.as_secs_f64() / per_op
        } else {
            ceiling as f64
        };
        (want as u64).clamp(floor, ceiling.max(floor))
    }

    /// The calibration budget: a tenth of a run.
    pub fn calibration_time(&self) -> Duration {
        self.run_time / 10
    }
}

/// Doubles a batch size from `start` until `batch(n)` takes at least `budget` (or `n` reaches
/// `ceiling`); returns the last size and how long it took. Doubles as warm-up.
///
/// # Errors
/// The first error of `batch`.
pub fn calibrate(
    start: u64,
    ceiling: u64,
    budget: Duration,
    mut batch: impl FnMut(u64) -> io::Result<Duration>,
) -> io::Result<(u64, Duration)> {
    let mut n = start.max(1);
    loop {
        let took = batch(n)?;
        if took >= budget || n >= ceiling {
            return Ok((n, took));
        }
        n = n.saturating_mul(2).min(ceiling);
    }
}

/// Mean, p50 and p99 of one run, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean_ns: f64,
    pub p50_ns: f64,
    pub p99_ns: f64,
}

/// The statistics of a run: `mean` is the whole run's time over its count (as the C
/// programs compute it), the percentiles come from the per-operation samples.
///
/// # Errors
/// `InvalidInput` for an empty run.
pub fn spread(total: Duration, samples: &[u64]) -> io::Result<Spread> {
    if samples.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty run"));
    }
    // 1 ns to 100 s at 3 significant digits: 0.1% resolution, the percentiles are exact enough.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3)
        .map_err(|e| io::Error::other(e.to_string()))?;
    for &s in samples {
        hist.saturating_record(s.max(1));
    }
    Ok(Spread {
        mean_ns: total.as_nanos() as f64 / samples.len() as f64,
        p50_ns: hist.value_at_quantile(0.50) as f64,
        p99_ns: hist.value_at_quantile(0.99) as f64,
    })
}

/// The median of each figure over several runs, as the reference script reports.
pub fn median_spread(runs: &[Spread]) -> Spread {
    Spread {
        mean_ns: median(runs.iter().map(|s| s.mean_ns)),
        p50_ns: median(runs.iter().map(|s| s.p50_ns)),
        p99_ns: median(runs.iter().map(|s| s.p99_ns)),
    }
}

/// The median (mean of the middle two for an even count; 0 for none).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A forked helper. Reaped by [`Helper::finish`]; killed and reaped if dropped unfinished (an
/// error on the parent's side), so no child outlives a measurement.
#[derive(Debug)]
pub struct Helper {
    pid: Option<pid_t>,
    what: &'static str,
}

/// Forks a helper child that runs `body(theirs)` pinned to `cpu`, and returns `ours` to the
/// parent with the helper. The child closes its copy of `ours` first and the parent's copy of
/// `theirs` is closed when this returns: without those two closes an end stays open in the
/// wrong process and the reader never sees end of file.
///
/// # Errors
/// `fork` failures, including a refusal when the process is not single-threaded.
pub fn spawn_helper<O, T>(
    what: &'static str,
    ours: O,
    theirs: T,
    cpu: Option<usize>,
    body: impl FnOnce(T) -> io::Result<()>,
) -> io::Result<(O, Helper)> {
    let mut ours = Some(ours);
    let in_child = &mut ours;
    let pid = plumb_sys::ipc::fork_run(move || {
        drop(in_child.take());
        // A helper blocked on a datagram socket or a followed file would never notice its
        // parent dying (no end of file there): have the kernel kill it instead.
        let result = plumb_sys::die_with_parent(plumb_sys::signal::SIGKILL)
            .and_then(|()| match cpu {
                Some(cpu) => plumb_sys::pin_to_cpus(&[cpu]),
                None => Ok(()),
            })
            .and_then(|()| body(theirs));
        match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("plumb: {what} (child): {e}");
                1
            }
        }
    })?;
    let helper = Helper {
        pid: Some(pid),
        what,
    };
    let ours = ours.ok_or_else(|| io::Error::other("fork lost the parent's ends"))?;
    Ok((ours, helper))
}

impl Helper {
    /// Waits for the helper and checks that it exited cleanly.
    ///
    /// # Errors
    /// When it exited with a failure or was killed.
    pub fn finish(mut self) -> io::Result<()> {
        let Some(pid) = self.pid.take() else {
            return Ok(());
        };
        match plumb_sys::wait(pid)?.1 {
            ExitStatus::Exited(0) => Ok(()),
            ExitStatus::Exited(code) => Err(io::Error::other(format!(
                "the {} child exited with status {code}",
                self.what
            ))),
            ExitStatus::Signaled(sig) => Err(io::Error::other(format!(
                "the {} child was killed by signal {sig}",
                self.what
            ))),
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = plumb_sys::kill(pid, plumb_sys::signal::SIGKILL);
            let _ = plumb_sys::wait(pid);
        }
    }
}

/// A fresh directory for a measurement's FIFOs and files, removed (with its contents) when
/// dropped. Forked children never drop it: they leave through `_exit`.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `parent/prefix-N` for the first free N.
    ///
    /// # Errors
    /// When `parent` is not writable.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<ScratchDir> {
        for i in 0u32..10_000 {
            let path = parent.join(format!("{prefix}-{i}"));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "no free {prefix}-N directory in {}",
            parent.display()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Removes `prefix-PID-N` directories left in `parent` by runs that were killed (their
    /// process no longer exists), so an interrupted file-bandwidth run does not leave its
    /// file behind for good. Directories of live processes, and ones we may not remove, are
    /// left alone.
    pub fn remove_stale(parent: &Path, prefix: &str) {
        let Ok(entries) = std::fs::read_dir(parent) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<plumb_sys::pid_t>().ok())
            else {
                continue;
            };
            let gone =
                matches!(plumb_sys::kill(pid, 0), Err(e) if e.raw_os_error() == Some(libc::ESRCH));
            if gone && pid != plumb_sys::getpid() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_scratch_dirs_of_dead_processes_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22, so this pid cannot exist.
        let dead = parent.path().join("plumb-ipc-99999999-0");
        let alive = parent
            .path()
            .join(format!("plumb-ipc-{}-0", plumb_sys::getpid()));
        let other = parent.path().join("plumb-ipc-notapid");
        for d in [&dead, &alive, &other] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(dead.join("to-child.log"), b"x").unwrap();
        ScratchDir::remove_stale(parent.path(), "plumb-ipc-");
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        let cases: [(&[f64], f64); 4] = [
            (&[3.0, 1.0, 2.0], 2.0),
            (&[4.0, 1.0, 3.0, 2.0], 2.5),
            (&[7.0], 7.0),
            (&[], 0.0),
        ];
        for (input, want) in cases {
            assert_eq!(median(input.iter().copied()), want, "{input:?}");
        }
    }

    #[test]
    fn spread_mean_is_total_over_count_and_percentiles_come_from_samples() {
        let samples: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let s = spread(Duration::from_micros(60_000), &samples).unwrap();
        assert_eq!(s.mean_ns, 600_000.0);
        assert!((s.p50_ns - 50_000.0).abs() <= 50.0, "{s:?}");
        assert!((s.p99_ns - 99_000.0).abs() <= 100.0, "{s:?}");
        assert!(spread(Duration::ZERO, &[]).is_err());
    }

    #[test]
    fn size_for_aims_at_the_run_time_within_bounds() {
        let plan = Plan {
            run_time: Duration::from_millis(100),
            runs: 3,
            iters: None,
            bytes: None,
        };
        // 1000 ops in 10 ms: 100 ms is 10_000 ops.
        assert_eq!(
            plan.size_for(1000, Duration::from_millis(10), 1, u64::MAX),
            10_000
        );
        assert_eq!(plan.size_for(1000, Duration::from_millis(10), 1, 500), 500);
        assert_eq!(
            plan.size_for(1000, Duration::from_secs(100), 64, u64::MAX),
            64
        );
        assert_eq!(plan.size_for(1000, Duration::ZERO, 1, 77), 77);
    }

    #[test]
    fn calibrate_doubles_until_the_budget() {
        let mut seen = Vec::new();
        let (n, _) = calibrate(4, 1 << 20, Duration::from_millis(64), |n| {
            seen.push(n);
            Ok(Duration::from_millis(n))
        })
        .unwrap();
        assert_eq!(n, 64);
        assert_eq!(seen, [4, 8, 16, 32, 64]);
        let (n, _) = calibrate(4, 10, Duration::from_secs(1), |n| {
            Ok(Duration::from_millis(n))
        })
        .unwrap();
        assert_eq!(n, 10);
    }
}
