//! Group commit of accepted events. Every 202 promises a committed event, and a commit
//! costs one fsync (SQLite's WAL with `synchronous=FULL`; PostgreSQL's WAL flush). Under
//! load, webhooks arrive faster than one fsync each: concurrent inserts are queued to one
//! writer task, which writes whatever is waiting (up to [`MAX_BATCH`]) in one transaction
//! and answers each caller after the commit. Alone, an insert is its own transaction, as
//! before; each caller still gets its own id or its own "seen before" answer.
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
    pub state: String,
    pub outcome: String,
    pub digest: Option<String>,
}

/// The id given to the event, `None` when its idempotency key was seen before.
type Answer = Result<Option<i64>, String>;

pub(super) type Queue = mpsc::UnboundedSender<(NewEvent, oneshot::Sender<Answer>)>;

const INSERT: &str = "INSERT INTO events (trigger, source, received_ms, push, idempotency_key, state, outcome, digest)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT DO NOTHING RETURNING id";

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
) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut ids = Vec::with_capacity(batch.len());
    for (ev, _) in batch {
        ids.push(bind(ev).fetch_optional(&mut *tx).await?);
    }
    tx.commit().await?;
    Ok(ids)
}

async fn insert_one(pool: &AnyPool, ev: &NewEvent) -> Result<Option<i64>, sqlx::Error> {
    bind(ev).fetch_optional(pool).await
}

fn bind(
    ev: &NewEvent,
) -> sqlx::query::QueryScalar<'_, sqlx::Any, i64, sqlx::any::AnyArguments<'_>> {
    sqlx::query_scalar(INSERT)
        .bind(&ev.trigger)
        .bind(&ev.source)
        .bind(ev.received_ms)
        .bind(&ev.push)
        .bind(ev.key.as_deref())
        .bind(&ev.state)
        .bind(&ev.outcome)
        .bind(ev.digest.as_deref())
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
