//! The exec service (`plumb exec -- PROGRAM`, `plumb relay --to exec:COMMAND`): a program per
//! connection. Under the in-process models (and iterative and prefork, whose workers live on)
//! each session is a sans-IO [`ExecSession`] that runs the program on pipes; under fork and
//! fork-wait the model's child becomes the program itself, the socket as its stdin and stdout
//! ([`Service::exec_in_place`]).
//!
//! The program's environment follows ucspi-tcp's tcp-environ(5): `PROTO=TCP`, `TCPLOCALIP`,
//! `TCPLOCALPORT`, `TCPREMOTEIP`, `TCPREMOTEPORT`; for a UNIX socket `PROTO=UNIX` and the
//! client process from `SO_PEERCRED` (`UNIXREMOTEPID`, `UNIXREMOTEUID`, `UNIXREMOTEGID`).
//! `--env` adds to it; `--clear-env` starts from nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plumb_proto::Session;
use plumb_proto::exec::{ExecConfig, ExecSession};
use plumb_proto::session::{Action, ChildId, Exit, Peer, SpawnRequest};

use super::Service;
use crate::net::{PeerInfo, Stream};

/// What to run per connection and how long to let it live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    pub program: String,
    pub args: Vec<String>,
    /// `--env NAME=VALUE`, applied over the tcp-environ variables.
    pub env: Vec<(String, String)>,
    /// `--clear-env`: the program gets only tcp-environ and `--env`.
    pub clear_env: bool,
    /// After the client is done: time before SIGTERM, and from SIGTERM to SIGKILL.
    pub kill_after: Duration,
    /// Most wall time per program.
    pub timeout: Option<Duration>,
    /// Most connections at once from one IP address (TCP); more are closed at once.
    pub max_per_ip: Option<usize>,
}

/// Variables that describe a connection to its program (tcp-environ(5)).
pub fn connection_env(info: &PeerInfo) -> Vec<(String, String)> {
    let mut env = Vec::with_capacity(5);
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    match (info.local, info.remote, info.cred) {
        (local, Some(remote), _) => {
            set("PROTO", "TCP".into());
            set("TCPREMOTEIP", remote.ip().to_string());
            set("TCPREMOTEPORT", remote.port().to_string());
            if let Some(local) = local {
                set("TCPLOCALIP", local.ip().to_string());
                set("TCPLOCALPORT", local.port().to_string());
            }
        }
        (_, None, cred) => {
            set("PROTO", "UNIX".into());
            if let Some((pid, uid, gid)) = cred {
                set("UNIXREMOTEPID", pid.to_string());
                set("UNIXREMOTEUID", uid.to_string());
                set("UNIXREMOTEGID", gid.to_string());
            }
        }
    }
    env
}

impl ExecPlan {
    /// The environment a connection's program gets on top of the server's (or alone, with
    /// `clear_env`): tcp-environ, then `--env`.
    pub fn environment(&self, info: &PeerInfo) -> Vec<(String, String)> {
        let mut env = connection_env(info);
        for (k, v) in &self.env {
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }

    /// The image the fork models exec with the socket as stdin and stdout.
    ///
    /// # Errors
    /// A NUL byte in a name, argument or variable.
    pub fn image(&self, info: &PeerInfo) -> std::io::Result<plumb_sys::ExecImage> {
        let base: Vec<(String, String)> = if self.clear_env {
            Vec::new()
        } else {
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect()
        };
        plumb_sys::ExecImage::new(&self.program, &self.args, base, &self.environment(info))
    }

    /// The peer's IP address, when `--max-per-ip` counts it.
    pub fn counted_ip(&self, info: &PeerInfo) -> Option<IpAddr> {
        self.max_per_ip?;
        info.remote.map(|r| r.ip())
    }
}

/// Connections per IP address, shared by every worker thread.
#[derive(Debug, Default)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for `ip`, if fewer than `max` connections from it are open.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut counts = self.lock();
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: Arc::clone(self),
            ip,
        })
    }
}

/// One connection's place in [`PerIp`], given back when the session ends.
#[derive(Debug)]
struct Slot {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.owner.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

pub struct ExecService {
    pub plan: ExecPlan,
    /// Whether the fork models may exec the program on the socket itself (`plumb exec`); a
    /// relay's upstream is always a program on pipes.
    pub in_place: bool,
    per_ip: Arc<PerIp>,
}

impl ExecService {
    pub fn new(plan: ExecPlan, in_place: bool) -> ExecService {
        ExecService {
            plan,
            in_place,
            per_ip: Arc::default(),
        }
    }

    fn config(&self, info: &PeerInfo, peer: &str) -> ExecConfig {
        ExecConfig {
            request: SpawnRequest {
                program: self.plan.program.clone(),
                args: self.plan.args.clone(),
                env: self.plan.environment(info),
                clear_env: self.plan.clear_env,
                cwd: None,
            },
            kill_after: self.plan.kill_after,
            timeout: self.plan.timeout,
            label: peer.to_string(),
        }
    }
}

impl Service for ExecService {
    fn name(&self) -> &'static str {
        if self.in_place { "exec" } else { "relay" }
    }

    fn session(&self, peer: &str, now: Instant) -> Box<dyn Session + Send> {
        Box::new(ExecSession::new(
            self.config(&PeerInfo::default(), peer),
            now,
        ))
    }

    fn session_on(&self, stream: &Stream, peer: &str, now: Instant) -> Box<dyn Session + Send> {
        let info = stream.peer_info();
        let slot = match (self.plan.counted_ip(&info), self.plan.max_per_ip) {
            (Some(ip), Some(max)) => match self.per_ip.take(ip, max) {
                Some(slot) => Some(slot),
                None => {
                    log::debug!("{peer}: refused, --max-per-ip {max} reached");
                    return Box::new(Refused);
                }
            },
            _ => None,
        };
        Box::new(Counted {
            inner: ExecSession::new(self.config(&info, peer), now),
            _slot: slot,
        })
    }

    fn exec_in_place(&self) -> Option<&ExecPlan> {
        self.in_place.then_some(&self.plan)
    }

    fn descriptors_per_connection(&self) -> u64 {
        // The socket, the child's stdin, stdout and stderr, its pidfd.
        5
    }
}

/// A connection over `--max-per-ip`: closed at once, before any program starts.
struct Refused;

impl Session for Refused {
    fn feed(&mut self, _peer: Peer, input: &[u8], _now: Instant) -> usize {
        input.len()
    }
    fn eof(&mut self, _peer: Peer, _now: Instant) {}
    fn wants_read(&self, _peer: Peer) -> bool {
        false
    }
    fn next_action(&mut self) -> Action<'_> {
        Action::Close
    }
    fn written(&mut self, _peer: Peer, _n: usize, _now: Instant) {}
}

/// An [`ExecSession`] holding its place in the per-IP count until it ends.
struct Counted {
    inner: ExecSession,
    _slot: Option<Slot>,
}

impl Session for Counted {
    fn feed(&mut self, peer: Peer, input: &[u8], now: Instant) -> usize {
        self.inner.feed(peer, input, now)
    }
    fn eof(&mut self, peer: Peer, now: Instant) {
        self.inner.eof(peer, now);
    }
    fn wants_read(&self, peer: Peer) -> bool {
        self.inner.wants_read(peer)
    }
    fn next_action(&mut self) -> Action<'_> {
        self.inner.next_action()
    }
    fn written(&mut self, peer: Peer, n: usize, now: Instant) {
        self.inner.written(peer, n, now);
    }
    fn spawned(&mut self, child: ChildId, pid: Option<u32>, now: Instant) {
        self.inner.spawned(child, pid, now);
    }
    fn exited(&mut self, child: ChildId, how: Exit, now: Instant) {
        self.inner.exited(child, how, now);
    }
    fn closes_after_output(&self) -> bool {
        self.inner.closes_after_output()
    }
    fn deadline(&self) -> Option<Instant> {
        self.inner.deadline()
    }
    fn timed_out(&mut self, now: Instant) {
        self.inner.timed_out(now);
    }
    fn drain(&mut self, now: Instant) {
        self.inner.drain(now);
    }
    fn closed(&mut self, now: Instant) {
        self.inner.closed(now);
    }
    fn take_stderr(&mut self) -> Option<String> {
        self.inner.take_stderr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_environ_for_each_transport() {
        let info = PeerInfo {
            local: Some("127.0.0.1:7008".parse().unwrap()),
            remote: Some("[::1]:5000".parse().unwrap()),
            cred: None,
        };
        let env = connection_env(&info);
        assert!(env.contains(&("PROTO".into(), "TCP".into())));
        assert!(env.contains(&("TCPREMOTEIP".into(), "::1".into())));
        assert!(env.contains(&("TCPREMOTEPORT".into(), "5000".into())));
        assert!(env.contains(&("TCPLOCALPORT".into(), "7008".into())));
        let unix = connection_env(&PeerInfo {
            cred: Some((1, 2, 3)),
            ..PeerInfo::default()
        });
        assert_eq!(
            unix,
            [
                ("PROTO".to_string(), "UNIX".to_string()),
                ("UNIXREMOTEPID".into(), "1".into()),
                ("UNIXREMOTEUID".into(), "2".into()),
                ("UNIXREMOTEGID".into(), "3".into()),
            ]
        );
    }

    #[test]
    fn env_overrides_tcp_environ() {
        let plan = ExecPlan {
            program: "x".into(),
            args: vec![],
            env: vec![("PROTO".into(), "mine".into()), ("A".into(), "b".into())],
            clear_env: false,
            kill_after: Duration::from_secs(1),
            timeout: None,
            max_per_ip: None,
        };
        let env = plan.environment(&PeerInfo::default());
        assert_eq!(env.iter().filter(|(k, _)| k == "PROTO").count(), 1);
        assert!(env.contains(&("PROTO".into(), "mine".into())));
    }

    #[test]
    fn per_ip_places_are_given_back() {
        let per = Arc::new(PerIp::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = per.take(ip, 2).unwrap();
        let _b = per.take(ip, 2).unwrap();
        assert!(per.take(ip, 2).is_none());
        drop(a);
        assert!(per.take(ip, 2).is_some());
    }
}
