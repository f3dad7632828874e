//! The job graph of one project in one pipeline (ZUUL.md §6).
//!
//! Owns: which jobs a project runs in a pipeline (templates first, then the project's own
//! entries; repeated entries become extra project-pipeline variants), freezing them, the
//! dependency edges (hard and soft), cycle and missing-dependency errors, readiness given
//! build states, and which dependents to skip after a result. Must not: run anything, know
//! about time, or decide about `requires` (see `job::queue`).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use serde_json::Map;

use crate::job::config::{Config, Loc};
use crate::job::freeze::{FreezeError, FrozenJob, PipelineContext, deep_update, freeze};
use crate::job::queue::BuildResult;

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
}

impl GraphError {
    pub fn loc(&self) -> Option<&Loc> {
        match self {
            GraphError::Freeze { error, .. } => error.loc(),
            GraphError::MissingDependency { at, .. }
            | GraphError::UndefinedSoftDependency { at, .. }
            | GraphError::Cycle { at, .. } => Some(at),
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
}

/// One job a project lists in a pipeline, with what the project pipeline adds to it.
#[derive(Debug, Clone)]
pub struct ListedJob<'c> {
    pub name: String,
    /// Where it is first listed.
    pub at: Loc,
    pub ctx: PipelineContext<'c>,
}

/// The jobs a project lists in a pipeline, in order: templates' entries first, then the
/// project's own; a job listed again adds a project-pipeline variant. Every entry carries
/// the project vars (templates' first, then the project's).
pub fn pipeline_jobs<'c>(
    config: &'c Config,
    project: &str,
    pipeline: &str,
) -> Result<Vec<ListedJob<'c>>, FreezeError> {
    let mut order: Vec<ListedJob<'c>> = vec![];
    let mut vars = Map::new();
    let mut vars_from = vec![];
    let add = |pj: &'c crate::job::config::ProjectJob, order: &mut Vec<ListedJob<'c>>| {
        let ix = match order.iter().position(|l| l.name == pj.name) {
            Some(ix) => ix,
            None => {
                order.push(ListedJob {
                    name: pj.name.clone(),
                    at: pj.loc.clone(),
                    ctx: PipelineContext::default(),
                });
                order.len() - 1
            }
        };
        if let Some(v) = &pj.variant {
            order[ix].ctx.variants.push(v);
        }
    };
    for stanza in config.project_stanzas(project) {
        for (template, at) in &stanza.templates {
            let Some(t) = config.templates.get(template) else {
                if config.external.iter().any(|e| e == template) {
                    continue;
                }
                return Err(FreezeError::TemplateNotDefined {
                    template: template.clone(),
                    at: at.clone(),
                });
            };
            if !t.vars.is_empty() {
                vars = deep_update(&vars, &t.vars);
                vars_from.push(t.loc.clone());
            }
            if let Some(p) = t.pipelines.get(pipeline) {
                for pj in &p.jobs {
                    add(pj, &mut order);
                }
            }
        }
        if !stanza.vars.is_empty() {
            vars = deep_update(&vars, &stanza.vars);
            vars_from.push(stanza.loc.clone());
        }
        if let Some(p) = stanza.pipelines.get(pipeline) {
            for pj in &p.jobs {
                add(pj, &mut order);
            }
        }
    }
    for entry in &mut order {
        entry.ctx.project_vars = vars.clone();
        entry.ctx.project_vars_from = vars_from.clone();
    }
    Ok(order)
}

impl JobGraph {
    /// Freeze every job `project` runs in `pipeline` and connect them. All errors are
    /// returned together.
    pub fn build(config: &Config, project: &str, pipeline: &str) -> Result<JobGraph, GraphErrors> {
        let jobs = pipeline_jobs(config, project, pipeline).map_err(|error| GraphErrors {
            errors: vec![GraphError::Freeze {
                job: String::new(),
                error,
            }],
        })?;
        let mut errors = vec![];
        let mut frozen = vec![];
        for ListedJob { name, at, ctx } in &jobs {
            match freeze(config, name, ctx) {
                Ok(job) => frozen.push((job, at.clone())),
                Err(error) => {
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
            .collect();
        let graph = JobGraph::from_frozen(project, pipeline, frozen, config, &failed);
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
    /// are reported for depending on them).
    fn from_frozen(
        project: &str,
        pipeline: &str,
        jobs: Vec<(FrozenJob, Loc)>,
        config: &Config,
        unfrozen: &BTreeSet<String>,
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
                        if !config.jobs.contains_key(&dep.name)
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

    /// What the ancestors of `job` returned, as Zuul hands it to a starting build
    /// (`getJobParentData`): every dependency, recursively, that returned data, taken in
    /// configuration order.
    /// - `data`: deep-merged, a later job winning; the `zuul`, `nodepool` and
    ///   `unsafe_vars` keys are removed.
    /// - `secret_data`: deep-merged with the *earlier* job winning (Zuul's order), `zuul`
    ///   removed.
    /// - `artifacts`: `requires` artifacts (from [`crate::job::queue`]) first, then each
    ///   ancestor's `zuul.artifacts`, enriched with `project, job, branch, change,
    ///   patchset`, without duplicates.
    pub fn parent_data(
        &self,
        job: &str,
        returned: &HashMap<String, Returned>,
        item: &ItemRef,
        requires_artifacts: Vec<serde_json::Value>,
    ) -> ParentData {
        let mut out = ParentData {
            data: Map::new(),
            secret_data: Map::new(),
            artifacts: requires_artifacts,
        };
        let Some(&start) = self.index.get(job) else {
            return out;
        };
        let mut ancestors = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(ix) = todo.pop() {
            for dep in self.graph.neighbors_directed(ix, Direction::Incoming) {
                if ancestors.insert(dep) {
                    todo.push(dep);
                }
            }
        }
        for ix in ancestors {
            let name = &self.graph[ix].name;
            let Some(r) = returned.get(name) else {
                continue;
            };
            out.data = deep_update(&out.data, &r.data);
            for k in ["zuul", "nodepool", "unsafe_vars"] {
                out.data.remove(k);
            }
            out.secret_data = deep_update(&r.secret_data, &out.secret_data);
            out.secret_data.remove("zuul");
            for a in crate::job::queue::artifacts_in(&r.data) {
                let mut m = serde_json::Map::new();
                m.insert("name".into(), a.name.into());
                m.insert("url".into(), a.url.into());
                if let Some(meta) = a.metadata {
                    m.insert("metadata".into(), meta);
                }
                m.insert("project".into(), item.project.clone().into());
                m.insert("job".into(), name.clone().into());
                if let Some(b) = &item.branch {
                    m.insert("branch".into(), b.clone().into());
                }
                if let (Some(c), Some(p)) = (&item.change, &item.patchset) {
                    m.insert("change".into(), c.clone().into());
                    m.insert("patchset".into(), p.clone().into());
                }
                let a = serde_json::Value::Object(m);
                if !out.artifacts.contains(&a) {
                    out.artifacts.push(a);
                }
            }
        }
        out
    }

    /// Which dependents to skip once `job` has a result (Zuul's `setResult`):
    /// - SUCCESS or paused with `zuul.child_jobs` returned: an empty list skips every
    ///   dependent reachable through hard edges; a list skips the direct dependents it does
    ///   not name, and theirs (hard edges);
    /// - any result but SUCCESS and SKIPPED (not paused): every dependent, recursively.
    pub fn to_skip(
        &self,
        job: &str,
        result: Option<BuildResult>,
        paused: bool,
        child_jobs: Option<&[String]>,
    ) -> Option<Skip> {
        let ok = result == Some(BuildResult::Success) || paused;
        if ok && let Some(children) = child_jobs {
            let reason = format!("Skipped due to child_jobs return value in job {job}");
            let mut jobs: Vec<&str> = vec![];
            if children.is_empty() {
                jobs = self.dependents_recursive(job, true);
            } else {
                for (dep, _) in self.dependents(job) {
                    if children.iter().any(|c| c == dep) {
                        continue;
                    }
                    jobs.push(dep);
                    jobs.extend(self.dependents_recursive(dep, true));
                }
            }
            return self.skip_list(jobs, reason);
        }
        if !ok && result.is_some() && result != Some(BuildResult::Skipped) {
            let reason = format!("Skipped due to failed job {job}");
            return self.skip_list(self.dependents_recursive(job, false), reason);
        }
        None
    }

    fn skip_list(&self, jobs: Vec<&str>, reason: String) -> Option<Skip> {
        let set: BTreeSet<&str> = jobs.into_iter().collect();
        if set.is_empty() {
            return None;
        }
        let jobs = self
            .graph
            .node_indices()
            .map(|ix| self.graph[ix].name.as_str())
            .filter(|n| set.contains(n))
            .map(str::to_string)
            .collect();
        Some(Skip { jobs, reason })
    }

    /// An indented tree: roots (no dependencies) first; each job under the jobs it depends
    /// on; a job already printed is shown as `name (see above)`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} pipeline of {}: {} job{}",
            self.pipeline,
            self.project,
            self.len(),
            if self.len() == 1 { "" } else { "s" }
        );
        let mut printed = BTreeSet::new();
        for ix in self.graph.node_indices() {
            if self
                .graph
                .neighbors_directed(ix, Direction::Incoming)
                .next()
                .is_none()
            {
                self.text_node(ix, 0, None, &mut printed, &mut out);
            }
        }
        out
    }

    fn text_node(
        &self,
        ix: NodeIndex,
        depth: usize,
        soft: Option<bool>,
        printed: &mut BTreeSet<NodeIndex>,
        out: &mut String,
    ) {
        let job = &self.graph[ix];
        let indent = "  ".repeat(depth);
        let soft = if soft == Some(true) { " (soft)" } else { "" };
        if !printed.insert(ix) {
            let _ = writeln!(out, "{indent}{}{soft} (see above)", job.name);
            return;
        }
        let mut notes = vec![];
        if !job.voting {
            notes.push("non-voting".to_string());
        }
        if !job.provides.is_empty() {
            notes.push(format!(
                "provides: {}",
                job.provides.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !job.requires.is_empty() {
            notes.push(format!(
                "requires: {}",
                job.requires.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(e) = job.run_error() {
            notes.push(format!("error: {e}"));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  [{}]", notes.join("; "))
        };
        let _ = writeln!(out, "{indent}{}{soft}{notes}", job.name);
        let mut children: Vec<(NodeIndex, bool)> = self
            .graph
            .edges_directed(ix, Direction::Outgoing)
            .map(|e| {
                use petgraph::visit::EdgeRef;
                (e.target(), *e.weight())
            })
            .collect();
        children.sort_by_key(|(c, _)| *c);
        for (child, soft) in children {
            self.text_node(child, depth + 1, Some(soft), printed, out);
        }
    }

    /// Graphviz: edges from dependency to dependent, soft ones dashed.
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "digraph \"{} {}\" {{",
            escape(&self.project),
            escape(&self.pipeline)
        );
        let _ = writeln!(out, "  rankdir=LR;\n  node [shape=box];");
        for ix in self.graph.node_indices() {
            let job = &self.graph[ix];
            let style = if job.voting { "" } else { ", style=dashed" };
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}\"{style}];",
                escape(&job.name),
                escape(&job.name)
            );
        }
        for e in self.graph.edge_indices() {
            if let Some((a, b)) = self.graph.edge_endpoints(e) {
                let style = if self.graph[e] { " [style=dashed]" } else { "" };
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\"{style};",
                    escape(&self.graph[a].name),
                    escape(&self.graph[b].name)
                );
            }
        }
        out.push_str("}\n");
        out
    }

    /// `{project, pipeline, jobs: [{name, dependencies: [{name, soft}], provides, requires,
    /// voting, error}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let jobs: Vec<serde_json::Value> = self
            .jobs()
            .map(|job| {
                let deps: Vec<serde_json::Value> = self
                    .dependencies(&job.name)
                    .into_iter()
                    .map(|(n, soft)| serde_json::json!({"name": n, "soft": soft}))
                    .collect();
                serde_json::json!({
                    "name": job.name,
                    "dependencies": deps,
                    "provides": job.provides,
                    "requires": job.requires,
                    "voting": job.voting,
                    "error": job.run_error(),
                })
            })
            .collect();
        serde_json::json!({"project": self.project, "pipeline": self.pipeline, "jobs": jobs})
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
