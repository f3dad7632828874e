//! Issue 13 item 4 on `gantry run`: `--branch`, `--changed-file` and `--diff-base` select
//! the jobs Zuul's matchers select (`files`, `irrelevant-files`, `branches`; a job none of
//! whose own variants matches the branch does not run), `zuul.branch` is the chosen
//! branch, and a change no job is for says so (exit 0, nothing run, no "SUCCESS").
//! Fixture: tests/fixtures/zuul-match.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zuul-match")
}

/// `gantry run` of the check pipeline: (stdout, stderr, exit code).
fn run(dir: &Path, state: &Path, args: &[&str]) -> (String, String, i32) {
    let out = Command::new(common::gantry_bin())
        .env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .arg("run")
        .arg(dir)
        .args(["--pipeline", "check", "--executor", "builtin"])
        .arg("--state-dir")
        .arg(state)
        .arg("--jobs-dir")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jobs"))
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// The jobs that ran, from their logs: `job X on branch B` lines, sorted.
fn ran(state: &Path) -> Vec<String> {
    let mut out = vec![];
    let Ok(dir) = std::fs::read_dir(state.join("builds")) else {
        return out;
    };
    for e in dir {
        let log = std::fs::read_to_string(e.unwrap().path().join("job-output.txt")).unwrap();
        if let Some(line) = log.lines().find(|l| l.contains("on branch")) {
            out.push(line.rsplit(" | ").next().unwrap().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn changed_files_and_branch_select_the_jobs_that_run() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (stdout, stderr, code) = run(&fixture(), &state, &["--changed-file", "a/Dockerfile"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        ran(&state),
        [
            "job image-a on branch master",
            "job not-for-docs on branch master"
        ]
    );
    assert!(
        stderr.contains(
            "not run for this change (files, irrelevant-files, branches): image-b, stable-only"
        ),
        "{stderr}"
    );

    // Another branch: its variant runs, and zuul.branch is that branch.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (stdout, stderr, code) = run(
        &fixture(),
        &state,
        &[
            "--branch",
            "stable/2025.1",
            "--changed-file",
            "b/x",
            "--changed-file",
            "README.md",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        ran(&state),
        [
            "job image-b on branch stable/2025.1",
            "job not-for-docs on branch stable/2025.1",
            "job stable-only on branch stable/2025.1",
        ]
    );

    // Without file information every job whose branch matches runs.
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (stdout, stderr, code) = run(&fixture(), &state, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(ran(&state).len(), 3, "{:?}", ran(&state));
}

#[test]
fn a_change_no_job_is_for_says_so_and_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let (stdout, stderr, code) = run(&fixture(), &state, &["--changed-file", "docs/guide.md"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "no job of pipeline check runs for this change (branch master, 1 changed file): \
         image-a, image-b, not-for-docs, stable-only left out by files, irrelevant-files or branches"
    );
    assert!(!stdout.contains("SUCCESS"), "{stdout}");
    assert!(!state.join("builds").exists());
}

#[test]
fn diff_base_takes_the_files_of_the_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("matched");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&checkout)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::create_dir_all(checkout.join("playbooks")).unwrap();
    for f in ["zuul.yaml", "playbooks/show.yaml"] {
        std::fs::copy(fixture().join(f), checkout.join(f)).unwrap();
    }
    git(&["init", "-q", "-b", "master"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base"]);
    git(&["checkout", "-q", "-b", "stable/2025.1"]);
    std::fs::create_dir_all(checkout.join("b")).unwrap();
    std::fs::write(checkout.join("b/Dockerfile"), "FROM scratch\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "touch b"]);

    let state = tmp.path().join("state");
    // The branch defaults to the checkout's (stable/2025.1); the files are those of
    // `git diff --name-only master...HEAD` (b/Dockerfile).
    let (stdout, stderr, code) = run(&checkout, &state, &["--diff-base", "master"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        ran(&state),
        [
            "job image-b on branch stable/2025.1",
            "job not-for-docs on branch stable/2025.1",
            "job stable-only on branch stable/2025.1",
        ]
    );

    // A base git cannot resolve is a usage error naming it.
    let (_, stderr, code) = run(&checkout, &state, &["--diff-base", "no-such-ref"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--diff-base no-such-ref"), "{stderr}");
}

/// `job graph --json` of `zuul_yaml` on `branch`: the jobs in the graph, or the error.
fn graph_on(zuul_yaml: &str, branch: &str) -> Result<Vec<String>, (i32, String)> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("zuul.yaml"), zuul_yaml).unwrap();
    let out = Command::new(common::gantry_bin())
        .args([
            "job",
            "graph",
            "--no-library",
            "--json",
            "--pipeline",
            "check",
        ])
        .args(["--branch", branch])
        .arg(&dir)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect())
}

#[test]
fn branches_are_read_as_python_re_reads_them() {
    // Patterns real configurations use that a strict engine rejects: negative look-ahead,
    // look-behind, a back-reference; `{regex: ...}` mappings too.
    let yaml = r#"
- job:
    name: not-eol
    branches: ^(?!.*-eol$).*
    run: playbooks/x.yaml
- job:
    name: not-master
    branches:
      - regex: (?!master$)
    run: playbooks/x.yaml
- job:
    name: lookbehind
    branches: .*(?<!/zed)$
    run: playbooks/x.yaml
- job:
    name: same-twice
    branches: (\w+)/\1
    run: playbooks/x.yaml
- project:
    check:
      jobs: [not-eol, not-master, lookbehind, same-twice]
"#;
    assert_eq!(graph_on(yaml, "master").unwrap(), ["not-eol", "lookbehind"]);
    assert_eq!(
        graph_on(yaml, "stable/zed").unwrap(),
        ["not-eol", "not-master"]
    );
    assert_eq!(
        graph_on(yaml, "stable/zed-eol").unwrap(),
        ["not-master", "lookbehind"]
    );
    assert_eq!(
        graph_on(yaml, "foo/foo").unwrap(),
        ["not-eol", "not-master", "lookbehind", "same-twice"]
    );
}

#[test]
fn a_pattern_that_cannot_compile_is_an_error_at_its_line() {
    let yaml = "- job:\n    name: broken\n    branches:\n      - stable/(\n    files:\n      - '*.py'\n    run: playbooks/x.yaml\n- project:\n    check:\n      jobs: [broken]\n";
    let (code, stderr) = graph_on(yaml, "master").unwrap_err();
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("zuul.yaml:4:9: ")
                && l.contains("\"branches\": invalid regular expression \"stable/(\"")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("zuul.yaml:6:9: ")
                && l.contains("\"files\": invalid regular expression \"*.py\"")),
        "{stderr}"
    );
}

/// `zuul.executor` has the keys Zuul's executor gives it (`zuul/executor/server.py`,
/// `AnsibleJob.prepareVars`: `zuul_vars['executor'] = dict(hostname, src_root, log_root,
/// work_root, result_data_file, inventory_file)`), and `zuul.branch` the chosen branch.
#[test]
fn zuul_executor_has_the_keys_zuuls_executor_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::write(
        dir.join("zuul.yaml"),
        "- job:\n    name: keys\n    run: playbooks/keys.yaml\n- project:\n    check:\n      jobs: [keys]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("playbooks/keys.yaml"),
        "- hosts: localhost\n  tasks:\n    - debug:\n        msg: \"executor keys {{ zuul.executor | list | sort | join(',') }} branch {{ zuul.branch }}\"\n",
    )
    .unwrap();
    let state = tmp.path().join("state");
    let (stdout, stderr, code) = run(&dir, &state, &["--branch", "stable/x"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut log = String::new();
    for e in std::fs::read_dir(state.join("builds")).unwrap() {
        log.push_str(&std::fs::read_to_string(e.unwrap().path().join("job-output.txt")).unwrap());
    }
    assert!(
        log.contains(
            "executor keys hostname,inventory_file,log_root,result_data_file,src_root,work_root branch stable/x"
        ),
        "{log}"
    );
}
