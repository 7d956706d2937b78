//! `plumb rpc serve`: a JSON-RPC 2.0 server whose methods are built-ins (`rpc.echo`,
//! `rpc.discover`) and commands (`--method NAME=COMMAND`, each call one `/bin/sh -c`), under
//! every model of the shared server machinery, or on its own stdin/stdout (`--listen stdio`).

use plumb_proto::framing::Framing;

use crate::server::ServerArgs;
use crate::usage::usage;

/// The default `--listen` of `plumb rpc serve`.
pub const RPC_LISTEN: &str = "127.0.0.1:7070";

/// Options of `plumb rpc serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    plumb rpc serve --method date='date -u +%s' --method add='jq \"add\"'\n  \
    plumb rpc serve --listen unix:/tmp/rpc.sock --framing lsp --model thread\n  \
    plumb rpc serve --listen stdio   (one session on stdin/stdout, as an editor's child)")]
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
    /// Most commands running at once in the whole server; further calls wait their turn.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_calls: usize,
    /// Largest message in bytes; a larger frame is refused (error, then close).
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub max_frame: usize,
    /// Most calls in one batch; a larger batch is one -32600 error.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_batch: usize,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs `plumb rpc serve`.
///
/// # Errors
/// Usage errors (bad method definitions, numbers, addresses) and bind failures.
pub fn run(args: &ServeArgs) -> anyhow::Result<i32> {
    let _ = args;
    Err(usage("plumb rpc serve is being built (issue 12)"))
}
