//! The HTTP/1.1 static-file server core, sans-IO: [`HttpSession`] turns request bytes into
//! responses (bytes and file ranges for sendfile) and access-log lines, for any driver. And the
//! client side: [`client`] decodes responses (the load generator reads with it).
//!
//! - [`parse`]: request heads and bodies, strict RFC 9112 framing;
//! - [`chunked`]: the chunked transfer coding, one decoder for requests and responses;
//! - [`client`]: response heads and bodies (Content-Length, chunked, end of stream);
//! - [`path`]: request targets to safe, normalised paths under the root;
//! - [`docroot`]: the document root behind a trait (files are abstract bodies), and an
//!   in-memory one for tests and fuzzing;
//! - [`response`]: validators, conditionals, ranges, MIME, listings, log lines;
//! - [`session`]: the per-connection state machine.

pub mod chunked;
pub mod client;
pub mod docroot;
pub mod parse;
pub mod path;
pub mod response;
pub mod session;

pub use docroot::{Docroot, MemDocroot};
pub use session::{Config, HttpSession};
