//! Triggers: registry events start pipeline runs (`gantry serve`).
//!
//! Intake → store → worker → pipeline run:
//! 1. a webhook (Docker Hub, distribution notifications, GitLab) or a poll produces
//!    [`payload::Push`]es; webhooks are authenticated per trigger (constant-time compare);
//! 2. each accepted push is committed to the [`store`] (SQLite or PostgreSQL) before the 202;
//! 3. the [`worker`] claims pending events in order: filters (image regex, tag filter),
//!    resolves the tag to a digest with a manifest HEAD (retrying), deduplicates on
//!    (registry, repository, tag, digest) within the trigger's debounce window, and queues
//!    an execution;
//! 4. executions are claimed in FIFO order by replicas with a free run slot
//!    (`max_concurrent_runs`), held by a lease, run with the image as variables
//!    ([`params`]) and run again from the beginning when their replica dies ([`orphans`]
//!    kills what the dead attempt left); status, attempts and builds are recorded for the
//!    page and the API.
//!
//! Owns: configuration of triggers, intake, the store, polling, the executions page.
//! Must not: parse command lines or print (the CLI does), run builds itself (the runner does).

pub mod config;
pub mod filter;
pub mod http;
pub mod orphans;
pub mod params;
pub mod payload;
pub mod poll;
pub mod runs;
pub mod store;
pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::{ServeConfig, Source, Trigger};
pub use store::Store;
/// The former name of the store.
pub type EventLog = Store;

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

/// How this process takes part in the shared work.
#[derive(Clone, Debug)]
pub struct ReplicaSettings {
    /// `sqlite://PATH` or `postgres://…` (default: `<state>/events.db`).
    pub database: Option<String>,
    /// This replica's name (default: the host name). Stable across restarts: a replica
    /// that starts again takes back its previous life's running executions at once.
    pub name: Option<String>,
    /// How long a claim holds without a heartbeat (renewed every third of it).
    pub lease: Duration,
    /// Runs at once in this process (default: `max_concurrent_runs` of the config, else
    /// the number of CPUs).
    pub max_concurrent_runs: Option<usize>,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            database: None,
            name: None,
            lease: Duration::from_secs(30),
            max_concurrent_runs: None,
        }
    }
}

/// A run in progress in this process.
pub(crate) struct Running {
    pub attempt: i64,
    pub cancel: CancellationToken,
    /// Set when the run is stopped to be run again elsewhere (shutdown, lost lease).
    pub abandon: Option<String>,
}

/// The name of this host (for replica names and orphan rules).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A build's log, found through its execution's record.
#[derive(Clone, Debug)]
pub enum BuildLog {
    /// The file on this replica; `running`: the build has not finished, the file may grow.
    File { path: PathBuf, running: bool },
    /// The copy kept in the database when the build ended (another replica ran it).
    Stored(String),
}

/// Everything `gantry serve` shares between intake, worker, polls and the page.
pub struct Service {
    pub config: ServeConfig,
    pub log: Arc<Store>,
    pub state_dir: PathBuf,
    pub run: RunSettings,
    pub clients: crate::client::StoreFactory,
    /// Wakes the worker when an event arrives.
    pub wake: tokio::sync::Notify,
    /// Wakes the run claimer when an execution is queued or a slot frees.
    pub wake_runs: tokio::sync::Notify,
    pub replica: String,
    pub host: String,
    pub lease: Duration,
    pub max_concurrent_runs: usize,
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pub(crate) running: Mutex<HashMap<String, Running>>,
    /// The one intermediate registry of this process (started with the first run).
    pub(crate) intermediate:
        tokio::sync::OnceCell<(crate::roles::Endpoint, tokio::task::JoinHandle<()>)>,
}

impl Service {
    pub async fn new(
        config: ServeConfig,
        state_dir: PathBuf,
        run: RunSettings,
        replica: ReplicaSettings,
    ) -> Result<Arc<Service>, TriggerError> {
        let url = replica
            .database
            .clone()
            .unwrap_or_else(|| Store::default_url(&state_dir));
        let log = Arc::new(Store::open(&url).await?);
        // The worker and the polls have their own retry schedules (kept in the store);
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
        let host = host_name();
        let max = replica
            .max_concurrent_runs
            .or(config.max_concurrent_runs)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        Ok(Arc::new(Service {
            config,
            log,
            state_dir,
            run,
            clients,
            wake: tokio::sync::Notify::new(),
            wake_runs: tokio::sync::Notify::new(),
            replica: replica.name.clone().unwrap_or_else(|| host.clone()),
            host,
            lease: replica.lease.max(Duration::from_millis(300)),
            max_concurrent_runs: max,
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
            running: Mutex::new(HashMap::new()),
            intermediate: tokio::sync::OnceCell::new(),
        }))
    }

    /// The trigger's configured `enabled`, unless `gantry trigger enable|disable` said
    /// otherwise (kept in the database, so every replica agrees).
    pub async fn enabled(&self, t: &Trigger) -> bool {
        self.log
            .enabled_override(&t.name)
            .await
            .ok()
            .flatten()
            .unwrap_or(t.enabled)
    }

    /// A build's log — the one lookup the log handler goes through. The build must belong
    /// to the execution's record (never a path from the request). On the replica that runs
    /// or ran it, the log is its file (`<state>/builds/<uuid>/job-output.txt` while it
    /// runs), which may still grow; elsewhere it is the copy kept in the database when the
    /// build ended, so any replica serves any finished build's log. `None`: no such build,
    /// or it is still running on another replica.
    pub async fn build_log(&self, id: &str, uuid: &str) -> Result<Option<BuildLog>, TriggerError> {
        let Some(x) = self.log.execution(id).await? else {
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
        if x.replica.as_deref() == Some(self.replica.as_str()) {
            let path = match &b.log {
                Some(p) => Some(PathBuf::from(p)),
                // A record's uuid, but checked anyway: it becomes a path.
                None if uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => Some(
                    self.state_dir
                        .join("builds")
                        .join(uuid)
                        .join("job-output.txt"),
                ),
                None => None,
            };
            if let Some(path) = path
                && tokio::fs::try_exists(&path).await.unwrap_or(false)
            {
                return Ok(Some(BuildLog::File { path, running }));
            }
        }
        Ok(self.log.stored_log(id, uuid).await?.map(BuildLog::Stored))
    }

    /// The executions in progress in this process.
    pub fn running_here(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }
}
