//! The command line of the binary: the subcommands and their arguments. The options every
//! server shares and the start of a server are the library's (`plumb::server`); usage errors
//! are `plumb::usage`.

use clap::{Parser, Subcommand};
use plumb::server::{ECHO_LISTEN, RELAY_LISTEN, SERVE_LISTEN, ServerArgs, listen_help};

#[derive(Debug, Parser)]
#[command(
    name = "plumb",
    args_override_self = true,
    version,
    about = "Pipes, sockets and servers: echo, relay, connect and a static HTTP server under every concurrency model, plus the instruments to measure them.",
    after_help = "Examples:\n  plumb serve ./site                       serve ./site on http://127.0.0.1:8080/\n  plumb echo --listen 127.0.0.1:7007 --model fork\n  plumb connect 127.0.0.1:7007 < file\n  plumb relay --listen :8081 --to unix:/run/app.sock\n  plumb bench http://127.0.0.1:8080/ -c 64 -d 10\n\n  plumb exec --listen :7000 -- sh -c 'echo hello $TCPREMOTEIP'\n\nDefault addresses: serve 127.0.0.1:8080, echo 127.0.0.1:7007, relay 127.0.0.1:8081, exec 127.0.0.1:7008.\nRun 'plumb COMMAND --help' for the options of a command."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory over HTTP/1.1 (static files, listings, ranges), or proxy with --proxy.
    #[command(mut_arg("listen", |a| a.help(listen_help(SERVE_LISTEN))))]
    Serve(plumb::serve::Args),
    /// Echo every byte back (TCP or UNIX socket).
    #[command(
        mut_arg("listen", |a| a.help(listen_help(ECHO_LISTEN))),
        after_help = "Examples:\n  plumb echo --listen 127.0.0.1:7007\n  plumb echo --listen '[::1]:7007' --listen unix:/tmp/echo.sock --model prefork --workers 4\n  plumb echo --listen :0 --model pool --threads 8 --log -"
    )]
    Echo(EchoArgs),
    /// Relay bytes between each client and a new connection to an upstream (a proxy).
    #[command(
        mut_arg("listen", |a| a.help(listen_help(RELAY_LISTEN))),
        after_help = "Examples:\n  plumb relay --listen 127.0.0.1:8081 --to 127.0.0.1:8080\n  plumb relay --listen :8081 --to unix:/run/app.sock   (expose a UNIX socket on TCP)\n  plumb relay --listen unix:/tmp/lsp.sock --to 'exec:rust-analyzer'   (one program per client)"
    )]
    Relay(RelayArgs),
    /// JSON-RPC 2.0 over any socket or pipe: serve scripts as methods, call servers.
    Rpc(RpcArgs),
    /// Run a program per connection, the connection as its stdin and stdout (inetd, tcpserver).
    #[command(mut_arg("listen", |a| a.help(listen_help(plumb::exec::EXEC_LISTEN))))]
    Exec(plumb::exec::Args),
    /// Connect stdin/stdout to a socket (netcat-style client).
    #[command(
        after_help = "Examples:\n  echo hello | plumb connect 127.0.0.1:7007\n  plumb connect unix:/tmp/echo.sock < big.bin > copy.bin"
    )]
    Connect(plumb::connect::Args),
    /// Measure pipes, FIFOs, sockets and files; fork and thread costs.
    Ipc(plumb_instruments::ipc::Args),
    /// Load-generate against an HTTP or echo server.
    Bench(plumb_instruments::bench::Args),
    /// Run one service under every model, bench each, print a table and write a chart.
    Compare(plumb_instruments::compare::Args),
}

#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, clap::Args)]
pub struct RpcArgs {
    #[command(subcommand)]
    pub cmd: RpcCommand,
}

#[derive(Debug, Subcommand)]
pub enum RpcCommand {
    /// Serve JSON-RPC 2.0: built-in methods and commands as methods, under every model.
    #[command(mut_arg("listen", |a| a.help(format!(
        "{} (or stdio: one session on stdin/stdout, exit at EOF)",
        listen_help(plumb::rpc::serve::RPC_LISTEN)
    ))))]
    Serve(plumb::rpc::ServeArgs),
    /// Call a JSON-RPC 2.0 server over TCP, a UNIX socket or a program's stdin/stdout.
    Call(plumb::rpc::CallArgs),
}

#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The upstream each client is relayed to: HOST:PORT, [V6]:PORT, unix:/PATH, or
    /// exec:COMMAND (a fresh `/bin/sh -c COMMAND` per client on pipes).
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    /// Copy relayed bytes through user space instead of moving them between the sockets
    /// with splice(2) (the default where both ends are sockets).
    #[arg(long)]
    pub no_splice: bool,
    /// With --to exec: seconds the program may run on once the client is done before its
    /// process group gets SIGTERM (as long again before SIGKILL).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub kill_after: f64,
    #[command(flatten)]
    pub server: ServerArgs,
}
