//! `plumb bench` (being written).

/// Options of `plumb bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `plumb bench`.
///
/// # Errors
/// Always, until this subcommand lands.
pub fn run(_args: &Args) -> anyhow::Result<i32> {
    anyhow::bail!("plumb bench is not available in this build yet")
}
