//! `plumb rpc call ADDR [METHOD [PARAMS]]`: a JSON-RPC 2.0 client, the netcat/curl of
//! JSON-RPC. It talks to HOST:PORT, `unix:/PATH` or `exec:COMMAND` (a program started with
//! `/bin/sh -c`, spoken to over its stdin/stdout, as an editor talks to a language server), in
//! any of proto's framings ([`plumb_proto::framing`]: the same encoder and decoder the server
//! uses, so there is no second parser of the wire).
//!
//! One call prints its result on stdout (exit 0) or its error object on stderr (exit 1);
//! `--batch` sends a batch and prints the array; without METHOD it reads requests line by line
//! (one response line out per request line in) or, on a terminal, runs a small prompt loop.
//!
//! Calls go one at a time: the next request is written when the previous one is answered,
//! which keeps the output in input order without buffering. Responses are matched by id; a
//! message from the server that answers something else (an LSP server's own notifications
//! and requests) is skipped. A response with `id: null` is the server saying it could not
//! read the request (-32700, -32600), so it answers the one outstanding.
//!
//! Blocking I/O with a reader thread per connection: the thread forwards what it reads over a
//! channel, so every wait (sockets and a child's pipe alike) has the same deadline,
//! `--timeout`, through `recv_timeout`.

use std::collections::BTreeMap;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use plumb_proto::framing::{BufDecoder, Framing, encode};
use serde_json::value::RawValue;

use crate::net::Addr;
use crate::usage::{seconds, usage};

/// Options of `plumb rpc call`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    plumb rpc call 127.0.0.1:7070 rpc.echo '{\"name\":\"plumb\"}'\n  \
    plumb rpc call unix:/tmp/rpc.sock date --notify\n  \
    plumb rpc call 127.0.0.1:7070 --batch calls.json\n  \
    printf 'rpc.echo [1]\\nrpc.discover\\n' | plumb rpc call 127.0.0.1:7070\n  \
    plumb rpc call --framing lsp exec:'plumb rpc serve --listen stdio --framing lsp' rpc.echo '[1]'\n\n\
    Without METHOD, each input line is 'METHOD [PARAMS]' or a whole JSON-RPC message ({...} or\n\
    [...], sent as it is); each answered line prints the whole response on one line.\n\
    Exit status: 0 when answered with a result, 1 for an error response (or any error in a\n\
    --batch answer) or a failure to talk to the server, 2 for a usage error.")]
pub struct CallArgs {
    /// The server: HOST:PORT, [V6]:PORT, unix:/PATH, or exec:COMMAND (a program started with
    /// /bin/sh -c, spoken to over its stdin and stdout).
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// The method to call; without it requests are read from stdin, one per line.
    #[arg(value_name = "METHOD")]
    pub method: Option<String>,
    /// The params: a JSON array or object (none when left out).
    #[arg(value_name = "PARAMS", requires = "method")]
    pub params: Option<String>,
    /// Send a notification (no id): the server answers nothing and nothing is printed.
    #[arg(long)]
    pub notify: bool,
    /// Send the JSON array in FILE (- for stdin) as one batch and print the answer array.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["method", "notify"])]
    pub batch: Option<PathBuf>,
    /// How messages are delimited: ndjson (one per line), lsp (Content-Length headers),
    /// len32 (4-byte big-endian length) or netstring.
    #[arg(long, value_name = "FRAMING", default_value_t = Framing::Ndjson)]
    pub framing: Framing,
    /// Seconds to wait for the connection and for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub timeout: f64,
    /// Largest answer accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_frame: usize,
}

/// Largest `--batch` input read.
const MAX_BATCH_INPUT: u64 = 64 << 20;
/// How long an `exec:` program may take to exit after its stdin is closed before its process
/// group is killed.
const EXEC_GRACE: Duration = Duration::from_secs(2);

/// Runs `plumb rpc call`; returns the exit code.
///
/// # Errors
/// Usage errors (exit 2: bad PARAMS, address, batch file) and failures to reach the server
/// or to get an answer from it (exit 1), each one line.
pub fn run(args: &CallArgs) -> anyhow::Result<i32> {
    let timeout = seconds("--timeout", args.timeout)?;
    if timeout.is_zero() {
        return Err(usage("--timeout must be more than 0"));
    }
    if args.max_frame == 0 {
        return Err(usage("--max-frame must be at least 1"));
    }
    // Everything the user wrote is checked before anything is started or connected.
    let first = match (&args.batch, &args.method) {
        (Some(path), _) => Some(batch_request(path)?),
        (None, Some(method)) => Some(Outgoing::call(
            method,
            args.params.as_deref(),
            (!args.notify).then_some(1),
        )?),
        (None, None) => None,
    };
    let target = Target::parse(&args.addr)?;
    let mut client = Client::open(target, args.framing, timeout, args.max_frame)?;
    let code = match first {
        Some(out) => one_shot(&mut client, &out, args.batch.is_some())?,
        None if io::stdin().is_terminal() => prompt_loop(&mut client, args.notify)?,
        None => line_mode(&mut client, args.notify)?,
    };
    client.close();
    Ok(code)
}

/// Sends one request (or batch, or notification) and prints its answer.
fn one_shot(client: &mut Client, out: &Outgoing, batch: bool) -> anyhow::Result<i32> {
    client.send(&out.body)?;
    let Some(want) = &out.want else {
        return Ok(0);
    };
    let answer = client.answer(want)?;
    if batch {
        return Ok(print_batch_answer(&answer));
    }
    print_call_answer(&answer)
}

/// A call's answer: the result on stdout (exit 0) or the error object on stderr (exit 1).
fn print_call_answer(answer: &Answer) -> anyhow::Result<i32> {
    if let Some(result) = answer.fields.get("result") {
        print_line(&mut io::stdout().lock(), result.get())?;
        Ok(0)
    } else if let Some(error) = answer.fields.get("error") {
        print_line(&mut io::stderr().lock(), error.get())?;
        Ok(1)
    } else {
        bail!(
            "the answer is not a JSON-RPC response (no result, no error): {}",
            excerpt(&answer.text)
        )
    }
}

/// A batch's answer: the array on stdout, exit 1 when any element is an error; an error object
/// instead of an array (an empty or invalid batch) on stderr, exit 1.
fn print_batch_answer(answer: &Answer) -> i32 {
    let text = one_line(&answer.text);
    match &answer.batch {
        Some(items) => {
            let _ = print_line(&mut io::stdout().lock(), &text);
            i32::from(items.iter().any(|r| r.contains_key("error")))
        }
        None => {
            let shown = answer
                .fields
                .get("error")
                .map_or(text.as_str(), |e| e.get());
            let _ = print_line(&mut io::stderr().lock(), shown);
            1
        }
    }
}

/// Requests read from a pipe, one per line; each answered one prints its whole response on
/// one line of stdout. Stops at the first line that cannot be sent (exit 1).
fn line_mode(client: &mut Client, notify: bool) -> anyhow::Result<i32> {
    let stdin = io::stdin();
    let mut stdout = io::stdout().lock();
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.context("cannot read stdin")?;
        let out = match Outgoing::from_line(&line, notify, client.next_id())
            .map_err(|e| anyhow!("line {}: {e}", n + 1))?
        {
            Some(out) => out,
            None => continue,
        };
        client.send(&out.body)?;
        if let Some(want) = &out.want {
            let answer = client.answer(want)?;
            print_line(&mut stdout, &one_line(&answer.text))?;
        }
    }
    Ok(0)
}

/// The prompt loop on a terminal: `rpc> METHOD [PARAMS]` (or a whole message); results on
/// stdout, error objects on stderr; a mistake in a line is reported and the loop goes on.
fn prompt_loop(client: &mut Client, notify: bool) -> anyhow::Result<i32> {
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    eprintln!(
        "connected to {}; type METHOD [PARAMS] or a JSON-RPC message, Ctrl-D to end",
        client.shown
    );
    loop {
        eprint!("rpc> ");
        let _ = io::stderr().flush();
        let Some(line) = lines.next() else {
            eprintln!();
            return Ok(0);
        };
        let line = line.context("cannot read stdin")?;
        let out = match Outgoing::from_line(&line, notify, client.next_id()) {
            Ok(Some(out)) => out,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("plumb: {e}");
                continue;
            }
        };
        client.send(&out.body)?;
        if let Some(want) = &out.want {
            let answer = client.answer(want)?;
            if answer.batch.is_some() {
                print_batch_answer(&answer);
            } else if let Err(e) = print_call_answer(&answer) {
                eprintln!("plumb: {e}");
            }
        }
    }
}

/// Writes `text` and a newline; a closed stdout (`| head`) is not an error worth a message.
fn print_line(w: &mut impl Write, text: &str) -> anyhow::Result<()> {
    match w
        .write_all(text.as_bytes())
        .and_then(|()| w.write_all(b"\n"))
    {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r
            .and_then(|()| w.flush())
            .context("cannot write the answer"),
    }
}

/// JSON on one line: a raw newline can only be whitespace between tokens (inside a string it
/// must be escaped), so it becomes a space without changing the value.
fn one_line(json: &str) -> String {
    json.replace(['\r', '\n'], " ")
}

/// The start of something unexpected, printable, for an error message.
fn excerpt(text: &str) -> String {
    let s: String = text.chars().filter(|c| !c.is_control()).take(80).collect();
    format!("'{s}'")
}

/// What answer a message waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// The response with this id (its JSON text, compared byte for byte as the server
    /// returns ids).
    Id(String),
    /// The answer to a batch: an array (or an error object with `id: null`).
    Batch,
    /// The answer to something the server cannot read: an error with `id: null`.
    NullId,
}

/// A message ready to send and what it waits for (`None`: a notification, nothing).
#[derive(Debug)]
struct Outgoing {
    body: Vec<u8>,
    want: Option<Want>,
}

impl Outgoing {
    /// A request for METHOD with PARAMS (checked: a JSON array or object) and `id`, or a
    /// notification when `id` is `None`.
    fn call(method: &str, params: Option<&str>, id: Option<u64>) -> anyhow::Result<Outgoing> {
        let mut body = String::from(r#"{"jsonrpc":"2.0","method":"#);
        body.push_str(&serde_json::to_string(method)?);
        if let Some(p) = params {
            let raw: &RawValue = serde_json::from_str(p)
                .map_err(|e| usage(format!("PARAMS is not JSON ({e}): {}", excerpt(p))))?;
            if !raw.get().starts_with(['[', '{']) {
                return Err(usage(format!(
                    "PARAMS must be a JSON array or object, not {}",
                    excerpt(raw.get())
                )));
            }
            body.push_str(r#","params":"#);
            body.push_str(&one_line(raw.get()));
        }
        let want = id.map(|id| {
            body.push_str(&format!(r#","id":{id}"#));
            Want::Id(id.to_string())
        });
        body.push('}');
        Ok(Outgoing {
            body: body.into_bytes(),
            want,
        })
    }

    /// A whole message as the user wrote it (a `{...}` or `[...]` line, or a batch file):
    /// sent as it is (on one line), waiting for what the server will answer it: the
    /// response with its id, nothing for a notification or a batch of only notifications,
    /// the batch answer, or (for what is not JSON) the parse error.
    fn raw(text: &str) -> Outgoing {
        let want = match Message::parse(text) {
            Err(_) => Some(Want::NullId),
            Ok(Message::One(fields)) => fields.get("id").map(|id| Want::Id(id.get().to_string())),
            Ok(Message::Batch(items)) => {
                let answered = items.is_empty()
                    || items.iter().any(|item| {
                        serde_json::from_str::<BTreeMap<String, &RawValue>>(item.get())
                            .map_or(true, |f| f.contains_key("id"))
                    });
                answered.then_some(Want::Batch)
            }
            // A scalar: an invalid request the server answers with id null.
            Ok(Message::Other) => Some(Want::NullId),
        };
        Outgoing {
            body: one_line(text.trim()).into_bytes(),
            want,
        }
    }

    /// One input line: blank (`None`), a whole message, or `METHOD [PARAMS]` with id `id`.
    fn from_line(line: &str, notify: bool, id: u64) -> anyhow::Result<Option<Outgoing>> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        if line.starts_with(['{', '[']) {
            return Ok(Some(Outgoing::raw(line)));
        }
        let (method, params) = match line.split_once(char::is_whitespace) {
            Some((m, p)) => (m, Some(p.trim())),
            None => (line, None),
        };
        Outgoing::call(method, params, (!notify).then_some(id)).map(Some)
    }
}

/// Reads `--batch FILE` (`-`: stdin): a JSON array, sent as one message.
fn batch_request(path: &std::path::Path) -> anyhow::Result<Outgoing> {
    let shown = path.display();
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        io::stdin()
            .lock()
            .take(MAX_BATCH_INPUT + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_BATCH_INPUT + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| usage(format!("--batch {shown}: {}", describe(&e))))?;
    if bytes.len() as u64 > MAX_BATCH_INPUT {
        return Err(usage(format!(
            "--batch {shown} is larger than {} MiB",
            MAX_BATCH_INPUT >> 20
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| usage(format!("--batch {shown} is not UTF-8 text")))?;
    match Message::parse(&text) {
        Ok(Message::Batch(_)) => Ok(Outgoing::raw(&text)),
        Ok(_) => Err(usage(format!(
            "--batch {shown} must hold a JSON array of requests"
        ))),
        Err(e) => Err(usage(format!("--batch {shown} is not JSON: {e}"))),
    }
}

/// A message's outline: the fields of an object (values kept as their JSON text, so ids of
/// any size compare exactly), the items of an array, or anything else.
enum Message<'a> {
    One(BTreeMap<String, &'a RawValue>),
    Batch(Vec<&'a RawValue>),
    Other,
}

impl<'a> Message<'a> {
    /// Parses `text` just far enough to say which it is.
    ///
    /// # Errors
    /// It is not JSON.
    fn parse(text: &'a str) -> Result<Message<'a>, serde_json::Error> {
        match text.trim_start().as_bytes().first() {
            Some(b'{') => serde_json::from_str(text).map(Message::One),
            Some(b'[') => serde_json::from_str(text).map(Message::Batch),
            _ => serde_json::from_str::<&RawValue>(text).map(|_| Message::Other),
        }
    }
}

/// A message received from the server.
#[derive(Debug)]
struct Answer {
    text: String,
    /// The object's fields (empty for an array).
    fields: BTreeMap<String, Box<RawValue>>,
    /// The fields of each item, for an array.
    batch: Option<Vec<BTreeMap<String, Box<RawValue>>>>,
}

impl Answer {
    /// Parses a frame's body.
    ///
    /// # Errors
    /// It is not UTF-8 JSON, or neither an object nor an array of objects.
    fn parse(body: &[u8]) -> Result<Answer, String> {
        let text = std::str::from_utf8(body)
            .map_err(|_| "an answer that is not UTF-8 text".to_string())?
            .to_string();
        let not_json =
            |e: serde_json::Error| format!("an answer that is not JSON ({e}): {}", excerpt(&text));
        if text.trim_start().starts_with('[') {
            let batch: Vec<BTreeMap<String, Box<RawValue>>> =
                serde_json::from_str(&text).map_err(not_json)?;
            Ok(Answer {
                text,
                fields: BTreeMap::new(),
                batch: Some(batch),
            })
        } else {
            let fields: BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(&text).map_err(not_json)?;
            Ok(Answer {
                text,
                fields,
                batch: None,
            })
        }
    }

    /// Whether this answers what `want` waits for.
    fn answers(&self, want: &Want) -> bool {
        if self.batch.is_some() {
            return *want == Want::Batch;
        }
        if self.fields.contains_key("method") {
            // The server's own request or notification, not an answer.
            return false;
        }
        match self.fields.get("id").map(|id| id.get()) {
            // The server could not read what it got: that is the one outstanding.
            Some("null") | None => self.fields.contains_key("error"),
            Some(id) => matches!(want, Want::Id(w) if w == id),
        }
    }
}

/// Where `rpc call` connects.
#[derive(Debug)]
enum Target {
    Socket(Addr),
    Exec(String),
}

impl Target {
    fn parse(s: &str) -> anyhow::Result<Target> {
        if let Some(cmd) = s.strip_prefix("exec:") {
            if cmd.trim().is_empty() {
                return Err(usage(
                    "exec: needs a command, e.g. exec:'plumb rpc serve --listen stdio'",
                ));
            }
            return Ok(Target::Exec(cmd.to_string()));
        }
        Addr::parse(s, None).map(Target::Socket).map_err(|e| {
            usage(format!(
                "{e} (expected HOST:PORT, unix:/PATH or exec:COMMAND)"
            ))
        })
    }
}

/// What the reader thread forwards.
enum Input {
    Bytes(Vec<u8>),
    Eof,
    Failed(io::Error),
}

/// The open connection's write side.
enum Link {
    Tcp(TcpStream),
    Unix(UnixStream),
    Exec {
        child: Child,
        stdin: Option<ChildStdin>,
    },
}

/// A connection to a JSON-RPC server.
struct Client {
    link: Link,
    rx: Receiver<Input>,
    decoder: BufDecoder,
    framing: Framing,
    timeout: Duration,
    /// The peer's EOF has been seen.
    closed: bool,
    next_id: u64,
    /// The address as the user wrote it, for messages.
    shown: String,
}

impl Client {
    /// Connects (or starts the program) and starts the reader thread.
    ///
    /// # Errors
    /// The connection is refused, times out, or the program cannot be started.
    fn open(
        target: Target,
        framing: Framing,
        timeout: Duration,
        max_frame: usize,
    ) -> anyhow::Result<Client> {
        let (link, reader, shown): (Link, Box<dyn Read + Send>, String) = match target {
            Target::Socket(addr) => {
                let shown = addr.to_string();
                match &addr {
                    Addr::Unix(path) => {
                        let s = UnixStream::connect(path).map_err(|e| {
                            anyhow!("cannot connect to {shown}: {}", describe_connect(&e))
                        })?;
                        s.set_write_timeout(Some(timeout))?;
                        let r = s.try_clone()?;
                        (Link::Unix(s), Box::new(r), shown)
                    }
                    Addr::Tcp { .. } => {
                        let s = connect_tcp(&addr, timeout)
                            .map_err(|e| anyhow!("cannot connect to {shown}: {e}"))?;
                        s.set_write_timeout(Some(timeout))?;
                        let _ = s.set_nodelay(true);
                        let r = s.try_clone()?;
                        (Link::Tcp(s), Box::new(r), shown)
                    }
                }
            }
            Target::Exec(cmd) => {
                let shown = format!("exec:{cmd}");
                let mut child = Command::new("/bin/sh")
                    .arg("-c")
                    .arg(&cmd)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    // Its own process group, so whatever it starts can be ended with it.
                    .process_group(0)
                    .spawn()
                    .map_err(|e| anyhow!("cannot start {shown}: {}", describe(&e)))?;
                let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("cannot start {shown}: no pipes");
                };
                (
                    Link::Exec {
                        child,
                        stdin: Some(stdin),
                    },
                    Box::new(stdout),
                    shown,
                )
            }
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("rpc-call-reader".into())
            .spawn(move || read_into(reader, &tx))
            .context("cannot start the reader thread")?;
        Ok(Client {
            link,
            rx,
            decoder: BufDecoder::new(framing, max_frame),
            framing,
            timeout,
            closed: false,
            next_id: 1,
            shown,
        })
    }

    /// The id for the next generated request.
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Frames `body` and writes it.
    ///
    /// # Errors
    /// The server has gone (closed, reset) or does not read within the timeout.
    fn send(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(body.len() + 32);
        encode(self.framing, body, &mut frame);
        let written = match &mut self.link {
            Link::Tcp(s) => s.write_all(&frame),
            Link::Unix(s) => s.write_all(&frame),
            Link::Exec { stdin, .. } => match stdin {
                Some(w) => w.write_all(&frame).and_then(|()| w.flush()),
                None => Err(io::ErrorKind::BrokenPipe.into()),
            },
        };
        written.map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => self.gone("before the request was sent"),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => anyhow!(
                "{} did not read the request within {}",
                self.shown,
                secs(self.timeout)
            ),
            _ => anyhow!("cannot send to {}: {}", self.shown, describe(&e)),
        })
    }

    /// Waits for the message that answers `want`, skipping others.
    ///
    /// # Errors
    /// No answer within the timeout, the server closed first, or sent what is not framed
    /// JSON.
    fn answer(&mut self, want: &Want) -> anyhow::Result<Answer> {
        let deadline = Instant::now() + self.timeout;
        loop {
            loop {
                let frame = match self.decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => bail!(
                        "{} answered what is not {} framing ({e}); is --framing right?",
                        self.shown,
                        self.framing
                    ),
                };
                let answer =
                    Answer::parse(frame).map_err(|e| anyhow!("{} sent {e}", self.shown))?;
                if answer.answers(want) {
                    return Ok(answer);
                }
                log::debug!("skipped a message that answers something else");
            }
            if self.closed {
                return Err(self.gone("before answering"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Input::Bytes(b)) => self.decoder.push(&b),
                Ok(Input::Eof) | Err(RecvTimeoutError::Disconnected) => self.closed = true,
                Ok(Input::Failed(e)) => {
                    bail!("cannot read from {}: {}", self.shown, describe(&e))
                }
                Err(RecvTimeoutError::Timeout) => {
                    let held = self.decoder.buffered();
                    let hint = if held > 0 {
                        format!(
                            " ({held} bytes came that are no complete {} frame; is --framing right?)",
                            self.framing
                        )
                    } else {
                        String::new()
                    };
                    bail!(
                        "no answer from {} within {}{hint}",
                        self.shown,
                        secs(self.timeout)
                    );
                }
            }
        }
    }

    /// "the server closed the connection WHEN", or for a program that exited, how.
    fn gone(&mut self, when: &str) -> anyhow::Error {
        if let Link::Exec { child, .. } = &mut self.link {
            // Its stdout closed; give it a moment to be reaped so the status can be told.
            let until = Instant::now() + Duration::from_millis(500);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        return anyhow!("{} exited {when} ({status})", self.shown);
                    }
                    Ok(None) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    _ => return anyhow!("{} closed its stdout {when}", self.shown),
                }
            }
        }
        anyhow!("{} closed the connection {when}", self.shown)
    }

    /// Ends the conversation: a socket is shut down; a program gets EOF on its stdin and a
    /// moment to exit, then its process group is killed. Always reaped.
    fn close(&mut self) {
        match &mut self.link {
            Link::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Link::Unix(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Link::Exec { child, stdin } => {
                drop(stdin.take());
                let until = Instant::now() + EXEC_GRACE;
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() < until => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Ok(None) => {
                            if let Ok(pid) = i32::try_from(child.id()) {
                                let _ = plumb_sys::kill(-pid, plumb_sys::signal::SIGKILL);
                            }
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// The reader thread: forwards everything read until EOF or an error.
fn read_into(mut r: Box<dyn Read + Send>, tx: &mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let msg = match r.read(&mut buf) {
            Ok(0) => Input::Eof,
            Ok(n) => Input::Bytes(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A reset after the peer closed reads as its end.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Input::Eof,
            Err(e) => Input::Failed(e),
        };
        let last = !matches!(msg, Input::Bytes(_));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}

/// Connects to every resolved address in turn, each within `timeout`.
fn connect_tcp(addr: &Addr, timeout: Duration) -> Result<TcpStream, String> {
    let addrs = addr.resolve().map_err(|e| e.to_string())?;
    let mut last = String::from("no address");
    for sa in addrs {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = describe_connect(&e),
        }
    }
    Err(last)
}

fn describe_connect(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such socket".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        _ => describe(e),
    }
}

/// A short, lower-case description of an OS error ("connection refused").
fn describe(e: &io::Error) -> String {
    let s = match e.kind() {
        io::ErrorKind::NotFound => return "no such file".into(),
        io::ErrorKind::ConnectionRefused => return "connection refused".into(),
        io::ErrorKind::PermissionDenied => return "permission denied".into(),
        _ => e.to_string(),
    };
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        Answer::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn requests_are_built_with_params_verbatim() {
        let out = Outgoing::call(
            "rpc.echo",
            Some("{\n \"n\": 12345678901234567890123 }"),
            Some(7),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"{"jsonrpc":"2.0","method":"rpc.echo","params":{  "n": 12345678901234567890123 },"id":7}"#
        );
        assert_eq!(out.want, Some(Want::Id("7".into())));
        let out = Outgoing::call("a\"b", None, None).unwrap();
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"{"jsonrpc":"2.0","method":"a\"b"}"#
        );
        assert_eq!(out.want, None);
        for bad in ["{", "3", "\"x\"", "[1] [2]", "null"] {
            assert!(Outgoing::call("m", Some(bad), Some(1)).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_are_calls_messages_or_nothing() {
        let want = |line: &str, notify: bool| {
            Outgoing::from_line(line, notify, 5)
                .unwrap()
                .map(|o| o.want)
        };
        assert_eq!(want("   ", false), None);
        assert_eq!(
            want("rpc.echo [1]", false),
            Some(Some(Want::Id("5".into())))
        );
        assert_eq!(want("rpc.echo [1]", true), Some(None));
        assert_eq!(
            want(r#"{"jsonrpc":"2.0","method":"m","id":"x y"}"#, false),
            Some(Some(Want::Id("\"x y\"".into())))
        );
        assert_eq!(want(r#"{"jsonrpc":"2.0","method":"m"}"#, false), Some(None));
        assert_eq!(
            want(r#"[{"jsonrpc":"2.0","method":"m"}]"#, false),
            Some(None)
        );
        assert_eq!(want("[]", false), Some(Some(Want::Batch)));
        assert_eq!(want("[1]", false), Some(Some(Want::Batch)));
        assert_eq!(
            want(r#"[{"method":"m"},{"method":"m","id":1}]"#, false),
            Some(Some(Want::Batch))
        );
        assert_eq!(want("{not json", false), Some(Some(Want::NullId)));
        assert!(Outgoing::from_line("m {bad", false, 1).is_err());
    }

    #[test]
    fn answers_match_by_id_and_skip_the_servers_own_messages() {
        let id = Want::Id("12345678901234567890123".into());
        assert!(
            answer(r#"{"jsonrpc":"2.0","result":1,"id":12345678901234567890123}"#).answers(&id)
        );
        assert!(
            !answer(r#"{"jsonrpc":"2.0","result":1,"id":12345678901234567890124}"#).answers(&id)
        );
        assert!(
            !answer(r#"{"jsonrpc":"2.0","method":"window/logMessage","params":{}}"#).answers(&id)
        );
        assert!(
            !answer(r#"{"jsonrpc":"2.0","method":"x","id":12345678901234567890123}"#).answers(&id)
        );
        let parse_error = answer(
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#,
        );
        assert!(parse_error.answers(&id) && parse_error.answers(&Want::NullId));
        assert!(parse_error.answers(&Want::Batch));
        assert!(answer(r#"[{"jsonrpc":"2.0","result":1,"id":1}]"#).answers(&Want::Batch));
        assert!(!answer(r#"[{"jsonrpc":"2.0","result":1,"id":1}]"#).answers(&Want::Id("1".into())));
        assert!(Answer::parse(b"\xff").is_err());
        assert!(Answer::parse(b"not json").is_err());
        assert!(Answer::parse(b"3").is_err());
    }

    #[test]
    fn targets_parse_or_say_what_is_expected() {
        assert!(matches!(Target::parse("exec:cat").unwrap(), Target::Exec(c) if c == "cat"));
        assert!(matches!(
            Target::parse("unix:/tmp/x").unwrap(),
            Target::Socket(Addr::Unix(_))
        ));
        assert!(matches!(
            Target::parse("127.0.0.1:7070").unwrap(),
            Target::Socket(Addr::Tcp { .. })
        ));
        for bad in ["exec:", "exec:  ", "nohost", "unix:", "http://127.0.0.1:1/"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_line_keeps_the_value() {
        let pretty = "{\n  \"a\": [1,\r\n 2]\n}";
        let flat = one_line(pretty);
        assert!(!flat.contains('\n'));
        let a: serde_json::Value = serde_json::from_str(pretty).unwrap();
        let b: serde_json::Value = serde_json::from_str(&flat).unwrap();
        assert_eq!(a, b);
    }
}
