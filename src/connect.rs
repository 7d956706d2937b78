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
    /// Speak TLS to the server (its certificate is verified: --tls-ca, or the system's CAs).
    #[arg(long)]
    pub tls: bool,
    /// CA certificates (PEM) to verify the server with, instead of the system's.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Verify nothing about the server's certificate (a self-signed test server).
    #[arg(long, requires = "tls")]
    pub insecure: bool,
    /// The name to ask for (SNI) and verify; default: the host of ADDR.
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub sni: Option<String>,
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
    if args.tls {
        return run_tls(args, &addr, sock, timeout);
    }
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

/// `connect --tls`: one thread, `poll(2)` on stdin and the socket, the TLS layer driven
/// without blocking (a rustls session cannot be read and written from two threads).
fn run_tls(
    args: &Args,
    addr: &Addr,
    sock: Stream,
    timeout: std::time::Duration,
) -> anyhow::Result<i32> {
    use crate::drive::surface::Surface;
    use plumb_sys::{PollFd, events};
    use std::os::fd::AsRawFd;
    let host = match (&args.sni, addr) {
        (Some(n), _) => n.clone(),
        (None, Addr::Tcp { host, .. }) => host.clone(),
        (None, Addr::Unix(_)) => "localhost".to_string(),
    };
    let name = crate::tls::client::server_name(&host).map_err(crate::usage::usage)?;
    let config = crate::tls::client::config(&crate::tls::client::ClientOptions {
        ca: args.tls_ca.clone(),
        insecure: args.insecure,
        alpn: vec![],
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    sock.set_nonblocking(true).context("socket")?;
    let deadline = std::time::Instant::now() + timeout;
    let mut tls = crate::drive::tls::TlsStream::client(sock, config, name, deadline)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stdin = io::stdin();
    let stdin_fd = stdin.as_fd();
    let stdout = io::stdout();
    let out = stdout.as_fd();
    let mut buf = vec![0u8; 64 * 1024];
    let mut to_send: Vec<u8> = Vec::new();
    let mut stdin_open = true;
    let mut shut = false;
    loop {
        // Socket -> stdout (this also drives the handshake).
        loop {
            match tls.try_read(&mut buf) {
                Ok(0) => return Ok(0),
                Ok(n) => match plumb_sys::write_all(&out, &buf[..n]) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(0),
                    Err(e) => return Err(e).context("write to stdout"),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => anyhow::bail!("{}", tls_words(&e)),
            }
        }
        if tls.handshaking() && std::time::Instant::now() > deadline {
            anyhow::bail!("TLS handshake with {addr} timed out");
        }
        // Stdin -> socket.
        while !to_send.is_empty() {
            match tls.try_write(&to_send, false) {
                Ok(n) => {
                    to_send.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => anyhow::bail!("{}", tls_words(&e)),
            }
        }
        if !stdin_open && to_send.is_empty() && !shut && !tls.handshaking() {
            shut = true;
            let _ = tls.shutdown_write();
        }
        let mut fds = vec![PollFd::new(
            tls.socket().as_raw_fd(),
            events::READ
                | if tls.wants_write() || !to_send.is_empty() {
                    events::WRITE
                } else {
                    0
                },
        )];
        let watch_stdin = stdin_open && to_send.is_empty();
        if watch_stdin {
            fds.push(PollFd::new(stdin_fd.as_raw_fd(), events::READ));
        }
        plumb_sys::poll(&mut fds, Some(std::time::Duration::from_millis(250))).context("poll")?;
        if watch_stdin && fds[1].ready() {
            match plumb_sys::read(&stdin_fd, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => to_send.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// A TLS failure in one line (an expired or mismatched certificate says which).
fn tls_words(e: &io::Error) -> String {
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return crate::tls::client::describe(t);
    }
    e.to_string()
}
