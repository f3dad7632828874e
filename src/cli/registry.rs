//! `gantry registry …`
use clap::Subcommand;

use super::{CliError, Exit};

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API.
    Serve,
}

pub async fn run(cmd: RegistryCommand) -> Result<Exit, CliError> {
    match cmd {
        RegistryCommand::Serve => Ok(Exit::Success),
    }
}
