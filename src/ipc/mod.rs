//! `plumb ipc` (being written).

/// Options of `plumb ipc`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `plumb ipc`.
///
/// # Errors
/// Always, until this subcommand lands.
pub fn run(_args: &Args) -> anyhow::Result<i32> {
    anyhow::bail!("plumb ipc is not available in this build yet")
}
