//! The graph for people and tools: an indented text tree, Graphviz, JSON.
//!
//! Must not: change the graph.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::NodeIndex;

use super::JobGraph;

impl JobGraph {
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
        if !self.not_frozen.is_empty() {
            let _ = writeln!(
                out,
                "{} not frozen: defined, or an ancestor defined, in a repository not given (--allow-external)",
                self.not_frozen.len()
            );
        }
        if !self.not_matched.is_empty() {
            let _ = writeln!(
                out,
                "not run for this change (files, irrelevant-files, branches): {}",
                self.not_matched.join(", ")
            );
        }
        let mut printed = BTreeSet::new();
        // Each external ancestor once, over the listed jobs that need it and, under those,
        // the frozen jobs that depend on them.
        for ext in &self.external {
            let _ = writeln!(
                out,
                "{}  [external: defined in no given repository]",
                ext.name
            );
            for job in &ext.needed_by {
                // A listed job that is itself external is the external node.
                let depth = if *job == ext.name {
                    1
                } else {
                    let _ = writeln!(out, "  {job}  [not frozen]");
                    2
                };
                for (child, soft) in self.dependents_of_unfrozen(job) {
                    self.text_node(child, depth, Some(soft), &mut printed, &mut out);
                }
            }
        }
        for ix in self.graph.node_indices() {
            if printed.contains(&ix) {
                continue;
            }
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

    /// Frozen jobs that list `name` (a job not in the graph) as a dependency: `(job, soft)`.
    fn dependents_of_unfrozen(&self, name: &str) -> Vec<(NodeIndex, bool)> {
        self.graph
            .node_indices()
            .filter_map(|ix| {
                self.graph[ix]
                    .dependencies
                    .iter()
                    .find(|d| d.name == name)
                    .map(|d| (ix, d.soft))
            })
            .collect()
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
        for ext in &self.external {
            let name = escape(&ext.name);
            let _ = writeln!(
                out,
                "  \"{name}\" [label=\"{name}\\n(external)\", style=dotted];"
            );
            for job in ext.needed_by.iter().filter(|j| **j != ext.name) {
                let job = escape(job);
                let _ = writeln!(
                    out,
                    "  \"{job}\" [label=\"{job}\\n(not frozen)\", style=\"dashed,filled\", fillcolor=lightgrey];"
                );
                let _ = writeln!(out, "  \"{name}\" -> \"{job}\" [style=dotted];");
            }
        }
        for job in &self.not_frozen {
            for (child, soft) in self.dependents_of_unfrozen(job) {
                let style = if soft { " [style=dashed]" } else { "" };
                let _ = writeln!(
                    out,
                    "  \"{}\" -> \"{}\"{style};",
                    escape(job),
                    escape(&self.graph[child].name)
                );
            }
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
    /// voting, error}]}`, plus `external: [{name, needed_by}]` and `not_frozen` for a
    /// partial graph.
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
        let mut v =
            serde_json::json!({"project": self.project, "pipeline": self.pipeline, "jobs": jobs});
        if !self.external.is_empty() {
            v["external"] = serde_json::json!(self.external);
            v["not_frozen"] = serde_json::json!(self.not_frozen);
        }
        v
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
