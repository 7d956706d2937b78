//! plumb's protocol cores, written sans-IO: a core never touches a socket or a clock it was
//! not given. A driver feeds it the bytes that arrived and asks what to do next; the same core
//! then runs under every concurrency model, in unit tests and under a fuzzer.
//!
//! - [`session`]: the contract between a core and a driver ([`Session`], [`Action`], [`Peer`]);
//! - [`echo`]: the echo service;
//! - [`exec`]: a program per connection on pipes (`plumb exec`, `relay --to exec:`);
//! - [`relay`]: a two-way byte relay with half-close and backpressure (the proxy);
//! - [`framing`]: message framings (ndjson, lsp, len32, netstring);
//! - [`jsonrpc`]: JSON-RPC 2.0 messages and the RPC server session;
//! - [`http`]: the HTTP/1.1 static-file server, and the client-side response decoder;
//! - [`spare`]: per-thread spare output buffers.
#![forbid(unsafe_code)]

pub mod echo;
pub mod exec;
pub mod framing;
pub mod http;
pub mod jsonrpc;
pub mod relay;
pub mod session;
pub mod spare;

pub use session::{Action, ChildId, Peer, Session, Wall};
