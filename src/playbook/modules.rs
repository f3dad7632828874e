//! The modules a task can call: `shell`, `command`, `set_fact`, `debug`, `fail`, `assert`,
//! `zuul_return` here, and the file modules (`copy`, `template`, `file`, `stat`) in
//! `files.rs` (a child module).
//!
//! Owns: templating a module's arguments (except those Ansible evaluates itself, like
//! `assert.that` and `debug.var`), doing the work, and describing the result the way
//! Ansible registers it (`rc`, `stdout`, `stdout_lines`, `changed`, `failed`, `msg`, …).
//! Must not: write to the log (results and output lines go back to the interpreter, which
//! knows about `no_log` and redaction), apply `failed_when`/`changed_when`/`ignore_errors`,
//! or look at anything outside the task's work directory and search paths.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::model::Module;

mod extra;
mod files;
mod mode;
mod zuul_return;
use super::process::{self, ProcessError, Spawn};
use super::{Returned, Templar, TemplateError, Vars};

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error("{0}")]
    Args(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Process(#[from] ProcessError),
}

impl ModuleError {
    pub fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ModuleError {
        let path = path.display().to_string();
        move |source| ModuleError::Io { what, path, source }
    }
}

/// What a module needs from the task.
pub struct ModuleCtx<'a> {
    pub work_dir: &'a Path,
    pub vars: &'a Vars,
    pub templar: &'a Templar,
    /// The task's `environment` (added to gantry's own).
    pub env: &'a [(String, String)],
    pub cancel: &'a CancellationToken,
    /// Output lines of a running command; `None` under `no_log`.
    pub on_line: Option<&'a (dyn Fn(&str) + Sync)>,
    /// Directories a relative `copy`/`template` `src` is searched in (their `files/` or
    /// `templates/` first): the role's, then the playbook's.
    pub search: &'a [PathBuf],
}

/// A module's arguments, after templating.
pub type Args = Map<String, Value>;

/// What a module returns.
pub type Outcome = Result<ModuleResult, ModuleError>;

/// What a module did.
#[derive(Debug, Default)]
pub struct ModuleResult {
    /// What `register` stores: `changed`, `failed` and the module's own keys.
    pub result: Map<String, Value>,
    /// `set_fact`: facts for the rest of the playbook.
    pub facts: Map<String, Value>,
    /// `set_fact: cacheable: true`: the facts also go to the fact cache, so later
    /// playbooks of the build see them (Zuul's per-job jsonfile cache).
    pub cacheable: bool,
    /// `zuul_return`.
    pub returned: Option<Returned>,
    /// Lines to show under the task's status line (a `debug` message).
    pub display: Vec<String>,
    /// Shown after `ok`/`changed` (a command's runtime).
    pub summary: Option<String>,
}

impl ModuleResult {
    pub fn ok(changed: bool) -> ModuleResult {
        let mut r = ModuleResult::default();
        r.result.insert("changed".into(), Value::Bool(changed));
        r.result.insert("failed".into(), Value::Bool(false));
        r
    }

    pub fn fail(msg: impl Into<String>) -> ModuleResult {
        let mut r = ModuleResult::ok(false);
        r.result.insert("failed".into(), Value::Bool(true));
        r.result.insert("msg".into(), Value::String(msg.into()));
        r
    }

    pub fn with(mut self, key: &str, v: Value) -> ModuleResult {
        self.result.insert(key.into(), v);
        self
    }

    pub fn failed(&self) -> bool {
        self.result.get("failed") == Some(&Value::Bool(true))
    }

    #[cfg(test)]
    pub fn changed(&self) -> bool {
        self.result.get("changed") == Some(&Value::Bool(true))
    }
}

/// Runs one module with its (untemplated) arguments.
pub async fn run(
    module: Module,
    args: &Value,
    ctx: &ModuleCtx<'_>,
) -> Result<ModuleResult, ModuleError> {
    // Ansible evaluates these itself: `that` as conditions, `var` as an expression.
    let raw: &[&str] = match module {
        Module::Assert => &["that"],
        Module::Debug => &["var"],
        _ => &[],
    };
    let m = render_args(args, ctx, raw)?;
    match module {
        Module::Shell => shell(&m, ctx).await,
        Module::Command => command(&m, ctx).await,
        Module::SetFact => Ok(set_fact(m)),
        Module::Debug => debug(&m, ctx),
        Module::Fail => Ok(ModuleResult::fail(
            opt_str(&m, "msg")?.unwrap_or_else(|| "Failed as requested from task".into()),
        )),
        Module::Assert => assert(&m, ctx),
        Module::ZuulReturn => zuul_return::run(&m, ctx).await,
        Module::Copy => files::copy(&m, ctx).await,
        Module::Template => files::template(&m, ctx).await,
        Module::File => files::file(&m, ctx).await,
        Module::Stat => files::stat(&m, ctx).await,
        Module::IncludeVars => extra::include_vars(&m, ctx).await,
        Module::Lineinfile => extra::lineinfile(&m, ctx).await,
        Module::Tempfile => extra::tempfile(&m, ctx).await,
        Module::Slurp => extra::slurp(&m, ctx).await,
        Module::Setup => extra::setup(&m, ctx),
        Module::WaitFor => extra::wait_for(&m, ctx).await,
        Module::Uri | Module::Package | Module::Pip => Ok(extra::unsupported(module.name())),
    }
}

fn render_args(
    args: &Value,
    ctx: &ModuleCtx<'_>,
    raw: &[&str],
) -> Result<Map<String, Value>, ModuleError> {
    let Value::Object(m) = args else {
        return Err(ModuleError::Args("arguments must be a mapping".into()));
    };
    let mut out = Map::new();
    for (k, v) in m {
        let v = if raw.contains(&k.as_str()) {
            v.clone()
        } else {
            ctx.templar.render(v, ctx.vars)?
        };
        if v.as_str() == Some(super::template::OMIT) {
            continue;
        }
        out.insert(k.clone(), v);
    }
    Ok(out)
}

/// A string parameter (numbers and booleans in their YAML spelling).
/// A required string parameter; `missing` is the message when it is absent.
pub fn req_str(m: &Map<String, Value>, key: &str, missing: &str) -> Result<String, ModuleError> {
    opt_str(m, key)?.ok_or_else(|| ModuleError::Args(missing.to_string()))
}

/// A required path argument: as written, and resolved against the work directory.
pub fn req_path(
    m: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
    key: &str,
    missing: &str,
) -> Result<(String, PathBuf), ModuleError> {
    let arg = req_str(m, key, missing)?;
    let path = resolve(ctx.work_dir, &arg);
    Ok((arg, path))
}

pub fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, ModuleError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(other) => Err(ModuleError::Args(format!(
            "parameter {key} must be a string, found {other}"
        ))),
    }
}

/// A boolean parameter, with Ansible's spellings (`yes`, `true`, `1`, …).
pub fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ModuleError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => Ok(Some(n.as_f64() != Some(0.0))),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "y" | "true" | "t" | "on" | "1" => Ok(Some(true)),
            "no" | "n" | "false" | "f" | "off" | "0" | "" => Ok(Some(false)),
            _ => Err(ModuleError::Args(format!(
                "parameter {key} must be a boolean, found \"{s}\""
            ))),
        },
        Some(other) => Err(ModuleError::Args(format!(
            "parameter {key} must be a boolean, found {other}"
        ))),
    }
}

/// A path as a task means it: `~` is the home directory, relative is under `base`.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    if p == "~" {
        if let Some(h) = home() {
            return h;
        }
    } else if let Some(rest) = p.strip_prefix("~/")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    base.join(p)
}

async fn shell(m: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> Result<ModuleResult, ModuleError> {
    let cmd = match opt_str(m, "_raw_params")? {
        Some(c) => c,
        None => {
            opt_str(m, "cmd")?.ok_or_else(|| ModuleError::Args("shell needs a command".into()))?
        }
    };
    let exe = opt_str(m, "executable")?.unwrap_or_else(|| "/bin/sh".into());
    let argv = vec![exe, "-c".into(), cmd.clone()];
    run_command(argv, Value::String(cmd), m, ctx).await
}

async fn command(m: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> Result<ModuleResult, ModuleError> {
    let argv: Vec<String> = match m.get("argv") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(other) => {
            return Err(ModuleError::Args(format!(
                "argv must be a list, found {other}"
            )));
        }
        None => {
            let line = match opt_str(m, "_raw_params")? {
                Some(c) => c,
                None => opt_str(m, "cmd")?.unwrap_or_default(),
            };
            // Python's shlex rules, as Ansible's command module splits.
            shlex::split(&line).ok_or_else(|| {
                ModuleError::Args(format!(
                    "cannot split the command line (unbalanced quotes?): {line}"
                ))
            })?
        }
    };
    if argv.is_empty() {
        return Err(ModuleError::Args("no command given".into()));
    }
    let shown = Value::Array(argv.iter().cloned().map(Value::String).collect());
    run_command(argv, shown, m, ctx).await
}

async fn run_command(
    argv: Vec<String>,
    cmd: Value,
    m: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<ModuleResult, ModuleError> {
    let chdir = match opt_str(m, "chdir")? {
        Some(d) => resolve(ctx.work_dir, &d),
        None => ctx.work_dir.to_path_buf(),
    };
    // `creates`/`removes` make a command idempotent; relative to `chdir` like Ansible.
    if let Some(c) = opt_str(m, "creates")? {
        let p = resolve(&chdir, &c);
        if p.exists() {
            let msg = format!("Did not run command since '{}' exists", p.display());
            return Ok(not_run(cmd, msg));
        }
    }
    if let Some(r) = opt_str(m, "removes")? {
        let p = resolve(&chdir, &r);
        if !p.exists() {
            let msg = format!("Did not run command since '{}' does not exist", p.display());
            return Ok(not_run(cmd, msg));
        }
    }
    let finished = process::run(Spawn {
        argv,
        chdir,
        env: ctx.env.to_vec(),
        stdin: opt_str(m, "stdin")?,
        on_line: ctx.on_line,
        cancel: ctx.cancel,
    })
    .await?;
    // Ansible strips the trailing newlines (`strip_empty_ends`).
    let stdout = finished.stdout.trim_end_matches(['\n', '\r']).to_string();
    let stderr = finished.stderr.trim_end_matches(['\n', '\r']).to_string();
    let lines = |s: &str| Value::Array(s.lines().map(|l| Value::String(l.to_string())).collect());
    let failed = finished.rc != 0;
    let delta = process::delta(finished.elapsed);
    let mut r = ModuleResult::ok(true)
        .with("cmd", cmd)
        .with("rc", json!(finished.rc))
        .with("stdout_lines", lines(&stdout))
        .with("stderr_lines", lines(&stderr))
        .with("stdout", Value::String(stdout))
        .with("stderr", Value::String(stderr))
        .with("delta", Value::String(delta.clone()))
        .with("failed", Value::Bool(failed))
        .with(
            "msg",
            Value::String(if failed {
                "non-zero return code".into()
            } else {
                String::new()
            }),
        );
    r.summary = Some(format!("Runtime: {delta}"));
    Ok(r)
}

fn not_run(cmd: Value, msg: String) -> ModuleResult {
    ModuleResult::ok(false)
        .with("cmd", cmd)
        .with("rc", json!(0))
        .with("stdout", Value::String(msg.clone()))
        .with("stdout_lines", json!([msg.clone()]))
        .with("stderr", json!(""))
        .with("stderr_lines", json!([]))
        .with("msg", Value::String(msg))
}

fn set_fact(mut m: Map<String, Value>) -> ModuleResult {
    let cacheable = match m.remove("cacheable") {
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) => matches!(
            s.to_ascii_lowercase().as_str(),
            "yes" | "true" | "on" | "1" | "y" | "t"
        ),
        Some(Value::Number(n)) => n.as_f64() == Some(1.0),
        _ => false,
    };
    let mut r = ModuleResult::ok(false).with("ansible_facts", Value::Object(m.clone()));
    r.facts = m;
    r.cacheable = cacheable;
    r
}

fn debug(m: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> Result<ModuleResult, ModuleError> {
    let verbosity = m.get("verbosity").and_then(|v| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    if verbosity.unwrap_or(0) > 0 {
        // gantry logs at verbosity 0, as Zuul's job-output does.
        return Ok(ModuleResult::ok(false)
            .with("skipped", Value::Bool(true))
            .with("skip_reason", json!("verbosity threshold not met")));
    }
    if let Some(var) = m.get("var") {
        let name = match var {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let value = ctx
            .templar
            .expression(&name, ctx.vars)
            .unwrap_or_else(|_| json!("VARIABLE IS NOT DEFINED!"));
        let shown = serde_json::to_string_pretty(&json!({ name.clone(): value.clone() }))
            .unwrap_or_default();
        let mut r = ModuleResult::ok(false).with(&name, value);
        r.display = shown.lines().map(str::to_string).collect();
        return Ok(r);
    }
    let msg = m
        .get("msg")
        .cloned()
        .unwrap_or_else(|| json!("Hello world!"));
    let shown = match &msg {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let mut r = ModuleResult::ok(false).with("msg", msg);
    r.display = shown.lines().map(str::to_string).collect();
    Ok(r)
}

fn assert(m: &Map<String, Value>, ctx: &ModuleCtx<'_>) -> Result<ModuleResult, ModuleError> {
    let that: Vec<Value> = match m.get("that") {
        Some(Value::Array(items)) => items.clone(),
        Some(v) => vec![v.clone()],
        None => return Err(ModuleError::Args("assert needs \"that\"".into())),
    };
    for cond in &that {
        let holds = match cond {
            Value::Bool(b) => *b,
            Value::String(expr) => ctx.templar.condition(expr, ctx.vars).map_err(|e| {
                ModuleError::Args(format!("the conditional check '{expr}' failed: {e}"))
            })?,
            other => {
                return Err(ModuleError::Args(format!(
                    "assert: \"{other}\" is not a condition"
                )));
            }
        };
        if !holds {
            let msg = match opt_str(m, "fail_msg")? {
                Some(s) => s,
                None => opt_str(m, "msg")?.unwrap_or_else(|| "Assertion failed".into()),
            };
            let expr = match cond {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Ok(ModuleResult::fail(msg)
                .with("assertion", Value::String(expr))
                .with("evaluated_to", Value::Bool(false)));
        }
    }
    let msg = opt_str(m, "success_msg")?.unwrap_or_else(|| "All assertions passed".into());
    let quiet = opt_bool(m, "quiet")?.unwrap_or(false);
    let mut r = ModuleResult::ok(false).with("msg", Value::String(msg.clone()));
    if !quiet {
        r.display = vec![msg];
    }
    Ok(r)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A work directory, variables and search paths for a module, in the unit tests here and
/// in the child modules.
#[cfg(test)]
struct Fixture {
    dir: tempfile::TempDir,
    vars: Vars,
    templar: Templar,
    cancel: CancellationToken,
    search: Vec<PathBuf>,
}

#[cfg(test)]
impl Fixture {
    fn new(vars: &[(&str, Value)]) -> Fixture {
        let mut v = Vars::default();
        for (name, value) in vars {
            v.set(*name, value.clone());
        }
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            vars: v,
            templar: Templar::new(),
            cancel: CancellationToken::new(),
            search: Vec::new(),
        }
    }

    fn ctx(&self) -> ModuleCtx<'_> {
        ModuleCtx {
            work_dir: self.dir.path(),
            vars: &self.vars,
            templar: &self.templar,
            env: &[],
            cancel: &self.cancel,
            on_line: None,
            search: &self.search,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Fixture {
        fn words() -> Fixture {
            Fixture::new(&[("name", json!("world")), ("n", json!(3))])
        }

        async fn run(&self, module: Module, args: Value) -> Result<ModuleResult, ModuleError> {
            run(module, &args, &self.ctx()).await
        }
    }

    #[tokio::test]
    async fn shell_and_command_results() {
        let f = Fixture::words();
        let r = f
            .run(
                Module::Shell,
                json!({"_raw_params": "echo hello {{ name }}; echo e >&2; pwd"}),
            )
            .await
            .unwrap();
        assert_eq!(r.result["rc"], 0);
        assert_eq!(r.result["stdout_lines"][0], "hello world");
        assert_eq!(r.result["stderr"], "e");
        assert!(r.changed() && !r.failed());
        let r = f
            .run(Module::Command, json!({"_raw_params": "sh -c 'exit 4'"}))
            .await
            .unwrap();
        assert!(r.failed());
        assert_eq!(r.result["rc"], 4);
        assert_eq!(r.result["msg"], "non-zero return code");
        let r = f
            .run(Module::Command, json!({"argv": ["printf", "%s", "a b"]}))
            .await
            .unwrap();
        assert_eq!(r.result["stdout"], "a b");
    }

    #[tokio::test]
    async fn creates_and_removes_skip_the_command() {
        let f = Fixture::words();
        std::fs::write(f.dir.path().join("done"), "").unwrap();
        let r = f
            .run(
                Module::Command,
                json!({"_raw_params": "false", "creates": "done"}),
            )
            .await
            .unwrap();
        assert!(!r.failed() && !r.changed(), "{:?}", r.result);
        let r = f
            .run(Module::Shell, json!({"cmd": "false", "removes": "absent"}))
            .await
            .unwrap();
        assert!(!r.failed(), "{:?}", r.result);
        let r = f
            .run(Module::Shell, json!({"cmd": "pwd", "chdir": "sub"}))
            .await;
        assert!(r.is_err(), "a missing chdir is an error");
    }

    #[tokio::test]
    async fn debug_assert_fail_set_fact() {
        let f = Fixture::words();
        let r = f
            .run(Module::Debug, json!({"msg": "hi {{ name }}"}))
            .await
            .unwrap();
        assert_eq!(r.display, ["hi world"]);
        let r = f.run(Module::Debug, json!({"var": "n"})).await.unwrap();
        assert_eq!(r.result["n"], 3);
        let r = f
            .run(Module::Debug, json!({"var": "missing"}))
            .await
            .unwrap();
        assert_eq!(r.result["missing"], "VARIABLE IS NOT DEFINED!");
        let r = f
            .run(
                Module::Assert,
                json!({"that": ["n > 2", "name == 'world'"], "quiet": true}),
            )
            .await
            .unwrap();
        assert!(!r.failed() && r.display.is_empty());
        let r = f
            .run(
                Module::Assert,
                json!({"that": "n > 5", "fail_msg": "n is {{ n }}"}),
            )
            .await
            .unwrap();
        assert!(r.failed());
        assert_eq!(r.result["msg"], "n is 3");
        assert_eq!(r.result["assertion"], "n > 5");
        let r = f.run(Module::Fail, json!({})).await.unwrap();
        assert_eq!(r.result["msg"], "Failed as requested from task");
        let r = f
            .run(
                Module::SetFact,
                json!({"x": "{{ name }}!", "cacheable": true}),
            )
            .await
            .unwrap();
        assert_eq!(Value::Object(r.facts), json!({"x": "world!"}));
    }

    #[tokio::test]
    async fn zuul_return_data_secret_data_and_file() {
        let f = Fixture::words();
        std::fs::write(f.dir.path().join("ret.json"), r#"{"a": 1, "b": {"c": 1}}"#).unwrap();
        std::fs::write(f.dir.path().join("ret.yaml"), "a: 2\n").unwrap();
        let r = f
            .run(
                Module::ZuulReturn,
                json!({"data": {"b": {"d": "{{ name }}"}}, "secret_data": {"pw": "s"}, "file": "ret.json"}),
            )
            .await
            .unwrap();
        let ret = r.returned.unwrap();
        assert_eq!(
            Value::Object(ret.data),
            json!({"a": 1, "b": {"c": 1, "d": "world"}})
        );
        assert_eq!(Value::Object(ret.secret_data), json!({"pw": "s"}));
        // Zuul reads the file with json.load: YAML is an error.
        let e = f
            .run(Module::ZuulReturn, json!({"file": "ret.yaml"}))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("zuul_return file"), "{e}");
        let e = f
            .run(
                Module::ZuulReturn,
                json!({"data": {"zuul": {"artifacts": [{"name": "x"}]}}}),
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("artifact needs a string name and url"),
            "{e}"
        );
    }
}
