//! `gantry endpoint check NAME`: does an endpoint of `gantry-serve.yaml` answer the
//! registry API v2 with its credentials ("check connection")?

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;

use super::{CliError, Exit, UsageExt};
use crate::client::RegistryClient;
use crate::trigger::ServeConfig;

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Ping the endpoint's /v2/ with its credentials and CA.
    ///
    /// Example: gantry endpoint check hub --config gantry-serve.yaml
    Check {
        name: String,
        #[arg(long, default_value = "gantry-serve.yaml")]
        config: PathBuf,
    },
}

pub async fn run(cmd: EndpointCommand) -> Result<Exit, CliError> {
    let EndpointCommand::Check { name, config } = cmd;
    let cfg = ServeConfig::load(&config).usage()?;
    let ep = cfg
        .endpoints
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| anyhow!("{}: no endpoint {name:?}", config.display()))
        .usage()?;
    let client = RegistryClient::new(&ep.host, &ep.options).usage()?;
    match client.ping().await {
        Ok(()) => {
            println!(
                "{name}: connection OK, {} answers the registry API v2",
                ep.host
            );
            Ok(Exit::Success)
        }
        Err(e) => {
            println!("{name}: connection failed: {e}");
            Ok(Exit::Failure)
        }
    }
}
