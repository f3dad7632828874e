//! A sweep over more real Zuul repositories (openstack/kolla with openstack-zuul-jobs and
//! zuul-jobs, openstack/project-config, vexxhost/atmosphere): what each one needed from
//! gantry, on small cuts of their configuration (tests/fixtures/zuul2-tenant, commits in
//! its README).
//!
//! - openstack-zuul-jobs' `openstack-tox` is `branches: {regex: '^*/(…)$', negate: true}`:
//!   a pattern re2 reads (Zuul compiles with re2 first) and Python's `re` rejects, and a
//!   negated matcher. Before: a configuration error; then, `negate` ignored, no variant of
//!   `openstack-tox` applied on master and every tox job lost its run playbook.
//! - project-pipeline entries with `branches` apply only on those branches (Zuul's
//!   "Pipeline variant … did not match"), and a job none of whose entries matches does not
//!   run: `openstack-tox-py312` is non-voting on stable/2024.2 only.
//! - `--allow-external`: a soft dependency on a job of a repository not given is not an
//!   error; a project whose only template is not given says so.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/zuul2-tenant")
}

/// `gantry job ARGS…` over `project` with the tenant's repositories: the `base` job
/// (opentelekomcloud-infra/base-jobs), the opendev/base-jobs stand-in (both from
/// tests/fixtures/job-tenant), zuul-jobs and openstack-zuul-jobs (cut).
fn gantry_job(project: &str, args: &[&str]) -> (String, String, i32) {
    let t = root().join("tests/fixtures/job-tenant/repos");
    let z = fixture().join("repos");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.arg("job")
        .args(args)
        .arg("--config-repo")
        .arg(format!(
            "opentelekomcloud-infra/base-jobs={}",
            t.join("otc-base-jobs").display()
        ))
        .arg("--config-repo")
        .arg(format!(
            "opendev/base-jobs={}",
            t.join("opendev-base-jobs").display()
        ))
        .arg("--config-repo")
        .arg(format!("zuul/zuul-jobs={}", z.join("zuul-jobs").display()))
        .arg("--config-repo")
        .arg(format!(
            "openstack/openstack-zuul-jobs={}",
            z.join("openstack-zuul-jobs").display()
        ))
        .arg(fixture().join("projects").join(project))
        .env("GANTRY_JOBS_DIR", root().join("jobs"))
        .env("GANTRY_LOG", "error")
        .env("NO_COLOR", "1");
    let o = cmd.output().expect("running gantry");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

fn kolla_graph(branch: &str) -> String {
    let (out, err, code) = gantry_job(
        "kolla",
        &[
            "graph",
            "--pipeline",
            "check",
            "--branch",
            branch,
            "--project",
            "openstack/kolla",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("error"), "{err}");
    out
}

#[test]
fn kolla_graphs_on_master_with_negated_branch_matchers() {
    assert_eq!(
        kolla_graph("master"),
        "\
check pipeline of openstack/kolla: 4 jobs
not run for this change (files, irrelevant-files, branches): openstack-tox-py39, openstack-tox-py312
kolla-build-ubuntu-noble
kolla-build-ubuntu-noble-podman
openstack-tox-pep8
openstack-tox-cover
"
    );
}

#[test]
fn kolla_graphs_on_stable_branches_with_their_pipeline_variants() {
    // stable/2024.2: openstack-tox-cover's negated `^.*/(…|2024.2)$` variant does not
    // apply, its `^.*/2024.2` one does; py312 is listed non-voting for this branch only.
    assert_eq!(
        kolla_graph("stable/2024.2"),
        "\
check pipeline of openstack/kolla: 6 jobs
kolla-build-ubuntu-noble
kolla-build-ubuntu-noble-podman
openstack-tox-pep8
openstack-tox-py39
openstack-tox-py312  [non-voting]
openstack-tox-cover
"
    );
    assert!(kolla_graph("stable/2025.1").contains("openstack-tox-py312\n"));
}

/// `job show --branch`: which `openstack-tox` variant (and so which nodeset) applies.
fn pep8_on(branch: &str) -> (String, String) {
    let (out, err, code) = gantry_job(
        "kolla",
        &[
            "show",
            "--branch",
            branch,
            "--project",
            "openstack/kolla",
            "openstack-tox-pep8",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    (line("branches:"), line("nodeset:"))
}

#[test]
fn the_negated_variant_applies_where_its_pattern_does_not_match() {
    let (branches, nodeset) = pep8_on("master");
    assert_eq!(
        branches,
        "branches: [!^*/(victoria|wallaby|xena|yoga|zed|2023.1|2023.2|2024.1|2024.2)$]  # from openstack/openstack-zuul-jobs:zuul.d/jobs.yaml:15"
    );
    assert!(
        nodeset.starts_with("nodeset: \"ubuntu-noble\""),
        "{nodeset}"
    );
    // `^*/` (re2: a repeated start anchor, then "/") never matches "stable/…", so the
    // negated variant applies on stable branches too, as in Zuul; the later
    // `^.*/2024.2` variant then sets the nodeset.
    let (branches, nodeset) = pep8_on("stable/2024.2");
    assert!(
        branches.starts_with("branches: [^.*/2023.1, "),
        "{branches}"
    );
    assert!(
        nodeset.starts_with("nodeset: \"ubuntu-jammy\""),
        "{nodeset}"
    );
    let (_, nodeset) = pep8_on("stable/zed");
    assert!(
        nodeset.starts_with("nodeset: \"ubuntu-focal\""),
        "{nodeset}"
    );

    // JSON keeps Zuul's form of a negated matcher.
    let (out, err, code) = gantry_job(
        "kolla",
        &[
            "show",
            "--json",
            "--branch",
            "master",
            "--project",
            "openstack/kolla",
            "openstack-tox-pep8",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["branches"],
        serde_json::json!([{
            "regex": "^*/(victoria|wallaby|xena|yoga|zed|2023.1|2023.2|2024.1|2024.2)$",
            "negate": true
        }])
    );
    assert!(!v["run"].as_array().unwrap().is_empty(), "{out}");
}

#[test]
fn a_soft_dependency_on_a_repository_not_given_is_external_with_allow_external() {
    let args = [
        "graph",
        "--pipeline",
        "check",
        "--project",
        "openstack/project-config",
        "--changed-file",
        "grafana/nova.yaml",
    ];
    // Zuul: the job must exist in the tenant (opendev/grafyaml is not given here).
    let (out, err, code) = gantry_job("project-config", &args);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(
            "openstack/openstack-zuul-jobs:zuul.d/jobs.yaml:250:5: Job grafyaml-build-image not defined"
        ),
        "{err}"
    );
    let mut partial = args.to_vec();
    partial.push("--allow-external");
    let (out, err, code) = gantry_job("project-config", &partial);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "\
check pipeline of openstack/project-config: 2 jobs
opendev-buildset-registry  [requires: docker-image]
  project-config-grafana
"
    );
    // A change outside grafana/ runs neither (the shared files matcher).
    let mut other = partial.clone();
    other[6] = "README.rst";
    let (out, _, code) = gantry_job("project-config", &other);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("check pipeline of openstack/project-config: 0 jobs"),
        "{out}"
    );
}

#[test]
fn a_project_whose_template_is_not_given_says_so() {
    let (out, err, code) = gantry_job(
        "atmosphere",
        &[
            "graph",
            "--pipeline",
            "check",
            "--project",
            "vexxhost/atmosphere",
            "--allow-external",
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(
            "project vexxhost/atmosphere runs no job in pipeline \"check\" (it uses project-template atmosphere-molecule-jobs defined in no given repository: give it with --config-repo)"
        ),
        "{err}"
    );
}
