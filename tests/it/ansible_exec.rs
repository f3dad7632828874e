//! `gantry run --executor ansible|auto|builtin` with real ansible-core (the test venv's
//! `ansible-playbook`): native roles reached from real Ansible, a real repository's
//! image-gating playbooks run unchanged, project roles winning over native ones under both
//! executors, `auto` choosing, zuul_return, redaction and timestamps in job-output.txt.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, run_fail};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/ansible").join(name)
}

fn ansible() -> Option<PathBuf> {
    common::venv_tool("ansible-playbook")
}

fn gantry_run(state: &Path, ansible: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .env("GANTRY_BUILDER", "native")
        .env("GANTRY_ANSIBLE", ansible)
        .arg("run")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .arg("--jobs-dir")
        .arg(repo().join("jobs"));
    c
}

/// Runs and expects success; stdout, stderr.
fn ok(mut cmd: Command) -> (String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{cmd:?}:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Every build log under `state`.
fn logs(state: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(state.join("builds")).unwrap() {
        let p = e.unwrap().path().join("job-output.txt");
        all.push_str(&std::fs::read_to_string(p).unwrap());
    }
    all
}

#[test]
fn seed_check_runs_under_real_ansible_with_native_roles() {
    let Some(a) = ansible() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let seed = repo().join("examples/seed");
    let base = seed.join("base");
    let app = seed.join("app");
    let (out, err) = ok(gantry_run(
        &state,
        &a,
        &[
            base.to_str().unwrap(),
            "--pipeline",
            "check",
            "--change",
            "1",
            "--executor",
            "ansible",
        ],
    ));
    assert!(out.contains(": SUCCESS"), "{out}");
    assert!(err.contains("executor: ansible"), "{err}");
    // Change 2 builds FROM change 1's speculative image, found through the native roles.
    let (out, _) = ok(gantry_run(
        &state,
        &a,
        &[
            app.to_str().unwrap(),
            "--pipeline",
            "check",
            "--change",
            "2",
            "--ahead",
            "base:1",
            "--executor",
            "ansible",
        ],
    ));
    assert!(out.contains(": SUCCESS"), "{out}");
    let log = logs(&state);
    assert!(log.contains("PLAY RECAP"), "real Ansible ran: {log}");
    assert!(
        log.contains("role build-container-image: gantry's native implementation"),
        "{log}"
    );
    assert!(log.contains("role run-buildset-registry: gantry's native implementation"));
}

#[test]
fn a_real_repositorys_image_playbooks_run_unchanged_under_ansible() {
    let Some(a) = ansible() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (out, _) = ok(gantry_run(
        &state,
        &a,
        &[
            fixture("ansible-zuul-jobs").to_str().unwrap(),
            "--pipeline",
            "check",
            "--change",
            "7",
            "--executor",
            "ansible",
        ],
    ));
    assert!(
        out.lines()
            .any(|l| l.starts_with("ansible-build-container-image") && l.contains("SUCCESS")),
        "{out}"
    );
    let log = logs(&state);
    for role in [
        "ensure-podman",
        "run-buildset-registry",
        "use-buildset-registry",
        "build-container-image",
    ] {
        assert!(
            log.contains(&format!("role {role}: gantry's native implementation")),
            "{role}: {log}"
        );
    }
    // The image was built and pushed to the buildset registry.
    assert!(log.contains("example/azj"), "{log}");
}

#[test]
fn project_roles_win_under_both_executors() {
    let Some(a) = ansible() else { return };
    for executor in ["builtin", "ansible"] {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let (out, _) = ok(gantry_run(
            &state,
            &a,
            &[
                fixture("project-roles").to_str().unwrap(),
                "--pipeline",
                "check",
                "--executor",
                executor,
            ],
        ));
        assert!(out.contains("SUCCESS"), "{executor}: {out}");
        let log = logs(&state);
        assert!(
            log.contains("project role build-container-image ran"),
            "{executor}: {log}"
        );
        assert!(
            !log.contains("gantry's native implementation"),
            "{executor}: {log}"
        );
    }
}

#[test]
fn auto_runs_unsupported_playbooks_with_ansible_redacted_and_timestamped() {
    let Some(a) = ansible() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (out, err) = ok(gantry_run(
        &state,
        &a,
        &[
            fixture("auto").to_str().unwrap(),
            "--pipeline",
            "check",
            "--json",
        ],
    ));
    assert!(err.contains("executor: ansible"), "{err}");
    assert!(err.contains("auto:"), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let build = &report["builds"][0];
    assert_eq!(build["result"], "SUCCESS", "{out}");
    // zuul_return through the shipped action plugin.
    assert_eq!(
        build["artifacts"][0]["url"],
        "https://example.org/unsupported/report.html"
    );
    let log = logs(&state);
    assert!(!log.contains("S3cr3t-Pass-7c6b5a"), "{log}");
    assert!(log.contains("password=******"), "{log}");
    // The username is not a password: `zuul` stays where it is an ordinary word.
    assert!(log.contains("user zuul reads zuul.yaml"), "{log}");
    let stamp = regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \| ").unwrap();
    assert!(log.lines().all(|l| stamp.is_match(l)), "{log}");
}

#[test]
fn auto_without_ansible_lists_what_is_unsupported() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, err, code) = run_fail(&mut gantry_run(
        &tmp.path().join("state"),
        Path::new("/nonexistent/ansible-playbook"),
        &[fixture("auto").to_str().unwrap(), "--pipeline", "check"],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("playbooks/run.yaml"), "{err}");
    assert!(err.contains("set_stats"), "{err}");
    assert!(err.contains("gantry setup ansible"), "{err}");
}
