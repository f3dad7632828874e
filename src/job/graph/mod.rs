//! The job graph of one project in one pipeline (ZUUL.md §6).
//!
//! Owns: which jobs a project runs in a pipeline (templates first, then the project's own
//! entries; repeated entries become extra project-pipeline variants), freezing them, the
//! dependency edges (hard and soft), cycle and missing-dependency errors, readiness given
//! build states, and which dependents to skip after a result. Must not: run anything, know
//! about time, or decide about `requires` (see `job::queue`).

mod listing;
mod render;
mod results;
mod select;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use serde_json::Map;

use crate::job::config::{Config, Loc};

use crate::job::freeze::{FreezeError, FrozenJob, freeze};
use crate::job::queue::BuildResult;
pub use listing::{ListedJob, pipeline_jobs};

use crate::job::matchers::ChangeInfo;
use select::job_runs;

/// The files (as shown in positions) a frozen job's definitions come from: a change to one
/// of them runs the job whatever its file matchers say.
fn definition_files(job: &FrozenJob) -> Vec<String> {
    job.inheritance
        .iter()
        .filter_map(|step| step.split_once('@'))
        .filter_map(|(_, loc)| loc.rsplit_once(':'))
        .map(|(file, _)| file.to_string())
        .collect()
}

/// The ancestor outside the given repositories that stopped a freeze: an external parent,
/// or a listed job that is itself external (accepted with `--allow-external`).
fn external_ancestor(config: &Config, error: &FreezeError) -> Option<String> {
    match error {
        FreezeError::External { parent, .. } => Some(parent.clone()),
        FreezeError::NotDefined { job, .. } if config.external.contains(job) => Some(job.clone()),
        _ => None,
    }
}

/// A graph problem; messages follow Zuul's wording where Zuul has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("{error}")]
    Freeze { job: String, error: FreezeError },
    #[error("Job {job} depends on {dependency} which was not run.")]
    MissingDependency {
        job: String,
        dependency: String,
        at: Loc,
    },
    #[error("Job {dependency} not defined")]
    UndefinedSoftDependency {
        job: String,
        dependency: String,
        at: Loc,
    },
    #[error("Dependency cycle detected: {path}")]
    Cycle { path: String, at: Loc },
    /// Zuul runs nothing and reports nothing; gantry says so, because a misspelled
    /// pipeline or project name would otherwise "pass" with zero jobs.
    #[error("project {project} runs no job in pipeline \"{pipeline}\" ({})", known_pipelines(.known, .pipeline, .missing_templates))]
    EmptyPipeline {
        project: String,
        pipeline: String,
        known: Vec<String>,
        /// Templates the project uses that no given repository defines (`--allow-external`
        /// let them through): their jobs are unknown, so the pipeline may not be empty in Zuul.
        missing_templates: Vec<String>,
    },
}

fn known_pipelines(known: &[String], pipeline: &str, missing_templates: &[String]) -> String {
    if !missing_templates.is_empty() {
        return format!(
            "it uses project-template{} {} defined in no given repository: give it with --config-repo",
            if missing_templates.len() == 1 {
                ""
            } else {
                "s"
            },
            missing_templates.join(", ")
        );
    }
    if known.is_empty() {
        return "no project stanza for it lists any job: check the project name (--project)".into();
    }
    match crate::text::suggest::closest(pipeline, known.iter().map(String::as_str)) {
        Some(c) => format!("its pipelines: {}; did you mean {c}?", known.join(", ")),
        None => format!("its pipelines: {}", known.join(", ")),
    }
}

impl GraphError {
    pub fn loc(&self) -> Option<&Loc> {
        match self {
            GraphError::Freeze { error, .. } => error.loc(),
            GraphError::MissingDependency { at, .. }
            | GraphError::UndefinedSoftDependency { at, .. }
            | GraphError::Cycle { at, .. } => Some(at),
            GraphError::EmptyPipeline { .. } => None,
        }
    }
}

/// Every error found while building one graph.
#[derive(Debug, thiserror::Error)]
pub struct GraphErrors {
    pub errors: Vec<GraphError>,
}

impl std::fmt::Display for GraphErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.errors.len();
        write!(f, "{n} job graph error{}", if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            match e.loc() {
                Some(l) => write!(f, "\n  {l}: {e}")?,
                None => write!(f, "\n  {e}")?,
            }
        }
        Ok(())
    }
}

/// Where a job of the graph stands, as the runner tells it. A job absent from the map has
/// not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildState {
    Running,
    Paused,
    Completed(BuildResult),
}

/// What one build returned through `zuul_return`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Returned {
    pub data: Map<String, serde_json::Value>,
    pub secret_data: Map<String, serde_json::Value>,
}

/// The change a buildset is for (artifact enrichment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemRef {
    pub project: String,
    pub branch: Option<String>,
    pub change: Option<String>,
    pub patchset: Option<String>,
}

/// Data from ancestor builds for a starting build (ZUUL.md §6).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParentData {
    pub data: Map<String, serde_json::Value>,
    pub secret_data: Map<String, serde_json::Value>,
    pub artifacts: Vec<serde_json::Value>,
}

/// Dependents to mark SKIPPED after a result, and the reason Zuul gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub jobs: Vec<String>,
    pub reason: String,
}

/// The jobs of one project pipeline, in configuration order, with dependency edges
/// (dependency → dependent).
#[derive(Debug)]
pub struct JobGraph {
    pub project: String,
    pub pipeline: String,
    graph: DiGraph<FrozenJob, bool>,
    index: HashMap<String, NodeIndex>,
    /// False when the change's files were not known: `files` and `irrelevant-files` were
    /// not evaluated (every listed job whose branch matches is in the graph).
    pub matchers_evaluated: bool,
    /// Listed jobs the matchers left out, in configuration order.
    pub not_matched: Vec<String>,
    /// Partial graphs only ([`JobGraph::build_partial`]): ancestors defined in no given
    /// repository, each once, in the order first met.
    pub external: Vec<ExternalNode>,
    /// Partial graphs only: listed jobs that could not be frozen because an ancestor is
    /// external, in configuration order.
    pub not_frozen: Vec<String>,
}

/// An ancestor (or a listed job) that no given repository defines (`--allow-external`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalNode {
    pub name: String,
    /// The listed jobs that cannot be frozen without it, in configuration order.
    pub needed_by: Vec<String>,
}

impl JobGraph {
    /// Freeze every job `project` runs in `pipeline` and connect them. All errors are
    /// returned together.
    pub fn build(config: &Config, project: &str, pipeline: &str) -> Result<JobGraph, GraphErrors> {
        JobGraph::build_for(config, project, pipeline, &ChangeInfo::default())
    }

    /// [`JobGraph::build`] for a change whose branch and files are (partly) known: jobs
    /// whose matchers do not select the change are left out (`crate::job::matchers`).
    pub fn build_for(
        config: &Config,
        project: &str,
        pipeline: &str,
        change: &ChangeInfo,
    ) -> Result<JobGraph, GraphErrors> {
        JobGraph::build_inner(config, project, pipeline, change, false)
    }

    /// [`JobGraph::build_for`] for display with `--allow-external`: jobs that cannot be
    /// frozen because an ancestor lives in a repository not given are left out of the
    /// graph and listed in [`JobGraph::not_frozen`]; each such ancestor is one
    /// [`ExternalNode`]. Every other error is still an error.
    pub fn build_partial(
        config: &Config,
        project: &str,
        pipeline: &str,
        change: &ChangeInfo,
    ) -> Result<JobGraph, GraphErrors> {
        JobGraph::build_inner(config, project, pipeline, change, true)
    }

    fn build_inner(
        config: &Config,
        project: &str,
        pipeline: &str,
        change: &ChangeInfo,
        partial: bool,
    ) -> Result<JobGraph, GraphErrors> {
        let jobs = pipeline_jobs(config, project, pipeline).map_err(|error| GraphErrors {
            errors: vec![GraphError::Freeze {
                job: String::new(),
                error,
            }],
        })?;
        if jobs.is_empty() {
            return Err(GraphErrors {
                errors: vec![GraphError::EmptyPipeline {
                    project: project.to_string(),
                    pipeline: pipeline.to_string(),
                    known: config.project_pipelines(project),
                    missing_templates: config
                        .project_stanzas(project)
                        .flat_map(|p| p.templates.iter().map(|(t, _)| t))
                        .filter(|t| !config.templates.contains_key(t.as_str()))
                        .cloned()
                        .collect(),
                }],
            });
        }
        let mut errors = vec![];
        let mut frozen = vec![];
        let mut not_matched = vec![];
        let mut external: Vec<ExternalNode> = vec![];
        let mut not_frozen: Vec<String> = vec![];
        for ListedJob { name, at, ctx } in &jobs {
            // Zuul runs a job only when one of its own variants matches the branch ("No
            // matching variants"); the project's entry alone does not make it run.
            if !select::some_variant_matches(config, name, change)
                || !select::some_pipeline_variant_matches(ctx, change)
            {
                not_matched.push(name.clone());
                continue;
            }
            let mut ctx = ctx.clone();
            ctx.branch = change.branch.clone();
            match freeze(config, name, &ctx) {
                Ok(job) if !job_runs(&job, change, &definition_files(&job)) => {
                    not_matched.push(job.name.clone());
                }
                Ok(job) => frozen.push((job, at.clone())),
                Err(error) => {
                    if let Some(ancestor) =
                        partial.then(|| external_ancestor(config, &error)).flatten()
                    {
                        match external.iter_mut().find(|e| e.name == ancestor) {
                            Some(e) => e.needed_by.push(name.clone()),
                            None => external.push(ExternalNode {
                                name: ancestor,
                                needed_by: vec![name.clone()],
                            }),
                        }
                        not_frozen.push(name.clone());
                        continue;
                    }
                    let error = match error {
                        FreezeError::NotDefined { job, at: None } => FreezeError::NotDefined {
                            job,
                            at: Some(at.clone()),
                        },
                        e => e,
                    };
                    errors.push(GraphError::Freeze {
                        job: name.clone(),
                        error,
                    });
                }
            }
        }
        let failed: BTreeSet<String> = errors
            .iter()
            .filter_map(|e| match e {
                GraphError::Freeze { job, .. } => Some(job.clone()),
                _ => None,
            })
            .chain(not_frozen.iter().cloned())
            .collect();
        let graph = JobGraph::from_frozen(project, pipeline, frozen, config, &failed, partial).map(
            |mut g| {
                g.matchers_evaluated = change.files.is_some();
                g.not_matched = not_matched;
                g.external = external;
                g.not_frozen = not_frozen;
                g
            },
        );
        match graph {
            Ok(g) if errors.is_empty() => Ok(g),
            Ok(_) => Err(GraphErrors { errors }),
            Err(mut more) => {
                errors.append(&mut more.errors);
                Err(GraphErrors { errors })
            }
        }
    }

    /// Connect already-frozen jobs. `known` answers "is this job defined at all?" for soft
    /// dependencies; `unfrozen` are jobs that exist but failed to freeze (no extra errors
    /// are reported for depending on them). `partial` (`--allow-external`): a soft
    /// dependency defined in no given repository is taken to be defined in one not given
    /// (openstack-zuul-jobs' `project-config-grafana` soft-depends on opendev/grafyaml's
    /// `grafyaml-build-image`); it is not in the pipeline, so it adds no edge, as in Zuul.
    fn from_frozen(
        project: &str,
        pipeline: &str,
        jobs: Vec<(FrozenJob, Loc)>,
        config: &Config,
        unfrozen: &BTreeSet<String>,
        partial: bool,
    ) -> Result<JobGraph, GraphErrors> {
        let mut graph = DiGraph::with_capacity(jobs.len(), jobs.len() * 2);
        let mut index = HashMap::with_capacity(jobs.len());
        let mut locs = Vec::with_capacity(jobs.len());
        for (job, at) in jobs {
            let name = job.name.clone();
            let ix = graph.add_node(job);
            index.insert(name, ix);
            locs.push(at);
        }
        let mut errors = vec![];
        for ix in graph.node_indices().collect::<Vec<_>>() {
            let deps = graph[ix].dependencies.clone();
            for dep in deps {
                let at = graph[ix]
                    .provenance
                    .get("dependencies")
                    .and_then(|l| l.last())
                    .cloned()
                    .unwrap_or_else(|| locs[ix.index()].clone());
                match index.get(&dep.name) {
                    Some(&from) => {
                        graph.add_edge(from, ix, dep.soft);
                    }
                    None if unfrozen.contains(&dep.name) => {}
                    None if dep.soft => {
                        if !partial
                            && !config.jobs.contains_key(&dep.name)
                            && !config.external.contains(&dep.name)
                        {
                            errors.push(GraphError::UndefinedSoftDependency {
                                job: graph[ix].name.clone(),
                                dependency: dep.name.clone(),
                                at,
                            });
                        }
                    }
                    None => errors.push(GraphError::MissingDependency {
                        job: graph[ix].name.clone(),
                        dependency: dep.name.clone(),
                        at,
                    }),
                }
            }
        }
        let g = JobGraph {
            project: project.to_string(),
            pipeline: pipeline.to_string(),
            graph,
            index,
            matchers_evaluated: false,
            not_matched: vec![],
            external: vec![],
            not_frozen: vec![],
        };
        for cycle in g.cycles() {
            let first = g.index[&cycle[0]];
            errors.push(GraphError::Cycle {
                path: cycle.join(" -> "),
                at: locs[first.index()].clone(),
            });
        }
        if errors.is_empty() {
            Ok(g)
        } else {
            Err(GraphErrors { errors })
        }
    }

    /// Each dependency cycle once, as a closed path of job names following "depends on"
    /// (`a -> b -> a`: a depends on b, b on a), starting at the job listed first.
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut out = vec![];
        for scc in petgraph::algo::tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
            let Some(&start) = members.iter().next() else {
                continue;
            };
            // Walk dependencies inside the component until we are back at the start.
            let mut path = vec![start];
            let mut seen = BTreeSet::from([start]);
            let mut cur = start;
            loop {
                let mut next_nodes: Vec<NodeIndex> = self
                    .graph
                    .neighbors_directed(cur, Direction::Incoming)
                    .filter(|n| members.contains(n))
                    .collect();
                next_nodes.sort();
                if next_nodes.contains(&start) {
                    path.push(start);
                    break;
                }
                match next_nodes.into_iter().find(|n| !seen.contains(n)) {
                    Some(n) => {
                        seen.insert(n);
                        path.push(n);
                        cur = n;
                    }
                    None => break,
                }
            }
            out.push(path.iter().map(|ix| self.graph[*ix].name.clone()).collect());
        }
        out.sort();
        out
    }

    /// The frozen jobs in configuration order.
    pub fn jobs(&self) -> impl Iterator<Item = &FrozenJob> {
        self.graph.node_indices().map(|ix| &self.graph[ix])
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn job(&self, name: &str) -> Option<&FrozenJob> {
        self.index.get(name).map(|ix| &self.graph[*ix])
    }

    /// Direct dependencies of `name` in the graph, in the order the job lists them:
    /// `(job, soft)`. Soft dependencies that are not in the graph are left out.
    pub fn dependencies(&self, name: &str) -> Vec<(&str, bool)> {
        let Some(&ix) = self.index.get(name) else {
            return vec![];
        };
        self.graph[ix]
            .dependencies
            .iter()
            .filter_map(|d| {
                self.index
                    .get_key_value(&d.name)
                    .map(|(k, _)| (k.as_str(), d.soft))
            })
            .collect()
    }

    /// Direct dependents of `name`: `(job, soft)`.
    pub fn dependents(&self, name: &str) -> Vec<(&str, bool)> {
        self.neighbours(name, Direction::Outgoing)
    }

    fn neighbours(&self, name: &str, dir: Direction) -> Vec<(&str, bool)> {
        // Only dependents use this; dependencies keep the job's own order.
        let Some(&ix) = self.index.get(name) else {
            return vec![];
        };
        let mut out: Vec<(NodeIndex, bool)> = self
            .graph
            .edges_directed(ix, dir)
            .map(|e| {
                use petgraph::visit::EdgeRef;
                let other = if dir == Direction::Incoming {
                    e.source()
                } else {
                    e.target()
                };
                (other, *e.weight())
            })
            .collect();
        out.sort_by_key(|(ix, _)| *ix);
        out.into_iter()
            .map(|(ix, soft)| (self.graph[ix].name.as_str(), soft))
            .collect()
    }

    /// Every job that depends on `name`, directly or not (through hard edges only when
    /// `hard_only`), in configuration order.
    pub fn dependents_recursive(&self, name: &str, hard_only: bool) -> Vec<&str> {
        let Some(&start) = self.index.get(name) else {
            return vec![];
        };
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(ix) = todo.pop() {
            for e in self.graph.edges_directed(ix, Direction::Outgoing) {
                use petgraph::visit::EdgeRef;
                if hard_only && *e.weight() {
                    continue;
                }
                if seen.insert(e.target()) {
                    todo.push(e.target());
                }
            }
        }
        seen.remove(&start);
        seen.into_iter()
            .map(|ix| self.graph[ix].name.as_str())
            .collect()
    }

    /// Jobs that may start now: not started, and every dependency (recursively) is
    /// SUCCESS, PAUSED or SKIPPED (a skipped soft dependency does not hold a job back;
    /// a skipped hard dependency has already skipped its dependents).
    pub fn ready(&self, states: &HashMap<String, BuildState>) -> Vec<&str> {
        let satisfied = |ix: NodeIndex| {
            matches!(
                states.get(&self.graph[ix].name),
                Some(
                    BuildState::Paused
                        | BuildState::Completed(BuildResult::Success | BuildResult::Skipped)
                )
            )
        };
        // "Every dependency, recursively, is satisfied", memoised so that the whole call is
        // linear in jobs + edges (Zuul walks the ancestors of each job anew).
        let mut memo: Vec<Option<bool>> = vec![None; self.graph.node_count()];
        let mut ancestors_ok = |start: NodeIndex| -> bool {
            let mut stack = vec![(start, false)];
            while let Some((ix, expanded)) = stack.pop() {
                if memo[ix.index()].is_some() {
                    continue;
                }
                let deps: Vec<NodeIndex> = self
                    .graph
                    .neighbors_directed(ix, Direction::Incoming)
                    .collect();
                if expanded {
                    let ok = deps
                        .iter()
                        .all(|d| satisfied(*d) && memo[d.index()] == Some(true));
                    memo[ix.index()] = Some(ok);
                } else {
                    stack.push((ix, true));
                    // Unsatisfied dependencies decide the answer without looking further.
                    stack.extend(
                        deps.into_iter()
                            .filter(|d| satisfied(*d))
                            .map(|d| (d, false)),
                    );
                }
            }
            memo[start.index()] == Some(true)
        };
        let mut out = vec![];
        for ix in self.graph.node_indices() {
            if states.contains_key(&self.graph[ix].name) {
                continue;
            }
            if ancestors_ok(ix) {
                out.push(self.graph[ix].name.as_str());
            }
        }
        out
    }
}
