//! `gantry job …`: look at frozen jobs and job graphs.
use std::fmt::Write as _;
use std::time::Instant;

use clap::{Subcommand, ValueEnum};

use super::config::{ConfigArgs, MatchArgs};
use super::{CliError, Exit, UsageExt};
use crate::job::graph::pipeline_jobs;
use crate::job::{self, FrozenJob, JobGraph};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Print the job graph a project runs in a pipeline.
    ///
    /// Example: gantry job graph --pipeline gate --format dot . | dot -Tsvg > gate.svg
    Graph {
        /// Pipeline to build the graph for (check, gate, promote, …).
        #[arg(long)]
        pipeline: String,
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
        /// Same as --format json.
        #[arg(long)]
        json: bool,
        /// Print the time each phase took to stderr.
        #[arg(long, hide = true)]
        timings: bool,
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        change: MatchArgs,
    },
    /// Print a frozen job and, for each attribute, the definitions (file:line) it came from.
    ///
    /// Example: gantry job show yoursite-upload-docker-image --pipeline gate
    Show {
        /// Job name.
        name: String,
        /// Apply the project's variants and vars for this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Print the frozen job as JSON.
        #[arg(long)]
        json: bool,
        /// Freeze for this branch: only the variants (and project-pipeline entries) whose
        /// `branches` match it apply (default: every variant).
        #[arg(long)]
        branch: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn run(cmd: JobCommand) -> Result<Exit, CliError> {
    match cmd {
        JobCommand::Graph {
            pipeline,
            format,
            json,
            timings,
            config,
            change,
        } => {
            let t0 = Instant::now();
            let cfg = config.load()?;
            let t_load = t0.elapsed();
            let project = config
                .project
                .clone()
                .unwrap_or_else(|| cfg.project_name.clone());
            let t1 = Instant::now();
            let change = change.change(&config.dir)?;
            let graph = if config.allow_external {
                JobGraph::build_partial(&cfg, &project, &pipeline, &change)
            } else {
                JobGraph::build_for(&cfg, &project, &pipeline, &change)
            }
            .usage()?;
            if !graph.matchers_evaluated {
                eprintln!(
                    "note: files and irrelevant-files were not evaluated (no --changed-file or --diff-base)"
                );
            }
            let t_graph = t1.elapsed();
            let format = if json { GraphFormat::Json } else { format };
            match format {
                GraphFormat::Text => print!("{}", graph.to_text()),
                GraphFormat::Dot => print!("{}", graph.to_dot()),
                GraphFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&graph.to_json())?)
                }
            }
            if timings {
                eprintln!(
                    "timings: load {:.1} ms, freeze+graph {:.1} ms, {} jobs",
                    t_load.as_secs_f64() * 1e3,
                    t_graph.as_secs_f64() * 1e3,
                    graph.len()
                );
            }
            Ok(Exit::Success)
        }
        JobCommand::Show {
            name,
            pipeline,
            json,
            branch,
            config,
        } => {
            let cfg = config.load()?;
            if cfg.job(&name).is_none() {
                let hint =
                    crate::text::suggest::hint(&name, cfg.job_order.iter().map(String::as_str));
                return Err(anyhow::anyhow!("Job {name} not defined{hint}")).usage();
            }
            let frozen = match &pipeline {
                None => {
                    let ctx = job::freeze::PipelineContext {
                        branch: branch.clone(),
                        ..Default::default()
                    };
                    job::freeze(&cfg, &name, &ctx).usage()?
                }
                Some(p) => {
                    let project = config
                        .project
                        .clone()
                        .unwrap_or_else(|| cfg.project_name.clone());
                    let listed = pipeline_jobs(&cfg, &project, p).usage()?;
                    let Some(entry) = listed.into_iter().find(|l| l.name == name) else {
                        return Err(anyhow::anyhow!(
                            "project {project} does not run job {name} in pipeline {p}"
                        ))
                        .usage();
                    };
                    let mut ctx = entry.ctx;
                    ctx.branch = branch.clone();
                    job::freeze(&cfg, &name, &ctx).usage()?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&frozen)?);
            } else {
                print!("{}", show_text(&frozen));
            }
            Ok(Exit::Success)
        }
    }
}

/// The frozen job as YAML-like text, each attribute followed by where it came from.
pub fn show_text(job: &FrozenJob) -> String {
    let mut out = String::new();
    let from = |attr: &str| -> String {
        match job.provenance.get(attr) {
            Some(locs) if !locs.is_empty() => {
                let l: Vec<String> = locs.iter().map(|l| l.short()).collect();
                format!("  # from {}", l.join(", "))
            }
            _ => "  # default".to_string(),
        }
    };
    let _ = writeln!(out, "job: {}", job.name);
    let _ = writeln!(out, "inheritance:");
    for step in &job.inheritance {
        let _ = writeln!(out, "  - {step}");
    }
    if let Some(d) = &job.description {
        let first = d.lines().next().unwrap_or_default();
        let _ = writeln!(out, "description: {first}{}", from("description"));
    }
    for (attr, value) in [
        ("abstract", job.abstract_),
        ("final", job.final_),
        ("protected", job.protected),
        ("voting", job.voting),
    ] {
        let _ = writeln!(out, "{attr}: {value}{}", from(attr));
    }
    for (attr, pbs) in [
        ("pre-run", &job.pre_run),
        ("run", &job.run),
        ("post-run", &job.post_run),
        ("cleanup-run", &job.cleanup_run),
    ] {
        if pbs.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{attr}:");
        for pb in pbs {
            let secrets: Vec<String> = pb
                .secrets
                .iter()
                .map(|s| {
                    if s.name == s.secret {
                        s.name.clone()
                    } else {
                        format!("{}={}", s.name, s.secret)
                    }
                })
                .collect();
            let secrets = if secrets.is_empty() {
                String::new()
            } else {
                format!("; secrets: {}", secrets.join(", "))
            };
            let cleanup = if pb.cleanup { "; cleanup" } else { "" };
            let _ = writeln!(
                out,
                "  - {}  # from {} ({}, level {}{cleanup}{secrets})",
                pb.path,
                pb.defined_in.short(),
                pb.job,
                pb.nesting_level
            );
        }
    }
    let json = |v: &serde_json::Value| serde_json::to_string(v).unwrap_or_default();
    for (attr, map) in [
        ("vars", &job.vars),
        ("extra-vars", &job.extra_vars),
        ("host-vars", &job.host_vars),
        ("group-vars", &job.group_vars),
    ] {
        if !map.is_empty() {
            let _ = writeln!(
                out,
                "{attr}: {}{}",
                json(&serde_json::Value::Object(map.clone())),
                from(attr)
            );
        }
    }
    let list = |v: &mut dyn Iterator<Item = &String>| v.cloned().collect::<Vec<_>>().join(", ");
    let matchers = |v: &[crate::job::matchers::Matcher]| {
        v.iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (attr, items) in [
        ("provides", list(&mut job.provides.iter())),
        ("requires", list(&mut job.requires.iter())),
        ("tags", list(&mut job.tags.iter())),
        ("files", matchers(&job.files)),
        ("irrelevant-files", matchers(&job.irrelevant_files)),
        ("branches", matchers(&job.branches)),
        ("semaphores", list(&mut job.semaphores.iter())),
    ] {
        if !items.is_empty() {
            let _ = writeln!(out, "{attr}: [{items}]{}", from(attr));
        }
    }
    if !job.dependencies.is_empty() {
        let deps: Vec<String> = job
            .dependencies
            .iter()
            .map(|d| {
                if d.soft {
                    format!("{} (soft)", d.name)
                } else {
                    d.name.clone()
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "dependencies: [{}]{}",
            deps.join(", "),
            from("dependencies")
        );
    }
    let _ = writeln!(out, "attempts: {}{}", job.attempts, from("attempts"));
    for (attr, v) in [
        ("timeout", job.timeout),
        ("pre-timeout", job.pre_timeout),
        ("post-timeout", job.post_timeout),
    ] {
        if let Some(v) = v {
            let _ = writeln!(out, "{attr}: {v}{}", from(attr));
        }
    }
    if let Some(ns) = &job.nodeset {
        let _ = writeln!(out, "nodeset: {}{}", json(ns), from("nodeset"));
    }
    if !job.roles.is_empty() {
        let _ = writeln!(
            out,
            "roles: {}{}",
            json(&serde_json::Value::from(job.roles.clone())),
            from("roles")
        );
    }
    if !job.required_projects.is_empty() {
        let v = serde_json::Value::from(job.required_projects.clone());
        let _ = writeln!(
            out,
            "required-projects: {}{}",
            json(&v),
            from("required-projects")
        );
    }
    for (k, v) in &job.other {
        let _ = writeln!(out, "{k}: {}{}  (not used by gantry)", json(v), from(k));
    }
    if let Some(e) = job.run_error() {
        let _ = writeln!(out, "error: {e}");
    }
    out
}
