//! What a result does to the rest of the graph (ZUUL.md §6): data and artifacts handed from
//! ancestors to a starting build, and the dependents skipped after a result.
//!
//! Must not: decide readiness (`JobGraph::ready`) or look at other changes (`job::queue`).

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;
use serde_json::Map;

use super::{ItemRef, JobGraph, ParentData, Returned, Skip};
use crate::job::freeze::deep_update;
use crate::job::queue::BuildResult;

impl JobGraph {
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
}
