//! `plumb connect ADDR`: the lecture's echo client done right. Standard input goes to the
//! socket and the socket goes to standard output *concurrently*, so a peer that answers while
//! we are still writing cannot deadlock us (both sides blocked in `write` with full buffers).
//! On stdin EOF we half-close (the peer reads EOF) and keep printing until the peer closes.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::thread;

use anyhow::Context;

use crate::net::{Addr, Stream};

/// Options of `plumb connect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to connect: HOST:PORT, [V6]:PORT or unix:/PATH.
    pub addr: String,
    /// Give up connecting after this many seconds (more than 0).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
}

/// Runs the client; returns the exit code.
///
/// # Errors
/// Connection failures (exit 1), with the address in the message.
pub fn run(args: &Args) -> anyhow::Result<i32> {
    let addr = Addr::parse(&args.addr, None).map_err(crate::usage::usage)?;
    let timeout = crate::usage::seconds("--timeout", args.timeout)?;
    if timeout.is_zero() {
        // A connect that may take no time at all cannot succeed; say so as the usage error it is.
        return Err(crate::usage::usage("--timeout must be more than 0 seconds"));
    }
    let mut sock =
        Stream::connect(&addr, Some(timeout)).with_context(|| "cannot connect".to_string())?;
    let writer = sock.try_clone().context("dup socket")?;
    // stdin -> socket on its own thread; it is left blocked in read() if the peer closes
    // first, and ends with the process.
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || pump_stdin(writer))
        .context("spawn")?;
    let stdout = io::stdout();
    let out = stdout.as_fd();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => return Ok(0),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                anyhow::bail!("connection reset by peer")
            }
            Err(e) => return Err(e).context("read from socket"),
        };
        match plumb_sys::write_all(&out, &buf[..n]) {
            Ok(()) => {}
            // Our reader went away (`plumb connect ... | head`): a clean end.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => return Err(e).context("write to stdout"),
        }
    }
}

fn pump_stdin(sock: Stream) {
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match plumb_sys::read(&fd, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if plumb_sys::write_all(&sock, &buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    // Half-close: the peer sees EOF, and may still answer.
    let _ = sock.shutdown_write();
}
