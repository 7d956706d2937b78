//! `plumb exec [OPTIONS] -- PROGRAM [ARGS...]`: a program per connection, as inetd and
//! tcpserver run them. Options become an [`ExecPlan`]; the service is
//! [`crate::services::exec`], the rest the shared server machinery of [`crate::server`].

use std::sync::Arc;
use std::time::Duration;

use crate::models::Model;
use crate::server::{self, ServerArgs};
use crate::services::exec::{ExecPlan, ExecService};
use crate::usage::{seconds, usage};

/// The default `--listen` of `plumb exec`.
pub const EXEC_LISTEN: &str = "127.0.0.1:7008";

/// Options of `plumb exec`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    plumb exec -- cat                                 an echo server on 127.0.0.1:7008\n  \
    plumb exec --listen :7000 -- sh -c 'echo hello $TCPREMOTEIP'\n  \
    plumb exec --listen unix:/tmp/id.sock -- sh -c 'echo uid $UNIXREMOTEUID'\n  \
    plumb exec --model fork --max-per-ip 4 --timeout 60 -- /usr/local/bin/handler\n\n\
    Under fork and fork-wait the program gets the socket itself as stdin and stdout (inetd);\n\
    under the other models it runs on pipes the server relays. Its stderr goes to the\n\
    server's stderr (or --log), each line prefixed with the peer and the pid.\n\
    Environment (tcp-environ): PROTO=TCP, TCPREMOTEIP, TCPREMOTEPORT, TCPLOCALIP,\n\
    TCPLOCALPORT; on UNIX sockets PROTO=UNIX, UNIXREMOTEPID, UNIXREMOTEUID, UNIXREMOTEGID.")]
pub struct Args {
    /// Set NAME=VALUE in the program's environment (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Start the program with no environment but the connection's variables and --env.
    #[arg(long)]
    pub clear_env: bool,
    /// Most connections at once from one IP address; more are closed at once (TCP only).
    #[arg(long, value_name = "N")]
    pub max_per_ip: Option<usize>,
    /// Most seconds a program may run; then its process group gets SIGTERM, and SIGKILL
    /// --kill-after seconds later.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Seconds a program may run on once the client is done (its stdin at EOF) before its
    /// process group gets SIGTERM; as long again before SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub kill_after: f64,
    #[command(flatten)]
    pub server: ServerArgs,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub command: Vec<String>,
}

/// Parses `NAME=VALUE`.
fn parse_env(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(usage(format!("--env wants NAME=VALUE, not {s:?}"))),
    }
}

/// The kill-after and timeout options, checked.
///
/// # Errors
/// Negative or absurd seconds, a zero timeout.
pub fn limits(
    kill_after: f64,
    timeout: Option<f64>,
) -> anyhow::Result<(Duration, Option<Duration>)> {
    let kill_after = seconds("--kill-after", kill_after)?;
    let timeout = match timeout {
        Some(t) => {
            let d = seconds("--timeout", t)?;
            if d.is_zero() {
                return Err(usage("--timeout must be more than 0 seconds"));
            }
            Some(d)
        }
        None => None,
    };
    Ok((kill_after, timeout))
}

/// Runs `plumb exec`.
///
/// # Errors
/// Usage errors (no program, bad options) and bind failures.
pub fn run(args: &Args) -> anyhow::Result<i32> {
    let Some((program, rest)) = args.command.split_first() else {
        return Err(usage("exec needs a program after --"));
    };
    if program.is_empty() || args.command.iter().any(|a| a.contains('\0')) {
        return Err(usage(
            "the program and its arguments must be non-empty text",
        ));
    }
    let env = args
        .env
        .iter()
        .map(|e| parse_env(e))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (kill_after, timeout) = limits(args.kill_after, args.timeout)?;
    if args.max_per_ip == Some(0) {
        return Err(usage("--max-per-ip must be at least 1"));
    }
    if args.max_per_ip.is_some() && args.server.model == Model::Prefork {
        return Err(usage(
            "--max-per-ip does not apply to --model prefork: each worker serves one \
             connection, and workers share no count (use --workers to cap connections)",
        ));
    }
    let plan = ExecPlan {
        program: program.clone(),
        args: rest.to_vec(),
        env,
        clear_env: args.clear_env,
        kill_after,
        timeout,
        max_per_ip: args.max_per_ip,
    };
    let shown = args.command.join(" ");
    let banner = |at: &str| format!("running {shown} per connection on {at}");
    server::run_server(
        &args.server,
        EXEC_LISTEN,
        Arc::new(ExecService::new(plan, true)),
        None,
        Some(&banner),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_options_parse() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), String::new()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }
}
