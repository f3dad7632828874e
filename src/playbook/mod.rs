//! Playbooks: the model of plays and tasks, the interpreter, templating and modules.
//!
//! Owns running Ansible-style playbooks locally, in a job's work directory. Must not know
//! about registries or builds: roles with zuul-jobs names are native Rust in `roles/` and
//! reach the interpreter through [`NativeRoles`]; results go back to the runner as data,
//! and text goes to a [`LogSink`] (which redacts secrets) — this module never prints.
//!
//! The interface below is what the runner (`runner/`) and the native roles (`roles/`)
//! build on; the interpreter lives in `model/` (playbook files → plays and tasks, with
//! file:line), `interp/` (execution, roles, handlers), `template/` (Jinja, filters) and
//! `modules.rs` (shell, command, set_fact, …).

pub mod ansible;
mod check;
mod interp;
pub mod inventory;
pub mod model;
mod modules;
mod process;
mod redact;
pub mod template;

use std::path::Path;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

pub use interp::{
    GANTRY_ENVIRONMENT, PlaybookContext, PlaybookOutcome, check_playbook, check_playbook_with,
    run_playbook,
};
pub use inventory::{Group, Host, Inventory};
pub use model::{PlaybookError, Pos};
pub use redact::{MASK, Redactor, Secret, SecretKind, redactor, secret_leaves};
pub use template::{Templar, TemplateError, Var, Vars};

/// Where a playbook's output goes: `<state>/builds/<uuid>/job-output.txt` and the console.
/// Implementations redact every secret string before writing.
pub trait LogSink: Send + Sync {
    fn line(&self, line: &str);

    /// Every finished task (not includes), as Ansible's callbacks see it:
    /// `{"task": name, "action": module, "result": {changed, failed, skipped, msg, results, …}}`
    /// (censored under `no_log`). Not redacted: implementations that print it must redact.
    /// The differential tests compare these with real Ansible's; the default ignores them.
    fn task_result(&self, _record: &Value) {}
}

/// Data a build hands back with `zuul_return` (ZUUL.md §7): `data` (visible to dependent
/// builds; its `zuul` key carries pause, child_jobs, artifacts) and `secret_data` (passed
/// to dependents like secrets, never logged). The job graph's type, so the runner hands
/// it over unchanged.
pub use crate::job::graph::Returned;

impl Returned {
    /// Merges a later `zuul_return` into this one: maps recursively, scalars replaced,
    /// `zuul.artifacts` and `zuul.warnings` concatenated.
    pub fn merge(&mut self, later: Returned) {
        merge_returned(&mut self.data, later.data);
        merge_returned(&mut self.secret_data, later.secret_data);
    }
}

fn merge_returned(base: &mut Map<String, Value>, later: Map<String, Value>) {
    for (k, v) in later {
        match (base.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) if k == "zuul" => {
                for (zk, zv) in b {
                    match (a.get_mut(&zk), zv) {
                        (Some(Value::Array(x)), Value::Array(y))
                            if zk == "artifacts" || zk == "warnings" =>
                        {
                            x.extend(y)
                        }
                        (Some(existing @ Value::Object(_)), zv @ Value::Object(_)) => {
                            template::merge(existing, zv, true)
                        }
                        (_, zv) => {
                            a.insert(zk, zv);
                        }
                    }
                }
            }
            (Some(existing @ Value::Object(_)), v @ Value::Object(_)) => {
                template::merge(existing, v, true)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// What a native role gets when a play or `include_role` calls it.
pub struct RoleCall<'a> {
    /// Variables visible at the call (role vars from the call site included).
    pub vars: &'a Vars,
    pub work_dir: &'a Path,
    pub log: &'a dyn LogSink,
    pub templar: &'a Templar,
}

/// What a native role did.
#[derive(Clone, Debug, Default)]
pub struct RoleOutcome {
    /// Facts set for the rest of the playbook (like `set_fact`), e.g. `buildset_registry`.
    pub facts: Map<String, Value>,
    /// Data returned as with `zuul_return`.
    pub returned: Returned,
    pub changed: bool,
}

/// Why a native role failed: the role's own typed error (`roles::RoleError`), or a
/// name no native role has. Shown to the user as the role's message.
#[derive(Debug, thiserror::Error)]
pub enum NativeRoleError {
    #[error("no native role {0}")]
    Unknown(String),
    #[error(transparent)]
    Role(Box<dyn std::error::Error + Send + Sync>),
}

/// The roles implemented in Rust (`roles/`), looked up by zuul-jobs name before the
/// project's `roles/<name>/` directory.
pub trait NativeRoles: Send + Sync {
    fn has(&self, name: &str) -> bool;
    /// Every native role name, for "did you mean" when a role is not found.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    fn run<'a>(&'a self, name: &'a str, call: RoleCall<'a>) -> RoleFuture<'a>;
}

/// What [`NativeRoles::run`] returns.
pub type RoleFuture<'a> = BoxFuture<'a, Result<RoleOutcome, NativeRoleError>>;

/// No native roles (tests of the interpreter alone).
pub struct NoNativeRoles;

impl NativeRoles for NoNativeRoles {
    fn has(&self, _: &str) -> bool {
        false
    }
    fn run<'a>(&'a self, name: &'a str, _: RoleCall<'a>) -> RoleFuture<'a> {
        Box::pin(async move { Err(NativeRoleError::Unknown(name.to_string())) })
    }
}
