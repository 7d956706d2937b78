//! plumb: pipes, sockets and servers. One binary with an echo service, a byte relay, a
//! netcat-style client and a static-file HTTP/1.1 server, each runnable under every classic
//! concurrency model, plus the instruments to measure them.
//!
//! Layout: protocol cores live in `plumb-proto` (sans-IO), syscalls in `plumb-sys` (the only
//! `unsafe`). This crate owns addresses and sockets ([`net`]), the connection pump ([`drive`]), the
//! concurrency [`models`], the [`services`] that glue cores to files and upstreams, connection
//! records ([`report`]), shutdown ([`shutdown`]), the start of a server ([`server`]) and usage
//! errors ([`usage`]). The instruments (bench, compare, ipc) are the `plumb-instruments` crate,
//! which depends on this one; the command line is the binary's.
#![forbid(unsafe_code)]

pub mod activation;
pub mod connect;
pub mod drive;
pub mod exec;
pub mod models;
pub mod net;
pub mod report;
pub mod rpc;
pub mod serve;
pub mod server;
pub mod services;
pub mod shutdown;
pub mod tls;
pub mod usage;
