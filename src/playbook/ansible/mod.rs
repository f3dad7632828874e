//! The real Ansible executor: runs a playbook with `ansible-playbook` (ansible-core ≥ 2.16)
//! the way Zuul's executor does, beside the built-in interpreter.
//!
//! For one playbook:
//! 1. a private directory (0700) gets the inventory (the job's nodes, all on this machine
//!    with `ansible_connection: local`; job variables as `all.vars`), the extra-vars file
//!    (secrets, `zuul`, `zuul_success`, all `!unsafe`), `ansible.cfg`, the shipped plugins
//!    (`zuul_return`, `gantry_native`) and one stand-in role per native role;
//! 2. `roles_path` lists the project's roles before the stand-ins, so a role the project
//!    ships is used as written; a stand-in calls back into this gantry over a unix socket
//!    with a per-run token ([`native`]), so registries, builds and promotes run in-process;
//! 3. `ansible-playbook` runs in the job's work directory, in its own process group
//!    (cancellation and the runner's per-playbook timeout kill the group); every output
//!    line goes to the build's log, redacted;
//! 4. `zuul_return` lines (the result file) and native roles' returned data are merged
//!    into the outcome; facts persist between the build's playbooks in a JSON fact cache
//!    (Zuul does the same).
//!
//! Must not: print, or know about registries (native roles do that).

mod inventory;
mod native;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use serde_json::{Map, Value};

use super::process::{self, ProcessError, Spawn};
use super::redact::Redactor;
use super::{GANTRY_ENVIRONMENT, LogSink, PlaybookContext, PlaybookOutcome, Returned};

pub use inventory::{SplitVars, inventory, split_vars, unsafe_yaml};

/// The oldest ansible-core gantry runs (Zuul's default Ansible).
pub const MIN_VERSION: (u32, u32) = (2, 16);

/// What `gantry setup ansible` installs from PyPI.
pub const PINNED: &str = "ansible-core==2.16.14";

const ZUUL_RETURN: &str = include_str!("plugins/zuul_return.py");
const GANTRY_NATIVE: &str = include_str!("plugins/gantry_native.py");
const LOCAL_CONNECTION: &str = include_str!("plugins/local.py");

#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    #[error(
        "ansible-playbook not found: set GANTRY_ANSIBLE to its path, put ansible-core >= 2.16 on PATH, or run `gantry setup ansible`"
    )]
    NotFound,
    #[error("{path}: {message}")]
    Version { path: PathBuf, message: String },
    /// Writing the run's files (inventory, plugins, configuration) failed.
    #[error("preparing the Ansible run: {what}: {source}")]
    Prepare {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The task preparing the run's files died.
    #[error("preparing the Ansible run: {0}")]
    PrepareTask(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// An `ansible-playbook` found and checked.
#[derive(Clone, Debug)]
pub struct Ansible {
    pub playbook: PathBuf,
    /// `2.16.14`
    pub version: String,
}

/// Where `gantry setup ansible` makes its venv: `$XDG_DATA_HOME/gantry/ansible`, else
/// `~/.local/share/gantry/ansible`.
pub fn setup_dir() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("gantry").join("ansible"))
}

impl Ansible {
    /// `explicit` (`GANTRY_ANSIBLE`), else the venv of `gantry setup ansible`, else PATH;
    /// its version must be at least [`MIN_VERSION`].
    pub async fn locate(explicit: Option<&Path>) -> Result<Ansible, AnsibleError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let from_setup = setup_dir()
                    .map(|d| d.join("bin/ansible-playbook"))
                    .filter(|p| p.is_file());
                let from_path = || {
                    std::env::var_os("PATH").and_then(|paths| {
                        std::env::split_paths(&paths)
                            .map(|d| d.join("ansible-playbook"))
                            .find(|p| p.is_file())
                    })
                };
                from_setup
                    .or_else(from_path)
                    .ok_or(AnsibleError::NotFound)?
            }
        };
        let out = tokio::process::Command::new(&path)
            .arg("--version")
            .output()
            .await
            .map_err(|e| AnsibleError::Version {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = parse_version(&text).ok_or_else(|| AnsibleError::Version {
            path: path.clone(),
            message: format!(
                "not ansible-playbook (--version said {:?})",
                text.lines().next().unwrap_or("")
            ),
        })?;
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < MIN_VERSION {
            return Err(AnsibleError::Version {
                path,
                message: format!(
                    "ansible-core {version} is too old: gantry needs {}.{} or later (`gantry setup ansible`)",
                    MIN_VERSION.0, MIN_VERSION.1
                ),
            });
        }
        Ok(Ansible {
            playbook: path,
            version,
        })
    }
}

/// `ansible-playbook [core 2.16.14]` → `2.16.14`.
fn parse_version(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let v = first.split("[core ").nth(1)?.split(']').next()?;
    Some(v.trim().to_string())
}

/// The private directory of one playbook run.
struct Prepared {
    dir: tempfile::TempDir,
    inventory: PathBuf,
    extra: PathBuf,
    unsafe_extra: PathBuf,
    cfg: PathBuf,
    results: PathBuf,
}

fn prepare_error(what: impl std::fmt::Display, source: std::io::Error) -> AnsibleError {
    AnsibleError::Prepare {
        what: what.to_string(),
        source,
    }
}

fn prepare(
    playbook: &Path,
    ctx_project: &Path,
    role_paths: &[PathBuf],
    work_dir: &Path,
    native_names: &[String],
    inv: &crate::playbook::Inventory,
    vars: SplitVars,
) -> Result<Prepared, AnsibleError> {
    let err = |what: &Path, e: std::io::Error| prepare_error(what.display(), e);
    let dir = tempfile::Builder::new()
        .prefix("gantry-ansible-")
        .tempdir()
        .map_err(|e| prepare_error("creating a temporary directory", e))?;
    let d = dir.path();
    let write = |p: &Path, text: &str| -> Result<(), AnsibleError> {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(parent, e))?;
        }
        std::fs::write(p, text).map_err(|e| err(p, e))
    };
    let plugins = d.join("action_plugins");
    write(&plugins.join("zuul_return.py"), ZUUL_RETURN)?;
    write(&plugins.join("gantry_native.py"), GANTRY_NATIVE)?;
    let connections = d.join("connection_plugins");
    write(&connections.join("local.py"), LOCAL_CONNECTION)?;
    let stand_ins = d.join("roles");
    for name in native_names {
        write(
            &stand_ins.join(name).join("tasks/main.yaml"),
            &format!(
                "- gantry_native:\n    role: {}\n",
                Value::String(name.clone())
            ),
        )?;
    }
    let results = d.join("results.jsonl");
    let SplitVars {
        inventory: inv_vars,
        extra,
        unsafe_extra: mut unsafe_vars,
    } = vars;
    if let Some(Value::Object(z)) = unsafe_vars.get_mut("zuul") {
        let exec = z
            .entry("executor")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(e) = exec {
            e.insert(
                "result_data_file".into(),
                Value::String(results.display().to_string()),
            );
        }
    }
    let inv_path = d.join("inventory.yaml");
    write(&inv_path, &inventory(inv, &inv_vars))?;
    let extra_path = d.join("extra-vars.json");
    write(
        &extra_path,
        &serde_json::to_string(&Value::Object(extra)).unwrap_or_default(),
    )?;
    let unsafe_path = d.join("unsafe-vars.yaml");
    write(&unsafe_path, &unsafe_yaml(&Value::Object(unsafe_vars)))?;
    let facts = work_dir.join(".gantry/ansible-facts");
    std::fs::create_dir_all(&facts).map_err(|e| err(&facts, e))?;
    let local_tmp = d.join("tmp");
    let project_roles = ctx_project.join("roles");
    let playbook_roles = playbook.parent().unwrap_or(Path::new(".")).join("roles");
    // The job's `roles:` directories come after the project's, as in Zuul's roles_path
    // (zuul/executor/server.py, prepareZuulRole), and before gantry's stand-ins.
    let mut roles: Vec<&Path> = vec![&playbook_roles, &project_roles];
    roles.extend(role_paths.iter().map(PathBuf::as_path));
    roles.push(&stand_ins);
    let cfg = inventory::ansible_cfg(&inventory::CfgPaths {
        roles,
        action_plugins: &plugins,
        connection_plugins: &connections,
        facts: &facts,
        local_tmp: &local_tmp,
    });
    let cfg_path = d.join("ansible.cfg");
    write(&cfg_path, &cfg)?;
    Ok(Prepared {
        dir,
        inventory: inv_path,
        extra: extra_path,
        unsafe_extra: unsafe_path,
        cfg: cfg_path,
        results,
    })
}

/// Runs `path` with real Ansible (steps in the module doc). A failing task is `Ok` with
/// `ok: false` and the failure's line; `Err` when Ansible could not be started.
pub async fn run_playbook(
    ansible: &Ansible,
    path: &Path,
    ctx: &PlaybookContext<'_>,
) -> Result<PlaybookOutcome, AnsibleError> {
    // 1. the private directory (blocking file work off the runtime). ansible-playbook runs
    // in the work directory: every path it is given is absolute.
    let absolute = |p: &Path| {
        // A library next to the current directory has the root "" (the current directory).
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        std::path::absolute(p).map_err(|e| prepare_error(p.display(), e))
    };
    let shown = path.display().to_string();
    let path_abs = absolute(path)?;
    let path = path_abs.as_path();
    let names = ctx.native.names();
    let (pb, project, work) = (
        path.to_path_buf(),
        absolute(ctx.project_dir)?,
        absolute(ctx.work_dir)?,
    );
    let role_paths = ctx
        .role_paths
        .iter()
        .map(|p| absolute(p))
        .collect::<Result<Vec<_>, _>>()?;
    let vars = split_vars(&ctx.vars);
    let inv = ctx.inventory.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(&pb, &project, &role_paths, &work, &names, &inv, vars)
    })
    .await??;

    // 2. the native roles' socket
    let socket = prepared.dir.path().join("native.sock");
    let listener =
        tokio::net::UnixListener::bind(&socket).map_err(|e| prepare_error(socket.display(), e))?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    let redactor = RwLock::new(Redactor::new(ctx.vars.secret_strings()));
    let log = native::Redacting {
        sink: ctx.log,
        redactor: &redactor,
    };
    let native_returned = Mutex::new(Returned::default());
    let server = native::Server {
        token: &token,
        native: ctx.native,
        work_dir: ctx.work_dir,
        log: &log,
        returned: &native_returned,
    };

    // 3. ansible-playbook
    let mut env: Vec<(String, String)> = vec![
        ("ANSIBLE_CONFIG".into(), prepared.cfg.display().to_string()),
        ("GANTRY_NATIVE_SOCKET".into(), socket.display().to_string()),
        ("GANTRY_NATIVE_TOKEN".into(), token.clone()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("ANSIBLE_NOCOLOR".into(), "1".into()),
        ("ANSIBLE_FORCE_COLOR".into(), "0".into()),
    ];
    if let Some(Value::Object(m)) = ctx.vars.get(GANTRY_ENVIRONMENT) {
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            env.push((k.clone(), v));
        }
    }
    let last_error: Mutex<Option<String>> = Mutex::new(None);
    let on_line = |line: &str| {
        let line = line.trim_end();
        if line.starts_with("fatal:") || line.starts_with("ERROR!") {
            *last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(line.to_string());
        }
        log.line(line);
    };
    let spawn = Spawn {
        argv: vec![
            ansible.playbook.display().to_string(),
            "-i".into(),
            prepared.inventory.display().to_string(),
            "-e".into(),
            format!("@{}", prepared.extra.display()),
            "-e".into(),
            format!("@{}", prepared.unsafe_extra.display()),
            path.display().to_string(),
        ],
        chdir: ctx.work_dir.to_path_buf(),
        env,
        stdin: None,
        on_line: Some(&on_line),
        cancel: &ctx.cancel,
    };
    let finished = tokio::select! {
        r = process::run(spawn) => r,
        _ = server.serve(listener) => unreachable_server(),
    };
    let finished = match finished {
        Ok(f) => f,
        Err(ProcessError::Cancelled) => {
            return Ok(PlaybookOutcome {
                ok: false,
                error: Some("cancelled".into()),
                ..PlaybookOutcome::default()
            });
        }
        Err(e) => return Err(e.into()),
    };

    // 4. what the playbook returned
    let mut returned = Returned::default();
    let text = tokio::fs::read_to_string(&prepared.results)
        .await
        .unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => {
                let map = |k: &str| match v.get(k) {
                    Some(Value::Object(m)) => m.clone(),
                    _ => Map::new(),
                };
                returned.merge(Returned {
                    data: map("data"),
                    secret_data: map("secret_data"),
                });
            }
            Err(e) => log.line(&format!("zuul_return: unreadable result line: {e}")),
        }
    }
    returned.merge(
        native_returned
            .into_inner()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let ok = finished.rc == 0;
    let error = (!ok).then(|| {
        let last = last_error.into_inner().unwrap_or_else(|p| p.into_inner());
        let line = last.unwrap_or_else(|| format!("ansible-playbook exited with {}", finished.rc));
        redactor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&format!("{shown}: {line}"))
    });
    drop(prepared.dir);
    Ok(PlaybookOutcome {
        ok,
        error,
        returned,
        // Facts persist in Ansible's own fact cache (`ansible.cfg`), per host.
        facts: Default::default(),
    })
}

/// The socket server loops until dropped; `select!` needs a value for its arm.
fn unreachable_server() -> Result<process::Finished, ProcessError> {
    Err(ProcessError::Cancelled)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_line() {
        assert_eq!(
            super::parse_version("ansible-playbook [core 2.16.14]\n  config file = None\n"),
            Some("2.16.14".into())
        );
        assert_eq!(super::parse_version("something else"), None);
    }
}
