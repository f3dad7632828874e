//! Issue 13 item 1: a job's `roles:` attribute. Roles of tenant repositories given with
//! `--config-repo` (a repository's `roles/`, or a bare role under the name `name:` gives it)
//! are found by the project's playbooks under both executors; a reference to a repository
//! not given is a one-line error naming the job and file:line. Zuul's rules:
//! `zuul/executor/server.py` (`findRole`, `prepareZuulRole`), `zuul/configloader.py`
//! (`JobParser._makeZuulRole`). Fixture: tests/fixtures/zuul-roles.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zuul-roles")
}

fn gantry_run(state: &Path, pipeline: &str, executor: &str, repos: &[(&str, &str)]) -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .env("GANTRY_BUILDER", "native")
        .arg("run")
        .arg(fixture().join("project"))
        .args(["--pipeline", pipeline, "--executor", executor])
        .arg("--state-dir")
        .arg(state)
        .arg("--jobs-dir")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jobs"));
    for (name, dir) in repos {
        c.arg("--config-repo")
            .arg(format!("{name}={}", fixture().join(dir).display()));
    }
    c
}

fn logs(state: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(state.join("builds")).unwrap() {
        let p = e.unwrap().path().join("job-output.txt");
        all.push_str(&std::fs::read_to_string(p).unwrap());
    }
    all
}

const TENANT: &[(&str, &str)] = &[
    ("example/roles-lib", "repos/roles-lib"),
    ("example/ensure-marker", "repos/bare-role"),
];

#[test]
fn tenant_roles_are_on_the_role_path_under_both_executors() {
    let ansible = common::venv_tool("ansible-playbook");
    for executor in ["builtin", "ansible"] {
        let mut cmd = {
            let tmp = tempfile::tempdir().unwrap();
            let state = tmp.path().join("state");
            (gantry_run(&state, "check", executor, TENANT), tmp, state)
        };
        if executor == "ansible" {
            let Some(a) = &ansible else { continue };
            cmd.0.env("GANTRY_ANSIBLE", a);
        }
        let out = cmd.0.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{executor}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("uses-tenant-roles  SUCCESS"), "{stdout}");
        let log = logs(&cmd.2);
        // The roles/ directory of example/roles-lib, with its defaults.
        assert!(
            log.contains("greet role says: hello from roles-lib"),
            "{executor}: {log}"
        );
        // The bare role example/ensure-marker, under the name the job gives it.
        assert!(
            log.contains("marker role says: from the bare role"),
            "{executor}: {log}"
        );
    }
}

#[test]
fn a_role_repository_not_given_is_an_error_naming_the_job_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // The job's own roles: the bare role's repository is left out.
    let out = gantry_run(&state, "check", "builtin", &TENANT[..1])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: zuul.yaml:3:5: job uses-tenant-roles: roles: repository example/ensure-marker \
         is not given (add --config-repo example/ensure-marker=DIR)"
    );
    // Nothing ran.
    assert!(!state.join("builds").exists());

    let out = gantry_run(&state, "gate", "builtin", TENANT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("zuul.yaml:11:5: job role-from-missing-repo: roles: repository example/not-given is not given"),
        "{stderr}"
    );

    // A repository that is neither a bare role nor holds roles/ (Zuul: "Unable to find
    // role in …").
    let out = gantry_run(
        &state,
        "promote",
        "builtin",
        &[("example/empty", "repos/empty")],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "zuul.yaml:17:5: job role-from-empty-repo: roles: Unable to find role in example/empty"
        ),
        "{stderr}"
    );
}
