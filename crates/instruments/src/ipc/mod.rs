//! `plumb ipc`: the material's claims about IPC, measured on this machine with the care of
//! lmbench — round-trip latency and bandwidth of pipes, FIFOs, UNIX stream and datagram
//! sockets, TCP over loopback and plain files between a parent and a forked child, and what
//! it costs to fork, fork+exec and spawn a thread.
//!
//! The files: [`channel`] makes the connected pairs, [`latency`] and [`bandwidth`] drive them,
//! [`costs`] times process and thread start-up, [`method`] holds the shared method (warm-up,
//! auto-sized runs, medians, the forked helper), [`options`] validates the command line and
//! [`output`] prints the table, the JSON and the chart.
//!
//! The process stays single-threaded until the thread-cost test (the last one): every fork
//! happens with one thread alive, which `plumb_sys::ipc::fork_run` checks.

pub mod bandwidth;
pub mod channel;
pub mod costs;
pub mod latency;
pub mod method;
pub mod options;
pub mod output;

use std::io::{self, IsTerminal, Write};

use anyhow::Context;

use channel::Channel;
use method::ScratchDir;
pub use options::{Args, Settings};
use output::{BandwidthRow, CostRow, LatencyRow, Report, SettingsReport};
use plumb::usage::usage;

/// Runs `plumb ipc`.
///
/// # Errors
/// Usage errors (bad options, a CPU that does not exist) and runtime errors (a channel or
/// child that fails, a chart that cannot be written).
pub fn run(args: &Args) -> anyhow::Result<i32> {
    let settings = Settings::from_args(args)?;
    // Before pinning, which narrows what this process may use.
    let cpus = cpus();
    if let Some(path) = &settings.chart {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            return Err(usage(format!(
                "--chart: directory {} does not exist",
                dir.display()
            )));
        }
    }
    if let Some((parent, child)) = settings.pin {
        // Pinning to the child's CPU first proves it exists; the parent then stays on its own.
        for cpu in [child, parent] {
            plumb_sys::pin_to_cpus(&[cpu]).map_err(|e| {
                usage(format!(
                    "--pin: cannot run on CPU {cpu} ({e}); this process may use {cpus} CPUs"
                ))
            })?;
        }
    }
    // A child that dies must show up as EPIPE on our next write, not kill us.
    plumb_sys::ignore_signal(plumb_sys::signal::SIGPIPE).context("ignoring SIGPIPE")?;
    let report = measure(&settings, cpus)?;

    if let Some(path) = &settings.chart {
        report
            .chart(path)
            .with_context(|| format!("writing chart {}", path.display()))?;
        // On stderr: stdout may be the JSON document.
        eprintln!("plumb: wrote the chart to {}", path.display());
    }
    let text = if settings.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else {
        report.table()
    };
    match io::stdout().lock().write_all(text.as_bytes()) {
        // Piped into `head`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        r => r.context("writing the report").map(|()| 0),
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs every selected measurement in order: latency, bandwidth, then the costs (threads last).
fn measure(settings: &Settings, cpus: usize) -> anyhow::Result<Report> {
    let tmp = std::env::temp_dir();
    ScratchDir::remove_stale(&tmp, "plumb-ipc-");
    let scratch = ScratchDir::new_in(&tmp, &format!("plumb-ipc-{}", plumb_sys::getpid()))
        .with_context(|| format!("creating a scratch directory in {}", tmp.display()))?;
    let progress = Progress::new(!settings.json || io::stderr().is_terminal());
    let plan = &settings.plan;

    let mut latency = Vec::new();
    if settings.latency {
        let setup = latency::Setup {
            size: settings.size,
            child_cpu: settings.child_cpu(),
            spin: settings.spin,
        };
        for &ch in &settings.channels {
            progress.show(&format!("{} round trips", ch.name()));
            let l = latency::measure(ch, scratch.path(), setup, plan)
                .with_context(|| format!("{} latency", ch.name()))?;
            latency.push(LatencyRow::from(&l));
        }
    }
    let mut bandwidth = Vec::new();
    if settings.bandwidth {
        let setup = bandwidth::Setup {
            chunk: settings.chunk,
            child_cpu: settings.child_cpu(),
        };
        for &ch in &settings.channels {
            progress.show(&format!("{} bandwidth", ch.name()));
            let b = bandwidth::measure(ch, scratch.path(), setup, plan)
                .with_context(|| bandwidth_context(ch, settings.chunk))?;
            bandwidth.push(BandwidthRow::from(&b));
        }
    }
    let fork_check_ns = costs::fork_check_overhead()
        .context("counting threads in /proc/self/task")?
        .as_nanos() as f64;
    let mut cost_rows = Vec::new();
    for &cost in &settings.costs {
        progress.show(cost.describe());
        let c = costs::measure(cost, plan).with_context(|| cost.describe())?;
        cost_rows.push(CostRow::from(&c));
    }
    progress.done();

    let (probe, _) = plumb_sys::pipe().context("creating a pipe")?;
    Ok(Report {
        settings: SettingsReport {
            size: settings.size,
            chunk: settings.chunk,
            pin: settings.pin.map(|(p, c)| [p, c]),
            spin: settings.spin,
            runs: plan.runs,
            run_time_s: plan.run_time.as_secs_f64(),
            cpus,
            pipe_capacity: plumb_sys::pipe_capacity(&probe).context("F_GETPIPE_SZ")?,
            fork_check_ns,
        },
        latency,
        bandwidth,
        costs: cost_rows,
    })
}

fn bandwidth_context(ch: Channel, chunk: usize) -> String {
    if ch == Channel::UnixDatagram {
        format!(
            "{} bandwidth ({chunk}-byte datagrams; a datagram must fit the socket buffer)",
            ch.name()
        )
    } else {
        format!("{} bandwidth", ch.name())
    }
}

/// One status line on stderr, rewritten in place, only when stderr is a terminal. Plain
/// writes from this thread: no progress-bar thread, so forking stays sound.
struct Progress {
    on: bool,
}

impl Progress {
    fn new(wanted: bool) -> Progress {
        Progress {
            on: wanted && io::stderr().is_terminal(),
        }
    }

    fn show(&self, what: &str) {
        if self.on {
            let _ = write!(io::stderr(), "\r\x1b[Kplumb ipc: measuring {what}...");
        }
    }

    fn done(&self) {
        if self.on {
            let _ = write!(io::stderr(), "\r\x1b[K");
        }
    }
}
