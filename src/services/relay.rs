//! The relay service (`plumb relay`, `plumb serve --proxy`): each client gets a new upstream
//! connection and the sans-IO [`plumb_proto::relay::Relay`] session copies between them.

use std::time::{Instant, SystemTime};

use plumb_proto::relay::{OnConnectFailure, Relay};
use plumb_proto::{Session, Wall};

use super::Service;
use crate::net::Addr;

pub struct RelayService {
    pub upstream: Addr,
    pub on_failure: OnConnectFailure,
    /// Move relayed bytes with `splice(2)` where both ends are kernel sockets.
    pub splice: bool,
}

impl Service for RelayService {
    fn name(&self) -> &'static str {
        match self.on_failure {
            OnConnectFailure::Close => "relay",
            OnConnectFailure::BadGateway => "proxy",
        }
    }
    fn session(&self, _peer: &str, now: Instant) -> Box<dyn Session + Send> {
        // The 502 page's Date; the calendar is read here, on the server side, once per
        // connection.
        Box::new(
            Relay::new(self.on_failure, Wall::new(now, SystemTime::now())).kernel_copy(self.splice),
        )
    }
    fn descriptors_per_connection(&self) -> u64 {
        // The client, the upstream, and with splice a pipe (two ends) per direction.
        if self.splice { 6 } else { 2 }
    }
    fn upstream(&self) -> Option<&Addr> {
        Some(&self.upstream)
    }
}
