//! The JSON-RPC server session: frames in ([`crate::framing`]), calls dispatched, responses
//! out in the same framing, matched by id. Built-in methods answer at once; a command method
//! runs one child per call (`/bin/sh -c COMMAND`, params as JSON on its stdin), many side by
//! side in one session, each answered as soon as it finishes, so a slow command never holds
//! back a fast one.
//!
//! Bounded everywhere: a command's stdout is kept up to `max_frame` bytes (past that it is
//! killed and the call gets -32002), its stderr only as its last 4 KiB; a connection holds at
//! most [`MAX_CALLS_PER_CONNECTION`] calls and [`OUT_WINDOW`] bytes of unsent responses
//! before it stops reading; at most `max_calls` commands run at once in the whole server
//! ([`CallSlots`], shared by every session of a service): a call that finds none free waits,
//! trying again every [`SLOT_RETRY`].
//!
//! The client's EOF ends the session: calls still running are killed and answered -32003 (a
//! client that only half-closed reads that; one that vanished reads nothing, and its
//! commands do not run on for nobody), unless [`Config::finish_on_eof`] (stdin/stdout, where
//! closing stdin is how a script says "that was all") lets them finish first. A drain
//! stops reading, finishes the calls received, then closes.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use serde_json::value::RawValue;

use super::code;
use super::encode::{self, NULL_ID};
use super::message::{self, Call as Parsed, MAX_DEPTH, Message, MessageError, Request};
use crate::framing::{self, Decoder, FrameError, Framing};
use crate::session::{Action, ChildId, Exit, OutBuf, Peer, Session, SpawnRequest, Stdio};

/// Most calls (built-in answers pending, commands queued or running) one connection holds
/// before it stops reading more requests.
pub const MAX_CALLS_PER_CONNECTION: usize = 1024;
/// Most bytes of unsent responses before the session stops reading: a client that sends
/// without reading is slowed by flow control, not buffered for.
pub const OUT_WINDOW: usize = 256 * 1024;
/// How much of a command's stderr an error carries: the end, where the reason usually is.
pub const STDERR_TAIL: usize = 4 * 1024;
/// How often a call waiting for a free command slot looks again.
pub const SLOT_RETRY: Duration = Duration::from_millis(2);
/// After a kill, how long a child's pipes may stay open (held by a process that left the
/// group) before the session closes them itself.
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// Linux's SIGKILL (proto has no libc).
const SIGKILL: i32 = 9;

/// A method served by running a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMethod {
    pub name: String,
    /// Run with `/bin/sh -c`.
    pub command: String,
}

/// Server-wide count of commands running, against `--max-calls`.
#[derive(Debug)]
pub struct CallSlots {
    limit: usize,
    running: AtomicUsize,
}

impl CallSlots {
    pub fn new(limit: usize) -> CallSlots {
        CallSlots {
            limit,
            running: AtomicUsize::new(0),
        }
    }

    /// Commands running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    fn acquire(self: &Arc<Self>) -> Option<Slot> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }
}

/// One taken slot, given back when dropped (the command was reaped, or the session ended:
/// the driver kills and reaps what is left).
#[derive(Debug)]
struct Slot(Arc<CallSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a server's sessions share.
#[derive(Debug)]
pub struct Config {
    pub framing: Framing,
    pub max_frame: usize,
    pub max_batch: usize,
    pub call_timeout: Duration,
    pub methods: Vec<CommandMethod>,
    pub slots: Arc<CallSlots>,
    /// Produce one access-log line per call ([`Session::take_log`]).
    pub log: bool,
    /// At the client's EOF, let calls in flight finish and answer them (stdin/stdout) instead
    /// of killing them.
    pub finish_on_eof: bool,
    discover: Vec<u8>,
}

/// A `--method` that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMethod(pub String);

impl std::fmt::Display for BadMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadMethod {}

/// The built-in methods (the `rpc.` prefix is reserved by the specification for them).
pub const BUILTINS: [&str; 2] = ["rpc.discover", "rpc.echo"];

impl Config {
    /// A configuration; `methods` must have distinct, non-empty names outside `rpc.`.
    ///
    /// # Errors
    /// [`BadMethod`] naming the first method that cannot be served.
    pub fn new(
        framing: Framing,
        max_frame: usize,
        max_batch: usize,
        call_timeout: Duration,
        methods: Vec<CommandMethod>,
        max_calls: usize,
    ) -> Result<Config, BadMethod> {
        for (i, m) in methods.iter().enumerate() {
            if m.name.is_empty() {
                return Err(BadMethod("a method name cannot be empty".into()));
            }
            if m.name.starts_with("rpc.") {
                return Err(BadMethod(format!(
                    "method {}: names starting with 'rpc.' are reserved for the built-ins",
                    m.name
                )));
            }
            if methods[..i].iter().any(|o| o.name == m.name) {
                return Err(BadMethod(format!("method {} is given twice", m.name)));
            }
            if m.command.trim().is_empty() {
                return Err(BadMethod(format!(
                    "method {}: the command is empty",
                    m.name
                )));
            }
        }
        let discover = discover_document(&methods);
        Ok(Config {
            framing,
            max_frame,
            max_batch,
            call_timeout,
            methods,
            slots: Arc::new(CallSlots::new(max_calls)),
            log: false,
            finish_on_eof: false,
            discover,
        })
    }

    /// The OpenRPC document `rpc.discover` returns.
    pub fn discover(&self) -> &[u8] {
        &self.discover
    }
}

/// The OpenRPC description of the methods (the specification's service discovery: the
/// method named `rpc.discover` returns it).
fn discover_document(methods: &[CommandMethod]) -> Vec<u8> {
    let any = json!({"name": "result", "schema": true});
    let mut list = vec![
        json!({"name": "rpc.discover", "summary": "This OpenRPC document.",
               "params": [], "result": {"name": "OpenRPC document", "schema": {"type": "object"}}}),
        json!({"name": "rpc.echo", "summary": "Returns its params.", "paramStructure": "either",
               "params": [], "result": any}),
    ];
    for m in methods {
        list.push(json!({
            "name": m.name,
            "summary": "A command: params as JSON on its stdin, its stdout the result.",
            "paramStructure": "either",
            "params": [],
            "result": any,
        }));
    }
    let doc = json!({
        "openrpc": "1.3.2",
        "info": {"title": "plumb rpc", "version": env!("CARGO_PKG_VERSION")},
        "methods": list,
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Where a call's answer goes: straight out, or into its batch.
type BatchIndex = usize;

#[derive(Debug)]
struct Batch {
    pending: usize,
    responses: Vec<Vec<u8>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a slot (server-wide) or a child slot of this session.
    Queued,
    /// Spawn asked; the outcome not yet known.
    Spawning,
    Running,
}

/// A command call from its arrival until its child is reaped and its pipes closed.
#[derive(Debug)]
struct CommandCall {
    method: usize,
    /// The raw id; `None` for a notification.
    id: Option<Box<[u8]>>,
    batch: Option<BatchIndex>,
    received: Instant,
    phase: Phase,
    child: Option<ChildId>,
    slot: Option<Slot>,
    spawn: Option<SpawnRequest>,
    /// The params, written to the child's stdin and then dropped.
    stdin: Vec<u8>,
    stdin_written: usize,
    stdin_open: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_eof: bool,
    stderr_eof: bool,
    exit: Option<Exit>,
    deadline: Option<Instant>,
    /// Answered already (timed out, overflowed, cancelled): the child is only being cleaned up.
    settled: bool,
    killed_at: Option<Instant>,
}

impl CommandCall {
    fn finished(&self) -> bool {
        self.exit.is_some() && self.stdout_eof && self.stderr_eof
    }
}

#[derive(Debug, Clone, Copy)]
enum Todo {
    Spawn(ChildId),
    Kill(ChildId),
    ClosePipe(Peer),
}

/// One connection of the JSON-RPC server.
#[derive(Debug)]
pub struct RpcSession {
    cfg: Arc<Config>,
    peer: String,
    decoder: Decoder,
    out: OutBuf,
    scratch: Vec<u8>,
    calls: Vec<CommandCall>,
    batches: Vec<Option<Batch>>,
    todo: VecDeque<Todo>,
    next_child: u8,
    retry_at: Option<Instant>,
    client_eof: bool,
    draining: bool,
    /// A framing error was answered: close once it is written.
    fatal: bool,
    closed: bool,
    log: VecDeque<String>,
}

impl RpcSession {
    pub fn new(cfg: Arc<Config>, peer: &str) -> RpcSession {
        RpcSession {
            decoder: Decoder::new(cfg.framing, cfg.max_frame),
            cfg,
            peer: peer.to_string(),
            out: OutBuf::default(),
            scratch: Vec::new(),
            calls: Vec::new(),
            batches: Vec::new(),
            todo: VecDeque::new(),
            next_child: 0,
            retry_at: None,
            client_eof: false,
            draining: false,
            fatal: false,
            closed: false,
            log: VecDeque::new(),
        }
    }

    /// Calls not yet answered (commands queued or running, notifications included).
    fn unsettled(&self) -> usize {
        self.calls.iter().filter(|c| !c.settled).count()
    }

    fn reading(&self) -> bool {
        !self.client_eof && !self.draining && !self.fatal && !self.closed
    }

    /// Whether another request may be taken now.
    fn has_room(&self) -> bool {
        self.out.len() < OUT_WINDOW && self.calls.len() < MAX_CALLS_PER_CONNECTION
    }

    /// Queues `body` (one response, or a batch's array) framed for the client.
    fn send(&mut self, body: &[u8]) {
        framing::encode(self.cfg.framing, body, self.out.vec());
    }

    /// A call's response (`None` for a notification's) reaches its destination.
    fn deliver(&mut self, batch: Option<BatchIndex>, response: Option<Vec<u8>>) {
        let Some(b) = batch else {
            if let Some(r) = response {
                self.send(&r);
            }
            return;
        };
        let Some(Some(entry)) = self.batches.get_mut(b) else {
            return;
        };
        if let Some(r) = response {
            entry.responses.push(r);
        }
        entry.pending -= 1;
        if entry.pending > 0 {
            return;
        }
        let Some(done) = self.batches[b].take() else {
            return;
        };
        while self.batches.last().is_some_and(Option::is_none) {
            self.batches.pop();
        }
        // A batch of only notifications gets nothing at all, not even `[]`.
        if !done.responses.is_empty() {
            let mut body = std::mem::take(&mut self.scratch);
            body.clear();
            encode::batch(&done.responses, &mut body);
            self.send(&body);
            self.scratch = body;
        }
    }

    fn log_line(&mut self, method: &str, id: Option<&[u8]>, outcome: &str, took: Duration) {
        if !self.cfg.log {
            return;
        }
        // The method as a JSON string and the id as received (JSON cannot hold a raw control
        // character), so a client cannot forge log lines and fields stay unambiguous.
        let mut quoted = Vec::with_capacity(method.len() + 2);
        encode::string(method, &mut quoted);
        let mut line = String::with_capacity(64);
        let _ = write!(
            line,
            "{} {} {} {} {:.3}ms",
            self.peer,
            String::from_utf8_lossy(&quoted),
            id.map_or(std::borrow::Cow::Borrowed("-"), String::from_utf8_lossy),
            outcome,
            took.as_secs_f64() * 1000.0
        );
        self.log.push_back(line);
    }

    /// Answers a failure of the whole message (id null) and logs it.
    fn message_error(&mut self, code: i32, data: Option<&[u8]>) {
        let mut body = Vec::new();
        encode::error(NULL_ID, code, None, data, &mut body);
        self.send(&body);
        self.log_line("-", None, &format!("error {code}"), Duration::ZERO);
    }

    fn frame(&mut self, body: &[u8], now: Instant) {
        let calls = match message::parse(body, self.cfg.max_batch) {
            Err(MessageError::Parse(why)) => {
                let mut data = Vec::new();
                encode::string(why, &mut data);
                return self.message_error(code::PARSE_ERROR, Some(&data));
            }
            Err(MessageError::EmptyBatch) => {
                return self.message_error(code::INVALID_REQUEST, Some(b"\"empty batch\""));
            }
            Err(MessageError::BatchTooLarge { len, max }) => {
                let data = format!("{{\"batch\":{len},\"max_batch\":{max}}}");
                return self.message_error(code::INVALID_REQUEST, Some(data.as_bytes()));
            }
            Ok(Message::Single(call)) => return self.dispatch(call, None, now),
            Ok(Message::Batch(calls)) => calls,
        };
        let b = match self.batches.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.batches.push(None);
                self.batches.len() - 1
            }
        };
        self.batches[b] = Some(Batch {
            pending: calls.len(),
            responses: Vec::new(),
        });
        for call in calls {
            self.dispatch(call, Some(b), now);
        }
    }

    fn dispatch(&mut self, call: Parsed<'_>, batch: Option<BatchIndex>, now: Instant) {
        let req = match call {
            Err(invalid) => {
                let id = invalid.id.map_or(NULL_ID, |i| i.get().as_bytes());
                let mut data = Vec::new();
                encode::string(invalid.why, &mut data);
                let mut r = Vec::new();
                encode::error(id, code::INVALID_REQUEST, None, Some(&data), &mut r);
                self.log_line(
                    "-",
                    invalid.id.map(|i| i.get().as_bytes()),
                    "error -32600",
                    Duration::ZERO,
                );
                return self.deliver(batch, Some(r));
            }
            Ok(req) => req,
        };
        let id = req.id.map(|i| i.get().as_bytes());
        let answer = match req.method.as_ref() {
            "rpc.echo" => {
                let mut result = Vec::new();
                match req.params {
                    Some(p) => encode::minify(p.get().as_bytes(), &mut result),
                    None => result.extend_from_slice(b"null"),
                }
                Ok(result)
            }
            "rpc.discover" if !no_params(req.params) => {
                Err((code::INVALID_PARAMS, "rpc.discover takes no params"))
            }
            "rpc.discover" => Ok(self.cfg.discover.clone()),
            name => match self.cfg.methods.iter().position(|m| m.name == name) {
                Some(method) => return self.enqueue(method, &req, batch, now),
                None => Err((code::METHOD_NOT_FOUND, "")),
            },
        };
        let outcome = match &answer {
            Ok(_) => "ok".to_string(),
            Err((c, _)) => format!("error {c}"),
        };
        self.log_line(&req.method, id, &outcome, Duration::ZERO);
        let response = id.map(|id| {
            let mut r = Vec::new();
            match answer {
                Ok(result) => encode::result(id, &result, &mut r),
                Err((c, why)) => {
                    let mut data = Vec::new();
                    if !why.is_empty() {
                        encode::string(why, &mut data);
                    } else {
                        encode::string(&req.method, &mut data);
                    }
                    encode::error(id, c, None, Some(&data), &mut r);
                }
            }
            r
        });
        self.deliver(batch, response);
    }

    fn enqueue(
        &mut self,
        method: usize,
        req: &Request<'_>,
        batch: Option<BatchIndex>,
        now: Instant,
    ) {
        self.calls.push(CommandCall {
            method,
            id: req.id.map(|i| i.get().as_bytes().into()),
            batch,
            received: now,
            phase: Phase::Queued,
            child: None,
            slot: None,
            spawn: None,
            stdin: req
                .params
                .map(|p| p.get().as_bytes().to_vec())
                .unwrap_or_default(),
            stdin_written: 0,
            stdin_open: true,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_eof: false,
            stderr_eof: false,
            exit: None,
            deadline: None,
            settled: false,
            killed_at: None,
        });
        self.start_queued(now);
    }

    /// A child slot of this session not in use, taken round-robin so a slot just freed is
    /// the last to be used again.
    fn free_child(&mut self) -> Option<ChildId> {
        for _ in 0..=255u16 {
            let id = ChildId(self.next_child);
            self.next_child = self.next_child.wrapping_add(1);
            if !self.calls.iter().any(|c| c.child == Some(id)) {
                return Some(id);
            }
        }
        None
    }

    /// Starts queued calls, in arrival order, while slots are free.
    fn start_queued(&mut self, now: Instant) {
        self.retry_at = None;
        for i in 0..self.calls.len() {
            if self.calls[i].phase != Phase::Queued || self.calls[i].settled {
                continue;
            }
            let Some(slot) = self.cfg.slots.acquire() else {
                self.retry_at = Some(now + SLOT_RETRY);
                return;
            };
            let Some(child) = self.free_child() else {
                return; // 256 children in this session: the next exit frees one.
            };
            let cfg = Arc::clone(&self.cfg);
            let call = &mut self.calls[i];
            let method = &cfg.methods[call.method];
            let mut env = vec![
                ("PLUMB_RPC_METHOD".to_string(), method.name.clone()),
                ("PLUMB_RPC_PEER".to_string(), self.peer.clone()),
            ];
            if let Some(id) = &call.id {
                env.push((
                    "PLUMB_RPC_ID".to_string(),
                    String::from_utf8_lossy(id).into_owned(),
                ));
            }
            call.spawn = Some(SpawnRequest {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), method.command.clone()],
                env,
                clear_env: false,
                cwd: None,
            });
            call.phase = Phase::Spawning;
            call.child = Some(child);
            call.slot = Some(slot);
            self.todo.push_back(Todo::Spawn(child));
        }
    }

    fn call_index(&self, child: ChildId) -> Option<usize> {
        self.calls.iter().position(|c| c.child == Some(child))
    }

    /// Answers call `i` (unless it already was) with `result` or an error.
    fn settle(&mut self, i: usize, answer: Result<Vec<u8>, (i32, Vec<u8>)>, now: Instant) {
        let call = &mut self.calls[i];
        if call.settled {
            return;
        }
        call.settled = true;
        call.stdin = Vec::new();
        let (id, batch, method, took) = (
            call.id.take(),
            call.batch,
            call.method,
            now.saturating_duration_since(call.received),
        );
        let outcome = match &answer {
            Ok(_) => "ok".to_string(),
            Err((c, _)) => format!("error {c}"),
        };
        let name = Arc::clone(&self.cfg);
        self.log_line(&name.methods[method].name, id.as_deref(), &outcome, took);
        let response = id.map(|id| {
            let mut r = Vec::new();
            match answer {
                Ok(result) => encode::result(&id, &result, &mut r),
                Err((c, data)) => encode::error(&id, c, None, Some(&data), &mut r),
            }
            r
        });
        self.deliver(batch, response);
    }

    /// Ends call `i` early with an error and kills its command's process group. The call
    /// stays until its child is reaped and its pipes are closed (the caller sweeps).
    fn abort(&mut self, i: usize, code: i32, data: Vec<u8>, now: Instant) {
        self.settle(i, Err((code, data)), now);
        let call = &mut self.calls[i];
        if call.phase != Phase::Queued && call.killed_at.is_none() {
            // From now on the pipes get PIPE_GRACE to close, even when the child itself has
            // exited already and a process it left in the group holds them.
            call.killed_at = Some(now);
            if let (Some(c), None) = (call.child, call.exit) {
                self.todo.push_back(Todo::Kill(c));
            }
        }
    }

    /// Settles calls whose command finished, and forgets calls with nothing left to wait for
    /// (their slots become free).
    fn sweep(&mut self, now: Instant) {
        let mut freed = false;
        let mut i = 0;
        while i < self.calls.len() {
            let call = &self.calls[i];
            if call.phase == Phase::Running && call.finished() && !call.settled {
                let answer = self.outcome(i);
                self.settle(i, answer, now);
            }
            let call = &self.calls[i];
            let gone = call.settled && (call.phase == Phase::Queued || call.finished());
            if gone {
                self.calls.swap_remove(i);
                freed = true;
            } else {
                i += 1;
            }
        }
        if freed || self.retry_at.is_some() {
            self.start_queued(now);
        }
    }

    /// The answer of a command that ran to its end.
    fn outcome(&self, i: usize) -> Result<Vec<u8>, (i32, Vec<u8>)> {
        let call = &self.calls[i];
        let stderr = String::from_utf8_lossy(&call.stderr);
        let mut data = Vec::new();
        match call.exit {
            Some(Exit::Code(0)) => {
                let mut result = Vec::new();
                let out = &call.stdout;
                let is_json = !message::too_deep(out, MAX_DEPTH)
                    && serde_json::from_slice::<&RawValue>(out).is_ok();
                if is_json {
                    encode::minify(out, &mut result);
                } else {
                    let text = String::from_utf8_lossy(out);
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    encode::string(text, &mut result);
                }
                return Ok(result);
            }
            Some(Exit::Code(n)) => {
                data.extend_from_slice(format!("{{\"exit\":{n},\"stderr\":").as_bytes());
            }
            Some(Exit::Signal(s)) => {
                data.extend_from_slice(format!("{{\"signal\":{s},\"stderr\":").as_bytes());
            }
            None => return Err((code::INTERNAL_ERROR, b"null".to_vec())),
        }
        encode::string(&stderr, &mut data);
        data.push(b'}');
        Err((code::COMMAND_FAILED, data))
    }
}

/// Absent, `[]` or `{}`.
fn no_params(p: Option<&RawValue>) -> bool {
    p.is_none_or(|p| {
        let inner = &p.get()[1..p.get().len() - 1];
        inner.trim_ascii().is_empty()
    })
}

impl Session for RpcSession {
    fn feed(&mut self, peer: Peer, input: &[u8], now: Instant) -> usize {
        match peer {
            Peer::Client => {}
            Peer::Child(child, stream) => {
                let Some(i) = self.call_index(child) else {
                    return input.len();
                };
                let max = self.cfg.max_frame;
                let call = &mut self.calls[i];
                match stream {
                    Stdio::Stdout if call.stdout.len() + input.len() > max => {
                        call.stdout = Vec::new();
                        let data = format!("{{\"max_frame\":{max}}}").into_bytes();
                        if !call.settled {
                            self.abort(i, code::RESULT_TOO_LARGE, data, now);
                            self.sweep(now);
                        }
                    }
                    Stdio::Stdout if !call.settled => call.stdout.extend_from_slice(input),
                    Stdio::Stderr if !call.settled => {
                        call.stderr.extend_from_slice(input);
                        if call.stderr.len() > 2 * STDERR_TAIL {
                            let cut = call.stderr.len() - STDERR_TAIL;
                            call.stderr.drain(..cut);
                        }
                    }
                    _ => {}
                }
                return input.len();
            }
            Peer::Upstream => return input.len(),
        }
        let mut used = 0;
        while self.reading() && self.has_room() {
            let rest = &input[used..];
            match self.decoder.decode(rest) {
                Ok(Some(f)) => {
                    used += f.consumed;
                    self.frame(f.body, now);
                }
                Ok(None) => {
                    used += self.decoder.take_skipped();
                    break;
                }
                Err(e) => {
                    let (code, data) = match e {
                        FrameError::Oversize { len } => (
                            code::INVALID_REQUEST,
                            match len {
                                Some(n) => format!(
                                    "{{\"frame\":{n},\"max_frame\":{}}}",
                                    self.cfg.max_frame
                                ),
                                None => format!("{{\"max_frame\":{}}}", self.cfg.max_frame),
                            },
                        ),
                        FrameError::Malformed(why) => {
                            let mut d = Vec::new();
                            encode::string(why, &mut d);
                            (code::PARSE_ERROR, String::from_utf8_lossy(&d).into_owned())
                        }
                    };
                    self.message_error(code, Some(data.as_bytes()));
                    self.fatal = true;
                    used = input.len();
                    break;
                }
            }
        }
        used
    }

    fn eof(&mut self, peer: Peer, now: Instant) {
        match peer {
            Peer::Client => {
                self.client_eof = true;
                if !self.cfg.finish_on_eof {
                    self.cancel_all(now);
                }
            }
            Peer::Child(child, stream) => {
                let Some(i) = self.call_index(child) else {
                    return;
                };
                let call = &mut self.calls[i];
                match stream {
                    Stdio::Stdin => {
                        call.stdin_open = false;
                        call.stdin = Vec::new();
                    }
                    Stdio::Stdout => call.stdout_eof = true,
                    Stdio::Stderr => call.stderr_eof = true,
                }
                self.sweep(now);
            }
            Peer::Upstream => {}
        }
    }

    fn wants_read(&self, peer: Peer) -> bool {
        match peer {
            Peer::Client => self.reading() && self.has_room(),
            Peer::Child(child, Stdio::Stdout | Stdio::Stderr) => self.call_index(child).is_some(),
            _ => false,
        }
    }

    fn next_action(&mut self) -> Action<'_> {
        if let Some(todo) = self.todo.pop_front() {
            return match todo {
                Todo::Spawn(child) => match self.call_index(child) {
                    Some(i) => match &self.calls[i].spawn {
                        Some(req) => Action::Spawn(child, req),
                        None => Action::Wait,
                    },
                    None => Action::Wait,
                },
                Todo::Kill(child) => Action::Kill(child, SIGKILL),
                Todo::ClosePipe(p) => Action::Shutdown(p),
            };
        }
        if !self.out.is_empty() {
            return Action::Write(Peer::Client, self.out.pending());
        }
        if !self.closed {
            let feeding = self
                .calls
                .iter()
                .position(|c| c.phase == Phase::Running && c.stdin_open && c.exit.is_none());
            if let Some(i) = feeding {
                let call = &mut self.calls[i];
                let Some(child) = call.child else {
                    return Action::Wait;
                };
                if call.stdin_written < call.stdin.len() {
                    return Action::Write(
                        Peer::Child(child, Stdio::Stdin),
                        &call.stdin[call.stdin_written..],
                    );
                }
                call.stdin_open = false;
                call.stdin = Vec::new();
                return Action::Shutdown(Peer::Child(child, Stdio::Stdin));
            }
        }
        let done = self.fatal || ((self.client_eof || self.draining) && self.unsettled() == 0);
        if done {
            // Commands still running (killed, not yet reaped) are the driver's to reap.
            Action::Close
        } else {
            Action::Wait
        }
    }

    fn written(&mut self, peer: Peer, n: usize, _now: Instant) {
        match peer {
            Peer::Client => self.out.consume(n),
            Peer::Child(child, Stdio::Stdin) => {
                if let Some(i) = self.call_index(child) {
                    self.calls[i].stdin_written += n;
                }
            }
            _ => {}
        }
    }

    fn spawned(&mut self, child: ChildId, pid: Option<u32>, now: Instant) {
        let Some(i) = self.call_index(child) else {
            return;
        };
        let call = &mut self.calls[i];
        call.spawn = None;
        if pid.is_none() {
            // Nothing runs: no slot to hold, nothing to reap.
            call.phase = Phase::Queued;
            call.child = None;
            call.slot = None;
            self.settle(
                i,
                Err((
                    code::INTERNAL_ERROR,
                    b"\"cannot start the command\"".to_vec(),
                )),
                now,
            );
            self.sweep(now);
            return;
        }
        call.phase = Phase::Running;
        call.deadline = Some(now + self.cfg.call_timeout);
        if call.settled && call.killed_at.is_none() {
            // Cancelled while it was being started.
            call.killed_at = Some(now);
            self.todo.push_back(Todo::Kill(child));
        }
    }

    fn exited(&mut self, child: ChildId, how: Exit, now: Instant) {
        let Some(i) = self.call_index(child) else {
            return;
        };
        let call = &mut self.calls[i];
        call.exit = Some(how);
        call.slot = None;
        call.stdin_open = false;
        call.stdin = Vec::new();
        self.sweep(now);
    }

    fn closes_after_output(&self) -> bool {
        self.fatal
    }

    fn deadline(&self) -> Option<Instant> {
        let mut at = self.retry_at;
        for c in &self.calls {
            let due = if !c.settled {
                c.deadline
            } else {
                c.killed_at.map(|k| k + PIPE_GRACE)
            };
            at = match (at, due) {
                (Some(a), Some(d)) => Some(a.min(d)),
                (a, d) => a.or(d),
            };
        }
        at
    }

    fn timed_out(&mut self, now: Instant) {
        let timeout = self.cfg.call_timeout;
        for i in 0..self.calls.len() {
            let Some(call) = self.calls.get(i) else {
                break;
            };
            if !call.settled && call.deadline.is_some_and(|d| d <= now) {
                let data = format!("{{\"timeout\":{}}}", timeout.as_secs_f64()).into_bytes();
                self.abort(i, code::CALL_TIMEOUT, data, now);
            }
        }
        for i in 0..self.calls.len() {
            let call = &mut self.calls[i];
            if call.settled && call.killed_at.is_some_and(|k| k + PIPE_GRACE <= now) {
                // The pipes outlived the kill (held by a process that left the group):
                // close them so the slot can be freed once the child is reaped.
                call.killed_at = None;
                if let Some(c) = call.child {
                    for (eof, s) in [
                        (&mut call.stdout_eof, Stdio::Stdout),
                        (&mut call.stderr_eof, Stdio::Stderr),
                    ] {
                        if !*eof {
                            *eof = true;
                            self.todo.push_back(Todo::ClosePipe(Peer::Child(c, s)));
                        }
                    }
                }
            }
        }
        if self.retry_at.is_some_and(|r| r <= now) {
            self.start_queued(now);
        }
        self.sweep(now);
    }

    fn drain(&mut self, _now: Instant) {
        self.draining = true;
    }

    fn closed(&mut self, now: Instant) {
        self.closed = true;
        for i in 0..self.calls.len() {
            if !self.calls[i].settled {
                let call = &mut self.calls[i];
                call.settled = true;
                let (id, method, took) = (
                    call.id.take(),
                    call.method,
                    now.saturating_duration_since(call.received),
                );
                let cfg = Arc::clone(&self.cfg);
                self.log_line(&cfg.methods[method].name, id.as_deref(), "closed", took);
            }
        }
        // Slots go back now; the driver kills and reaps what still runs.
        self.calls.clear();
        self.todo.clear();
    }

    fn take_log(&mut self) -> Option<String> {
        self.log.pop_front()
    }
}

impl RpcSession {
    /// The client is gone: every call not answered yet is killed and answered -32003.
    fn cancel_all(&mut self, now: Instant) {
        for i in 0..self.calls.len() {
            if !self.calls[i].settled {
                let why = b"\"the client closed the connection\"".to_vec();
                self.abort(i, code::CANCELLED, why, now);
            }
        }
        self.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::HashMap;

    /// A driver in memory: actions performed at once, children only recorded (a test plays
    /// their part with [`Harness::finish`]).
    struct Harness {
        s: RpcSession,
        now: Instant,
        out: Vec<u8>,
        spawned: Vec<(ChildId, SpawnRequest)>,
        stdin: HashMap<ChildId, Vec<u8>>,
        stdin_closed: Vec<ChildId>,
        killed: Vec<ChildId>,
        closed_pipes: Vec<Peer>,
        closed: bool,
        fail_spawn: bool,
        held: Vec<u8>,
    }

    fn config(framing: Framing, max_calls: usize) -> Config {
        let methods = vec![
            CommandMethod {
                name: "subtract".into(),
                command: "jq '.[0] - .[1]'".into(),
            },
            CommandMethod {
                name: "slow".into(),
                command: "sleep 1".into(),
            },
        ];
        let mut c = Config::new(
            framing,
            1024,
            10,
            Duration::from_secs(5),
            methods,
            max_calls,
        )
        .unwrap();
        c.log = true;
        c
    }

    impl Harness {
        fn new(cfg: Config) -> Harness {
            Harness {
                s: RpcSession::new(Arc::new(cfg), "127.0.0.1:5555"),
                now: Instant::now(),
                out: Vec::new(),
                spawned: Vec::new(),
                stdin: HashMap::new(),
                stdin_closed: Vec::new(),
                killed: Vec::new(),
                closed_pipes: Vec::new(),
                closed: false,
                fail_spawn: false,
                held: Vec::new(),
            }
        }

        fn pump(&mut self) {
            for _ in 0..10_000 {
                match self.s.next_action() {
                    Action::Write(Peer::Client, b) => {
                        let n = b.len();
                        self.out.extend_from_slice(b);
                        self.s.written(Peer::Client, n, self.now);
                    }
                    Action::Write(Peer::Child(id, Stdio::Stdin), b) => {
                        let n = b.len().min(3); // short writes
                        self.stdin.entry(id).or_default().extend_from_slice(&b[..n]);
                        self.s.written(Peer::Child(id, Stdio::Stdin), n, self.now);
                    }
                    Action::Spawn(id, req) => {
                        let req = req.clone();
                        self.spawned.push((id, req));
                        let pid = (!self.fail_spawn).then_some(100 + u32::from(id.0));
                        self.s.spawned(id, pid, self.now);
                    }
                    Action::Kill(id, sig) => {
                        assert_eq!(sig, SIGKILL);
                        self.killed.push(id);
                    }
                    Action::Shutdown(Peer::Child(id, Stdio::Stdin)) => self.stdin_closed.push(id),
                    Action::Shutdown(p) => self.closed_pipes.push(p),
                    Action::Wait => return,
                    Action::Close => {
                        self.closed = true;
                        return;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            panic!("the session never waits");
        }

        /// Bytes from the client, the unconsumed rest held and offered again with the next.
        fn send(&mut self, wire: &[u8]) {
            self.held.extend_from_slice(wire);
            let used = self.s.feed(Peer::Client, &self.held, self.now);
            self.held.drain(..used);
            self.pump();
        }

        /// The child in `id` writes `stdout` and `stderr`, closes both and exits.
        fn finish(&mut self, id: ChildId, stdout: &[u8], stderr: &[u8], how: Exit) {
            let now = self.now;
            assert_eq!(
                self.s.feed(Peer::Child(id, Stdio::Stdout), stdout, now),
                stdout.len()
            );
            self.s.feed(Peer::Child(id, Stdio::Stderr), stderr, now);
            self.s.eof(Peer::Child(id, Stdio::Stdout), now);
            self.s.eof(Peer::Child(id, Stdio::Stderr), now);
            self.s.exited(id, how, now);
            self.pump();
        }

        /// Responses so far (ndjson), parsed, and forgotten.
        fn responses(&mut self) -> Vec<Value> {
            let out = std::mem::take(&mut self.out);
            out.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect()
        }

        fn last_child(&self) -> ChildId {
            self.spawned.last().unwrap().0
        }

        fn logs(&mut self) -> Vec<String> {
            std::iter::from_fn(|| self.s.take_log()).collect()
        }
    }

    #[test]
    fn builtins_answer_at_once() {
        let mut h = Harness::new(config(Framing::Ndjson, 4));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"params\":[1, {\"a\" : 2}],\"id\":12345678901234567890123}\n");
        assert_eq!(
            String::from_utf8_lossy(&h.out),
            "{\"jsonrpc\":\"2.0\",\"result\":[1,{\"a\":2}],\"id\":12345678901234567890123}\n"
        );
        h.out.clear();
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc.discover\",\"id\":\"d\"}\n");
        let r = h.responses();
        let names: Vec<&str> = r[0]["result"]["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["rpc.discover", "rpc.echo", "subtract", "slow"]);
        assert_eq!(r[0]["result"]["openrpc"], "1.3.2");
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc.discover\",\"params\":[1],\"id\":2}\n");
        assert_eq!(h.responses()[0]["error"]["code"], -32602);
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":3}\n{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}\n");
        let r = h.responses();
        assert_eq!(r.len(), 1, "the notification is not answered");
        assert_eq!(r[0]["error"]["code"], -32601);
        assert_eq!(r[0]["id"], 3);
        assert!(h.spawned.is_empty());
        let logs = h.logs();
        assert_eq!(logs.len(), 5);
        assert!(logs[0].starts_with("127.0.0.1:5555 \"rpc.echo\" 12345678901234567890123 ok "));
        assert!(logs[3].contains("\"nope\" 3 error -32601"), "{}", logs[3]);
        assert!(logs[4].contains("\"nope\" - error -32601"), "{}", logs[4]);
    }

    #[test]
    fn a_command_gets_params_on_stdin_and_its_stdout_is_the_result() {
        let mut h = Harness::new(config(Framing::Ndjson, 4));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"params\":[42,23],\"id\":1}\n");
        let (id, req) = h.spawned[0].clone();
        assert_eq!(req.program, "/bin/sh");
        assert_eq!(req.args, ["-c", "jq '.[0] - .[1]'"]);
        let env: HashMap<_, _> = req.env.iter().cloned().collect();
        assert_eq!(env["PLUMB_RPC_METHOD"], "subtract");
        assert_eq!(env["PLUMB_RPC_ID"], "1");
        assert_eq!(env["PLUMB_RPC_PEER"], "127.0.0.1:5555");
        assert_eq!(h.stdin[&id], b"[42,23]");
        assert_eq!(h.stdin_closed, [id]);
        assert!(h.out.is_empty());
        h.finish(id, b"19\n", b"", Exit::Code(0));
        assert_eq!(h.responses(), [json!({"jsonrpc":"2.0","result":19,"id":1})]);
        // Not JSON: the text, one trailing newline removed.
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":\"t\"}\n");
        let id = h.last_child();
        assert!(!h.stdin.contains_key(&id), "no params: nothing written");
        assert!(h.stdin_closed.contains(&id), "stdin closed at once");
        let env: HashMap<_, _> = h.spawned[1].1.env.iter().cloned().collect();
        h.finish(id, b"hello\nworld\n\n", b"", Exit::Code(0));
        assert_eq!(h.responses()[0]["result"], "hello\nworld\n");
        assert_eq!(env["PLUMB_RPC_ID"], "\"t\"");
        // Pretty-printed JSON goes out on one line.
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":3}\n");
        h.finish(
            h.last_child(),
            b"{\n  \"a\": [1,\n 2]\n}\n",
            b"",
            Exit::Code(0),
        );
        assert_eq!(h.out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(h.responses()[0]["result"], json!({"a":[1,2]}));
        // A notification runs but is not answered, and has no PLUMB_RPC_ID.
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"params\":{}}\n");
        let (id, req) = h.spawned.last().unwrap().clone();
        assert!(req.env.iter().all(|(k, _)| k != "PLUMB_RPC_ID"));
        h.finish(id, b"1", b"", Exit::Code(0));
        assert!(h.out.is_empty());
        assert_eq!(h.s.calls.len(), 0);
        assert_eq!(h.s.cfg.slots.running(), 0);
    }

    #[test]
    fn failures_carry_exit_or_signal_and_the_end_of_stderr() {
        let mut h = Harness::new(config(Framing::Ndjson, 4));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":1}\n");
        let mut err = vec![b'x'; 10_000];
        err.extend_from_slice(b"the reason");
        h.finish(h.last_child(), b"", &err, Exit::Code(3));
        let r = h.responses();
        assert_eq!(r[0]["error"]["code"], -32000);
        assert_eq!(r[0]["error"]["data"]["exit"], 3);
        let tail = r[0]["error"]["data"]["stderr"].as_str().unwrap();
        assert!(tail.ends_with("the reason") && tail.len() <= 2 * STDERR_TAIL);
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":2}\n");
        h.finish(h.last_child(), b"", b"", Exit::Signal(15));
        assert_eq!(h.responses()[0]["error"]["data"]["signal"], 15);
        h.fail_spawn = true;
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":3}\n");
        assert_eq!(h.responses()[0]["error"]["code"], -32603);
        assert_eq!(h.s.cfg.slots.running(), 0);
        assert!(h.s.calls.is_empty());
    }

    #[test]
    fn calls_run_side_by_side_and_answer_as_they_finish() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"slow\",\"id\":\"slow\"}\n{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":\"fast\"}\n");
        assert_eq!(h.spawned.len(), 2);
        let (slow, fast) = (h.spawned[0].0, h.spawned[1].0);
        assert_ne!(slow, fast);
        h.finish(fast, b"1", b"", Exit::Code(0));
        assert_eq!(h.responses()[0]["id"], "fast");
        h.finish(slow, b"2", b"", Exit::Code(0));
        assert_eq!(h.responses()[0]["id"], "slow");
    }

    #[test]
    fn batches_of_commands_answer_once_all_are_done() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        h.send(br#"[{"jsonrpc":"2.0","method":"subtract","params":[1,1],"id":1},{"jsonrpc":"2.0","method":"rpc.echo","params":[5],"id":2},{"jsonrpc":"2.0","method":"subtract"},{"foo":1}]"#);
        h.send(b"\n");
        assert!(h.out.is_empty(), "waits for the command");
        h.finish(h.spawned[1].0, b"0", b"", Exit::Code(0));
        assert!(h.out.is_empty(), "waits for the notification's command too");
        h.finish(h.spawned[0].0, b"0", b"", Exit::Code(0));
        let r = h.responses();
        let arr = r[0].as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert!(arr.contains(&json!({"jsonrpc":"2.0","result":0,"id":1})));
        assert!(arr.contains(&json!({"jsonrpc":"2.0","result":[5],"id":2})));
        assert!(
            arr.iter()
                .any(|x| x["error"]["code"] == -32600 && x["id"].is_null())
        );
        // Only notifications: no output at all.
        h.send(b"[{\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\"},{\"jsonrpc\":\"2.0\",\"method\":\"subtract\"}]\n");
        h.finish(h.last_child(), b"0", b"", Exit::Code(0));
        assert!(h.out.is_empty());
        h.send(b"[]\n[1,2,3,4,5,6,7,8,9,10,11]\n");
        let r = h.responses();
        assert_eq!(r.len(), 2);
        assert!(
            r.iter()
                .all(|x| x["error"]["code"] == -32600 && x["id"].is_null())
        );
        assert!(h.s.batches.is_empty());
    }

    #[test]
    fn timeout_kills_the_group_and_answers_32001() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"slow\",\"id\":1}\n");
        let id = h.last_child();
        let due = h.s.deadline().unwrap();
        assert_eq!(due, h.now + Duration::from_secs(5));
        h.now = due;
        h.s.timed_out(due);
        h.pump();
        assert_eq!(h.killed, [id]);
        let r = h.responses();
        assert_eq!(r[0]["error"]["code"], -32001);
        assert_eq!(h.s.cfg.slots.running(), 1, "held until reaped");
        h.finish(id, b"", b"", Exit::Signal(9));
        assert!(h.out.is_empty(), "answered once");
        assert_eq!(h.s.cfg.slots.running(), 0);
        assert!(h.s.calls.is_empty());
        assert_eq!(h.s.deadline(), None);
    }

    #[test]
    fn pipes_held_past_the_kill_are_closed_after_a_grace() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"slow\",\"id\":1}\n");
        let id = h.last_child();
        h.now += Duration::from_secs(5);
        h.s.timed_out(h.now);
        h.pump();
        h.s.exited(id, Exit::Signal(9), h.now);
        h.pump();
        assert_eq!(h.s.calls.len(), 1, "pipes still open");
        h.now += PIPE_GRACE;
        assert_eq!(h.s.deadline(), Some(h.now));
        h.s.timed_out(h.now);
        h.pump();
        assert_eq!(
            h.closed_pipes,
            [
                Peer::Child(id, Stdio::Stdout),
                Peer::Child(id, Stdio::Stderr)
            ]
        );
        assert!(h.s.calls.is_empty());
    }

    #[test]
    fn a_flooding_command_is_killed_with_32002_and_memory_stays_bounded() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":1}\n");
        let id = h.last_child();
        let chunk = [b'y'; 600];
        for _ in 0..100 {
            assert_eq!(h.s.feed(Peer::Child(id, Stdio::Stdout), &chunk, h.now), 600);
            assert_eq!(h.s.feed(Peer::Child(id, Stdio::Stderr), &chunk, h.now), 600);
        }
        h.pump();
        assert_eq!(h.killed, [id]);
        assert_eq!(h.responses()[0]["error"]["code"], -32002);
        let call = &h.s.calls[0];
        assert!(call.stdout.capacity() <= 1024 && call.stderr.len() <= 2 * STDERR_TAIL);
        h.finish(id, b"", b"", Exit::Signal(9));
        assert!(h.s.calls.is_empty());
    }

    #[test]
    fn max_calls_makes_calls_wait_their_turn() {
        let mut h = Harness::new(config(Framing::Ndjson, 1));
        let mut other = RpcSession::new(Arc::clone(&h.s.cfg), "other");
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"slow\",\"id\":1}\n{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":2}\n");
        assert_eq!(h.spawned.len(), 1);
        assert_eq!(h.s.deadline(), Some(h.now + SLOT_RETRY));
        // Another session of the same server waits too.
        other.feed(
            Peer::Client,
            b"{\"jsonrpc\":\"2.0\",\"method\":\"subtract\",\"id\":3}\n",
            h.now,
        );
        assert!(matches!(other.next_action(), Action::Wait));
        h.finish(h.spawned[0].0, b"1", b"", Exit::Code(0));
        assert_eq!(
            h.spawned.len(),
            2,
            "the exit freed the slot for the next call"
        );
        assert_eq!(h.responses()[0]["id"], 1);
        h.finish(h.spawned[1].0, b"2", b"", Exit::Code(0));
        other.timed_out(h.now + SLOT_RETRY);
        assert!(matches!(other.next_action(), Action::Spawn(..)));
    }

    #[test]
    fn client_eof_cancels_calls_and_closes() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"slow\",\"id\":1}\n");
        let id = h.last_child();
        h.s.eof(Peer::Client, h.now);
        h.pump();
        assert_eq!(h.killed, [id]);
        assert_eq!(h.responses()[0]["error"]["code"], -32003);
        assert!(h.closed);
        h.s.closed(h.now);
        assert_eq!(h.s.cfg.slots.running(), 0, "the slot goes back at close");
    }

    #[test]
    fn finish_on_eof_answers_first_then_closes() {
        let mut cfg = config(Framing::Ndjson, 8);
        cfg.finish_on_eof = true;
        let mut h = Harness::new(cfg);
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"slow\",\"id\":1}\n");
        h.s.eof(Peer::Client, h.now);
        h.pump();
        assert!(!h.closed && h.killed.is_empty());
        h.finish(h.last_child(), b"\"done\"", b"", Exit::Code(0));
        assert_eq!(h.responses()[0]["result"], "done");
        assert!(h.closed);
    }

    #[test]
    fn drain_stops_reading_and_finishes_what_is_running() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"slow\",\"id\":1}\n");
        h.s.drain(h.now);
        assert!(!h.s.wants_read(Peer::Client));
        h.pump();
        assert!(!h.closed);
        h.finish(h.last_child(), b"1", b"", Exit::Code(0));
        assert_eq!(h.responses().len(), 1);
        assert!(h.closed);
        // Idle: closes at once.
        let mut idle = Harness::new(config(Framing::Ndjson, 8));
        idle.s.drain(idle.now);
        idle.pump();
        assert!(idle.closed);
    }

    #[test]
    fn framing_errors_answer_then_close() {
        for framing in Framing::ALL {
            let mut h = Harness::new(config(framing, 8));
            let big = vec![b' '; 2000];
            let mut wire = Vec::new();
            framing::encode(
                framing,
                b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"id\":1}",
                &mut wire,
            );
            if framing == Framing::Ndjson {
                wire.extend_from_slice(&[b'x'; 2000]);
            } else {
                framing::encode(framing, &big, &mut wire);
            }
            h.send(&wire);
            assert!(h.closed, "{framing}");
            let mut d = framing::BufDecoder::new(framing, 1 << 20);
            d.push(&h.out);
            let first: Value = serde_json::from_slice(d.next_frame().unwrap().unwrap()).unwrap();
            assert_eq!(first["id"], 1);
            let second: Value = serde_json::from_slice(d.next_frame().unwrap().unwrap()).unwrap();
            assert_eq!(second["error"]["code"], -32600, "{framing}");
            assert!(second["id"].is_null());
        }
        let mut h = Harness::new(config(Framing::Netstring, 8));
        h.send(b"5:hello;");
        assert!(h.closed);
        let mut d = framing::BufDecoder::new(Framing::Netstring, 1 << 20);
        d.push(&h.out);
        let v: Value = serde_json::from_slice(d.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!(
            v["error"]["code"], -32700,
            "malformed framing is a parse error"
        );
    }

    #[test]
    fn parse_errors_keep_the_connection() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        h.send(
            b"{\"jsonrpc\": \"2.0\", \"method\": \"foobar, \"params\": \"bar\", \"baz]\n\xff\xfe\n",
        );
        h.send(&[b"[".repeat(200), b"]".repeat(200), b"\n".to_vec()].concat());
        h.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"params\":[1],\"id\":1}\n");
        let r = h.responses();
        assert_eq!(r.len(), 4);
        for x in &r[..3] {
            assert_eq!(x["error"]["code"], -32700);
            assert!(x["id"].is_null());
        }
        assert_eq!(r[3]["result"], json!([1]));
        assert!(!h.closed);
    }

    #[test]
    fn one_byte_at_a_time_like_a_driver() {
        for framing in Framing::ALL {
            let mut h = Harness::new(config(framing, 8));
            let mut wire = Vec::new();
            for i in 0..3 {
                let req = format!(
                    "{{\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"params\":[{i}],\"id\":{i}}}"
                );
                framing::encode(framing, req.as_bytes(), &mut wire);
            }
            let mut held = Vec::new();
            for &b in &wire {
                held.push(b);
                let n = h.s.feed(Peer::Client, &held, h.now);
                held.drain(..n);
                h.pump();
            }
            assert!(held.is_empty());
            let mut d = framing::BufDecoder::new(framing, 1 << 20);
            d.push(&h.out);
            for i in 0..3 {
                let v: Value = serde_json::from_slice(d.next_frame().unwrap().unwrap()).unwrap();
                assert_eq!(v["id"], i, "{framing}");
            }
        }
    }

    #[test]
    fn backpressure_stops_reading_past_the_window() {
        let mut h = Harness::new(config(Framing::Ndjson, 8));
        let req = b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc.echo\",\"params\":[\"0123456789012345678901234567890123456789\"],\"id\":1}\n";
        let wire = req.repeat(10_000);
        let used = h.s.feed(Peer::Client, &wire, h.now);
        assert!(used < wire.len());
        assert!(!h.s.wants_read(Peer::Client));
        assert!(h.s.out.len() >= OUT_WINDOW && h.s.out.len() < OUT_WINDOW + 1024);
    }

    #[test]
    fn config_refuses_bad_methods() {
        let m = |n: &str, c: &str| CommandMethod {
            name: n.into(),
            command: c.into(),
        };
        let t = Duration::from_secs(1);
        for bad in [
            vec![m("", "true")],
            vec![m("rpc.x", "true")],
            vec![m("a", "true"), m("a", "false")],
            vec![m("a", " ")],
        ] {
            assert!(Config::new(Framing::Ndjson, 1, 1, t, bad, 1).is_err());
        }
    }
}
