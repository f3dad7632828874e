//! The worker: pending events → queued executions, oldest first. Each replica claims one
//! due event at a time (a lease: a replica dying mid-way leaves it to another).
//!
//! For each claimed event:
//! 1. its trigger must still exist and be enabled, and the image and tag pass its filters;
//! 2. resolve the tag to a digest (the payload's, or a manifest HEAD against the trigger's
//!    endpoint); a 404 is retried a few times (the tag may not be readable yet), an
//!    unreachable registry is retried with backoff for as long as it takes — the event stays
//!    `pending` in the store meanwhile;
//! 3. deduplicate: an execution of the same (registry, repository, tag, digest) started
//!    within the debounce window makes this event a duplicate (a replay is never one); the
//!    check and the queueing are one atomic step, so it holds across replicas;
//! 4. queue the execution; [`super::runs`] claims and runs it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store::{EventRow, NewExecution, now_ms};
use super::{Service, Source, TriggerError};

/// A tag not found yet is asked again this many times, a second apart.
const NOT_FOUND_RETRIES: i64 = 5;
/// Backoff for an unreachable registry: 1 s, 2 s, 4 s … capped here.
const MAX_BACKOFF_MS: i64 = 60_000;

/// Runs until `cancel`.
pub async fn run(svc: Arc<Service>, cancel: CancellationToken) {
    let lease = svc.lease.as_millis() as i64;
    loop {
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let now = now_ms();
            match svc.log.claim_event(&svc.replica, now, now + lease).await {
                Ok(Some(ev)) => {
                    let id = ev.id;
                    if let Err(e) = process(&svc, ev).await {
                        tracing::error!("event {id}: {e}");
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("reading the event log: {e}");
                    break;
                }
            }
        }
        let wait = match svc.log.next_due().await {
            Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(20, 1000) as u64),
            _ => Duration::from_secs(1),
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = svc.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn process(svc: &Arc<Service>, ev: EventRow) -> Result<(), TriggerError> {
    let log = &svc.log;
    // 1. trigger, filters
    let Some(trigger) = svc.config.triggers.get(&ev.trigger) else {
        return log
            .finish(ev.id, "ignored: the trigger is no longer configured", None)
            .await;
    };
    if !svc.enabled(trigger).await {
        return log.finish(ev.id, "disabled", None).await;
    }
    let push = &ev.push;
    if !trigger.image_matches(&push.repository) {
        return log
            .finish(
                ev.id,
                &format!("filtered: image {} does not match", push.repository),
                None,
            )
            .await;
    }
    if let Some(failed) = trigger.tags.explain(&push.tag).iter().find(|c| !c.pass) {
        return log
            .finish(
                ev.id,
                &format!("filtered: tag {} fails {}", push.tag, failed.check),
                None,
            )
            .await;
    }
    let registry = match (&trigger.endpoint, &push.registry, trigger.source) {
        (Some(e), _, _) => e.host.clone(),
        (None, Some(r), Source::Registry) => r.clone(),
        _ => trigger.registry(),
    };

    // 2. digest
    let digest = match &push.digest {
        Some(d) => d.clone(),
        None => {
            let head = match svc.clients.client(&registry) {
                Ok(c) => c.head_manifest(&push.repository, &push.tag).await,
                Err(e) => Err(e),
            };
            match head {
                Ok(Some(d)) => d.to_string(),
                Ok(None) if ev.attempts < NOT_FOUND_RETRIES => {
                    return log
                        .retry_later(
                            ev.id,
                            now_ms() + 1000,
                            &format!("waiting: {}:{} not found yet", push.repository, push.tag),
                        )
                        .await;
                }
                Ok(None) => {
                    return log
                        .finish(
                            ev.id,
                            &format!(
                                "failed: {registry}/{}:{} not found",
                                push.repository, push.tag
                            ),
                            None,
                        )
                        .await;
                }
                Err(e) => {
                    let policy = crate::client::retry::RetryPolicy::background(
                        std::time::Duration::from_millis(MAX_BACKOFF_MS as u64),
                    );
                    let backoff = policy.delay(ev.attempts as u32).as_millis() as i64;
                    return log
                        .retry_later(
                            ev.id,
                            now_ms() + backoff,
                            &format!("retrying: resolving the tag at {registry}: {e}"),
                        )
                        .await;
                }
            }
        }
    };

    // 3 + 4. debounce and queue, atomically
    let since = (!ev.replay).then(|| now_ms() - trigger.debounce.as_millis() as i64);
    let exec_id = uuid::Uuid::new_v4().simple().to_string();
    let project = trigger.project_dir.display().to_string();
    let queued = log
        .enqueue(
            &NewExecution {
                id: &exec_id,
                event_id: ev.id,
                trigger: &trigger.name,
                registry: &registry,
                repository: &push.repository,
                tag: &push.tag,
                digest: &digest,
                project: &project,
                pipeline: &trigger.pipeline,
            },
            since,
        )
        .await?;
    match queued {
        Ok(()) => {
            tracing::info!(
                "event {}: queued {} {} for {registry}/{}@{digest} (execution {exec_id})",
                ev.id,
                project,
                trigger.pipeline,
                push.repository
            );
            svc.wake_runs.notify_one();
            Ok(())
        }
        Err((exec, first)) => {
            log.finish(
                ev.id,
                &format!("duplicate of event {first} (execution {exec})"),
                Some(&digest),
            )
            .await
        }
    }
}
