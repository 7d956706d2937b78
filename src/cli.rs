//! The command line: subcommands, the options every server shares, and the mapping of errors
//! to one line on stderr with exit code 2 (usage) or 1 (runtime).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::models::{self, Model};
use crate::net::{Addr, BindOptions, LISTENING_PREFIX, Listener};
use crate::report::{LogConfig, LogTarget};
use crate::services::Service;
use crate::shutdown::Shutdown;

#[derive(Debug, Parser)]
#[command(
    name = "plumb",
    args_override_self = true,
    version,
    about = "Pipes, sockets and servers: echo, relay, connect and a static HTTP server under every concurrency model, plus the instruments to measure them.",
    after_help = "Examples:\n  plumb echo --listen 127.0.0.1:7007 --model fork\n  plumb connect 127.0.0.1:7007 < file\n  plumb relay --listen :8081 --to unix:/run/app.sock\n\nRun 'plumb COMMAND --help' for the options of a command."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory over HTTP/1.1 (static files, listings, ranges), or proxy with --proxy.
    Serve(crate::serve::Args),
    /// Echo every byte back (TCP or UNIX socket).
    #[command(
        after_help = "Examples:\n  plumb echo --listen 127.0.0.1:7007\n  plumb echo --listen '[::1]:7007' --listen unix:/tmp/echo.sock --model prefork --workers 4\n  plumb echo --listen :0 --model pool --threads 8 --log -"
    )]
    Echo(EchoArgs),
    /// Relay bytes between each client and a new connection to an upstream (a proxy).
    #[command(
        after_help = "Examples:\n  plumb relay --listen 127.0.0.1:8081 --to 127.0.0.1:8080\n  plumb relay --listen :8081 --to unix:/run/app.sock   (expose a UNIX socket on TCP)"
    )]
    Relay(RelayArgs),
    /// Connect stdin/stdout to a socket (netcat-style client).
    #[command(
        after_help = "Examples:\n  echo hello | plumb connect 127.0.0.1:7007\n  plumb connect unix:/tmp/echo.sock < big.bin > copy.bin"
    )]
    Connect(crate::connect::Args),
    /// Measure pipes, FIFOs, sockets and files; fork and thread costs.
    Ipc(crate::ipc::Args),
    /// Load-generate against an HTTP or echo server.
    Bench(crate::bench::Args),
    /// Run one service under every model, bench each, print a table and write a chart.
    Compare(crate::compare::Args),
}

/// Options every server shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on (repeatable): HOST:PORT, [V6]:PORT, :PORT, unix:/PATH. Port 0
    /// picks a free port; the real one is printed.
    #[arg(short, long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Concurrency model.
    #[arg(short, long, value_enum, default_value_t = Model::Event)]
    pub model: Model,
    /// Worker processes (prefork) or event loops (event).
    #[arg(long, value_name = "N", default_value_t = default_workers())]
    pub workers: usize,
    /// Worker threads (pool).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub threads: usize,
    /// Accepted connections waiting for a pool thread; when full, clients wait in the
    /// kernel backlog.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub queue: usize,
    /// Most concurrent connections (thread model).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds open connections may run on after SIGINT/SIGTERM before they are closed.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub grace: f64,
    /// Seconds a write may make no progress (peer not reading) before the connection ends.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub write_timeout: f64,
    /// Per-connection log (peer, bytes in/out, duration): a file, or - for stdout.
    #[arg(long, value_name = "FILE|-")]
    pub log: Option<String>,
    /// No summary line or per-connection error lines.
    #[arg(short, long)]
    pub quiet: bool,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The upstream each client is relayed to: HOST:PORT, [V6]:PORT or unix:/PATH.
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// An error the user caused on the command line: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Wraps any message as a usage error.
pub fn usage(e: impl fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

/// Validates a seconds option.
///
/// # Errors
/// Negative, NaN or absurdly large values.
pub fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| usage(format!("{name} must be a number of seconds >= 0, not {v}")))
}

/// Binds every `--listen` address (or `default` when none is given), installs the shutdown
/// handlers, runs the model and prints the listening lines.
///
/// # Errors
/// Usage errors (bad address or number) and runtime errors (bind failures).
pub fn run_server(
    args: &ServerArgs,
    default: &str,
    service: Arc<dyn Service>,
    access: Option<LogTarget>,
) -> anyhow::Result<i32> {
    let grace = seconds("--grace", args.grace)?;
    let write_timeout = seconds("--write-timeout", args.write_timeout)?;
    for (name, v) in [
        ("--workers", args.workers),
        ("--threads", args.threads),
        ("--max-connections", args.max_connections),
    ] {
        if v == 0 {
            return Err(usage(format!("{name} must be at least 1")));
        }
    }
    let addrs: Vec<Addr> = if args.listen.is_empty() {
        vec![default.to_string()]
    } else {
        args.listen.clone()
    }
    .iter()
    .map(|a| Addr::parse(a, None).map_err(usage))
    .collect::<anyhow::Result<_>>()?;
    let shutdown = Shutdown::install(grace)?;
    shutdown.set_announce(!args.quiet);
    let mut listeners = Vec::new();
    for a in &addrs {
        // The event model opens one more SO_REUSEPORT socket per extra loop.
        let opts = BindOptions {
            reuse_port: args.model == Model::Event,
        };
        let l =
            Listener::bind(a, opts).map_err(|e| anyhow::anyhow!("cannot listen on {a}: {e}"))?;
        if service.client_speaks_first() {
            l.defer_accept()
                .map_err(|e| anyhow::anyhow!("cannot set up the listener on {a}: {e}"))?;
        }
        listeners.push(l);
    }
    for l in &listeners {
        eprintln!(
            "{LISTENING_PREFIX}{} (model {})",
            l.local_addr(),
            args.model
        );
    }
    let server = models::Server {
        listeners,
        service,
        options: models::Options {
            workers: args.workers,
            threads: args.threads,
            queue: args.queue,
            max_connections: args.max_connections,
            write_timeout,
        },
        shutdown,
        logs: LogConfig {
            connections: args.log.as_deref().map(LogTarget::parse),
            access,
            quiet: args.quiet,
        },
    };
    models::run(args.model, &server)?;
    Ok(0)
}
