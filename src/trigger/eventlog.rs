//! The durable event log and the executions it led to (SQLite, `<state>/events.db`).
//!
//! An accepted webhook is committed here (WAL, `synchronous=FULL`: the commit is on disk)
//! *before* the sender gets its 202, so a crash loses nothing: events still `pending` are
//! picked up again by the next `gantry serve`. Also kept here: executions (a pipeline run
//! per event, with its builds for the timeline), trigger enable/disable overrides and what
//! each poll trigger last saw.
//!
//! Owns: the schema and every query. Must not: know about HTTP or run pipelines.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::TriggerError;
use super::payload::Push;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  trigger TEXT NOT NULL,
  source TEXT NOT NULL,
  received_ms INTEGER NOT NULL,
  push TEXT NOT NULL,
  idempotency_key TEXT,
  state TEXT NOT NULL,
  outcome TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL DEFAULT 0,
  replay INTEGER NOT NULL DEFAULT 0,
  digest TEXT,
  execution TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events(trigger, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_pending ON events(state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS executions (
  id TEXT PRIMARY KEY,
  event_id INTEGER NOT NULL,
  trigger TEXT NOT NULL,
  registry TEXT NOT NULL,
  repository TEXT NOT NULL,
  tag TEXT NOT NULL,
  digest TEXT NOT NULL,
  project TEXT NOT NULL,
  pipeline TEXT NOT NULL,
  status TEXT NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER,
  builds TEXT NOT NULL DEFAULT '[]',
  message TEXT
);
CREATE INDEX IF NOT EXISTS executions_key ON executions(registry, repository, tag, digest, started_ms);
CREATE TABLE IF NOT EXISTS trigger_state (name TEXT PRIMARY KEY, enabled INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS poll_state (
  trigger TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
  PRIMARY KEY (trigger, tag)
);
";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub trigger: String,
    pub source: String,
    pub received_ms: i64,
    pub push: Push,
    pub state: String,
    pub outcome: String,
    pub attempts: i64,
    pub digest: Option<String>,
    pub execution: Option<String>,
    #[serde(skip)]
    pub replay: bool,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct BuildRow {
    pub job: String,
    pub uuid: String,
    pub result: Option<String>,
    /// Milliseconds after the execution started.
    pub start_ms: i64,
    pub duration_ms: Option<i64>,
    pub message: Option<String>,
    /// The build's log file on the server (served at `/api/executions/<id>/logs/<uuid>`).
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default)]
    pub artifacts: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExecutionRow {
    pub id: String,
    pub event_id: i64,
    pub trigger: String,
    pub registry: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub project: String,
    pub pipeline: String,
    pub status: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub builds: Vec<BuildRow>,
    pub message: Option<String>,
}

/// What an execution is about, when it starts.
pub struct NewExecution<'a> {
    pub id: &'a str,
    pub event_id: i64,
    pub trigger: &'a str,
    pub registry: &'a str,
    pub repository: &'a str,
    pub tag: &'a str,
    pub digest: &'a str,
    pub project: &'a str,
    pub pipeline: &'a str,
}

pub struct EventLog {
    conn: Mutex<Connection>,
}

fn db(e: rusqlite::Error) -> TriggerError {
    TriggerError::EventLog(e.to_string())
}

const EVENT_COLS: &str =
    "id, trigger, source, received_ms, push, state, outcome, attempts, digest, execution, replay";

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    let push: String = r.get(4)?;
    Ok(EventRow {
        id: r.get(0)?,
        trigger: r.get(1)?,
        source: r.get(2)?,
        received_ms: r.get(3)?,
        push: serde_json::from_str(&push).unwrap_or_default(),
        state: r.get(5)?,
        outcome: r.get(6)?,
        attempts: r.get(7)?,
        digest: r.get(8)?,
        execution: r.get(9)?,
        replay: r.get::<_, i64>(10)? != 0,
    })
}

const EXEC_COLS: &str = "id, event_id, trigger, registry, repository, tag, digest, project, pipeline, status, started_ms, finished_ms, builds, message";

fn exec_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRow> {
    let builds: String = r.get(12)?;
    Ok(ExecutionRow {
        id: r.get(0)?,
        event_id: r.get(1)?,
        trigger: r.get(2)?,
        registry: r.get(3)?,
        repository: r.get(4)?,
        tag: r.get(5)?,
        digest: r.get(6)?,
        project: r.get(7)?,
        pipeline: r.get(8)?,
        status: r.get(9)?,
        started_ms: r.get(10)?,
        finished_ms: r.get(11)?,
        builds: serde_json::from_str(&builds).unwrap_or_default(),
        message: r.get(13)?,
    })
}

impl EventLog {
    /// Opens (creating) `<state_dir>/events.db`.
    pub fn open(state_dir: &Path) -> Result<EventLog, TriggerError> {
        std::fs::create_dir_all(state_dir).map_err(|e| TriggerError::Io {
            context: format!("creating {}", state_dir.display()),
            source: e,
        })?;
        let conn = Connection::open(state_dir.join("events.db")).map_err(db)?;
        // WAL: readers (the page, `gantry events ls`) never block intake; FULL: a commit
        // is fsynced before it returns, which is what the 202 promises.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(EventLog {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, TriggerError> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| TriggerError::EventLog("event log lock poisoned".into()))?;
        f(&mut c).map_err(db)
    }

    /// Records an accepted event. `None` when its idempotency key was seen before.
    pub fn insert(
        &self,
        trigger: &str,
        source: &str,
        push: &Push,
        key: Option<&str>,
        state: &str,
        outcome: &str,
    ) -> Result<Option<i64>, TriggerError> {
        let push_json = serde_json::to_string(push).unwrap_or_default();
        self.with(|c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO events (trigger, source, received_ms, push, idempotency_key, state, outcome, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![trigger, source, now_ms(), push_json, key, state, outcome, push.digest],
            )?;
            Ok((n == 1).then(|| c.last_insert_rowid()))
        })
    }

    /// Events waiting for the worker whose retry time has come, oldest first.
    pub fn due(&self, now: i64) -> Result<Vec<EventRow>, TriggerError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {EVENT_COLS} FROM events WHERE state = 'pending' AND next_attempt_ms <= ?1 ORDER BY id LIMIT 100"
            ))?;
            st.query_map([now], event_row)?.collect()
        })
    }

    /// The earliest retry time of a pending event.
    pub fn next_due(&self) -> Result<Option<i64>, TriggerError> {
        self.with(|c| {
            c.query_row(
                "SELECT MIN(next_attempt_ms) FROM events WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
        })
    }

    pub fn finish(&self, id: i64, outcome: &str, digest: Option<&str>) -> Result<(), TriggerError> {
        self.with(|c| {
            c.execute(
                "UPDATE events SET state = 'done', outcome = ?2, digest = COALESCE(?3, digest) WHERE id = ?1",
                params![id, outcome, digest],
            )
            .map(|_| ())
        })
    }

    pub fn retry_later(&self, id: i64, at_ms: i64, outcome: &str) -> Result<(), TriggerError> {
        self.with(|c| {
            c.execute(
                "UPDATE events SET attempts = attempts + 1, next_attempt_ms = ?2, outcome = ?3 WHERE id = ?1",
                params![id, at_ms, outcome],
            )
            .map(|_| ())
        })
    }

    /// Puts an event back in the queue; a replay is not deduplicated.
    pub fn replay(&self, id: i64) -> Result<bool, TriggerError> {
        self.with(|c| {
            c.execute(
                "UPDATE events SET state = 'pending', attempts = 0, next_attempt_ms = 0, replay = 1, outcome = 'replay requested' WHERE id = ?1",
                [id],
            )
            .map(|n| n == 1)
        })
    }

    /// The execution of the same image started since `since_ms`, if any.
    pub fn recent_execution(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
        digest: &str,
        since_ms: i64,
    ) -> Result<Option<(String, i64)>, TriggerError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, event_id FROM executions WHERE registry = ?1 AND repository = ?2 AND tag = ?3 AND digest = ?4 AND started_ms >= ?5 ORDER BY started_ms DESC LIMIT 1",
                params![registry, repository, tag, digest, since_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    /// Records a starting execution and marks its event done, in one transaction.
    pub fn start_execution(&self, x: &NewExecution<'_>) -> Result<(), TriggerError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO executions (id, event_id, trigger, registry, repository, tag, digest, project, pipeline, status, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'RUNNING', ?10)",
                params![x.id, x.event_id, x.trigger, x.registry, x.repository, x.tag, x.digest, x.project, x.pipeline, now_ms()],
            )?;
            tx.execute(
                "UPDATE events SET state = 'done', outcome = 'started', execution = ?2, digest = ?3 WHERE id = ?1",
                params![x.event_id, x.id, x.digest],
            )?;
            tx.commit()
        })
    }

    pub fn update_execution(
        &self,
        id: &str,
        status: &str,
        finished: bool,
        builds: &[BuildRow],
        message: Option<&str>,
    ) -> Result<(), TriggerError> {
        let builds = serde_json::to_string(builds).unwrap_or_else(|_| "[]".into());
        let fin = finished.then(now_ms);
        self.with(|c| {
            c.execute(
                "UPDATE executions SET status = ?2, finished_ms = COALESCE(?3, finished_ms), builds = ?4, message = COALESCE(?5, message) WHERE id = ?1",
                params![id, status, fin, builds, message],
            )
            .map(|_| ())
        })
    }

    /// Executions left RUNNING by a process that died: they will not finish.
    pub fn abort_running(&self) -> Result<usize, TriggerError> {
        self.with(|c| {
            c.execute(
                "UPDATE executions SET status = 'ABORTED', finished_ms = ?1, message = 'gantry serve stopped during the run' WHERE status = 'RUNNING'",
                [now_ms()],
            )
        })
    }

    pub fn events(&self, limit: i64) -> Result<Vec<EventRow>, TriggerError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {EVENT_COLS} FROM events ORDER BY id DESC LIMIT ?1"
            ))?;
            st.query_map([limit], event_row)?.collect()
        })
    }

    pub fn event(&self, id: i64) -> Result<Option<EventRow>, TriggerError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"),
                [id],
                event_row,
            )
            .optional()
        })
    }

    pub fn executions(&self, limit: i64) -> Result<Vec<ExecutionRow>, TriggerError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {EXEC_COLS} FROM executions ORDER BY started_ms DESC LIMIT ?1"
            ))?;
            st.query_map([limit], exec_row)?.collect()
        })
    }

    pub fn execution(&self, id: &str) -> Result<Option<ExecutionRow>, TriggerError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {EXEC_COLS} FROM executions WHERE id = ?1"),
                [id],
                exec_row,
            )
            .optional()
        })
    }

    /// The enable/disable override of a trigger (`gantry trigger enable|disable`).
    pub fn enabled_override(&self, name: &str) -> Result<Option<bool>, TriggerError> {
        self.with(|c| {
            c.query_row(
                "SELECT enabled FROM trigger_state WHERE name = ?1",
                [name],
                |r| r.get::<_, i64>(0).map(|v| v != 0),
            )
            .optional()
        })
    }

    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), TriggerError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO trigger_state (name, enabled) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET enabled = ?2",
                params![name, enabled as i64],
            )
            .map(|_| ())
        })
    }

    /// Tag → digest a poll trigger saw last time (empty on its first poll).
    pub fn poll_seen(
        &self,
        trigger: &str,
    ) -> Result<std::collections::HashMap<String, String>, TriggerError> {
        self.with(|c| {
            let mut st = c.prepare("SELECT tag, digest FROM poll_state WHERE trigger = ?1")?;
            st.query_map([trigger], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    pub fn poll_saw(&self, trigger: &str, tag: &str, digest: &str) -> Result<(), TriggerError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO poll_state (trigger, tag, digest) VALUES (?1, ?2, ?3) ON CONFLICT(trigger, tag) DO UPDATE SET digest = ?3",
                params![trigger, tag, digest],
            )
            .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_key_and_pending() {
        let d = tempfile::tempdir().unwrap();
        let log = EventLog::open(d.path()).unwrap();
        let p = Push {
            repository: "a/b".into(),
            tag: "t".into(),
            ..Push::default()
        };
        let a = log
            .insert("t", "gitlab", &p, Some("k"), "pending", "")
            .unwrap();
        assert!(a.is_some());
        assert!(
            log.insert("t", "gitlab", &p, Some("k"), "pending", "")
                .unwrap()
                .is_none()
        );
        assert_eq!(log.due(now_ms()).unwrap().len(), 1);
        log.finish(a.unwrap(), "filtered", None).unwrap();
        assert!(log.due(now_ms()).unwrap().is_empty());
        assert!(log.replay(a.unwrap()).unwrap());
        assert!(log.due(now_ms()).unwrap()[0].replay);
    }
}
