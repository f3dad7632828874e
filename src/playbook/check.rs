//! Finding roles and task files, and checking a playbook before it runs.
//!
//! Owns: where a role name leads (native role, `roles/<name>/` next to the playbook, in
//! the project, or beside the calling role), which file `tasks_from`/`vars_from`/
//! `defaults_from` mean, and the static check: every role named without a template
//! exists, every statically named task or vars file exists and parses — all problems at
//! once, each with `file:line:column`. Must not: template or run anything (a name holding
//! `{{` is left for run time).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::NativeRoles;
use super::model::{Action, Files, Play, PlaybookError, Pos, Task};
use super::template::is_template;
use crate::text::suggest;

/// The directories a role name is looked up in, in order: beside the playbook, in the
/// project, the job's `roles:` directories, and beside the role that includes it (roles including sibling roles).
pub fn role_dirs(
    playbook_dir: &Path,
    project_dir: &Path,
    role_paths: &[PathBuf],
    current_role: Option<&Path>,
) -> Vec<PathBuf> {
    let mut dirs = vec![playbook_dir.join("roles"), project_dir.join("roles")];
    dirs.extend(role_paths.iter().cloned());
    if let Some(parent) = current_role.and_then(Path::parent) {
        dirs.push(parent.to_path_buf());
    }
    dirs.dedup();
    dirs
}

pub fn find_role(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|d| d.is_dir())
}

/// Project roles win: a role the project ships (in `dirs`) is used as written whatever
/// its name; gantry's native role replaces a zuul-jobs role only when the project ships
/// none of that name.
pub fn native_replaces(name: &str, dirs: &[PathBuf], native: &dyn NativeRoles) -> bool {
    native.has(name) && find_role(name, dirs).is_none()
}

/// The log line saying a native role stands in for a zuul-jobs role.
pub fn native_note(name: &str) -> String {
    format!("role {name}: gantry's native implementation (the project ships no role {name})")
}

/// `roles/x/<sub>/<from>` with `.yaml`/`.yml` tried when `from` has no extension.
pub fn role_file(role_dir: &Path, sub: &str, from: &str) -> Option<PathBuf> {
    let base = role_dir.join(sub);
    let candidates = if from.ends_with(".yaml") || from.ends_with(".yml") {
        vec![base.join(from)]
    } else {
        vec![
            base.join(format!("{from}.yaml")),
            base.join(format!("{from}.yml")),
            base.join(from),
        ]
    };
    candidates.into_iter().find(|p| p.is_file())
}

/// A role a role depends on, with its parameters.
pub type RoleDependency = (String, Map<String, Value>);

/// A role's `meta/main.yaml` `dependencies`: names, or `{role: name, …params}`.
pub fn role_dependencies(files: &Files, role_dir: &Path) -> Result<Vec<RoleDependency>, String> {
    let Some(meta) = role_file(role_dir, "meta", "main") else {
        return Ok(Vec::new());
    };
    let shown = files.display(&meta);
    let mut meta = files.vars(&meta).map_err(|e| e.to_string())?;
    let deps = match meta.remove("dependencies") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(deps)) => deps,
        Some(other) => {
            return Err(format!(
                "{shown}: dependencies must be a list, found {other}"
            ));
        }
    };
    deps.into_iter()
        .map(|d| match d {
            Value::String(name) => Ok((name, Map::new())),
            Value::Object(mut m) => {
                let name = m.remove("role").or_else(|| m.remove("name"));
                let Some(Value::String(name)) = name else {
                    return Err(format!("{shown}: a dependency needs \"role\""));
                };
                if let Some(Value::Object(vars)) = m.remove("vars") {
                    m.extend(vars);
                }
                m.remove("when");
                m.remove("tags");
                Ok((name, m))
            }
            other => Err(format!(
                "{shown}: a dependency is a role name or a mapping, found {other}"
            )),
        })
        .collect()
}

/// "role not found" with what was searched and a suggestion.
pub fn role_not_found(name: &str, dirs: &[PathBuf], native: &dyn NativeRoles) -> String {
    let mut known: Vec<String> = native.names();
    for d in dirs {
        if let Ok(entries) = std::fs::read_dir(d) {
            known.extend(
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
    }
    let hint = suggest::hint(name, known.iter().map(String::as_str));
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!(
        "role \"{name}\" not found{hint}: not a native role, and not in {}",
        searched.join(", ")
    )
}

/// Every problem of the plays, or nothing.
pub fn plays(
    plays: &[Play],
    files: &Files,
    playbook_dir: &Path,
    native: &dyn NativeRoles,
) -> Vec<PlaybookError> {
    let mut c = Checker {
        files,
        playbook_dir,
        native,
        errors: Vec::new(),
        seen: HashSet::new(),
    };
    for play in plays {
        for (pos, file) in &play.vars_files {
            if !is_template(file) {
                let path = pos.dir().join(file);
                if let Err(e) = files.vars(&path) {
                    c.at(pos, format!("vars_files: {e}"));
                }
            }
        }
        c.tasks(&play.pre_tasks, None);
        for r in &play.roles {
            c.role(&r.pos, &r.name, None, None, None, None);
        }
        c.tasks(&play.tasks, None);
        c.tasks(&play.post_tasks, None);
        c.tasks(&play.handlers, None);
    }
    c.errors
}

struct Checker<'a> {
    files: &'a Files,
    playbook_dir: &'a Path,
    native: &'a dyn NativeRoles,
    errors: Vec<PlaybookError>,
    /// Task files already checked (includes may repeat, or recurse).
    seen: HashSet<PathBuf>,
}

impl Checker<'_> {
    fn at(&mut self, pos: &Pos, message: String) {
        self.errors.push(PlaybookError::Invalid {
            pos: pos.clone(),
            message,
        });
    }

    fn tasks(&mut self, tasks: &[Task], role_dir: Option<&Path>) {
        for t in tasks {
            match &t.action {
                Action::Module { .. } | Action::Meta { .. } => {}
                Action::Block {
                    block,
                    rescue,
                    always,
                } => {
                    self.tasks(block, role_dir);
                    self.tasks(rescue, role_dir);
                    self.tasks(always, role_dir);
                }
                Action::Role {
                    name,
                    tasks_from,
                    vars_from,
                    defaults_from,
                    ..
                } => self.role(
                    &t.pos,
                    name,
                    tasks_from.as_deref(),
                    vars_from.as_deref(),
                    defaults_from.as_deref(),
                    role_dir,
                ),
                Action::Tasks { file, .. } => {
                    if is_template(file) {
                        continue;
                    }
                    let path = t.pos.dir().join(file);
                    if !path.is_file() {
                        self.at(
                            &t.pos,
                            format!("included task file {} not found", self.files.display(&path)),
                        );
                        continue;
                    }
                    self.task_file(&path, role_dir);
                }
            }
        }
    }

    fn task_file(&mut self, path: &Path, role_dir: Option<&Path>) {
        if !self.seen.insert(path.to_path_buf()) {
            return;
        }
        match self.files.tasks(path) {
            Ok(tasks) => self.tasks(&tasks, role_dir),
            Err(errors) => self.errors.extend(errors),
        }
    }

    fn role(
        &mut self,
        pos: &Pos,
        name: &str,
        tasks_from: Option<&str>,
        vars_from: Option<&str>,
        defaults_from: Option<&str>,
        current: Option<&Path>,
    ) {
        if is_template(name) {
            return;
        }
        let dirs = role_dirs(
            self.playbook_dir,
            &self.files.project_dir,
            &self.files.role_paths,
            current,
        );
        if native_replaces(name, &dirs, self.native) {
            if tasks_from.is_some() {
                self.at(
                    pos,
                    format!(
                        "role \"{name}\" is native (built into gantry): it has no tasks_from files"
                    ),
                );
            }
            return;
        }
        let Some(dir) = find_role(name, &dirs) else {
            let message = role_not_found(name, &dirs, self.native);
            return self.at(pos, message);
        };
        if !self.seen.insert(dir.join("meta")) {
            // Checked already (and dependency cycles stop here).
        } else {
            match role_dependencies(self.files, &dir) {
                Ok(deps) => {
                    for (dep, _) in deps {
                        self.role(pos, &dep, None, None, None, Some(&dir));
                    }
                }
                Err(message) => self.at(pos, message),
            }
        }
        for (sub, from) in [("vars", vars_from), ("defaults", defaults_from)] {
            let file = match from {
                Some(f) if is_template(f) => continue,
                Some(f) => match role_file(&dir, sub, f) {
                    Some(p) => p,
                    None => {
                        self.at(pos, format!("role \"{name}\" has no {sub} file \"{f}\""));
                        continue;
                    }
                },
                None => match role_file(&dir, sub, "main") {
                    Some(p) => p,
                    None => continue,
                },
            };
            if let Err(e) = self.files.vars(&file) {
                self.errors.push(e);
            }
        }
        let tasks = match tasks_from {
            Some(f) if is_template(f) => return,
            Some(f) => match role_file(&dir, "tasks", f) {
                Some(p) => p,
                None => return self.at(pos, format!("role \"{name}\" has no task file \"{f}\"")),
            },
            None => match role_file(&dir, "tasks", "main") {
                Some(p) => p,
                None => return,
            },
        };
        self.task_file(&tasks, Some(&dir));
        if let Some(handlers) = role_file(&dir, "handlers", "main") {
            self.task_file(&handlers, Some(&dir));
        }
    }
}
