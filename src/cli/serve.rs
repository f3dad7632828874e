//! `gantry serve`: triggers from registries (webhooks, notifications, polls) start
//! pipeline runs; the executions page and JSON API on the same listener.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{CliError, Exit, UsageExt};
use crate::trigger::{
    ReplicaSettings, RunSettings, ServeConfig, Service, Source, http, poll, runs, worker,
};

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
    /// The event log: sqlite://PATH (default: <state>/events.db) or
    /// postgres://USER:PASS@HOST:PORT/DB, shared by replicas (GANTRY_DATABASE keeps the
    /// password off the command line).
    #[arg(long, env = "GANTRY_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// This replica's name, shown with what it ran (default: the host name). Replicas on
    /// one host need distinct names; keep a replica's name across restarts.
    #[arg(long, env = "GANTRY_REPLICA")]
    pub replica: Option<String>,
    /// Seconds a replica's claim holds without a heartbeat: when a replica dies, another
    /// takes over its runs after this long.
    #[arg(long, default_value_t = 30.0)]
    pub lease_timeout: f64,
    /// Seconds runs in progress get to finish after SIGTERM before they are abandoned
    /// (and run again by another replica or after the restart).
    #[arg(long, default_value_t = 60.0)]
    pub grace: f64,
    /// Runs at once (overrides `max_concurrent_runs` of the config; default: the number
    /// of CPUs).
    #[arg(long)]
    pub max_concurrent_runs: Option<usize>,
}

pub async fn run(args: ServeArgs) -> Result<Exit, CliError> {
    let mut config = ServeConfig::load(&args.config).usage()?;
    let library_dir = args
        .jobs_dir
        .clone()
        .or_else(super::config::default_library_dir);
    // A trigger whose project cannot run is refused now, not at its first event.
    config.check_projects(library_dir.as_deref()).usage()?;
    let state = super::run::state_dir(&args.state_dir)?;
    let seconds = |what: &str, v: f64| {
        if v.is_finite() && v > 0.0 && v < 86_400.0 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(anyhow!("--{what} {v}: expected seconds above 0"))
        }
    };
    let lease = seconds("lease-timeout", args.lease_timeout).usage()?;
    let grace = seconds("grace", args.grace).usage()?;
    let svc = Service::new(
        config,
        state,
        RunSettings {
            library_dir,
            key_dir: super::run::key_dir(&args.key_dir),
            concurrency: args.concurrency,
            ca_certs: args.ca_certs.clone(),
        },
        ReplicaSettings {
            database: args.database.clone(),
            name: args.replica.clone(),
            lease,
            max_concurrent_runs: args.max_concurrent_runs,
        },
    )
    .await
    .usage()?;
    let requeued = runs::recover(&svc).await?;
    if requeued > 0 {
        tracing::warn!(
            "{requeued} execution(s) were running when this replica stopped: queued again"
        );
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| anyhow!("binding {}: {e}", args.listen))
        .usage()?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    println!("listening on {addr}");
    http::warn_if_open(&svc, addr);
    tracing::info!(
        "replica {} on {:?} database, at most {} run(s) at once, lease {} s",
        svc.replica,
        svc.log.engine(),
        svc.max_concurrent_runs,
        lease.as_secs_f64()
    );
    // `claims` stops taking work; `beat` keeps the leases of runs still finishing.
    let claims = CancellationToken::new();
    let beat = CancellationToken::new();
    tokio::spawn(runs::heartbeat(svc.clone(), beat.clone()));
    if !args.paused {
        tokio::spawn(worker::run(svc.clone(), claims.clone()));
        tokio::spawn(runs::claim_loop(svc.clone(), claims.clone()));
        for t in svc.config.triggers.values() {
            if t.source == Source::Poll {
                tokio::spawn(poll::run(svc.clone(), t.name.clone(), claims.clone()));
            }
        }
    }
    let stop = claims.clone();
    crate::server::serve(listener, http::router(svc.clone()), None, async move {
        super::registry::shutdown_signal().await;
        tracing::info!("stopping: no new events or runs");
        stop.cancel();
    })
    .await?;
    claims.cancel();
    runs::shutdown(&svc, grace).await;
    beat.cancel();
    Ok(Exit::Success)
}
