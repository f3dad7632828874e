//! One task with an action (not a block): its conditions, loop, module or include, what
//! `register` stores, and its lines in the log.
//!
//! Part of the interpreter (`interp.rs` owns plays, blocks, roles, variables and
//! handlers). Must not: decide precedence (it asks `Interp::vars`) or print anything that
//! `no_log` hides.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::{Failure, Frame, Interp, ItemDone, MAX_DEPTH, NO_LOG, RoleFrom};
use crate::playbook::model::{Action, Cond, Loop, LoopKind, Module, Task};
use crate::playbook::modules::{self, ModuleCtx, ModuleError, ModuleResult};
use crate::playbook::process::ProcessError;
use crate::playbook::{LogSink, Vars};

impl Interp<'_, '_> {
    /// A task with an action (not a block): conditions, loop, register, failure.
    pub(super) async fn task(&mut self, task: &Task, frame: &Frame) -> Result<(), Failure> {
        let mut tf = frame.clone();
        tf.task_vars.extend(task.vars.clone());
        tf.environment.extend(task.environment.iter().cloned());
        let vars = self.vars(&tf);
        let name = self.task_name(task, frame, &vars);
        self.log.line("");
        let header = if frame.handler {
            "RUNNING HANDLER"
        } else {
            "TASK"
        };
        self.log.line(&format!("{header} [{name}]"));
        // An unreadable `no_log` hides the output: the safe side.
        let no_log = self
            .flag(task.no_log.as_ref().or(frame.no_log.as_ref()), &vars)
            .unwrap_or(true);
        let ignore = self
            .flag(
                task.ignore_errors.as_ref().or(frame.ignore_errors.as_ref()),
                &vars,
            )
            .unwrap_or(false);
        // Included files and roles inherit these keywords (like an import would).
        tf.no_log = task.no_log.clone().or(frame.no_log.clone());
        tf.ignore_errors = task.ignore_errors.clone().or(frame.ignore_errors.clone());
        let mut when = frame.when.clone();
        when.extend(task.when.iter().cloned());
        // An import's `when` is not evaluated here: it goes onto each imported task, so a
        // task that changes what the condition reads affects the later ones (Ansible).
        let import = task.looping.is_none()
            && match &task.action {
                Action::Tasks { import, .. } => *import,
                Action::Role { import, name, .. } => *import && !self.ctx.native.has(name),
                _ => false,
            };
        if import {
            tf.when = std::mem::take(&mut when);
        }

        let result = match &task.looping {
            None => {
                let done = self.item(task, &tf, &when, None, &name, no_log).await?;
                self.show(&done, no_log, None);
                done
            }
            Some(l) => {
                self.looped(task, l, &tf, &when, &vars, &name, no_log)
                    .await?
            }
        };
        let registered = Value::Object(result.result.clone());
        if !result.included {
            let shown = if no_log {
                json!({"censored": NO_LOG, "changed": result.flag("changed"),
                       "failed": result.flag("failed"), "skipped": result.flag("skipped")})
            } else {
                registered.clone()
            };
            self.ctx.log.task_result(
                &json!({"task": name, "action": task.action.label(), "result": shown}),
            );
        }
        if let Some(reg) = &task.register {
            self.host.insert(reg.clone(), registered.clone());
        }
        if !result.flag("failed") {
            if !result.included {
                self.count(&result);
            }
            if result.flag("changed")
                && !task.notify.is_empty()
                && let Err(msg) = self.notify(task)
            {
                self.log.host(&format!("FAILED: {msg}"));
                self.stats.failed += 1;
                return Err(self.failure(&task.pos, &name, msg, Value::Null));
            }
            return Ok(());
        }
        if ignore {
            self.log.host("...ignoring");
            self.stats.ignored += 1;
            return Ok(());
        }
        self.stats.failed += 1;
        let msg = if no_log {
            NO_LOG.to_string()
        } else {
            describe_failure(&result.result)
        };
        let shown = if no_log {
            json!({"censored": NO_LOG})
        } else {
            registered
        };
        Err(self.failure(&task.pos, &name, msg, shown))
    }

    #[allow(clippy::too_many_arguments)]
    async fn looped(
        &mut self,
        task: &Task,
        l: &Loop,
        tf: &Frame,
        when: &[Cond],
        vars: &Vars,
        name: &str,
        no_log: bool,
    ) -> Result<ItemDone, Failure> {
        let items = match self.loop_items(l, vars) {
            Ok(items) => items,
            Err(msg) => {
                let done = ItemDone::failed(msg);
                self.show(&done, no_log, None);
                return Ok(done);
            }
        };
        if items.is_empty() {
            let done = ItemDone::skipped("No items in the list");
            self.show(&done, no_log, None);
            return Ok(done.with_results(Vec::new()));
        }
        let n = items.len();
        let mut results = Vec::with_capacity(n);
        let (mut changed, mut failed, mut all_skipped) = (false, None, true);
        for (i, item) in items.iter().enumerate() {
            let done = self
                .item(task, tf, when, Some((l, item, i, n)), name, no_log)
                .await?;
            let label = if no_log {
                "(censored due to no_log)".to_string()
            } else {
                self.label(l, item, vars)
            };
            self.show(&done, no_log, Some(&label));
            changed |= done.flag("changed");
            all_skipped &= done.flag("skipped");
            if done.flag("failed") && failed.is_none() {
                failed = Some(format!("item {label}: {}", describe_failure(&done.result)));
            }
            let mut r = done.result;
            r.insert(l.var.clone(), item.clone());
            r.insert("ansible_loop_var".into(), json!(l.var));
            results.push(Value::Object(r));
        }
        let mut done = ItemDone::ok(changed);
        if all_skipped {
            done.result.insert("skipped".into(), Value::Bool(true));
        }
        match failed {
            Some(first) => {
                done.result.insert("failed".into(), Value::Bool(true));
                done.result.insert(
                    "msg".into(),
                    json!(format!("one or more items failed; first: {first}")),
                );
            }
            None => {
                done.result
                    .insert("msg".into(), json!("All items completed"));
            }
        }
        Ok(done.with_results(results))
    }

    fn loop_items(&self, l: &Loop, vars: &Vars) -> Result<Vec<Value>, String> {
        let v = self
            .templar
            .render(&l.items, vars)
            .map_err(|e| format!("loop: {e}"))?;
        Ok(match (l.kind, v) {
            (LoopKind::Loop, Value::Array(a)) => a,
            (LoopKind::WithItems, Value::Array(a)) => a
                .into_iter()
                .flat_map(|x| match x {
                    Value::Array(inner) => inner,
                    other => vec![other],
                })
                .collect(),
            (LoopKind::WithItems, Value::Null) => Vec::new(),
            (
                LoopKind::WithItems,
                other @ (Value::String(_) | Value::Number(_) | Value::Bool(_)),
            ) => vec![other],
            (LoopKind::WithDict, Value::Object(o)) => o
                .into_iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect(),
            (LoopKind::WithDict, other) => {
                return Err(format!("with_dict expects a mapping, found {other}"));
            }
            (LoopKind::WithSequence, Value::String(spec)) => super::sequence::sequence(&spec)?,
            (LoopKind::WithTogether, Value::Array(lists)) => {
                let lists: Vec<Vec<Value>> = lists
                    .into_iter()
                    .map(|l| match l {
                        Value::Array(a) => a,
                        other => vec![other],
                    })
                    .collect();
                let n = lists.iter().map(Vec::len).max().unwrap_or(0);
                (0..n)
                    .map(|i| {
                        Value::Array(
                            lists
                                .iter()
                                .map(|l| l.get(i).cloned().unwrap_or(Value::Null))
                                .collect(),
                        )
                    })
                    .collect()
            }
            (LoopKind::WithSubelements, Value::Array(args)) => {
                let (Some(Value::Array(list)), Some(Value::String(key))) =
                    (args.first(), args.get(1))
                else {
                    return Err("with_subelements expects a list and a key".into());
                };
                let skip_missing = args
                    .get(2)
                    .and_then(|f| f.get("skip_missing"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let mut out = Vec::new();
                for elem in list {
                    match elem.get(key.as_str()) {
                        Some(Value::Array(subs)) => {
                            out.extend(subs.iter().map(|s| json!([elem, s])));
                        }
                        None if skip_missing => {}
                        _ => {
                            return Err(format!(
                                "could not find '{key}' key in iterated item '{elem}'"
                            ));
                        }
                    }
                }
                out
            }
            (LoopKind::WithFileglob, patterns) => {
                let mut v = vars.clone();
                v.set_verbatim("__gantry_patterns", patterns);
                match self
                    .templar
                    .render(&json!("{{ query('fileglob', __gantry_patterns) }}"), &v)
                    .map_err(|e| format!("with_fileglob: {e}"))?
                {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                }
            }
            (_, other) => return Err(format!("loop expects a list, found {other}")),
        })
    }

    fn label(&self, l: &Loop, item: &Value, vars: &Vars) -> String {
        if let Some(label) = &l.label {
            let mut v = vars.clone();
            v.set_verbatim(l.var.clone(), item.clone());
            if let Ok(s) = self.templar.render_string(label, &v) {
                return s;
            }
        }
        match item {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// One run of the action: conditions, then the module or include.
    async fn item(
        &mut self,
        task: &Task,
        tf: &Frame,
        when: &[Cond],
        item: Option<(&Loop, &Value, usize, usize)>,
        name: &str,
        no_log: bool,
    ) -> Result<ItemDone, Failure> {
        let mut f = tf.clone();
        if let Some((l, value, i, n)) = item {
            f.verbatim.insert(l.var.clone(), value.clone());
            f.verbatim.insert("ansible_loop_var".into(), json!(l.var));
            if let Some(iv) = &l.index_var {
                f.verbatim.insert(iv.clone(), json!(i));
            }
            if l.extended {
                f.verbatim.insert(
                    "ansible_loop".into(),
                    json!({"index": i + 1, "index0": i, "first": i == 0, "last": i + 1 == n, "length": n,
                           "revindex": n - i, "revindex0": n - i - 1}),
                );
            }
        }
        let vars = self.vars(&f);
        match self.conds(when, &vars) {
            Ok(true) => {}
            Ok(false) => return Ok(ItemDone::skipped("Conditional result was False")),
            Err(msg) => return Ok(ItemDone::failed(msg)),
        }
        match &task.action {
            Action::Module { module, args } => {
                self.module(task, *module, args, &f, vars, name, no_log)
                    .await
            }
            Action::Role {
                name: role,
                tasks_from,
                vars_from,
                defaults_from,
                params,
                import,
            } => {
                let render = |s: &Option<String>| -> Result<Option<String>, String> {
                    s.as_ref()
                        .map(|s| {
                            self.templar
                                .render_string(s, &vars)
                                .map_err(|e| e.to_string())
                        })
                        .transpose()
                };
                let (role, from) = match (
                    self.templar
                        .render_string(role, &vars)
                        .map_err(|e| e.to_string()),
                    render(tasks_from),
                    render(vars_from),
                    render(defaults_from),
                ) {
                    (Ok(r), Ok(tasks), Ok(vars), Ok(defaults)) => (
                        r,
                        RoleFrom {
                            tasks,
                            vars,
                            defaults,
                        },
                    ),
                    (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
                        return Ok(ItemDone::failed(e));
                    }
                };
                let mut rf = f;
                rf.params.extend(task.vars.clone());
                rf.params.extend(params.clone());
                // `when` of an include applies to the include, once; an import's is
                // on the frame, for each task of the role.
                if !import {
                    rf.when.clear();
                }
                if !self.ctx.native.has(&role) && !no_log {
                    self.log.host(&format!("included: role {role}"));
                }
                self.role(&task.pos, &role, &from, rf).await
            }
            Action::Tasks { file, import } => {
                let file = match self.templar.render_string(file, &vars) {
                    Ok(f) => f,
                    Err(e) => return Ok(ItemDone::failed(e.to_string())),
                };
                let path = task.pos.dir().join(&file);
                if f.depth > MAX_DEPTH {
                    return Ok(ItemDone::failed(format!(
                        "{file} included too deeply (a loop?)"
                    )));
                }
                let tasks = match self.load_tasks(&path) {
                    Ok(t) => t,
                    Err(msg) => return Ok(ItemDone::failed(msg)),
                };
                if !no_log {
                    self.log
                        .host(&format!("included: {}", self.files.display(&path)));
                }
                let mut inner = f;
                if !import {
                    inner.when.clear();
                }
                inner.depth += 1;
                self.run_tasks(&tasks, &inner).await?;
                Ok(ItemDone::included())
            }
            Action::Block { .. } => Ok(ItemDone::failed("a block cannot loop")),
            // Run by `run_tasks` (flush_handlers) or nothing to do here.
            Action::Meta { .. } => Ok(ItemDone::ok(false)),
        }
    }

    /// A module run, with `changed_when`, `failed_when` and `until`/`retries`/`delay`.
    #[allow(clippy::too_many_arguments)]
    async fn module(
        &mut self,
        task: &Task,
        module: Module,
        args: &Value,
        f: &Frame,
        mut vars: Vars,
        name: &str,
        no_log: bool,
    ) -> Result<ItemDone, Failure> {
        let env = match self.environment(f, &vars) {
            Ok(e) => e,
            Err(msg) => return Ok(ItemDone::failed(msg)),
        };
        let mut search: Vec<PathBuf> = f.role.iter().map(|r| r.dir.clone()).collect();
        search.push(self.playbook_dir.clone());
        let number = |v: &Option<Value>, default: u64, vars: &Vars| -> u64 {
            v.as_ref()
                .and_then(|v| self.templar.render(v, vars).ok())
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                })
                .unwrap_or(default)
        };
        let retries = number(&task.retries, 3, &vars);
        let delay = number(&task.delay, 5, &vars);
        let mut attempt = 0u64;
        let r = loop {
            attempt += 1;
            let run = {
                let log = &self.log;
                let emit = |line: &str| log.host(line);
                let mctx = ModuleCtx {
                    work_dir: self.ctx.work_dir,
                    vars: &vars,
                    templar: &self.templar,
                    env: &env,
                    cancel: &self.ctx.cancel,
                    on_line: if no_log { None } else { Some(&emit) },
                    search: &search,
                };
                modules::run(module, args, &mctx).await
            };
            let mut r = match run {
                Ok(r) => r,
                Err(ModuleError::Process(ProcessError::Cancelled)) => {
                    return Err(self.cancelled(&task.pos, name));
                }
                Err(e) => ModuleResult::fail(e.to_string()),
            };
            let bind = |vars: &mut Vars, r: &ModuleResult| {
                if let Some(reg) = &task.register {
                    vars.set_verbatim(reg.clone(), Value::Object(r.result.clone()));
                }
            };
            bind(&mut vars, &r);
            if let Some(c) = &task.changed_when {
                match self.conds(c, &vars) {
                    Ok(b) => {
                        r.result.insert("changed".into(), Value::Bool(b));
                    }
                    Err(msg) => r = ModuleResult::fail(msg),
                }
                bind(&mut vars, &r);
            }
            if let Some(c) = &task.failed_when {
                match self.conds(c, &vars) {
                    Ok(b) => {
                        r.result.insert("failed".into(), Value::Bool(b));
                        r.result.insert("failed_when_result".into(), Value::Bool(b));
                        if b && r
                            .result
                            .get("msg")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .is_empty()
                        {
                            r.result
                                .insert("msg".into(), json!("the failed_when condition was met"));
                        }
                    }
                    Err(msg) => r = ModuleResult::fail(msg),
                }
                bind(&mut vars, &r);
            }
            let Some(until) = &task.until else { break r };
            r.result.insert("attempts".into(), json!(attempt));
            bind(&mut vars, &r);
            match self.conds(until, &vars) {
                Ok(true) => break r,
                Ok(false) if attempt > retries => {
                    r.result.insert("failed".into(), Value::Bool(true));
                    if r.result
                        .get("msg")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                    {
                        r.result.insert(
                            "msg".into(),
                            json!(format!(
                                "the until condition was not met after {attempt} attempts"
                            )),
                        );
                    }
                    break r;
                }
                Ok(false) => {
                    self.log.host(&format!(
                        "FAILED - RETRYING: {name} ({} retries left).",
                        retries + 1 - attempt
                    ));
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(delay)) => {}
                        _ = self.ctx.cancel.cancelled() => return Err(self.cancelled(&task.pos, name)),
                    }
                }
                Err(msg) => break ModuleResult::fail(msg),
            }
        };
        if !r.failed() {
            for (k, v) in &r.facts {
                self.host.insert(k.clone(), v.clone());
            }
            if r.cacheable {
                self.cache_facts(&r.facts);
            }
            if let Some(ret) = &r.returned {
                self.log.add_secrets(ret);
                self.returned.merge(ret.clone());
            }
        }
        let mut done = ItemDone::from_module(r);
        if no_log {
            done.display.clear();
        }
        Ok(done)
    }

    /// The status line of a task or loop item, and what it displays.
    pub(super) fn show(&self, d: &ItemDone, no_log: bool, item: Option<&str>) {
        if d.included && !d.flag("failed") {
            return;
        }
        let item = item.map(|l| format!("Item: {l}")).unwrap_or_default();
        let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a} {b}"),
        };
        if d.flag("skipped") {
            let reason = d
                .result
                .get("skip_reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            let text = join(&item, reason);
            self.log.host(&if text.is_empty() {
                "skipping".to_string()
            } else {
                format!("skipping: {text}")
            });
            return;
        }
        if d.flag("failed") {
            let msg = if no_log {
                NO_LOG.to_string()
            } else {
                describe_failure(&d.result)
            };
            self.log.host(&format!("FAILED: {}", join(&item, &msg)));
            return;
        }
        let status = if d.flag("changed") { "changed" } else { "ok" };
        let detail = if no_log {
            item
        } else {
            join(&item, d.summary.as_deref().unwrap_or(""))
        };
        if detail.is_empty() {
            self.log.host(status);
        } else {
            self.log.host(&format!("{status}: {detail}"));
        }
        if !no_log {
            for line in &d.display {
                self.log.host(line);
            }
        }
    }
}

impl ItemDone {
    fn with_results(mut self, results: Vec<Value>) -> ItemDone {
        self.result.insert("results".into(), Value::Array(results));
        self
    }
}

/// A task failure in one line (or a few): the message, and for commands the return code
/// and the end of stderr.
pub(super) fn describe_failure(r: &Map<String, Value>) -> String {
    let msg = r.get("msg").and_then(Value::as_str).unwrap_or("failed");
    if let Some(Value::String(that)) = r.get("assertion") {
        return format!("{msg} (that: {that})");
    }
    let Some(rc) = r.get("rc") else {
        return msg.to_string();
    };
    let stderr = r.get("stderr").and_then(Value::as_str).unwrap_or("");
    // The end of stderr is where a failing command says why.
    const STDERR_LINES: usize = 20;
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join("\n");
    if tail.is_empty() {
        format!("{msg} (rc {rc})")
    } else {
        format!("{msg} (rc {rc}); stderr: {tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_rc_and_stderr() {
        let r = json!({"msg": "non-zero return code", "rc": 2, "stderr": "a\nb"});
        assert_eq!(
            describe_failure(r.as_object().unwrap()),
            "non-zero return code (rc 2); stderr: a\nb"
        );
        let r = json!({"msg": "boom"});
        assert_eq!(describe_failure(r.as_object().unwrap()), "boom");
    }
}
