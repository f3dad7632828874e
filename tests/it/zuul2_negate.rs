//! `negate:` on matchers (Zuul's `{regex: PATTERN, negate: true}`, `ZUUL_REGEX` in
//! zuul/configloader.py; `ZuulRegex.match` returns `not re.match(...)`): accepted by
//! `branches`, `files` and `irrelevant-files`, evaluated by `job graph` (and so by
//! `gantry run`, which selects jobs through the same graph). Fixture:
//! tests/fixtures/zuul2-negate. The real case (openstack-zuul-jobs' negated branch
//! matchers) is tests/it/zuul2_sweep.rs.

use std::path::PathBuf;
use std::process::Command;

fn graph(args: &[&str]) -> (String, String, i32) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["job", "graph", "--pipeline", "check", "--no-library"])
        .args(args)
        .arg(root.join("tests/fixtures/zuul2-negate"))
        .env("GANTRY_LOG", "error")
        .env("NO_COLOR", "1")
        .output()
        .expect("running gantry");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// The jobs that run and those left out, for a change on `branch` touching `files`.
fn select(branch: &str, files: &[&str]) -> String {
    let mut args = vec!["--branch", branch];
    for f in files {
        args.extend(["--changed-file", f]);
    }
    let (out, err, code) = graph(&args);
    assert_eq!(code, 0, "{err}");
    out.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn negated_files_run_a_job_when_some_file_does_not_match() {
    // Only documentation: `files: {regex: ^doc/.*, negate: true}` matches no file.
    assert_eq!(
        select("master", &["doc/a.rst"]),
        "not run for this change (files, irrelevant-files, branches): code-files, image-only\nnot-stable"
    );
    // One file outside doc/ is enough.
    assert_eq!(
        select("master", &["doc/a.rst", "src/x.py"]),
        "not run for this change (files, irrelevant-files, branches): image-only\ncode-files\nnot-stable"
    );
}

#[test]
fn negated_irrelevant_files_skip_a_job_when_every_file_is_outside_the_pattern() {
    assert_eq!(
        select("master", &["images/a/Dockerfile"]),
        "code-files\nimage-only\nnot-stable"
    );
    assert!(select("master", &["src/x.py"]).contains("branches): image-only\n"));
}

#[test]
fn negated_branches_select_every_other_branch_and_any_listed_matcher_is_enough() {
    assert_eq!(
        select("stable/2025.1", &["src/x"]),
        "not run for this change (files, irrelevant-files, branches): image-only, not-stable\ncode-files"
    );
    assert!(select("stable/keep", &["src/x"]).contains("\nnot-stable"));
    assert!(select("main", &["src/x"]).contains("\nnot-stable"));
}

#[test]
fn a_regex_matcher_without_regex_or_with_a_non_boolean_negate_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("zuul.yaml"),
        "- job:\n    name: j\n    parent: null\n    run: x.yaml\n    files:\n      - negate: true\n    branches:\n      regex: main\n      negate: maybe\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["config", "validate", "--no-library"])
        .arg(tmp.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("zuul.yaml:6:9: job \"j\": \"files\": a regex matcher needs \"regex\""),
        "{err}"
    );
    assert!(err.contains("zuul.yaml:9:15:"), "{err}");
}
