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
//! role defaults < the runner's variables (Zuul's inventory `all.vars`: job vars, parent
//! data) < the host's group vars (by group name) < its host vars < facts cached by earlier
//! playbooks < play vars and `vars_files` < role vars < block and task vars, role
//! parameters < facts and registered results < loop variables < the runner's secrets,
//! extra vars, `zuul` and `zuul_success` (Zuul passes these as extra vars, which nothing
//! overrides).
//!
//! Hosts: a play runs on each host its `hosts:` selects from the job's inventory, one
//! host after the other (Ansible's linear strategy interleaves them task by task; every
//! host is this machine, so only the order of lines differs). A host that fails is left
//! out of later plays; the playbook stops when every host of a play failed. `hostvars`
//! shows each host as it was when the play started on the current host.
//!
//! Simplifications, all of them Ansible-compatible for playbooks that do not depend on
//! the difference: `import_role`/`import_tasks` run when reached, like their `include_`
//! forms (a `when` on them is evaluated once, not copied onto every task); role vars and
//! defaults are visible inside the role only; a role's `meta/main.yaml` dependencies run
//! before it every time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::check;
use super::inventory::Inventory;
use super::model::{Action, Cond, Files, Flag, Play, PlaybookError, Pos, Task};
use super::modules::ModuleResult;
use super::redact::Redactor;
use super::template::is_template;
use super::{LogSink, NativeRoles, Returned, Templar, Vars};
use machine::machine_vars;

mod hosts;
mod machine;
mod role;
mod sequence;
mod task;

/// Everything a playbook run needs from the runner.
pub struct PlaybookContext<'a> {
    /// Where `roles/<name>/` is looked up (besides `roles/` beside the playbook), and what
    /// file names in messages are relative to.
    pub project_dir: &'a Path,
    /// Role directories from the job's `roles:` (tenant repositories' `roles/`, bare
    /// roles), searched after the project's own roles.
    pub role_paths: &'a [PathBuf],
    /// The working directory of `shell`/`command`, and the base of relative paths of
    /// `copy`, `template`, `file`, `stat` and `zuul_return: file`.
    pub work_dir: &'a Path,
    /// Variables merged by the runner (`zuul`, job vars, parent data; secrets set with
    /// [`Vars::set_unsafe`]).
    pub vars: Vars,
    /// The job's nodes and groups (`hosts:` patterns select from them), with per-host
    /// variables and facts cached by earlier playbooks.
    pub inventory: &'a Inventory,
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
    /// Per host, the facts that outlive the playbook (Zuul's fact cache): `set_fact`
    /// with `cacheable: true`, and facts set by native roles.
    pub facts: BTreeMap<String, Map<String, Value>>,
}

/// Runs a playbook. `Err` when the playbook itself is invalid (unreadable, bad YAML,
/// unknown module, keyword or role): nothing ran then. A task failing is `Ok` with
/// `ok: false`.
pub async fn run_playbook(
    path: &Path,
    ctx: &PlaybookContext<'_>,
) -> Result<PlaybookOutcome, PlaybookError> {
    let (files, plays, errors) = load(path, ctx.project_dir, ctx.role_paths, ctx.native);
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
            host: RwLock::new("localhost".into()),
        },
        host: Map::new(),
        host_name: String::new(),
        host_states: HashMap::new(),
        failed_hosts: Vec::new(),
        facts: BTreeMap::new(),
        returned: Returned::default(),
        stats: Stats::default(),
        task_files: HashMap::new(),
        machine: machine_vars(),
        magic: Vars::default(),
        inventory_layer: Vec::new(),
        handlers: Vec::new(),
        ran_roles: Vec::new(),
        exported: None,
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
    check_playbook_with(path, project_dir, &[], native)
}

/// [`check_playbook`] with the job's role directories (`roles:`) on the role path.
pub fn check_playbook_with(
    path: &Path,
    project_dir: &Path,
    role_paths: &[PathBuf],
    native: &dyn NativeRoles,
) -> Result<(), Vec<PlaybookError>> {
    let (_, _, errors) = load(path, project_dir, role_paths, native);
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
    role_paths: &[PathBuf],
    native: &dyn NativeRoles,
) -> (Files, Vec<Play>, Vec<PlaybookError>) {
    let files = Files {
        project_dir: project_dir.to_path_buf(),
        role_paths: role_paths.to_vec(),
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
    /// The host the running task is on (`<host> | …` lines).
    host: RwLock<String>,
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

    /// A line about the host (`<host> | …`), as Zuul's job-output writes them.
    fn host(&self, text: &str) {
        let host = self.host.read().unwrap_or_else(|p| p.into_inner()).clone();
        self.line(&format!("{host} | {text}"));
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
    /// `meta: end_play`: the play ends here, successfully.
    end_play: bool,
    /// `meta: end_host`: only for this host.
    end_host: bool,
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
    /// Role parameters and the `vars` of `include_role`/`include_tasks` (Ansible's "role
    /// and include params", above facts).
    params: Map<String, Value>,
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
    /// Facts and registered results of the current host: visible to every later task
    /// and play on that host.
    host: Map<String, Value>,
    /// The current host.
    host_name: String,
    /// Facts and registered results of the other hosts (swapped with `host`).
    host_states: HashMap<String, Map<String, Value>>,
    /// Hosts that failed: later plays leave them out, as Ansible does.
    failed_hosts: Vec<String>,
    /// Per host, the facts that outlive the playbook (the outcome).
    facts: BTreeMap<String, Map<String, Value>>,
    returned: Returned,
    stats: Stats,
    task_files: HashMap<PathBuf, Arc<Vec<Task>>>,
    /// The few facts about this machine playbooks use.
    machine: Vars,
    /// `machine` with the current host's magic variables (`inventory_hostname`,
    /// `groups`, `hostvars`, …).
    magic: Vars,
    /// The current host's inventory variables (group vars, host vars) and cached facts.
    inventory_layer: Vec<(String, super::Var)>,
    /// The current play's handlers (its own, then those of the roles it ran).
    handlers: Vec<Handler>,
    /// Roles the play ran from `roles:` or as dependencies (name and parameters): Ansible
    /// runs each once per play.
    ran_roles: Vec<(String, Map<String, Value>)>,
    /// The defaults and vars of the last role loaded (a play's `roles:` make them visible
    /// to the rest of the play).
    exported: Option<(Map<String, Value>, Map<String, Value>)>,
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
            let (first, stop) = self.play(play).await;
            if failure.is_none() {
                failure = first;
            }
            if stop {
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
        let error = failure.map(|f: Failure| self.log.redact(&f.text()));
        PlaybookOutcome {
            ok: error.is_none(),
            error,
            returned: std::mem::take(&mut self.returned),
            facts: std::mem::take(&mut self.facts),
        }
    }

    fn failure(&self, pos: &Pos, task: &str, msg: String, result: Value) -> Failure {
        Failure {
            at: pos.short(),
            task: task.to_string(),
            msg,
            result,
            cancelled: false,
            end_play: false,
            end_host: false,
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
                    Action::Meta { what } if what == "flush_handlers" => {
                        self.flush_handlers().await?
                    }
                    Action::Meta { what } if what == "end_play" || what == "end_host" => {
                        return Err(Failure {
                            end_play: true,
                            end_host: what == "end_host",
                            ..self.failure(&t.pos, "meta", String::new(), Value::Null)
                        });
                    }
                    Action::Meta { .. } => {}
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
            && !f.end_play
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
        let mut v = self.magic.clone();
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
        for (k, var) in &self.inventory_layer {
            v.map.insert(k.clone(), var.clone());
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
        for (k, x) in &self.host {
            v.set_verbatim(k.clone(), x.clone());
        }
        for (k, x) in &f.params {
            v.set(k.clone(), x.clone());
        }
        for (k, x) in &f.verbatim {
            v.set_verbatim(k.clone(), x.clone());
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
        // A verbatim base (a trigger's payload data) is used as it is, never rendered.
        let base_verbatim = vars.map.get(GANTRY_ENVIRONMENT).is_some_and(|v| v.unsafe_);
        for (i, layer) in base.iter().chain(f.environment.iter()).enumerate() {
            let rendered = if i == 0 && base_verbatim && !base.is_empty() {
                layer.clone()
            } else {
                self.templar
                    .render(layer, vars)
                    .map_err(|e| format!("environment: {e}"))?
            };
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
                Action::Tasks { file, .. } => format!("include_tasks : {file}"),
                a => a.label().to_string(),
            },
        };
        match &f.role {
            Some(r) => format!("{} : {base}", r.name),
            None => base,
        }
    }
}

/// The runner's variables nothing in a playbook overrides: secrets, extra vars, and
/// `zuul` / `zuul_success` (Zuul passes these as extra vars). The rest of the runner's variables
/// are inventory variables, which play, role and task vars override.
fn top_level(name: &str, var: &super::Var) -> bool {
    var.secret || var.extra || matches!(name, "zuul" | "zuul_success")
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
            role_paths: &[],
            work_dir: d.path(),
            vars: Vars::default(),
            inventory: &Inventory::localhost(),
            native: &super::super::NoNativeRoles,
            log: &Sink,
            cancel: CancellationToken::new(),
        };
        send(run_playbook(d.path(), &ctx));
    }
}
