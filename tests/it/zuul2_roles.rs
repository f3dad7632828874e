//! Per-playbook role scope, as Zuul has it (`PlaybookContext.roles`: `Job.applyVariant`
//! updates the job's roles, then gives the playbooks of that definition the roles as they
//! stand; zuul/model.py at zuul commit b5bc01c72d): a child's playbook sees its own
//! `roles:`, its ancestors' and their repositories' `roles/` (implicit roles); a parent's
//! playbook does not see a role only the child adds. Under both executors. Fixture:
//! tests/fixtures/zuul2-role-scope.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zuul2-role-scope")
}

fn run(state: &Path, pipeline: &str, executor: &str) -> (String, String, i32) {
    let f = fixture();
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .arg("run")
        .arg(f.join("project"))
        .args(["--pipeline", pipeline, "--executor", executor])
        .arg("--state-dir")
        .arg(state)
        .arg("--jobs-dir")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jobs"));
    for (name, dir) in [
        ("example/parent-jobs", "parent-jobs"),
        ("example/roles-a", "roles-a"),
        ("example/roles-b", "roles-b"),
    ] {
        c.arg("--config-repo")
            .arg(format!("{name}={}", f.join(dir).display()));
    }
    if executor == "ansible"
        && let Some(a) = common::venv_tool("ansible-playbook")
    {
        c.env("GANTRY_ANSIBLE", a);
    }
    let o = c.output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// The roles that ran, in order, from the build log.
fn roles_ran(state: &Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(state.join("builds")).unwrap() {
        let log = std::fs::read_to_string(e.unwrap().path().join("job-output.txt")).unwrap();
        for l in log.lines() {
            if let Some(i) = l.find(" runs in a playbook") {
                let head = &l[..i];
                out.push(
                    head.rsplit(['|', '"', ' '])
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    }
    out
}

fn executors() -> Vec<&'static str> {
    let mut e = vec!["builtin"];
    if common::venv_tool("ansible-playbook").is_some() {
        e.push("ansible");
    }
    e
}

#[test]
fn a_childs_playbook_sees_its_roles_its_ancestors_and_their_repositories_roles() {
    for executor in executors() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let (stdout, stderr, code) = run(&state, "check", executor);
        assert_eq!(code, 0, "{executor}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("scoped-child  SUCCESS"), "{stdout}");
        // pre-run (the parent's): its implicit role and its explicit one; run (the
        // child's): the parent's repository's role, the parent's role and its own.
        assert_eq!(
            roles_ran(&state),
            ["parent-role", "role-a", "parent-role", "role-a", "role-b"],
            "{executor}"
        );
    }
}

#[test]
fn a_parents_playbook_does_not_see_a_role_only_the_child_adds() {
    for executor in executors() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let (stdout, stderr, code) = run(&state, "gate", executor);
        assert_eq!(code, 1, "{executor}:\n{stdout}\n{stderr}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("scoped-child-greedy  RETRY_LIMIT"))
            .unwrap_or_else(|| panic!("{executor}: {stdout}"));
        assert!(line.contains("pre-greedy.yaml"), "{line}");
        match executor {
            "builtin" => assert!(
                line.contains("role \"role-b\" not found") && !line.contains("roles-b"),
                "{line}"
            ),
            _ => assert!(
                line.contains("the role 'role-b' was not found") && !line.contains("roles-b"),
                "{line}"
            ),
        }
    }
}
