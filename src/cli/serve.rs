//! `gantry serve`: triggers from registries (webhooks, notifications, polls) start
//! pipeline runs; the executions page and JSON API on the same listener.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{CliError, Exit, UsageExt};
use crate::trigger::{RunSettings, ServeConfig, Service, Source, http, poll, worker};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The triggers and endpoints (gantry-serve.yaml).
    ///
    /// Example: gantry serve --config gantry-serve.yaml --listen 127.0.0.1:8080
    #[arg(long, default_value = "gantry-serve.yaml")]
    pub config: PathBuf,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = super::listen::parse_listen)]
    pub listen: std::net::SocketAddr,
    /// State directory: the event log (events.db), build logs, the local intermediate
    /// registry.
    #[arg(long, env = "GANTRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Accept and log events but start no runs (maintenance; they run after a restart
    /// without this flag).
    #[arg(long)]
    pub paused: bool,
    /// Builds running at once in each run.
    #[arg(long = "jobs", short = 'j', default_value_t = 4)]
    pub concurrency: usize,
    /// The shipped job library (default: the one installed with gantry).
    #[arg(long)]
    pub jobs_dir: Option<PathBuf>,
    /// Directory of project secret keys.
    #[arg(long, env = "GANTRY_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Trust this CA for publication registries; repeatable.
    #[arg(long = "ca-cert")]
    pub ca_certs: Vec<PathBuf>,
}

pub async fn run(args: ServeArgs) -> Result<Exit, CliError> {
    let config = ServeConfig::load(&args.config).usage()?;
    let state = super::run::state_dir(&args.state_dir)?;
    let svc = Service::new(
        config,
        state,
        RunSettings {
            library_dir: args
                .jobs_dir
                .clone()
                .or_else(super::config::default_library_dir),
            key_dir: super::run::key_dir(&args.key_dir),
            concurrency: args.concurrency,
            ca_certs: args.ca_certs.clone(),
        },
    )
    .usage()?;
    let aborted = svc.log.abort_running()?;
    if aborted > 0 {
        tracing::warn!("{aborted} execution(s) were running when gantry serve stopped: ABORTED");
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| anyhow!("binding {}: {e}", args.listen))
        .usage()?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    println!("listening on {addr}");
    let cancel = CancellationToken::new();
    if !args.paused {
        tokio::spawn(worker::run(svc.clone(), cancel.clone()));
        for t in svc.config.triggers.values() {
            if t.source == Source::Poll {
                tokio::spawn(poll::run(svc.clone(), t.name.clone(), cancel.clone()));
            }
        }
    }
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, http::router(svc))
        .with_graceful_shutdown(super::registry::shutdown_signal())
        .await?;
    cancel.cancel();
    Ok(Exit::Success)
}
