//! Services: what a server does with a connection, as a factory of sans-IO sessions. A model
//! asks its service for one fresh session per accepted connection and hands it to a driver;
//! it never learns which protocol it runs.

use std::time::Instant;

use plumb_proto::Session;

use crate::net::Addr;

pub mod echo;
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
}
