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
    /// Worker processes (prefork) or event loops (event), at most 1024.
    #[arg(long, value_name = "N", default_value_t = default_workers())]
    pub workers: usize,
    /// Worker threads (pool).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub threads: usize,
    /// Accepted connections waiting for a pool thread; when full, clients wait in the
    /// kernel backlog.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub queue: usize,
    /// Most connections open at once, under every model; more clients wait in the kernel
    /// backlog. Default: 1024 (fewer if the descriptor limit is lower), and under the event
    /// model as many as the descriptor limit allows (a relay needs two per connection, six with splice).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
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
    /// Speak TLS on every --listen address (see --tls-listen to mix plain and TLS).
    #[arg(long, help_heading = "TLS")]
    pub tls: bool,
    /// Also listen on ADDR with TLS (repeatable), beside the plain --listen addresses:
    /// `--listen :8080 --tls-listen :8443`.
    #[arg(long = "tls-listen", value_name = "ADDR", help_heading = "TLS")]
    pub tls_listen: Vec<String>,
    /// Certificate chain (PEM, leaf first; the whole chain is sent).
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Private key of --tls-cert (PEM: PKCS#8, RSA or EC; RSA, ECDSA or Ed25519).
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    pub tls_key: Option<std::path::PathBuf>,
    /// A certificate chosen when the client asks for NAME (SNI; `*.example.com` matches one
    /// level); repeatable. Without --tls-cert the first one is the default.
    #[arg(long = "tls-sni", value_name = "NAME=CERT,KEY", help_heading = "TLS")]
    pub tls_sni: Vec<String>,
    /// A fresh self-signed certificate for localhost, 127.0.0.1, ::1 and the listen names;
    /// its SHA-256 fingerprint is printed.
    #[arg(long, help_heading = "TLS")]
    pub tls_self_signed: bool,
    /// Seconds a client has to finish the TLS handshake.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 10.0,
        help_heading = "TLS"
    )]
    pub handshake_timeout: f64,
    /// After the handshake, hand the keys to the kernel (kTLS) so files go out with
    /// sendfile; falls back to user-space TLS, with one line, where the kernel cannot.
    #[arg(long, help_heading = "TLS")]
    pub ktls: bool,
}

/// The default `--listen` of each server.
pub const SERVE_LISTEN: &str = "127.0.0.1:8080";
pub const ECHO_LISTEN: &str = "127.0.0.1:7007";
pub const RELAY_LISTEN: &str = "127.0.0.1:8081";

/// The `--listen` help with the command's own default address.
pub fn listen_help(default: &str) -> String {
    format!(
        "Address to listen on (repeatable): HOST:PORT, [V6]:PORT, :PORT, unix:/PATH. Port 0 \
         picks a free port; the real one is printed. Default: {default}"
    )
}

/// Most `--workers`: processes or event loops beyond this are a typo, not a configuration
/// (each costs a process or a thread and a listener per address).
pub const MAX_WORKERS: usize = 1024;
/// Most `--threads`.
pub const MAX_THREADS: usize = 4096;

/// Descriptors kept free of connections: the listeners, the logs, the shutdown pipes, the
/// event loops' epoll descriptors.
const RESERVED_FDS: u64 = 64;

/// The default `--max-connections`: what the descriptor limit allows, at most 1024 where
/// each connection costs a thread or a process, and never so many that connections alone
/// exhaust the descriptors (a relay to its own address would otherwise loop until they are).
/// A relay needs two per connection; the HTTP file cache keeps up to a quarter of the limit
/// (at most [`crate::services::file_cache::MAX_ENTRIES`]) open files of its own.
fn default_max_connections(model: Model, service: &dyn Service) -> usize {
    let (soft, hard) = plumb_sys::nofile_limit().unwrap_or((1024, 1024));
    // The event model raises its soft limit to the hard one; the others keep theirs.
    let limit = if model == Model::Event { hard } else { soft };
    let cache = if service.name() == "http" {
        (limit / 4).min(crate::services::file_cache::MAX_ENTRIES as u64)
    } else {
        0
    };
    let per_connection = service.descriptors_per_connection().max(1);
    let budget = (limit.saturating_sub(RESERVED_FDS + cache) / per_connection).max(16);
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    match model {
        Model::Event => budget,
        _ => budget.min(1024),
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Binds every `--listen` address (or `default` when none is given), installs the shutdown
/// handlers, runs the model and prints the listening lines. `banner` gives an extra
/// start-up line per listener address for people (the `listening on` lines are for scripts).
///
/// Everything a user can get wrong is checked before the first `listening on` line: the
/// numbers, the addresses, the log files, and a relay whose upstream is its own address.
///
/// # Errors
/// Usage errors (bad address or number) and runtime errors (bind failures).
pub fn run_server(
    args: &ServerArgs,
    default: &str,
    service: Arc<dyn Service>,
    access: Option<LogTarget>,
    banner: Option<&dyn Fn(&str) -> String>,
) -> anyhow::Result<i32> {
    // Descriptors inherited without close-on-exec (a jobserver pipe, a careless parent's
    // leak) must not reach the programs a server runs, nor hold their files open.
    let _ = plumb_sys::cloexec_from(3);
    let activated = crate::activation::from_environment()?;
    if activated.is_some() && !args.listen.is_empty() {
        return Err(usage(
            "--listen given, but the service manager passed listening sockets              (LISTEN_FDS): leave --listen out of the unit's command line",
        ));
    }
    let grace = seconds("--grace", args.grace)?;
    let write_timeout = seconds("--write-timeout", args.write_timeout)?;
    let max_connections = args
        .max_connections
        .unwrap_or_else(|| default_max_connections(args.model, &*service));
    for (name, v, most) in [
        ("--workers", args.workers, MAX_WORKERS),
        ("--threads", args.threads, MAX_THREADS),
        ("--max-connections", max_connections, usize::MAX),
    ] {
        if v == 0 {
            return Err(usage(format!("{name} must be at least 1")));
        }
        if v > most {
            return Err(usage(format!("{name} must be at most {most}, not {v}")));
        }
    }
    let plain: Vec<String> = if args.listen.is_empty() && args.tls_listen.is_empty() {
        vec![default.to_string()]
    } else {
        args.listen.clone()
    };
    let tls_flags: Vec<bool> = plain
        .iter()
        .map(|_| args.tls)
        .chain(args.tls_listen.iter().map(|_| true))
        .collect();
    let addrs: Vec<Addr> = plain
        .iter()
        .chain(&args.tls_listen)
        .map(|a| Addr::parse(a, None).map_err(usage))
        .collect::<anyhow::Result<_>>()?;
    reject_duplicates(&addrs)?;
    let acceptor = tls_acceptor(args, &addrs, &tls_flags, &*service)?;
    let connections = args.log.as_deref().map(LogTarget::parse);
    for target in [&connections, &access].into_iter().flatten() {
        target.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let shutdown = Shutdown::install_with(grace, acceptor.is_none())?;
    shutdown.set_announce(!args.quiet);
    let mut listeners = Vec::new();
    let passed = activated.is_some();
    if let Some(a) = activated {
        for (i, l) in a.listeners.iter().enumerate() {
            if service.client_speaks_first() {
                l.defer_accept().map_err(|e| {
                    anyhow::anyhow!("cannot set up the listener on {}: {e}", l.local_addr())
                })?;
            }
            if !args.quiet {
                let name = a.names.get(i).map_or(String::new(), |n| format!(" ({n})"));
                eprintln!(
                    "plumb: socket activation: descriptor {}{name} is {}",
                    i + 3,
                    l.local_addr()
                );
            }
        }
        listeners = a.listeners;
    }
    for a in addrs.iter().filter(|_| !passed) {
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
    if let Some(up) = service.upstream()
        && let Some(l) = listeners.iter().find(|l| is_own_address(up, l))
    {
        return Err(usage(format!(
            "the upstream {up} is this server's own address {}: every connection would \
             connect to itself, again and again",
            l.local_addr()
        )));
    }
    // The line for people first: whoever waits for the `listening on` lines has it too.
    if let Some(banner) = banner {
        for (l, &tls) in listeners.iter().zip(&tls_flags) {
            let line = banner(&l.local_addr());
            // The services' banners name http:// URLs; a TLS listener is reached by https://.
            let line = if tls {
                line.replacen("http://", "https://", 1)
            } else {
                line
            };
            eprintln!("plumb: {line} (model {})", args.model);
        }
    }
    for l in &listeners {
        eprintln!(
            "{LISTENING_PREFIX}{} (model {})",
            l.local_addr(),
            args.model
        );
    }
    let tls = crate::tls::Listeners::new(&listeners, &tls_flags, acceptor);
    if tls.any() {
        let forks = matches!(args.model, Model::ForkWait | Model::Fork | Model::Prefork);
        crate::tls::reload::install(&tls, !forks)?;
    }
    let server = models::Server {
        tls,
        listeners,
        service,
        options: models::Options {
            workers: args.workers,
            threads: args.threads,
            queue: args.queue,
            max_connections,
            write_timeout,
        },
        shutdown,
        logs: LogConfig {
            connections,
            requests: access.is_some(),
            access,
            quiet: args.quiet,
        },
    };
    models::run(args.model, &server)?;
    Ok(0)
}

/// The TLS of the server, if a listener speaks it: every TLS option checked and every
/// certificate loaded before the first `listening on` line.
fn tls_acceptor(
    args: &ServerArgs,
    addrs: &[Addr],
    tls_flags: &[bool],
    service: &dyn Service,
) -> anyhow::Result<Option<Arc<crate::tls::Acceptor>>> {
    let any_tls = tls_flags.iter().any(|&t| t);
    let handshake_timeout = seconds("--handshake-timeout", args.handshake_timeout)?;
    let given = args.tls_cert.is_some()
        || args.tls_key.is_some()
        || !args.tls_sni.is_empty()
        || args.tls_self_signed
        || args.ktls;
    if !any_tls {
        if given {
            return Err(usage(
                "TLS options given but no listener speaks TLS: add --tls (every --listen) or \
                 --tls-listen ADDR",
            ));
        }
        return Ok(None);
    }
    let sni = args
        .tls_sni
        .iter()
        .map(|s| crate::tls::parse_sni(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let names: Vec<String> = addrs
        .iter()
        .filter_map(|a| match a {
            Addr::Tcp { host, .. } if !host.is_empty() => Some(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            ),
            _ => None,
        })
        .filter(|h| h != "0.0.0.0" && h != "::")
        .collect();
    let opts = crate::tls::ServerOptions {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        sni,
        self_signed: args.tls_self_signed.then_some(names),
        alpn: if service.name() == "http" {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![]
        },
        handshake_timeout,
        ktls: args.ktls,
    };
    let a = crate::tls::Acceptor::new(&opts).map_err(|e| {
        if args.tls_cert.is_none() && args.tls_sni.is_empty() && !args.tls_self_signed {
            usage(e)
        } else {
            anyhow::anyhow!("{e}")
        }
    })?;
    Ok(Some(Arc::new(a)))
}

/// The same address twice would be refused as "in use" (by ourselves) at best and served
/// twice at worst; say what is wrong instead. Port 0 asks for a new port each time, so it may
/// repeat.
fn reject_duplicates(addrs: &[Addr]) -> anyhow::Result<()> {
    for (i, a) in addrs.iter().enumerate() {
        if matches!(a, Addr::Tcp { port: 0, .. }) {
            continue;
        }
        if addrs[..i].contains(a) {
            return Err(usage(format!("--listen {a} is given twice")));
        }
    }
    Ok(())
}

/// Whether connecting to `upstream` would reach listener `l` itself: the same UNIX socket
/// file, or the same port on the same IP (an IP literal or `localhost`; other names are not
/// looked up at start-up), where a wildcard listener (`0.0.0.0`, `[::]`) is reached through
/// any of this machine's own addresses.
fn is_own_address(upstream: &Addr, l: &Listener) -> bool {
    match (upstream, l) {
        (Addr::Unix(p), Listener::Unix(..)) => l.unix_path().is_some_and(|own| {
            own == p
                || std::fs::canonicalize(own)
                    .ok()
                    .zip(std::fs::canonicalize(p).ok())
                    .is_some_and(|(a, b)| a == b)
        }),
        (Addr::Tcp { host, .. }, Listener::Tcp(_)) => {
            let cheap = host.parse::<std::net::IpAddr>().is_ok() || host == "localhost";
            let Some(own) = l.socket_addr() else {
                return false;
            };
            if !cheap {
                return false;
            }
            upstream.resolve().unwrap_or_default().iter().any(|to| {
                to.port() == own.port()
                    && (to.ip() == own.ip()
                        || (own.ip().is_unspecified()
                            && to.is_ipv4() == own.is_ipv4()
                            && is_local_ip(to.ip())))
            })
        }
        _ => false,
    }
}

/// Whether `ip` is one of this machine's addresses (a wildcard listener answers on it): the
/// wildcard itself, loopback, or an address a socket can bind.
fn is_local_ip(ip: std::net::IpAddr) -> bool {
    ip.is_unspecified()
        || ip.is_loopback()
        || std::net::TcpListener::bind(std::net::SocketAddr::new(ip, 0)).is_ok()
}
