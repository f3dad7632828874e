//! Which jobs a project lists in a pipeline (ZUUL.md §5): templates' entries first, then the
//! project's own; a job listed again adds a project-pipeline variant.
//!
//! Must not: freeze jobs (the graph does that with what is listed here).

use serde_json::Map;

use crate::job::config::{Config, Loc};
use crate::job::freeze::{FreezeError, PipelineContext, deep_update};

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
