//! A trial run of every project pipeline of a loaded configuration.
//!
//! Owns: freezing and graph errors of every pipeline every project stanza lists, and jobs
//! that would fail as soon as they start (abstract, no run playbook), as configuration
//! errors with a position. Sits above `config`, `freeze` and `graph` (it uses all three; none
//! of them uses it). Must not: read files or run anything.

use std::collections::BTreeSet;

use crate::job::config::{Config, ConfigError, Loc, sort_errors};
use crate::job::freeze::FreezeError;
use crate::job::graph::{GraphError, JobGraph};

/// A trial run of every project pipeline of a loaded configuration: freezing and graph
/// errors, and jobs that would fail as soon as they are started (abstract, no run
/// playbook). `config validate` reports these with the load errors; `job graph` reports
/// only those of the pipeline it builds.
pub fn check_pipelines(config: &Config) -> Vec<ConfigError> {
    let mut errors = vec![];
    // The project under test and the projects its own files configure; stanzas of tenant
    // repositories about other projects are not checked.
    let projects: Vec<String> = config
        .project_names()
        .into_iter()
        .filter(|p| {
            *p == config.project_name
                || config.projects.iter().any(|s| {
                    s.name.as_deref() == Some(p.as_str())
                        && config.origin_of(&s.loc.file) == crate::job::config::Origin::Project
                })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for project in &projects {
        for pipeline in config.project_pipelines(project) {
            match JobGraph::build(config, project, &pipeline) {
                Ok(graph) => {
                    for job in graph.jobs() {
                        if let Some(message) = job.run_error() {
                            let at = first_listing(config, project, &pipeline, &job.name);
                            let e = ConfigError {
                                loc: at,
                                stanza: format!("project \"{project}\" pipeline \"{pipeline}\""),
                                message,
                            };
                            if seen.insert(e.clone()) {
                                errors.push(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    for error in e.errors {
                        if let GraphError::Freeze {
                            error: FreezeError::External { .. },
                            ..
                        } = &error
                        {
                            continue;
                        }
                        if let GraphError::Freeze {
                            error: FreezeError::NotDefined { job, .. },
                            ..
                        } = &error
                            && config.external.contains(job)
                        {
                            continue;
                        }
                        let at = error.loc().cloned().unwrap_or_else(|| Loc {
                            file: "".into(),
                            line: 0,
                            column: 0,
                        });
                        let e = ConfigError {
                            loc: at,
                            stanza: format!("project \"{project}\" pipeline \"{pipeline}\""),
                            message: error.to_string(),
                        };
                        if seen.insert(e.clone()) {
                            errors.push(e);
                        }
                    }
                }
            }
        }
    }
    sort_errors(config, &mut errors);
    errors
}

fn first_listing(config: &Config, project: &str, pipeline: &str, job: &str) -> Loc {
    for p in config.project_stanzas(project) {
        let templates = p
            .templates
            .iter()
            .filter_map(|(t, _)| config.templates.get(t));
        for stanza in templates.chain(std::iter::once(p)) {
            if let Some(pj) = stanza
                .pipelines
                .get(pipeline)
                .and_then(|pl| pl.jobs.iter().find(|j| j.name == job))
            {
                return pj.loc.clone();
            }
        }
    }
    Loc {
        file: "".into(),
        line: 0,
        column: 0,
    }
}
