//! `gantry run` end to end: the seed scenario (two changes, check, gate, promote) with the
//! daemonless builder and, when an engine is there, the docker builder; and the failure
//! paths (failed build, failed provider ahead, Ctrl-C, secrets in logs).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, GantryServer, run, run_fail};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gantry_run(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .arg("run")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .arg("--jobs-dir")
        .arg(repo().join("jobs"));
    c
}

fn manifest(host: &str, reference: &str) -> serde_json::Value {
    let out = run(Command::new(common::gantry_bin())
        .args(["image", "inspect", "--json"])
        .arg(format!("{host}/{reference}")));
    serde_json::from_str(&out).unwrap()
}

fn layers(v: &serde_json::Value) -> Vec<String> {
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn seed(builder: &str) {
    let publication = GantryServer::registry(&[]);
    let pub_host = publication.host();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let publish = format!("docker.io={pub_host}");
    let seed = repo().join("examples/seed");
    let base = seed.join("base");
    let app = seed.join("app");
    let go = |dir: &Path, args: &[&str]| {
        let mut all = vec![dir.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--publish-to", &publish]);
        let out = gantry_run(&state, &all)
            .env("GANTRY_BUILDER", builder)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "gantry run {all:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": SUCCESS"), "{stdout}");
        stdout
    };
    // check: change 2's build uses change 1's speculative base image.
    go(&base, &["--pipeline", "check", "--change", "1"]);
    let out = go(
        &app,
        &["--pipeline", "check", "--change", "2", "--ahead", "base:1"],
    );
    assert!(out.contains("gantry-build-container-image"), "{out}");
    // gate: both uploaded under their temporary tags.
    go(&base, &["--pipeline", "gate", "--change", "1"]);
    go(
        &app,
        &["--pipeline", "gate", "--change", "2", "--ahead", "base:1"],
    );
    let base_m = manifest(&pub_host, "example/base:change_1_latest");
    let app_m = manifest(&pub_host, "example/app:change_2_latest");
    let base_layers = layers(&base_m);
    let app_layers = layers(&app_m);
    assert!(!base_layers.is_empty());
    assert_eq!(
        &app_layers[..base_layers.len()],
        &base_layers[..],
        "change 2's image is built on change 1's base layers"
    );
    let tested = app_m["digest"].as_str().unwrap().to_string();
    // promote: the tested manifest becomes latest; the temporary tag goes.
    go(&base, &["--pipeline", "promote", "--change", "1"]);
    go(&app, &["--pipeline", "promote", "--change", "2"]);
    let latest = manifest(&pub_host, "example/app:latest");
    assert_eq!(
        latest["digest"],
        tested.as_str(),
        "promote retags the tested digest"
    );
    let tags = run(Command::new(common::gantry_bin())
        .args(["image", "ls"])
        .arg(format!("{pub_host}/example/app")));
    assert_eq!(tags.trim(), "latest", "change_2_latest is gone");
    // Build records of both changes are in the intermediate registry.
    let out = run(Command::new(common::gantry_bin())
        .args([
            "builds",
            "ls",
            "--project",
            "app",
            "--change",
            "2",
            "--state-dir",
        ])
        .arg(&state));
    assert!(
        out.contains("gantry-build-container-image") && out.contains("SUCCESS"),
        "{out}"
    );
}

#[test]
fn seed_scenario_with_the_native_builder() {
    seed("native");
}

#[test]
fn seed_scenario_with_the_docker_builder() {
    if !common::have_docker() {
        return;
    }
    seed("docker");
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/run").join(name)
}

#[test]
fn a_failing_build_skips_its_dependents_with_zuuls_message() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _, code) = run_fail(&mut gantry_run(
        tmp.path(),
        &[fixture("failing").to_str().unwrap(), "--pipeline", "check"],
    ));
    assert_eq!(code, 1);
    assert!(
        out.lines()
            .any(|l| l.starts_with("broken") && l.contains("FAILURE")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("after-broken")
            && l.contains("SKIPPED")
            && l.contains("Skipped due to failed job broken")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("independent") && l.contains("SUCCESS")),
        "{out}"
    );
}

#[test]
fn a_failed_provider_ahead_fails_the_requiring_job() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = gantry_run(
        tmp.path(),
        &[
            fixture("provider").to_str().unwrap(),
            "--pipeline",
            "check",
            "--change",
            "1",
            "--project",
            "prov",
        ],
    )
    .output()
    .unwrap();
    let (out, _, code) = run_fail(&mut gantry_run(
        tmp.path(),
        &[
            fixture("consumer").to_str().unwrap(),
            "--pipeline",
            "check",
            "--change",
            "2",
            "--project",
            "cons",
            "--ahead",
            "prov:1",
        ],
    ));
    assert_eq!(code, 1);
    let line = out
        .lines()
        .find(|l| l.starts_with("user"))
        .unwrap_or_default();
    assert!(line.contains("FAILURE"), "{out}");
    assert!(
        line.contains("Job user requires artifact(s) thing provided by build ") && line.contains("(triggered by change 1 on project prov), but that build failed with result \"FAILURE\""),
        "{line}"
    );
}

#[test]
fn secrets_never_reach_logs_or_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gantry_run(
        tmp.path(),
        &[
            fixture("secret").to_str().unwrap(),
            "--pipeline",
            "check",
            "-v",
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("S3cr3t-Token-9f8e7d") && !stderr.contains("S3cr3t-Token-9f8e7d"),
        "{stdout}\n{stderr}"
    );
    let mut logs = String::new();
    for e in std::fs::read_dir(tmp.path().join("builds")).unwrap() {
        logs.push_str(&std::fs::read_to_string(e.unwrap().path().join("job-output.txt")).unwrap());
    }
    assert!(logs.contains("the token is ******"), "{logs}");
    assert!(!logs.contains("S3cr3t-Token-9f8e7d"), "{logs}");
}

#[test]
fn ctrl_c_runs_cleanup_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("cleaned");
    let own_tmp = tmp.path().join("tmp");
    std::fs::create_dir_all(&own_tmp).unwrap();
    let mut child = gantry_run(
        tmp.path(),
        &[fixture("cancel").to_str().unwrap(), "--pipeline", "check"],
    )
    .arg("--var")
    .arg(format!("marker={}", marker.display()))
    .env("TMPDIR", &own_tmp)
    .arg("-v")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until the sleep has started (the buildset registry is up by then): with -v the
    // console prints every build log line, `[sleeper] localhost | sleeping` among them.
    let mut console = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        let n = console.read_line(&mut line).unwrap();
        assert!(n > 0, "the sleep task started: {seen}");
        seen.push_str(&line);
        if line.contains("| sleeping") {
            break;
        }
    }
    // The rest of the console is read so the runner never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut console, &mut std::io::sink()));
    let registry_dirs = || {
        std::fs::read_dir(&own_tmp)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("gantry-buildset-registry-")
            })
            .count()
    };
    assert_eq!(registry_dirs(), 1, "the buildset registry is running");
    let t0 = std::time::Instant::now();
    run(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let status = child.wait().unwrap();
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "stopped promptly"
    );
    assert!(!status.success());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "cleaned up");
    assert_eq!(
        registry_dirs(),
        0,
        "the buildset registry and its directory are gone"
    );
    // No `sleep 31` left running.
    let ps = run(Command::new("ps").args(["-eo", "args"]));
    assert!(!ps.lines().any(|l| l.trim() == "sleep 31"), "{ps}");
}

#[test]
fn the_registry_job_resumes_only_after_its_dependents() {
    let tmp = tempfile::tempdir().unwrap();
    let out = gantry_run(
        tmp.path(),
        &[
            fixture("pause").to_str().unwrap(),
            "--pipeline",
            "check",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let builds = report["builds"].as_array().unwrap();
    let registry = builds
        .iter()
        .find(|b| b["job"] == "gantry-buildset-registry")
        .unwrap();
    assert_eq!(registry["result"], "SUCCESS");
    assert_eq!(registry["paused"], true);
    let consumer = builds.iter().find(|b| b["job"] == "consumer").unwrap();
    assert_eq!(consumer["result"], "SUCCESS");
    // The registry's log: paused, then resumed after the consumer, then its post-run.
    let log = std::fs::read_to_string(registry["log"].as_str().unwrap()).unwrap();
    let paused = log.find("Job paused").unwrap();
    let resumed = log.find("Job resumed").unwrap();
    let post = log.find("push-to-intermediate-registry").unwrap();
    assert!(paused < resumed && resumed < post, "{log}");
    let consumer_log = std::fs::read_to_string(consumer["log"].as_str().unwrap()).unwrap();
    assert!(consumer_log.contains("consumed"), "{consumer_log}");
    // The consumer finished before the registry did.
    assert!(registry["duration_ms"].as_u64().unwrap() >= consumer["duration_ms"].as_u64().unwrap());
    // use-buildset-registry wrote the host configuration under the host root.
    let host = tmp.path().join("host");
    let certs: Vec<_> = std::fs::read_dir(host.join("etc/docker/certs.d"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        certs.iter().any(|c| c.starts_with("127.0.0.1:"))
            && certs
                .iter()
                .any(|c| c.starts_with("zuul-jobs.buildset-registry:")),
        "{certs:?}"
    );
    for c in &certs {
        let pem = std::fs::read_to_string(host.join("etc/docker/certs.d").join(c).join("ca.crt"))
            .unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
    let conf = std::fs::read_to_string(host.join("etc/containers/registries.conf")).unwrap();
    assert!(
        conf.contains("prefix = \"docker.io\"")
            && conf.contains("[[registry.mirror]]")
            && conf.contains("/quay.io\""),
        "{conf}"
    );
    let docker_config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(host.join("root/.docker/config.json")).unwrap(),
    )
    .unwrap();
    assert!(
        docker_config["auths"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("127.0.0.1:"))
    );
    assert!(
        host.join("etc/containerd/certs.d/docker.io/hosts.toml")
            .exists()
    );
    assert!(host.join("etc/buildkit/buildkitd.toml").exists());
}

#[test]
fn the_reference_configuration_runs_unchanged() {
    let publication = GantryServer::registry(&[]);
    // The reference configuration's intermediate_registry secret names a host that does not
    // exist here; configuration wins unless --intermediate-registry overrides it explicitly.
    let intermediate = GantryServer::registry(&[]);
    let intermediate_host = intermediate.host();
    let tmp = tempfile::tempdir().unwrap();
    let keys = repo().join("tests/fixtures/job/keys");
    let publish = format!("docker.io={}", publication.host());
    let reference = repo().join("examples/reference-config");
    for pipeline in ["check", "gate", "promote"] {
        let out = gantry_run(
            tmp.path(),
            &[
                reference.to_str().unwrap(),
                "--pipeline",
                pipeline,
                "--change",
                "7",
                "--key-dir",
                keys.to_str().unwrap(),
                "--publish-to",
                &publish,
                "--intermediate-registry",
                &intermediate_host,
            ],
        )
        .env("GANTRY_BUILDER", "native")
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{pipeline}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tags = run(Command::new(common::gantry_bin())
        .args(["image", "ls"])
        .arg(format!("{}/example/app", publication.host())));
    assert_eq!(tags.trim(), "latest");
}

#[test]
fn a_job_past_its_timeout_is_timed_out() {
    let tmp = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let (out, _, code) = run_fail(&mut gantry_run(
        tmp.path(),
        &[fixture("timeout").to_str().unwrap(), "--pipeline", "check"],
    ));
    assert_eq!(code, 1);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(15),
        "the sleep was stopped"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("slow ") && l.contains("TIMED_OUT")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("after-slow") && l.contains("Skipped due to failed job slow")),
        "{out}"
    );
}

#[test]
fn upload_refuses_a_repository_the_credentials_do_not_permit() {
    let publication = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (out, _, code) = run_fail(
        gantry_run(
            tmp.path(),
            &[
                fixture("notpermitted").to_str().unwrap(),
                "--pipeline",
                "gate",
                "--change",
                "3",
                "--publish-to",
                &format!("docker.io={}", publication.host()),
            ],
        )
        .env("GANTRY_BUILDER", "native"),
    );
    assert_eq!(code, 1);
    let line = out
        .lines()
        .find(|l| l.starts_with("upload "))
        .unwrap_or_default();
    assert!(
        line.contains("POST_FAILURE") && line.contains("example/app not permitted by ^other/.*"),
        "{out}"
    );
    assert!(!out.contains("Up-Load-Pass-77"));
}

#[test]
fn job_graph_dot_output_renders_with_graphviz() {
    if !common::require_tool("dot", &["-V"]) {
        return;
    }
    let dot = run(Command::new(common::gantry_bin())
        .args(["job", "graph", "--pipeline", "check", "--format", "dot"])
        .arg(fixture("failing")));
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
    assert!(out.status.success());
    // SVG escapes "-" as &#45;.
    let svg = String::from_utf8_lossy(&out.stdout)
        .replace("&#45;", "-")
        .replace("&gt;", ">");
    for title in [
        "<title>broken</title>",
        "<title>after-broken</title>",
        "<title>independent</title>",
        "<title>broken->after-broken</title>",
    ] {
        assert!(svg.contains(title), "{title} in {svg}");
    }
}
