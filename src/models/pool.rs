//! Thread pool: `--threads` workers started once take accepted connections from a queue of at
//! most `--queue` entries. No per-connection thread cost and a hard bound on threads; but a
//! worker is tied up for the whole life of its connection, so as many slow or idle clients as
//! there are threads starve everyone else (the event model's reason to exist). When the queue
//! is full the acceptor stops accepting, so excess clients wait in the kernel backlog rather
//! than being dropped.

use std::io;
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::Duration;

use super::{Gate, Server, Wake, in_process, wait_for_work};
use crate::driver::serve_connection;
use crate::net::Stream;
use crate::report::Summary;
use crate::shutdown;

pub fn run(server: &Server) -> io::Result<Summary> {
    in_process(server, |reporter| {
        let threads = server.options.threads.max(1);
        // Connections being served plus those waiting in the queue.
        let gate = Gate::new(threads + server.options.queue);
        let (tx, rx) = mpsc::channel::<(Stream, String)>();
        let rx = Mutex::new(rx);
        let drain = server.shutdown.drain_fd();
        thread::scope(|scope| -> io::Result<()> {
            for i in 0..threads {
                let (rx, gate) = (&rx, &gate);
                thread::Builder::new()
                    .name(format!("plumb-pool-{i}"))
                    .stack_size(super::thread::STACK)
                    .spawn_scoped(scope, move || {
                        let ctx = server.context(reporter, plumb_sys::gettid() as u32);
                        loop {
                            let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                            let Ok((stream, peer)) = job else { return };
                            serve_connection(stream, &peer, &ctx);
                            gate.release();
                        }
                    })?;
            }
            loop {
                if !gate.acquire(Duration::from_millis(100)) {
                    if shutdown::fired(drain) {
                        break;
                    }
                    continue;
                }
                match wait_for_work(&server.listeners, drain, &[], None) {
                    Wake::Conn(s, p) => {
                        if tx.send((s, p)).is_err() {
                            break;
                        }
                    }
                    Wake::Stop => {
                        gate.release();
                        break;
                    }
                    Wake::Extra | Wake::Idle => gate.release(),
                }
            }
            // Queued connections are still served; the workers end once the queue is empty.
            drop(tx);
            Ok(())
        })
    })
}
