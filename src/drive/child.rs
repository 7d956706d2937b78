//! Child processes for [`plumb_proto::Action::Spawn`]: the program runs in its own process
//! group with its three standard streams on pipes, which the pump serves like sockets
//! (non-blocking; under the event model they sit in the loop beside the sockets, so a child
//! never blocks it). Its end is a `pidfd` (readable once it exits), polled with the rest,
//! so the driver learns of the exit without SIGCHLD and reaps that one child by pid: no
//! zombie, and no `waitpid(-1)` stealing another part of the server's children.
//!
//! Descriptors: every descriptor plumb opens is close-on-exec, and `std::process::Command`
//! gives the child only its three pipes, so a child inherits nothing else (a leaked listener
//! would keep the port bound after the server dies; a leaked pipe end would keep a reader from
//! seeing EOF).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child as StdChild, Command, Stdio};

use plumb_proto::session::{Exit, SpawnRequest};

use super::surface::Pipe;

/// A running child: its process handle and the descriptor that reports its exit.
#[derive(Debug)]
pub(crate) struct Child {
    process: StdChild,
    exit_fd: OwnedFd,
    reaped: bool,
}

/// The pipes of a freshly started child: (stdin, stdout, stderr).
pub(crate) type Pipes = (Pipe, Pipe, Pipe);

impl Child {
    /// Starts the program of `req`.
    ///
    /// # Errors
    /// The program cannot be found or run, or descriptors ran out.
    pub(crate) fn spawn(req: &SpawnRequest) -> io::Result<(Child, Pipes)> {
        let mut cmd = Command::new(&req.program);
        cmd.args(&req.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a kill reaches its children too (a shell's pipeline).
            .process_group(0);
        if req.clear_env {
            cmd.env_clear();
        }
        cmd.envs(req.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &req.cwd {
            cmd.current_dir(dir);
        }
        let mut process = cmd.spawn()?;
        let pipe = |end: Option<OwnedFd>| {
            end.ok_or_else(|| io::Error::other("a child without its pipes"))
                .and_then(Pipe::new)
        };
        let started = (|| {
            let pipes = (
                pipe(process.stdin.take().map(OwnedFd::from))?,
                pipe(process.stdout.take().map(OwnedFd::from))?,
                pipe(process.stderr.take().map(OwnedFd::from))?,
            );
            Ok((plumb_sys::pidfd_open(process.id() as i32)?, pipes))
        })();
        match started {
            Ok((exit_fd, pipes)) => Ok((
                Child {
                    process,
                    exit_fd,
                    reaped: false,
                },
                pipes,
            )),
            Err(e) => {
                let _ = process.kill();
                let _ = process.wait();
                Err(e)
            }
        }
    }

    /// The descriptor that turns readable when the child exits.
    pub(crate) fn exit_fd(&self) -> RawFd {
        self.exit_fd.as_raw_fd()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Signals the child's process group.
    pub(crate) fn kill_group(&self, signal: i32) {
        if !self.reaped {
            let _ = plumb_sys::kill(-(self.process.id() as i32), signal);
        }
    }

    /// Reaps the child if it has exited.
    pub(crate) fn try_reap(&mut self) -> Option<Exit> {
        if self.reaped {
            return None;
        }
        match self.process.try_wait() {
            Ok(Some(st)) => {
                self.reaped = true;
                Some(match (st.code(), st.signal()) {
                    (Some(code), _) => Exit::Code(code),
                    (None, Some(sig)) => Exit::Signal(sig),
                    (None, None) => Exit::Code(-1),
                })
            }
            Ok(None) => None,
            Err(_) => {
                // ECHILD: someone else reaped it; it is gone either way.
                self.reaped = true;
                Some(Exit::Code(-1))
            }
        }
    }
}

impl Drop for Child {
    /// A child still running when its connection ends is killed with its group and reaped
    /// here: SIGKILL cannot be caught, so the wait is for the kernel to tear it down.
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group(plumb_sys::signal::SIGKILL);
            let _ = self.process.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The child-process half of the contract, end to end under both waiters: a session that
    //! spawns `cat` and streams 10 MiB from its client through the child and back, then
    //! reports the child's exit status in a trailer.

    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use plumb_proto::session::{Action, ChildId, Exit, OutBuf, Peer, Session, SpawnRequest, Stdio};

    use crate::models::{self, Model};
    use crate::net::{Addr, BindOptions, Listener};
    use crate::report::LogConfig;
    use crate::services::Service;
    use crate::shutdown::Shutdown;

    const WINDOW: usize = 64 * 1024;
    /// A slot other than 0, so the test sees the session's choice carried through.
    const CAT: ChildId = ChildId(7);

    #[derive(Default)]
    struct Cat {
        req: SpawnRequest,
        asked: bool,
        spawned: Option<bool>,
        to_child: OutBuf,
        to_client: OutBuf,
        client_eof: bool,
        stdin_closed: bool,
        stdout_eof: bool,
        exit: Option<Exit>,
        trailer: bool,
    }

    impl Session for Cat {
        fn feed(&mut self, peer: Peer, input: &[u8], _now: Instant) -> usize {
            let buf = match peer {
                Peer::Client => &mut self.to_child,
                Peer::Child(CAT, Stdio::Stdout) => &mut self.to_client,
                _ => return input.len(), // stderr: not part of the stream
            };
            let take = input.len().min(WINDOW.saturating_sub(buf.len()));
            buf.extend(&input[..take]);
            take
        }
        fn eof(&mut self, peer: Peer, _now: Instant) {
            match peer {
                Peer::Client => self.client_eof = true,
                Peer::Child(CAT, Stdio::Stdout) => self.stdout_eof = true,
                _ => {}
            }
        }
        fn wants_read(&self, peer: Peer) -> bool {
            match peer {
                Peer::Client => {
                    self.spawned == Some(true) && !self.client_eof && self.to_child.len() < WINDOW
                }
                Peer::Child(CAT, Stdio::Stdout) => {
                    !self.stdout_eof && self.to_client.len() < WINDOW
                }
                Peer::Child(CAT, Stdio::Stderr) => true,
                _ => false,
            }
        }
        fn next_action(&mut self) -> Action<'_> {
            if !self.asked {
                self.asked = true;
                return Action::Spawn(CAT, &self.req);
            }
            match self.spawned {
                None => return Action::Wait,
                Some(false) => return Action::Close,
                Some(true) => {}
            }
            if self.stdout_eof
                && !self.trailer
                && let Some(exit) = self.exit
            {
                self.trailer = true;
                self.to_client.extend(format!("exit={exit:?}").as_bytes());
            }
            if !self.to_client.is_empty() {
                return Action::Write(Peer::Client, self.to_client.pending());
            }
            if !self.to_child.is_empty() {
                return Action::Write(Peer::Child(CAT, Stdio::Stdin), self.to_child.pending());
            }
            if self.client_eof && !self.stdin_closed {
                self.stdin_closed = true;
                return Action::Shutdown(Peer::Child(CAT, Stdio::Stdin));
            }
            if self.trailer {
                return Action::Close;
            }
            Action::Wait
        }
        fn written(&mut self, peer: Peer, n: usize, _now: Instant) {
            match peer {
                Peer::Client => self.to_client.consume(n),
                _ => self.to_child.consume(n),
            }
        }
        fn spawned(&mut self, child: ChildId, pid: Option<u32>, _now: Instant) {
            assert_eq!(child, CAT);
            self.spawned = Some(pid.is_some());
        }
        fn exited(&mut self, child: ChildId, how: Exit, _now: Instant) {
            assert_eq!(child, CAT);
            self.exit = Some(how);
        }
    }

    struct CatService;

    impl Service for CatService {
        fn name(&self) -> &'static str {
            "cat"
        }
        fn session(&self, _peer: &str, _now: Instant) -> Box<dyn Session + Send> {
            Box::new(Cat {
                req: SpawnRequest {
                    program: "cat".into(),
                    ..SpawnRequest::default()
                },
                ..Cat::default()
            })
        }
    }

    /// A server for `service` on a temporary UNIX socket under `model`, and its stop.
    struct Running {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        shutdown: Shutdown,
        serving: std::thread::JoinHandle<std::io::Result<crate::report::Summary>>,
    }

    impl Running {
        fn start(model: Model, service: Arc<dyn Service>) -> Running {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("child.sock");
            let addr = Addr::parse(&format!("unix:{}", path.display()), None).unwrap();
            let listener = Listener::bind(&addr, BindOptions::default()).unwrap();
            let shutdown = Shutdown::install(Duration::from_secs(5)).unwrap();
            let server = Arc::new(models::Server {
                listeners: vec![listener],
                service,
                options: models::Options {
                    workers: 1,
                    threads: 2,
                    queue: 4,
                    max_connections: 16,
                    write_timeout: Duration::from_secs(30),
                },
                shutdown: shutdown.clone(),
                logs: LogConfig {
                    connections: None,
                    access: None,
                    quiet: true,
                    requests: false,
                },
            });
            let serving = std::thread::spawn(move || models::run(model, &server));
            Running {
                _dir: dir,
                path,
                shutdown,
                serving,
            }
        }

        fn stop(self) {
            self.shutdown.begin_drain();
            self.serving.join().unwrap().unwrap();
        }
    }

    fn stream_through_cat(model: Model) {
        let server = Running::start(model, Arc::new(CatService));
        let path = &server.path;
        let data: Vec<u8> = (0..10u32 << 20).map(|i| (i * 7 + i / 4099) as u8).collect();
        let mut client = UnixStream::connect(path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = client.try_clone().unwrap();
        let sent = data.clone();
        let feeding = std::thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        feeding.join().unwrap();
        let trailer = b"exit=Code(0)";
        assert_eq!(got.len(), data.len() + trailer.len(), "{model}");
        assert!(
            got[..data.len()] == data[..],
            "{model}: the bytes came back intact"
        );
        assert_eq!(&got[data.len()..], trailer, "{model}: cat exited 0");
        server.stop();
    }

    /// Three children at once in one session, output relayed as it comes: slot 0 waits for a
    /// line on its stdin, which it gets only after slots 1 and 2 have finished and slot 1 has
    /// been used again for a fourth child. So the order on the wire proves that the children
    /// ran side by side and that a slot is free once its child is reaped and read to EOF.
    #[derive(Default)]
    struct Many {
        /// What each spawn runs: slots 0, 1 and 2, then slot 1 again.
        reqs: Vec<SpawnRequest>,
        next: u8,
        to_client: OutBuf,
        exits: [Option<Exit>; 3],
        /// Output pipes (stdout, stderr) at EOF, per slot.
        eofs: [u8; 3],
        reused: bool,
        released: bool,
    }

    impl Many {
        fn done(&self, slot: usize) -> bool {
            self.exits[slot].is_some() && self.eofs[slot] == 2
        }
    }

    fn sh(script: &str) -> SpawnRequest {
        SpawnRequest {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            ..SpawnRequest::default()
        }
    }

    impl Session for Many {
        fn feed(&mut self, peer: Peer, input: &[u8], _now: Instant) -> usize {
            if let Peer::Child(_, Stdio::Stdout) = peer {
                self.to_client.extend(input);
            }
            input.len()
        }
        fn eof(&mut self, peer: Peer, _now: Instant) {
            if let Peer::Child(id, Stdio::Stdout | Stdio::Stderr) = peer {
                self.eofs[usize::from(id.0)] += 1;
            }
        }
        fn wants_read(&self, peer: Peer) -> bool {
            matches!(peer, Peer::Child(..))
        }
        fn next_action(&mut self) -> Action<'_> {
            if self.next < 3 {
                let id = ChildId(self.next);
                self.next += 1;
                return Action::Spawn(id, &self.reqs[usize::from(id.0)]);
            }
            if !self.to_client.is_empty() {
                return Action::Write(Peer::Client, self.to_client.pending());
            }
            if !self.reused && self.done(1) && self.done(2) {
                self.reused = true;
                self.exits[1] = None;
                self.eofs[1] = 0;
                return Action::Spawn(ChildId(1), &self.reqs[3]);
            }
            if self.reused && !self.released && self.done(1) {
                self.released = true;
                return Action::Write(Peer::Child(ChildId(0), Stdio::Stdin), b"go\n");
            }
            if self.done(0) && self.done(1) && self.done(2) {
                return Action::Close;
            }
            Action::Wait
        }
        fn written(&mut self, peer: Peer, n: usize, _now: Instant) {
            if peer == Peer::Client {
                self.to_client.consume(n);
            } else {
                assert_eq!(n, 3, "the whole line went into the pipe");
            }
        }
        fn spawned(&mut self, child: ChildId, pid: Option<u32>, _now: Instant) {
            assert!(pid.is_some(), "slot {} started", child.0);
        }
        fn exited(&mut self, child: ChildId, how: Exit, _now: Instant) {
            self.exits[usize::from(child.0)] = Some(how);
        }
    }

    struct ManyService;

    impl Service for ManyService {
        fn name(&self) -> &'static str {
            "many"
        }
        fn session(&self, _peer: &str, _now: Instant) -> Box<dyn Session + Send> {
            Box::new(Many {
                reqs: vec![
                    sh("read word; echo slow-$word"),
                    sh("echo one"),
                    sh("echo two"),
                    sh("echo again"),
                ],
                ..Many::default()
            })
        }
    }

    fn children_side_by_side(model: Model) {
        let server = Running::start(model, Arc::new(ManyService));
        let mut client = UnixStream::connect(&server.path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 4, "{model}: {got:?}");
        let mut first: Vec<&str> = lines[..2].to_vec();
        first.sort_unstable();
        assert_eq!(first, ["one", "two"], "{model}: the fast children first");
        assert_eq!(&lines[2..], ["again", "slow-go"], "{model}: {got:?}");
        server.stop();
    }

    #[test]
    fn children_side_by_side_under_the_blocking_waiter() {
        children_side_by_side(Model::Thread);
    }

    #[test]
    fn children_side_by_side_under_the_event_loop() {
        children_side_by_side(Model::Event);
    }

    #[test]
    fn ten_mib_through_cat_under_the_blocking_waiter() {
        stream_through_cat(Model::Thread);
    }

    #[test]
    fn ten_mib_through_cat_under_the_event_loop() {
        stream_through_cat(Model::Event);
    }

    #[test]
    fn ten_mib_through_cat_in_the_pool() {
        stream_through_cat(Model::Pool);
    }
}
