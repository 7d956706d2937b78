//! plumb's instruments: [`bench`] (a load generator for HTTP and echo servers), [`compare`]
//! (one service under every concurrency model, benched side by side, with a table and a
//! chart) and [`ipc`] (latency and bandwidth of pipes, FIFOs, sockets and files; fork and
//! thread costs). They build on the server library (`plumb`: models, addresses, sockets,
//! usage errors), which never depends on them.
#![forbid(unsafe_code)]

pub mod bench;
pub mod compare;
pub mod ipc;
