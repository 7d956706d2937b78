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
//! - [`session`]: the per-connection state machine (reading, ending, one timer), the
//!   [`Session`](crate::Session) events;
//! - `route`: the method check, path resolution, file or directory, `index.html`, listings;
//! - [`conditional`]: validators, preconditions, `If-Range`, range plans, multipart framing;
//! - [`encode`]: status lines and common headers, `Content-Type`, the output queue;
//! - [`listing`]: directory listings in HTML and JSON;
//! - [`access_log`]: Combined Log Format lines, logged with the bytes that really went out;
//! - [`cgi`]: CGI/1.1 scripts (`--cgi`): meta-variables, the script's header section, one
//!   exchange with a child on pipes.

pub mod access_log;
pub mod cgi;
pub mod chunked;
pub mod client;
pub mod conditional;
pub mod docroot;
pub mod encode;
pub mod listing;
pub mod parse;
pub mod path;
mod route;
pub mod session;

pub use docroot::{Docroot, MemDocroot};
pub use session::{Config, HttpSession};
