//! The HTTP static-file service (`plumb serve`): one sans-IO
//! [`plumb_proto::http::HttpSession`] per connection over a shared document root.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use plumb_proto::http::{Config, Docroot, HttpSession};
use plumb_proto::{Session, Wall};

use super::Service;

pub struct HttpService {
    pub config: Arc<Config>,
    pub root: Arc<dyn Docroot>,
}

impl Service for HttpService {
    fn name(&self) -> &'static str {
        "http"
    }
    fn client_speaks_first(&self) -> bool {
        true
    }
    fn session(&self, peer: &str, now: Instant) -> Box<dyn Session + Send> {
        Box::new(HttpSession::new(
            Arc::clone(&self.config),
            Arc::clone(&self.root),
            peer,
            now,
            Wall::new(now, SystemTime::now()),
        ))
    }
}
