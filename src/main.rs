//! The `plumb` binary: parse the command line, run the subcommand, and turn any error into
//! one line on stderr and an exit code (2 for usage errors, 1 for runtime errors).
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use cli::{Cli, Command, RpcCommand};
use plumb::net::Addr;
use plumb::services::echo::EchoService;
use plumb::services::exec::{ExecPlan, ExecService};
use plumb::services::relay::RelayService;
use plumb::usage::UsageError;
use plumb_proto::relay::OnConnectFailure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // --help and --version print to stdout and succeed; real errors exit 2, in one
            // line like every other error (clap's usage block and tips are left out).
            let code = e.exit_code();
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                }
                _ => {
                    let text = e.render().to_string();
                    let first = text.lines().next().unwrap_or("invalid command line");
                    let first = first.strip_prefix("error: ").unwrap_or(first);
                    eprintln!("plumb: {first} (see --help)");
                }
            }
            return ExitCode::from(code as u8);
        }
    };
    match run(cli.command) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("plumb: {}", one_line(&e));
            ExitCode::from(if e.downcast_ref::<UsageError>().is_some() {
                2
            } else {
                1
            })
        }
    }
}

fn run(cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Serve(a) => plumb::serve::run(&a),
        Command::Echo(a) => {
            let echo = Arc::new(EchoService);
            plumb::server::run_server(&a.server, plumb::server::ECHO_LISTEN, echo, None, None)
        }
        Command::Exec(a) => plumb::exec::run(&a),
        Command::Relay(a) if a.to.starts_with("exec:") => {
            let command = &a.to["exec:".len()..];
            if command.trim().is_empty() || command.contains('\0') {
                return Err(plumb::usage::usage(
                    "--to exec: needs a command, as in exec:'cat -n'",
                ));
            }
            let (kill_after, _) = plumb::exec::limits(a.kill_after, None)?;
            let plan = ExecPlan {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), command.to_string()],
                env: Vec::new(),
                clear_env: false,
                kill_after,
                timeout: None,
                max_per_ip: None,
            };
            let banner = |at: &str| format!("relaying {at} to a new `{command}` per connection");
            plumb::server::run_server(
                &a.server,
                plumb::server::RELAY_LISTEN,
                Arc::new(ExecService::new(plan, false)),
                None,
                Some(&banner),
            )
        }
        Command::Relay(a) => {
            let upstream =
                Addr::parse(&a.to, None).map_err(|e| plumb::usage::usage(format!("--to: {e}")))?;
            let upstream_shown = upstream.to_string();
            let service = RelayService {
                upstream,
                on_failure: OnConnectFailure::Close,
                splice: !a.no_splice,
            };
            let banner = |at: &str| format!("relaying {at} to {upstream_shown}");
            plumb::server::run_server(
                &a.server,
                plumb::server::RELAY_LISTEN,
                Arc::new(service),
                None,
                Some(&banner),
            )
        }
        Command::Rpc(a) => match a.cmd {
            RpcCommand::Serve(a) => plumb::rpc::serve::run(&a),
            RpcCommand::Call(a) => plumb::rpc::call::run(&a),
        },
        Command::Connect(a) => plumb::connect::run(&a),
        Command::Ipc(a) => plumb_instruments::ipc::run(&a),
        Command::Bench(a) => plumb_instruments::bench::run(&a),
        Command::Compare(a) => plumb_instruments::compare::run(&a),
    }
}

/// The error and its causes on one line: "cannot connect: 127.0.0.1:1: connection refused".
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
