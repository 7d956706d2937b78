//! The idle keep-alive benchmark's client (run by `scripts/idle-10k.sh`): opens N connections
//! to a server on loopback, makes one request on each (so each is a used keep-alive
//! connection, not a fresh one), leaves them all idle, checks the server still holds every
//! one and that a new request on a random sample is answered, and prints the server's RSS
//! before and after with the growth per connection.
//!
//! Usage: `idle_conns ADDR SERVER_PID [--conns N] [--sample K] [--http PATH] [--idle SECS]`
//! (echo protocol unless `--http` is given). Bounded: every socket has a 20 s timeout and the
//! whole run gives up after `--deadline` seconds (default 120).
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

struct Opts {
    addr: String,
    pid: u32,
    conns: usize,
    sample: usize,
    http: Option<String>,
    idle: Duration,
    deadline: Duration,
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().ok_or("missing ADDR")?;
    let pid = args
        .next()
        .ok_or("missing SERVER_PID")?
        .parse()
        .map_err(|_| "SERVER_PID must be a number")?;
    let mut o = Opts {
        addr,
        pid,
        conns: 10_000,
        sample: 500,
        http: None,
        idle: Duration::from_secs(2),
        deadline: Duration::from_secs(120),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let num = || value.parse::<f64>().map_err(|_| format!("bad {flag}"));
        match flag.as_str() {
            "--conns" => o.conns = num()? as usize,
            "--sample" => o.sample = num()? as usize,
            "--idle" => o.idle = Duration::from_secs_f64(num()?),
            "--deadline" => o.deadline = Duration::from_secs_f64(num()?),
            "--http" => o.http = Some(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

/// The server's resident set, in KiB.
fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

fn server_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            })
            .count()
    })
}

/// One request and its complete answer on an open connection.
fn request(s: &mut TcpStream, http: Option<&str>, n: usize) -> io::Result<()> {
    match http {
        None => {
            let msg = format!("{n:08}");
            s.write_all(msg.as_bytes())?;
            let mut got = [0u8; 8];
            s.read_exact(&mut got)?;
            if got != msg.as_bytes() {
                return Err(io::Error::other("wrong echo"));
            }
        }
        Some(path) => {
            write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")?;
            read_http_response(s)?;
        }
    }
    Ok(())
}

/// Reads one response with a Content-Length body.
fn read_http_response(s: &mut TcpStream) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::Error::other("connection closed mid-response"));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if !text.starts_with("http/1.1 200") {
        return Err(io::Error::other(format!(
            "status: {}",
            text.lines().next().unwrap_or("")
        )));
    }
    let len: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no content-length"))?;
    io::copy(&mut (&mut *s).take(len), &mut io::sink())?;
    Ok(())
}

/// A small deterministic generator for the sample (xorshift).
fn sample(n: usize, k: usize, mut seed: u64) -> Vec<usize> {
    let mut picked: Vec<usize> = (0..k.min(n))
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        })
        .collect();
    picked.sort_unstable();
    picked.dedup();
    picked
}

fn run(o: &Opts) -> Result<bool, String> {
    let start = Instant::now();
    let limit = plumb_sys::raise_nofile_limit().map_err(|e| e.to_string())?;
    if limit < o.conns as u64 + 64 {
        return Err(format!(
            "need {} descriptors here, the limit is {limit}",
            o.conns + 64
        ));
    }
    let before = rss_kib(o.pid).map_err(|e| format!("server {}: {e}", o.pid))?;
    let mut conns = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        if start.elapsed() > o.deadline {
            return Err(format!("deadline passed after {i} connections"));
        }
        let mut s = TcpStream::connect(&o.addr).map_err(|e| format!("connection {i}: {e}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        request(&mut s, o.http.as_deref(), i).map_err(|e| format!("connection {i}: {e}"))?;
        conns.push(s);
    }
    let opened = start.elapsed();
    std::thread::sleep(o.idle);
    let held = server_sockets(o.pid);
    let after = rss_kib(o.pid).map_err(|e| format!("server {}: {e}", o.pid))?;
    let picked = sample(o.conns, o.sample, 0x9e37_79b9_7f4a_7c15);
    let mut answered = 0;
    for &i in &picked {
        match request(&mut conns[i], o.http.as_deref(), i) {
            Ok(()) => answered += 1,
            Err(e) => eprintln!("idle connection {i}: {e}"),
        }
    }
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / o.conns as f64;
    println!(
        "connections: {} opened (with one request each) in {:.2} s, idle {:.1} s",
        o.conns,
        opened.as_secs_f64(),
        o.idle.as_secs_f64()
    );
    println!("server holds {held} sockets (listeners included)");
    println!(
        "sample: {answered} of {} idle connections answered a new request",
        picked.len()
    );
    println!(
        "server RSS: {:.1} MiB before, {:.1} MiB with {} idle connections: {:.0} bytes ({:.2} KiB) per connection",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        o.conns,
        per_conn,
        per_conn / 1024.0
    );
    let ok = held >= o.conns && answered == picked.len();
    println!(
        "result: {} (all open and answering: {}; target <= 4 KiB per connection: {})",
        if ok && per_conn <= 4096.0 {
            "PASS"
        } else {
            "FAIL"
        },
        ok,
        per_conn <= 4096.0
    );
    Ok(ok && per_conn <= 4096.0)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("idle_conns: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("idle_conns: {e}");
            ExitCode::FAILURE
        }
    }
}
