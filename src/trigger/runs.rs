//! Executions → pipeline runs, on every replica:
//! - [`claim_loop`]: with a free run slot (`max_concurrent_runs`), claim the oldest queued
//!   execution — or a running one whose lease ran out (its replica died) — as a new
//!   attempt, and run it from the beginning;
//! - [`heartbeat`]: every third of the lease, renew the leases of this replica's runs and
//!   event claims; a run whose lease was taken over is cancelled here (its process groups
//!   are killed);
//! - [`recover`]: at start, this replica's previous life's running attempts are abandoned
//!   (queued again) and the processes they left on this host killed ([`super::orphans`]);
//! - [`shutdown`]: on SIGTERM, runs in progress get a grace period to finish; the rest are
//!   cancelled, their attempts recorded `abandoned` and their executions queued again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::store::{BuildRow, Claimed, ExecutionRow, now_ms};
use super::{Running, Service, TriggerError, orphans, params};
use crate::registry::{Registry, RegistryConfig};
use crate::roles::Endpoint;
use crate::runner::Event;
use crate::runner::pipeline::{PipelineRequest, run_pipeline};

/// Runs until `cancel` (then claims nothing more; runs in progress go on).
pub async fn claim_loop(svc: Arc<Service>, cancel: CancellationToken) {
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = svc.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let now = now_ms();
        let lease = svc.lease.as_millis() as i64;
        match svc
            .log
            .claim_execution(&svc.replica, &svc.host, now, now + lease)
            .await
        {
            Ok(Some(c)) => {
                start(&svc, c, permit).await;
                continue;
            }
            Ok(None) => drop(permit),
            Err(e) => {
                tracing::error!("claiming an execution: {e}");
                drop(permit);
            }
        }
        let wait = match svc.log.next_claimable(now_ms()).await {
            Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(50, 1000) as u64),
            _ => Duration::from_secs(1),
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = svc.wake_runs.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Kills what abandoned attempts of this database left on this host (every attempt not
/// running now).
async fn kill_leftovers(svc: &Service) {
    let db = svc.log.id().to_string();
    let found = tokio::task::spawn_blocking(move || orphans::find(&db))
        .await
        .unwrap_or_default();
    if found.is_empty() {
        return;
    }
    let keep: HashSet<(String, i64)> = match svc.log.running().await {
        Ok(r) => r.into_iter().collect(),
        Err(e) => {
            tracing::error!("listing running executions: {e}");
            return;
        }
    };
    orphans::kill_unless(&found, &keep);
}

/// At start: this replica's running attempts belong to a previous life (killed, crashed):
/// record them abandoned, queue them again, kill their leftovers.
pub async fn recover(svc: &Service) -> Result<usize, TriggerError> {
    let mine = svc.log.running_of(&svc.replica).await?;
    for (id, attempt) in &mine {
        svc.log
            .end_attempt(
                id,
                &svc.replica,
                *attempt,
                None,
                &[],
                Some(&format!(
                    "replica {} stopped during the run (restarted)",
                    svc.replica
                )),
            )
            .await?;
    }
    kill_leftovers(svc).await;
    Ok(mine.len())
}

async fn intermediate(svc: &Service) -> Result<Endpoint, String> {
    let (ep, _) = svc
        .intermediate
        .get_or_try_init(|| async {
            let path = svc.state_dir.join("intermediate");
            let reg = Registry::new(RegistryConfig::new(path.clone()))
                .map_err(|e| format!("intermediate registry in {}: {e}", path.display()))?;
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let (addr, task) = reg
                .spawn(addr)
                .await
                .map_err(|e| format!("intermediate registry in {}: {e}", path.display()))?;
            Ok::<_, String>((
                Endpoint {
                    host: addr.to_string(),
                    options: crate::client::ClientOptions::default(),
                },
                task,
            ))
        })
        .await?;
    Ok(ep.clone())
}

/// Starts a claimed execution in the background; the permit is its run slot.
async fn start(svc: &Arc<Service>, c: Claimed, permit: OwnedSemaphorePermit) {
    let x = c.execution;
    if let Some(a) = &c.abandoned {
        tracing::warn!(
            "execution {}: taking over from replica {} (attempt {} abandoned)",
            x.id,
            a.replica,
            a.attempt
        );
        if a.host == svc.host {
            kill_leftovers(svc).await;
        }
    }
    let cancel = CancellationToken::new();
    if let Ok(mut r) = svc.running.lock() {
        r.insert(
            x.id.clone(),
            Running {
                attempt: x.attempt,
                cancel: cancel.clone(),
                abandon: None,
            },
        );
    }
    let svc = svc.clone();
    tokio::spawn(async move {
        let (id, attempt) = (x.id.clone(), x.attempt);
        let (status, builds, message) = match request(&svc, &x).await {
            Ok(req) => execute(&svc, &x, req, cancel).await,
            Err(m) => ("ERROR", vec![], Some(m)),
        };
        let abandon = svc
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.remove(&id))
            .and_then(|r| r.abandon);
        let ended = match &abandon {
            Some(reason) => {
                tracing::warn!("execution {id}: attempt {attempt} abandoned: {reason}");
                svc.log
                    .end_attempt(&id, &svc.replica, attempt, None, &builds, Some(reason))
                    .await
            }
            None => {
                tracing::info!("execution {id}: {status}");
                svc.log
                    .end_attempt(
                        &id,
                        &svc.replica,
                        attempt,
                        Some(status),
                        &builds,
                        message.as_deref(),
                    )
                    .await
            }
        };
        match ended {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "execution {id}: attempt {attempt} was taken over; its result is not recorded"
            ),
            Err(e) => tracing::error!("execution {id}: {e}"),
        }
        drop(permit);
        svc.wake_runs.notify_one();
    });
}

/// The pipeline request of an execution (from its event and its trigger's configuration).
async fn request(svc: &Service, x: &ExecutionRow) -> Result<PipelineRequest, String> {
    let trigger = svc
        .config
        .triggers
        .get(&x.trigger)
        .ok_or_else(|| format!("trigger {} is no longer configured", x.trigger))?;
    let ev = svc
        .log
        .event(x.event_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("event {} is gone", x.event_id))?;
    let mut vars = params::variables(trigger, x.event_id, &x.registry, &ev.push, &x.digest);
    let mark = orphans::marker(svc.log.id(), &x.id, x.attempt);
    if let Some(serde_json::Value::Object(env)) =
        vars.data.get_mut(crate::playbook::GANTRY_ENVIRONMENT)
    {
        env.insert(orphans::VAR.into(), mark.into());
    }
    vars.data
        .insert("trigger_execution".into(), x.id.clone().into());
    vars.data.insert("trigger_attempt".into(), x.attempt.into());
    vars.data
        .insert("trigger_replica".into(), svc.replica.clone().into());
    Ok(PipelineRequest {
        project_dir: trigger.project_dir.clone(),
        project: None,
        canonical_hostname: None,
        pipeline: trigger.pipeline.clone(),
        change: trigger.change.clone(),
        patchset: "1".into(),
        ahead: vec![],
        concurrency: svc.run.concurrency.max(1),
        extra_vars: vars.parameters,
        data_vars: vars.data,
        intermediate: Some(intermediate(svc).await?),
        publish_to: Default::default(),
        state_dir: svc.state_dir.clone(),
        host_root: None,
        key_dir: svc.run.key_dir.clone(),
        library_dir: svc.run.library_dir.clone(),
        config_repos: trigger.config_repos.clone(),
        // An image push is a ref-updated event: no files, so every listed job runs (as
        // Zuul does for ref-updated).
        change_info: Default::default(),
        ca_certs: svc.run.ca_certs.clone(),
        executor: trigger.executor,
        ansible: None,
        builder: None,
    })
}

/// Runs one attempt and records its builds as they go; returns (status, builds, message).
async fn execute(
    svc: &Arc<Service>,
    x: &ExecutionRow,
    req: PipelineRequest,
    cancel: CancellationToken,
) -> (&'static str, Vec<BuildRow>, Option<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let recorder = {
        let svc = svc.clone();
        let (id, attempt) = (x.id.clone(), x.attempt);
        tokio::spawn(async move {
            let start = Instant::now();
            let mut builds: Vec<BuildRow> = Vec::new();
            while let Some(e) = rx.recv().await {
                if !record(&mut builds, e, start.elapsed().as_millis() as i64) {
                    continue;
                }
                if let Err(e) = svc
                    .log
                    .update_builds(&id, &svc.replica, attempt, &builds)
                    .await
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
    match outcome {
        Ok(o) => {
            // Logs and artifacts are known once the buildset is done; the log is kept in
            // the database too, for the other replicas' pages.
            for r in &o.report.builds {
                if let Some(b) = builds.iter_mut().find(|b| b.uuid == r.uuid) {
                    b.log = r.log.as_ref().map(|p| p.display().to_string());
                    b.artifacts = r.artifacts.clone();
                    if let Some(p) = &r.log
                        && let Ok(text) = tokio::fs::read_to_string(p).await
                        && let Err(e) = svc.log.save_log(&x.id, &r.uuid, &text).await
                    {
                        tracing::error!("execution {}: keeping the log of {}: {e}", x.id, r.uuid);
                    }
                }
            }
            let status = if o.report.succeeded() {
                "SUCCESS"
            } else {
                "FAILURE"
            };
            (status, builds, o.record_warning)
        }
        Err(e) => ("ERROR", builds, Some(e.to_string())),
    }
}

/// Folds a runner event into the builds; `false`: nothing changed.
fn record(builds: &mut Vec<BuildRow>, e: Event, at: i64) -> bool {
    let row = |job, uuid, result, start_ms, duration_ms, message| BuildRow {
        job,
        uuid,
        result,
        start_ms,
        duration_ms,
        message,
        log: None,
        artifacts: vec![],
    };
    match e {
        Event::BuildStarted { job, uuid } => builds.push(row(job, uuid, None, at, None, None)),
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
                None => builds.push(row(
                    job,
                    uuid,
                    Some(result.to_string()),
                    (at - d).max(0),
                    Some(d),
                    message,
                )),
            }
        }
        Event::BuildSkipped { job, reason } => builds.push(row(
            job,
            String::new(),
            Some("SKIPPED".into()),
            at,
            Some(0),
            Some(reason),
        )),
        _ => return false,
    }
    true
}

/// Renews this replica's leases every third of the lease until `cancel`.
pub async fn heartbeat(svc: Arc<Service>, cancel: CancellationToken) {
    let every = svc.lease / 3;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let until = now_ms() + svc.lease.as_millis() as i64;
        if let Err(e) = svc.log.renew_events(&svc.replica, until).await {
            tracing::error!("renewing event claims: {e}");
        }
        let mine: Vec<(String, i64)> = svc
            .running
            .lock()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), v.attempt)).collect())
            .unwrap_or_default();
        for (id, attempt) in mine {
            match svc.log.renew(&id, &svc.replica, attempt, until).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        "execution {id}: lease of attempt {attempt} lost to another replica; stopping it"
                    );
                    abandon(&svc, &id, "lease lost to another replica");
                }
                Err(e) => tracing::error!("execution {id}: renewing the lease: {e}"),
            }
        }
    }
}

fn abandon(svc: &Service, id: &str, reason: &str) {
    if let Ok(mut r) = svc.running.lock()
        && let Some(run) = r.get_mut(id)
    {
        run.abandon = Some(reason.to_string());
        run.cancel.cancel();
    }
}

/// After intake and claims have stopped: lets the runs in progress finish within `grace`,
/// then abandons the rest (cancelled, process groups killed, queued again).
pub async fn shutdown(svc: &Service, grace: Duration) {
    let end = tokio::time::Instant::now() + grace;
    let mut announced = false;
    while svc.running_here() > 0 {
        if !announced {
            tracing::info!(
                "stopping: waiting up to {} s for {} run(s) to finish",
                grace.as_secs(),
                svc.running_here()
            );
            announced = true;
        }
        tokio::select! {
            _ = svc.wake_runs.notified() => {}
            _ = tokio::time::sleep_until(end) => break,
        }
    }
    let ids: Vec<String> = svc
        .running
        .lock()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return;
    }
    let reason = format!(
        "gantry serve stopped; the grace period of {} s ran out",
        grace.as_secs()
    );
    for id in &ids {
        abandon(svc, id, &reason);
    }
    // The cancelled runs record their abandonment on their way out.
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while svc.running_here() > 0 {
        tokio::select! {
            _ = svc.wake_runs.notified() => {}
            _ = tokio::time::sleep_until(end) => break,
        }
    }
}
