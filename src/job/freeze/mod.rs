//! Freezing: a job name + a project pipeline → one [`FrozenJob`] (ZUUL.md §2).
//!
//! Owns: collecting variants parent-first, applying them in Zuul's order with Zuul's merge
//! rules (playbook nesting, `run` replacement, vars deep merge, unions, `final`, `abstract`,
//! `protected`, `intermediate`, secrets bound to the playbooks of their definition and
//! `pass-to-parent`), then project vars and project-pipeline variants. Records, for each
//! attribute, which definitions (file:line) it came from. Must not: read files, decrypt
//! secrets, or look at builds.

mod apply;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::job::config::{Config, Dependency, JobDef, Loc, Origin};
use crate::job::matchers::Matcher;

use apply::apply;
pub use apply::deep_update;

/// Why a job cannot be frozen. Messages follow Zuul's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreezeError {
    #[error("Job {job} not defined")]
    NotDefined { job: String, at: Option<Loc> },
    #[error("Job {job} inherits from {parent}, which is not defined here (another repository?)")]
    External {
        job: String,
        parent: String,
        at: Loc,
    },
    #[error("inheritance cycle: {path}")]
    InheritanceCycle { path: String, at: Loc },
    #[error("Unable to modify final job {job} attribute {attribute}")]
    Final {
        job: String,
        attribute: String,
        at: Loc,
    },
    #[error("Unable to modify job {job} final attribute {attribute}")]
    FinalAttribute {
        job: String,
        attribute: String,
        at: Loc,
    },
    #[error(
        "Job {job} which is defined in {origin} is protected and cannot be inherited from other projects."
    )]
    Protected {
        job: String,
        origin: Origin,
        at: Loc,
    },
    #[error("Unable to reset protected attribute of job {job}")]
    ProtectedReset { job: String, at: Loc },
    #[error("Intermediate job {job} may only be inherited by another abstract job")]
    Intermediate { job: String, at: Loc },
    #[error("Secret {secret} not found")]
    SecretNotFound { secret: String, at: Loc },
    #[error("Project template {template} not defined")]
    TemplateNotDefined { template: String, at: Loc },
}

impl FreezeError {
    /// Where the offending definition is, when known.
    pub fn loc(&self) -> Option<&Loc> {
        match self {
            FreezeError::NotDefined { at, .. } => at.as_ref(),
            FreezeError::External { at, .. }
            | FreezeError::InheritanceCycle { at, .. }
            | FreezeError::Final { at, .. }
            | FreezeError::FinalAttribute { at, .. }
            | FreezeError::Protected { at, .. }
            | FreezeError::ProtectedReset { at, .. }
            | FreezeError::Intermediate { at, .. }
            | FreezeError::SecretNotFound { at, .. }
            | FreezeError::TemplateNotDefined { at, .. } => Some(at),
        }
    }
}

/// A secret given to a playbook: `name` is the variable, `secret` the stanza.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BoundSecret {
    pub name: String,
    pub secret: String,
}

/// A playbook of a frozen job, with the context of the definition that listed it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrozenPlaybook {
    /// Path as written, relative to `root`.
    pub path: String,
    pub root: PathBuf,
    pub origin: Origin,
    /// The job definition (a parent, the job, or a variant) that listed it.
    pub job: String,
    pub defined_in: Loc,
    /// How deep in the inheritance the definition is (0 = root ancestor). A failed pre-run
    /// at level N means post-run playbooks deeper than N are skipped.
    pub nesting_level: usize,
    pub cleanup: bool,
    pub semaphores: Vec<String>,
    pub secrets: Vec<BoundSecret>,
    /// The roles this playbook runs with: the job's roles as they stood when the definition
    /// listing it was applied (Zuul's `PlaybookContext.roles`, set by `Job.freezePlaybooks`
    /// after `addRoles`): that definition's and its ancestors' explicit `roles:` and
    /// implicit roles (`{"zuul": REPO, "implicit": true}`, each definition's repository),
    /// the latest added first. A role a child adds is not seen by a parent's playbook.
    #[serde(skip)]
    pub roles: Vec<Json>,
}

/// A job after inheritance and variants: what a build runs.
#[derive(Clone, Debug, Serialize)]
pub struct FrozenJob {
    pub name: String,
    pub description: Option<String>,
    /// Definitions applied, in order: `job@file:line`.
    pub inheritance: Vec<String>,
    #[serde(rename = "abstract")]
    pub abstract_: bool,
    #[serde(rename = "final")]
    pub final_: bool,
    pub protected: bool,
    pub intermediate: bool,
    pub voting: bool,
    pub pre_run: Vec<FrozenPlaybook>,
    pub run: Vec<FrozenPlaybook>,
    pub post_run: Vec<FrozenPlaybook>,
    pub cleanup_run: Vec<FrozenPlaybook>,
    pub vars: Map<String, Json>,
    pub extra_vars: Map<String, Json>,
    pub host_vars: Map<String, Json>,
    pub group_vars: Map<String, Json>,
    pub nodeset: Option<Json>,
    pub timeout: Option<u64>,
    pub pre_timeout: Option<u64>,
    pub post_timeout: Option<u64>,
    pub attempts: u64,
    pub dependencies: Vec<Dependency>,
    pub provides: BTreeSet<String>,
    pub requires: BTreeSet<String>,
    pub tags: BTreeSet<String>,
    pub files: Vec<Matcher>,
    pub irrelevant_files: Vec<Matcher>,
    pub branches: Vec<Matcher>,
    pub semaphores: Vec<String>,
    pub roles: Vec<Json>,
    /// Zuul's accumulated `Job.roles` (implicit roles included, newest first): what the
    /// next definition's playbooks get.
    #[serde(skip)]
    scoped_roles: Vec<Json>,
    /// Where each entry of `roles` was written (the definition's `roles:` key), same order.
    #[serde(skip)]
    pub role_locs: Vec<Loc>,
    pub required_projects: Vec<Json>,
    /// Other Zuul attributes, as the last definition setting them wrote them.
    pub other: BTreeMap<String, Json>,
    /// For each attribute: the definitions (file:line) its value came from, in order.
    pub provenance: BTreeMap<String, Vec<Loc>>,
    #[serde(skip)]
    final_attributes: BTreeSet<String>,
    #[serde(skip)]
    protected_origin: Option<Origin>,
    #[serde(skip)]
    current: String,
}

impl FrozenJob {
    fn new(name: &str) -> FrozenJob {
        FrozenJob {
            name: name.to_string(),
            description: None,
            inheritance: vec![],
            abstract_: false,
            final_: false,
            protected: false,
            intermediate: false,
            voting: true,
            pre_run: vec![],
            run: vec![],
            post_run: vec![],
            cleanup_run: vec![],
            vars: Map::new(),
            extra_vars: Map::new(),
            host_vars: Map::new(),
            group_vars: Map::new(),
            nodeset: None,
            timeout: None,
            pre_timeout: None,
            post_timeout: None,
            attempts: 3,
            dependencies: vec![],
            provides: BTreeSet::new(),
            requires: BTreeSet::new(),
            tags: BTreeSet::new(),
            files: vec![],
            irrelevant_files: vec![],
            branches: vec![],
            semaphores: vec![],
            roles: vec![],
            scoped_roles: vec![],
            role_locs: vec![],
            required_projects: vec![],
            other: BTreeMap::new(),
            provenance: BTreeMap::new(),
            final_attributes: BTreeSet::new(),
            protected_origin: None,
            current: name.to_string(),
        }
    }

    /// Why this job cannot run even though it froze (Zuul reports these as the build's
    /// error when the job is about to run, not as configuration errors).
    pub fn run_error(&self) -> Option<String> {
        if self.abstract_ {
            Some(format!(
                "Job {} is abstract and may not be directly run",
                self.name
            ))
        } else if self.run.is_empty() && !self.is_noop() {
            Some(format!("Job {} does not specify a run playbook", self.name))
        } else {
            None
        }
    }

    /// Zuul's built-in `noop`: nothing to run, succeeds at once.
    pub fn is_noop(&self) -> bool {
        self.name == "noop" && self.run.is_empty() && self.pre_run.is_empty()
    }

    /// Every playbook, in execution order: pre-run, run, post-run, cleanup.
    pub fn playbooks(&self) -> impl Iterator<Item = &FrozenPlaybook> {
        self.pre_run
            .iter()
            .chain(&self.run)
            .chain(&self.post_run)
            .chain(&self.cleanup_run)
    }

    fn replaced(&mut self, attr: &str, loc: &Loc) {
        self.provenance.insert(attr.to_string(), vec![loc.clone()]);
    }

    fn merged(&mut self, attr: &str, loc: &Loc) {
        self.provenance
            .entry(attr.to_string())
            .or_default()
            .push(loc.clone());
    }
}

/// What a project pipeline contributes to one job: its variants and the project vars.
#[derive(Debug, Default, Clone)]
pub struct PipelineContext<'c> {
    pub variants: Vec<&'c Arc<JobDef>>,
    pub project_vars: Map<String, Json>,
    /// The project and template stanzas the project vars came from.
    pub project_vars_from: Vec<Loc>,
    /// The change's branch: variants whose `branches` do not match it are left out.
    pub branch: Option<String>,
}

/// Collect a job's variants parent-first (Zuul's `collectJobs`): for each variant of the
/// job, first the variants of its parent (the implicit parent is `base` when such a job
/// exists and nothing was collected yet), then the variant itself.
pub fn collect_variants<'c>(
    config: &'c Config,
    name: &str,
    branch: Option<&str>,
) -> Result<Vec<&'c Arc<JobDef>>, FreezeError> {
    let mut out = vec![];
    let mut path = vec![];
    let mut stack = vec![];
    let mut walk = Walk {
        path: &mut path,
        stack: &mut stack,
        branch,
    };
    collect(config, name, None, &mut walk, &mut out)?;
    Ok(out)
}

/// The state of one variant collection.
struct Walk<'w> {
    path: &'w mut Vec<String>,
    stack: &'w mut Vec<String>,
    branch: Option<&'w str>,
}

fn collect<'c>(
    config: &'c Config,
    name: &str,
    at: Option<&Loc>,
    walk: &mut Walk<'_>,
    out: &mut Vec<&'c Arc<JobDef>>,
) -> Result<(), FreezeError> {
    walk.path.push(name.to_string());
    let Some(variants) = config.jobs.get(name) else {
        return Err(FreezeError::NotDefined {
            job: name.to_string(),
            at: at.cloned(),
        });
    };
    for variant in variants {
        let branches = variant.branches.as_deref().unwrap_or_default();
        if !crate::job::matchers::branch_matches(branches, walk.branch) {
            continue;
        }
        let parent = if variant.is_base() {
            None
        } else {
            match variant.parent_name() {
                Some(p) => Some(p),
                None if out.is_empty() && name != "base" && config.jobs.contains_key("base") => {
                    Some("base")
                }
                None => None,
            }
        };
        if let Some(parent) = parent {
            if parent == name || walk.stack.iter().any(|s| s == parent) {
                let mut cycle: Vec<&str> = walk.stack.iter().map(String::as_str).collect();
                cycle.push(name);
                let start = cycle.iter().position(|s| *s == parent).unwrap_or(0);
                let mut shown: Vec<&str> = cycle[start..].to_vec();
                shown.push(parent);
                return Err(FreezeError::InheritanceCycle {
                    path: shown.join(" -> "),
                    at: variant.loc.clone(),
                });
            }
            if !walk.path.iter().any(|p| p == parent) {
                if !config.jobs.contains_key(parent) && config.external.iter().any(|e| e == parent)
                {
                    return Err(FreezeError::External {
                        job: name.to_string(),
                        parent: parent.to_string(),
                        at: variant.loc.clone(),
                    });
                }
                walk.stack.push(name.to_string());
                let parent_at = variant.set.get("parent").unwrap_or(&variant.loc).clone();
                collect(config, parent, Some(&parent_at), walk, out)?;
                walk.stack.pop();
            }
        }
        if !out.iter().any(|v| Arc::ptr_eq(v, variant)) {
            out.push(variant);
        }
    }
    Ok(())
}

/// Freeze `name` with no project pipeline (what `job show NAME` prints without
/// `--pipeline`).
pub fn freeze_job(config: &Config, name: &str) -> Result<FrozenJob, FreezeError> {
    freeze(config, name, &PipelineContext::default())
}

/// Freeze `name`: its variants parent-first, then the project vars (under the job's own
/// vars), then each project-pipeline variant.
pub fn freeze(
    config: &Config,
    name: &str,
    ctx: &PipelineContext<'_>,
) -> Result<FrozenJob, FreezeError> {
    let variants = collect_variants(config, name, ctx.branch.as_deref())?;
    let mut job = FrozenJob::new(name);
    for (level, variant) in variants.iter().enumerate() {
        apply(config, &mut job, variant, level, level == 0)?;
        job.current = variant.name.clone();
    }
    job.name = name.to_string();
    job.current = name.to_string();
    if !ctx.project_vars.is_empty() {
        job.vars = deep_update(&ctx.project_vars, &job.vars);
        let mut from = ctx.project_vars_from.clone();
        from.extend(job.provenance.remove("vars").unwrap_or_default());
        job.provenance.insert("vars".into(), from);
    }
    let level = variants.len();
    // Only the project-pipeline variants whose `branches` match the change's branch
    // (Zuul's `_createJobGraph`: "Pipeline variant … did not match").
    for variant in ctx.variants.iter().filter(|v| {
        crate::job::matchers::branch_matches(
            v.branches.as_deref().unwrap_or_default(),
            ctx.branch.as_deref(),
        )
    }) {
        apply(config, &mut job, variant, level, false)?;
    }
    Ok(job)
}
