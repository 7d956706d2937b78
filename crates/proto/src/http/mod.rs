//! The HTTP/1.1 static-file server core, sans-IO: [`HttpSession`] turns request bytes into
//! responses (bytes and file ranges for sendfile) and access-log lines, for any driver.
//!
//! - [`parse`]: request heads and bodies, strict RFC 9112 framing;
//! - [`path`]: request targets to safe, normalised paths under the root;
//! - [`fs`]: the document root behind a trait, and its `std::fs` implementation;
//! - [`response`]: validators, conditionals, ranges, MIME, listings, log lines;
//! - [`session`]: the per-connection state machine.

pub mod fs;
pub mod parse;
pub mod path;
pub mod response;
pub mod session;

pub use fs::{Docroot, FsDocroot};
pub use session::{Config, HttpSession};
