//! The `project` and `project-template` stanzas.
//!
//! Owns: which jobs a project runs in which pipeline, with project-local job variants.
//! Must not: resolve job names (that is `validate` and `job::graph`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::check::Checker;
use super::job::{JobDef, parse_job};
use super::{Loc, Source};
use crate::text::yaml::{Node, Value};

/// Keys of a project stanza that are not pipeline names.
const PROJECT_KEYS: &[&str] = &[
    "name",
    "description",
    "branches",
    "vars",
    "templates",
    "merge-mode",
    "default-branch",
    "queue",
];
const TEMPLATE_KEYS: &[&str] = &["name", "description", "queue", "vars"];
const PIPELINE_KEYS: &[&str] = &["jobs", "debug", "fail-fast", "queue"];

/// A `project` or `project-template` stanza.
#[derive(Debug)]
pub struct ProjectDef {
    /// `None`: the project the file belongs to.
    pub name: Option<String>,
    pub loc: Loc,
    pub templates: Vec<(String, Loc)>,
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub queue: Option<String>,
    pub pipelines: BTreeMap<String, PipelineJobs>,
}

/// The jobs of one project (or template) in one pipeline.
#[derive(Debug)]
pub struct PipelineJobs {
    pub loc: Loc,
    pub jobs: Vec<ProjectJob>,
    pub fail_fast: Option<bool>,
}

/// One entry under `jobs:`: a job name, with an optional project-pipeline variant.
#[derive(Debug)]
pub struct ProjectJob {
    pub name: String,
    pub loc: Loc,
    pub variant: Option<Arc<JobDef>>,
}

pub(crate) fn parse_project(
    ck: &mut Checker<'_>,
    node: &Node,
    source: &Arc<Source>,
    template: bool,
) -> Option<ProjectDef> {
    let Value::Map(entries) = &node.value else {
        ck.error(
            node.mark,
            format!("a {} must be a mapping, found {}", ck.stanza, node.kind()),
        );
        return None;
    };
    // Every key that is not a known project key names a pipeline, so "fields" cannot catch
    // typos here; known keys are checked by type and pipelines by their own keys.
    let mut project = ProjectDef {
        name: None,
        loc: ck.loc(node.mark),
        templates: vec![],
        vars: serde_json::Map::new(),
        queue: None,
        pipelines: BTreeMap::new(),
    };
    let known = if template {
        TEMPLATE_KEYS
    } else {
        PROJECT_KEYS
    };
    if let Some((_, v)) = entries.iter().find(|(k, _)| k.as_str() == Some("name")) {
        project.name = ck.string(v, "name");
        if let Some(name) = &project.name {
            let kind = if template {
                "project-template"
            } else {
                "project"
            };
            ck.stanza = format!("{kind} \"{name}\"");
        }
    } else if template {
        ck.error(node.mark, "a project-template needs a \"name\"");
    }
    let mut seen: Vec<&str> = vec![];
    for (k, v) in entries {
        let Some(key) = k.as_str() else {
            ck.error(k.mark, format!("keys must be strings, found {}", k.kind()));
            continue;
        };
        if seen.contains(&key) {
            ck.error(k.mark, format!("duplicate attribute \"{key}\""));
            continue;
        }
        seen.push(key);
        match key {
            "name" => {}
            "vars" => {
                if let Some(map) = ck.vars(v, "vars") {
                    project.vars = map;
                }
            }
            "templates" => {
                for item in ck.items(v) {
                    if let Some(t) = ck.string(item, "templates") {
                        project.templates.push((t, ck.loc(item.mark)));
                    }
                }
            }
            "queue" => project.queue = ck.string(v, "queue"),
            "description" | "default-branch" | "merge-mode" => {
                ck.string(v, key);
            }
            "branches" => {
                ck.items(v);
            }
            _ if PROJECT_KEYS.contains(&key) && !known.contains(&key) => {
                ck.error(
                    k.mark,
                    format!("\"{key}\" is not allowed in a project-template"),
                );
            }
            pipeline => {
                let label = format!("{} pipeline \"{pipeline}\"", ck.stanza);
                let saved = std::mem::replace(&mut ck.stanza, label);
                let parsed = parse_pipeline(ck, v, source);
                ck.stanza = saved;
                if let Some(jobs) = parsed {
                    project.pipelines.insert(pipeline.to_string(), jobs);
                }
            }
        }
    }
    Some(project)
}

fn parse_pipeline(ck: &mut Checker<'_>, node: &Node, source: &Arc<Source>) -> Option<PipelineJobs> {
    let fields = ck.fields(node, "a project pipeline", PIPELINE_KEYS)?;
    let mut out = PipelineJobs {
        loc: ck.loc(node.mark),
        jobs: vec![],
        fail_fast: None,
    };
    for (key, _, v) in fields {
        match key {
            "jobs" => {
                ck.no_tag(v, "jobs");
                let items: Vec<&Node> = match &v.value {
                    Value::Seq(items) => items.iter().collect(),
                    Value::Null => vec![],
                    _ => {
                        ck.error(
                            v.mark,
                            format!("\"jobs\" must be a list, found {}", v.kind()),
                        );
                        continue;
                    }
                };
                for item in items {
                    if let Some(job) = parse_pipeline_job(ck, item, source) {
                        out.jobs.push(job);
                    }
                }
            }
            "fail-fast" => out.fail_fast = ck.boolean(v, key),
            "queue" => {
                // Removed from project pipelines in Zuul 10; project-config-era trees still
                // carry it. Accepted so they load, with the modern spelling suggested.
                ck.string(v, key);
                ck.warn(
                    v.mark,
                    "\"queue\" inside a project pipeline is deprecated (removed in Zuul 10): set \"queue\" on the project instead",
                );
            }
            _ => {
                ck.boolean(v, key);
            }
        }
    }
    Some(out)
}

fn parse_pipeline_job(
    ck: &mut Checker<'_>,
    item: &Node,
    source: &Arc<Source>,
) -> Option<ProjectJob> {
    match &item.value {
        Value::Str(name) => Some(ProjectJob {
            name: name.clone(),
            loc: ck.loc(item.mark),
            variant: None,
        }),
        Value::Map(entries) if entries.len() == 1 => {
            let (k, v) = &entries[0];
            let name = ck.string(k, "job name")?;
            let variant = if v.is_null() {
                None
            } else {
                let label = format!("{} job \"{name}\"", ck.stanza);
                let saved = std::mem::replace(&mut ck.stanza, label);
                let parsed = parse_job(ck, v, source, Some((&name, k)));
                ck.stanza = saved;
                parsed.map(Arc::new)
            };
            Some(ProjectJob {
                name,
                loc: ck.loc(k.mark),
                variant,
            })
        }
        Value::Map(_) => {
            ck.error(
                item.mark,
                "a job entry must be a job name or a mapping with exactly one job name",
            );
            None
        }
        _ => {
            ck.error(
                item.mark,
                format!(
                    "a job entry must be a job name or a mapping, found {}",
                    item.kind()
                ),
            );
            None
        }
    }
}
