//! The `plumb` binary: parse the command line, run the subcommand, and turn any error into
//! one line on stderr and an exit code (2 for usage errors, 1 for runtime errors).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

mod cli;

use clap::Parser;
use cli::{Cli, Command};
use plumb::net::Addr;
use plumb::services::echo::EchoService;
use plumb::services::relay::RelayService;
use plumb::usage::UsageError;
use plumb_proto::relay::OnConnectFailure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; real errors exit 2.
            let code = e.exit_code();
            let _ = e.print();
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
            plumb::server::run_server(&a.server, "127.0.0.1:7007", Arc::new(EchoService), None)
        }
        Command::Relay(a) => {
            let upstream = Addr::parse(&a.to, None).map_err(plumb::usage::usage)?;
            let service = RelayService {
                upstream,
                on_failure: OnConnectFailure::Close,
            };
            plumb::server::run_server(&a.server, "127.0.0.1:8081", Arc::new(service), None)
        }
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
