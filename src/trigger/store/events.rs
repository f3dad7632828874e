//! Events: accepted pushes waiting for (or done with) the worker. An event is claimed by
//! one replica while it is filtered, resolved and debounced; the claim is a lease, so a
//! replica that dies mid-way leaves it for another.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::commit::{Disposition, NewEvent};
use super::{RunSummary, Store, db};
use crate::trigger::TriggerError;
use crate::trigger::payload::Push;

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
    /// The run it started, if any: how it went and where.
    pub run: Option<RunSummary>,
    #[serde(skip)]
    pub replay: bool,
}

const EVENT_COLS: &str = "e.id, e.trigger, e.source, e.received_ms, e.push, e.state, e.outcome, e.attempts, e.digest, e.execution, e.replay, x.state, x.status, x.owner";
const EVENT_FROM: &str = "events e LEFT JOIN executions x ON x.id = e.execution";

fn event_row(r: &AnyRow) -> Result<EventRow, sqlx::Error> {
    let push: String = r.try_get(4)?;
    let run = match r.try_get::<Option<String>, _>(11)? {
        Some(state) => Some(RunSummary {
            state,
            status: r.try_get::<Option<String>, _>(12)?.unwrap_or_default(),
            replica: r.try_get(13)?,
        }),
        None => None,
    };
    Ok(EventRow {
        id: r.try_get(0)?,
        trigger: r.try_get(1)?,
        source: r.try_get(2)?,
        received_ms: r.try_get(3)?,
        push: serde_json::from_str(&push).unwrap_or_default(),
        state: r.try_get(5)?,
        outcome: r.try_get(6)?,
        attempts: r.try_get(7)?,
        digest: r.try_get(8)?,
        execution: r.try_get(9)?,
        replay: r.try_get::<i64, _>(10)? != 0,
        run,
    })
}

impl Store {
    /// Records an event with the given state and outcome (committed when this returns;
    /// concurrent inserts share a commit, see [`super::commit`]). `None` when its
    /// idempotency key was seen before.
    pub async fn insert(
        &self,
        trigger: &str,
        source: &str,
        push: &Push,
        key: Option<&str>,
        state: &str,
        outcome: &str,
    ) -> Result<Option<i64>, TriggerError> {
        let fixed = Disposition::Fixed {
            state: state.to_string(),
            outcome: outcome.to_string(),
        };
        Ok(self
            .record(trigger, source, push, key, fixed)
            .await?
            .map(|(id, _)| id))
    }

    /// Records an accepted webhook's event: pending, or done as "disabled" when the
    /// trigger is switched off (`enabled`: its configured state, when no switch is set).
    /// Returns the id and whether the event is pending; `None` for a redelivery.
    pub async fn insert_accepted(
        &self,
        trigger: &str,
        source: &str,
        push: &Push,
        key: Option<&str>,
        enabled: bool,
    ) -> Result<Option<(i64, bool)>, TriggerError> {
        let accepted = Disposition::Accepted { enabled };
        self.record(trigger, source, push, key, accepted).await
    }

    async fn record(
        &self,
        trigger: &str,
        source: &str,
        push: &Push,
        key: Option<&str>,
        disposition: Disposition,
    ) -> Result<Option<(i64, bool)>, TriggerError> {
        let ev = NewEvent {
            trigger: trigger.to_string(),
            source: source.to_string(),
            received_ms: super::now_ms(),
            push: serde_json::to_string(push).unwrap_or_default(),
            key: key.map(str::to_string),
            disposition,
            digest: push.digest.clone(),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || TriggerError::EventLog("the event writer has stopped".into());
        self.commits.send((ev, reply)).map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(TriggerError::EventLog)
    }

    /// Claims the oldest due event for `replica` until `lease_until` (none: nothing due).
    pub async fn claim_event(
        &self,
        replica: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<EventRow>, TriggerError> {
        let sql = format!(
            "UPDATE events SET owner = $1, lease_until = $2 WHERE id = (
               SELECT id FROM events WHERE state = 'pending' AND next_attempt_ms <= $3
                 AND lease_until < $3 ORDER BY id LIMIT 1{}) RETURNING id",
            self.skip_locked()
        );
        let id: Option<i64> = sqlx::query_scalar(&sql)
            .bind(replica)
            .bind(lease_until)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match id {
            Some(id) => self.event(id).await,
            None => Ok(None),
        }
    }

    /// Due events (for tests and `gantry events`), oldest first.
    pub async fn due(&self, now: i64) -> Result<Vec<EventRow>, TriggerError> {
        let sql = format!(
            "SELECT {EVENT_COLS} FROM {EVENT_FROM} WHERE e.state = 'pending' AND e.next_attempt_ms <= $1 ORDER BY e.id LIMIT 100"
        );
        self.event_list(&sql, now).await
    }

    /// The earliest time a pending event becomes due (its retry time, or its lease's end).
    pub async fn next_due(&self) -> Result<Option<i64>, TriggerError> {
        sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until > next_attempt_ms THEN lease_until ELSE next_attempt_ms END)
             FROM events WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    pub async fn finish(
        &self,
        id: i64,
        outcome: &str,
        digest: Option<&str>,
    ) -> Result<(), TriggerError> {
        sqlx::query(
            "UPDATE events SET state = 'done', outcome = $2, digest = COALESCE($3, digest), lease_until = 0 WHERE id = $1",
        )
        .bind(id)
        .bind(outcome)
        .bind(digest)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    pub async fn retry_later(
        &self,
        id: i64,
        at_ms: i64,
        outcome: &str,
    ) -> Result<(), TriggerError> {
        sqlx::query(
            "UPDATE events SET attempts = attempts + 1, next_attempt_ms = $2, outcome = $3, lease_until = 0 WHERE id = $1",
        )
        .bind(id)
        .bind(at_ms)
        .bind(outcome)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Puts an event back in the queue; a replay is not deduplicated.
    pub async fn replay(&self, id: i64) -> Result<bool, TriggerError> {
        let n = sqlx::query(
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_ms = 0, lease_until = 0, replay = 1, outcome = 'replay requested' WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(n.rows_affected() == 1)
    }

    pub async fn events(&self, limit: i64) -> Result<Vec<EventRow>, TriggerError> {
        let sql = format!("SELECT {EVENT_COLS} FROM {EVENT_FROM} ORDER BY e.id DESC LIMIT $1");
        self.event_list(&sql, limit).await
    }

    /// The events a query with one integer parameter selects.
    async fn event_list(&self, sql: &str, arg: i64) -> Result<Vec<EventRow>, TriggerError> {
        let rows = sqlx::query(sql)
            .bind(arg)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(event_row)
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    pub async fn event(&self, id: i64) -> Result<Option<EventRow>, TriggerError> {
        let sql = format!("SELECT {EVENT_COLS} FROM {EVENT_FROM} WHERE e.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(event_row).transpose().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::super::now_ms;
    use super::*;

    #[tokio::test]
    async fn idempotency_key_claims_and_replay() {
        let d = tempfile::tempdir().unwrap();
        let log = Store::open(&Store::default_url(d.path())).await.unwrap();
        let p = Push {
            repository: "a/b".into(),
            tag: "t".into(),
            ..Push::default()
        };
        let a = log
            .insert("t", "gitlab", &p, Some("k"), "pending", "")
            .await
            .unwrap();
        assert!(a.is_some());
        let again = log.insert("t", "gitlab", &p, Some("k"), "pending", "");
        assert!(again.await.unwrap().is_none());
        let now = now_ms();
        let c = log.claim_event("r1", now, now + 1000).await.unwrap();
        assert_eq!(c.unwrap().id, a.unwrap());
        // Held by r1's lease: r2 gets nothing until it runs out.
        assert!(
            log.claim_event("r2", now, now + 1000)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            log.claim_event("r2", now + 1001, now + 2000)
                .await
                .unwrap()
                .is_some()
        );
        log.finish(a.unwrap(), "filtered", None).await.unwrap();
        assert!(log.due(now_ms()).await.unwrap().is_empty());
        assert!(log.replay(a.unwrap()).await.unwrap());
        assert!(log.due(now_ms()).await.unwrap()[0].replay);
        // Migrating again is a no-op.
        drop(log);
        let log = Store::open(&Store::default_url(d.path())).await.unwrap();
        assert_eq!(log.events(10).await.unwrap().len(), 1);
    }
}
