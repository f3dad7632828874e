//! Buildset execution: the frozen jobs of one queue item run as builds, in dependency
//! order, with Zuul's semantics (ZUUL.md §2, §6–§8).
//!
//! The driver is a ready-set dispatcher (`JobGraph::ready`) with a concurrency bound:
//! 1. start every ready job whose `requires` are met by the changes ahead (or fail it
//!    with Zuul's message); paused builds do not hold a slot;
//! 2. when a build pauses, its dependents may start; when every dependent, recursively,
//!    has a result, the paused build resumes and runs its post-run playbooks;
//! 3. a result other than SUCCESS/SKIPPED skips the dependents (`Skipped due to failed
//!    job X`); `zuul.child_jobs` skips the ones not named;
//! 4. cancellation (Ctrl-C) reaches every build: running playbooks stop, cleanup runs.
//!
//! The runner emits [`Event`]s; reporters print. It never prints.

mod build;
pub mod executor;
mod inventory;
pub mod log;
pub mod pipeline;
pub mod records;
pub mod roles;
pub mod vars;

pub use executor::{ExecutorError, ExecutorKind, interpreter};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use crate::job::{
    BuildResult, BuildState, Config, ItemRef, JobGraph, QueueChange, Requirements, Returned,
    resolve_requirements,
};
use crate::playbook::{PlaybookContext, PlaybookOutcome};
use crate::roles::RoleEnv;

/// What happens during a buildset, for reporters.
#[derive(Clone, Debug)]
pub enum Event {
    BuildsetStarted {
        buildset: String,
        project: String,
        pipeline: String,
        jobs: Vec<String>,
    },
    BuildStarted {
        job: String,
        uuid: String,
    },
    BuildPaused {
        job: String,
    },
    BuildResumed {
        job: String,
    },
    BuildFinished {
        job: String,
        uuid: String,
        result: BuildResult,
        duration: Duration,
        message: Option<String>,
    },
    BuildSkipped {
        job: String,
        reason: String,
    },
    Log {
        job: String,
        line: String,
    },
}

/// The playbook interpreter, as the runner needs it: a playbook and its context in, its
/// outcome out; `Err` when the playbook itself is invalid. A trait so the driver's
/// semantics can be tested with scripted playbooks.
pub trait PlaybookExecutor: Send + Sync {
    fn run<'a>(&'a self, playbook: &'a Path, ctx: PlaybookContext<'a>) -> ExecutorFuture<'a>;
}

/// What [`PlaybookExecutor::run`] returns.
pub type ExecutorFuture<'a> = BoxFuture<'a, Result<PlaybookOutcome, ExecutorError>>;

/// Everything about one `gantry run` that is not configuration.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub project_dir: PathBuf,
    pub pipeline: String,
    pub change: Option<String>,
    pub patchset: Option<String>,
    /// Jobs running at once (paused builds do not count).
    pub concurrency: usize,
    /// `--var k=v`: extra vars for every build.
    pub extra_vars: Map<String, Value>,
    /// Values from outside (a trigger's payload): every build sees them verbatim, never
    /// rendered as templates (Zuul's `!unsafe`).
    pub data_vars: Map<String, Value>,
    /// `<state>/builds/<uuid>/` holds each build's log and work directory.
    pub state_dir: PathBuf,
    /// Where the project's secret keys are (`gantry secret keygen --key-dir`).
    pub key_dir: Option<PathBuf>,
    /// The change's target branch (`zuul.branch`; `None`: master).
    pub branch: Option<String>,
    /// Per playbook (`runner::roles::playbook_key`): the role directories of the roles it is
    /// scoped to (`FrozenPlaybook::roles`).
    pub role_paths: HashMap<String, Vec<PathBuf>>,
    /// The hostname of the project's canonical name (`zuul.projects` keys).
    pub canonical_hostname: String,
}

/// One build's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildReport {
    pub job: String,
    pub uuid: String,
    pub result: BuildResult,
    pub duration_ms: u64,
    pub message: Option<String>,
    pub log: Option<PathBuf>,
    pub artifacts: Vec<Value>,
    pub paused: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildsetReport {
    pub buildset: String,
    pub project: String,
    pub pipeline: String,
    pub change: Option<String>,
    pub builds: Vec<BuildReport>,
}

impl BuildsetReport {
    /// SUCCESS when every voting build succeeded or was skipped for a reason other than a
    /// failure.
    pub fn succeeded(&self) -> bool {
        self.builds.iter().all(|b| {
            matches!(b.result, BuildResult::Success)
                || (b.result == BuildResult::Skipped
                    && !b
                        .message
                        .as_deref()
                        .unwrap_or("")
                        .starts_with("Skipped due to failed job"))
        })
    }
}

/// Messages from build tasks to the driver.
enum Msg {
    Paused {
        job: String,
        returned: Returned,
        resume: tokio::sync::oneshot::Sender<()>,
    },
    Finished {
        report: BuildReport,
        returned: Returned,
    },
}

/// Shared by every build of a buildset.
pub(crate) struct BuildsetCtx {
    pub config: Arc<Config>,
    pub opts: RunOptions,
    pub buildset: String,
    pub item: ItemRef,
    pub env: Arc<RoleEnv>,
    pub native: crate::roles::NativeRoleSet,
    pub exec: Arc<dyn PlaybookExecutor>,
    pub events: UnboundedSender<Event>,
    pub cancel: CancellationToken,
}

/// Runs the buildset of `graph` and returns every build's report.
#[allow(clippy::too_many_arguments)]
pub async fn run_buildset(
    config: Arc<Config>,
    graph: &JobGraph,
    opts: RunOptions,
    env: Arc<RoleEnv>,
    exec: Arc<dyn PlaybookExecutor>,
    ahead: &[QueueChange],
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
) -> BuildsetReport {
    let buildset = uuid::Uuid::new_v4().simple().to_string();
    let item = ItemRef {
        project: config.project_name.clone(),
        branch: opts.branch.clone(),
        change: opts.change.clone(),
        patchset: opts.patchset.clone(),
    };
    let _ = events.send(Event::BuildsetStarted {
        buildset: buildset.clone(),
        project: config.project_name.clone(),
        pipeline: opts.pipeline.clone(),
        jobs: graph.jobs().map(|j| j.name.clone()).collect(),
    });
    let ctx = Arc::new(BuildsetCtx {
        native: crate::roles::NativeRoleSet { env: env.clone() },
        config: config.clone(),
        opts: opts.clone(),
        buildset: buildset.clone(),
        item: item.clone(),
        env,
        exec,
        events: events.clone(),
        cancel: cancel.clone(),
    });
    let (tx, mut rx) = unbounded_channel::<Msg>();
    let mut states: HashMap<String, BuildState> = HashMap::new();
    let mut returned: HashMap<String, Returned> = HashMap::new();
    let mut reports: Vec<BuildReport> = Vec::new();
    let mut running = 0usize;
    let mut paused: HashMap<String, tokio::sync::oneshot::Sender<()>> = HashMap::new();

    let skip = |states: &mut HashMap<String, BuildState>,
                reports: &mut Vec<BuildReport>,
                skip: Option<crate::job::Skip>| {
        let Some(s) = skip else { return };
        for j in s.jobs {
            if states.contains_key(&j) {
                continue;
            }
            states.insert(j.clone(), BuildState::Completed(BuildResult::Skipped));
            let _ = events.send(Event::BuildSkipped {
                job: j.clone(),
                reason: s.reason.clone(),
            });
            reports.push(BuildReport {
                job: j,
                uuid: String::new(),
                result: BuildResult::Skipped,
                duration_ms: 0,
                message: Some(s.reason.clone()),
                log: None,
                artifacts: vec![],
                paused: false,
            });
        }
    };

    loop {
        // 1. Start what is ready.
        if !cancel.is_cancelled() {
            let ready: Vec<String> = graph.ready(&states).into_iter().map(String::from).collect();
            for name in ready {
                if running >= opts.concurrency.max(1) {
                    break;
                }
                let Some(job) = graph.job(&name) else {
                    continue;
                };
                match resolve_requirements(job, &opts.pipeline, ahead) {
                    Requirements::Run { artifacts } => {
                        let parent = graph.parent_data(&name, &returned, &item, artifacts);
                        states.insert(name.clone(), BuildState::Running);
                        running += 1;
                        let job = job.clone();
                        let ctx = ctx.clone();
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            build::run(ctx, job, parent, tx).await;
                        });
                    }
                    Requirements::Wait { job: other, uuid } => {
                        let msg = format!(
                            "Job {name} waits for build {uuid} of job {other} on a change ahead, which has not finished"
                        );
                        let r = not_started(&name, BuildResult::Error, msg, &events);
                        reports.push(r);
                        states.insert(name.clone(), BuildState::Completed(BuildResult::Error));
                        skip(
                            &mut states,
                            &mut reports,
                            graph.to_skip(&name, Some(BuildResult::Error), false, None),
                        );
                    }
                    Requirements::Fail { message } => {
                        let r = not_started(&name, BuildResult::Failure, message, &events);
                        reports.push(r);
                        states.insert(name.clone(), BuildState::Completed(BuildResult::Failure));
                        skip(
                            &mut states,
                            &mut reports,
                            graph.to_skip(&name, Some(BuildResult::Failure), false, None),
                        );
                    }
                }
            }
        }
        // 2. Resume paused builds whose dependents all have results.
        let resumable: Vec<String> = paused
            .keys()
            .filter(|j| {
                graph.dependents_recursive(j, false).iter().all(|d| {
                    matches!(states.get(*d), Some(BuildState::Completed(_)))
                        || (cancel.is_cancelled() && !states.contains_key(*d))
                })
            })
            .cloned()
            .collect();
        for j in resumable {
            if let Some(tx) = paused.remove(&j) {
                let _ = events.send(Event::BuildResumed { job: j.clone() });
                states.insert(j.clone(), BuildState::Running);
                running += 1;
                let _ = tx.send(());
            }
        }
        if running == 0 && paused.is_empty() {
            // Nothing runs; anything still unstarted can never start (or we were cancelled).
            break;
        }
        // 3. Wait for news.
        let Some(msg) = rx.recv().await else { break };
        match msg {
            Msg::Paused {
                job,
                returned: r,
                resume,
            } => {
                running -= 1;
                states.insert(job.clone(), BuildState::Paused);
                let child_jobs = child_jobs(&r);
                returned.insert(job.clone(), r);
                let _ = events.send(Event::BuildPaused { job: job.clone() });
                skip(
                    &mut states,
                    &mut reports,
                    graph.to_skip(
                        &job,
                        Some(BuildResult::Success),
                        true,
                        child_jobs.as_deref(),
                    ),
                );
                paused.insert(job, resume);
            }
            Msg::Finished {
                report,
                returned: r,
            } => {
                running -= 1;
                let job = report.job.clone();
                states.insert(job.clone(), BuildState::Completed(report.result));
                let child_jobs = child_jobs(&r);
                returned.insert(job.clone(), r);
                let was_paused = report.paused;
                let result = report.result;
                reports.push(report);
                skip(
                    &mut states,
                    &mut reports,
                    graph.to_skip(
                        &job,
                        Some(result),
                        was_paused && result == BuildResult::Success,
                        child_jobs.as_deref(),
                    ),
                );
            }
        }
    }
    // Jobs never started (cancelled, or held back by a paused build's own failure).
    for j in graph.jobs() {
        if !states.contains_key(&j.name) {
            let reason = if cancel.is_cancelled() {
                "Canceled before it started"
            } else {
                "Not started: its dependencies did not succeed"
            };
            reports.push(BuildReport {
                job: j.name.clone(),
                uuid: String::new(),
                result: if cancel.is_cancelled() {
                    BuildResult::Canceled
                } else {
                    BuildResult::Skipped
                },
                duration_ms: 0,
                message: Some(reason.into()),
                log: None,
                artifacts: vec![],
                paused: false,
            });
        }
    }
    // Reports in the graph's order.
    let order: HashMap<String, usize> = graph
        .jobs()
        .enumerate()
        .map(|(i, j)| (j.name.clone(), i))
        .collect();
    reports.sort_by_key(|r| order.get(&r.job).copied().unwrap_or(usize::MAX));
    BuildsetReport {
        buildset,
        project: config.project_name.clone(),
        pipeline: opts.pipeline.clone(),
        change: opts.change.clone(),
        builds: reports,
    }
}

/// The report of a job that ended before it started (requirements not met).
fn not_started(
    job: &str,
    result: BuildResult,
    message: String,
    events: &UnboundedSender<Event>,
) -> BuildReport {
    let _ = events.send(Event::BuildFinished {
        job: job.to_string(),
        uuid: String::new(),
        result,
        duration: Duration::ZERO,
        message: Some(message.clone()),
    });
    BuildReport {
        job: job.to_string(),
        uuid: String::new(),
        result,
        duration_ms: 0,
        message: Some(message),
        log: None,
        artifacts: vec![],
        paused: false,
    }
}

fn child_jobs(r: &Returned) -> Option<Vec<String>> {
    let list = r.data.get("zuul")?.get("child_jobs")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
    )
}

/// Milliseconds since `t`.
pub(crate) fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    //! The driver's semantics with scripted playbooks: which playbook runs when, and what
    //! each build's result is. The playbook *interpreter* is tested on its own.

    use std::sync::Mutex;

    use super::*;
    use crate::job::{LoadOptions, load};

    /// Plays back a behaviour per playbook file name and records the order of calls.
    struct Script {
        calls: Mutex<Vec<String>>,
    }

    impl PlaybookExecutor for Script {
        fn run<'a>(&'a self, playbook: &'a Path, run: PlaybookContext<'a>) -> ExecutorFuture<'a> {
            Box::pin(async move {
                let name = playbook.file_name().unwrap().to_string_lossy().to_string();
                let job = run
                    .vars
                    .get("zuul")
                    .and_then(|z| z.get("job"))
                    .and_then(|j| j.as_str())
                    .unwrap_or("")
                    .to_string();
                self.calls.lock().unwrap().push(format!("{job}:{name}"));
                let mut r = PlaybookOutcome {
                    ok: true,
                    ..PlaybookOutcome::default()
                };
                match name.as_str() {
                    "fail.yaml" => {
                        r.ok = false;
                        r.error = Some("task failed".into());
                    }
                    "pause.yaml" => {
                        r.returned
                            .data
                            .insert("zuul".into(), serde_json::json!({"pause": true}));
                    }
                    "slow.yaml" => tokio::time::sleep(Duration::from_millis(100)).await,
                    "artifact.yaml" => {
                        r.returned.data.insert(
                            "zuul".into(),
                            serde_json::json!({"artifacts": [{"name": "img", "url": "docker://x/y:z", "metadata": {"type": "container_image"}}]}),
                        );
                    }
                    _ => {}
                }
                Ok(r)
            })
        }
    }

    async fn run_fixture(yaml: &str, pipeline: &str) -> (BuildsetReport, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("zuul.yaml"), yaml).unwrap();
        let config = Arc::new(
            load(
                dir.path(),
                &LoadOptions {
                    project_name: Some("org/p".into()),
                    ..LoadOptions::default()
                },
            )
            .unwrap(),
        );
        let graph = JobGraph::build(&config, "org/p", pipeline).unwrap();
        let script = Arc::new(Script {
            calls: Mutex::new(vec![]),
        });
        let env = Arc::new(RoleEnv::new(
            None,
            dir.path().join("host"),
            Default::default(),
        ));
        let (tx, _rx) = unbounded_channel();
        let opts = RunOptions {
            project_dir: dir.path().to_path_buf(),
            pipeline: pipeline.into(),
            change: Some("1".into()),
            patchset: Some("1".into()),
            concurrency: 4,
            extra_vars: Map::new(),
            data_vars: Map::new(),
            state_dir: dir.path().join("state"),
            key_dir: None,
            branch: None,
            role_paths: HashMap::new(),
            canonical_hostname: "localhost".into(),
        };
        let report = run_buildset(
            config,
            &graph,
            opts,
            env,
            script.clone(),
            &[],
            tx,
            CancellationToken::new(),
        )
        .await;
        let calls = script.calls.lock().unwrap().clone();
        (report, calls)
    }

    fn result(r: &BuildsetReport, job: &str) -> (BuildResult, Option<String>) {
        let b = r.builds.iter().find(|b| b.job == job).unwrap();
        (b.result, b.message.clone())
    }

    #[tokio::test]
    async fn paused_registry_resumes_after_its_dependents() {
        let (r, calls) = run_fixture(
            r#"
- job: {name: registry, pre-run: pre.yaml, run: pause.yaml, post-run: post.yaml}
- job: {name: build, run: slow.yaml, dependencies: [registry]}
- job: {name: test, run: ok.yaml, dependencies: [build]}
- project: {check: {jobs: [registry, build, test]}}
"#,
            "check",
        )
        .await;
        assert_eq!(
            calls,
            vec![
                "registry:pre.yaml",
                "registry:pause.yaml",
                "build:slow.yaml",
                "test:ok.yaml",
                "registry:post.yaml"
            ]
        );
        assert!(r.succeeded());
        assert!(
            r.builds
                .iter()
                .find(|b| b.job == "registry")
                .unwrap()
                .paused
        );
    }

    #[tokio::test]
    async fn failure_skips_dependents_with_zuuls_message() {
        let (r, calls) = run_fixture(
            r#"
- job: {name: a, run: fail.yaml}
- job: {name: b, run: ok.yaml, dependencies: [a]}
- job: {name: c, run: ok.yaml, dependencies: [b]}
- job: {name: d, run: ok.yaml}
- project: {check: {jobs: [a, b, c, d]}}
"#,
            "check",
        )
        .await;
        assert_eq!(
            result(&r, "a"),
            (BuildResult::Failure, Some("task failed".into()))
        );
        assert_eq!(
            result(&r, "b"),
            (
                BuildResult::Skipped,
                Some("Skipped due to failed job a".into())
            )
        );
        assert_eq!(
            result(&r, "c"),
            (
                BuildResult::Skipped,
                Some("Skipped due to failed job a".into())
            )
        );
        assert_eq!(result(&r, "d").0, BuildResult::Success);
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("b:") || c.starts_with("c:"))
        );
        assert!(!r.succeeded());
    }

    #[tokio::test]
    async fn pre_run_failure_retries_then_retry_limit_and_post_run_of_reached_levels() {
        let (r, calls) = run_fixture(
            r#"
- job: {name: base, pre-run: fail.yaml, post-run: base-post.yaml, attempts: 2}
- job: {name: child, parent: base, pre-run: child-pre.yaml, run: ok.yaml, post-run: child-post.yaml}
- project: {check: {jobs: [child]}}
"#,
            "check",
        )
        .await;
        assert_eq!(result(&r, "child").0, BuildResult::RetryLimit);
        // Level 0 failed: its post-run ran, the child's (level 1) did not; twice.
        assert_eq!(
            calls,
            vec![
                "child:fail.yaml",
                "child:base-post.yaml",
                "child:fail.yaml",
                "child:base-post.yaml"
            ]
        );
    }

    #[tokio::test]
    async fn post_run_failure_is_post_failure_and_artifacts_reach_dependents() {
        let (r, _) = run_fixture(
            r#"
- job: {name: a, run: artifact.yaml, post-run: fail.yaml}
- job: {name: b, run: artifact.yaml}
- job: {name: c, run: ok.yaml, dependencies: [b]}
- project: {check: {jobs: [a, b, c]}}
"#,
            "check",
        )
        .await;
        assert_eq!(result(&r, "a").0, BuildResult::PostFailure);
        assert_eq!(result(&r, "c").0, BuildResult::Success);
        let b = r.builds.iter().find(|b| b.job == "b").unwrap();
        assert_eq!(b.artifacts[0]["url"], "docker://x/y:z");
    }
}
