//! Issue 13 item 2: partial job graphs with `--allow-external`. The real loci and
//! openstack-helm-images fixtures (tests/fixtures/job-tenant, commits in its README) are
//! graphed with one tenant repository, opendev/base-jobs, left out.

use std::path::PathBuf;
use std::process::Command;

fn tenant() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/job-tenant")
}

/// `gantry job graph` over `project` with every tenant repository but opendev/base-jobs.
fn graph_without_opendev(project: &str, extra: &[&str]) -> (String, String, i32) {
    let t = tenant();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.args(["job", "graph", "--pipeline", "check"])
        .arg("--config-repo")
        .arg(format!(
            "opentelekomcloud-infra/base-jobs={}",
            t.join("repos/otc-base-jobs").display()
        ))
        .arg("--config-repo")
        .arg(format!(
            "zuul/zuul-jobs={}",
            t.join("repos/zuul-jobs").display()
        ))
        .args(extra)
        .arg(t.join("projects").join(project))
        .env(
            "GANTRY_JOBS_DIR",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("jobs"),
        )
        .env("GANTRY_LOG", "error")
        .env("NO_COLOR", "1");
    let o = cmd.output().expect("running gantry");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn without_allow_external_the_missing_ancestor_is_an_error() {
    let (stdout, stderr, code) = graph_without_opendev("loci", &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("zuul.d/base.yaml:3:5")
            && stderr.contains("Job opendev-buildset-registry not defined"),
        "{stderr}"
    );
}

#[test]
fn partial_text_graph_shows_the_external_ancestor_once_over_the_jobs_needing_it() {
    let (stdout, stderr, code) =
        graph_without_opendev("openstack-helm-images", &["--allow-external"]);
    assert_eq!(code, 0, "{stderr}");
    let expected = "\
check pipeline of openstack-helm-images: 4 jobs
1 not frozen: defined, or an ancestor defined, in a repository not given (--allow-external)
opendev-buildset-registry  [external: defined in no given repository]
  openstack-helm-images-buildset-registry  [not frozen]
    openstack-helm-images-build-base
      openstack-helm-images-build-keystone (soft)
      openstack-helm-images-build-nova (soft)
    openstack-helm-images-build-venv-builder
      openstack-helm-images-build-keystone (soft) (see above)
      openstack-helm-images-build-nova (soft) (see above)
    openstack-helm-images-build-keystone (see above)
    openstack-helm-images-build-nova (see above)
";
    assert_eq!(stdout, expected);
    // Once, however many jobs need it.
    assert_eq!(
        stdout
            .matches("opendev-buildset-registry  [external")
            .count(),
        1
    );

    let (stdout, stderr, code) = graph_without_opendev("loci", &["--allow-external"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "check pipeline of loci: 1 job
1 not frozen: defined, or an ancestor defined, in a repository not given (--allow-external)
opendev-buildset-registry  [external: defined in no given repository]
  loci-buildset-registry  [not frozen]
    loci-build-2025-1-ubuntu_noble
"
    );
}

#[test]
fn partial_dot_and_json_graphs_carry_the_external_node() {
    let (dot, stderr, code) =
        graph_without_opendev("loci", &["--allow-external", "--format", "dot"]);
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "\"opendev-buildset-registry\" [label=\"opendev-buildset-registry\\n(external)\", style=dotted];",
        "\"opendev-buildset-registry\" -> \"loci-buildset-registry\" [style=dotted];",
        "\"loci-buildset-registry\" -> \"loci-build-2025-1-ubuntu_noble\";",
        "\"loci-build-2025-1-ubuntu_noble\" [label=\"loci-build-2025-1-ubuntu_noble\"];",
    ] {
        assert!(dot.contains(line), "{line} not in\n{dot}");
    }
    assert_eq!(dot.matches("(external)").count(), 1, "{dot}");
    // Graphviz reads it.
    if crate::common::require_tool("dot", &["-V"]) {
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "dot rejected the graph");
        assert!(String::from_utf8_lossy(&out.stdout).contains("(external)"));
    }

    let (json, stderr, code) = graph_without_opendev("loci", &["--allow-external", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["external"],
        serde_json::json!([{"name": "opendev-buildset-registry", "needed_by": ["loci-buildset-registry"]}])
    );
    assert_eq!(
        v["not_frozen"],
        serde_json::json!(["loci-buildset-registry"])
    );
    assert_eq!(v["jobs"][0]["name"], "loci-build-2025-1-ubuntu_noble");
}
