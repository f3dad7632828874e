//! The worker: pending events → pipeline runs, one event at a time, oldest first.
//!
//! For each due event:
//! 1. its trigger must still exist and be enabled, and the image and tag pass its filters;
//! 2. resolve the tag to a digest (the payload's, or a manifest HEAD against the trigger's
//!    endpoint); a 404 is retried a few times (the tag may not be readable yet), an
//!    unreachable registry is retried with backoff for as long as it takes — the event stays
//!    `pending` in the log meanwhile;
//! 3. deduplicate: an execution of the same (registry, repository, tag, digest) started
//!    within the debounce window makes this event a duplicate (a replay is never one);
//! 4. record the execution and start the run in the background; its builds are recorded
//!    as they start and finish, for the timeline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::eventlog::{BuildRow, EventRow, NewExecution, now_ms};
use super::{Service, Source, TriggerError, params};
use crate::runner::Event;
use crate::runner::pipeline::{PipelineRequest, run_pipeline};

/// A tag not found yet is asked again this many times, a second apart.
const NOT_FOUND_RETRIES: i64 = 5;
/// Backoff for an unreachable registry: 1 s, 2 s, 4 s … capped here.
const MAX_BACKOFF_MS: i64 = 60_000;

/// Runs until `cancel`.
pub async fn run(svc: Arc<Service>, cancel: CancellationToken) {
    loop {
        match svc.log.due(now_ms()) {
            Ok(events) => {
                for ev in events {
                    if cancel.is_cancelled() {
                        return;
                    }
                    let id = ev.id;
                    if let Err(e) = process(&svc, ev, &cancel).await {
                        tracing::error!("event {id}: {e}");
                    }
                }
            }
            Err(e) => tracing::error!("reading the event log: {e}"),
        }
        let wait = match svc.log.next_due() {
            Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, 1000) as u64),
            _ => Duration::from_secs(1),
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = svc.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn process(
    svc: &Arc<Service>,
    ev: EventRow,
    cancel: &CancellationToken,
) -> Result<(), TriggerError> {
    let log = &svc.log;
    // 1. trigger, filters
    let Some(trigger) = svc.config.triggers.get(&ev.trigger) else {
        return log.finish(ev.id, "ignored: the trigger is no longer configured", None);
    };
    if !svc.enabled(trigger) {
        return log.finish(ev.id, "disabled", None);
    }
    let push = &ev.push;
    if !trigger.image_matches(&push.repository) {
        return log.finish(
            ev.id,
            &format!("filtered: image {} does not match", push.repository),
            None,
        );
    }
    if let Some(failed) = trigger.tags.explain(&push.tag).iter().find(|c| !c.pass) {
        return log.finish(
            ev.id,
            &format!("filtered: tag {} fails {}", push.tag, failed.check),
            None,
        );
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
                    return log.retry_later(
                        ev.id,
                        now_ms() + 1000,
                        &format!("waiting: {}:{} not found yet", push.repository, push.tag),
                    );
                }
                Ok(None) => {
                    return log.finish(
                        ev.id,
                        &format!(
                            "failed: {registry}/{}:{} not found",
                            push.repository, push.tag
                        ),
                        None,
                    );
                }
                Err(e) => {
                    let backoff = (1000i64 << ev.attempts.min(6)).min(MAX_BACKOFF_MS);
                    return log.retry_later(
                        ev.id,
                        now_ms() + backoff,
                        &format!("retrying: resolving the tag at {registry}: {e}"),
                    );
                }
            }
        }
    };

    // 3. debounce
    if !ev.replay {
        let since = now_ms() - trigger.debounce.as_millis() as i64;
        if let Some((exec, first)) =
            log.recent_execution(&registry, &push.repository, &push.tag, &digest, since)?
        {
            return log.finish(
                ev.id,
                &format!("duplicate of event {first} (execution {exec})"),
                Some(&digest),
            );
        }
    }

    // 4. execution
    let exec_id = uuid::Uuid::new_v4().simple().to_string();
    let project = trigger.project_dir.display().to_string();
    log.start_execution(&NewExecution {
        id: &exec_id,
        event_id: ev.id,
        trigger: &trigger.name,
        registry: &registry,
        repository: &push.repository,
        tag: &push.tag,
        digest: &digest,
        project: &project,
        pipeline: &trigger.pipeline,
    })?;
    tracing::info!(
        "event {}: starting {} {} for {registry}/{}@{digest} (execution {exec_id})",
        ev.id,
        project,
        trigger.pipeline,
        push.repository
    );
    let req = PipelineRequest {
        project_dir: trigger.project_dir.clone(),
        project: None,
        pipeline: trigger.pipeline.clone(),
        change: trigger.change.clone(),
        patchset: "1".into(),
        ahead: vec![],
        concurrency: svc.run.concurrency.max(1),
        extra_vars: params::variables(trigger, ev.id, &registry, push, &digest),
        intermediate: None,
        publish_to: Default::default(),
        state_dir: svc.state_dir.clone(),
        host_root: None,
        key_dir: svc.run.key_dir.clone(),
        library_dir: svc.run.library_dir.clone(),
        ca_certs: svc.run.ca_certs.clone(),
        executor: trigger.executor,
        ansible: None,
        builder: None,
    };
    tokio::spawn(execute(svc.clone(), exec_id, req, cancel.child_token()));
    Ok(())
}

/// Runs one execution and records its builds as they go.
async fn execute(svc: Arc<Service>, id: String, req: PipelineRequest, cancel: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let recorder = {
        let svc = svc.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut builds: Vec<BuildRow> = Vec::new();
            while let Some(e) = rx.recv().await {
                let at = start.elapsed().as_millis() as i64;
                match e {
                    Event::BuildStarted { job, uuid } => builds.push(BuildRow {
                        job,
                        uuid,
                        result: None,
                        start_ms: at,
                        duration_ms: None,
                        message: None,
                        log: None,
                        artifacts: vec![],
                    }),
                    Event::BuildFinished {
                        job,
                        uuid,
                        result,
                        duration,
                        message,
                    } => {
                        let d = duration.as_millis() as i64;
                        match builds
                            .iter_mut()
                            .find(|b| b.job == job && b.result.is_none())
                        {
                            Some(b) => {
                                b.result = Some(result.to_string());
                                b.duration_ms = Some(d);
                                b.message = message;
                            }
                            None => builds.push(BuildRow {
                                job,
                                uuid,
                                result: Some(result.to_string()),
                                start_ms: (at - d).max(0),
                                duration_ms: Some(d),
                                message,
                                log: None,
                                artifacts: vec![],
                            }),
                        }
                    }
                    Event::BuildSkipped { job, reason } => builds.push(BuildRow {
                        job,
                        uuid: String::new(),
                        result: Some("SKIPPED".into()),
                        start_ms: at,
                        duration_ms: Some(0),
                        message: Some(reason),
                        log: None,
                        artifacts: vec![],
                    }),
                    _ => continue,
                }
                if let Err(e) = svc
                    .log
                    .update_execution(&id, "RUNNING", false, &builds, None)
                {
                    tracing::error!("execution {id}: {e}");
                }
            }
            builds
        })
    };
    let note = |line: String| tracing::info!("{line}");
    let outcome = run_pipeline(req, tx, cancel, &note).await;
    let mut builds = recorder.await.unwrap_or_default();
    let (status, message) = match outcome {
        Ok(o) => {
            // Logs and artifacts are known once the buildset is done.
            for r in &o.report.builds {
                if let Some(b) = builds.iter_mut().find(|b| b.uuid == r.uuid) {
                    b.log = r.log.as_ref().map(|p| p.display().to_string());
                    b.artifacts = r.artifacts.clone();
                }
            }
            if let Some((_, task)) = o.local_registry {
                task.abort();
            }
            let status = if o.report.succeeded() {
                "SUCCESS"
            } else {
                "FAILURE"
            };
            (status, o.record_warning)
        }
        Err(e) => ("ERROR", Some(e.to_string())),
    };
    tracing::info!("execution {id}: {status}");
    if let Err(e) = svc
        .log
        .update_execution(&id, status, true, &builds, message.as_deref())
    {
        tracing::error!("execution {id}: {e}");
    }
}
