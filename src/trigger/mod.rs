//! Triggers: registry events start pipeline runs (`gantry serve`).
//!
//! Intake → event log → worker → pipeline run:
//! 1. a webhook (Docker Hub, distribution notifications, GitLab) or a poll produces
//!    [`payload::Push`]es; webhooks are authenticated per trigger (constant-time compare);
//! 2. each accepted push is committed to the [`eventlog`] (fsynced) before the 202;
//! 3. the [`worker`] takes pending events in order: filters (image regex, tag filter),
//!    resolves the tag to a digest with a manifest HEAD (retrying), deduplicates on
//!    (registry, repository, tag, digest) within the trigger's debounce window, and starts
//!    the trigger's pipeline with the image as variables ([`params`]);
//! 4. the execution (status, builds, durations) is recorded for the page and the API.
//!
//! Owns: configuration of triggers, intake, the event log, polling, the executions page.
//! Must not: parse command lines or print (the CLI does), run builds itself (the runner does).

pub mod config;
pub mod eventlog;
pub mod filter;
pub mod http;
pub mod params;
pub mod payload;
pub mod poll;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::{ServeConfig, Source, Trigger};
pub use eventlog::EventLog;

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Every problem in the configuration file, each `file:line:column: message`.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("event log: {0}")]
    EventLog(String),
    #[error("tag filter: {0}")]
    Filter(String),
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// A payload naming something outside the distribution grammar.
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("unknown trigger {0:?}")]
    UnknownTrigger(String),
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
}

/// How runs started by triggers are run (the `gantry run` settings that apply).
#[derive(Clone, Debug, Default)]
pub struct RunSettings {
    pub library_dir: Option<PathBuf>,
    pub key_dir: Option<PathBuf>,
    pub concurrency: usize,
    pub ca_certs: Vec<PathBuf>,
}

/// A build's log file, found through its execution's record.
#[derive(Clone, Debug)]
pub struct BuildLogFile {
    pub path: PathBuf,
    /// The build has not finished: the file may still grow.
    pub running: bool,
}

/// Everything `gantry serve` shares between intake, worker, polls and the page.
pub struct Service {
    pub config: ServeConfig,
    pub log: Arc<EventLog>,
    pub state_dir: PathBuf,
    pub run: RunSettings,
    pub clients: crate::client::StoreFactory,
    /// Wakes the worker when an event arrives.
    pub wake: tokio::sync::Notify,
}

impl Service {
    pub fn new(
        config: ServeConfig,
        state_dir: PathBuf,
        run: RunSettings,
    ) -> Result<Arc<Service>, TriggerError> {
        let log = Arc::new(EventLog::open(&state_dir)?);
        // The worker and the polls have their own retry schedules (kept in the event log);
        // a client that retried too would hold the worker on one unreachable registry.
        let no_retry = |o: &crate::client::ClientOptions| crate::client::ClientOptions {
            retries: 0,
            ..o.clone()
        };
        let mut clients =
            crate::client::StoreFactory::new(no_retry(&crate::client::ClientOptions::default()));
        for e in &config.endpoints {
            clients = clients.with_registry_options(&e.host, no_retry(&e.options));
        }
        Ok(Arc::new(Service {
            config,
            log,
            state_dir,
            run,
            clients,
            wake: tokio::sync::Notify::new(),
        }))
    }

    /// Where build `uuid` of execution `id` logs, and whether the build is still running.
    /// The one lookup the log handler goes through: the build must belong to the
    /// execution's record (never a path from the request); while it runs, its log is
    /// `<state>/builds/<uuid>/job-output.txt` on this replica.
    pub fn build_log(&self, id: &str, uuid: &str) -> Result<Option<BuildLogFile>, TriggerError> {
        let Some(x) = self.log.execution(id)? else {
            return Ok(None);
        };
        let Some(b) = x
            .builds
            .iter()
            .find(|b| !b.uuid.is_empty() && b.uuid == uuid)
        else {
            return Ok(None);
        };
        let running = b.result.is_none() && x.finished_ms.is_none();
        let path = match &b.log {
            Some(p) => PathBuf::from(p),
            // A record's uuid, but checked anyway: it becomes a path.
            None if uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => self
                .state_dir
                .join("builds")
                .join(uuid)
                .join("job-output.txt"),
            None => return Ok(None),
        };
        Ok(Some(BuildLogFile { path, running }))
    }

    /// The trigger's configured `enabled`, unless `gantry trigger enable|disable` said
    /// otherwise.
    pub fn enabled(&self, t: &Trigger) -> bool {
        self.log
            .enabled_override(&t.name)
            .ok()
            .flatten()
            .unwrap_or(t.enabled)
    }
}
