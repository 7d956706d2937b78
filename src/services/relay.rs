//! The relay service (`plumb relay`, `plumb serve --proxy`): each client gets a new upstream
//! connection and the sans-IO [`plumb_proto::relay::Relay`] session copies between them.

use std::time::Instant;

use plumb_proto::Session;
use plumb_proto::relay::{OnConnectFailure, Relay};

use super::Service;
use crate::net::Addr;

pub struct RelayService {
    pub upstream: Addr,
    pub on_failure: OnConnectFailure,
}

impl Service for RelayService {
    fn name(&self) -> &'static str {
        match self.on_failure {
            OnConnectFailure::Close => "relay",
            OnConnectFailure::BadGateway => "proxy",
        }
    }
    fn session(&self, _peer: &str, _now: Instant) -> Box<dyn Session + Send> {
        Box::new(Relay::new(self.on_failure))
    }
    fn upstream(&self) -> Option<&Addr> {
        Some(&self.upstream)
    }
}
