//! Fork per connection (the concurrent server): the parent accepts and forks; the child serves
//! the connection and exits; the parent never waits for a particular child but reaps every
//! exited one when SIGCHLD wakes it, so no zombie is ever left behind. Costs a `fork` (page
//! tables, copy-on-write faults) per connection, and children share nothing, so their records
//! come back through a pipe. At most `--max-connections` children run at once.

use std::io;

use super::process::Parent;
use super::{Server, Wake, wait_for_work_or};
use crate::drive::blocking::serve_connection;
use crate::report::Summary;

pub fn run(server: &Server) -> io::Result<Summary> {
    let mut parent = Parent::new(server)?;
    loop {
        // At most --max-connections children: beyond, clients wait in the backlog (a relay
        // to itself would otherwise fork until the machine runs out of processes).
        if parent.children.len() >= server.options.max_connections {
            parent.wait(None);
            if server.shutdown.stop_requested() {
                break;
            }
            continue;
        }
        match wait_for_work_or(
            &server.listeners,
            server.shutdown.wake_fd(),
            &parent.watch(),
            parent.patience(),
        ) {
            Wake::Conn(stream, peer) => {
                // A program per connection (plumb exec): the child becomes it, the socket as
                // its stdin and stdout.
                let spawned = if let Some(plan) = server.service.exec_in_place() {
                    parent.hand_over(stream, &peer, plan).map(drop)
                } else {
                    parent
                        .spawn(|reporter| {
                            let ctx = server.context(reporter, plumb_sys::getpid() as u32);
                            serve_connection(stream, &peer, &ctx);
                        })
                        .map(drop)
                };
                // The parent closes its copy of the connection when `stream` is dropped here
                // (it was moved into the closure, which only the child ran).
                if let Err(e) = spawned {
                    eprintln!("plumb: fork failed: {e}");
                }
            }
            Wake::Stop => {
                if server.shutdown.check() {
                    break;
                }
                parent.service();
            }
            Wake::Extra | Wake::Idle => {
                parent.service();
            }
        }
    }
    Ok(parent.finish())
}
