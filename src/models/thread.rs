//! Thread per connection: a new thread serves each client, so clients no longer wait for
//! each other. Costs a thread creation per connection and a stack per client; without a cap,
//! a flood of (or many idle) clients exhausts memory or the thread limit, so at most
//! `--max-connections` threads exist and further clients wait in the kernel backlog.

use std::io;
use std::thread;
use std::time::Duration;

use super::{Gate, Server, Wake, in_process, wait_for_work};
use crate::drive::blocking::serve_connection;
use crate::report::Summary;
use crate::shutdown;

/// Stack per connection thread: the driver needs its 64 KiB read buffer and little more.
pub(crate) const STACK: usize = 256 * 1024;

pub fn run(server: &Server) -> io::Result<Summary> {
    in_process(server, |reporter| {
        let gate = Gate::new(server.options.max_connections);
        let drain = server.shutdown.drain_fd();
        thread::scope(|scope| {
            loop {
                // Accept only while a place is free: at the cap, clients queue in the kernel.
                if !gate.acquire(Duration::from_millis(100)) {
                    if shutdown::fired(drain) {
                        return;
                    }
                    continue;
                }
                let (stream, peer) = match wait_for_work(&server.listeners, drain, &[], None) {
                    Wake::Conn(s, p) => (s, p),
                    Wake::Stop => {
                        gate.release();
                        return;
                    }
                    Wake::Extra | Wake::Idle => {
                        gate.release();
                        continue;
                    }
                };
                let gate = &gate;
                let spawned =
                    thread::Builder::new()
                        .stack_size(STACK)
                        .spawn_scoped(scope, move || {
                            let ctx = server.context(reporter, plumb_sys::gettid() as u32);
                            serve_connection(stream, &peer, &ctx);
                            gate.release();
                        });
                if let Err(e) = spawned {
                    // The stream moved into the failed closure and is closed with it.
                    eprintln!("plumb: cannot start a thread: {e}");
                    gate.release();
                }
            }
        });
        Ok(())
    })
}
