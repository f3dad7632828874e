//! Cross-stanza checks, run once every file is parsed.
//!
//! Owns: references between stanzas (parents, secrets, templates, jobs in pipelines),
//! shadowing of library jobs, conflicting variants and inheritance cycles. Must not:
//! decrypt secrets, require playbook files to exist, or freeze jobs (the trial freeze of
//! every pipeline is `job::pipelines`, which sits above `config`, `freeze` and `graph`).

use std::collections::BTreeSet;

use super::{Config, ConfigError, LoadOptions, Loc, Origin};
use crate::text::suggest;

/// Zuul's tenant rules for jobs defined in more than one repository, applied before any
/// check: a tenant repository's definition replaces gantry's shipped one (zuul-jobs defines
/// `build-container-image` itself); of two tenant repositories the first one's definitions
/// win and the later ones are dropped with a warning (Zuul's `shadow`).
fn resolve_shadowing(config: &mut Config) {
    for name in &config.job_order {
        let Some(variants) = config.jobs.get_mut(name) else {
            continue;
        };
        if variants.iter().any(|v| v.source.origin == Origin::Repo) {
            variants.retain(|v| v.source.origin != Origin::Library);
        }
        let Some(first_repo) = variants
            .iter()
            .find(|v| v.source.origin == Origin::Repo)
            .map(|v| (v.source.repo.clone(), v.loc.clone()))
        else {
            continue;
        };
        let mut dropped: Vec<Loc> = vec![];
        variants.retain(|v| {
            let keep = v.source.origin != Origin::Repo || v.source.repo == first_repo.0;
            if !keep && !dropped.iter().any(|d| d.file == v.loc.file) {
                dropped.push(v.loc.clone());
            }
            keep
        });
        for at in dropped {
            config.warnings.push(ConfigError {
                loc: at,
                stanza: format!("job \"{name}\""),
                message: format!(
                    "job {name} is also defined in {} ({}); the first definition wins (Zuul: shadow)",
                    first_repo.0.as_deref().unwrap_or("another repository"),
                    first_repo.1.short()
                ),
            });
        }
    }
}

pub(crate) fn validate(config: &mut Config, errors: &mut Vec<ConfigError>, options: &LoadOptions) {
    resolve_shadowing(config);
    // The built-in `noop` job (Zuul defines it in every tenant).
    if !config.jobs.contains_key("noop") {
        config.jobs.insert("noop".into(), vec![super::job::noop()]);
        config.job_order.push("noop".into());
    }
    let mut external: BTreeSet<String> = BTreeSet::new();
    let push = |errors: &mut Vec<ConfigError>,
                warnings: &mut Vec<ConfigError>,
                loc: &Loc,
                stanza: String,
                message: String,
                is_external: bool| {
        // Inside tenant repositories, references to repositories not given are only
        // warnings: only what the project under test uses must resolve.
        let in_repo = config.origin_of(&loc.file) == Origin::Repo;
        let e = ConfigError {
            loc: loc.clone(),
            stanza,
            message,
        };
        if in_repo || (is_external && options.allow_external) {
            warnings.push(e);
        } else {
            errors.push(e);
        }
    };
    let names: Vec<&str> = config.job_order.iter().map(String::as_str).collect();
    let mut warnings = vec![];

    for name in &config.job_order {
        let variants = &config.jobs[name];
        let first = &variants[0];
        // A project may not redefine a library or tenant job (Zuul: "not permitted to
        // shadow").
        if first.source.origin != Origin::Project
            && let Some(shadow) = variants.iter().find(|v| v.source.origin == Origin::Project)
        {
            push(
                errors,
                &mut warnings,
                &shadow.loc,
                format!("job \"{name}\""),
                format!(
                    "Job {name} in {} is not permitted to shadow job {name} in {} ({})",
                    Origin::Project,
                    first
                        .source
                        .repo
                        .as_deref()
                        .map(str::to_string)
                        .unwrap_or_else(|| first.source.origin.to_string()),
                    first.loc.short()
                ),
                false,
            );
        }
        for v in variants.iter().skip(1) {
            if let Some(parent) = &v.parent
                && first.parent.as_ref() != Some(parent)
            {
                let show = |p: Option<&Option<String>>| match p {
                    None => "no parent".to_string(),
                    Some(None) => "parent null".to_string(),
                    Some(Some(p)) => format!("parent {p}"),
                };
                let at = v.set.get("parent").unwrap_or(&v.loc);
                // Zuul accepts this (both parents' definitions are collected, branch
                // variants do it on purpose), so it is a warning, not an error.
                warnings.push(ConfigError {
                    loc: at.clone(),
                    stanza: format!("job \"{name}\""),
                    message: format!(
                        "this variant names {} but the first definition ({}) names {}; both parents' definitions apply",
                        show(Some(parent)),
                        first.loc.short(),
                        show(first.parent.as_ref())
                    ),
                });
            }
        }
        for v in variants {
            if let Some(parent) = v.parent_name()
                && !config.jobs.contains_key(parent)
            {
                let at = v.set.get("parent").unwrap_or(&v.loc);
                let hint = suggest::hint(parent, names.iter().copied());
                push(
                    errors,
                    &mut warnings,
                    at,
                    format!("job \"{name}\""),
                    format!("Job {parent} not defined{hint}"),
                    true,
                );
                external.insert(parent.to_string());
            }
            for s in &v.secrets {
                if !config.secrets.contains_key(&s.secret)
                    && !config.unparsed_secrets.contains(&s.secret)
                {
                    let hint = suggest::hint(&s.secret, config.secrets.keys().map(String::as_str));
                    push(
                        errors,
                        &mut warnings,
                        &s.loc,
                        format!("job \"{name}\""),
                        format!("Secret {} not found{hint}", s.secret),
                        false,
                    );
                }
            }
            if let Some(serde_json::Value::String(ns)) = &v.nodeset
                && !config.nodesets.contains_key(ns)
            {
                let at = v.set.get("nodeset").unwrap_or(&v.loc);
                warnings.push(ConfigError {
                    loc: at.clone(),
                    stanza: format!("job \"{name}\""),
                    message: format!(
                        "nodeset {ns} is not defined here (its jobs run on the default one-node nodeset, localhost)"
                    ),
                });
            }
        }
    }

    // Inheritance cycles (each reported once, at the job listed first).
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for name in &config.job_order {
        let mut path = vec![name.as_str()];
        let mut cur = name.as_str();
        while let Some(parent) = config.jobs[cur][0].parent_name() {
            if !config.jobs.contains_key(parent) {
                break;
            }
            if let Some(pos) = path.iter().position(|p| *p == parent) {
                let cycle: BTreeSet<&str> = path[pos..].iter().copied().collect();
                let key = cycle.iter().copied().collect::<Vec<_>>().join(",");
                if reported.insert(key) {
                    let mut shown: Vec<&str> = path[pos..].to_vec();
                    shown.push(parent);
                    let at = config.jobs[path[pos]][0].loc.clone();
                    errors.push(ConfigError {
                        loc: at,
                        stanza: format!("job \"{}\"", path[pos]),
                        message: format!("inheritance cycle: {}", shown.join(" -> ")),
                    });
                }
                break;
            }
            path.push(parent);
            cur = parent;
        }
    }

    // Projects and templates: referenced jobs and templates exist.
    // Project stanzas of tenant repositories about other projects are not ours to check.
    let stanzas = config
        .projects
        .iter()
        .filter(|p| {
            config.origin_of(&p.loc.file) == Origin::Project
                || p.name.as_deref() == Some(config.project_name.as_str())
        })
        .chain(config.templates.values());
    for p in stanzas {
        let stanza = match &p.name {
            Some(n) if config.templates.get(n).is_some_and(|t| std::ptr::eq(t, p)) => {
                format!("project-template \"{n}\"")
            }
            Some(n) => format!("project \"{n}\""),
            None => "project".to_string(),
        };
        for (t, at) in &p.templates {
            if !config.templates.contains_key(t) {
                let hint = suggest::hint(t, config.templates.keys().map(String::as_str));
                push(
                    errors,
                    &mut warnings,
                    at,
                    stanza.clone(),
                    format!("Project template {t} not defined{hint}"),
                    true,
                );
                external.insert(t.clone());
            }
        }
        for (pipeline, jobs) in &p.pipelines {
            for j in &jobs.jobs {
                if !config.jobs.contains_key(&j.name) {
                    let hint = suggest::hint(&j.name, names.iter().copied());
                    push(
                        errors,
                        &mut warnings,
                        &j.loc,
                        format!("{stanza} pipeline \"{pipeline}\""),
                        format!("Job {} not defined{hint}", j.name),
                        true,
                    );
                    external.insert(j.name.clone());
                }
            }
        }
    }
    config.external = external.into_iter().collect();

    config.warnings.append(&mut warnings);
}

/// Errors in file order (the order files were read), then by position.
pub(crate) fn sort_errors(config: &Config, errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| (file_order(config, &e.loc.file), e.loc.line, e.loc.column));
}

/// Where `file` stands in the load order.
pub(crate) fn file_order(config: &Config, file: &str) -> usize {
    config
        .files
        .iter()
        .position(|f| &*f.file == file)
        .unwrap_or(usize::MAX)
}
