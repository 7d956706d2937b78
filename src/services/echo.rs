//! The echo service: the sans-IO [`plumb_proto::echo::Echo`] session, nothing more.

use std::time::Instant;

use plumb_proto::Session;
use plumb_proto::echo::Echo;

use super::Service;

pub struct EchoService;

impl Service for EchoService {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn client_speaks_first(&self) -> bool {
        true
    }
    fn session(&self, _peer: &str, _now: Instant) -> Box<dyn Session + Send> {
        Box::new(Echo::new())
    }
}
