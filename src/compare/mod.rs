//! `plumb compare` (being written).

/// Options of `plumb compare`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `plumb compare`.
///
/// # Errors
/// Always, until this subcommand lands.
pub fn run(_args: &Args) -> anyhow::Result<i32> {
    anyhow::bail!("plumb compare is not available in this build yet")
}
