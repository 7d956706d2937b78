//! `plumb serve` (being written).

/// Options of `plumb serve`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `plumb serve`.
///
/// # Errors
/// Always, until this subcommand lands.
pub fn run(_args: &Args) -> anyhow::Result<i32> {
    anyhow::bail!("plumb serve is not available in this build yet")
}
