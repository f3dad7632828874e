//! Group commit of accepted events. Every 202 promises a committed event, and a commit
//! costs one fsync (SQLite's WAL with `synchronous=FULL`; PostgreSQL's WAL flush). Under
//! load, webhooks arrive faster than one fsync each: concurrent inserts are queued to one
//! writer task, which writes whatever is waiting (up to [`MAX_BATCH`]) in one transaction
//! and answers each caller after the commit. Alone, an insert is its own transaction, as
//! before; each caller still gets its own id or its own "seen before" answer.
//!
//! An accepted webhook's event is pending or, when its trigger is disabled (`gantry trigger
//! disable`, which may run in another process), done as "disabled": the same statement
//! that inserts it reads the switch, so there is no second round trip and no window
//! between the check and the insert.
//!
//! If a batch fails as a whole (one bad row aborts a PostgreSQL transaction), its events
//! are written again one by one, so one failure is reported to its own caller only.

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

/// At most this many events per transaction.
const MAX_BATCH: usize = 64;

/// One accepted event, ready for the `events` table.
pub(super) struct NewEvent {
    pub trigger: String,
    pub source: String,
    pub received_ms: i64,
    pub push: String,
    pub key: Option<String>,
    pub disposition: Disposition,
    pub digest: Option<String>,
}

pub(super) enum Disposition {
    /// Recorded with this state and outcome.
    Fixed { state: String, outcome: String },
    /// Pending, or done as "disabled" when the trigger is switched off (`enabled` when no
    /// switch was set).
    Accepted { enabled: bool },
}

/// The id given to the event and whether it is pending; `None` when its idempotency key
/// was seen before.
pub(super) type Answer = Result<Option<(i64, bool)>, String>;

pub(super) type Queue = mpsc::UnboundedSender<(NewEvent, oneshot::Sender<Answer>)>;

const INSERT: &str = "INSERT INTO events (trigger, source, received_ms, push, idempotency_key, state, outcome, digest)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT DO NOTHING RETURNING id, state";

/// The switch, read by the insert itself. (`WHERE 1 = 1` keeps SQLite from reading
/// `ON CONFLICT` as part of the SELECT.)
const INSERT_ACCEPTED: &str = "INSERT INTO events (trigger, source, received_ms, push, idempotency_key, state, outcome, digest)
     SELECT $1, $2, $3, $4, $5,
       CASE WHEN COALESCE((SELECT enabled FROM trigger_state WHERE name = $1), $6) <> 0 THEN 'pending' ELSE 'done' END,
       CASE WHEN COALESCE((SELECT enabled FROM trigger_state WHERE name = $1), $6) <> 0 THEN '' ELSE 'disabled' END,
       $7
     WHERE 1 = 1
     ON CONFLICT DO NOTHING RETURNING id, state";

/// Starts the writer; it ends when the last queue handle is dropped.
pub(super) fn start(pool: AnyPool) -> Queue {
    let (tx, mut rx) = mpsc::unbounded_channel::<(NewEvent, oneshot::Sender<Answer>)>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            write(&pool, std::mem::take(&mut batch)).await;
        }
    });
    tx
}

async fn write(pool: &AnyPool, batch: Vec<(NewEvent, oneshot::Sender<Answer>)>) {
    if batch.len() > 1 {
        match in_one_transaction(pool, &batch).await {
            Ok(ids) => {
                for ((_, reply), id) in batch.into_iter().zip(ids) {
                    let _ = reply.send(Ok(id));
                }
                return;
            }
            Err(e) => tracing::debug!("event batch of {} failed ({e}); one by one", batch.len()),
        }
    }
    for (ev, reply) in batch {
        let answer = insert_one(pool, &ev).await.map_err(|e| e.to_string());
        let _ = reply.send(answer);
    }
}

async fn in_one_transaction(
    pool: &AnyPool,
    batch: &[(NewEvent, oneshot::Sender<Answer>)],
) -> Result<Vec<Option<(i64, bool)>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut ids = Vec::with_capacity(batch.len());
    for (ev, _) in batch {
        let row: Option<(i64, String)> = bind(ev).fetch_optional(&mut *tx).await?;
        ids.push(row.map(pending));
    }
    tx.commit().await?;
    Ok(ids)
}

async fn insert_one(pool: &AnyPool, ev: &NewEvent) -> Result<Option<(i64, bool)>, sqlx::Error> {
    let row: Option<(i64, String)> = bind(ev).fetch_optional(pool).await?;
    Ok(row.map(pending))
}

fn pending((id, state): (i64, String)) -> (i64, bool) {
    (id, state == "pending")
}

type Query<'a> = sqlx::query::QueryAs<'a, sqlx::Any, (i64, String), sqlx::any::AnyArguments<'a>>;

fn bind(ev: &NewEvent) -> Query<'_> {
    let q = |sql| {
        sqlx::query_as(sql)
            .bind(&ev.trigger)
            .bind(&ev.source)
            .bind(ev.received_ms)
            .bind(&ev.push)
            .bind(ev.key.as_deref())
    };
    match &ev.disposition {
        Disposition::Fixed { state, outcome } => q(INSERT)
            .bind(state)
            .bind(outcome)
            .bind(ev.digest.as_deref()),
        Disposition::Accepted { enabled } => q(INSERT_ACCEPTED)
            .bind(*enabled as i64)
            .bind(ev.digest.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use crate::trigger::payload::Push;

    /// Concurrent inserts share commits, and each caller still gets its own answer: a
    /// distinct id, or `None` for an idempotency key seen before (also within one batch).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inserts_each_get_their_answer() {
        let d = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(Store::open(&Store::default_url(d.path())).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..300 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let p = Push {
                    repository: "a/b".into(),
                    tag: format!("t{i}"),
                    ..Push::default()
                };
                // Every third key repeats the one before it.
                let key = format!("k{}", i - (i % 3 == 2) as i32);
                log.insert("t", "gitlab", &p, Some(&key), "pending", "")
                    .await
            }));
        }
        let mut ids = Vec::new();
        let mut seen_before = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Some(id) => ids.push(id),
                None => seen_before += 1,
            }
        }
        assert_eq!(seen_before, 100);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 200);
        assert_eq!(log.events(1000).await.unwrap().len(), 200);
    }
}
