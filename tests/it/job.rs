//! Issue 4: Zuul-compatible job configuration, secrets and the job graph.
//!
//! The CLI cases are snapshot tests: every directory under `tests/fixtures/job/cases/`
//! holds a small configuration, a `cmd` file (one `gantry` command line per line; the case
//! directory is appended unless the line names `{examples}`) and `expected.snap`, an insta
//! snapshot of the exit status, stdout and stderr of each command. A changed output fails the test and, outside CI,
//! leaves `expected.snap.new` beside it: `cargo insta review` (or `INSTA_UPDATE=always cargo
//! test --test it job::`) accepts it; review the diff before committing. With `CI=true` insta
//! never writes (`INSTA_UPDATE=no`): a mismatch only fails.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gantry::job::{
    self, Artifact, BuildRecord, BuildResult, BuildState, JobGraph, LoadOptions, QueueChange,
    Requirements,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/job")
}

fn gantry(args: &[&str], cwd: &Path, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.args(args)
        .current_dir(cwd)
        .env("GANTRY_JOBS_DIR", repo().join("jobs"))
        .env("GANTRY_LOG", "error")
        .env("NO_COLOR", "1")
        .env_remove("GANTRY_KEY_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning gantry");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("waiting for gantry")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory;
    gantry::cli::Cli::command().debug_assert();
}

#[test]
fn snapshot_cases() {
    let cases = fixtures().join("cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20, "cases missing from {}", cases.display());
    for dir in &dirs {
        let cmds = std::fs::read_to_string(dir.join("cmd")).unwrap();
        let mut actual = String::new();
        for line in cmds.lines().filter(|l| !l.trim().is_empty()) {
            let examples = repo().join("examples");
            let expanded = line
                .replace("{dir}", &dir.display().to_string())
                .replace("{examples}", &examples.display().to_string());
            let mut args: Vec<String> = expanded.split_whitespace().map(str::to_string).collect();
            if !line.contains("{examples}") {
                args.push(dir.display().to_string());
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = gantry(&argv, dir, None);
            let scrub = |s: String| {
                s.replace(&dir.display().to_string(), "{dir}")
                    .replace(&repo().display().to_string(), "{repo}")
            };
            actual.push_str(&format!(
                "$ gantry {line}\nexit: {}\n",
                out.status.code().unwrap_or(-1)
            ));
            let stdout = scrub(text(&out.stdout));
            let stderr = scrub(text(&out.stderr));
            if !stdout.is_empty() {
                actual.push_str("--- stdout\n");
                actual.push_str(&stdout);
            }
            if !stderr.is_empty() {
                actual.push_str("--- stderr\n");
                actual.push_str(&stderr);
            }
            actual.push('\n');
        }
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!("expected", actual));
    }
}

fn load(dir: &Path) -> job::Config {
    let options = LoadOptions {
        library_dir: Some(repo().join("jobs")),
        ..LoadOptions::default()
    };
    match job::load(dir, &options) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn states(pairs: &[(&str, BuildState)]) -> HashMap<String, BuildState> {
    pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

/// ZUUL.md §6: readiness, skipping after failure, `child_jobs`.
#[test]
fn graph_ready_skip_and_child_jobs() {
    let dir = fixtures().join("cases/graph-deps");
    let config = job::load(&dir, &LoadOptions::default()).unwrap();
    let graph = JobGraph::build(&config, "graph-deps", "check").unwrap();
    let done = |r| BuildState::Completed(r);
    use BuildResult::*;

    assert_eq!(graph.ready(&states(&[])), ["registry", "lint"]);
    // A paused build counts as satisfied; a running one does not.
    assert_eq!(
        graph.ready(&states(&[
            ("registry", BuildState::Running),
            ("lint", done(Success))
        ])),
        Vec::<&str>::new()
    );
    assert_eq!(
        graph.ready(&states(&[
            ("registry", BuildState::Paused),
            ("lint", done(Success))
        ])),
        ["build"]
    );
    // test waits for its soft dependency lint too, since lint is in the graph.
    assert_eq!(
        graph.ready(&states(&[
            ("registry", BuildState::Paused),
            ("build", done(Success)),
            ("lint", BuildState::Running)
        ])),
        Vec::<&str>::new()
    );
    assert_eq!(
        graph.ready(&states(&[
            ("registry", BuildState::Paused),
            ("build", done(Success)),
            ("lint", done(Skipped))
        ])),
        ["test"]
    );

    // Failure skips every dependent, recursively, soft edges included.
    let skip = graph.to_skip("lint", Some(Failure), false, None).unwrap();
    assert_eq!(skip.jobs, ["test", "deploy"]);
    assert_eq!(skip.reason, "Skipped due to failed job lint");
    let skip = graph
        .to_skip("registry", Some(TimedOut), false, None)
        .unwrap();
    assert_eq!(skip.jobs, ["build", "test", "deploy"]);
    assert_eq!(graph.to_skip("registry", Some(Success), false, None), None);
    assert_eq!(
        graph.to_skip("registry", None, true, None),
        None,
        "paused is not a failure"
    );
    assert_eq!(graph.to_skip("lint", Some(Skipped), false, None), None);

    // child_jobs: the direct dependents not named are skipped, with theirs (hard edges).
    let only_build = vec!["build".to_string()];
    let skip = graph
        .to_skip("registry", None, true, Some(&only_build))
        .unwrap();
    assert_eq!(skip.jobs, ["deploy"]);
    assert_eq!(
        skip.reason,
        "Skipped due to child_jobs return value in job registry"
    );
    // As in Zuul, a named job is still skipped when it depends on a skipped one.
    let only_deploy = vec!["deploy".to_string()];
    let skip = graph
        .to_skip("registry", None, true, Some(&only_deploy))
        .unwrap();
    assert_eq!(skip.jobs, ["build", "test", "deploy"]);
    // An empty list skips everything reachable through hard edges (not lint's soft one).
    assert_eq!(graph.to_skip("lint", Some(Success), false, Some(&[])), None);
    let skip = graph
        .to_skip("build", Some(Success), false, Some(&[]))
        .unwrap();
    assert_eq!(skip.jobs, ["test", "deploy"]);
}

fn record(
    job: &str,
    uuid: &str,
    change: &str,
    result: Option<BuildResult>,
    tag: &str,
) -> BuildRecord {
    BuildRecord {
        job: job.into(),
        uuid: uuid.into(),
        result,
        paused: false,
        artifacts: vec![Artifact {
            name: format!("example/app:{tag}"),
            url: format!("docker://intermediate:5000/example/app:{uuid}_{tag}"),
            metadata: Some(
                serde_json::json!({"type": "container_image", "repository": "example/app", "tag": tag}),
            ),
        }],
        project: "example/app".into(),
        change: Some(change.into()),
        patchset: Some("1".into()),
        pipeline: "gate".into(),
        provides: vec!["docker-image".into()],
    }
}

/// ZUUL.md §8 on the reference configuration: the upload job requires docker-image, the
/// changes ahead provided it.
#[test]
fn provides_requires_over_changes_ahead() {
    let config = load(&repo().join("examples/reference-config"));
    let graph = JobGraph::build(&config, "reference-config", "gate").unwrap();
    let upload = graph.job("yoursite-upload-docker-image").unwrap();
    assert_eq!(
        upload.requires,
        BTreeSet::from(["docker-image".to_string()])
    );
    assert_eq!(
        upload.provides,
        BTreeSet::from(["docker-image".to_string()])
    );

    let change = |n: &str, builds| QueueChange {
        project: "example/app".into(),
        change: Some(n.into()),
        patchset: Some("1".into()),
        builds,
    };
    let ahead = vec![
        change(
            "10",
            vec![record(
                "yoursite-upload-docker-image",
                "b10",
                "10",
                Some(BuildResult::Success),
                "latest",
            )],
        ),
        change("11", vec![]),
        change(
            "12",
            vec![record(
                "yoursite-upload-docker-image",
                "b12",
                "12",
                Some(BuildResult::Success),
                "latest",
            )],
        ),
    ];
    let Requirements::Run { artifacts } = job::resolve_requirements(upload, "gate", &ahead) else {
        panic!()
    };
    let order: Vec<(&str, &str)> = artifacts
        .iter()
        .map(|a| (a["change"].as_str().unwrap(), a["url"].as_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("10", "docker://intermediate:5000/example/app:b10_latest"),
            ("12", "docker://intermediate:5000/example/app:b12_latest")
        ]
    );
    assert_eq!(artifacts[1]["job"], "yoursite-upload-docker-image");
    assert_eq!(artifacts[1]["project"], "example/app");
    assert_eq!(artifacts[1]["patchset"], "1");
    assert_eq!(artifacts[1]["metadata"]["type"], "container_image");

    let mut running = ahead.clone();
    running[2].builds[0].result = None;
    assert!(matches!(
        job::resolve_requirements(upload, "gate", &running),
        Requirements::Wait { .. }
    ));
    running[2].builds[0].paused = true;
    assert!(matches!(
        job::resolve_requirements(upload, "gate", &running),
        Requirements::Run { .. }
    ));

    let mut failed = ahead.clone();
    failed[0].builds[0].result = Some(BuildResult::Failure);
    assert_eq!(
        job::resolve_requirements(upload, "gate", &failed),
        Requirements::Fail {
            message: "Job yoursite-upload-docker-image requires artifact(s) docker-image provided by build b10 (triggered by change 10 on project example/app), but that build failed with result \"FAILURE\"".into()
        }
    );
    // Nothing ran ahead (changes merged): run without artifacts.
    assert_eq!(
        job::resolve_requirements(upload, "gate", &[change("9", vec![])]),
        Requirements::Run { artifacts: vec![] }
    );
}

/// ZUUL.md §4: keygen, encrypt (several chunks, UTF-8), decrypt at run time; errors name
/// the secret and the file, never the data.
#[test]
fn secrets_roundtrip_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let keys_s = keys.display().to_string();
    let out = gantry(
        &[
            "secret",
            "keygen",
            "--project",
            "org/app",
            "--key-dir",
            &keys_s,
        ],
        tmp.path(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        keys.join("org/app.pub").display().to_string()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("org/app.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = gantry(
        &[
            "secret",
            "keygen",
            "--project",
            "org/app",
            "--key-dir",
            &keys_s,
        ],
        tmp.path(),
        None,
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already exists"));

    let plaintext = format!("{}é-{}", "p".repeat(469), "ü".repeat(400));
    let out = gantry(
        &[
            "secret",
            "encrypt",
            "--project",
            "org/app",
            "--key-dir",
            &keys_s,
            "--name",
            "creds",
            "--field",
            "password",
        ],
        tmp.path(),
        Some(plaintext.as_bytes()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stanza = text(&out.stdout);
    assert!(stanza.starts_with(
        "- secret:\n    name: creds\n    data:\n      password: !encrypted/pkcs1-oaep\n        - "
    ));
    assert_eq!(
        stanza.matches("\n        - ").count(),
        3,
        "1271 bytes make 3 chunks of ≤ 470"
    );
    assert!(stanza.lines().all(|l| l.len() <= 79));

    let project = tmp.path().join("app");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("zuul.yaml"), &stanza).unwrap();
    let p = project.display().to_string();
    let out = gantry(
        &[
            "secret",
            "decrypt",
            "--project",
            "org/app",
            "--key-dir",
            &keys_s,
            "--name",
            "creds",
            &p,
        ],
        tmp.path(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(data["password"].as_str(), Some(plaintext.as_str()));

    // Another project's key: the error names the secret and the file, not the data.
    gantry(
        &[
            "secret",
            "keygen",
            "--project",
            "other",
            "--key-dir",
            &keys_s,
        ],
        tmp.path(),
        None,
    );
    let out = gantry(
        &[
            "secret",
            "decrypt",
            "--project",
            "other",
            "--key-dir",
            &keys_s,
            "--name",
            "creds",
            &p,
        ],
        tmp.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(
        err.trim(),
        "error: secret \"creds\" (zuul.yaml:2:5): \"data.password\" chunk 1 does not decrypt with the project key"
    );
    assert!(!err.contains('p'.to_string().repeat(10).as_str()));

    // Validation never needs the key.
    let out = gantry(
        &["config", "validate", "--no-library", &p],
        tmp.path(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// ZUUL.md §4: a ciphertext made by the openssl CLI with the project's public key decrypts.
#[test]
fn openssl_ciphertext_decrypts() {
    let have_openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_openssl {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("openssl is required in CI for the interop test");
        }
        eprintln!("skipping openssl_ciphertext_decrypts: openssl not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let keys_s = keys.display().to_string();
    let out = gantry(
        &["secret", "keygen", "--project", "app", "--key-dir", &keys_s],
        tmp.path(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plain = tmp.path().join("plain.txt");
    std::fs::write(&plain, "s3cret wörd").unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-encrypt", "-pubin", "-inkey"])
        .arg(keys.join("app.pub"))
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
            "-in",
        ])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&out.stdout);
    let project = tmp.path().join("app");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("zuul.yaml"),
        format!("- secret:\n    name: s\n    data:\n      value: !encrypted/pkcs1-oaep\n        - {b64}\n"),
    )
    .unwrap();
    let p = project.display().to_string();
    let out = gantry(
        &["secret", "decrypt", "--key-dir", &keys_s, "--name", "s", &p],
        tmp.path(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(data["value"], "s3cret wörd");

    // And the other way: gantry's ciphertext decrypts with openssl.
    let out = gantry(
        &[
            "secret",
            "encrypt",
            "--project",
            "app",
            "--key-dir",
            &keys_s,
        ],
        tmp.path(),
        Some(b"from gantry"),
    );
    let stanza = text(&out.stdout);
    let chunk: String = stanza
        .lines()
        .skip(4)
        .map(|l| l.trim().trim_start_matches("- "))
        .collect();
    let ct = tmp.path().join("ct.bin");
    std::fs::write(
        &ct,
        base64::engine::general_purpose::STANDARD
            .decode(chunk)
            .unwrap(),
    )
    .unwrap();
    let out = Command::new("openssl")
        .args(["pkeyutl", "-decrypt", "-inkey"])
        .arg(keys.join("app.pem"))
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
            "-in",
        ])
        .arg(&ct)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", text(&out.stderr));
    assert_eq!(out.stdout, b"from gantry");
}

/// The reference configuration's secret is encrypted with the test key kept beside it.
#[test]
fn reference_config_secret_decrypts_with_its_test_key() {
    let config = load(&repo().join("examples/reference-config"));
    let key = job::keys::load_private(&fixtures().join("keys"), "reference-config").unwrap();
    let secret = &config.secrets["yoursite-intermediate-registry"];
    let data = secret.decrypt(Some(&key)).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"host": "insecure-ci-registry.example.org", "port": 5000, "username": "zuul", "password": "not-a-real-password"})
    );
    // Every playbook of the registry job got the secret as `intermediate_registry`.
    let frozen = job::freeze_job(&config, "yoursite-build-docker-image").unwrap();
    let with_secret: Vec<&str> = frozen
        .playbooks()
        .filter(|p| p.secrets.iter().any(|s| s.name == "intermediate_registry"))
        .map(|p| p.path.as_str())
        .collect();
    assert_eq!(
        with_secret,
        [
            "playbooks/buildset-registry/pre.yaml",
            "playbooks/buildset-registry/post.yaml"
        ]
    );
    // Playbook files resolve against the definition's directory.
    for pb in frozen.playbooks() {
        assert!(pb.root.join(&pb.path).is_file(), "{}", pb.path);
    }
    let promote = job::freeze_job(&config, "yoursite-promote-docker-image").unwrap();
    for pb in promote.playbooks() {
        assert!(pb.root.join(&pb.path).is_file(), "{}", pb.path);
    }
}

/// Real Zuul configurations from public projects (tests/fixtures/real-world/*/SOURCE)
/// validate unchanged. They reference jobs, parents and templates defined in other
/// repositories (`base`, `tox`, `devstack`, `openstack-python3-jobs`, …): with
/// `--allow-external` those are warnings; without it they are the only errors.
/// docs/zuul-compat.md lists what gantry accepts without acting on it.
#[test]
fn real_world_configurations_validate() {
    let root = repo().join("tests/fixtures/real-world");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 5,
        "need at least five real-world configurations"
    );
    for dir in &dirs {
        assert!(
            dir.join("SOURCE").is_file(),
            "{} has no SOURCE",
            dir.display()
        );
        let d = dir.display().to_string();
        let out = gantry(
            &["config", "validate", "--no-library", "--allow-external", &d],
            &root,
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{d}:\n{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("valid: "), "{d}");

        let out = gantry(
            &["config", "validate", "--no-library", "--json", &d],
            &root,
            None,
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for e in report["errors"].as_array().unwrap() {
            let msg = e["message"].as_str().unwrap();
            let external = (msg.starts_with("Job ") || msg.starts_with("Project template "))
                && msg.contains(" not defined");
            assert!(external, "{d}: unexpected error {e}");
        }
    }
}

/// ZUUL.md §6: data returned by ancestor builds reaches dependents.
#[test]
fn parent_data_reaches_dependents() {
    use serde_json::json;
    let dir = fixtures().join("cases/graph-deps");
    let config = job::load(&dir, &LoadOptions::default()).unwrap();
    let graph = JobGraph::build(&config, "graph-deps", "check").unwrap();
    let obj = |v: serde_json::Value| v.as_object().unwrap().clone();
    let returned: HashMap<String, job::Returned> = [
        (
            "registry",
            job::Returned {
                data: obj(json!({"host": "r", "image": {"tag": "r"}, "zuul": {"pause": true}})),
                secret_data: obj(json!({"buildset_registry": {"password": "from-registry"}})),
            },
        ),
        (
            "build",
            job::Returned {
                data: obj(json!({
                    "image": {"tag": "b", "arch": "amd64"},
                    "zuul": {"artifacts": [
                        {"name": "app:latest", "url": "docker://r/app:latest", "metadata": {"type": "container_image"}},
                        {"name": "broken"}
                    ]}
                })),
                secret_data: obj(json!({"buildset_registry": {"password": "from-build", "user": "zuul"}})),
            },
        ),
        (
            "test",
            job::Returned {
                data: obj(json!({"image": {"tag": "t"}, "nodepool": {"x": 1}})),
                secret_data: Default::default(),
            },
        ),
        ("lint", job::Returned::default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let item = job::ItemRef {
        project: "org/app".into(),
        branch: Some("main".into()),
        change: Some("42".into()),
        patchset: Some("3".into()),
    };
    let ahead = vec![json!({"name": "base:latest", "url": "docker://i/base", "change": "41"})];
    let pd = graph.parent_data("deploy", &returned, &item, ahead.clone());
    // Later jobs (configuration order) win; zuul and nodepool keys are dropped.
    assert_eq!(
        json!(pd.data),
        json!({"host": "r", "image": {"tag": "t", "arch": "amd64"}})
    );
    // Secret data: the earlier job wins, as in Zuul's updateParentData.
    assert_eq!(
        json!(pd.secret_data),
        json!({"buildset_registry": {"password": "from-registry", "user": "zuul"}})
    );
    assert_eq!(
        pd.artifacts,
        vec![
            ahead[0].clone(),
            json!({"name": "app:latest", "url": "docker://r/app:latest", "metadata": {"type": "container_image"},
                   "project": "org/app", "job": "build", "branch": "main", "change": "42", "patchset": "3"})
        ]
    );
    // A job sees only its own ancestors.
    let pd = graph.parent_data("build", &returned, &item, vec![]);
    assert_eq!(json!(pd.data), json!({"host": "r", "image": {"tag": "r"}}));
    assert!(pd.artifacts.is_empty());
}
