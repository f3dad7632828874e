//! Command-line definitions (clap), one file per noun. No logic beyond turning arguments
//! into validated values and calling the library; errors become exit codes here.

mod build;
mod config;
mod endpoint;
mod events;
mod image;
mod job;
mod library;
mod listen;
mod login;
mod meta;
mod playbook;
mod registry;
mod run;
mod secret;
mod serve;
mod setup;
mod trigger;

use clap::{Parser, Subcommand};

/// Exit statuses shared by every command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    /// The operation failed: a job, gate or check failed; an image was not found; the
    /// registry refused the credentials, could not be reached, or its certificate is not
    /// trusted.
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
    version = meta::VERSION,
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
    /// Run a pipeline (check, gate, promote) for a change, with every registry embedded.
    ///
    /// Example: gantry run examples/seed/base --pipeline check --change 1
    Run(Box<run::RunArgs>),
    /// Build records kept in the intermediate registry.
    #[command(subcommand)]
    Builds(BuildsCommand),
    /// Run, maintain and administer gantry's OCI registry.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Copy, tag, promote, list, inspect and delete images in registries and OCI layouts.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Check Zuul configuration (zuul.yaml, zuul.d/, .zuul.yaml, .zuul.d/).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Show frozen jobs and job graphs.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Check playbooks against gantry's built-in interpreter.
    #[command(subcommand)]
    Playbook(playbook::PlaybookCommand),
    /// Manage project keys and encrypted secrets (zuul-client compatible).
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Build an image from a Dockerfile and push it (docker engine or daemonless).
    Build(Box<build::BuildArgs>),
    /// Start pipeline runs when images change in registries (webhooks, notifications,
    /// polls), with a durable event log and an executions page.
    ///
    /// Example: gantry serve --config gantry-serve.yaml --listen 127.0.0.1:8080
    Serve(serve::ServeArgs),
    /// The event log of `gantry serve`.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Enable, disable and test the triggers of `gantry serve`.
    #[command(subcommand)]
    Trigger(trigger::TriggerCommand),
    /// Registry endpoints of `gantry serve`.
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCommand),
    /// Log in to a registry: check the credentials, then store them in docker's
    /// config.json (or its credential helper), shared with docker, podman and skopeo.
    ///
    /// Example: echo "$PW" | gantry login 127.0.0.1:5000 --username zuul --password-stdin
    Login(login::LoginArgs),
    /// Remove a registry's credentials from docker's config.json (or its helper).
    ///
    /// Example: gantry logout 127.0.0.1:5000
    Logout(login::LogoutArgs),
    /// Print gantry's version and the git commit it was built from.
    Version(meta::VersionArgs),
    /// Print a shell completion script.
    ///
    /// Example: gantry completions bash > /etc/bash_completion.d/gantry
    Completions(meta::CompletionsArgs),
    /// Print the man page (or write one page per command with --dir).
    ///
    /// Example: gantry manpage --dir /usr/local/share/man/man1
    Manpage(meta::ManpageArgs),
    /// Install optional tools gantry can use.
    ///
    /// Example: gantry setup ansible
    #[command(subcommand)]
    Setup(setup::SetupCommand),
}

impl Cli {
    /// Servers log every request (info); other commands report through their own output
    /// and log only warnings, so embedded registries stay quiet.
    fn default_level(&self) -> &'static str {
        match &self.command {
            Command::Registry(registry::RegistryCommand::Serve(_)) | Command::Serve(_) => "info",
            _ => "warn",
        }
    }
}

/// Logs go to stderr; `GANTRY_LOG` (tracing filter syntax) overrides the level.
pub fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => cli.default_level(),
        (false, 1) => "debug",
        _ => "trace",
    };
    // rustls logs a certificate failure on its own; the client reports it as one line.
    let filter = EnvFilter::try_from_env("GANTRY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},rustls=off")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // URL userinfo and query strings never reach the log (crate::logging).
        .with_writer(crate::logging::RedactingStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// `gantry builds …`
#[derive(Subcommand, Debug)]
pub enum BuildsCommand {
    /// List the builds recorded for a project (and change).
    Ls(run::BuildsLsArgs),
}

pub async fn run(cli: Cli) -> Result<Exit, CliError> {
    match cli.command {
        Command::Run(args) => run::run(*args, cli.quiet, cli.verbose > 0).await,
        Command::Builds(BuildsCommand::Ls(args)) => run::builds_ls(args).await,
        Command::Registry(cmd) => registry::run(cmd).await,
        Command::Image(cmd) => image::run(cmd, cli.quiet).await,
        Command::Config(cmd) => config::run(cmd),
        Command::Job(cmd) => job::run(cmd),
        Command::Playbook(cmd) => playbook::run(cmd).await,
        Command::Secret(cmd) => secret::run(cmd),
        Command::Build(args) => build::run(*args, cli.quiet).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Events(cmd) => events::run(cmd).await,
        Command::Trigger(cmd) => trigger::run(cmd).await,
        Command::Endpoint(cmd) => endpoint::run(cmd).await,
        Command::Login(args) => login::login(args).await,
        Command::Logout(args) => login::logout(args).await,
        Command::Version(args) => meta::version(&args),
        Command::Completions(args) => meta::completions(&args),
        Command::Manpage(args) => meta::manpage(&args),
        Command::Setup(cmd) => setup::run(cmd).await,
    }
}
