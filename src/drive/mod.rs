//! The connection driver: the one place that performs a session's actions on real
//! descriptors. [`Connection`] is the machine (short reads and writes, `EAGAIN`, input the
//! session has not consumed, `sendfile` bursts, the upstream connect, a child on pipes,
//! half-close, the connection record); two waiters run it:
//!
//! - [`blocking`]: `poll(2)` on one connection's descriptors, for the models that give a
//!   connection a thread or a process (and the pool, which can park it);
//! - the event loop (`models::event`): epoll readiness for thousands of connections.
//!
//! Models import this layer and [`crate::services::Service`], never a protocol module.

pub mod blocking;
mod child;
pub(crate) mod connect;
pub mod connection;
pub mod surface;
pub mod timers;
pub mod tls;

use std::time::Duration;

pub use connection::{Connection, Flow, Interest, Readiness, Source, Turn};

use crate::report::Reporter;
use crate::services::Service;

/// Read size per `read(2)`: the waiters' scratch buffers.
pub const READ_CHUNK: usize = 64 * 1024;
/// Most unconsumed input held per peer before the driver stops reading from it.
pub const MAX_PENDING_INPUT: usize = 1024 * 1024;
/// Most bytes one `sendfile` call may send; after a full chunk the connection yields to the
/// others. On loopback the kernel transmits (and queues at the receiver) during the call, so
/// this is the burst a client finds waiting per connection: small enough to still be in its
/// cache when it reads it, large enough to keep system calls few. Measured on the 10 MiB
/// benchmark (4 connections, event model): 64 KiB 1.60x nginx-1w, 128-256 KiB 2.1x, 512 KiB
/// 1.97x, 2 MiB 1.19x, unbounded (until the socket buffer is full) about 1.0x. lighttpd uses
/// 256 KiB too.
pub const SENDFILE_CHUNK: usize = 256 * 1024;

/// What a blocking waiter needs besides the connection.
pub struct Context<'a> {
    pub service: &'a dyn Service,
    pub reporter: &'a Reporter,
    /// Drain broadcast (see [`crate::shutdown`]).
    pub drain_fd: i32,
    /// Hard-stop broadcast.
    pub hard_fd: i32,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// Who serves (pid or thread number), for the connection record.
    pub by: u32,
    /// Which listeners speak TLS: an accepted client is wrapped in a TLS layer when its
    /// listener does.
    pub tls: &'a crate::tls::Listeners,
}
