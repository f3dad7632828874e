//! The durable store of `gantry serve`: events, the executions they led to (with their
//! attempts, claims and leases), debounce keys, poll schedules and state, trigger
//! enable/disable overrides, and finished builds' logs.
//!
//! Two engines, one code path (sqlx's `Any` driver, `$N` placeholders both understand):
//! - SQLite (`sqlite://PATH`, default `<state>/events.db`): one machine; WAL and
//!   `synchronous=FULL`, so a commit is on disk before the 202 that promises it;
//! - PostgreSQL (`postgres://USER:PASS@HOST:PORT/DB`): several replicas share the work.
//!
//! Work is shared by claims: a replica takes a due event or a queued execution with one
//! `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)` (SQLite serialises writers, so
//! the same statement without the lock clause is atomic there) and holds it by a lease its
//! heartbeat renews. A lease that runs out is someone else's to take.
//!
//! Owns: the schema ([`schema`]) and every query. Must not: know about HTTP or run pipelines.

mod commit;
mod events;
mod executions;
pub mod schema;

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use events::EventRow;
pub use executions::{Attempt, BuildRow, Claimed, ExecutionRow, NewExecution};
pub use schema::Engine;

use super::TriggerError;

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// RFC 3339 (UTC, milliseconds) of a time in milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

pub(crate) fn db(e: sqlx::Error) -> TriggerError {
    TriggerError::EventLog(e.to_string())
}

/// A database URL with its password hidden (for messages).
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() => {
            let userinfo = &rest[..at - scheme.len() - 3];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// The event log and everything beside it.
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// This database's identity (a UUID made by the first migration run), written into
    /// the environment of every process a run starts so orphans can be found.
    id: String,
    /// Accepted events go through one writer that commits them in groups.
    commits: commit::Queue,
}

impl Store {
    /// The default database: `<state_dir>/events.db`.
    pub fn default_url(state_dir: &std::path::Path) -> String {
        format!("sqlite://{}", state_dir.join("events.db").display())
    }

    /// Connects to `url` (creating a SQLite file) and migrates the schema.
    pub async fn open(url: &str) -> Result<Store, TriggerError> {
        sqlx::any::install_default_drivers();
        let shown = redact_url(url);
        let bad = |m: String| TriggerError::EventLog(format!("database {shown}: {m}"));
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err(bad(
                "expected sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB".into(),
            ));
        };
        let mut url = url.to_string();
        if engine == Engine::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| TriggerError::Io {
                        context: format!("creating {}", dir.display()),
                        source: e,
                    })?;
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let opts = AnyConnectOptions::from_str(&url).map_err(|e| bad(e.to_string()))?;
        // SQLite takes one writer at a time: several connections writing at once wait in
        // SQLite's busy handler, which sleeps (measured: p99 200 ms at 2,000 events/s with
        // 4 connections). One connection queues them in the pool instead, as the rusqlite
        // era's single connection did; the only transaction (claims) holds no second one.
        let pool = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL: readers (the page, `gantry events ls`) do not block intake;
                        // FULL: a commit is fsynced before it returns (the 202's promise).
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let migrator = sqlx::migrate::Migrator::new(schema::Embedded(engine))
            .await
            .map_err(|e| bad(format!("migrations: {e}")))?;
        migrator
            .run(&pool)
            .await
            .map_err(|e| bad(format!("migrating: {e}")))?;
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query("INSERT INTO meta (key, value) VALUES ('id', $1) ON CONFLICT (key) DO NOTHING")
            .bind(&fresh)
            .execute(&pool)
            .await
            .map_err(db)?;
        let id: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'id'")
            .fetch_one(&pool)
            .await
            .map_err(db)?;
        let commits = commit::start(pool.clone());
        Ok(Store {
            pool,
            engine,
            id,
            commits,
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// This database's identity.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `FOR UPDATE SKIP LOCKED` where the engine has it.
    fn skip_locked(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            Engine::Sqlite => "",
        }
    }

    /// The enable/disable override of a trigger (`gantry trigger enable|disable`).
    pub async fn enabled_override(&self, name: &str) -> Result<Option<bool>, TriggerError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT enabled FROM trigger_state WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(v.map(|v| v != 0))
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), TriggerError> {
        sqlx::query(
            "INSERT INTO trigger_state (name, enabled) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled",
        )
        .bind(name)
        .bind(enabled as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Tag → digest a poll trigger saw last time (empty on its first poll).
    pub async fn poll_seen(
        &self,
        trigger: &str,
    ) -> Result<std::collections::HashMap<String, String>, TriggerError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT tag, digest FROM poll_state WHERE trigger = $1")
                .bind(trigger)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(rows.into_iter().collect())
    }

    pub async fn poll_saw(
        &self,
        trigger: &str,
        tag: &str,
        digest: &str,
    ) -> Result<(), TriggerError> {
        sqlx::query(
            "INSERT INTO poll_state (trigger, tag, digest) VALUES ($1, $2, $3)
             ON CONFLICT (trigger, tag) DO UPDATE SET digest = excluded.digest",
        )
        .bind(trigger)
        .bind(tag)
        .bind(digest)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Takes the poll of `trigger` due at or before `now` for `replica`, scheduling the
    /// next one at `next`: of N replicas, exactly one wins each poll. `Err(at)`: not due
    /// (or taken); the next poll is due at `at`.
    pub async fn claim_poll(
        &self,
        trigger: &str,
        replica: &str,
        now: i64,
        next: i64,
    ) -> Result<Result<(), i64>, TriggerError> {
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO poll_schedule (trigger, next_ms, owner) VALUES ($1, $2, $3)
             ON CONFLICT (trigger) DO UPDATE SET next_ms = excluded.next_ms, owner = excluded.owner
             WHERE poll_schedule.next_ms <= $4
             RETURNING owner",
        )
        .bind(trigger)
        .bind(next)
        .bind(replica)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if won.is_some() {
            return Ok(Ok(()));
        }
        let at: Option<i64> =
            sqlx::query_scalar("SELECT next_ms FROM poll_schedule WHERE trigger = $1")
                .bind(trigger)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(Err(at.unwrap_or(now)))
    }

    /// Moves the next poll of `trigger` (after a backoff), if `replica` still holds it.
    pub async fn reschedule_poll(
        &self,
        trigger: &str,
        replica: &str,
        next: i64,
    ) -> Result<(), TriggerError> {
        sqlx::query("UPDATE poll_schedule SET next_ms = $3 WHERE trigger = $1 AND owner = $2")
            .bind(trigger)
            .bind(replica)
            .bind(next)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

/// What `gantry events ls` and `/api/events` show of an event's run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// The execution's state (queued, running, succeeded, failed, error, abandoned).
    pub state: String,
    pub status: String,
    pub replica: Option<String>,
}
