//! Running a playbook: plays, roles, tasks, blocks, loops, conditions and includes, on
//! this machine, in the job's work directory.
//!
//! Owns: variable precedence, `when`/`failed_when`/`changed_when`/`until`, loops and what
//! `register` stores, `block`/`rescue`/`always`, roles (native first, then
//! `roles/<name>/`), the Zuul-like task log, and the outcome handed to the runner (error
//! with `file:line`, `zuul_return` data, facts). Every line it writes is redacted of the
//! secrets it knows: the runner's secrets and `secret_data` returned during the run. Must
//! not: print (text goes to the [`LogSink`]), know about registries or builds (native
//! roles do that), or run anything after cancellation. One task's own run (conditions,
//! loop, module or include, register, log lines) is in `interp/task.rs`.
//!
//! Variable precedence, lowest first — Ansible's order for what a Zuul job uses:
//! role defaults < the runner's variables (Zuul's inventory: job vars, parent data) <
//! play vars and `vars_files` < role vars < block and task vars, role parameters < facts
//! and registered results < loop variables < the runner's secrets, `zuul` and
//! `zuul_success` (Zuul passes these as extra vars, which nothing overrides).
//!
//! Simplifications, all of them Ansible-compatible for playbooks that do not depend on
//! the difference: `import_role`/`import_tasks` run when reached, like their `include_`
//! forms (a `when` on them is evaluated once, not copied onto every task); role vars and
//! defaults are visible inside the role only; a role's `meta/main.yaml` dependencies run
//! before it every time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::check::{
    self, find_role, native_note, native_replaces, role_dependencies, role_dirs, role_file,
    role_not_found,
};
use super::model::{Action, Cond, Files, Flag, Play, PlaybookError, Pos, RoleRef, Task};
use super::modules::ModuleResult;
use super::redact::Redactor;
use super::template::is_template;
use super::{LogSink, NativeRoles, Returned, RoleCall, Templar, Vars};

mod task;

/// Everything a playbook run needs from the runner.
pub struct PlaybookContext<'a> {
    /// Where `roles/<name>/` is looked up (besides `roles/` beside the playbook), and what
    /// file names in messages are relative to.
    pub project_dir: &'a Path,
    /// The working directory of `shell`/`command`, and the base of relative paths of
    /// `copy`, `template`, `file`, `stat` and `zuul_return: file`.
    pub work_dir: &'a Path,
    /// Variables merged by the runner (`zuul`, job vars, parent data; secrets set with
    /// [`Vars::set_unsafe`]).
    pub vars: Vars,
    pub native: &'a dyn NativeRoles,
    pub log: &'a dyn LogSink,
    /// Cancelling stops the playbook: a running command's process group is killed, a
    /// native role's future dropped, and no further task (not even `always`) runs.
    pub cancel: CancellationToken,
}

/// How a playbook ended.
#[derive(Clone, Debug, Default)]
pub struct PlaybookOutcome {
    pub ok: bool,
    /// `file:line: task NAME: message` of the failure that ended the playbook (redacted).
    pub error: Option<String>,
    /// Every `zuul_return` of the run (and native roles' returned data), merged.
    pub returned: Returned,
    /// Facts set with `set_fact` and by native roles.
    pub facts: Map<String, Value>,
}

/// Runs a playbook. `Err` when the playbook itself is invalid (unreadable, bad YAML,
/// unknown module, keyword or role): nothing ran then. A task failing is `Ok` with
/// `ok: false`.
pub async fn run_playbook(
    path: &Path,
    ctx: &PlaybookContext<'_>,
) -> Result<PlaybookOutcome, PlaybookError> {
    let (files, plays, errors) = load(path, ctx.project_dir, ctx.native);
    if !errors.is_empty() {
        return Err(PlaybookError::from_list(errors));
    }
    let playbook_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut redactor = Redactor::default();
    redactor.add(ctx.vars.secret_strings());
    let mut interp = Interp {
        ctx,
        files,
        playbook_dir,
        templar: Templar::new(),
        log: Log {
            sink: ctx.log,
            redactor: RwLock::new(redactor),
        },
        host: Map::new(),
        facts: Map::new(),
        returned: Returned::default(),
        stats: Stats::default(),
        task_files: HashMap::new(),
        machine: machine_vars(),
        handlers: Vec::new(),
    };
    Ok(interp.playbook(&plays).await)
}

/// Checks a playbook without running it: YAML, plays, keywords, modules and their
/// parameters, roles and statically named included files. Every problem is returned.
pub fn check_playbook(
    path: &Path,
    project_dir: &Path,
    native: &dyn NativeRoles,
) -> Result<(), Vec<PlaybookError>> {
    let (_, _, errors) = load(path, project_dir, native);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Reads and checks a playbook: its plays, and every problem of the file and of what it
/// names (roles, included files).
fn load(
    path: &Path,
    project_dir: &Path,
    native: &dyn NativeRoles,
) -> (Files, Vec<Play>, Vec<PlaybookError>) {
    let files = Files {
        project_dir: project_dir.to_path_buf(),
    };
    let (plays, mut errors) = files.playbook(path);
    let playbook_dir = path.parent().unwrap_or(Path::new("."));
    errors.extend(check::plays(&plays, &files, playbook_dir, native));
    (files, plays, errors)
}

/// The log with redaction of the secrets known so far.
struct Log<'c> {
    sink: &'c dyn LogSink,
    redactor: RwLock<Redactor>,
}

impl Log<'_> {
    fn redact(&self, text: &str) -> String {
        let r = self.redactor.read().unwrap_or_else(|p| p.into_inner());
        if r.is_empty() {
            text.to_string()
        } else {
            r.apply(text)
        }
    }

    /// A line about the host (`localhost | …`), as Zuul's job-output writes them.
    fn host(&self, text: &str) {
        self.line(&format!("localhost | {text}"));
    }

    fn add_secrets(&self, returned: &Returned) {
        if returned.secret_data.is_empty() {
            return;
        }
        let strings = super::redact::secret_leaves(&Value::Object(returned.secret_data.clone()));
        self.redactor
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(strings);
    }
}

impl LogSink for Log<'_> {
    fn line(&self, line: &str) {
        self.sink.line(&self.redact(line));
    }
}

/// The lowest variables: Ansible's magic variables for the one host, and the facts about
/// this machine that playbooks use without gathering facts.
fn machine_vars() -> Vars {
    let mut v = Vars::default();
    v.set("inventory_hostname", json!("localhost"));
    v.set("inventory_hostname_short", json!("localhost"));
    v.set("ansible_check_mode", json!(false));
    let env: Map<String, Value> = std::env::vars().map(|(k, x)| (k, json!(x))).collect();
    v.set(
        "ansible_user_dir",
        env.get("HOME").cloned().unwrap_or(json!("/")),
    );
    v.set(
        "ansible_user_id",
        env.get("USER").cloned().unwrap_or(json!("")),
    );
    v.set_verbatim("ansible_env", Value::Object(env));
    v.set("ansible_architecture", json!(std::env::consts::ARCH));
    v.set("ansible_system", json!("Linux"));
    v
}

/// Where a `no_log` native role's lines go.
struct Silent;

impl LogSink for Silent {
    fn line(&self, _: &str) {}
}

/// The variable whose mapping is the base environment of every command.
pub const GANTRY_ENVIRONMENT: &str = "gantry_environment";

const NO_LOG: &str =
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result";

/// Includes deeper than this are a loop (a file including itself).
const MAX_DEPTH: usize = 64;

#[derive(Default)]
struct Stats {
    ok: usize,
    changed: usize,
    failed: usize,
    skipped: usize,
    rescued: usize,
    ignored: usize,
}

/// A failure that ends the enclosing block, role or play.
#[derive(Debug)]
struct Failure {
    /// `file:line` of the task.
    at: String,
    task: String,
    msg: String,
    /// What the task registered (for `ansible_failed_result` in `rescue`).
    result: Value,
    cancelled: bool,
}

impl Failure {
    fn text(&self) -> String {
        format!("{}: task {}: {}", self.at, self.task, self.msg)
    }
}

/// What is in scope where a task runs.
#[derive(Clone, Default)]
struct Frame {
    defaults: Map<String, Value>,
    play: Map<String, Value>,
    role_vars: Map<String, Value>,
    task_vars: Map<String, Value>,
    /// Loop variables and `ansible_failed_*`: values, never templated again.
    verbatim: Map<String, Value>,
    role: Option<Arc<RoleInfo>>,
    /// `when` of enclosing blocks (each task evaluates them, as Ansible does).
    when: Vec<Cond>,
    /// `environment` of enclosing plays and blocks, outermost first.
    environment: Vec<Value>,
    no_log: Option<Flag>,
    ignore_errors: Option<Flag>,
    depth: usize,
    /// Running a handler (the log says RUNNING HANDLER).
    handler: bool,
}

struct RoleInfo {
    name: String,
    dir: PathBuf,
}

/// One run of a task's action (one loop item).
#[derive(Debug, Default)]
struct ItemDone {
    result: Map<String, Value>,
    display: Vec<String>,
    summary: Option<String>,
    /// An include whose tasks logged themselves: no status line.
    included: bool,
}

impl ItemDone {
    fn from_module(r: ModuleResult) -> ItemDone {
        ItemDone {
            result: r.result,
            display: r.display,
            summary: r.summary,
            included: false,
        }
    }

    fn ok(changed: bool) -> ItemDone {
        ItemDone::from_module(ModuleResult::ok(changed))
    }

    fn failed(msg: impl Into<String>) -> ItemDone {
        ItemDone::from_module(ModuleResult::fail(msg))
    }

    fn skipped(reason: &str) -> ItemDone {
        let mut d = ItemDone::ok(false);
        d.result.insert("skipped".into(), Value::Bool(true));
        d.result.insert("skip_reason".into(), json!(reason));
        d
    }

    fn included() -> ItemDone {
        ItemDone {
            included: true,
            ..ItemDone::ok(false)
        }
    }

    fn flag(&self, k: &str) -> bool {
        self.result.get(k) == Some(&Value::Bool(true))
    }
}

/// Which files of a role to use.
#[derive(Default)]
struct RoleFrom {
    tasks: Option<String>,
    vars: Option<String>,
    defaults: Option<String>,
}

struct Interp<'c, 'a> {
    ctx: &'c PlaybookContext<'a>,
    files: Files,
    playbook_dir: PathBuf,
    templar: Templar,
    log: Log<'c>,
    /// Facts and registered results: visible to every later task and play.
    host: Map<String, Value>,
    /// Facts only (the outcome).
    facts: Map<String, Value>,
    returned: Returned,
    stats: Stats,
    task_files: HashMap<PathBuf, Arc<Vec<Task>>>,
    /// Magic variables and the few facts about this machine playbooks use.
    machine: Vars,
    /// The current play's handlers (its own, then those of the roles it ran).
    handlers: Vec<Handler>,
}

struct Handler {
    task: Task,
    /// Where it was defined (a role's handlers see the role's variables).
    frame: Frame,
    /// The role's `handlers/main.yaml`, for role handlers (loaded once per play).
    file: Option<PathBuf>,
    notified: bool,
}

impl Interp<'_, '_> {
    async fn playbook(&mut self, plays: &[Play]) -> PlaybookOutcome {
        let mut failure = None;
        for play in plays {
            if let Err(f) = self.play(play).await {
                failure = Some(f);
                break;
            }
        }
        let s = &self.stats;
        let recap = format!(
            "ok: {} changed: {} unreachable: 0 failed: {} skipped: {} rescued: {} ignored: {}",
            s.ok, s.changed, s.failed, s.skipped, s.rescued, s.ignored
        );
        self.log.line("");
        self.log.line("PLAY RECAP");
        self.log.host(&recap);
        let error = failure.map(|f| self.log.redact(&f.text()));
        PlaybookOutcome {
            ok: error.is_none(),
            error,
            returned: std::mem::take(&mut self.returned),
            facts: std::mem::take(&mut self.facts),
        }
    }

    async fn play(&mut self, play: &Play) -> Result<(), Failure> {
        self.log.line("");
        self.log.line(&format!(
            "PLAY [{}]",
            play.name.as_deref().unwrap_or("localhost")
        ));
        let mut frame = Frame {
            play: play.vars.clone(),
            environment: play.environment.iter().cloned().collect(),
            ..Frame::default()
        };
        for (pos, file) in &play.vars_files {
            let vars = self.vars(&frame);
            let loaded = self
                .templar
                .render(&Value::String(file.clone()), &vars)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    let f = f
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| f.to_string());
                    self.files
                        .vars(&pos.dir().join(f))
                        .map_err(|e| e.to_string())
                });
            match loaded {
                Ok(m) => frame.play.extend(m),
                Err(msg) => return Err(self.failure(pos, "vars_files", msg, Value::Null)),
            }
        }
        self.handlers = play
            .handlers
            .iter()
            .map(|t| Handler {
                task: t.clone(),
                frame: frame.clone(),
                file: None,
                notified: false,
            })
            .collect();
        // Notified handlers run after each section, as in Ansible.
        self.run_tasks(&play.pre_tasks, &frame).await?;
        self.flush_handlers().await?;
        for r in &play.roles {
            self.play_role(r, &frame).await?;
        }
        self.run_tasks(&play.tasks, &frame).await?;
        self.flush_handlers().await?;
        self.run_tasks(&play.post_tasks, &frame).await?;
        self.flush_handlers().await
    }

    /// Marks the handlers a changed task notifies (by name, `role : name`, or `listen`).
    fn notify(&mut self, task: &Task) -> Result<(), String> {
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

    async fn flush_handlers(&mut self) -> Result<(), Failure> {
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
    fn role_handlers(&mut self, dir: &Path, rf: &Frame) -> Result<(), String> {
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

    fn failure(&self, pos: &Pos, task: &str, msg: String, result: Value) -> Failure {
        Failure {
            at: pos.short(),
            task: task.to_string(),
            msg,
            result,
            cancelled: false,
        }
    }

    fn cancelled(&self, pos: &Pos, task: &str) -> Failure {
        Failure {
            cancelled: true,
            ..self.failure(pos, task, "cancelled".into(), Value::Null)
        }
    }

    fn run_tasks<'s>(
        &'s mut self,
        tasks: &'s [Task],
        frame: &'s Frame,
    ) -> BoxFuture<'s, Result<(), Failure>> {
        Box::pin(async move {
            for t in tasks {
                if self.ctx.cancel.is_cancelled() {
                    return Err(
                        self.cancelled(&t.pos, t.name.as_deref().unwrap_or(t.action.label()))
                    );
                }
                match &t.action {
                    Action::Block {
                        block,
                        rescue,
                        always,
                    } => self.block(t, block, rescue, always, frame).await?,
                    _ => self.task(t, frame).await?,
                }
            }
            Ok(())
        })
    }

    async fn block(
        &mut self,
        task: &Task,
        block: &[Task],
        rescue: &[Task],
        always: &[Task],
        frame: &Frame,
    ) -> Result<(), Failure> {
        // A block's keywords are inherited by its tasks.
        let mut bf = frame.clone();
        bf.task_vars.extend(task.vars.clone());
        bf.when.extend(task.when.iter().cloned());
        bf.environment.extend(task.environment.iter().cloned());
        if task.no_log.is_some() {
            bf.no_log = task.no_log.clone();
        }
        if task.ignore_errors.is_some() {
            bf.ignore_errors = task.ignore_errors.clone();
        }
        let mut result = self.run_tasks(block, &bf).await;
        if let Err(f) = &result
            && !f.cancelled
            && !rescue.is_empty()
        {
            let mut rf = bf.clone();
            rf.verbatim.insert(
                "ansible_failed_task".into(),
                json!({"name": f.task, "position": f.at}),
            );
            rf.verbatim
                .insert("ansible_failed_result".into(), f.result.clone());
            result = self.run_tasks(rescue, &rf).await;
            if result.is_ok() {
                // A rescued failure is not a failure of the play.
                self.stats.rescued += 1;
                self.stats.failed = self.stats.failed.saturating_sub(1);
            }
        }
        let cancelled = matches!(&result, Err(f) if f.cancelled) || self.ctx.cancel.is_cancelled();
        if !always.is_empty() && !cancelled {
            let after = self.run_tasks(always, &bf).await;
            // The block's own failure is the one reported; `always` failing fails a block
            // that had succeeded.
            if result.is_ok() {
                result = after;
            }
        }
        result
    }

    /// The variables a task sees (see the module header for the precedence).
    fn vars(&self, f: &Frame) -> Vars {
        let mut v = self.machine.clone();
        v.set(
            "playbook_dir",
            json!(self.playbook_dir.display().to_string()),
        );
        for (k, x) in &f.defaults {
            v.set(k.clone(), x.clone());
        }
        for (k, var) in &self.ctx.vars.map {
            if !top_level(k, var) {
                v.map.insert(k.clone(), var.clone());
            }
        }
        for layer in [&f.play, &f.role_vars, &f.task_vars] {
            for (k, x) in layer {
                v.set(k.clone(), x.clone());
            }
        }
        if let Some(r) = &f.role {
            v.set("role_name", json!(r.name));
            v.set("role_path", json!(r.dir.display().to_string()));
        }
        for layer in [&self.host, &f.verbatim] {
            for (k, x) in layer {
                v.set_verbatim(k.clone(), x.clone());
            }
        }
        for (k, var) in &self.ctx.vars.map {
            if top_level(k, var) {
                v.map.insert(k.clone(), var.clone());
            }
        }
        v
    }

    fn conds(&self, conds: &[Cond], vars: &Vars) -> Result<bool, String> {
        for c in conds {
            let holds = match c {
                Cond::Bool(b) => *b,
                Cond::Expr(e) => self
                    .templar
                    .condition(e, vars)
                    .map_err(|err| format!("the conditional check '{e}' failed: {err}"))?,
            };
            if !holds {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn flag(&self, f: Option<&Flag>, vars: &Vars) -> Result<bool, String> {
        match f {
            None => Ok(false),
            Some(c) => self.conds(std::slice::from_ref(c), vars),
        }
    }

    fn environment(&self, f: &Frame, vars: &Vars) -> Result<Vec<(String, String)>, String> {
        let mut env: Vec<(String, String)> = Vec::new();
        // `gantry_environment` (set by the runner, e.g. for a trigger's parameters) is the
        // base environment of every command; plays, blocks and tasks add to it.
        let base = vars
            .get(GANTRY_ENVIRONMENT)
            .cloned()
            .map(|v| vec![v])
            .unwrap_or_default();
        for layer in base.iter().chain(f.environment.iter()) {
            let rendered = self
                .templar
                .render(layer, vars)
                .map_err(|e| format!("environment: {e}"))?;
            let Value::Object(m) = rendered else {
                return Err(format!("environment must be a mapping, found {rendered}"));
            };
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                env.retain(|(x, _)| *x != k);
                env.push((k, v));
            }
        }
        Ok(env)
    }

    fn task_name(&self, task: &Task, f: &Frame, vars: &Vars) -> String {
        let base = match &task.name {
            Some(n) if is_template(n) => self
                .templar
                .render_string(n, vars)
                .unwrap_or_else(|_| n.clone()),
            Some(n) => n.clone(),
            None => match &task.action {
                Action::Role { name, .. } => format!("include_role : {name}"),
                Action::Tasks { file } => format!("include_tasks : {file}"),
                a => a.label().to_string(),
            },
        };
        match &f.role {
            Some(r) => format!("{} : {base}", r.name),
            None => base,
        }
    }

    async fn play_role(&mut self, r: &RoleRef, frame: &Frame) -> Result<(), Failure> {
        let mut f = frame.clone();
        f.task_vars.extend(r.params.clone());
        let dirs = role_dirs(
            &self.playbook_dir,
            self.ctx.project_dir,
            f.role.as_ref().map(|r| r.dir.as_path()),
        );
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
        let done = self.role(&r.pos, &r.name, &RoleFrom::default(), f).await?;
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

    fn count(&mut self, d: &ItemDone) {
        if d.flag("skipped") {
            self.stats.skipped += 1;
        } else if d.flag("changed") {
            self.stats.changed += 1;
        } else {
            self.stats.ok += 1;
        }
    }

    /// Runs a role with the frame of its caller (parameters already in `task_vars`).
    async fn role(
        &mut self,
        pos: &Pos,
        name: &str,
        from: &RoleFrom,
        mut rf: Frame,
    ) -> Result<ItemDone, Failure> {
        let dirs = role_dirs(
            &self.playbook_dir,
            self.ctx.project_dir,
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
                Err(msg) => ItemDone::failed(msg),
                Ok(out) => {
                    self.log.add_secrets(&out.returned);
                    self.returned.merge(out.returned);
                    for (k, v) in out.facts {
                        self.host.insert(k.clone(), v.clone());
                        self.facts.insert(k, v);
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
            let mut df = rf.clone();
            df.task_vars.extend(params);
            df.depth += 1;
            let done = Box::pin(self.role(pos, &dep, &RoleFrom::default(), df)).await?;
            if done.flag("failed") {
                return Ok(done);
            }
        }
        let role_vars = loaded.pop().unwrap_or_default();
        let defaults = loaded.pop().unwrap_or_default();
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

    fn load_tasks(&mut self, path: &Path) -> Result<Arc<Vec<Task>>, String> {
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

/// The runner's variables nothing in a playbook overrides: secrets, and `zuul` /
/// `zuul_success` (Zuul passes these as extra vars). The rest of the runner's variables
/// are inventory variables, which play, role and task vars override.
fn top_level(name: &str, var: &super::Var) -> bool {
    var.secret || matches!(name, "zuul" | "zuul_success")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_future_is_send() {
        fn send<T: Send>(_: T) {}
        let d = tempfile::tempdir().unwrap();
        struct Sink;
        impl LogSink for Sink {
            fn line(&self, _: &str) {}
        }
        let ctx = PlaybookContext {
            project_dir: d.path(),
            work_dir: d.path(),
            vars: Vars::default(),
            native: &super::super::NoNativeRoles,
            log: &Sink,
            cancel: CancellationToken::new(),
        };
        send(run_playbook(d.path(), &ctx));
    }
}
