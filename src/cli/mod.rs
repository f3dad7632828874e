//! Command-line definitions (clap), one file per noun. No logic beyond turning arguments
//! into validated values and calling the library; errors become exit codes here.

mod build;
mod image;
mod registry;

use clap::{Parser, Subcommand};

/// Exit statuses shared by every command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    /// A job, gate or check failed.
    Failure = 1,
    /// Bad usage, input or configuration.
    Usage = 2,
    /// Something broke inside gantry or its environment.
    Internal = 3,
}

/// An error on its way to the user, with the exit status it deserves.
#[derive(Debug)]
pub struct CliError {
    pub status: Exit,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError {
            status: Exit::Internal,
            error: e.into(),
        }
    }
}

/// Marks an error as the user's (exit 2).
pub trait UsageExt<T> {
    fn usage(self) -> Result<T, CliError>;
}

impl<T, E: Into<anyhow::Error>> UsageExt<T> for Result<T, E> {
    fn usage(self) -> Result<T, CliError> {
        self.map_err(|e| CliError {
            status: Exit::Usage,
            error: e.into(),
        })
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "gantry",
    version,
    about = "Gate container images the way Zuul does: speculative images, embedded registries, promote by manifest retag",
    propagate_version = true
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run, maintain and administer gantry's OCI registry.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Copy, tag, promote, list, inspect and delete images in registries and OCI layouts.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Build an image from a Dockerfile and push it (docker engine or daemonless).
    Build(Box<build::BuildArgs>),
}

/// Logs go to stderr; `GANTRY_LOG` (tracing filter syntax) overrides the level.
pub fn init_tracing(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("GANTRY_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

pub async fn run(cli: Cli) -> Result<Exit, CliError> {
    match cli.command {
        Command::Registry(cmd) => registry::run(cmd).await,
        Command::Image(cmd) => image::run(cmd, cli.quiet).await,
        Command::Build(args) => build::run(*args).await,
    }
}
