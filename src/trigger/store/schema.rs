//! The schema as versioned migrations, the same steps for SQLite and PostgreSQL (only the
//! spelling of an auto-increment key and of a 64-bit integer differ). Applied by sqlx's
//! migrator (its `_sqlx_migrations` table records what ran; PostgreSQL takes an advisory
//! lock so replicas starting together migrate once). Never edit a shipped step: add one.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};

/// Which engine a migration is spelled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// 1: the event log of the single-process `gantry serve` (same tables as before
/// migrations existed, so an old `events.db` is adopted as it is).
const V1: &str = "
CREATE TABLE IF NOT EXISTS events (
  id {ID},
  trigger TEXT NOT NULL,
  source TEXT NOT NULL,
  received_ms {INT} NOT NULL,
  push TEXT NOT NULL,
  idempotency_key TEXT,
  state TEXT NOT NULL,
  outcome TEXT NOT NULL DEFAULT '',
  attempts {INT} NOT NULL DEFAULT 0,
  next_attempt_ms {INT} NOT NULL DEFAULT 0,
  replay {INT} NOT NULL DEFAULT 0,
  digest TEXT,
  execution TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events(trigger, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_pending ON events(state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS executions (
  id TEXT PRIMARY KEY,
  event_id {INT} NOT NULL,
  trigger TEXT NOT NULL,
  registry TEXT NOT NULL,
  repository TEXT NOT NULL,
  tag TEXT NOT NULL,
  digest TEXT NOT NULL,
  project TEXT NOT NULL,
  pipeline TEXT NOT NULL,
  status TEXT NOT NULL,
  started_ms {INT} NOT NULL,
  finished_ms {INT},
  builds TEXT NOT NULL DEFAULT '[]',
  message TEXT
);
CREATE INDEX IF NOT EXISTS executions_key ON executions(registry, repository, tag, digest, started_ms);
CREATE TABLE IF NOT EXISTS trigger_state (name TEXT PRIMARY KEY, enabled {INT} NOT NULL);
CREATE TABLE IF NOT EXISTS poll_state (
  trigger TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
  PRIMARY KEY (trigger, tag)
);
";

/// 2: replicas. Claims and leases on events and executions, the attempts of an execution,
/// the debounce key (one row per image, updated atomically), poll schedules, build logs in
/// the database, and this database's identity (marks the processes its runs start).
const V2: &str = "
ALTER TABLE events ADD COLUMN owner TEXT;
ALTER TABLE events ADD COLUMN lease_until {INT} NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN state TEXT NOT NULL DEFAULT 'running';
ALTER TABLE executions ADD COLUMN owner TEXT;
ALTER TABLE executions ADD COLUMN host TEXT;
ALTER TABLE executions ADD COLUMN lease_until {INT} NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN attempt {INT} NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE executions ADD COLUMN queued_ms {INT} NOT NULL DEFAULT 0;
UPDATE executions SET state = CASE status
  WHEN 'SUCCESS' THEN 'succeeded' WHEN 'FAILURE' THEN 'failed'
  WHEN 'RUNNING' THEN 'abandoned' ELSE 'error' END,
  queued_ms = started_ms;
UPDATE executions SET status = 'ABORTED' WHERE status = 'RUNNING';
CREATE INDEX executions_claim ON executions(state, queued_ms);
CREATE TABLE debounce (
  image TEXT PRIMARY KEY,
  execution TEXT NOT NULL,
  event_id {INT} NOT NULL,
  started_ms {INT} NOT NULL
);
CREATE TABLE poll_schedule (
  trigger TEXT PRIMARY KEY,
  next_ms {INT} NOT NULL,
  owner TEXT NOT NULL
);
CREATE TABLE build_logs (
  execution TEXT NOT NULL,
  uuid TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (execution, uuid)
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

const STEPS: &[(i64, &str, &str)] = &[(1, "event log", V1), (2, "replicas", V2)];

fn spell(sql: &str, engine: Engine) -> String {
    let (id, int) = match engine {
        Engine::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
        Engine::Postgres => ("BIGSERIAL PRIMARY KEY", "BIGINT"),
    };
    sql.replace("{ID}", id).replace("{INT}", int)
}

/// The migrations of `engine`, embedded in the binary.
#[derive(Debug)]
pub struct Embedded(pub Engine);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let engine = self.0;
        Box::pin(async move {
            Ok(STEPS
                .iter()
                .map(|(v, d, sql)| {
                    Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        MigrationType::Simple,
                        Cow::Owned(spell(sql, engine)),
                        false,
                    )
                })
                .collect())
        })
    }
}
