//! Iterative (the lecture's server v1): accept one connection, serve it to the end, close it,
//! accept the next. Costs nothing per connection, and serves exactly one client at a time:
//! everyone else waits in the kernel's listen backlog, and one slow client stalls them all.

use std::io;

use super::{Server, Wake, in_process, wait_for_work};
use crate::drive::blocking::serve_connection;
use crate::report::Summary;

pub fn run(server: &Server) -> io::Result<Summary> {
    in_process(server, |reporter| {
        let ctx = server.context(reporter, plumb_sys::gettid() as u32);
        loop {
            match wait_for_work(&server.listeners, server.shutdown.drain_fd(), &[], None) {
                Wake::Conn(stream, peer) => serve_connection(stream, &peer, &ctx),
                Wake::Stop => return Ok(()),
                Wake::Extra | Wake::Idle => {}
            }
        }
    })
}
