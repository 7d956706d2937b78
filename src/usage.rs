//! Usage errors: what the user got wrong on the command line (exit code 2), and the shared
//! checks of option values. Imports nothing of the crate, so every command (the servers, the
//! client, the instruments) can use it without an import cycle.

use std::fmt;
use std::time::Duration;

/// An error the user caused on the command line: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Wraps any message as a usage error.
pub fn usage(e: impl fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

/// Validates a seconds option.
///
/// # Errors
/// Negative, NaN or absurdly large values.
pub fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| usage(format!("{name} must be a number of seconds >= 0, not {v}")))
}
