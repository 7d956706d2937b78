//! Prefork (Apache's prefork MPM): `--workers` processes are forked once and each accepts on
//! the shared listener and serves connections one at a time. No fork per connection, crash
//! isolation per worker, and the parent replaces a worker that dies. Concurrency is capped at
//! the number of workers, and idle workers all wake for a new connection (the losers get
//! EAGAIN and go back to waiting).

use std::io;
use std::time::{Duration, Instant};

use super::process::Parent;
use super::{Server, Wake, wait_for_work};
use crate::drive::blocking::serve_connection;
use crate::report::Summary;

pub fn run(server: &Server) -> io::Result<Summary> {
    let mut parent = Parent::new(server)?;
    let workers = server.options.workers.max(1);
    for _ in 0..workers {
        spawn_worker(&mut parent)?;
    }
    let mut last_respawn = Instant::now() - Duration::from_secs(1);
    loop {
        let reaped = parent.wait(None);
        if server.shutdown.stop_requested() {
            break;
        }
        for (pid, status) in reaped {
            eprintln!("plumb: prefork worker {pid} ended ({status:?}); starting a new one");
            // A worker that dies at once, again and again, must not become a fork loop.
            if last_respawn.elapsed() < Duration::from_millis(100) {
                parent.wait(Some(Duration::from_millis(500)));
            }
            last_respawn = Instant::now();
            if let Err(e) = spawn_worker(&mut parent) {
                eprintln!("plumb: cannot start a prefork worker: {e}");
            }
        }
    }
    Ok(parent.finish())
}

fn spawn_worker(parent: &mut Parent<'_>) -> io::Result<()> {
    let server = parent.server;
    parent.spawn(|reporter| {
        let ctx = server.context(reporter, plumb_sys::getpid() as u32);
        loop {
            match wait_for_work(&server.listeners, server.shutdown.drain_fd(), &[], None) {
                Wake::Conn(stream, peer) => serve_connection(stream, &peer, &ctx),
                Wake::Stop => return,
                Wake::Extra | Wake::Idle => {}
            }
        }
    })?;
    Ok(())
}
