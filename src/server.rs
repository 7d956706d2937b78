//! The options every server shares and the one function that starts a server: bind every
//! `--listen` address, install the shutdown handlers, run the chosen model.

use std::sync::Arc;

use crate::models::{self, Model};
use crate::net::{Addr, BindOptions, LISTENING_PREFIX, Listener};
use crate::report::{LogConfig, LogTarget};
use crate::services::Service;
use crate::shutdown::Shutdown;
use crate::usage::{seconds, usage};

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
