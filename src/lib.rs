//! plumb: pipes, sockets and servers. One binary with an echo service, a byte relay, a
//! netcat-style client and a static-file HTTP/1.1 server, each runnable under every classic
//! concurrency model, plus the instruments to measure them.
//!
//! Layout: protocol cores live in `plumb-proto` (sans-IO), syscalls in `plumb-sys` (the only
//! `unsafe`). This crate owns addresses and sockets ([`net`]), the blocking [`driver`], the
//! concurrency [`models`], the [`services`] that glue cores to files and upstreams, connection
//! records ([`report`]), shutdown ([`shutdown`]), and the instruments ([`bench`], [`compare`],
//! [`ipc`]).
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod compare;
pub mod connect;
pub mod drive;
pub mod ipc;
pub mod models;
pub mod net;
pub mod report;
pub mod serve;
pub mod services;
pub mod shutdown;
