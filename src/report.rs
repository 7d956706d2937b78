//! Connection records: whoever served a connection (a thread, a forked child, a prefork
//! worker, an event loop) reports one record per connection and one line per HTTP request;
//! one collector writes the logs and keeps the totals for the shutdown summary.
//!
//! Threads send records over a channel. Processes cannot share memory, so they write the same
//! records as lines to a pipe the parent reads: one `write(2)` of at most `PIPE_BUF` bytes per
//! record, which POSIX makes atomic, so records from many children never interleave even
//! though they share one pipe.

use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use plumb_proto::session::Exit;

/// One event worth logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A connection ended.
    Connection {
        peer: String,
        bytes_in: u64,
        bytes_out: u64,
        duration_us: u64,
        by: u32,
        /// How the connection's child process ended, when it ran one (`plumb exec`).
        exit: Option<Exit>,
    },
    /// A finished access-log line (HTTP), without the newline.
    Access(String),
    /// A per-connection failure worth a line on stderr (unreachable upstream, ...).
    Error(String),
    /// A line a connection's child wrote to its stderr, prefixed with the peer and the pid:
    /// to the connection log when there is one, else to the server's stderr.
    Stderr(String),
    /// A connection whose socket was handed to the program itself (`plumb exec` under the
    /// fork models: the program's stdin and stdout are the socket). Its bytes never passed
    /// through the server, so they are not counted.
    Handed {
        peer: String,
        duration_us: u64,
        by: u32,
        exit: Exit,
    },
}

/// A child's end as `waitpid` told a process model, in the record's terms.
pub fn exit_of(status: plumb_sys::ExitStatus) -> Exit {
    match status {
        plumb_sys::ExitStatus::Exited(c) => Exit::Code(c),
        plumb_sys::ExitStatus::Signaled(s) => Exit::Signal(s),
    }
}

/// An exit in the wire form: `c0` for exit code 0, `s9` for signal 9.
fn exit_word(e: Exit) -> String {
    match e {
        Exit::Code(c) => format!("c{c}"),
        Exit::Signal(s) => format!("s{s}"),
    }
}

fn parse_exit(w: &str) -> Option<Exit> {
    let (kind, n) = w.split_at_checked(1)?;
    let n = n.parse().ok()?;
    match kind {
        "c" => Some(Exit::Code(n)),
        "s" => Some(Exit::Signal(n)),
        _ => None,
    }
}

/// An exit as the log shows it: `exit=0`, `exit=signal:15`.
fn exit_shown(e: Exit) -> String {
    match e {
        Exit::Code(c) => format!("exit={c}"),
        Exit::Signal(s) => format!("exit=signal:{s}"),
    }
}

impl Record {
    /// The wire form for the pipe: one line, at most `PIPE_BUF` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = match self {
            Record::Connection {
                peer,
                bytes_in,
                bytes_out,
                duration_us,
                by,
                exit,
            } => {
                let mut line = format!("C {peer} {bytes_in} {bytes_out} {duration_us} {by}");
                if let Some(e) = exit {
                    line.push(' ');
                    line.push_str(&exit_word(*e));
                }
                line
            }
            Record::Access(s) => format!("A {s}"),
            Record::Error(s) => format!("E {s}"),
            Record::Stderr(s) => format!("S {s}"),
            Record::Handed {
                peer,
                duration_us,
                by,
                exit,
            } => format!("H {peer} {duration_us} {by} {}", exit_word(*exit)),
        }
        .into_bytes();
        line.retain(|&b| b != b'\n');
        line.truncate(plumb_sys::PIPE_BUF - 1);
        line.push(b'\n');
        line
    }

    /// Parses one line of the wire form (without the newline).
    pub fn decode(line: &[u8]) -> Option<Record> {
        let line = std::str::from_utf8(line).ok()?;
        let (kind, rest) = line.split_once(' ')?;
        match kind {
            "A" => Some(Record::Access(rest.to_string())),
            "E" => Some(Record::Error(rest.to_string())),
            "S" => Some(Record::Stderr(rest.to_string())),
            "C" => {
                let mut f = rest.split(' ');
                let peer = f.next()?.to_string();
                let mut num = || f.next()?.parse::<u64>().ok();
                let (bytes_in, bytes_out, duration_us, by) = (num()?, num()?, num()?, num()?);
                let exit = match f.next() {
                    Some(w) => Some(parse_exit(w)?),
                    None => None,
                };
                Some(Record::Connection {
                    peer,
                    bytes_in,
                    bytes_out,
                    duration_us,
                    by: by as u32,
                    exit,
                })
            }
            "H" => {
                let mut f = rest.split(' ');
                let peer = f.next()?.to_string();
                let duration_us = f.next()?.parse().ok()?;
                let by = f.next()?.parse().ok()?;
                let exit = parse_exit(f.next()?)?;
                Some(Record::Handed {
                    peer,
                    duration_us,
                    by,
                    exit,
                })
            }
            _ => None,
        }
    }
}

/// Where records go from the code that served a connection.
#[derive(Debug, Clone)]
pub enum Reporter {
    /// In-process models: a channel to the collector thread.
    Channel(mpsc::Sender<Record>),
    /// Forked processes: the shared write end of the parent's record pipe.
    Pipe(Arc<OwnedFd>),
}

impl Reporter {
    /// Reports a record. A collector that has gone away is not the connection's problem, so
    /// failures are ignored.
    pub fn send(&self, r: Record) {
        match self {
            Reporter::Channel(tx) => {
                let _ = tx.send(r);
            }
            Reporter::Pipe(fd) => {
                // At most PIPE_BUF bytes: one atomic write.
                let _ = plumb_sys::write_all(&**fd, &r.encode());
            }
        }
    }
}

/// A log destination named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    Stdout,
    File(PathBuf),
}

impl LogTarget {
    /// `-` is standard output, anything else a file path.
    pub fn parse(s: &str) -> LogTarget {
        if s == "-" {
            LogTarget::Stdout
        } else {
            LogTarget::File(PathBuf::from(s))
        }
    }

    /// Where an `--access-log` option sends its lines: its value, stderr without one, and
    /// nowhere under `-q`.
    pub fn access(option: Option<&str>, quiet: bool) -> Option<LogTarget> {
        (!quiet).then(|| option.map_or(LogTarget::Stderr, LogTarget::parse))
    }

    /// Opens the target for appending; the flag says whether it is a terminal.
    fn open(&self) -> io::Result<(Box<dyn Write + Send>, bool)> {
        Ok(match self {
            LogTarget::Stderr => (Box::new(io::stderr()), io::stderr().is_terminal()),
            LogTarget::Stdout => (Box::new(io::stdout()), io::stdout().is_terminal()),
            LogTarget::File(p) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("cannot open log {}: {}", p.display(), crate::net::words(&e)),
                        )
                    })?;
                let tty = f.is_terminal();
                (Box::new(f), tty)
            }
        })
    }

    /// Checks at start-up, before the server says it listens, that the log can be opened
    /// (the models open it again when they start).
    ///
    /// # Errors
    /// A file that cannot be created or appended to, in one line with its path.
    pub fn check(&self) -> io::Result<()> {
        self.open().map(drop)
    }
}

/// How often a log written to a terminal is flushed. A terminal is slow to write to, and an
/// access log flushed per batch there (a `write` per request at low concurrency) halved the
/// server's throughput; buffered, the screen still follows within a tenth of a second.
pub const TERMINAL_FLUSH: Duration = Duration::from_millis(100);

/// What to log where.
#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    /// The per-connection log (`--log`).
    pub connections: Option<LogTarget>,
    /// The per-request access log (HTTP).
    pub access: Option<LogTarget>,
    /// Suppress per-connection error lines and the summary.
    pub quiet: bool,
    /// The service has requests (HTTP access records): the summary counts them.
    pub requests: bool,
}

/// Totals printed at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub connections: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub requests: u64,
    /// Connections whose socket went to the program itself (their bytes are not counted).
    pub handed: u64,
}

/// Writes records to their logs and keeps the totals.
pub struct Collector {
    connections: Option<io::BufWriter<Box<dyn Write + Send>>>,
    access: Option<io::BufWriter<Box<dyn Write + Send>>>,
    quiet: bool,
    requests: bool,
    /// A log goes to a terminal: flush it on a timer, not per batch.
    terminal: bool,
    last_flush: Instant,
    summary: Summary,
    partial: Vec<u8>,
}

impl Collector {
    /// Opens the configured logs.
    ///
    /// # Errors
    /// A log file that cannot be opened for appending.
    pub fn new(cfg: &LogConfig) -> io::Result<Collector> {
        let mut terminal = false;
        let mut open = |t: &Option<LogTarget>| -> io::Result<_> {
            t.as_ref()
                .map(|t| {
                    t.open().map(|(w, tty)| {
                        terminal |= tty;
                        io::BufWriter::with_capacity(32 * 1024, w)
                    })
                })
                .transpose()
        };
        let connections = open(&cfg.connections)?;
        let access = open(&cfg.access)?;
        Ok(Collector {
            connections,
            access,
            quiet: cfg.quiet,
            requests: cfg.requests,
            terminal,
            last_flush: Instant::now(),
            summary: Summary::default(),
            partial: Vec::new(),
        })
    }

    pub fn handle(&mut self, r: Record) {
        match r {
            Record::Connection {
                peer,
                bytes_in,
                bytes_out,
                duration_us,
                by,
                exit,
            } => {
                self.summary.connections += 1;
                self.summary.bytes_in += bytes_in;
                self.summary.bytes_out += bytes_out;
                if let Some(w) = &mut self.connections {
                    let exit = exit
                        .map(|e| format!(" {}", exit_shown(e)))
                        .unwrap_or_default();
                    let _ = writeln!(
                        w,
                        "{} conn peer={peer} in={bytes_in} out={bytes_out} duration_ms={:.3} by={by}{exit}",
                        httpdate::fmt_http_date(SystemTime::now()),
                        duration_us as f64 / 1000.0,
                    );
                }
            }
            Record::Handed {
                peer,
                duration_us,
                by,
                exit,
            } => {
                self.summary.connections += 1;
                self.summary.handed += 1;
                if let Some(w) = &mut self.connections {
                    let _ = writeln!(
                        w,
                        "{} conn peer={peer} in=- out=- duration_ms={:.3} by={by} {}",
                        httpdate::fmt_http_date(SystemTime::now()),
                        duration_us as f64 / 1000.0,
                        exit_shown(exit),
                    );
                }
            }
            Record::Stderr(line) => match &mut self.connections {
                Some(w) => {
                    let _ = writeln!(
                        w,
                        "{} stderr {line}",
                        httpdate::fmt_http_date(SystemTime::now())
                    );
                }
                // The program's own diagnostics: shown even with -q, which silences plumb's.
                None => eprintln!("{line}"),
            },
            Record::Access(line) => {
                self.summary.requests += 1;
                if let Some(w) = &mut self.access {
                    let _ = writeln!(w, "{line}");
                }
            }
            Record::Error(msg) => {
                if !self.quiet {
                    eprintln!("plumb: {msg}");
                }
            }
        }
    }

    /// Takes bytes read from the record pipe; complete lines become records.
    pub fn ingest(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = self.partial[start..start + nl].to_vec();
            start += nl + 1;
            if let Some(r) = Record::decode(&line) {
                self.handle(r);
            }
        }
        self.partial.drain(..start);
    }

    /// Reads everything currently in the (non-blocking) record pipe.
    pub fn pump(&mut self, pipe: &OwnedFd) {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = plumb_sys::read(pipe, &mut buf) {
            self.ingest(&buf[..n]);
        }
        self.flush_batch();
    }

    /// Whether a terminal log holds lines not yet written (its owner should wake within
    /// [`TERMINAL_FLUSH`] to flush them).
    pub fn holds_lines(&self) -> bool {
        [&self.connections, &self.access]
            .into_iter()
            .flatten()
            .any(|w| !w.buffer().is_empty())
    }

    /// After a batch of records: files and pipes are flushed at once (a reader sees every
    /// line as soon as the queue is empty), a terminal at most every [`TERMINAL_FLUSH`].
    pub fn flush_batch(&mut self) {
        if !self.terminal || self.last_flush.elapsed() >= TERMINAL_FLUSH {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        for w in [&mut self.connections, &mut self.access]
            .into_iter()
            .flatten()
        {
            let _ = w.flush();
        }
    }

    /// Flushes and returns the totals, printing the summary line unless quiet.
    pub fn finish(mut self) -> Summary {
        self.flush();
        if !self.quiet {
            eprintln!("plumb: {}", self.summary_line());
        }
        self.summary
    }

    /// "served 1 connection, 3 requests, ...": requests only for a service that has them.
    fn summary_line(&self) -> String {
        let s = self.summary;
        let mut parts = vec![count(s.connections, "connection")];
        if s.handed > 0 {
            parts[0].push_str(&format!(
                " ({} on the socket itself: bytes not counted)",
                s.handed
            ));
        }
        if self.requests {
            parts.push(count(s.requests, "request"));
        }
        parts.push(format!("{} in", count(s.bytes_in, "byte")));
        parts.push(format!("{} out", count(s.bytes_out, "byte")));
        format!("served {}", parts.join(", "))
    }
}

/// "1 connection", "2 connections".
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The collector on its own thread, for the in-process models.
pub struct CollectorThread {
    handle: thread::JoinHandle<Summary>,
}

impl CollectorThread {
    /// Starts the thread; records sent to the returned reporter reach it until every clone of
    /// the reporter is dropped.
    pub fn spawn(mut collector: Collector) -> (Reporter, CollectorThread) {
        let (tx, rx) = mpsc::channel::<Record>();
        let handle = thread::Builder::new()
            .name("plumb-log".into())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(TERMINAL_FLUSH) {
                        Ok(r) => {
                            collector.handle(r);
                            // Batch: write everything queued, flush once the queue is empty.
                            while let Ok(r) = rx.try_recv() {
                                collector.handle(r);
                            }
                            collector.flush_batch();
                        }
                        // Quiet for a while: what a terminal log holds goes out now.
                        Err(mpsc::RecvTimeoutError::Timeout) => collector.flush(),
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                collector.finish()
            })
            .expect("spawning the log thread at start-up");
        (Reporter::Channel(tx), CollectorThread { handle })
    }

    /// Waits for every reporter to be dropped and returns the totals.
    pub fn join(self) -> Summary {
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_wire_form() {
        let rs = [
            Record::Connection {
                peer: "[::1]:5000".into(),
                bytes_in: 1,
                bytes_out: 2,
                duration_us: 3,
                by: 4,
                exit: None,
            },
            Record::Connection {
                peer: "127.0.0.1:9".into(),
                bytes_in: 1,
                bytes_out: 2,
                duration_us: 3,
                by: 4,
                exit: Some(Exit::Signal(15)),
            },
            Record::Handed {
                peer: "unix".into(),
                duration_us: 3,
                by: 4,
                exit: Exit::Code(1),
            },
            Record::Stderr("127.0.0.1:9 pid 4: oops".into()),
            Record::Access("127.0.0.1 - - [x] \"GET / HTTP/1.1\" 200 5".into()),
            Record::Error("relay: upstream down".into()),
        ];
        for r in rs {
            let wire = r.encode();
            assert_eq!(wire.last(), Some(&b'\n'));
            assert_eq!(Record::decode(&wire[..wire.len() - 1]), Some(r));
        }
    }

    #[test]
    fn long_records_fit_one_atomic_pipe_write() {
        let r = Record::Access("x".repeat(10_000));
        assert_eq!(r.encode().len(), plumb_sys::PIPE_BUF);
    }

    #[test]
    fn summaries_count_in_words() {
        let mut c = Collector::new(&LogConfig {
            quiet: true,
            ..Default::default()
        })
        .unwrap();
        c.summary = Summary {
            connections: 1,
            bytes_in: 1,
            bytes_out: 2,
            requests: 0,
            handed: 0,
        };
        assert_eq!(
            c.summary_line(),
            "served 1 connection, 1 byte in, 2 bytes out"
        );
        c.requests = true;
        c.summary.connections = 0;
        assert_eq!(
            c.summary_line(),
            "served 0 connections, 0 requests, 1 byte in, 2 bytes out"
        );
    }

    #[test]
    fn ingest_handles_split_lines() {
        let mut c = Collector::new(&LogConfig {
            quiet: true,
            ..Default::default()
        })
        .unwrap();
        let wire = Record::Connection {
            peer: "p".into(),
            bytes_in: 10,
            bytes_out: 20,
            duration_us: 1,
            by: 1,
            exit: None,
        }
        .encode();
        let (a, b) = wire.split_at(5);
        c.ingest(a);
        assert_eq!(c.summary.connections, 0);
        c.ingest(b);
        c.ingest(&wire);
        assert_eq!(
            c.summary,
            Summary {
                connections: 2,
                bytes_in: 20,
                bytes_out: 40,
                requests: 0,
                handed: 0,
            }
        );
    }
}
