//! Applying one job definition (a parent, the job, a variant) onto a job being frozen, with
//! Zuul's merge rule for each attribute (ZUUL.md §2) and `final` / `attribute-control`.
//!
//! Must not: collect variants or look at project pipelines (`freeze` does).

use std::collections::BTreeSet;

use serde_json::{Map, Value as Json};

use super::{BoundSecret, FreezeError, FrozenJob, FrozenPlaybook};
use crate::job::config::{Config, JobDef, Loc, PlaybookDef, Vars};

pub(super) fn apply(
    config: &Config,
    job: &mut FrozenJob,
    other: &JobDef,
    level: usize,
    first: bool,
) -> Result<(), FreezeError> {
    const FLAGS: [&str; 4] = ["final", "abstract", "protected", "intermediate"];
    if !first {
        // In Zuul's attribute order, so the error names the same attribute Zuul's does.
        for attr in crate::job::config::EXECUTION_ATTRIBUTES {
            let Some(at) = other.set.get(*attr) else {
                continue;
            };
            if FLAGS.contains(attr) {
                continue;
            }
            let attr = attr.to_string();
            if job.final_ {
                return Err(FreezeError::Final {
                    job: job.current.clone(),
                    attribute: attr,
                    at: at.clone(),
                });
            }
            if let Some(origin) = job.protected_origin
                && origin != other.source.origin
            {
                return Err(FreezeError::Protected {
                    job: job.current.clone(),
                    origin,
                    at: at.clone(),
                });
            }
        }
    }
    job.inheritance
        .push(format!("{}@{}", other.name, other.loc.short()));
    let loc = |attr: &str| {
        other
            .set
            .get(attr)
            .cloned()
            .unwrap_or_else(|| other.loc.clone())
    };

    if other.final_ == Some(true) {
        job.final_ = true;
        job.replaced("final", &loc("final"));
    }
    // Abstract may not be reset by a variant, only cleared by inheriting.
    if first || other.name != job.current {
        job.abstract_ = other.abstract_.unwrap_or(false);
    } else if other.abstract_ == Some(true) {
        job.abstract_ = true;
    }
    if other.abstract_.is_some() {
        job.replaced("abstract", &loc("abstract"));
    }
    if !first && job.intermediate && other.abstract_ != Some(true) {
        return Err(FreezeError::Intermediate {
            job: job.current.clone(),
            at: other.loc.clone(),
        });
    }
    if first || other.name != job.current {
        job.intermediate = other.intermediate.unwrap_or(false);
    } else if other.intermediate == Some(true) {
        job.intermediate = true;
    }
    if let Some(protected) = other.protected {
        if !protected && job.protected_origin.is_some() {
            return Err(FreezeError::ProtectedReset {
                job: job.current.clone(),
                at: loc("protected"),
            });
        }
        if protected && job.protected_origin.is_none() {
            job.protected_origin = Some(other.source.origin);
            job.protected = true;
            job.replaced("protected", &loc("protected"));
        }
    }

    // Secrets: check they exist; pass-to-parent ones go to the playbooks collected so far
    // (a playbook's own secret of the same name wins).
    for s in &other.secrets {
        if !config.secrets.contains_key(&s.secret) {
            return Err(FreezeError::SecretNotFound {
                secret: s.secret.clone(),
                at: s.loc.clone(),
            });
        }
    }
    let to_parents: Vec<BoundSecret> = other
        .secrets
        .iter()
        .filter(|s| s.pass_to_parent)
        .map(|s| BoundSecret {
            name: s.name.clone(),
            secret: s.secret.clone(),
        })
        .collect();
    if !to_parents.is_empty() {
        for pb in job
            .pre_run
            .iter_mut()
            .chain(job.run.iter_mut())
            .chain(job.post_run.iter_mut())
            .chain(job.cleanup_run.iter_mut())
        {
            for s in &to_parents {
                if !pb.secrets.iter().any(|have| have.name == s.name) {
                    pb.secrets.push(s.clone());
                }
            }
        }
        job.merged("secrets", &loc("secrets"));
    } else if !other.secrets.is_empty() {
        job.merged("secrets", &loc("secrets"));
    }

    // Roles before playbooks (Zuul's `applyVariant`: "We must update roles before any
    // playbook contexts"): this definition's repository (implicit, not for a
    // project-pipeline variant: `JobParser`) and its `roles:`.
    let mut added = vec![];
    if !other.project_pipeline
        && let Some(implicit) = implicit_role(config, other)
    {
        added.push(implicit);
    }
    added.extend(other.roles.iter().flatten().cloned());
    add_roles(&mut job.scoped_roles, &added);
    let scoped = job.scoped_roles.clone();

    let freeze_pbs = |pbs: &[PlaybookDef]| -> Vec<FrozenPlaybook> {
        pbs.iter()
            .map(|pb| FrozenPlaybook {
                path: pb.path.clone(),
                root: other.source.root.clone(),
                origin: other.source.origin,
                job: other.name.clone(),
                defined_in: pb.loc.clone(),
                nesting_level: level,
                cleanup: pb.cleanup,
                semaphores: pb.semaphores.clone(),
                secrets: other
                    .secrets
                    .iter()
                    .map(|s| BoundSecret {
                        name: s.name.clone(),
                        secret: s.secret.clone(),
                    })
                    .collect(),
                roles: scoped.clone(),
            })
            .collect()
    };
    if let Some(run) = &other.run {
        job.run = freeze_pbs(run);
        job.replaced("run", &loc("run"));
    }
    if let Some(pre) = &other.pre_run {
        job.pre_run.extend(freeze_pbs(pre));
        job.merged("pre-run", &loc("pre-run"));
    }
    if let Some(post) = &other.post_run {
        let mut new = freeze_pbs(post);
        new.append(&mut job.post_run);
        job.post_run = new;
        job.merged("post-run", &loc("post-run"));
    }
    if let Some(cleanup) = &other.cleanup_run {
        let mut new = freeze_pbs(cleanup);
        new.append(&mut job.cleanup_run);
        job.cleanup_run = new;
        job.merged("cleanup-run", &loc("cleanup-run"));
    }

    for (attr, vars) in [
        ("vars", &other.vars),
        ("extra-vars", &other.extra_vars),
        ("host-vars", &other.host_vars),
        ("group-vars", &other.group_vars),
    ] {
        let Some(Vars { map, override_ }) = vars else {
            continue;
        };
        final_control(job, other, attr, &loc(attr))?;
        let target = match attr {
            "vars" => &mut job.vars,
            "extra-vars" => &mut job.extra_vars,
            "host-vars" => &mut job.host_vars,
            _ => &mut job.group_vars,
        };
        if *override_ {
            *target = map.clone();
            job.replaced(attr, &loc(attr));
        } else {
            *target = deep_update(target, map);
            job.merged(attr, &loc(attr));
        }
    }

    if let Some(rp) = &other.required_projects {
        final_control(job, other, "required-projects", &loc("required-projects"))?;
        if rp.override_ == Some(true) {
            job.required_projects.clear();
        }
        for p in &rp.items {
            let key = project_key(p);
            job.required_projects
                .retain(|have| project_key(have) != key);
            job.required_projects.push(p.clone());
        }
        job.merged("required-projects", &loc("required-projects"));
    }
    if let Some(sems) = &other.semaphores {
        let mut all: BTreeSet<String> = job.semaphores.drain(..).collect();
        all.extend(sems.iter().cloned());
        job.semaphores = all.into_iter().collect();
        job.merged(
            "semaphores",
            &loc(if other.set.contains_key("semaphores") {
                "semaphores"
            } else {
                "semaphore"
            }),
        );
    }
    if let Some(roles) = &other.roles {
        for r in roles {
            if !job.roles.contains(r) {
                job.roles.push(r.clone());
                job.role_locs.push(loc("roles"));
            }
        }
        job.merged("roles", &loc("roles"));
    }
    macro_rules! replace {
        ($field:ident, $attr:literal) => {
            if let Some(v) = &other.$field {
                job.$field = v.clone().into();
                job.replaced($attr, &loc($attr));
            }
        };
    }
    replace!(timeout, "timeout");
    replace!(pre_timeout, "pre-timeout");
    replace!(post_timeout, "post-timeout");
    if let Some(a) = other.attempts {
        job.attempts = a;
        job.replaced("attempts", &loc("attempts"));
    }
    if let Some(ns) = &other.nodeset {
        job.nodeset = Some(ns.clone());
        job.replaced("nodeset", &loc("nodeset"));
    }
    if let Some(d) = &other.description {
        job.description = Some(d.clone());
        job.replaced("description", &loc("description"));
    }
    for (k, v) in &other.other {
        job.other.insert(k.clone(), v.clone());
        job.replaced(k, &loc(k));
    }

    // Context attributes: a final job still accepts these from variants.
    if let Some(v) = other.voting {
        job.voting = v;
        job.replaced("voting", &loc("voting"));
    }
    if let Some(b) = &other.branches {
        job.branches = b.clone();
        job.replaced("branches", &loc("branches"));
    }
    for (attr, list, default_override) in [
        ("provides", &other.provides, false),
        ("requires", &other.requires, false),
        ("tags", &other.tags, false),
    ] {
        let Some(list) = list else { continue };
        final_control(job, other, attr, &loc(attr))?;
        let target = match attr {
            "provides" => &mut job.provides,
            "requires" => &mut job.requires,
            _ => &mut job.tags,
        };
        if list.override_.unwrap_or(default_override) {
            *target = list.items.iter().cloned().collect();
            job.replaced(attr, &loc(attr));
        } else {
            target.extend(list.items.iter().cloned());
            job.merged(attr, &loc(attr));
        }
    }
    for (attr, list) in [
        ("files", &other.files),
        ("irrelevant-files", &other.irrelevant_files),
    ] {
        let Some(list) = list else { continue };
        final_control(job, other, attr, &loc(attr))?;
        let target = if attr == "files" {
            &mut job.files
        } else {
            &mut job.irrelevant_files
        };
        if list.override_.unwrap_or(true) {
            *target = list.items.clone();
            job.replaced(attr, &loc(attr));
        } else {
            for f in &list.items {
                if !target.contains(f) {
                    target.push(f.clone());
                }
            }
            job.merged(attr, &loc(attr));
        }
    }
    if let Some(deps) = &other.dependencies {
        final_control(job, other, "dependencies", &loc("dependencies"))?;
        if deps.override_.unwrap_or(true) {
            job.dependencies = deps.items.clone();
            job.replaced("dependencies", &loc("dependencies"));
        } else {
            for d in &deps.items {
                job.dependencies.retain(|have| have.name != d.name);
                job.dependencies.push(d.clone());
            }
            job.merged("dependencies", &loc("dependencies"));
        }
    }
    Ok(())
}

/// Zuul's `attribute-control: {X: {final: true}}`.
fn final_control(
    job: &mut FrozenJob,
    other: &JobDef,
    attr: &str,
    at: &Loc,
) -> Result<(), FreezeError> {
    if job.final_attributes.contains(attr) {
        return Err(FreezeError::FinalAttribute {
            job: job.current.clone(),
            attribute: attr.to_string(),
            at: at.clone(),
        });
    }
    if other.final_attributes.iter().any(|a| a == attr) {
        job.final_attributes.insert(attr.to_string());
    }
    Ok(())
}

fn project_key(p: &Json) -> String {
    match p {
        Json::String(s) => s.clone(),
        Json::Object(m) => m
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// Zuul's `_deepUpdate`: mappings merge recursively, anything else in `b` replaces `a`.
pub fn deep_update(a: &Map<String, Json>, b: &Map<String, Json>) -> Map<String, Json> {
    let mut out = a.clone();
    for (k, bv) in b {
        match (out.get(k), bv) {
            (Some(Json::Object(av)), Json::Object(bm)) => {
                let merged = deep_update(av, bm);
                out.insert(k.clone(), Json::Object(merged));
            }
            _ => {
                out.insert(k.clone(), bv.clone());
            }
        }
    }
    out
}

/// The implicit role of a definition: its repository (`JobParser._makeImplicitRole`,
/// `zuul/configloader.py`). The project under test by its configured name, a tenant
/// repository by its canonical name; gantry's shipped library has none.
fn implicit_role(config: &Config, def: &JobDef) -> Option<Json> {
    use crate::job::config::Origin;
    let repo = match def.source.origin {
        Origin::Project => config.project_name.clone(),
        Origin::Repo => def.source.repo.as_deref()?.to_string(),
        Origin::Library => return None,
    };
    Some(serde_json::json!({"zuul": repo, "implicit": true}))
}

/// A role's identity (Zuul's `ZuulRole.__eq__`): repository and target name (`name:`,
/// else the repository's last path segment).
fn role_key(role: &Json) -> (String, String) {
    let repo = role.get("zuul").and_then(Json::as_str).unwrap_or_default();
    let name = role
        .get("name")
        .and_then(Json::as_str)
        .unwrap_or_else(|| repo.rsplit('/').next().unwrap_or(repo));
    (repo.to_string(), name.to_string())
}

/// Zuul's `Job.addRoles` (zuul/model.py, zuul commit b5bc01c72d): an implicit role named
/// again explicitly is replaced in place; roles not there yet are put in front, in their
/// order (the latest definition's roles are searched first).
pub(super) fn add_roles(roles: &mut Vec<Json>, new: &[Json]) {
    let implicit = |r: &Json| r.get("implicit").and_then(Json::as_bool) == Some(true);
    for have in roles.iter_mut() {
        if let Some(n) = new.iter().find(|n| role_key(n) == role_key(have))
            && implicit(have)
            && !implicit(n)
        {
            *have = n.clone();
        }
    }
    for n in new.iter().rev() {
        if !roles.iter().any(|r| role_key(r) == role_key(n)) {
            roles.insert(0, n.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::add_roles;
    use serde_json::json;

    #[test]
    fn add_roles_puts_new_roles_first_and_an_explicit_role_replaces_the_implicit_one() {
        let mut roles = vec![];
        add_roles(
            &mut roles,
            &[
                json!({"zuul": "org/base", "implicit": true}),
                json!({"zuul": "org/roles-a"}),
            ],
        );
        assert_eq!(
            roles,
            [
                json!({"zuul": "org/base", "implicit": true}),
                json!({"zuul": "org/roles-a"})
            ]
        );
        // A child: its repository, its roles, and org/base named explicitly.
        add_roles(
            &mut roles,
            &[
                json!({"zuul": "org/app", "implicit": true}),
                json!({"zuul": "org/roles-b"}),
                json!({"zuul": "org/base"}),
                json!({"zuul": "org/roles-a"}),
            ],
        );
        assert_eq!(
            roles,
            [
                json!({"zuul": "org/app", "implicit": true}),
                json!({"zuul": "org/roles-b"}),
                json!({"zuul": "org/base"}),
                json!({"zuul": "org/roles-a"})
            ]
        );
        // The same repository under another name is another role.
        add_roles(&mut roles, &[json!({"zuul": "org/roles-a", "name": "a2"})]);
        assert_eq!(roles[0], json!({"zuul": "org/roles-a", "name": "a2"}));
        assert_eq!(roles.len(), 5);
    }
}
