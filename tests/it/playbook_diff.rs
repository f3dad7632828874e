//! Issue 14, item 3: the built-in interpreter against real ansible-core 2.16.
//!
//! Every case under `tests/fixtures/playbook-diff/cases/<case>/` (a `playbook.yaml` and
//! whatever files it reads) runs twice, each in its own copy of the case directory: through
//! gantry's interpreter and through `ansible-playbook` from the test venv
//! (`ansible_connection=local`, inventory `localhost`, the `gantry_diff` stdout callback in
//! `tests/fixtures/playbook-diff/callback_plugins/`, which prints one JSON line per task
//! result). What a user observes must be identical: per task its name, ok / changed /
//! skipped / failed, what `debug` printed (per loop item too), the files written (content
//! and mode) and how the run ended (ok, failed, or rejected before running).
//!
//! All Ansible runs start at once (start-up is 1–2 s of CPU each), so the corpus costs a
//! few seconds, not one start-up per case in sequence. `GANTRY_DIFF_CASE=name` runs one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use gantry::playbook::{self, LogSink, NoNativeRoles, PlaybookContext, Vars};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::venv_tool;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/playbook-diff")
}

/// What one run showed: the task records, the files written, how it ended.
#[derive(Debug, PartialEq)]
struct Observed {
    tasks: Vec<Value>,
    files: BTreeMap<String, String>,
    end: &'static str,
}

#[derive(Default)]
struct Records {
    records: Mutex<Vec<Value>>,
}

impl LogSink for Records {
    fn line(&self, _: &str) {}
    fn task_result(&self, record: &Value) {
        self.records.lock().unwrap().push(record.clone());
    }
}

fn short(name: &str) -> String {
    let mut s = name.to_string();
    for p in ["ansible.builtin.", "ansible.legacy."] {
        s = s.replace(p, "");
    }
    s
}

fn status(r: &Value) -> &'static str {
    let flag = |k: &str| r.get(k) == Some(&Value::Bool(true));
    if flag("failed") {
        "failed"
    } else if flag("skipped") {
        "skipped"
    } else if flag("changed") {
        "changed"
    } else {
        "ok"
    }
}

/// What `debug` printed: `msg`, or the variable named by `var`.
fn printed(r: &Value) -> Value {
    if let Some(m) = r.get("msg") {
        return m.clone();
    }
    match r.as_object() {
        Some(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !k.starts_with("_ansible")
                        && !matches!(
                            k.as_str(),
                            "changed" | "failed" | "skipped" | "skip_reason" | "false_condition"
                        )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => Value::Null,
    }
}

/// A task record reduced to what both sides must agree on.
fn normalize(rec: &Value) -> Option<Value> {
    let action = short(rec["action"].as_str().unwrap_or(""));
    if action.starts_with("include_")
        || action.starts_with("import_")
        || action == "gather_facts"
        || action == "meta"
    {
        return None;
    }
    let r = &rec["result"];
    let debug = action == "debug";
    let one = |r: &Value| {
        let st = status(r);
        if debug && st != "failed" && st != "skipped" {
            json!({"status": st, "printed": printed(r)})
        } else {
            json!({"status": st})
        }
    };
    let mut out = json!({"task": short(rec["task"].as_str().unwrap_or("")), "status": status(r)});
    if let Some(items) = r.get("results").and_then(Value::as_array) {
        out["items"] = Value::Array(items.iter().map(one).collect());
    } else if debug && status(r) == "ok" {
        out["printed"] = printed(r);
    }
    Some(out)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Files under `dir` that the case did not ship (or that the run changed), with their
/// mode and content.
fn written(case: &Path, dir: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
                continue;
            }
            let content = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else {
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
            };
            let original = std::fs::read(case.join(&rel)).ok();
            if original.as_deref() == Some(content.as_bytes()) {
                continue;
            }
            let mode = meta.permissions().mode() & 0o777;
            out.insert(rel.display().to_string(), format!("{mode:o} {content}"));
        }
    }
    out
}

async fn builtin(case: &Path, dir: &Path) -> Observed {
    let sink = Records::default();
    let ctx = PlaybookContext {
        project_dir: dir,
        role_paths: &[],
        work_dir: dir,
        vars: Vars::default(),
        inventory: &playbook::Inventory::localhost(),
        native: &NoNativeRoles,
        log: &sink,
        cancel: CancellationToken::new(),
    };
    let end = match playbook::run_playbook(&dir.join("playbook.yaml"), &ctx).await {
        Ok(o) if o.ok => "ok",
        Ok(_) => "failed",
        Err(e) => {
            eprintln!("builtin rejected {}: {e}", case.display());
            "rejected"
        }
    };
    let tasks = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .filter_map(normalize)
        .collect();
    Observed {
        tasks,
        files: written(case, dir),
        end,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_interpreter_matches_ansible() {
    let Some(ansible) = venv_tool("ansible-playbook") else {
        return;
    };
    let python = ansible.parent().unwrap().join("python");
    let only = std::env::var("GANTRY_DIFF_CASE").ok();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("playbook.yaml").is_file())
        .filter(|p| {
            only.as_deref()
                .is_none_or(|o| p.file_name().unwrap().to_str() == Some(o))
        })
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let tmp = tempfile::tempdir().unwrap();

    // Every Ansible run at once.
    let mut running = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap();
        let dir = tmp.path().join("ansible").join(name);
        copy_dir(case, &dir);
        let child = Command::new(&ansible)
            .args(["-i", "localhost,", "-c", "local", "playbook.yaml"])
            .current_dir(&dir)
            .env(
                "ANSIBLE_CALLBACK_PLUGINS",
                fixtures().join("callback_plugins"),
            )
            .env("ANSIBLE_STDOUT_CALLBACK", "gantry_diff")
            .env("ANSIBLE_PYTHON_INTERPRETER", &python)
            .env("ANSIBLE_LOCAL_TEMP", tmp.path().join("ansible-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", tmp.path().join("ansible-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        running.push((case.clone(), dir, child));
    }

    let mut failures = Vec::new();
    for (case, adir, child) in running {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let bdir = tmp.path().join("builtin").join(&name);
        copy_dir(&case, &bdir);
        let mine = builtin(&case, &bdir).await;
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let tasks = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("GANTRY-DIFF "))
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|r| normalize(&r))
            .collect();
        let end = match out.status.code() {
            Some(0) => "ok",
            Some(2) => "failed",
            _ => "rejected",
        };
        let theirs = Observed {
            tasks,
            files: written(&case, &adir),
            end,
        };
        if mine != theirs {
            failures.push(format!(
                "case {name}:\n  gantry:  {}\n  ansible: {}\n  ansible stderr: {}",
                describe(&mine),
                describe(&theirs),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from ansible-playbook:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn describe(o: &Observed) -> String {
    format!(
        "end={} files={:?}\n    tasks={}",
        o.end,
        o.files,
        o.tasks
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n          ")
    )
}
