//! Issue 14: `zuul_return` with `file`, `secret_file` and `path` under both executors, as
//! Zuul's action plugin documents them (zuul-ci/zuul
//! `zuul/ansible/base/action/zuul_return.py`, read at the fork
//! pythonerdog/zuul@04c4541780de3a6dfcbeca748a61e13bf13ebca3): file contents under the
//! task's data, artifacts concatenated, secret data reaching the dependent job, and data
//! written to another `path` merged there and not returned to the build.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common;

fn run(executor: &str, ansible: &Path) -> (Value, Value) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = Command::new(common::gantry_bin())
        .env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .env("GANTRY_ANSIBLE", ansible)
        .arg("run")
        .arg(repo.join("tests/fixtures/ansible/zuul-return"))
        .args(["--pipeline", "check", "--executor", executor])
        .arg("--state-dir")
        .arg(&state)
        .arg("--jobs-dir")
        .arg(repo.join("jobs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{executor}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(state.join(name))
            .unwrap_or_else(|e| panic!("{executor}: {name}: {e}"));
        serde_json::from_str(&text).unwrap()
    };
    (read("received.json"), read("elsewhere.json"))
}

#[test]
fn zuul_return_file_secret_file_and_path_match_real_ansible() {
    let Some(ansible) = common::venv_tool("ansible-playbook") else {
        return;
    };
    let builtin = run("builtin", &ansible);
    let real = run("ansible", &ansible);
    assert_eq!(builtin, real, "builtin vs ansible-playbook");
    let (received, elsewhere) = builtin;
    assert_eq!(
        received,
        json!({
            "a": 1,
            "b": {"c": 1, "d": 2},
            "token": "t0ken-from-file-5d1e",
            "nested": {"x": 1, "y": 2},
            "artifacts": ["from-data", "from-file"],
            "elsewhere": "not returned",
            "keep": "not returned",
        })
    );
    assert_eq!(
        elsewhere,
        json!({"data": {"elsewhere": 1, "keep": {"a": 1, "b": 2}}, "secret_data": {"hidden": true}})
    );
}
