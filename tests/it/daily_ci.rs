//! Issue 15: the CI examples (examples/ci/) run as written. The GitHub Actions and GitLab
//! CI files carry the same gate and promote commands; this test takes them from the files
//! and runs them with bash against real registries, as a runner would.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{GantryServer, gantry_bin, run};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("examples/ci").join(name)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The `run:` of the GitHub Actions step named `step` in `job`.
fn github_step(v: &Value, job: &str, step: &str) -> Vec<String> {
    v["jobs"][job]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .and_then(|s| s["run"].as_str())
        .unwrap_or_else(|| panic!("no step {step:?} in job {job}"))
        .lines()
        .map(String::from)
        .collect()
}

fn gitlab_script(v: &Value, job: &str) -> Vec<String> {
    v[job]["script"]
        .as_array()
        .unwrap_or_else(|| panic!("no script in {job}"))
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// Runs a script as a CI runner does (bash, -e, pipefail) with gantry on PATH.
fn bash(lines: &[String], env: &[(&str, String)], cwd: &Path) -> String {
    let bin_dir = Path::new(gantry_bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.args([
        "--noprofile",
        "--norc",
        "-eo",
        "pipefail",
        "-c",
        &lines.join("\n"),
    ])
    .current_dir(cwd)
    .env("PATH", path)
    .env_remove("GANTRY_CREDS");
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

#[test]
fn ci_examples_gate_and_promote_as_written() {
    let gh = yaml("github-actions.yml");
    let gl = yaml("gitlab-ci.yml");
    let gate = github_step(&gh, "gate", "gantry gate");
    let promote = github_step(&gh, "promote", "gantry promote");
    assert_eq!(
        gitlab_script(&gl, "gate"),
        gate,
        "the two files' gate commands differ"
    );
    let gl_promote = gitlab_script(&gl, "promote");
    assert_eq!(
        gl_promote[1..],
        promote[..],
        "the two files' promote commands differ"
    );

    // The publication registry, with a user, as a team's registry would be.
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    let mut c = Command::new(gantry_bin());
    c.args(["registry", "htpasswd", "ci", "--file"])
        .arg(&htpasswd);
    let password = run(&mut c).trim().to_string();
    let publication = GantryServer::registry(&["--htpasswd", htpasswd.to_str().unwrap()]);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let env = vec![
        ("IMAGE", "example/app".to_string()),
        ("CONTEXT", ".".to_string()),
        ("CHANGE", "42".to_string()),
        ("WORK", work.display().to_string()),
        ("PUBLICATION", publication.host()),
        ("PUBLICATION_USER", "ci".to_string()),
        ("PUBLICATION_PASSWORD", password),
        (
            "DOCKER_CONFIG",
            tmp.path().join("docker").display().to_string(),
        ),
    ];
    // The checkout: the seed's base image project.
    let checkout = repo().join("examples/seed/base");
    bash(&gate, &env, &checkout);
    let ls = |long: bool| {
        let mut c = Command::new(gantry_bin());
        c.env("DOCKER_CONFIG", tmp.path().join("docker"))
            .args(["image", "ls"])
            .arg(format!("{}/example/app", publication.host()));
        if long {
            c.arg("--long");
        }
        run(&mut c)
    };
    let after_gate = ls(true);
    assert!(
        after_gate.starts_with("change_42_latest\tsha256:"),
        "{after_gate}"
    );
    let tested = after_gate.split('\t').nth(1).unwrap().trim().to_string();

    // GitLab's way to find the change after merge.
    let found = bash(
        &[gl_promote[0].clone(), "echo \"$CHANGE\"".into()],
        &[(
            "CI_COMMIT_MESSAGE",
            "Merge branch 'x' into 'main'\n\nSee merge request team/app!42".to_string(),
        )],
        &work,
    );
    assert_eq!(found.trim(), "42");

    bash(&promote, &env, &work);
    assert_eq!(
        ls(true),
        format!("latest\t{tested}\n"),
        "the tested manifest is promoted"
    );
}
