//! Executions: the pipeline run an event led to, queued in order, claimed by one replica
//! at a time and held by a lease its heartbeat renews. Each claim is an attempt; an attempt
//! whose replica stopped renewing (died, lost the database) or that was stopped by a
//! shutdown is recorded `abandoned` and the execution runs again from the beginning — the
//! at-least-once rule, as Zuul retries a build whose executor died.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, db, now_ms, rfc3339};
use crate::trigger::TriggerError;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildRow {
    pub job: String,
    pub uuid: String,
    pub result: Option<String>,
    /// Milliseconds after the execution started.
    pub start_ms: i64,
    pub duration_ms: Option<i64>,
    pub message: Option<String>,
    /// The build's log file on the replica that ran it (served at
    /// `/api/executions/<id>/logs/<uuid>`; a copy is kept in the database when it ends).
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default)]
    pub artifacts: Vec<serde_json::Value>,
}

/// One try of an execution, by one replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: i64,
    pub replica: String,
    /// The host it ran on (where its processes are).
    #[serde(default)]
    pub host: String,
    /// running, succeeded, failed, error, abandoned.
    pub state: String,
    /// RFC 3339.
    pub started: String,
    pub ended: Option<String>,
    pub reason: Option<String>,
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
    /// The result as Zuul names it: RUNNING until the end (queued or running), then
    /// SUCCESS, FAILURE, ERROR.
    pub status: String,
    /// queued, running, succeeded, failed, error (an abandoned attempt is queued again).
    pub state: String,
    /// The replica running it now, or that ran its last attempt.
    pub replica: Option<String>,
    pub attempt: i64,
    pub attempts: Vec<Attempt>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub builds: Vec<BuildRow>,
    pub message: Option<String>,
}

/// What an execution is about, when it is queued.
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

/// An execution a replica has just claimed.
pub struct Claimed {
    pub execution: ExecutionRow,
    /// The attempt it took over from (the replica stopped renewing its lease).
    pub abandoned: Option<Attempt>,
}

const EXEC_COLS: &str = "id, event_id, trigger, registry, repository, tag, digest, project, pipeline, status, state, owner, attempt, attempts, started_ms, finished_ms, builds, message";

fn exec_row(r: &AnyRow) -> Result<ExecutionRow, sqlx::Error> {
    let attempts: String = r.try_get(13)?;
    let builds: String = r.try_get(16)?;
    Ok(ExecutionRow {
        id: r.try_get(0)?,
        event_id: r.try_get(1)?,
        trigger: r.try_get(2)?,
        registry: r.try_get(3)?,
        repository: r.try_get(4)?,
        tag: r.try_get(5)?,
        digest: r.try_get(6)?,
        project: r.try_get(7)?,
        pipeline: r.try_get(8)?,
        status: r.try_get(9)?,
        state: r.try_get(10)?,
        replica: r.try_get(11)?,
        attempt: r.try_get(12)?,
        attempts: serde_json::from_str(&attempts).unwrap_or_default(),
        started_ms: r.try_get(14)?,
        finished_ms: r.try_get(15)?,
        builds: serde_json::from_str(&builds).unwrap_or_default(),
        message: r.try_get(17)?,
    })
}

/// A finished build's log kept in the database is cut to its last this many bytes.
const STORED_LOG_MAX: usize = 4 << 20;

impl Store {
    /// Queues the execution of an event and marks the event done, in one transaction —
    /// unless an execution of the same image started at or after `debounce_since` (none:
    /// a replay, never a duplicate). The debounce key is one row per image updated with a
    /// conditional upsert, so two replicas racing on a burst agree on one winner.
    /// `Err((execution, event))`: the duplicate's original.
    pub async fn enqueue(
        &self,
        x: &NewExecution<'_>,
        debounce_since: Option<i64>,
    ) -> Result<Result<(), (String, i64)>, TriggerError> {
        let image = format!("{}/{}:{}@{}", x.registry, x.repository, x.tag, x.digest);
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO debounce (image, execution, event_id, started_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (image) DO UPDATE SET execution = excluded.execution,
               event_id = excluded.event_id, started_ms = excluded.started_ms
             WHERE debounce.started_ms < $5
             RETURNING execution",
        )
        .bind(&image)
        .bind(x.id)
        .bind(x.event_id)
        .bind(now)
        .bind(debounce_since.unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if won.is_none() {
            let first: (String, i64) =
                sqlx::query_as("SELECT execution, event_id FROM debounce WHERE image = $1")
                    .bind(&image)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
            tx.rollback().await.map_err(db)?;
            return Ok(Err(first));
        }
        sqlx::query(
            "INSERT INTO executions (id, event_id, trigger, registry, repository, tag, digest, project, pipeline, status, state, started_ms, queued_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'RUNNING', 'queued', $10, $10)",
        )
        .bind(x.id)
        .bind(x.event_id)
        .bind(x.trigger)
        .bind(x.registry)
        .bind(x.repository)
        .bind(x.tag)
        .bind(x.digest)
        .bind(x.project)
        .bind(x.pipeline)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "UPDATE events SET state = 'done', outcome = 'started', execution = $2, digest = $3, lease_until = 0 WHERE id = $1",
        )
        .bind(x.event_id)
        .bind(x.id)
        .bind(x.digest)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Ok(()))
    }

    /// Claims the oldest queued execution, or a running one whose lease ran out, for
    /// `replica` on `host` until `lease_until`, as a new attempt.
    pub async fn claim_execution(
        &self,
        replica: &str,
        host: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<Claimed>, TriggerError> {
        let sql = format!(
            "UPDATE executions SET state = 'running', owner = $1, host = $2, lease_until = $3,
               attempt = attempt + 1, builds = '[]'
             WHERE id = (SELECT id FROM executions
               WHERE state = 'queued' OR (state = 'running' AND lease_until < $4)
               ORDER BY queued_ms, id LIMIT 1{})
             RETURNING id",
            self.skip_locked()
        );
        let id: Option<String> = sqlx::query_scalar(&sql)
            .bind(replica)
            .bind(host)
            .bind(lease_until)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(id) = id else { return Ok(None) };
        let Some(mut x) = self.execution(&id).await? else {
            return Ok(None);
        };
        let mut abandoned = None;
        if let Some(last) = x.attempts.last_mut()
            && last.state == "running"
        {
            last.state = "abandoned".into();
            last.ended = Some(rfc3339(now));
            last.reason = Some(format!(
                "replica {} stopped renewing its lease",
                last.replica
            ));
            abandoned = Some(last.clone());
        }
        x.attempts.push(Attempt {
            attempt: x.attempt,
            replica: replica.to_string(),
            host: host.to_string(),
            state: "running".into(),
            started: rfc3339(now),
            ended: None,
            reason: None,
        });
        self.write_attempts(&x.id, replica, x.attempt, &x.attempts)
            .await?;
        Ok(Some(Claimed {
            execution: x,
            abandoned,
        }))
    }

    async fn write_attempts(
        &self,
        id: &str,
        replica: &str,
        attempt: i64,
        attempts: &[Attempt],
    ) -> Result<bool, TriggerError> {
        let json = serde_json::to_string(attempts).unwrap_or_else(|_| "[]".into());
        let n = sqlx::query(
            "UPDATE executions SET attempts = $4 WHERE id = $1 AND owner = $2 AND attempt = $3",
        )
        .bind(id)
        .bind(replica)
        .bind(attempt)
        .bind(json)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(n.rows_affected() == 1)
    }

    /// Renews the lease of an attempt; `false`: it is no longer this replica's (taken over).
    pub async fn renew(
        &self,
        id: &str,
        replica: &str,
        attempt: i64,
        lease_until: i64,
    ) -> Result<bool, TriggerError> {
        let n = sqlx::query(
            "UPDATE executions SET lease_until = $4 WHERE id = $1 AND owner = $2 AND attempt = $3 AND state = 'running'",
        )
        .bind(id)
        .bind(replica)
        .bind(attempt)
        .bind(lease_until)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(n.rows_affected() == 1)
    }

    /// Renews the claims on events `replica` is working on.
    pub async fn renew_events(&self, replica: &str, lease_until: i64) -> Result<(), TriggerError> {
        sqlx::query(
            "UPDATE events SET lease_until = $2 WHERE owner = $1 AND state = 'pending' AND lease_until > 0",
        )
        .bind(replica)
        .bind(lease_until)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Records the builds of a running attempt (for the timeline).
    pub async fn update_builds(
        &self,
        id: &str,
        replica: &str,
        attempt: i64,
        builds: &[BuildRow],
    ) -> Result<(), TriggerError> {
        let builds = serde_json::to_string(builds).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE executions SET builds = $4 WHERE id = $1 AND owner = $2 AND attempt = $3",
        )
        .bind(id)
        .bind(replica)
        .bind(attempt)
        .bind(builds)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Ends an attempt: `Some(status)` finishes the execution (SUCCESS, FAILURE, ERROR);
    /// `None` abandons the attempt (`reason`) and queues the execution again.
    /// `false`: the attempt was no longer this replica's, nothing recorded.
    pub async fn end_attempt(
        &self,
        id: &str,
        replica: &str,
        attempt: i64,
        status: Option<&str>,
        builds: &[BuildRow],
        message: Option<&str>,
    ) -> Result<bool, TriggerError> {
        let Some(mut x) = self.execution(id).await? else {
            return Ok(false);
        };
        if x.replica.as_deref() != Some(replica) || x.attempt != attempt {
            return Ok(false);
        }
        let now = now_ms();
        let state = match status {
            Some("SUCCESS") => "succeeded",
            Some("FAILURE") => "failed",
            Some(_) => "error",
            None => "abandoned",
        };
        if let Some(last) = x.attempts.last_mut() {
            last.state = state.into();
            last.ended = Some(rfc3339(now));
            last.reason = if status.is_none() {
                message.map(str::to_string)
            } else {
                None
            };
        }
        let attempts = serde_json::to_string(&x.attempts).unwrap_or_else(|_| "[]".into());
        let builds = serde_json::to_string(builds).unwrap_or_else(|_| "[]".into());
        let n = match status {
            Some(status) => sqlx::query(
                "UPDATE executions SET status = $4, state = $5, finished_ms = $6, builds = $7, message = $8,
                   attempts = $9, lease_until = 0
                 WHERE id = $1 AND owner = $2 AND attempt = $3",
            )
            .bind(id)
            .bind(replica)
            .bind(attempt)
            .bind(status)
            .bind(state)
            .bind(now)
            .bind(builds)
            .bind(message)
            .bind(attempts),
            None => sqlx::query(
                "UPDATE executions SET state = 'queued', lease_until = 0, attempts = $4
                 WHERE id = $1 AND owner = $2 AND attempt = $3",
            )
            .bind(id)
            .bind(replica)
            .bind(attempt)
            .bind(attempts),
        }
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(n.rows_affected() == 1)
    }

    /// Running attempts recorded for `replica` (after a restart: its previous life's).
    pub async fn running_of(&self, replica: &str) -> Result<Vec<(String, i64)>, TriggerError> {
        sqlx::query_as("SELECT id, attempt FROM executions WHERE state = 'running' AND owner = $1")
            .bind(replica)
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    /// The running attempts (execution, attempt) anywhere.
    pub async fn running(&self) -> Result<Vec<(String, i64)>, TriggerError> {
        sqlx::query_as("SELECT id, attempt FROM executions WHERE state = 'running'")
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    /// When the next claimable execution becomes claimable (queued: now; running: its
    /// lease's end).
    pub async fn next_claimable(&self, now: i64) -> Result<Option<i64>, TriggerError> {
        sqlx::query_scalar(
            "SELECT MIN(CASE WHEN state = 'queued' THEN $1 ELSE lease_until END) FROM executions
             WHERE state = 'queued' OR state = 'running'",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    pub async fn executions(&self, limit: i64) -> Result<Vec<ExecutionRow>, TriggerError> {
        let sql =
            format!("SELECT {EXEC_COLS} FROM executions ORDER BY started_ms DESC, id LIMIT $1");
        let rows = sqlx::query(&sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(exec_row)
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    pub async fn execution(&self, id: &str) -> Result<Option<ExecutionRow>, TriggerError> {
        let sql = format!("SELECT {EXEC_COLS} FROM executions WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(exec_row).transpose().map_err(db)
    }

    /// Keeps a finished build's log (its last [`STORED_LOG_MAX`] bytes) so any replica
    /// can serve it.
    pub async fn save_log(
        &self,
        execution: &str,
        uuid: &str,
        text: &str,
    ) -> Result<(), TriggerError> {
        let mut start = text.len().saturating_sub(STORED_LOG_MAX);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let text = text[start..].replace('\0', "");
        sqlx::query(
            "INSERT INTO build_logs (execution, uuid, text) VALUES ($1, $2, $3)
             ON CONFLICT (execution, uuid) DO UPDATE SET text = excluded.text",
        )
        .bind(execution)
        .bind(uuid)
        .bind(text)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    pub async fn stored_log(
        &self,
        execution: &str,
        uuid: &str,
    ) -> Result<Option<String>, TriggerError> {
        sqlx::query_scalar("SELECT text FROM build_logs WHERE execution = $1 AND uuid = $2")
            .bind(execution)
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }
}
