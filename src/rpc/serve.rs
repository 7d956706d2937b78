//! `plumb rpc serve`: a JSON-RPC 2.0 server whose methods are built-ins (`rpc.echo`,
//! `rpc.discover`) and commands (`--method NAME=COMMAND`, each call one `/bin/sh -c`), under
//! every model of the shared server machinery, or on its own stdin/stdout (`--listen stdio`).
//!
//! stdin/stdout are two descriptors where the driver expects one socket per client, so the
//! session is driven over one end of a UNIX socket pair by the blocking waiter, and two
//! threads copy stdin into the other end and the other end out to stdout. That costs a copy
//! per message and leaves the driver untouched.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use plumb_proto::framing::Framing;
use plumb_proto::jsonrpc::session::{CommandMethod, Config};

use crate::drive::{Context, blocking};
use crate::net::Stream;
use crate::report::{Collector, CollectorThread, LogConfig, LogTarget};
use crate::server::{self, ServerArgs};
use crate::services::rpc::RpcService;
use crate::shutdown::Shutdown;
use crate::usage::{seconds, usage};

/// The default `--listen` of `plumb rpc serve`.
pub const RPC_LISTEN: &str = "127.0.0.1:7070";

/// The `--listen` value that serves one session on stdin/stdout.
pub const STDIO: &str = "stdio";

/// Smallest `--max-frame`: room for an error response.
const MIN_FRAME: usize = 256;

/// Options of `plumb rpc serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    plumb rpc serve --method date='date -u +%s' --method add='jq add'\n  \
    plumb rpc serve --listen unix:/tmp/rpc.sock --framing lsp --model thread\n  \
    plumb rpc serve --listen stdio   (one session on stdin/stdout, as an editor's child)\n\n\
    A command gets the call's params as JSON on stdin (nothing when there are none) and\n\
    PLUMB_RPC_METHOD, PLUMB_RPC_ID (the id as JSON; unset for a notification) and\n\
    PLUMB_RPC_PEER in its environment. Its stdout is the result: one JSON value as is,\n\
    anything else as a string (one trailing newline removed). A non-zero exit is error\n\
    -32000 with data {\"exit\": N, \"stderr\": LAST 4 KiB} (or \"signal\"); past\n\
    --call-timeout its process group is killed (-32001); stdout past --max-frame is\n\
    -32002; a client that closes mid-call gets -32003 and its commands are killed.")]
pub struct ServeArgs {
    /// How messages are delimited: ndjson (one per line), lsp (Content-Length headers),
    /// len32 (4-byte big-endian length) or netstring.
    #[arg(long, value_name = "FRAMING", default_value_t = Framing::Ndjson)]
    pub framing: Framing,
    /// A method NAME whose every call runs COMMAND with /bin/sh -c, params as JSON on its
    /// stdin, its stdout the result (repeatable).
    #[arg(long = "method", value_name = "NAME=COMMAND")]
    pub methods: Vec<String>,
    /// Seconds a command may run; then its process group is killed and the call gets -32001.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub call_timeout: f64,
    /// Most commands running at once in the server (per process under fork, fork-wait and
    /// prefork); further calls wait their turn.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_calls: usize,
    /// Largest message in bytes, and largest command output; a larger frame is refused
    /// (error with id null, then close).
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub max_frame: usize,
    /// Most calls in one batch; a larger batch is one -32600 error.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_batch: usize,
    /// Access log, one line per call (peer, method, id, outcome, duration): a file, or -
    /// for stdout. Default: stderr. -q turns it off.
    #[arg(long, value_name = "FILE|-")]
    pub access_log: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `NAME=COMMAND`.
fn parse_method(s: &str) -> anyhow::Result<CommandMethod> {
    let Some((name, command)) = s.split_once('=') else {
        return Err(usage(format!(
            "--method {s}: expected NAME=COMMAND, such as --method date='date -u'"
        )));
    };
    Ok(CommandMethod {
        name: name.to_string(),
        command: command.to_string(),
    })
}

/// Runs `plumb rpc serve`.
///
/// # Errors
/// Usage errors (bad method definitions, numbers, addresses) and bind failures.
pub fn run(args: &ServeArgs) -> anyhow::Result<i32> {
    let methods = args
        .methods
        .iter()
        .map(|m| parse_method(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let call_timeout = seconds("--call-timeout", args.call_timeout)?;
    if call_timeout.is_zero() {
        return Err(usage("--call-timeout must be more than 0 seconds"));
    }
    for (name, v, least) in [
        ("--max-calls", args.max_calls, 1),
        ("--max-batch", args.max_batch, 1),
        ("--max-frame", args.max_frame, MIN_FRAME),
    ] {
        if v < least {
            return Err(usage(format!("{name} must be at least {least}, not {v}")));
        }
    }
    if args.max_frame > u32::MAX as usize {
        return Err(usage(format!(
            "--max-frame must be at most {} (len32's limit)",
            u32::MAX
        )));
    }
    let stdio = args.server.listen.iter().any(|l| l == STDIO);
    if stdio && args.server.listen.len() > 1 {
        return Err(usage(
            "--listen stdio serves one session on stdin/stdout and cannot be combined with other addresses",
        ));
    }
    let access = LogTarget::access(args.access_log.as_deref(), args.server.quiet);
    let mut config = Config::new(
        args.framing,
        args.max_frame,
        args.max_batch,
        call_timeout,
        methods,
        args.max_calls,
    )
    .map_err(|e| usage(format!("--method {e}")))?;
    config.log = access.is_some();
    config.finish_on_eof = stdio;
    let names: Vec<String> = config.methods.iter().map(|m| m.name.clone()).collect();
    let service = Arc::new(RpcService {
        config: Arc::new(config),
    });
    if stdio {
        return run_stdio(args, service, access);
    }
    let framing = args.framing;
    let banner = |at: &str| {
        let methods = if names.is_empty() {
            "built-in methods only".to_string()
        } else {
            format!("methods {}", names.join(", "))
        };
        format!("JSON-RPC ({framing}) on {at}: {methods}")
    };
    server::run_server(&args.server, RPC_LISTEN, service, access, Some(&banner))
}

/// Serves one session on stdin/stdout until stdin's EOF (and the calls in flight) or a
/// signal (then drained like any server).
fn run_stdio(
    args: &ServeArgs,
    service: Arc<RpcService>,
    access: Option<LogTarget>,
) -> anyhow::Result<i32> {
    let connections = args.server.log.as_deref().map(LogTarget::parse);
    for target in [&connections, &access].into_iter().flatten() {
        if matches!(target, LogTarget::Stdout) {
            return Err(usage(
                "--listen stdio: stdout carries the messages; log to a file or stderr",
            ));
        }
        target.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let write_timeout = seconds("--write-timeout", args.server.write_timeout)?;
    let shutdown = Shutdown::install(seconds("--grace", args.server.grace)?)?;
    shutdown.set_announce(!args.server.quiet);
    let logs = LogConfig {
        connections,
        requests: access.is_some(),
        access,
        quiet: true,
    };
    let (reporter, collector) = CollectorThread::spawn(Collector::new(&logs)?);
    let (ours, theirs) = UnixStream::pair()?;
    let from_stdin = theirs.try_clone()?;
    std::thread::Builder::new()
        .name("plumb-stdin".into())
        .spawn(move || copy_stdin(from_stdin))?;
    let to_stdout = std::thread::Builder::new()
        .name("plumb-stdout".into())
        .spawn(move || copy_to_stdout(theirs))?;
    let watcher = shutdown.clone();
    std::thread::Builder::new()
        .name("plumb-signals".into())
        .spawn(move || watch_signals(&watcher))?;
    // stdin/stdout carry no TLS.
    let no_tls = crate::tls::Listeners::default();
    let ctx = Context {
        tls: &no_tls,
        service: &*service,
        reporter: &reporter,
        drain_fd: shutdown.drain_fd(),
        hard_fd: shutdown.hard_fd(),
        write_timeout,
        by: std::process::id(),
    };
    blocking::serve_connection(Stream::Unix(ours), STDIO, &ctx);
    // Our end is closed now: the copier sends what is left to stdout and stops.
    let _ = to_stdout.join();
    drop(reporter);
    collector.join();
    Ok(0)
}

/// stdin into the socket; its EOF becomes the session's (a half-close).
fn copy_stdin(mut to: UnixStream) {
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return; // the session is over
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// The socket out to stdout, flushed per read (stdout is line-buffered, and LSP frames do
/// not end with a newline). When stdout is gone the socket is shut down, so the session
/// ends (and its commands are killed) instead of writing on for nobody.
fn copy_to_stdout(mut from: UnixStream) {
    let mut stdout = io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if stdout
            .write_all(&buf[..n])
            .and_then(|()| stdout.flush())
            .is_err()
        {
            let _ = from.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// SIGINT/SIGTERM: drain, and after the grace period (or a second signal) stop hard.
fn watch_signals(shutdown: &Shutdown) {
    let wait = |d: Option<Duration>| {
        let mut fds = [plumb_sys::PollFd::new(
            shutdown.wake_fd(),
            plumb_sys::events::READ,
        )];
        let _ = plumb_sys::poll(&mut fds, d);
    };
    loop {
        wait(None);
        if shutdown.check() {
            break;
        }
    }
    let hard_at = shutdown.begin_drain();
    loop {
        let left = hard_at.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || shutdown.stop_again() {
            break;
        }
        wait(Some(left));
    }
    shutdown.hard_stop();
}
