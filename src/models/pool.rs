//! Thread pool: `--threads` workers started once serve accepted connections taken from a
//! queue of at most `--queue` new connections. No per-connection thread cost and a hard bound
//! on threads. When the queue is full the acceptor stops accepting, so excess clients wait in
//! the kernel backlog rather than being dropped.
//!
//! The textbook pool ties a worker to a connection for its whole life, so as many idle or slow
//! clients as there are threads starve everyone else. Here a worker runs a connection only
//! while it has work: when the session waits for input the connection is parked in the
//! [`waiting_room`](super::waiting_room) and the worker takes the next job. At most
//! `--max-connections` connections are open at once.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::Duration;

use super::waiting_room::WaitingRoom;
use super::{Gate, Server, Wake, in_process, wait_for_work};
use crate::drive::Connection;
use crate::drive::blocking::{self, Mode, Progress};
use crate::net::Stream;
use crate::report::Summary;
use crate::shutdown;

/// Work for a pool thread.
enum Job {
    /// A freshly accepted connection (holds a place in the new-connection queue).
    New(Stream, String),
    /// A parked connection that has work again.
    Resume(Box<Connection>),
}

pub fn run(server: &Server) -> io::Result<Summary> {
    in_process(server, |reporter| {
        let threads = server.options.threads.max(1);
        // New connections being started plus those waiting in the queue.
        let intake = Gate::new(threads + server.options.queue);
        // Every open connection, parked or not.
        let open = Gate::new(server.options.max_connections);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Mutex::new(rx);
        let (room, parker) = WaitingRoom::new(&server.shutdown, server.options.write_timeout)?;
        let closing = AtomicBool::new(false);
        let queued = AtomicUsize::new(0);
        let drain = server.shutdown.drain_fd();
        thread::scope(|scope| -> io::Result<()> {
            // A resumed connection goes from the waiting room straight onto the job queue.
            let back = Mutex::new(tx.clone());
            let (closing_ref, queued_ref) = (&closing, &queued);
            thread::Builder::new()
                .name("plumb-pool-wait".into())
                .spawn_scoped(scope, move || {
                    let resume = |c: Connection| {
                        queued_ref.fetch_add(1, Ordering::SeqCst);
                        let sent = back
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .send(Job::Resume(Box::new(c)));
                        if sent.is_err() {
                            queued_ref.fetch_sub(1, Ordering::SeqCst);
                        }
                    };
                    room.run(&resume, closing_ref)
                })?;
            for i in 0..threads {
                let (rx, intake, open, parker, queued) =
                    (&rx, &intake, &open, parker.clone(), &queued);
                thread::Builder::new()
                    .name(format!("plumb-pool-{i}"))
                    .stack_size(super::thread::STACK)
                    .spawn_scoped(scope, move || {
                        let ctx = server.context(reporter, plumb_sys::gettid() as u32);
                        loop {
                            let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                            if job.is_ok() {
                                queued.fetch_sub(1, Ordering::SeqCst);
                            }
                            let mut conn = match job {
                                Ok(Job::New(stream, peer)) => {
                                    intake.release();
                                    match blocking::open(stream, peer, &ctx) {
                                        Some(c) => c,
                                        None => {
                                            open.release();
                                            continue;
                                        }
                                    }
                                }
                                Ok(Job::Resume(c)) => *c,
                                Err(_) => return,
                            };
                            let others_waiting = || queued.load(Ordering::Relaxed) > 0;
                            match blocking::drive(&mut conn, &ctx, Mode::Park(&others_waiting)) {
                                Progress::Idle => parker.park(conn),
                                Progress::Done => {
                                    blocking::finish(conn, &ctx);
                                    open.release();
                                }
                            }
                        }
                    })?;
            }
            loop {
                if !open.acquire(Duration::from_millis(100)) {
                    if shutdown::fired(drain) {
                        break;
                    }
                    continue;
                }
                if !intake.acquire(Duration::from_millis(100)) {
                    open.release();
                    if shutdown::fired(drain) {
                        break;
                    }
                    continue;
                }
                match wait_for_work(&server.listeners, drain, &[], None) {
                    Wake::Conn(s, p) => {
                        queued.fetch_add(1, Ordering::SeqCst);
                        if tx.send(Job::New(s, p)).is_err() {
                            break;
                        }
                    }
                    Wake::Stop => {
                        intake.release();
                        open.release();
                        break;
                    }
                    Wake::Extra | Wake::Idle => {
                        intake.release();
                        open.release();
                    }
                }
            }
            // Open connections finish (or are stopped at the end of the grace period).
            open.wait_empty();
            closing.store(true, Ordering::SeqCst);
            parker.close();
            drop(tx);
            Ok(())
        })
    })
}
