//! One pipeline run for one change, from a project directory to a [`BuildsetReport`]: what
//! `gantry run` does and what `gantry serve` does when a trigger fires.
//!
//! Steps:
//! 1. load the project's Zuul configuration (with the shipped job library) and build the
//!    job graph of the pipeline;
//! 2. choose the intermediate registry: the one given, or gantry's own started in-process
//!    on `<state>/intermediate` (kept running when the caller asks);
//! 3. read the build records of the changes ahead;
//! 4. run the buildset, sending [`Event`]s to the caller's reporter;
//! 5. write this buildset's build records, so changes behind it find its artifacts.
//!
//! Must not: print (notes go through the caller's `note` callback), parse command lines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{BuildsetReport, Event, RunOptions, records};
use crate::client::ClientOptions;
use crate::job::{JobGraph, LoadOptions, QueueChange};
use crate::registry::{Registry, RegistryConfig};
use crate::roles::{Endpoint, RoleEnv};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The project's configuration is wrong (the user's to fix).
    #[error(transparent)]
    Config(#[from] crate::job::ConfigErrors),
    /// The pipeline's job graph is wrong (unknown dependencies, cycles).
    #[error(transparent)]
    Graph(#[from] crate::job::GraphErrors),
    /// A job's `roles:` names what nothing resolves.
    #[error(transparent)]
    Roles(#[from] super::roles::RoleRefError),
    /// No executor can run the playbooks (`--executor`, Ansible not installed).
    #[error(transparent)]
    Executor(#[from] super::ExecutorError),
    /// The project or state directory cannot be used.
    #[error("{what}: {source}")]
    Dir {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The matchers (`branches`, `files`, `irrelevant-files`) selected no job for this
    /// change: nothing ran (Zuul reports nothing then). Not a failure.
    #[error(
        "no job of pipeline {pipeline} runs for this change (branch {branch}{files}): {} left out by files, irrelevant-files or branches",
        .not_matched.join(", ")
    )]
    NoJobSelected {
        pipeline: String,
        branch: String,
        files: String,
        not_matched: Vec<String>,
    },
    #[error("starting the local intermediate registry in {path}: {source}")]
    Registry {
        path: PathBuf,
        #[source]
        source: crate::registry::ServeError,
    },
    #[error("reading build records of {project} change {change}: {source}")]
    Ahead {
        project: String,
        change: String,
        #[source]
        source: crate::client::ClientError,
    },
}

fn dir_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PipelineError {
    let what = what.into();
    move |source| PipelineError::Dir { what, source }
}

impl PipelineError {
    /// True when the user can fix it (exit status 2).
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            PipelineError::NoJobSelected { .. } | PipelineError::Registry { .. }
        )
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct PipelineRequest {
    pub project_dir: PathBuf,
    /// Project name (default: the directory's name).
    pub project: Option<String>,
    /// Zuul's `canonical_hostname` of the project (`None`: localhost).
    pub canonical_hostname: Option<String>,
    pub pipeline: String,
    pub change: Option<String>,
    pub patchset: String,
    /// Changes ahead, `[PROJECT:]CHANGE`, furthest first.
    pub ahead: Vec<String>,
    pub concurrency: usize,
    pub extra_vars: Map<String, Value>,
    /// Values from outside (a trigger's payload), never rendered as templates.
    pub data_vars: Map<String, Value>,
    /// `None`: gantry's own, in `<state>/intermediate`.
    pub intermediate: Option<Endpoint>,
    /// Stand-in publication registries (`docker.io` → host:port).
    pub publish_to: HashMap<String, String>,
    pub state_dir: PathBuf,
    pub host_root: Option<PathBuf>,
    pub key_dir: Option<PathBuf>,
    pub library_dir: Option<PathBuf>,
    /// The change's branch and files for Zuul's matchers (`--branch`, `--changed-file`,
    /// `--diff-base`); the default evaluates nothing and every listed job runs.
    pub change_info: crate::job::matchers::ChangeInfo,
    /// Tenant repositories (`--config-repo`), in order.
    pub config_repos: Vec<crate::job::ConfigRepo>,
    pub ca_certs: Vec<PathBuf>,
    /// Built-in interpreter, real Ansible, or `auto` (runner/executor.rs).
    pub executor: super::ExecutorKind,
    /// `ansible-playbook` to use (`GANTRY_ANSIBLE`); else gantry's venv, else PATH.
    pub ansible: Option<PathBuf>,
    /// The image builder (`--builder`, `GANTRY_BUILDER`); `None`: auto.
    pub builder: Option<crate::build::BuilderKind>,
}

/// A finished run.
pub struct PipelineOutcome {
    pub report: BuildsetReport,
    /// gantry's local intermediate registry, still serving (the caller stops it).
    pub local_registry: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
    /// Where build records went.
    pub intermediate: String,
    /// Writing build records failed (the run itself is still valid).
    pub record_warning: Option<String>,
}

/// A project name from a `--ahead` part: a directory's name, or the name itself.
pub fn project_name(s: &str) -> String {
    let p = Path::new(s);
    if p.is_dir() {
        p.canonicalize()
            .ok()
            .and_then(|c| c.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_else(|| s.to_string())
    } else {
        s.to_string()
    }
}

/// Runs `req` (steps in the module doc). `note` receives remarks for the user.
pub async fn run_pipeline(
    req: PipelineRequest,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
    note: &(dyn Fn(String) + Send + Sync),
) -> Result<PipelineOutcome, PipelineError> {
    // 1. configuration and job graph
    std::fs::create_dir_all(&req.state_dir)
        .map_err(dir_error(format!("creating {}", req.state_dir.display())))?;
    let project_dir = req.project_dir.canonicalize().map_err(dir_error(format!(
        "project directory {}",
        req.project_dir.display()
    )))?;
    let config = crate::job::load(
        &project_dir,
        &LoadOptions {
            library_dir: req.library_dir.clone(),
            project_name: req.project.clone(),
            allow_external: false,
            config_repos: req.config_repos.clone(),
        },
    )?;
    // The directory's name, or the name the project's own stanza gives itself.
    let project = config.project_name.clone();
    let graph = JobGraph::build_for(&config, &project, &req.pipeline, &req.change_info)?;
    if graph.is_empty() {
        let files = match &req.change_info.files {
            Some(f) => format!(
                ", {} changed file{}",
                f.len(),
                if f.len() == 1 { "" } else { "s" }
            ),
            None => String::new(),
        };
        return Err(PipelineError::NoJobSelected {
            pipeline: req.pipeline.clone(),
            branch: req
                .change_info
                .branch
                .clone()
                .unwrap_or_else(|| "master".into()),
            files,
            not_matched: graph.not_matched.clone(),
        });
    }
    if !graph.not_matched.is_empty() {
        note(format!(
            "not run for this change (files, irrelevant-files, branches): {}",
            graph.not_matched.join(", ")
        ));
    }

    // 2. intermediate registry
    let mut local_registry = None;
    let intermediate = match &req.intermediate {
        Some(ep) => ep.clone(),
        None => {
            let path = req.state_dir.join("intermediate");
            let reg_err = |source| PipelineError::Registry {
                path: path.clone(),
                source,
            };
            let reg = Registry::new(RegistryConfig::new(path.clone())).map_err(reg_err)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], 0));
            let (addr, task) = reg.spawn(addr).await.map_err(reg_err)?;
            local_registry = Some((addr, task));
            Endpoint {
                host: addr.to_string(),
                options: ClientOptions::default(),
            }
        }
    };

    // 3. changes ahead
    let mut ahead: Vec<QueueChange> = Vec::new();
    for spec in &req.ahead {
        let (p, c) = match spec.rsplit_once(':') {
            Some((p, c)) => (project_name(p), c.to_string()),
            None => (project.clone(), spec.clone()),
        };
        match records::read(&intermediate, &p, &req.pipeline, Some(&c), None).await {
            Ok(Some(r)) => ahead.push(r.into()),
            Ok(None) => {
                note(format!(
                    "note: change {c} of {p} has no {} builds on record; treated as merged",
                    req.pipeline
                ));
                ahead.push(QueueChange {
                    project: p,
                    change: Some(c),
                    patchset: None,
                    builds: vec![],
                });
            }
            Err(e) => {
                return Err(PipelineError::Ahead {
                    project: p,
                    change: c,
                    source: e,
                });
            }
        }
    }

    // 4. the buildset: each job's `roles:` first (a reference nothing resolves is a
    // configuration error), bare roles linked under a directory that lives for the run.
    let role_links = tempfile::Builder::new()
        .prefix("roles-")
        .tempdir_in(&req.state_dir)
        .map_err(dir_error("creating a role directory"))?;
    let sources = super::roles::RoleSources {
        project: &project,
        project_dir: &project_dir,
        repos: &req.config_repos,
    };
    let mut role_paths: HashMap<String, Vec<PathBuf>> = HashMap::new();
    let mut notes = Vec::new();
    for (ix, job) in graph.jobs().enumerate() {
        let links = role_links.path().join(ix.to_string());
        for pb in job
            .pre_run
            .iter()
            .chain(&job.run)
            .chain(&job.post_run)
            .chain(&job.cleanup_run)
        {
            let (paths, n) = super::roles::playbook_role_paths(job, pb, &sources, &links)?;
            for n in n {
                if !notes.contains(&n) {
                    note(format!("note: {n}"));
                    notes.push(n);
                }
            }
            role_paths.insert(super::roles::playbook_key(job, pb), paths);
        }
    }
    let publication = ClientOptions {
        ca_certs: req.ca_certs.clone(),
        ..ClientOptions::default()
    };
    let mut env = RoleEnv::new(
        Some(intermediate.clone()),
        req.host_root
            .clone()
            .unwrap_or_else(|| req.state_dir.join("host")),
        publication.clone(),
    );
    env.intermediate_override = req.intermediate.is_some();
    env.builder = req.builder;
    env.publish_to = req
        .publish_to
        .iter()
        .map(|(reg, host)| {
            (
                reg.clone(),
                Endpoint {
                    host: host.clone(),
                    options: publication.clone(),
                },
            )
        })
        .collect();
    let env = Arc::new(env);
    let patchset = req.change.as_ref().map(|_| req.patchset.clone());
    let opts = RunOptions {
        project_dir: project_dir.clone(),
        pipeline: req.pipeline.clone(),
        change: req.change.clone(),
        patchset: patchset.clone(),
        concurrency: req.concurrency,
        extra_vars: req.extra_vars.clone(),
        data_vars: req.data_vars.clone(),
        state_dir: req.state_dir.clone(),
        key_dir: req.key_dir.clone(),
        branch: req.change_info.branch.clone(),
        role_paths: role_paths.clone(),
        canonical_hostname: req
            .canonical_hostname
            .clone()
            .unwrap_or_else(|| "localhost".into()),
    };
    let playbooks: Vec<(PathBuf, PathBuf, Vec<PathBuf>)> = graph
        .jobs()
        .flat_map(|j| {
            let role_paths = &role_paths;
            j.pre_run
                .iter()
                .chain(&j.run)
                .chain(&j.post_run)
                .chain(&j.cleanup_run)
                .map(move |pb| {
                    let roles = role_paths
                        .get(&super::roles::playbook_key(j, pb))
                        .cloned()
                        .unwrap_or_default();
                    (pb.root.join(&pb.path), pb.root.clone(), roles)
                })
        })
        .collect();
    let native = crate::roles::NativeRoleSet { env: env.clone() };
    let chosen =
        super::executor::choose(req.executor, req.ansible.as_deref(), &playbooks, &native).await?;
    if !chosen.note.is_empty() {
        note(chosen.note);
    }
    let config = Arc::new(config);
    let report = super::run_buildset(
        config,
        &graph,
        opts,
        env.clone(),
        chosen.exec,
        &ahead,
        events,
        cancel,
    )
    .await;

    // 5. build records
    let record = records::BuildsetRecord {
        project: project.clone(),
        change: req.change.clone(),
        patchset: patchset.clone(),
        pipeline: req.pipeline.clone(),
        buildset: report.buildset.clone(),
        builds: report
            .builds
            .iter()
            .filter(|b| !b.uuid.is_empty())
            .map(|b| crate::job::BuildRecord {
                job: b.job.clone(),
                uuid: b.uuid.clone(),
                result: Some(b.result),
                paused: false,
                artifacts: b
                    .artifacts
                    .iter()
                    .filter_map(|a| serde_json::from_value(a.clone()).ok())
                    .collect(),
                project: project.clone(),
                change: req.change.clone(),
                patchset: patchset.clone(),
                pipeline: req.pipeline.clone(),
                provides: graph
                    .job(&b.job)
                    .map(|j| j.provides.iter().cloned().collect())
                    .unwrap_or_default(),
            })
            .collect(),
    };
    let record_warning = records::write(&intermediate, &record)
        .await
        .err()
        .map(|e| e.to_string());
    drop(env);
    drop(role_links);
    Ok(PipelineOutcome {
        report,
        local_registry,
        intermediate: intermediate.host,
        record_warning,
    })
}
