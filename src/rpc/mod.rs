//! `plumb rpc`: JSON-RPC 2.0 over any socket or pipe, in one of four framings
//! ([`plumb_proto::framing`]). [`serve`] exposes built-in methods and commands as remote
//! methods under every concurrency model; the core is [`plumb_proto::jsonrpc`], sans-IO.

pub mod call;
pub mod serve;

pub use call::CallArgs;
pub use serve::ServeArgs;
