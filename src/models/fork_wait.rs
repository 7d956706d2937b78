//! Fork and wait (the lecture's server v2): fork a child per connection, then wait for it to
//! finish before accepting the next. The child isolates the connection (a crash kills only
//! it), but the parent's wait serialises everything exactly like the iterative server, while
//! paying for a fork on top. While waiting, the parent keeps reading the child's records, so
//! a chatty child cannot block on a full pipe.

use std::io;

use super::process::Parent;
use super::{Server, Wake, wait_for_work_or};
use crate::drive::blocking::serve_connection;
use crate::report::Summary;

pub fn run(server: &Server) -> io::Result<Summary> {
    let mut parent = Parent::new(server)?;
    'accept: loop {
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
                    parent.hand_over(stream, &peer, plan)
                } else {
                    parent
                        .spawn(|reporter| {
                            let ctx = server.context(reporter, plumb_sys::getpid() as u32);
                            serve_connection(stream, &peer, &ctx);
                        })
                        .map(Some)
                };
                let child = match spawned {
                    Ok(Some(pid)) => pid,
                    Ok(None) => continue, // refused
                    Err(e) => {
                        eprintln!("plumb: fork failed: {e}");
                        continue;
                    }
                };
                // Wait for this child (reading its records meanwhile).
                while parent.children.contains(&child) {
                    parent.wait(None);
                    if server.shutdown.stop_requested() {
                        break 'accept;
                    }
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
