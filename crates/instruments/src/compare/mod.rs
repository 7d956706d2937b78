//! `plumb compare`: one service under every concurrency model, side by side. Each model's
//! server runs as a child process (this same binary) on a free loopback port; it is warmed
//! up, benched with the in-process load generator, measured through /proc (CPU time and
//! peak RSS of its process tree) and stopped by PID. Several rounds in rotated model order
//! let a noisy machine's drift cancel out; the medians become a table, an SVG chart and raw
//! JSON/CSV.
//!
//! Scenarios show what the lecture claims: `keep-alive` (steady load), `close` (a new
//! connection per request: fork pays per connection), `idle` (many idle keep-alive clients
//! beside the measured load: a thread per client pays per client, a pool starves) and
//! `large` (a large file or large echo messages: bandwidth).

mod output;
pub mod server;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::bench::{self, Stop};
use output::Run;
use plumb::models::Model;
use plumb::net::{Addr, Stream};
use plumb::usage::usage;
use server::{ChildServer, RssSampler};

/// Which service the servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// `plumb serve` of a generated docroot, benched over HTTP/1.1.
    Http,
    /// `plumb echo`, benched with echo messages.
    Echo,
    /// `plumb relay` in front of one echo server, benched with echo messages.
    Relay,
    /// `plumb rpc serve`, benched with `rpc.echo` calls (the JSON-RPC anchor's params, or a
    /// text of --size bytes; 256 KiB for the large scenario).
    Rpc,
}

/// What load the servers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Steady keep-alive load on --connections connections.
    KeepAlive,
    /// A new connection for every request.
    Close,
    /// --idle idle keep-alive connections held open beside the measured load.
    Idle,
    /// A 10 MiB file (http) or 256 KiB messages (echo, relay, rpc params) on 8 connections.
    Large,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::KeepAlive => "keep-alive",
            Scenario::Close => "close",
            Scenario::Idle => "idle",
            Scenario::Large => "large",
        }
    }
}

/// Options of `plumb compare`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  plumb compare --service echo\n  plumb compare --service http --scenario close --models fork,thread,pool --rounds 5\n  plumb compare --service echo --scenario idle --idle 1000 --server-cpus 0 --client-cpus 1 --out /tmp/cmp\n  plumb compare --service rpc --models thread,pool,event --rounds 1"
)]
pub struct Args {
    /// The service every model runs.
    #[arg(long, value_enum, default_value_t = Service::Http)]
    pub service: Service,
    /// The load: keep-alive, close (connection per request), idle (idle clients beside the
    /// load) or large (big file / messages).
    #[arg(long, value_enum, default_value_t = Scenario::KeepAlive)]
    pub scenario: Scenario,
    /// Models to compare, comma-separated (default: all).
    ///
    /// iterative (one connection at a time), fork-wait (a fork per connection, waited for), fork (a fork per connection),
    /// thread (a thread per connection), pool (a fixed pool of threads), prefork (worker
    /// processes sharing one listener), event (epoll loops). Each server runs with its
    /// defaults; `plumb serve --help` has the options that tune them.
    // The models' own descriptions name server options (--workers, --queue, ...) that
    // compare does not have, and its --threads means bench threads: hide them here.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "M,M,...",
        hide_possible_values = true
    )]
    pub models: Vec<Model>,
    /// Bench connections (default 64; 8 for the large scenario).
    #[arg(short = 'c', long, value_name = "N")]
    pub connections: Option<usize>,
    /// Bench threads.
    #[arg(short = 't', long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Measured seconds per model and round.
    #[arg(short = 'd', long, value_name = "SECS", default_value = "2")]
    pub duration: String,
    /// Warm-up before each measurement.
    #[arg(long, value_name = "SECS", default_value = "0.5")]
    pub warmup: String,
    /// Rounds; the model order rotates each round.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rounds: usize,
    /// A request unanswered this long counts as a timeout.
    #[arg(long, value_name = "SECS", default_value = "1")]
    pub timeout: String,
    /// Idle connections in the idle scenario.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub idle: usize,
    /// Echo message size: 64, 4k, 1KiB, 1MiB (default 64; 256 KiB for the large scenario);
    /// for rpc, the size of the text in the params (default: the 100-byte params object).
    #[arg(long, value_name = "BYTES")]
    pub size: Option<String>,
    /// CPUs for the servers, e.g. 0 or 0-1 or 0,2.
    #[arg(long, value_name = "LIST", requires = "client_cpus")]
    pub server_cpus: Option<String>,
    /// CPUs for the load generator.
    #[arg(long, value_name = "LIST", requires = "server_cpus")]
    pub client_cpus: Option<String>,
    /// The plumb executable that runs the servers (default: this one), to compare builds.
    #[arg(long, value_name = "PATH")]
    pub server_exe: Option<PathBuf>,
    /// Directory for results.json, results.csv and chart.svg.
    #[arg(long, value_name = "DIR", default_value = "plumb-compare")]
    pub out: PathBuf,
}

/// Parses a CPU list: `0`, `0,2`, `0-3`, `0-1,4`.
///
/// # Errors
/// Anything else.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("invalid CPU list '{s}': expected e.g. 0 or 0-3 or 0,2");
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b >= 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() || out.iter().any(|&c| c >= 4096) {
        return Err(bad());
    }
    Ok(out)
}

/// A temporary document root for the http service, removed on drop.
struct DocRoot(PathBuf);

impl DocRoot {
    fn create() -> anyhow::Result<DocRoot> {
        let dir = std::env::temp_dir().join(format!("plumb-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let root = DocRoot(dir);
        let index: Vec<u8> = (0..1024).map(|i| b"plumb compare\n"[i % 14]).collect();
        std::fs::write(root.0.join("index.html"), index)?;
        let large: Vec<u8> = (0..LARGE_FILE).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.0.join("large.bin"), large)?;
        Ok(root)
    }
}

impl Drop for DocRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const LARGE_FILE: usize = 10 << 20;
/// Largest params text of the rpc service: its answer repeats it, and both must fit the
/// server's default 1 MiB frame.
const MAX_RPC_TEXT: usize = 1000 << 10;
/// The params of the rpc service's calls: the object the JSON-RPC anchor sends, byte for byte
/// (`../shared/bench/anchors/rpc-anchor.sh`, which calls it 100 bytes; it is 90), so the
/// figures compare.
pub const RPC_PARAMS: &str =
    r#"{"name":"plumb","text":"0123456789012345678901234567890123456789012345678901234567890123"}"#;

/// The rpc service's params: [`RPC_PARAMS`], or a text of `size` bytes when a size was asked
/// for (or the scenario is large).
fn rpc_params(plan: &Plan) -> String {
    if !plan.sized && plan.scenario != Scenario::Large {
        return RPC_PARAMS.to_string();
    }
    let text: String = (0..plan.size)
        .map(|i| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]))
        .collect();
    format!(r#"{{"name":"plumb","text":"{text}"}}"#)
}
const LARGE_ECHO: usize = 256 << 10;

/// Pins this thread (and so the children and threads it starts next) to `cpus`.
fn pin(cpus: &Option<Vec<usize>>) -> anyhow::Result<()> {
    if let Some(c) = cpus {
        plumb_sys::pin_to_cpus(c).map_err(|e| anyhow::anyhow!("cannot pin to CPUs {c:?}: {e}"))?;
    }
    Ok(())
}

struct Plan {
    service: Service,
    scenario: Scenario,
    models: Vec<Model>,
    connections: usize,
    threads: usize,
    duration: Duration,
    warmup: Duration,
    rounds: usize,
    timeout: Duration,
    idle: usize,
    size: usize,
    /// --size was given (the rpc service then sends a text of that size).
    sized: bool,
    server_cpus: Option<Vec<usize>>,
    client_cpus: Option<Vec<usize>>,
    exe: PathBuf,
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let secs = |name: &str, s: &str| bench::parse_time(name, s).map_err(usage);
    let duration = secs("--duration", &args.duration)?;
    let warmup = secs("--warmup", &args.warmup)?;
    let timeout = secs("--timeout", &args.timeout)?;
    if duration.is_zero() || timeout.is_zero() {
        return Err(usage("--duration and --timeout must be more than 0"));
    }
    let connections = args
        .connections
        .unwrap_or(if args.scenario == Scenario::Large {
            8
        } else {
            64
        });
    if connections == 0 || args.threads == 0 || args.rounds == 0 {
        return Err(usage(
            "--connections, --threads and --rounds must be at least 1",
        ));
    }
    if args.threads > connections {
        return Err(usage("--threads cannot exceed --connections"));
    }
    if args.rounds > 100 {
        return Err(usage("--rounds must be at most 100"));
    }
    if args.size.is_some() && args.service == Service::Http {
        return Err(usage("--size applies to the echo, relay and rpc services"));
    }
    // The rpc server refuses frames past its --max-frame (1 MiB by default).
    let max_size = if args.service == Service::Rpc {
        MAX_RPC_TEXT
    } else {
        bench::MAX_ECHO_SIZE
    };
    let size = match &args.size {
        Some(s) => bench::parse_size("--size", s, max_size).map_err(usage)?,
        None if args.scenario == Scenario::Large => LARGE_ECHO,
        None => bench::DEFAULT_ECHO_SIZE,
    };
    let mut models: Vec<Model> = if args.models.is_empty() {
        Model::ALL.to_vec()
    } else {
        args.models.clone()
    };
    let mut seen = Vec::new();
    models.retain(|m| {
        let new = !seen.contains(m);
        seen.push(*m);
        new
    });
    let cpus = |o: &Option<String>| -> anyhow::Result<Option<Vec<usize>>> {
        o.as_deref()
            .map(|s| parse_cpus(s).map_err(usage))
            .transpose()
    };
    Ok(Plan {
        service: args.service,
        scenario: args.scenario,
        models,
        connections,
        threads: args.threads,
        duration,
        warmup,
        rounds: args.rounds,
        timeout,
        idle: args.idle,
        size,
        sized: args.size.is_some(),
        server_cpus: cpus(&args.server_cpus)?,
        client_cpus: cpus(&args.client_cpus)?,
        exe: match &args.server_exe {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| anyhow::anyhow!("cannot find the plumb executable: {e}"))?,
        },
    })
}

/// Runs `plumb compare`.
///
/// # Errors
/// Usage errors (exit 2); a server that does not start, a target that fails its check, or
/// an output directory that cannot be written (exit 1).
pub fn run(args: &Args) -> anyhow::Result<i32> {
    let plan = plan(args)?;
    let _ = plumb_sys::raise_nofile_limit();
    // Ctrl-C or SIGTERM ends the current bench early and stops every server we started
    // (a plain kill would leave them running).
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .map_err(|e| anyhow::anyhow!("cannot install a signal handler: {e}"))?;
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.out.display()))?;
    pin(&plan.client_cpus)?;
    let docroot = match plan.service {
        Service::Http => Some(DocRoot::create()?),
        _ => None,
    };
    // The relay's upstream: one echo server for the whole comparison, on the server CPUs.
    let upstream = match plan.service {
        Service::Relay => {
            pin(&plan.server_cpus)?;
            let s = ChildServer::start(&plan.exe, &upstream_args());
            pin(&plan.client_cpus)?;
            Some(s?)
        }
        _ => None,
    };
    let verbose = std::io::stderr().is_terminal();
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..plan.rounds {
        for model in rotated(&plan.models, round) {
            if interrupted.load(Ordering::Relaxed) {
                break;
            }
            let server_args = server_args(
                &plan,
                model,
                docroot.as_ref().map(|d| d.0.as_path()),
                upstream.as_ref().map(|u| u.addr.as_str()),
            );
            let run = bench_one(&plan, round + 1, model, &server_args, &interrupted)?;
            if interrupted.load(Ordering::Relaxed) {
                break;
            }
            if verbose {
                eprintln!(
                    "plumb: round {}/{} {:<10} {:>9.0} req/s  p99 {}  errors {}",
                    round + 1,
                    plan.rounds,
                    model.name(),
                    run.report.requests_per_sec,
                    bench::report::shown_us(run.report.latency_us.p99),
                    run.report.errors.total(),
                );
            }
            runs.push(run);
        }
    }
    drop(upstream);
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("plumb: compare interrupted; every server it started is stopped");
        return Ok(130);
    }
    let names: Vec<String> = plan.models.iter().map(|m| m.name().to_string()).collect();
    let summary = output::summarize(&names, &runs);
    let service = match plan.service {
        Service::Http => "http",
        Service::Echo => "echo",
        Service::Relay => "relay",
        Service::Rpc => "rpc",
    };
    let title = format!(
        "plumb compare: {service}, {} scenario, {} connections{}, {} x {:.1} s per model",
        plan.scenario.name(),
        plan.connections,
        if plan.scenario == Scenario::Idle {
            format!(" + {} idle", plan.idle)
        } else {
            String::new()
        },
        plan.rounds,
        plan.duration.as_secs_f64(),
    );
    print!("{}", output::table(&title, &summary));
    let json = serde_json::json!({
        "service": service,
        "scenario": plan.scenario.name(),
        "connections": plan.connections,
        "threads": plan.threads,
        "duration_s": plan.duration.as_secs_f64(),
        "warmup_s": plan.warmup.as_secs_f64(),
        "rounds": plan.rounds,
        "idle": if plan.scenario == Scenario::Idle { plan.idle } else { 0 },
        "message_size": match plan.service {
            Service::Http => None,
            Service::Rpc => Some(rpc_params(&plan).len()),
            Service::Echo | Service::Relay => Some(plan.size),
        },
        "server_cpus": plan.server_cpus,
        "client_cpus": plan.client_cpus,
        "summary": summary,
        "runs": runs,
    });
    let write = |name: &str, data: &[u8]| -> anyhow::Result<PathBuf> {
        let p = args.out.join(name);
        std::fs::write(&p, data)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
        Ok(p)
    };
    let j = write(
        "results.json",
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let c = write("results.csv", output::csv(&runs).as_bytes())?;
    let svg = args.out.join("chart.svg");
    output::chart(&svg, &title, &summary)?;
    println!("wrote {}, {}, {}", j.display(), c.display(), svg.display());
    Ok(0)
}

/// The models in the order of `round`: rotated left by one each round, so each model runs
/// early and late.
fn rotated<T: Copy>(models: &[T], round: usize) -> Vec<T> {
    let n = models.len();
    (0..n).map(|k| models[(k + round) % n]).collect()
}

/// The echo upstream of the relay service: the event model when this build has one, else a
/// thread per connection with room for the idle scenario.
fn upstream_args() -> Vec<String> {
    use clap::ValueEnum;
    let model = Model::from_str("event", true).unwrap_or(Model::Thread);
    [
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--model",
        model.name(),
        "--max-connections",
        "8192",
        "-q",
    ]
    .map(String::from)
    .to_vec()
}

fn server_args(
    plan: &Plan,
    model: Model,
    docroot: Option<&Path>,
    upstream: Option<&str>,
) -> Vec<String> {
    let mut a: Vec<String> = match plan.service {
        Service::Http => vec![
            "serve".into(),
            docroot.map(|d| d.display().to_string()).unwrap_or_default(),
        ],
        Service::Echo => vec!["echo".into()],
        Service::Rpc => vec!["rpc".into(), "serve".into()],
        Service::Relay => vec![
            "relay".into(),
            "--to".into(),
            upstream.unwrap_or_default().to_string(),
        ],
    };
    a.extend(["--listen", "127.0.0.1:0", "--model", model.name(), "-q"].map(String::from));
    a
}

/// Starts the server for `model`, warms it up, benches it and stops it.
fn bench_one(
    plan: &Plan,
    round: usize,
    model: Model,
    server_args: &[String],
    interrupted: &Arc<AtomicBool>,
) -> anyhow::Result<Run> {
    pin(&plan.server_cpus)?;
    let started = ChildServer::start(&plan.exe, server_args);
    pin(&plan.client_cpus)?;
    let mut srv = started?;
    let target = match plan.service {
        Service::Http if plan.scenario == Scenario::Large => {
            format!("http://{}/large.bin", srv.addr)
        }
        Service::Http => format!("http://{}/index.html", srv.addr),
        Service::Rpc => format!("rpc://{}", srv.addr),
        Service::Echo | Service::Relay => format!("echo://{}", srv.addr),
    };
    let is_rpc = plan.service == Service::Rpc;
    let args = bench::Args {
        target,
        connections: plan.connections,
        threads: plan.threads,
        duration: Some(format!("{}", plan.duration.as_secs_f64())),
        requests: None,
        warmup: "0".into(),
        pipeline: 1,
        close: plan.scenario == Scenario::Close,
        headers: Vec::new(),
        rate: None,
        timeout: format!("{}", plan.timeout.as_secs_f64()),
        size: matches!(plan.service, Service::Echo | Service::Relay).then(|| plan.size.to_string()),
        json: true,
        fail_on_errors: false,
        method: None,
        body: None,
        params: is_rpc.then(|| rpc_params(plan)),
        framing: None,
    };
    let mut cfg = bench::configure(&args)
        .map_err(|e| anyhow::anyhow!("model {}: {e}{}", model.name(), srv.last_words()))?;
    cfg.abort = Some(Arc::clone(interrupted));
    // Spinning pays off only on a core of the client's own; unpinned, it would take CPU
    // from servers that can use every core.
    if plan.client_cpus.is_none() {
        cfg.spin = Duration::ZERO;
    }
    if !plan.warmup.is_zero() {
        cfg.stop = Stop::After(plan.warmup);
        bench::measure(&cfg)?;
    }
    let idle = if plan.scenario == Scenario::Idle {
        // Idle *keep-alive* clients: each has made one request and then gone quiet (a
        // connection that never sent anything is not even handed to the server while the
        // listener defers accepts, so it would cost nothing to hold).
        let hello: &[u8] = match plan.service {
            Service::Http => b"GET /index.html HTTP/1.1\r\nHost: plumb-compare\r\n\r\n",
            Service::Echo | Service::Relay => b"x",
            Service::Rpc => b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"id\":1}\n",
        };
        open_idle(&srv.addr, plan.idle, hello)
    } else {
        Vec::new()
    };
    cfg.stop = Stop::After(plan.duration);
    let pid = srv.pid();
    let cpu0 = server::tree_cpu_seconds(pid);
    let wall0 = std::time::Instant::now();
    let sampler = RssSampler::start(pid, Duration::from_millis(100));
    let report = bench::measure(&cfg)?;
    let peak_rss_kib = sampler.finish();
    let cpu = server::tree_cpu_seconds(pid) - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    let idle_connections = idle.len();
    drop(idle);
    srv.stop();
    Ok(Run {
        round,
        model: model.name().to_string(),
        report,
        server_cpu_pct: if wall > 0.0 { cpu / wall * 100.0 } else { 0.0 },
        peak_rss_kib,
        idle_connections,
    })
}

/// Opens up to `n` idle connections, each sending `hello` (one request; its answer is left
/// unread) and then held, silent, for the measured run; stops early (and says so) when the
/// server or the descriptor limit refuses more.
fn open_idle(addr: &str, n: usize, hello: &[u8]) -> Vec<Stream> {
    let mut out = Vec::with_capacity(n);
    let addr = match Addr::parse(addr, None) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("plumb: no idle connections opened: {addr}: {e}");
            return out;
        }
    };
    for _ in 0..n {
        let c = Stream::connect(&addr, Some(Duration::from_secs(1))).and_then(|mut c| {
            c.write_all(hello)?;
            Ok(c)
        });
        match c {
            Ok(c) => out.push(c),
            Err(e) => {
                eprintln!(
                    "plumb: only {} of {n} idle connections opened: {e}",
                    out.len()
                );
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        let cases: &[(&str, Option<Vec<usize>>)] = &[
            ("0", Some(vec![0])),
            ("0,2", Some(vec![0, 2])),
            ("0-3", Some(vec![0, 1, 2, 3])),
            ("0-1,4", Some(vec![0, 1, 4])),
            ("3-1", None),
            ("x", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_cpus(s).ok().as_ref(), want.as_ref(), "{s}");
        }
    }

    #[test]
    fn model_order_rotates_every_round() {
        let models = ["a", "b", "c"];
        assert_eq!(rotated(&models, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&models, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&models, 5), ["c", "a", "b"]);
    }
}
