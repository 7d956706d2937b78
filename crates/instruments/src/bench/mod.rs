//! `plumb bench TARGET`: a load generator for HTTP/1.1 and echo servers, as fast as wrk and
//! as honest as wrk2 — requests/s, bytes/s, latency percentiles from an HdrHistogram, status
//! codes and every error by kind; `--rate` for constant throughput with coordinated-omission
//! corrected latency. A run that was answered nothing exits 1 (and `--fail-on-errors` makes
//! any error do so); Ctrl-C prints what was measured so far.
//!
//! This file owns the command line and the output; [`target`] parses and checks the target,
//! [`engine`] runs the event loops, [`response`] frames responses, [`report`] formats.

pub mod engine;
pub mod report;
pub mod response;
pub mod target;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use engine::{Config, Errors, Stop, Totals};
use plumb::usage::usage;
use plumb_proto::framing::Framing;
pub use report::{Latency, Report, RunShape};
use target::{ProtocolSpec, TargetSpec};

/// Options of `plumb bench`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  plumb bench http://127.0.0.1:8080/index.html -c 64 -d 10\n  plumb bench http://127.0.0.1:8080/ -c 16 --rate 20000 -d 30s --json\n  plumb bench echo://127.0.0.1:7007 --size 1024 -n 100000\n  plumb bench unix:/tmp/echo.sock --pipeline 16\n  plumb bench http+unix:/run/app.sock:/health --close\n  plumb bench rpc://127.0.0.1:7070 --params '{\"name\":\"plumb\"}' --pipeline 8\n  plumb bench rpc+unix:/tmp/rpc.sock -m t --framing lsp\n  plumb bench http://127.0.0.1:8545/ --body call.json -H 'Content-Type: application/json'"
)]
pub struct Args {
    /// http://HOST:PORT/PATH (also http://[::1]:PORT/), http+unix:/SOCKET[:/PATH],
    /// echo://HOST:PORT or unix:/PATH (echo), rpc://HOST:PORT or rpc+unix:/PATH (JSON-RPC).
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Open connections.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 64)]
    pub connections: usize,
    /// Event-loop threads (each owns a share of the connections).
    #[arg(short = 't', long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// How long to measure: 10, 10s, 500ms, 2m (default 10s unless -n is given).
    #[arg(short = 'd', long, value_name = "TIME", conflicts_with = "requests")]
    pub duration: Option<String>,
    /// Stop after this many requests instead of after a duration.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Load applied before measuring starts (not counted): 1s, 500ms.
    #[arg(long, value_name = "TIME", default_value = "0")]
    pub warmup: String,
    /// Requests sent back to back on a connection before waiting for their responses.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub pipeline: usize,
    /// A new connection for every request (latency then includes the connect).
    #[arg(long)]
    pub close: bool,
    /// Extra request header, 'Name: value' (repeatable; replaces a default of the same name).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Constant throughput in requests/s over all connections; latency is measured from
    /// each request's scheduled send time (coordinated omission corrected, like wrk2).
    #[arg(long, value_name = "REQ/S")]
    pub rate: Option<f64>,
    /// A request unanswered this long is a timeout and its connection is replaced.
    #[arg(long, value_name = "TIME", default_value = "5s")]
    pub timeout: String,
    /// Bytes per echo message (echo targets): 100, 4k, 1KiB, 1M, 1MiB (K = KiB = 1024;
    /// KB = 1000) [default: 64].
    #[arg(long, value_name = "BYTES")]
    pub size: Option<String>,
    /// Print one JSON document instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// The HTTP method of every request (http targets; default GET, or POST with --body),
    /// or the JSON-RPC method of every call (rpc targets; default rpc.echo).
    #[arg(short = 'm', long, value_name = "METHOD")]
    pub method: Option<String>,
    /// A file whose bytes are the body of every request, sent with its Content-Length
    /// (http targets; `-` reads standard input), e.g. a JSON-RPC call for a JSON-RPC-over-HTTP
    /// server with -H 'Content-Type: application/json'.
    #[arg(long, value_name = "FILE")]
    pub body: Option<std::path::PathBuf>,
    /// Exit 1 when any request failed or got a 4xx/5xx or JSON-RPC error answer, or any connection starved
    /// (for CI); without it only a run in which nothing was answered exits 1.
    #[arg(long)]
    pub fail_on_errors: bool,
    /// The params of every call (rpc targets): a JSON array or object [default: none].
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// How rpc messages are delimited: ndjson (one per line), lsp (Content-Length headers),
    /// len32 (4-byte big-endian length) or netstring [default: ndjson].
    #[arg(long, value_name = "FRAMING")]
    pub framing: Option<Framing>,
}

/// The JSON-RPC method called when no -m is given.
pub const DEFAULT_RPC_METHOD: &str = "rpc.echo";

/// Default echo message size.
pub const DEFAULT_ECHO_SIZE: usize = 64;
/// Largest echo message accepted.
pub const MAX_ECHO_SIZE: usize = 64 << 20;

/// Parses a time: plain seconds (`2.5`) or a number with `ms`, `s` or `m`.
///
/// # Errors
/// Anything else, or a negative or non-finite value.
pub fn parse_time(name: &str, s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    // At most 30 days: deadlines are computed as `Instant + Duration`.
    num.trim()
        .parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v * scale).ok())
        .filter(|d| d.as_secs() <= 30 * 24 * 3600)
        .ok_or_else(|| {
            format!(
                "{name} must be a time such as 10, 10s, 500ms or 2m (at most 30 days), not '{s}'"
            )
        })
}

/// Parses a size in bytes, the one way every size option of plumb reads it: a whole number
/// with an optional unit, `100`, `100B`, `4k`, `1K`, `1KiB`, `1M`, `1MiB`, `1G`, `1GiB`
/// (binary: K, M and G are 1024-based whatever their case, as in `dd` and `ls`), or `KB`,
/// `MB`, `GB` (decimal, 1000-based); a space may stand before the unit. The value must be
/// from 1 to `max`.
///
/// # Errors
/// Anything else, zero, or more than `max`, as one line naming the option.
pub fn parse_size(name: &str, s: &str, max: usize) -> Result<usize, String> {
    let bad = || {
        format!(
            "{name} must be a size from 1 to {max} bytes such as 100, 4k, 1KiB or 1MiB, not '{s}'"
        )
    };
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: usize = num.parse().map_err(|_| bad())?;
    let unit = unit.trim_start();
    // "KiB", "Ki", "K" and "k" are the same unit; "KB" and "kB" are the decimal one.
    let (prefix, rest) = unit.split_at(unit.chars().next().map_or(0, char::len_utf8));
    let power = match prefix.to_ascii_lowercase().as_str() {
        "" => 0,
        "b" if rest.is_empty() => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        _ => return Err(bad()),
    };
    let base: usize = match rest {
        _ if power == 0 => 1,
        "" | "i" | "iB" | "ib" => 1024,
        "B" => 1000,
        _ => return Err(bad()),
    };
    let bytes = (0..power)
        .try_fold(n, |v, _| v.checked_mul(base))
        .ok_or_else(bad)?;
    if bytes == 0 || bytes > max {
        return Err(bad());
    }
    Ok(bytes)
}

/// Checks the options and builds a run configuration, including the pre-flight check of the
/// target.
///
/// # Errors
/// Usage errors (exit 2) for bad options; a runtime error (exit 1) for a target that cannot
/// be reached or speaks another protocol.
pub fn configure(args: &Args) -> anyhow::Result<Config> {
    let spec = TargetSpec::parse(&args.target).map_err(usage)?;
    let positive = |name: &str, v: usize| {
        if v == 0 {
            Err(usage(format!("{name} must be at least 1")))
        } else {
            Ok(())
        }
    };
    positive("--connections", args.connections)?;
    positive("--threads", args.threads)?;
    positive("--pipeline", args.pipeline)?;
    if args.threads > args.connections {
        return Err(usage(format!(
            "--threads ({}) cannot exceed --connections ({})",
            args.threads, args.connections
        )));
    }
    if args.close && args.pipeline > 1 {
        return Err(usage(
            "--pipeline needs keep-alive connections, not --close",
        ));
    }
    let stop = match (args.requests, &args.duration) {
        (Some(0), _) => return Err(usage("--requests must be at least 1")),
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => {
            let d = parse_time("--duration", d).map_err(usage)?;
            if d.is_zero() {
                return Err(usage("--duration must be more than 0"));
            }
            Stop::After(d)
        }
        (None, None) => Stop::After(Duration::from_secs(10)),
    };
    let warmup = parse_time("--warmup", &args.warmup).map_err(usage)?;
    let timeout = parse_time("--timeout", &args.timeout).map_err(usage)?;
    if timeout.is_zero() {
        return Err(usage("--timeout must be more than 0"));
    }
    if let Some(r) = args.rate
        && !(r.is_finite() && (0.01..=1e9).contains(&r))
    {
        return Err(usage(format!(
            "--rate must be from 0.01 to 1e9 requests/s, not {r}"
        )));
    }
    let is_rpc = spec.protocol == ProtocolSpec::Rpc;
    if !is_rpc && (args.params.is_some() || args.framing.is_some()) {
        return Err(usage("--params and --framing apply to rpc targets only"));
    }
    let request: Arc<[u8]> = match &spec.protocol {
        ProtocolSpec::Rpc => {
            if args.size.is_some() || args.body.is_some() || !args.headers.is_empty() {
                return Err(usage(
                    "--size, --body and -H apply to echo and http targets, not rpc (use --params)",
                ));
            }
            let method = args.method.as_deref().unwrap_or(DEFAULT_RPC_METHOD);
            target::build_rpc_request(
                args.framing.unwrap_or_default(),
                method,
                args.params.as_deref(),
            )
            .map_err(usage)?
            .into()
        }
        ProtocolSpec::Http { path, host } => {
            if args.size.is_some() {
                return Err(usage("--size applies to echo targets only"));
            }
            let body = args.body.as_deref().map(read_body).transpose()?;
            let method = match (&args.method, &body) {
                (Some(m), _) => m.as_str(),
                (None, Some(_)) => "POST",
                (None, None) => "GET",
            };
            target::build_http_request(
                method,
                path,
                host,
                &args.headers,
                args.close,
                body.as_deref(),
            )
            .map_err(usage)?
            .into()
        }
        ProtocolSpec::Echo => {
            if !args.headers.is_empty() {
                return Err(usage("-H/--header applies to http targets only"));
            }
            if args.method.is_some() || args.body.is_some() {
                return Err(usage(
                    "-m/--method and --body apply to http and rpc targets",
                ));
            }
            let size = match &args.size {
                Some(s) => parse_size("--size", s, MAX_ECHO_SIZE).map_err(usage)?,
                None => DEFAULT_ECHO_SIZE,
            };
            target::echo_message(size)
        }
    };
    // Every connection needs a descriptor; raise the soft limit as far as allowed.
    let _ = plumb_sys::raise_nofile_limit();
    let rpc = is_rpc.then(|| args.framing.unwrap_or_default());
    let target = target::preflight(&spec, request, rpc, &args.target, timeout)?;
    Ok(Config {
        target,
        connections: args.connections,
        threads: args.threads,
        stop,
        warmup,
        pipeline: args.pipeline,
        close: args.close,
        rate: args.rate,
        timeout,
        abort: None,
        spin: engine::SPIN,
    })
}

/// Largest `--body` accepted: every connection's pipeline batch holds copies of it.
pub const MAX_BODY: u64 = 16 << 20;

/// Reads the `--body` file (`-`: standard input), at most [`MAX_BODY`] bytes.
///
/// # Errors
/// A file that cannot be read or is larger than that.
fn read_body(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let shown = path.display();
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_BODY + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_BODY + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => target::describe(&e),
        };
        usage(format!("--body {shown}: {why}"))
    })?;
    if bytes.len() as u64 > MAX_BODY {
        return Err(usage(format!(
            "--body {shown} is larger than {} MiB",
            MAX_BODY >> 20
        )));
    }
    Ok(bytes)
}

/// Runs a configured bench without any display and returns its report (used by
/// `plumb compare`).
///
/// # Errors
/// Setup failures of the event loops.
pub fn measure(cfg: &Config) -> anyhow::Result<Report> {
    let totals = engine::run(cfg, |_| {})?;
    Ok(Report::new(shape(cfg), &totals))
}

fn shape(cfg: &Config) -> RunShape {
    RunShape {
        target: cfg.target.shown.clone(),
        connections: cfg.connections,
        threads: cfg.threads.min(cfg.connections),
        pipeline: cfg.pipeline,
        close: cfg.close,
        rate: cfg.rate,
    }
}

/// Runs `plumb bench`.
///
/// # Errors
/// Usage errors (exit 2) and unreachable or wrong-protocol targets (exit 1).
pub fn run(args: &Args) -> anyhow::Result<i32> {
    let mut cfg = configure(args)?;
    // Ctrl-C (or SIGTERM) ends the run early and the figures so far are printed, as wrk and
    // oha do; a second Ctrl-C exits at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&interrupted))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&interrupted)))
            .map_err(|e| anyhow::anyhow!("cannot install a signal handler: {e}"))?;
    }
    cfg.abort = Some(Arc::clone(&interrupted));
    let bar = std::io::stderr().is_terminal().then(|| progress_bar(&cfg));
    let totals = engine::run(&cfg, |p| {
        if let Some(bar) = &bar {
            match cfg.stop {
                Stop::After(d) => {
                    let total = cfg.warmup + d;
                    bar.set_position(p.elapsed.min(total).as_millis() as u64);
                }
                Stop::Requests(_) => bar.set_position(p.requests),
            }
            bar.set_message(format!("{} requests", p.requests));
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = Report::new(shape(&cfg), &totals);
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else {
        report.to_text()
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // Piped into `head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.map_err(|e| anyhow::anyhow!("cannot write the report: {e}"))?,
    }
    verdict(
        &report,
        args.fail_on_errors,
        interrupted.load(Ordering::Relaxed),
    )
}

/// The exit status of a finished run, with the one line that explains a failure: 130 after
/// Ctrl-C (the figures are partial); 1 when nothing was answered, for no response means no
/// measurement, not a fast server; 1 with `--fail-on-errors` when anything went wrong.
///
/// # Errors
/// The run measured nothing, or (with `fail_on_errors`) saw an error or a starved connection.
fn verdict(report: &Report, fail_on_errors: bool, interrupted: bool) -> anyhow::Result<i32> {
    let target = &report.shape.target;
    if interrupted {
        eprintln!(
            "plumb: interrupted; the figures above cover the {:.2} s measured until then",
            report.duration_s
        );
        return Ok(130);
    }
    let errors = report.errors.total();
    let what = || {
        let mut kinds: Vec<String> = report
            .errors
            .by_kind()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        if report.starved > 0 {
            kinds.push(format!(
                "{} of {} connections starved",
                report.starved, report.shape.connections
            ));
        }
        if kinds.is_empty() {
            "no errors".to_string()
        } else {
            kinds.join(", ")
        }
    };
    if report.requests == 0 {
        anyhow::bail!(
            "{target} answered none of the requests in {:.2} s ({}): nothing was measured",
            report.duration_s,
            what()
        );
    }
    if fail_on_errors && (errors > 0 || report.starved > 0) {
        anyhow::bail!("{target}: {} (--fail-on-errors)", what());
    }
    Ok(0)
}

fn progress_bar(cfg: &Config) -> indicatif::ProgressBar {
    let (len, template) = match cfg.stop {
        Stop::After(d) => (
            (cfg.warmup + d).as_millis() as u64,
            "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
        ),
        Stop::Requests(n) => (n, "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len}"),
    };
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_unit() {
        let cases = [
            ("10", Some(10_000)),
            ("10s", Some(10_000)),
            ("500ms", Some(500)),
            ("2m", Some(120_000)),
            ("0.25", Some(250)),
            ("-1", None),
            ("abc", None),
            ("5h", None),
            ("1e12", None),
        ];
        for (s, want) in cases {
            assert_eq!(
                parse_time("-d", s).ok().map(|d| d.as_millis() as u64),
                want,
                "{s}"
            );
        }
    }

    #[test]
    fn sizes_parse_the_same_way_everywhere() {
        let cases: &[(&str, Option<usize>)] = &[
            ("100", Some(100)),
            ("100B", Some(100)),
            ("1K", Some(1024)),
            ("4k", Some(4096)),
            ("1KiB", Some(1024)),
            ("1kib", Some(1024)),
            ("4 KiB", Some(4096)),
            ("2KB", Some(2000)),
            ("2kB", Some(2000)),
            ("1M", Some(1 << 20)),
            ("1MiB", Some(1 << 20)),
            ("3MB", Some(3_000_000)),
            ("1G", Some(1 << 30)),
            ("1GiB", Some(1 << 30)),
            ("0", None),
            ("0KiB", None),
            ("", None),
            ("K", None),
            ("1.5K", None),
            ("-1", None),
            ("1T", None),
            ("1KiBs", None),
            ("1Bk", None),
            ("2G", None),
            ("99999999999999999999", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_size("--size", s, 1 << 30).ok(), *want, "{s:?}");
        }
        let e = parse_size("--size", "1x", 10).unwrap_err();
        assert!(
            e.starts_with("--size must be a size from 1 to 10 bytes"),
            "{e}"
        );
    }
}
