//! Roles and handlers: a play's `roles:`, `include_role`/`import_role` (native first, then
//! `roles/<name>/` with its defaults, vars, meta dependencies and handlers), and notifying
//! and flushing handlers.
//!
//! Part of the interpreter (`interp.rs` owns plays, blocks and variables).

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::{Failure, Frame, Handler, Interp, ItemDone, MAX_DEPTH, RoleFrom, RoleInfo, Silent};
use crate::playbook::check::{
    find_role, native_note, native_replaces, role_dependencies, role_dirs, role_file,
    role_not_found,
};
use crate::playbook::model::{RoleRef, Task};
use crate::playbook::{LogSink, Pos, RoleCall};

impl Interp<'_, '_> {
    /// Marks the handlers a changed task notifies (by name, `role : name`, or `listen`).
    pub(super) fn notify(&mut self, task: &Task) -> Result<(), String> {
        for n in &task.notify {
            let mut found = false;
            for h in &mut self.handlers {
                let own = h.task.name.as_deref() == Some(n.as_str());
                let in_role = h.frame.role.as_ref().is_some_and(|r| {
                    h.task
                        .name
                        .as_ref()
                        .map(|t| format!("{} : {t}", r.name))
                        .as_deref()
                        == Some(n.as_str())
                });
                if own || in_role || h.task.listen.iter().any(|l| l == n) {
                    h.notified = true;
                    found = true;
                }
            }
            if !found {
                return Err(format!(
                    "the requested handler \"{n}\" was not found in the play's handlers"
                ));
            }
        }
        Ok(())
    }

    pub(super) async fn flush_handlers(&mut self) -> Result<(), Failure> {
        // Handlers may notify handlers defined after them: walk by index.
        let mut i = 0;
        while i < self.handlers.len() {
            if self.handlers[i].notified {
                self.handlers[i].notified = false;
                let (task, mut frame) = (
                    self.handlers[i].task.clone(),
                    self.handlers[i].frame.clone(),
                );
                frame.handler = true;
                self.task(&task, &frame).await?;
            }
            i += 1;
        }
        Ok(())
    }

    /// Adds a role's `handlers/main.yaml` to the play's handlers (once).
    pub(super) fn role_handlers(&mut self, dir: &Path, rf: &Frame) -> Result<(), String> {
        let Some(file) = role_file(dir, "handlers", "main") else {
            return Ok(());
        };
        if self
            .handlers
            .iter()
            .any(|h| h.file.as_deref() == Some(file.as_path()))
        {
            return Ok(());
        }
        let tasks = self.load_tasks(&file)?;
        for t in tasks.iter() {
            self.handlers.push(Handler {
                task: t.clone(),
                frame: rf.clone(),
                file: Some(file.clone()),
                notified: false,
            });
        }
        Ok(())
    }

    pub(super) async fn play_role(
        &mut self,
        r: &RoleRef,
        frame: &mut Frame,
    ) -> Result<(), Failure> {
        // A role listed twice with the same parameters runs once.
        let key = (r.name.clone(), r.params.clone());
        if self.ran_roles.contains(&key) {
            return Ok(());
        }
        self.ran_roles.push(key);
        let mut f = frame.clone();
        f.params.extend(r.params.clone());
        let dirs = role_dirs(
            &self.playbook_dir,
            self.ctx.project_dir,
            self.ctx.role_paths,
            f.role.as_ref().map(|r| r.dir.as_path()),
        );
        // Project roles win: native only for a zuul-jobs name the project does not ship.
        let native = native_replaces(&r.name, &dirs, self.ctx.native);
        if native || !r.when.is_empty() {
            self.log.line("");
            self.log.line(&format!("TASK [{}]", r.name));
        }
        if !r.when.is_empty() {
            let vars = self.vars(&f);
            match self.conds(&r.when, &vars) {
                Ok(true) => {}
                Ok(false) => {
                    self.log.host("skipping: Conditional result was False");
                    self.stats.skipped += 1;
                    return Ok(());
                }
                Err(msg) => {
                    self.stats.failed += 1;
                    return Err(self.failure(&r.pos, &r.name, msg, Value::Null));
                }
            }
        }
        self.exported = None;
        let done = self.role(&r.pos, &r.name, &RoleFrom::default(), f).await?;
        // A play's roles are public: their defaults and vars stay for the rest of the play.
        if let Some((defaults, vars)) = self.exported.take() {
            frame.defaults.extend(defaults);
            frame.role_vars.extend(vars);
        }
        if !done.included {
            let no_log = false;
            self.show(&done, no_log, None);
            if done.flag("failed") {
                self.stats.failed += 1;
                let msg = done
                    .result
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("failed")
                    .to_string();
                return Err(self.failure(&r.pos, &r.name, msg, Value::Object(done.result)));
            }
            self.count(&done);
        }
        Ok(())
    }

    pub(super) fn count(&mut self, d: &ItemDone) {
        if d.flag("skipped") {
            self.stats.skipped += 1;
        } else if d.flag("changed") {
            self.stats.changed += 1;
        } else {
            self.stats.ok += 1;
        }
    }

    /// Runs a role with the frame of its caller (parameters already in `params`).
    pub(super) async fn role(
        &mut self,
        pos: &Pos,
        name: &str,
        from: &RoleFrom,
        mut rf: Frame,
    ) -> Result<ItemDone, Failure> {
        let dirs = role_dirs(
            &self.playbook_dir,
            self.ctx.project_dir,
            self.ctx.role_paths,
            rf.role.as_ref().map(|r| r.dir.as_path()),
        );
        if native_replaces(name, &dirs, self.ctx.native) {
            if from.tasks.is_some() {
                return Ok(ItemDone::failed(format!(
                    "role \"{name}\" is native (built into gantry): it has no tasks_from files"
                )));
            }
            let vars = self.vars(&rf);
            // `no_log` on the include (or an enclosing block) silences the role too.
            let silent = self.flag(rf.no_log.as_ref(), &vars).unwrap_or(true);
            if !silent {
                self.log.line(&native_note(name));
            }
            let call = RoleCall {
                vars: &vars,
                work_dir: self.ctx.work_dir,
                log: if silent { &Silent } else { &self.log },
                templar: &self.templar,
            };
            let outcome = tokio::select! {
                r = self.ctx.native.run(name, call) => r,
                _ = self.ctx.cancel.cancelled() => return Err(self.cancelled(pos, name)),
            };
            return Ok(match outcome {
                Err(msg) => ItemDone::failed(msg.to_string()),
                Ok(out) => {
                    self.log.add_secrets(&out.returned);
                    self.returned.merge(out.returned);
                    // Native roles stand in for zuul-jobs roles, which set theirs with
                    // `cacheable: true`.
                    self.cache_facts(&out.facts);
                    for (k, v) in out.facts {
                        self.host.insert(k, v);
                    }
                    ItemDone::ok(out.changed)
                }
            });
        }
        if rf.depth > MAX_DEPTH {
            return Ok(ItemDone::failed(format!(
                "role \"{name}\" included too deeply (a loop?)"
            )));
        }
        let Some(dir) = find_role(name, &dirs) else {
            return Ok(ItemDone::failed(role_not_found(
                name,
                &dirs,
                self.ctx.native,
            )));
        };
        let mut loaded = Vec::new();
        for (sub, from) in [("defaults", &from.defaults), ("vars", &from.vars)] {
            let file = match from {
                Some(f) => match role_file(&dir, sub, f) {
                    Some(p) => Some(p),
                    None => {
                        return Ok(ItemDone::failed(format!(
                            "role \"{name}\" has no {sub} file \"{f}\""
                        )));
                    }
                },
                None => role_file(&dir, sub, "main"),
            };
            match file.map(|p| self.files.vars(&p)).transpose() {
                Ok(m) => loaded.push(m.unwrap_or_default()),
                Err(e) => return Ok(ItemDone::failed(e.to_string())),
            }
        }
        let tasks_file = match &from.tasks {
            Some(f) => match role_file(&dir, "tasks", f) {
                Some(p) => Some(p),
                None => {
                    return Ok(ItemDone::failed(format!(
                        "role \"{name}\" has no task file \"{f}\""
                    )));
                }
            },
            None => role_file(&dir, "tasks", "main"),
        };
        let tasks = match tasks_file {
            Some(p) => match self.load_tasks(&p) {
                Ok(t) => t,
                Err(msg) => return Ok(ItemDone::failed(msg)),
            },
            None => Arc::new(Vec::new()),
        };
        let deps = match role_dependencies(&self.files, &dir) {
            Ok(d) => d,
            Err(msg) => return Ok(ItemDone::failed(msg)),
        };
        for (dep, params) in deps {
            // A dependency runs once per play (per parameters).
            let key = (dep.clone(), params.clone());
            if self.ran_roles.contains(&key) {
                continue;
            }
            self.ran_roles.push(key);
            let mut df = rf.clone();
            df.params.extend(params);
            df.depth += 1;
            let done = Box::pin(self.role(pos, &dep, &RoleFrom::default(), df)).await?;
            if done.flag("failed") {
                return Ok(done);
            }
        }
        let role_vars = loaded.pop().unwrap_or_default();
        let defaults = loaded.pop().unwrap_or_default();
        if rf.depth == 0 || self.exported.is_none() {
            self.exported = Some((defaults.clone(), role_vars.clone()));
        }
        rf.defaults.extend(defaults);
        rf.role_vars.extend(role_vars);
        rf.role = Some(Arc::new(RoleInfo {
            name: name.to_string(),
            dir,
        }));
        rf.depth += 1;
        if let Err(msg) = self.role_handlers(
            &rf.role.as_ref().map(|r| r.dir.clone()).unwrap_or_default(),
            &rf,
        ) {
            return Ok(ItemDone::failed(msg));
        }
        self.run_tasks(&tasks, &rf).await?;
        Ok(ItemDone::included())
    }

    pub(super) fn load_tasks(&mut self, path: &Path) -> Result<Arc<Vec<Task>>, String> {
        if let Some(t) = self.task_files.get(path) {
            return Ok(t.clone());
        }
        let tasks = self.files.tasks(path).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let tasks = Arc::new(tasks);
        self.task_files.insert(path.to_path_buf(), tasks.clone());
        Ok(tasks)
    }
}
