//! JSON-RPC 2.0, sans-IO: [`message`] parses and validates requests, notifications and
//! batches in place; [`encode`] writes responses; [`session`] is the server session (over a
//! [`crate::framing`]) with built-in methods and commands as methods.

pub mod encode;
pub mod message;
pub mod session;

/// Walks JSON text byte by byte, knowing whether each byte is inside a string (escapes
/// included), for the single-pass scans that must not build values: the depth check and the
/// whitespace squeeze.
#[derive(Debug, Default)]
pub(crate) struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Takes the next byte; true if it is outside every string (a quote that opens a string
    /// counts as outside, one that closes it as inside).
    pub(crate) fn outside(&mut self, b: u8) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.inside = false;
            }
            return false;
        }
        if b == b'"' {
            self.inside = true;
        }
        true
    }
}

pub use message::{Invalid, Message, MessageError, Request, parse};

/// The error codes the specification defines, and the server errors (-32000..-32099) of
/// this server.
pub mod code {
    /// Invalid JSON (or not UTF-8, or nested too deeply).
    pub const PARSE_ERROR: i32 = -32700;
    /// Not a valid request object; also an empty or oversized batch, an oversized frame.
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    /// The server could not run the call (a command could not be started).
    pub const INTERNAL_ERROR: i32 = -32603;
    /// A command exited non-zero or was killed by a signal.
    pub const COMMAND_FAILED: i32 = -32000;
    /// A command ran past the call timeout; its process group was killed.
    pub const CALL_TIMEOUT: i32 = -32001;
    /// A command wrote more than the largest result allowed; it was killed.
    pub const RESULT_TOO_LARGE: i32 = -32002;
    /// The client closed its side before the call finished; the command was killed.
    pub const CANCELLED: i32 = -32003;

    /// The specification's message for a code, or this server's.
    pub fn message(code: i32) -> &'static str {
        match code {
            PARSE_ERROR => "Parse error",
            INVALID_REQUEST => "Invalid Request",
            METHOD_NOT_FOUND => "Method not found",
            INVALID_PARAMS => "Invalid params",
            INTERNAL_ERROR => "Internal error",
            COMMAND_FAILED => "Command failed",
            CALL_TIMEOUT => "Call timed out",
            RESULT_TOO_LARGE => "Result too large",
            CANCELLED => "Cancelled",
            _ => "Server error",
        }
    }
}
