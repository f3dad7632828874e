//! Issue 13: real projects with their Zuul tenant's other repositories (`--config-repo`),
//! Zuul's file reading, matchers, empty pipelines, `queue:` and shadowing.
//! Fixtures: tests/fixtures/job-tenant (README there cites each repository and commit).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tenant() -> PathBuf {
    repo().join("tests/fixtures/job-tenant")
}

fn gantry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_JOBS_DIR", repo().join("jobs"))
        .env("GANTRY_LOG", "error")
        .env("NO_COLOR", "1")
        .output()
        .expect("running gantry")
}

fn out(o: &Output) -> (String, String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// `--config-repo` arguments for the fixture tenant, in tenant order.
fn tenant_args() -> Vec<String> {
    let t = tenant();
    [
        ("opentelekomcloud-infra/base-jobs", "repos/otc-base-jobs"),
        ("opendev/base-jobs", "repos/opendev-base-jobs"),
        ("zuul/zuul-jobs", "repos/zuul-jobs"),
    ]
    .iter()
    .flat_map(|(name, dir)| {
        [
            "--config-repo".to_string(),
            format!("{name}={}", t.join(dir).display()),
        ]
    })
    .collect()
}

fn graph(project: &str, pipeline: &str, extra: &[&str]) -> (String, String, i32) {
    let dir = tenant().join("projects").join(project);
    let mut args: Vec<String> = vec![
        "job".into(),
        "graph".into(),
        "--pipeline".into(),
        pipeline.into(),
    ];
    args.extend(tenant_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(dir.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    out(&gantry(&argv))
}

fn json_graph(project: &str, pipeline: &str, extra: &[&str]) -> Vec<String> {
    let mut e = vec!["--json"];
    e.extend_from_slice(extra);
    let (stdout, stderr, code) = graph(project, pipeline, &e);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn real_projects_graph_completely_with_their_tenant_repositories() {
    for (project, pipeline, jobs) in [
        ("loci", "check", 2),
        ("loci", "gate", 2),
        ("loci", "promote", 1),
        ("openstack-helm-images", "check", 5),
        ("openstack-helm-images", "gate", 9),
        ("openstack-helm-images", "promote", 4),
    ] {
        let (stdout, stderr, code) = graph(project, pipeline, &[]);
        assert_eq!(code, 0, "{project} {pipeline}: {stderr}");
        assert!(
            stdout.starts_with(&format!("{pipeline} pipeline of {project}: {jobs} job")),
            "{project} {pipeline}: {stdout}"
        );
        assert!(!stderr.contains("error"), "{stderr}");
    }
    // Without the tenant, the same project cannot be graphed: its parents live elsewhere.
    let dir = tenant().join("projects/loci");
    let (_, stderr, code) = out(&gantry(&[
        "job",
        "graph",
        "--pipeline",
        "check",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Job opendev-buildset-registry not defined"),
        "{stderr}"
    );
}

#[test]
fn inheritance_reaches_the_second_and_third_repository() {
    let dir = tenant().join("projects/loci");
    let mut args: Vec<String> = vec!["job".into(), "show".into(), "loci-buildset-registry".into()];
    args.extend(tenant_args());
    args.push(dir.display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (stdout, stderr, code) = out(&gantry(&argv));
    assert_eq!(code, 0, "{stderr}");
    // base (third repository) → opendev-buildset-registry (second) → the project's job.
    assert!(
        stdout.contains("base@opentelekomcloud-infra/base-jobs:zuul.d/jobs.yaml"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("opendev-buildset-registry@opendev/base-jobs:zuul.d/buildset-registry.yaml"),
        "{stdout}"
    );
    assert!(
        stdout.contains("loci-buildset-registry@zuul.d/base.yaml"),
        "{stdout}"
    );
}

#[test]
fn files_matchers_select_the_image_jobs_a_change_touches() {
    let jobs = json_graph(
        "openstack-helm-images",
        "gate",
        &["--changed-file", "nova/Dockerfile"],
    );
    assert!(
        jobs.contains(&"openstack-helm-images-build-nova".to_string()),
        "{jobs:?}"
    );
    assert!(
        jobs.contains(&"openstack-helm-images-upload-nova".to_string()),
        "{jobs:?}"
    );
    assert!(!jobs.iter().any(|j| j.contains("keystone")), "{jobs:?}");
    let jobs = json_graph(
        "openstack-helm-images",
        "gate",
        &["--changed-file", "keystone/Dockerfile"],
    );
    assert!(
        jobs.contains(&"openstack-helm-images-upload-keystone".to_string()),
        "{jobs:?}"
    );
    assert!(!jobs.iter().any(|j| j.contains("nova")), "{jobs:?}");
    // irrelevant-files: a documentation change runs none of the image jobs.
    let jobs = json_graph(
        "openstack-helm-images",
        "gate",
        &["--changed-file", "doc/source/index.rst"],
    );
    assert_eq!(
        jobs,
        vec!["openstack-helm-images-buildset-registry".to_string()]
    );
    // The config-file rule: touching a job's own definition runs it.
    let jobs = json_graph(
        "openstack-helm-images",
        "check",
        &["--changed-file", "zuul.d/keystone.yaml"],
    );
    assert!(
        jobs.contains(&"openstack-helm-images-build-keystone".to_string()),
        "{jobs:?}"
    );
    // Without file information every job runs, and the graph says so.
    let (_, stderr, code) = graph("openstack-helm-images", "check", &[]);
    assert_eq!(code, 0);
    assert!(stderr.contains("not evaluated"), "{stderr}");
}

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn only_yaml_files_are_read_and_zuul_ignore_prunes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    write(
        &dir,
        "zuul.d/project.yaml",
        "- project:\n    check:\n      jobs: [noop]\n",
    );
    // Ansible playbooks kept under zuul.d (atmosphere does this) are not configuration.
    write(
        &dir,
        "zuul.d/playbooks/site.yml",
        "- hosts: all\n  tasks: []\n",
    );
    write(&dir, "zuul.d/ignored/.zuul.ignore", "");
    write(&dir, "zuul.d/ignored/broken.yaml", "- not-a-stanza: {}\n");
    let (stdout, stderr, code) = out(&gantry(&[
        "config",
        "validate",
        "--no-library",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("from 1 file"), "{stdout}");
    // Zuul's built-in noop job exists.
    let (stdout, _, code) = out(&gantry(&[
        "job",
        "graph",
        "--no-library",
        "--pipeline",
        "check",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    assert!(stdout.contains("noop"), "{stdout}");
}

#[test]
fn a_pipeline_that_selects_no_job_is_an_error() {
    let seed = repo().join("examples/seed/base");
    let (_, stderr, code) = out(&gantry(&[
        "job",
        "graph",
        "--pipeline",
        "chek",
        seed.to_str().unwrap(),
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("runs no job in pipeline \"chek\""),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean check?"), "{stderr}");
    let state = tempfile::tempdir().unwrap();
    let (_, stderr, code) = out(&gantry(&[
        "run",
        seed.to_str().unwrap(),
        "--pipeline",
        "chek",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("did you mean check?"), "{stderr}");
}

#[test]
fn a_checkout_named_differently_from_its_stanza_is_that_project() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("checkout-42");
    write(
        &dir,
        "zuul.yaml",
        "- project:\n    name: example/app\n    check:\n      jobs: [noop]\n",
    );
    let (stdout, stderr, code) = out(&gantry(&[
        "job",
        "graph",
        "--no-library",
        "--pipeline",
        "check",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("check pipeline of example/app: 1 job"),
        "{stdout}"
    );
}

#[test]
fn queue_in_a_project_pipeline_is_a_deprecation_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("old");
    write(
        &dir,
        "zuul.yaml",
        "- project:\n    gate:\n      queue: integrated\n      jobs: [noop]\n",
    );
    let (_, stderr, code) = out(&gantry(&[
        "config",
        "validate",
        "--no-library",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "warning: zuul.yaml:3:14: project pipeline \"gate\": \"queue\" inside a project pipeline is deprecated"
        ),
        "{stderr}"
    );
}

#[test]
fn tenant_repositories_shadow_by_zuul_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    let app = tmp.path().join("app");
    write(
        &first,
        "zuul.d/jobs.yaml",
        "- job:\n    name: shared\n    run: playbooks/first.yaml\n- job:\n    name: uses-missing\n    parent: from-a-repository-not-given\n",
    );
    write(
        &second,
        "zuul.d/jobs.yaml",
        "- job:\n    name: shared\n    run: playbooks/second.yaml\n",
    );
    write(
        &app,
        "zuul.yaml",
        "- project:\n    check:\n      jobs: [shared, build-container-image]\n",
    );
    // zuul-jobs (a tenant repository) redefines a job of gantry's shipped library.
    let zuul_jobs = tenant().join("repos/zuul-jobs");
    let (stdout, stderr, code) = out(&gantry(&[
        "job",
        "show",
        "build-container-image",
        "--config-repo",
        &format!("zuul/zuul-jobs={}", zuul_jobs.display()),
        "--config-repo",
        &format!("first={}", first.display()),
        "--config-repo",
        &format!("second={}", second.display()),
        app.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("zuul/zuul-jobs:zuul.d/container-jobs.yaml"),
        "{stdout}"
    );
    assert!(!stdout.contains("jobs/container-images.yaml"), "{stdout}");
    // The first repository's definition wins; the second one's is a warning.
    assert!(
        stderr.contains("job shared is also defined in first"),
        "{stderr}"
    );
    // An unresolved reference inside a tenant repository is a warning, not an error.
    assert!(
        stderr.contains("warning: first:zuul.d/jobs.yaml"),
        "{stderr}"
    );
    let (stdout, _, code) = out(&gantry(&[
        "job",
        "show",
        "shared",
        "--config-repo",
        &format!("first={}", first.display()),
        "--config-repo",
        &format!("second={}", second.display()),
        app.to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("playbooks/first.yaml") && !stdout.contains("second.yaml"),
        "{stdout}"
    );
}

/// `zuul` variables as Zuul's executor sets them (zuul/executor/server.py, prepareVars):
/// branch, jobtags, timeout, items, projects keyed by canonical name.
#[test]
fn zuul_variables_have_the_executors_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    write(
        &dir,
        "zuul.yaml",
        "- job:\n    name: show-vars\n    tags: [images]\n    timeout: 600\n    run: playbooks/vars.yaml\n- project:\n    name: example/app\n    check:\n      jobs: [show-vars]\n",
    );
    write(
        &dir,
        "playbooks/vars.yaml",
        "- hosts: localhost\n  tasks:\n    - zuul_return:\n        data:\n          zuul:\n            artifacts:\n              - name: vars\n                url: \"{{ zuul.branch }}|{{ zuul.projects | list | first }}|{{ zuul.project.canonical_name }}|{{ zuul.jobtags | join(',') }}|{{ zuul.timeout }}|{{ zuul.items | length }}|{{ zuul.tag }}\"\n",
    );
    let state = tempfile::tempdir().unwrap();
    let o = gantry(&[
        "run",
        dir.to_str().unwrap(),
        "--pipeline",
        "check",
        "--json",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let (stdout, stderr, code) = out(&o);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("master|localhost/example/app|localhost/example/app|images|600|1|"),
        "{stdout}"
    );
}
