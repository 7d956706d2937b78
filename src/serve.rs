//! `plumb serve [DIR]`: the static-file HTTP/1.1 server, or with `--proxy` the relay that
//! answers 502 when its upstream is down. Options become a [`plumb_proto::http::Config`];
//! everything else is the shared server machinery of [`crate::server`].

use std::path::PathBuf;
use std::sync::Arc;

use plumb_proto::http::Config;
use plumb_proto::http::parse::HeadLimits;

use crate::services::fs_docroot::FsDocroot;
use plumb_proto::relay::OnConnectFailure;

use crate::net::Addr;
use crate::report::LogTarget;
use crate::server::{self, ServerArgs};
use crate::services::file_cache::CachedDocroot;
use crate::services::http::HttpService;
use crate::services::relay::RelayService;
use crate::usage::{seconds, usage};

/// Options of `plumb serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    plumb serve                                  serve . on 127.0.0.1:8080\n  \
    plumb serve ./site --listen :8000 --model prefork --workers 4\n  \
    plumb serve /srv/files --hidden --follow-symlinks --access-log /var/log/plumb.log\n  \
    plumb serve --header-timeout 5 --keepalive-timeout 2 --max-requests 100 -q\n  \
    plumb serve --proxy 127.0.0.1:9000 --listen :8080   (relay; 502 when 9000 is down)")]
pub struct Args {
    /// Directory to serve.
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Relay every connection to ADDR instead of serving files (HOST:PORT or unix:/PATH);
    /// clients get 502 Bad Gateway when ADDR cannot be reached. The bytes pass through
    /// untouched, so DIR and the file and HTTP options cannot be given with it.
    #[arg(long, value_name = "ADDR", conflicts_with_all = FILE_OPTIONS)]
    pub proxy: Option<String>,
    /// Serve symlinks that point outside DIR (by default they are refused with 403).
    #[arg(long)]
    pub follow_symlinks: bool,
    /// Serve and list names starting with '.' (by default they are hidden and 404).
    #[arg(long)]
    pub hidden: bool,
    /// Seconds a client may take to send a request's head (and body) from its first byte;
    /// slower clients get 408 and are cut off (slowloris).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds an idle keep-alive connection stays open between requests.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub keepalive_timeout: f64,
    /// Requests served per connection before it closes (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests: u64,
    /// Largest request head (request line and headers) in bytes; larger is 431.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Longest request target in bytes; longer is 414.
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024)]
    pub max_uri_bytes: usize,
    /// Seconds an open file is trusted without checking its path again: edits, replacements
    /// and deletions are seen within this time (0: on every request, at one `stat` each).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub file_cache_valid: f64,
    /// Access log (Combined Log Format), one line per request: a file, or - for stdout.
    /// Default: stderr. -q turns it off.
    #[arg(long, value_name = "FILE|-")]
    pub access_log: Option<String>,
    /// Run matching executable files as CGI/1.1 scripts (RFC 3875): a path prefix such as
    /// /cgi-bin/ or an extension such as '*.cgi'; repeatable. A matching file that is not
    /// executable, and a directory under a prefix, answer 403 (never their source).
    #[arg(long, value_name = "PATTERN", conflicts_with = "proxy")]
    pub cgi: Vec<String>,
    /// Seconds a CGI script may run per request: then it is killed, and the client gets 504
    /// if nothing was sent yet (else the connection is cut).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60.0,
        conflicts_with = "proxy"
    )]
    pub cgi_timeout: f64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What only the file server reads: with `--proxy` each would be silently ignored, so clap
/// refuses them beside it (exit 2).
const FILE_OPTIONS: [&str; 10] = [
    "dir",
    "follow_symlinks",
    "hidden",
    "header_timeout",
    "keepalive_timeout",
    "max_requests",
    "max_header_bytes",
    "max_uri_bytes",
    "file_cache_valid",
    "access_log",
];

const DEFAULT_LISTEN: &str = server::SERVE_LISTEN;

/// Runs `plumb serve`.
///
/// # Errors
/// Usage errors (missing directory, bad numbers, bad addresses) and bind failures.
pub fn run(args: &Args) -> anyhow::Result<i32> {
    if let Some(proxy) = &args.proxy {
        let upstream = Addr::parse(proxy, None).map_err(|e| usage(format!("--proxy: {e}")))?;
        let banner = |at: &str| format!("proxying {} to {upstream}", url(at));
        let service = RelayService {
            upstream: upstream.clone(),
            on_failure: OnConnectFailure::BadGateway,
            splice: true,
        };
        return server::run_server(
            &args.server,
            DEFAULT_LISTEN,
            Arc::new(service),
            None,
            Some(&banner),
        );
    }
    let cannot = |e: std::io::Error| {
        usage(format!(
            "cannot serve {}: {}",
            args.dir.display(),
            crate::net::words(&e)
        ))
    };
    let meta = std::fs::metadata(&args.dir).map_err(cannot)?;
    if !meta.is_dir() {
        return Err(usage(format!(
            "cannot serve {}: not a directory",
            args.dir.display()
        )));
    }
    let root = FsDocroot::new(&args.dir, args.follow_symlinks).map_err(cannot)?;
    for (name, v) in [
        ("--max-header-bytes", args.max_header_bytes),
        ("--max-uri-bytes", args.max_uri_bytes),
    ] {
        if v < 64 {
            return Err(usage(format!("{name} must be at least 64")));
        }
    }
    let access = LogTarget::access(args.access_log.as_deref(), args.server.quiet);
    let config = Config {
        header_timeout: nonzero("--header-timeout", args.header_timeout)?,
        keepalive_timeout: seconds("--keepalive-timeout", args.keepalive_timeout)?,
        max_requests: args.max_requests,
        limits: HeadLimits {
            max_header_bytes: args.max_header_bytes,
            max_uri_bytes: args.max_uri_bytes,
        },
        hidden: args.hidden,
        log: access.is_some(),
        cgi: cgi_config(args)?,
        ..Config::default()
    };
    let cgi_local = std::sync::Arc::clone(&config.cgi.local);
    let service = HttpService {
        config: Arc::new(config),
        root: Arc::new(CachedDocroot::new(
            root,
            seconds("--file-cache-valid", args.file_cache_valid)?,
        )),
    };
    let dir = args.dir.display().to_string();
    let banner = |at: &str| {
        // CGI's SERVER_NAME and SERVER_PORT when a request's Host does not give them.
        if at.parse::<std::net::SocketAddr>().is_ok() {
            let _ = cgi_local.set(at.to_string());
        }
        format!("serving {dir} on {}", url(at))
    };
    server::run_server(
        &args.server,
        DEFAULT_LISTEN,
        Arc::new(service),
        access,
        Some(&banner),
    )
}

/// The CGI settings from `--cgi` and `--cgi-timeout`. Scripts start from an environment of
/// their own: `PATH` only, then the meta-variables (the server's environment may hold
/// secrets, or an `HTTP_PROXY` a script would use).
fn cgi_config(args: &Args) -> anyhow::Result<plumb_proto::http::cgi::CgiConfig> {
    use plumb_proto::http::cgi::{CgiConfig, Pattern};
    let patterns = args
        .cgi
        .iter()
        .map(|p| Pattern::parse(p).map_err(|e| usage(format!("--cgi {e}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    Ok(CgiConfig {
        patterns,
        timeout: nonzero("--cgi-timeout", args.cgi_timeout)?,
        env: vec![("PATH".to_string(), path)],
        software: format!("plumb/{}", env!("CARGO_PKG_VERSION")),
        log: (!args.server.quiet).then(|| {
            std::sync::Arc::new(crate::services::http::ScriptStderr)
                as std::sync::Arc<dyn plumb_proto::http::cgi::ScriptLog>
        }),
        ..CgiConfig::default()
    })
}

/// Where a browser or curl reaches a listener: `http://127.0.0.1:8080/`, and for a UNIX
/// socket the curl command line (browsers cannot open one).
fn url(listening: &str) -> String {
    match listening.strip_prefix("unix:") {
        Some(path) => format!("{listening} (curl --unix-socket {path} http://localhost/)"),
        None => format!("http://{listening}/"),
    }
}

fn nonzero(name: &str, v: f64) -> anyhow::Result<std::time::Duration> {
    let d = seconds(name, v)?;
    if d.is_zero() {
        return Err(usage(format!("{name} must be more than 0 seconds")));
    }
    Ok(d)
}
