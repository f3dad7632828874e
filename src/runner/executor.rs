//! The executor adapter: the runner's [`PlaybookExecutor`] over the built-in interpreter
//! (`playbook::run_playbook`) or real Ansible (`playbook::ansible`), and the choice
//! between them (`gantry run --executor auto|builtin|ansible`, a trigger's `executor:`).
//!
//! `auto` runs the built-in interpreter when `playbook check` finds nothing unsupported
//! in any playbook of the run, else Ansible when it is installed, else fails listing
//! what is unsupported and how to install Ansible.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ExecutorFuture, PlaybookExecutor};
use crate::playbook::ansible::{Ansible, AnsibleError};
use crate::playbook::{NativeRoles, PlaybookContext, PlaybookError, run_playbook};

/// Which executor runs the playbooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    #[default]
    Auto,
    Builtin,
    Ansible,
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ExecutorKind::Auto),
            "builtin" => Ok(ExecutorKind::Builtin),
            "ansible" => Ok(ExecutorKind::Ansible),
            other => Err(format!(
                "unknown executor \"{other}\" (expected auto, builtin or ansible)"
            )),
        }
    }
}

/// Why a playbook could not be run at all (a failing task is an outcome, not this).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The playbook is invalid for the built-in interpreter (with file:line).
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    #[error(transparent)]
    Ansible(#[from] AnsibleError),
    /// `auto` found unsupported constructs and no Ansible.
    #[error(
        "the playbooks use what the built-in interpreter does not support, and Ansible is not available ({reason}):\n{unsupported}\nInstall ansible-core >= 2.16 (`gantry setup ansible`, or set GANTRY_ANSIBLE), then run with --executor ansible (or auto)"
    )]
    Unsupported { unsupported: String, reason: String },
}

/// The playbook interpreter `gantry run` uses by default.
pub fn interpreter() -> Arc<dyn PlaybookExecutor> {
    Arc::new(Executor::Interpreter)
}

enum Executor {
    /// `playbook::run_playbook`; an invalid playbook (with its file:line) is the `Err`.
    Interpreter,
    /// Real `ansible-playbook`.
    Ansible(Ansible),
}

impl PlaybookExecutor for Executor {
    fn run<'a>(&'a self, playbook: &'a Path, ctx: PlaybookContext<'a>) -> ExecutorFuture<'a> {
        Box::pin(async move {
            Ok(match self {
                Executor::Interpreter => run_playbook(playbook, &ctx).await?,
                Executor::Ansible(a) => {
                    crate::playbook::ansible::run_playbook(a, playbook, &ctx).await?
                }
            })
        })
    }
}

/// What the run will use, and a line for the user saying so (empty for the default:
/// `auto` choosing the built-in interpreter).
pub struct Chosen {
    pub exec: Arc<dyn PlaybookExecutor>,
    pub note: String,
}

/// Picks the executor for a run whose playbooks are `playbooks` (path, project root).
pub async fn choose(
    kind: ExecutorKind,
    ansible: Option<&Path>,
    playbooks: &[(PathBuf, PathBuf, Vec<PathBuf>)],
    native: &dyn NativeRoles,
) -> Result<Chosen, ExecutorError> {
    let real = |a: Ansible| Chosen {
        note: format!(
            "executor: ansible ({}, ansible-core {})",
            a.playbook.display(),
            a.version
        ),
        exec: Arc::new(Executor::Ansible(a)),
    };
    match kind {
        ExecutorKind::Builtin => Ok(Chosen {
            exec: interpreter(),
            note: "executor: builtin".into(),
        }),
        ExecutorKind::Ansible => Ok(real(Ansible::locate(ansible).await?)),
        ExecutorKind::Auto => {
            let mut problems = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for (path, root, role_paths) in playbooks {
                if !seen.insert((path.clone(), role_paths.clone())) {
                    continue;
                }
                if let Err(errors) =
                    crate::playbook::check_playbook_with(path, root, role_paths, native)
                {
                    problems.extend(errors.into_iter().map(|e| format!("  {e}")));
                }
            }
            if problems.is_empty() {
                return Ok(Chosen {
                    exec: interpreter(),
                    note: String::new(),
                });
            }
            match Ansible::locate(ansible).await {
                Ok(a) => {
                    let mut c = real(a);
                    c.note = format!(
                        "{} (auto: {} unsupported by the built-in interpreter)",
                        c.note,
                        problems.len()
                    );
                    Ok(c)
                }
                Err(e) => Err(ExecutorError::Unsupported {
                    unsupported: problems.join("\n"),
                    reason: e.to_string(),
                }),
            }
        }
    }
}
