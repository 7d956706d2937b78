//! The JSON-RPC service (`plumb rpc serve`): the sans-IO
//! [`plumb_proto::jsonrpc::session::RpcSession`], one per connection, all sharing one
//! configuration and its count of running commands (`--max-calls`). Under the process
//! models (fork, fork-wait, prefork) each process has its own count, so the bound holds per
//! process there.

use std::sync::Arc;
use std::time::Instant;

use plumb_proto::Session;
use plumb_proto::jsonrpc::session::{Config, RpcSession};

use super::Service;

pub struct RpcService {
    pub config: Arc<Config>,
}

impl Service for RpcService {
    fn name(&self) -> &'static str {
        "rpc"
    }
    fn client_speaks_first(&self) -> bool {
        true
    }
    fn session(&self, peer: &str, _now: Instant) -> Box<dyn Session + Send> {
        Box::new(RpcSession::new(Arc::clone(&self.config), peer))
    }
}
