//! Services: what a server does with a connection, as a factory of sans-IO sessions. A model
//! asks its service for one fresh session per accepted connection and hands it to a driver;
//! it never learns which protocol it runs.

use std::time::Instant;

use plumb_proto::Session;

use crate::net::{Addr, Stream};

pub mod echo;
pub mod exec;
pub mod file_cache;
pub mod fs_docroot;
pub mod http;
pub mod relay;
pub mod rpc;

/// A session factory shared by every worker of a server.
pub trait Service: Send + Sync {
    /// A short name for messages ("echo", "http", "relay").
    fn name(&self) -> &'static str;
    /// A fresh session for a connection from `peer`, accepted at `now`.
    fn session(&self, peer: &str, now: Instant) -> Box<dyn Session + Send>;
    /// Whether clients always send first (HTTP, echo), so a listener may wait for a
    /// connection's first data before handing it over (`TCP_DEFER_ACCEPT`). Not for a relay:
    /// the protocol it carries may start with the server (an SSH or SMTP banner).
    fn client_speaks_first(&self) -> bool {
        false
    }
    /// Where [`plumb_proto::Action::Connect`] connects to.
    fn upstream(&self) -> Option<&Addr> {
        None
    }
    /// A fresh session for the accepted `stream` from `peer`: what the drivers call. A
    /// service that needs more than the peer's name (the addresses of both ends, the peer
    /// process of a UNIX socket) asks the stream here; the others need not.
    fn session_on(&self, stream: &Stream, peer: &str, now: Instant) -> Box<dyn Session + Send> {
        let _ = stream;
        self.session(peer, now)
    }
    /// A program the fork models should become in the forked child, the connection as its
    /// stdin and stdout, instead of running a session (`plumb exec`, as inetd does). Consulted
    /// after the fork; `None` for every protocol service.
    fn exec_in_place(&self) -> Option<&exec::ExecPlan> {
        None
    }
    /// Descriptors one connection holds, for the default `--max-connections`: the socket,
    /// and an upstream's socket or a child's three pipes and its pidfd.
    fn descriptors_per_connection(&self) -> u64 {
        if self.upstream().is_some() { 2 } else { 1 }
    }
}
