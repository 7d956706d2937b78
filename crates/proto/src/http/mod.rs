//! The HTTP/1.1 static-file server core, sans-IO: [`HttpSession`] turns request bytes into
//! responses (bytes and file ranges for sendfile) and access-log lines, for any driver.
//!
//! - [`parse`]: request heads and bodies, strict RFC 9112 framing;
//! - [`path`]: request targets to safe, normalised paths under the root;
//! - [`docroot`]: the document root behind a trait (files are abstract bodies), and an
//!   in-memory one for tests and fuzzing;
//! - [`response`]: validators, conditionals, ranges, MIME, listings, log lines;
//! - [`session`]: the per-connection state machine.

pub mod docroot;
pub mod parse;
pub mod path;
pub mod response;
pub mod session;

pub use docroot::{Docroot, MemDocroot};
pub use session::{Config, HttpSession};
