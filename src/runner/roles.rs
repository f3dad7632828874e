//! A job's `roles:` attribute made into role directories for its playbooks (Zuul's
//! `AnsibleJob.prepareZuulRole` / `findRole` in `zuul/executor/server.py`; the role name is
//! `name:` or the repository's last path segment, `JobParser._makeZuulRole` in
//! `zuul/configloader.py`).
//!
//! Owns: which repository `{zuul: NAME}` means (the project under test, or a tenant
//! repository given with `--config-repo`), whether it holds a `roles/` directory (that
//! directory goes on the role path) or is itself a bare role (`tasks/` at its top: a
//! directory holding one link `<name>` → the repository goes on the role path), and the
//! error for a reference nothing resolves. Must not: run playbooks.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::job::freeze::FrozenPlaybook;
use crate::job::{ConfigRepo, FrozenJob};

/// zuul-jobs' roles: gantry's native roles and shipped library stand in for them when the
/// repository is not given.
const ZUUL_JOBS: &str = "zuul/zuul-jobs";

/// A `roles:` entry that cannot be made into a role directory.
#[derive(Debug, thiserror::Error)]
pub enum RoleRefError {
    #[error(
        "{at}: job {job}: roles: repository {repo} is not given (add --config-repo {repo}=DIR)"
    )]
    NotGiven {
        job: String,
        repo: String,
        at: String,
    },
    #[error(
        "{at}: job {job}: roles: Unable to find role in {repo} ({}): neither roles/ nor tasks/", .dir.display()
    )]
    NotARole {
        job: String,
        repo: String,
        dir: PathBuf,
        at: String,
    },
    #[error("{at}: job {job}: roles: invalid role name \"{name}\"")]
    BadName {
        job: String,
        name: String,
        at: String,
    },
    #[error("{at}: job {job}: roles: an entry needs `zuul: PROJECT`")]
    NoProject { job: String, at: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where role references can lead: the project under test and the tenant repositories.
pub struct RoleSources<'a> {
    /// The project's name as configured (`openstack/loci` or `loci`).
    pub project: &'a str,
    pub project_dir: &'a Path,
    pub repos: &'a [ConfigRepo],
}

impl RoleSources<'_> {
    fn dir_of(&self, name: &str) -> Option<&Path> {
        let short = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
        if name == self.project || (!self.project.contains('/') && short(name) == self.project) {
            return Some(self.project_dir);
        }
        self.repos
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.dir.as_path())
    }
}

/// Where one playbook's role directories are kept in `RunOptions::role_paths`.
pub fn playbook_key(job: &FrozenJob, pb: &FrozenPlaybook) -> String {
    format!("{}\n{}\n{}", job.name, pb.defined_in, pb.path)
}

/// The role directories of one playbook of `job`: the roles it is scoped to
/// ([`FrozenPlaybook::roles`], Zuul's `PlaybookContext.roles`), in that order. Bare roles
/// get a link under `link_root/<repo>/`. An implicit role (a definition's own repository)
/// adds its `roles/` or bare role when it has one and nothing otherwise; a reference to
/// zuul-jobs that is not given is left to gantry's native roles (reported in the returned
/// notes).
pub fn playbook_role_paths(
    job: &FrozenJob,
    pb: &FrozenPlaybook,
    sources: &RoleSources<'_>,
    link_root: &Path,
) -> Result<(Vec<PathBuf>, Vec<String>), RoleRefError> {
    let mut paths = Vec::new();
    let mut notes = Vec::new();
    for entry in &pb.roles {
        let implicit = entry.get("implicit").and_then(Value::as_bool) == Some(true);
        let at = job
            .roles
            .iter()
            .position(|r| r == entry)
            .and_then(|ix| job.role_locs.get(ix))
            .map(|l| l.to_string())
            .unwrap_or_else(|| job.name.clone());
        let Some(repo) = entry.get("zuul").and_then(Value::as_str) else {
            // `galaxy:` roles are not supported by Zuul either; nothing to prepare.
            if entry.get("galaxy").is_some() {
                continue;
            }
            return Err(RoleRefError::NoProject {
                job: job.name.clone(),
                at,
            });
        };
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| repo.rsplit('/').next().unwrap_or(repo));
        let Some(dir) = sources.dir_of(repo) else {
            if implicit {
                continue;
            }
            if repo == ZUUL_JOBS {
                notes.push(format!(
                    "job {}: roles from {ZUUL_JOBS}: gantry's native roles stand in (the repository is not given)",
                    job.name
                ));
                continue;
            }
            return Err(RoleRefError::NotGiven {
                job: job.name.clone(),
                repo: repo.to_string(),
                at,
            });
        };
        if dir.join("tasks").is_dir() {
            // A bare role: the repository itself is the role `name`.
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(RoleRefError::BadName {
                    job: job.name.clone(),
                    name: name.to_string(),
                    at,
                });
            }
            let holder = link_root.join(repo.replace('/', "%"));
            let io = |path: &Path, e: std::io::Error| RoleRefError::Io {
                path: path.to_path_buf(),
                source: e,
            };
            std::fs::create_dir_all(&holder).map_err(|e| io(&holder, e))?;
            let link = holder.join(name);
            let target = std::path::absolute(dir).map_err(|e| io(dir, e))?;
            if !link.exists() {
                std::os::unix::fs::symlink(&target, &link).map_err(|e| io(&link, e))?;
            }
            paths.push(holder);
        } else if dir.join("roles").is_dir() {
            let roles = std::path::absolute(dir.join("roles")).map_err(|e| RoleRefError::Io {
                path: dir.to_path_buf(),
                source: e,
            })?;
            if !paths.contains(&roles) {
                paths.push(roles);
            }
        } else if implicit || sources.dir_of(repo) == Some(sources.project_dir) {
            // The project's implicit role path (Zuul does not fail for it either).
            continue;
        } else if repo == ZUUL_JOBS {
            notes.push(format!(
                "job {}: {ZUUL_JOBS} as given holds no roles/: gantry's native roles stand in",
                job.name
            ));
        } else {
            return Err(RoleRefError::NotARole {
                job: job.name.clone(),
                repo: repo.to_string(),
                dir: dir.to_path_buf(),
                at,
            });
        }
    }
    Ok((paths, notes))
}
