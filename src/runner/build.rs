//! One build of a frozen job (ZUUL.md §2, §7):
//!
//! 1. pre-run playbooks, parent's first; a failure runs the post-run playbooks of the
//!    levels reached, then retries the build up to `attempts` (RETRY_LIMIT after that);
//! 2. run playbooks, all must succeed (FAILURE otherwise; TIMED_OUT past `timeout`);
//! 3. `zuul_return: {data: {zuul: {pause: true}}}` after a successful run pauses the
//!    build: the driver is told, dependents start, and the build waits to resume;
//! 4. post-run playbooks, child's first, with `zuul_success` (a failure: POST_FAILURE);
//! 5. cleanup playbooks always, even after failure or cancellation;
//! 6. the buildset registries the build started are stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedSender;

use super::log::BuildLog;
use super::vars::{VarLayers, assemble};
use super::{BuildReport, BuildsetCtx, Event, Msg, ms};
use crate::job::{BuildResult, FrozenJob, FrozenPlaybook, ParentData, Returned};
use crate::playbook::{LogSink, PlaybookContext, PlaybookOutcome, Secret};

struct Build {
    ctx: Arc<BuildsetCtx>,
    job: FrozenJob,
    parent: ParentData,
    log: BuildLog,
    work: std::path::PathBuf,
    zuul: Value,
    /// The job's nodes, with the facts cached by its playbooks so far.
    inventory: crate::playbook::Inventory,
    returned: Returned,
}

/// The `zuul` variable as Zuul's executor sets it (`zuul/executor/server.py`,
/// `AnsibleJob.prepareVars` / `zuul/model.py` `FrozenJob`): one item (this change), the
/// project keyed by its canonical name (`<canonical_hostname>/<name>`, which kolla and
/// others read), branch, tags, timeout and executor paths. A plain value, so any executor
/// (the built-in interpreter or ansible-playbook's inventory) can use it.
pub fn zuul_var(ctx: &BuildsetCtx, job: &FrozenJob, uuid: &str, artifacts: &[Value]) -> Value {
    let project = &ctx.config.project_name;
    let short = project.rsplit('/').next().unwrap_or(project);
    let hostname = ctx.opts.canonical_hostname.as_str();
    let canonical = format!("{hostname}/{project}");
    let src_dir = ctx.opts.project_dir.display().to_string();
    let branch = ctx.item.branch.clone().unwrap_or_else(|| "master".into());
    let change_ref = ctx.opts.change.as_ref().map(|c| {
        format!(
            "refs/changes/{c}/{}",
            ctx.opts.patchset.clone().unwrap_or_else(|| "1".into())
        )
    });
    let change_url = ctx
        .opts
        .change
        .as_ref()
        .map(|c| format!("gantry://{project}/change/{c}"));
    let project_var = json!({
        "name": project,
        "short_name": short,
        "canonical_name": canonical,
        "canonical_hostname": hostname,
        "src_dir": src_dir,
    });
    let state = ctx.opts.state_dir.display().to_string();
    // One ref: this change, as Zuul's `Change.toDict` writes it (zuul/model.py).
    let this_ref = json!({
        "project": project_var,
        "branch": branch,
        "change": ctx.opts.change,
        "patchset": ctx.opts.patchset,
        "change_url": change_url,
        "commit_id": null,
        "change_message": "",
        "topic": null,
        "bundle_id": null,
        "src_dir": src_dir,
    });
    let mut zuul = json!({
        "tenant": "gantry",
        "pipeline": ctx.opts.pipeline,
        "job": job.name,
        "jobtags": job.tags.iter().collect::<Vec<_>>(),
        "build": uuid,
        "buildset": ctx.buildset,
        "event_id": ctx.buildset,
        "branch": branch,
        "override_branch": null,
        "override_checkout": null,
        "change": ctx.opts.change,
        "patchset": ctx.opts.patchset,
        "ref": change_ref,
        "tag": null,
        "oldrev": null,
        "newrev": null,
        "change_url": change_url,
        "message": "",
        "timeout": job.timeout,
        "post_timeout": job.post_timeout,
        "project": project_var,
        "projects": {canonical.clone(): {
            "name": project,
            "short_name": short,
            "canonical_name": canonical,
            "canonical_hostname": hostname,
            "src_dir": src_dir,
            "required": false,
            "checkout": branch,
            "checkout_description": "zuul branch",
        }},
        "items": [this_ref],
        "child_jobs": [],
        "artifacts": artifacts,
        "attempts": 1,
        "voting": job.voting,
        "executor": {
            "hostname": "localhost",
            "src_root": ctx.opts.project_dir.parent().map(|p| p.display().to_string()).unwrap_or_default(),
            "result_data_file": "",
            "work_root": state,
            "log_root": state,
            "inventory_file": "",
        },
    });
    // Zuul's other keys (`construct_build_params`, `prepareVars`, `Change.toDict`).
    let more = json!({
        "commit_id": null,
        "change_message": "",
        "topic": null,
        "buildset_refs": [this_ref],
        "build_refs": [this_ref],
        // gantry's promote pipeline runs after review, as Zuul's does (`post-review`).
        "post_review": ctx.opts.pipeline == "promote",
        "include_vars": job.other.get("include-vars").cloned().unwrap_or_else(|| json!([])),
        // No Kubernetes nodes: Zuul's `prepareNodes` leaves it empty.
        "resources": {},
        "ansible_version": ansible_version(job),
        "playbook_context": playbook_context(ctx, job),
    });
    if let (Value::Object(z), Value::Object(m)) = (&mut zuul, more) {
        z.extend(m);
    }
    zuul
}

/// `zuul.ansible_version`: the job's `ansible-version`, else the version Zuul defaults to
/// (`default_version = 9`, zuul/lib/ansible-config.conf, zuul commit b5bc01c72d). A
/// stand-in: the built-in interpreter is not Ansible, and `--executor ansible` runs the
/// ansible-core it finds.
fn ansible_version(job: &FrozenJob) -> String {
    match job.other.get("ansible-version") {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "9".into(),
    }
}

/// `zuul.playbook_context` (Zuul's `prepareVars`): the job's pre-run, run and post-run
/// playbooks in order, each with the role directories on its path
/// (`JobDirPlaybookRole.toDict` keys; gantry links nothing, so `link_name`, `link_target`
/// and `role_path` are the same directory). `playbook_projects` is empty: gantry reads the
/// repositories where they are, it does not check them out per build.
fn playbook_context(ctx: &BuildsetCtx, job: &FrozenJob) -> Value {
    let playbooks: Vec<Value> = job
        .pre_run
        .iter()
        .chain(&job.run)
        .chain(&job.post_run)
        .map(|pb| {
            let roles: Vec<Value> = ctx
                .opts
                .role_paths
                .get(&super::roles::playbook_key(job, pb))
                .into_iter()
                .flatten()
                .map(|dir| {
                    let dir = dir.display().to_string();
                    json!({
                        "link_name": dir,
                        "link_target": dir,
                        "role_path": dir,
                        "checkout_description": "directory given",
                        "checkout": null,
                    })
                })
                .collect();
            json!({"path": pb.root.join(&pb.path).display().to_string(), "roles": roles})
        })
        .collect();
    json!({"playbook_projects": {}, "playbooks": playbooks})
}

fn strings(v: &Value, out: &mut Vec<Secret>) {
    out.extend(crate::playbook::secret_leaves(v));
}

impl Build {
    /// `key` of the `zuul` mapping the playbooks returned so far (`pause`, `artifacts`).
    fn returned_zuul(&self, key: &str) -> Option<&Value> {
        self.returned.data.get("zuul").and_then(|z| z.get(key))
    }

    /// Decrypts the secrets bound to a playbook (by the names the job gives them).
    fn secrets_for(&self, pb: &FrozenPlaybook) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        if pb.secrets.is_empty() {
            return Ok(out);
        }
        let key = match &self.ctx.opts.key_dir {
            Some(dir) => crate::job::keys::load_private(dir, &self.ctx.config.project_name).ok(),
            None => None,
        };
        for b in &pb.secrets {
            let def = self
                .ctx
                .config
                .secrets
                .get(&b.secret)
                .ok_or_else(|| format!("secret {} is not defined", b.secret))?;
            let value = def.decrypt(key.as_ref()).map_err(|e| e.to_string())?;
            out.insert(b.name.clone(), value);
        }
        Ok(out)
    }

    async fn playbook(
        &mut self,
        pb: &FrozenPlaybook,
        success: Option<bool>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> PlaybookOutcome {
        let path = pb.root.join(&pb.path);
        self.log.line(&format!(
            "PLAYBOOK [{}] ({} from {})",
            pb.path, pb.job, pb.defined_in
        ));
        let secrets = match self.secrets_for(pb) {
            Ok(s) => s,
            Err(e) => {
                return PlaybookOutcome {
                    ok: false,
                    error: Some(e),
                    ..PlaybookOutcome::default()
                };
            }
        };
        let mut known = Vec::new();
        for v in secrets.values() {
            strings(v, &mut known);
        }
        self.log.add_secrets(known);
        let vars = assemble(&VarLayers {
            job: &self.job,
            parent: &self.parent,
            secrets: &secrets,
            extra: &self.ctx.opts.extra_vars,
            data: &self.ctx.opts.data_vars,
            zuul: &self.zuul,
            success,
        });
        let run = PlaybookContext {
            project_dir: &pb.root,
            role_paths: self
                .ctx
                .opts
                .role_paths
                .get(&super::roles::playbook_key(&self.job, pb))
                .map(Vec::as_slice)
                .unwrap_or_default(),
            work_dir: &self.work,
            vars,
            inventory: &self.inventory,
            native: &self.ctx.native,
            log: &self.log,
            cancel,
        };
        let result = self.ctx.exec.run(&path, run).await;
        match result {
            Ok(r) => {
                let mut secret_strings = Vec::new();
                for v in r.returned.secret_data.values() {
                    strings(v, &mut secret_strings);
                }
                self.log.add_secrets(secret_strings);
                for (host, facts) in &r.facts {
                    if let Some(h) = self.inventory.host_mut(host) {
                        h.facts.extend(facts.clone());
                    }
                }
                self.returned.merge(r.returned.clone());
                if let Some(e) = &r.error {
                    self.log.line(&format!("playbook failed: {e}"));
                }
                r
            }
            Err(e) => {
                let e = e.to_string();
                self.log.line(&format!("playbook error: {e}"));
                PlaybookOutcome {
                    ok: false,
                    error: Some(e),
                    ..PlaybookOutcome::default()
                }
            }
        }
    }

    /// Runs `pbs` in order, stopping at the first failure; the phase is bounded by `timeout`.
    async fn phase(
        &mut self,
        pbs: &[FrozenPlaybook],
        success: Option<bool>,
        timeout: Option<u64>,
    ) -> (bool, Option<String>, bool) {
        let token = self.ctx.cancel.child_token();
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t));
        for pb in pbs {
            if token.is_cancelled() {
                return (false, Some("canceled".into()), false);
            }
            let fut = self.playbook(pb, success, token.clone());
            let r = match deadline {
                None => fut.await,
                Some(d) => {
                    let t2 = token.clone();
                    let timer = async move {
                        tokio::time::sleep_until(d.into()).await;
                        t2.cancel();
                    };
                    tokio::pin!(fut);
                    tokio::select! {
                        r = &mut fut => r,
                        _ = timer => {
                            let _ = (&mut fut).await;
                            return (false, Some(format!("timed out after {} s", timeout.unwrap_or(0))), true);
                        }
                    }
                }
            };
            if !r.ok {
                return (false, r.error, false);
            }
        }
        (true, None, false)
    }
}

pub(super) async fn run(
    ctx: Arc<BuildsetCtx>,
    job: FrozenJob,
    parent: ParentData,
    tx: UnboundedSender<Msg>,
) {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let _ = ctx.events.send(Event::BuildStarted {
        job: job.name.clone(),
        uuid: uuid.clone(),
    });
    let dir = ctx.opts.state_dir.join("builds").join(&uuid);
    let work = dir.join("work");
    let mut initial = Vec::new();
    for v in parent.secret_data.values() {
        strings(v, &mut initial);
    }
    let log = match BuildLog::create(
        dir.join("job-output.txt"),
        &job.name,
        ctx.events.clone(),
        initial,
    ) {
        Ok(l) => l,
        Err(e) => {
            let report = BuildReport {
                job: job.name.clone(),
                uuid,
                result: BuildResult::Error,
                duration_ms: 0,
                message: Some(format!("creating the build log: {e}")),
                log: None,
                artifacts: vec![],
                paused: false,
            };
            let _ = tx.send(Msg::Finished {
                report,
                returned: Returned::default(),
            });
            return;
        }
    };
    let _ = std::fs::create_dir_all(&work);
    let zuul = zuul_var(&ctx, &job, &uuid, &parent.artifacts);
    let (inventory, inventory_note) = super::inventory::job_inventory(&ctx.config, &job);
    let mut b = Build {
        ctx: ctx.clone(),
        job: job.clone(),
        parent,
        log,
        work,
        zuul,
        inventory,
        returned: Returned::default(),
    };
    b.log.line(&format!(
        "Job {} build {} (buildset {})",
        job.name, uuid, ctx.buildset
    ));
    if let Some(note) = inventory_note {
        b.log.line(&note);
    }

    let attempts = job.attempts.max(1);
    let mut result = BuildResult::Success;
    let mut message = None;
    let mut was_paused = false;
    let mut pre_ok = false;
    for attempt in 1..=attempts {
        if attempt > 1 {
            b.log
                .line(&format!("pre-run failed; attempt {attempt} of {attempts}"));
        }
        // 1. pre-run, noting the deepest level reached.
        let mut failed_level = None;
        for pb in job.pre_run.clone() {
            let (ok, err, _) = b
                .phase(
                    std::slice::from_ref(&pb),
                    None,
                    job.pre_timeout.or(job.timeout),
                )
                .await;
            if !ok {
                failed_level = Some(pb.nesting_level);
                message = err;
                break;
            }
        }
        match failed_level {
            None => {
                pre_ok = true;
                break;
            }
            Some(level) => {
                // Post-run playbooks deeper than the level reached are skipped.
                let post: Vec<FrozenPlaybook> = job
                    .post_run
                    .iter()
                    .filter(|p| p.nesting_level <= level)
                    .cloned()
                    .collect();
                for pb in post {
                    let _ = b
                        .phase(std::slice::from_ref(&pb), Some(false), job.post_timeout)
                        .await;
                }
                if ctx.cancel.is_cancelled() {
                    break;
                }
            }
        }
    }
    if !pre_ok {
        result = if ctx.cancel.is_cancelled() {
            BuildResult::Canceled
        } else {
            BuildResult::RetryLimit
        };
    } else {
        // 2. run.
        let run_pbs = job.run.clone();
        if job.is_noop() {
            b.log.line("noop: nothing to run");
        } else if run_pbs.is_empty() {
            result = BuildResult::Error;
            message = Some(format!("Job {} has no run playbook", job.name));
        } else {
            let (ok, err, timed_out) = b.phase(&run_pbs, None, job.timeout).await;
            if !ok {
                result = if timed_out {
                    BuildResult::TimedOut
                } else if ctx.cancel.is_cancelled() {
                    BuildResult::Canceled
                } else {
                    BuildResult::Failure
                };
                message = err;
            }
        }
        // 3. pause.
        let pause = b
            .returned_zuul("pause")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if result == BuildResult::Success && pause {
            was_paused = true;
            b.log
                .line("Job paused; waiting for the jobs that depend on it");
            let (resume_tx, resume_rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Msg::Paused {
                job: job.name.clone(),
                returned: b.returned.clone(),
                resume: resume_tx,
            });
            let _ = resume_rx.await;
            b.log.line("Job resumed");
        }
        // 4. post-run.
        let success = result == BuildResult::Success;
        for pb in job.post_run.clone() {
            let (ok, err, _) = b
                .phase(std::slice::from_ref(&pb), Some(success), job.post_timeout)
                .await;
            if !ok && result == BuildResult::Success {
                result = BuildResult::PostFailure;
                message = err;
            }
        }
    }
    // 5. cleanup, always; its failures do not change the result.
    if !job.cleanup_run.is_empty() {
        let cleanup = job.cleanup_run.clone();
        let saved = b.ctx.clone();
        // Cleanup must run even after cancellation: give it a fresh token.
        let fresh = Arc::new(BuildsetCtx {
            config: saved.config.clone(),
            opts: saved.opts.clone(),
            buildset: saved.buildset.clone(),
            item: saved.item.clone(),
            env: saved.env.clone(),
            native: saved.native.clone(),
            exec: saved.exec.clone(),
            events: saved.events.clone(),
            cancel: tokio_util::sync::CancellationToken::new(),
        });
        b.ctx = fresh;
        for pb in cleanup {
            let (ok, err, _) = b
                .phase(
                    std::slice::from_ref(&pb),
                    Some(result == BuildResult::Success),
                    job.post_timeout,
                )
                .await;
            if !ok {
                b.log.line(&format!(
                    "cleanup playbook {} failed: {}",
                    pb.path,
                    err.unwrap_or_default()
                ));
            }
        }
        b.ctx = saved;
    }
    // 6. registries started by this build stop with it.
    ctx.env.stop_registries(&uuid);
    b.log.line(&format!("Job {} finished: {result}", job.name));
    let artifacts = b
        .returned_zuul("artifacts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let duration_ms = ms(started);
    let _ = ctx.events.send(Event::BuildFinished {
        job: job.name.clone(),
        uuid: uuid.clone(),
        result,
        duration: Duration::from_millis(duration_ms),
        message: message.clone(),
    });
    let report = BuildReport {
        job: job.name.clone(),
        uuid,
        result,
        duration_ms,
        message,
        log: Some(b.log.path.clone()),
        artifacts,
        paused: was_paused,
    };
    let _ = tx.send(Msg::Finished {
        report,
        returned: b.returned,
    });
}
