//! The options of `plumb ipc` and their validation into [`Settings`]. Values are taken as
//! text and checked here, so every mistake is one `plumb: ...` line and exit status 2.

use std::path::PathBuf;
use std::time::Duration;

use super::channel::Channel;
use super::costs::Cost;
use super::method::Plan;
use plumb::usage::usage;

/// Options of `plumb ipc`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  plumb ipc                          every channel and cost (about 20 s)
  plumb ipc --quick --only pipe,unix  a few seconds, two channels
  plumb ipc --pin 0,1 --json         parent on CPU 0, child on CPU 1, JSON on stdout
  plumb ipc --size 4KiB --chart ipc.svg

Channels: pipe, fifo, unix, unix-dgram, tcp, file. Tests: latency, bandwidth, and the costs
fork, exec, thread (or 'costs' for all three). --only takes any mix; naming only channels runs
their latency and bandwidth, naming only tests runs them on every channel.")]
pub struct Args {
    /// Bytes per ping-pong message: 1, 4k, 4KiB, 1MiB (K = KiB = 1024; KB = 1000).
    #[arg(long, value_name = "BYTES", default_value = "1")]
    pub size: String,
    /// Bytes per write in the bandwidth test (units as for --size).
    #[arg(long, value_name = "BYTES", default_value = "64KiB")]
    pub chunk: String,
    /// Pin the parent to one CPU and the child to another (the same CPU twice is allowed).
    #[arg(long, value_name = "PARENT_CPU,CHILD_CPU")]
    pub pin: Option<String>,
    /// Comma-separated channels and tests to run (default: all).
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
    /// Short runs (a few seconds in all): for tests and a first look.
    #[arg(long)]
    pub quick: bool,
    /// Runs per figure; the median is reported [default: 5, 3 with --quick].
    #[arg(long, value_name = "N")]
    pub runs: Option<String>,
    /// Seconds each run aims for when its size is not fixed [default: 0.2, 0.01 with --quick].
    #[arg(long, value_name = "SECS")]
    pub run_time: Option<String>,
    /// Fixed round trips (or forks, threads) per run instead of sizing runs by time.
    #[arg(long, value_name = "N")]
    pub iters: Option<String>,
    /// Fixed MiB per bandwidth run instead of sizing runs by time.
    #[arg(long, value_name = "MIB")]
    pub total_mib: Option<String>,
    /// Busy-poll in the ping-pong: non-blocking descriptors retried at once, so no sleep or
    /// wake-up is on the measured path. Meant for two CPUs (--pin 0,1): on one CPU each side
    /// spins until the scheduler preempts it.
    #[arg(long)]
    pub spin: bool,
    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG chart of the figures to FILE.
    #[arg(long, value_name = "FILE.svg")]
    pub chart: Option<PathBuf>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub size: usize,
    pub chunk: usize,
    pub pin: Option<(usize, usize)>,
    pub channels: Vec<Channel>,
    pub latency: bool,
    pub bandwidth: bool,
    pub costs: Vec<Cost>,
    pub plan: Plan,
    pub spin: bool,
    pub json: bool,
    pub chart: Option<PathBuf>,
}

const MAX_SIZE: usize = 1 << 20;
const MAX_CHUNK: usize = 64 << 20;

impl Settings {
    /// Checks every option.
    ///
    /// # Errors
    /// A usage error naming the option and what is wrong with it.
    pub fn from_args(args: &Args) -> anyhow::Result<Settings> {
        let size = bytes_in("--size", &args.size, MAX_SIZE)?;
        let chunk = bytes_in("--chunk", &args.chunk, MAX_CHUNK)?;
        let pin = args.pin.as_deref().map(parse_pin).transpose()?;
        let selection = Selection::parse(args.only.as_deref().unwrap_or(""))?;
        let runs = match &args.runs {
            Some(s) => count("--runs", s, 1, 101)? as usize,
            None if args.quick => 3,
            None => 5,
        };
        let run_time = match &args.run_time {
            Some(s) => run_seconds(s)?,
            None if args.quick => Duration::from_millis(10),
            None => Duration::from_millis(200),
        };
        let iters = args
            .iters
            .as_deref()
            .map(|s| count("--iters", s, 1, 100_000_000))
            .transpose()?;
        let bytes = args
            .total_mib
            .as_deref()
            .map(|s| count("--total-mib", s, 1, 1 << 20).map(|m| m << 20))
            .transpose()?;
        if let Some(path) = &args.chart
            && path.as_os_str().is_empty()
        {
            return Err(usage("--chart needs a file name"));
        }
        Ok(Settings {
            size,
            chunk,
            pin,
            channels: selection.channels,
            latency: selection.latency,
            bandwidth: selection.bandwidth,
            costs: selection.costs,
            plan: Plan {
                run_time,
                runs,
                iters,
                bytes,
            },
            spin: args.spin,
            json: args.json,
            chart: args.chart.clone(),
        })
    }

    pub fn parent_cpu(&self) -> Option<usize> {
        self.pin.map(|p| p.0)
    }

    pub fn child_cpu(&self) -> Option<usize> {
        self.pin.map(|p| p.1)
    }
}

/// What `--only` selected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selection {
    channels: Vec<Channel>,
    latency: bool,
    bandwidth: bool,
    costs: Vec<Cost>,
}

impl Selection {
    fn parse(list: &str) -> anyhow::Result<Selection> {
        let mut channels = Vec::new();
        let (mut latency, mut bandwidth) = (false, false);
        let mut costs = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(c) = Channel::from_name(item) {
                channels.push(c);
            } else if let Some(c) = Cost::from_name(item) {
                costs.push(c);
            } else {
                match item {
                    "latency" => latency = true,
                    "bandwidth" => bandwidth = true,
                    "costs" => costs.extend(Cost::ALL),
                    _ => {
                        return Err(usage(format!(
                            "--only: unknown channel or test '{item}' (channels: {}; tests: latency, bandwidth, costs, {})",
                            Channel::ALL.map(Channel::name).join(", "),
                            Cost::ALL.map(Cost::name).join(", ")
                        )));
                    }
                }
            }
        }
        let nothing_named = channels.is_empty() && costs.is_empty() && !latency && !bandwidth;
        if nothing_named {
            return Ok(Selection {
                channels: Channel::ALL.to_vec(),
                latency: true,
                bandwidth: true,
                costs: Cost::ALL.to_vec(),
            });
        }
        if !channels.is_empty() && !latency && !bandwidth {
            latency = true;
            bandwidth = true;
        }
        if channels.is_empty() && (latency || bandwidth) {
            channels = Channel::ALL.to_vec();
        }
        // Keep the canonical order (threads last) whatever order they were named in.
        let channels = Channel::ALL
            .into_iter()
            .filter(|c| channels.contains(c))
            .collect();
        let costs = Cost::ALL
            .into_iter()
            .filter(|c| costs.contains(c))
            .collect();
        Ok(Selection {
            channels,
            latency,
            bandwidth,
            costs,
        })
    }
}

/// Parses "PARENT,CHILD" CPU numbers.
fn parse_pin(s: &str) -> anyhow::Result<(usize, usize)> {
    let bad = || {
        usage(format!(
            "--pin wants PARENT_CPU,CHILD_CPU such as 0,1, not '{s}'"
        ))
    };
    let (p, c) = s.split_once(',').ok_or_else(bad)?;
    let p = p.trim().parse().map_err(|_| bad())?;
    let c = c.trim().parse().map_err(|_| bad())?;
    Ok((p, c))
}

/// A byte count in 1..=max, read as every size option reads one.
fn bytes_in(name: &str, s: &str, max: usize) -> anyhow::Result<usize> {
    crate::bench::parse_size(name, s, max).map_err(usage)
}

fn count(name: &str, s: &str, min: u64, max: u64) -> anyhow::Result<u64> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            usage(format!(
                "{name} wants a whole number from {min} to {max}, not '{s}'"
            ))
        })
}

fn run_seconds(s: &str) -> anyhow::Result<Duration> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| (0.001..=60.0).contains(v))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            usage(format!(
                "--run-time wants seconds from 0.001 to 60, not '{s}'"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        let cases: [(&str, Option<usize>); 11] = [
            ("1", Some(1)),
            ("64KiB", Some(65536)),
            ("64K", Some(65536)),
            ("4 KiB", Some(4096)),
            ("1MiB", Some(1 << 20)),
            ("2KB", Some(2000)),
            ("0", None),
            ("", None),
            ("abc", None),
            ("3GiB", None),
            ("99999999999999999999", None),
        ];
        for (input, want) in cases {
            assert_eq!(bytes_in("--size", input, 1 << 20).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn pins() {
        let cases: [(&str, Option<(usize, usize)>); 6] = [
            ("0,1", Some((0, 1))),
            ("3, 3", Some((3, 3))),
            ("0", None),
            ("a,b", None),
            ("-1,0", None),
            ("0,1,2", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_pin(input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn only_selects_channels_and_tests() {
        let all = Selection::parse("").unwrap();
        assert_eq!(all.channels.len(), Channel::ALL.len());
        assert!(all.latency && all.bandwidth);
        assert_eq!(all.costs, Cost::ALL);

        let two = Selection::parse("unix,pipe").unwrap();
        assert_eq!(two.channels, [Channel::Pipe, Channel::UnixStream]);
        assert!(two.latency && two.bandwidth && two.costs.is_empty());

        let lat = Selection::parse("latency").unwrap();
        assert_eq!(lat.channels.len(), Channel::ALL.len());
        assert!(lat.latency && !lat.bandwidth && lat.costs.is_empty());

        let mixed = Selection::parse("thread,tcp,bandwidth,fork").unwrap();
        assert_eq!(mixed.channels, [Channel::Tcp]);
        assert!(!mixed.latency && mixed.bandwidth);
        assert_eq!(mixed.costs, [Cost::Fork, Cost::Thread]);

        let costs = Selection::parse("costs").unwrap();
        assert!(costs.channels.is_empty() && costs.costs == Cost::ALL);

        assert!(Selection::parse("pipe,smoke-signals").is_err());
    }
}
