//! `gantry build`: the native builder (multi-stage, reproducible, pushed, pulled and run by
//! Docker), the docker builder on a speculative base image that exists only in a buildset
//! registry under a quay.io name, siblings, and every kind of bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{self, GantryServer, image, run, run_fail};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/build")
        .join(name)
}

fn gantry() -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.env("GANTRY_LOG", "info").env_remove("SOURCE_DATE_EPOCH");
    c
}

/// `gantry build … --json` → the result document.
fn build_json(args: &[&str]) -> Value {
    let out = run(gantry().arg("build").args(args).arg("--json"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn digest_of(v: &Value) -> String {
    v["images"][0]["digest"].as_str().unwrap().to_string()
}

/// A context written on the fly.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = t.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    t
}

fn skopeo_config(reference: &str) -> Value {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    serde_json::from_str(&out).unwrap()
}

/// Images and tags the Docker engine should forget when a test ends.
struct DockerCleanup(Vec<String>);

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

/// Puts a busybox base image (from `docker import`, nothing from the internet) into
/// `registry` as `quay.io/example/base:1` and removes it from the engine again, so the
/// only copy is the speculative one. Returns the base's diff ID.
fn speculative_base(registry: &str, cleanup: &mut DockerCleanup) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs.tar");
    assert!(
        image::busybox_rootfs_tar(&rootfs),
        "busybox-static is needed (/bin/busybox)"
    );
    let local = format!("gantry-build-test-base:{}", uuid::Uuid::new_v4());
    let remote = format!("{registry}/quay.io/example/base:1");
    run(Command::new("docker")
        .arg("import")
        .arg(&rootfs)
        .arg(&local));
    run(Command::new("docker").args(["tag", &local, &remote]));
    run(Command::new("docker").args(["push", &remote]));
    run(Command::new("docker").args(["rmi", &local, &remote]));
    // Whatever the builds pull back under the Dockerfile's name goes too.
    cleanup.0.push("quay.io/example/base:1".into());
    cleanup.0.push(remote.clone());
    let cfg = skopeo_config(&remote);
    cfg["rootfs"]["diff_ids"][0].as_str().unwrap().to_string()
}

#[test]
fn native_multistage_runs_in_docker_and_is_reproducible() {
    if !common::have_docker() || !common::have_skopeo() {
        return;
    }
    let buildset = GantryServer::registry(&[]);
    let dest = GantryServer::registry(&[]);
    let mut cleanup = DockerCleanup(vec![]);
    let base_diff_id = speculative_base(&buildset.host(), &mut cleanup);
    let ctx = fixture("native");
    let tag = format!("{}/native/app:v1", dest.host());
    let args = [
        ctx.to_str().unwrap(),
        "--builder",
        "native",
        "--tag",
        &tag,
        "--buildset-registry",
        &buildset.host(),
        "--change",
        "12",
        "--change-url",
        "https://review.example.org/12",
        "--label",
        "org.example.extra=yes",
    ];
    let first = build_json(&args);
    assert_eq!(first["builder"], "native");
    assert_eq!(first["speculative"].as_array().unwrap().len(), 1, "{first}");
    let digest = digest_of(&first);
    // Same inputs, same digest (a second registry too: nothing host-specific inside).
    assert_eq!(digest_of(&build_json(&args)), digest);
    let other = GantryServer::registry(&[]);
    let tag2 = format!("{}/native/app:v1", other.host());
    let mut args2 = args.to_vec();
    args2[4] = &tag2;
    assert_eq!(digest_of(&build_json(&args2)), digest);

    // The plain output is REF@DIGEST.
    let plain = run(gantry().arg("build").args(args));
    assert_eq!(plain.trim(), format!("{tag}@{digest}"));

    let cfg = skopeo_config(&tag);
    let c = &cfg["config"];
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "9090/udp": {}})
    );
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"APP_VERSION=dev") && env.contains(&"APP_HOME=/app"),
        "{env:?}"
    );
    assert_eq!(c["Labels"]["org.example.name"], "native fixture");
    assert_eq!(c["Labels"]["org.example.version"], "dev");
    assert_eq!(c["Labels"]["org.zuul-ci.change"], "12");
    assert_eq!(
        c["Labels"]["org.zuul-ci.change_url"],
        "https://review.example.org/12"
    );
    assert_eq!(c["Labels"]["org.example.extra"], "yes");
    assert_eq!(c["Volumes"], serde_json::json!({"/app/state": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    // skopeo's OCI view has no Healthcheck (a Docker extension): read the raw config.
    let raw: Value =
        serde_json::from_str(&run(gantry().args(["image", "inspect", &tag, "--json"]))).unwrap();
    let hc = &raw["config"]["config"]["Healthcheck"];
    assert_eq!(hc["Interval"], 30_000_000_000u64);
    assert_eq!(hc["Retries"], 2);
    assert_eq!(
        hc["Test"],
        serde_json::json!(["CMD", "/bin/cat", "/app/greeting.txt"])
    );
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/local/bin/hello"]));
    assert_eq!(c["Cmd"], serde_json::json!(["world"]));
    assert_eq!(cfg["created"], "1970-01-01T00:00:00Z");
    // The base layer is referenced, then one layer per COPY of the final stage.
    let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 4);
    assert_eq!(diff_ids[0], base_diff_id.as_str());
    let inspect: Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{tag}"),
    ])))
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());

    // Docker pulls and runs it.
    cleanup.0.push(tag.clone());
    run(Command::new("docker").args(["pull", &tag]));
    let out = run(Command::new("docker").args(["run", "--rm", &tag]));
    assert_eq!(out, "hello world from dev in /app\na\nb\n");
    let out = run(Command::new("docker").args(["run", "--rm", &tag, "gantry"]));
    assert!(out.starts_with("hello gantry from dev"), "{out}");

    // A build arg changes the image; SOURCE_DATE_EPOCH too.
    let mut with_arg = args.to_vec();
    with_arg.extend(["--build-arg", "VERSION=1.2"]);
    let v12 = build_json(&with_arg);
    assert_ne!(digest_of(&v12), digest);
    assert_eq!(
        skopeo_config(&tag)["config"]["Labels"]["org.example.version"],
        "1.2"
    );
    let epoch = run(gantry()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .args(args)
        .arg("--json"));
    let epoch: Value = serde_json::from_str(&epoch).unwrap();
    assert_ne!(digest_of(&epoch), digest);
    assert_eq!(skopeo_config(&tag)["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn docker_builder_uses_speculative_base_from_buildset_registry() {
    if !common::have_docker() || !common::have_skopeo() {
        return;
    }
    let buildset = GantryServer::registry(&[]);
    let dest = GantryServer::registry(&[]);
    let mut cleanup = DockerCleanup(vec![]);
    let base_diff_id = speculative_base(&buildset.host(), &mut cleanup);
    let tag = format!("{}/docker/app:v1", dest.host());
    cleanup.0.push(tag.clone());
    let v = build_json(&[
        fixture("docker").to_str().unwrap(),
        "--builder",
        "docker",
        "--tag",
        &tag,
        "--buildset-registry",
        &buildset.host(),
        "--build-arg",
        "MESSAGE=gantry",
        "--change",
        "7",
        "--change-url",
        "https://review.example.org/7",
    ]);
    assert_eq!(v["builder"], "docker");
    let digest = digest_of(&v);
    assert!(digest.starts_with("sha256:"));
    assert_eq!(v["speculative"].as_array().unwrap().len(), 1, "{v}");

    // Pull it back with skopeo: the speculative base's layer is the first layer.
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("oci");
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{tag}"),
        &format!("oci:{}:v1", layout.display()),
    ]));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob(mdigest)).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "base + RUN + COPY: {manifest}");
    let first = std::fs::File::open(blob(layers[0]["digest"].as_str().unwrap())).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(first), &mut raw).unwrap();
    assert_eq!(gantry::oci::Digest::sha256(&raw).to_string(), base_diff_id);
    let cfg = skopeo_config(&tag);
    assert_eq!(cfg["config"]["Labels"]["org.zuul-ci.change"], "7");
    assert_eq!(
        cfg["config"]["Labels"]["org.zuul-ci.change_url"],
        "https://review.example.org/7"
    );

    // And it runs: RUN happened on the speculative base.
    let out = run(Command::new("docker").args(["run", "--rm", &tag]));
    assert_eq!(out, "built with gantry\nnote from the context\n");
}

#[test]
fn native_from_scratch_siblings_and_dockerignore() {
    let dest = GantryServer::registry(&[]);
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM scratch\nARG ZUUL_SIBLINGS\nLABEL siblings=\"$ZUUL_SIBLINGS\"\nCOPY .zuul-siblings/ /src/\nCOPY *.txt /top/\n",
        ),
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("skip.txt", "no"),
        (".dockerignore", "skip.txt\n"),
    ]);
    let sib = context(&[("lib/mod.py", "x = 1\n")]);
    let tag = format!("{}/scratch/app:v1", dest.host());
    let v = build_json(&[
        ctx.path().to_str().unwrap(),
        "--builder",
        "native",
        "--tag",
        &tag,
        "--siblings",
        &format!("example.org/lib={}", sib.path().display()),
    ]);
    assert!(
        !ctx.path().join(".zuul-siblings").exists(),
        "siblings removed"
    );
    let inspect: Value =
        serde_json::from_str(&run(gantry().args(["image", "inspect", &tag, "--json"]))).unwrap();
    assert_eq!(inspect["digest"], v["images"][0]["digest"]);
    assert_eq!(
        inspect["config"]["config"]["Labels"]["siblings"],
        "example.org/lib"
    );
    // Read the layers back: the sibling and the matching, non-ignored files.
    let out = tempfile::tempdir().unwrap();
    run(gantry().args([
        "image",
        "copy",
        &tag,
        &format!("oci:{}:v1", out.path().display()),
    ]));
    let mut names = Vec::new();
    for l in inspect["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let f = std::fs::File::open(out.path().join("blobs/sha256").join(d)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 0);
            assert_eq!(e.header().uid().unwrap(), 0);
            names.push(e.path().unwrap().display().to_string());
        }
    }
    assert_eq!(
        names,
        [
            "src/",
            "src/example.org/",
            "src/example.org/lib/",
            "src/example.org/lib/lib/",
            "src/example.org/lib/lib/mod.py",
            "top/a.txt",
            "top/b.txt"
        ]
    );

    // A failing build removes the siblings too.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nRUN true\n").unwrap();
    let (_, err, code) = run_fail(gantry().args([
        "build",
        ctx.path().to_str().unwrap(),
        "--builder",
        "native",
        "--tag",
        &tag,
        "--siblings",
        &format!("example.org/lib={}", sib.path().display()),
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        !ctx.path().join(".zuul-siblings").exists(),
        "siblings removed on failure"
    );
}

/// `gantry build` of a context with `dockerfile`, expected to fail with exit 2.
fn bad(files: &[(&str, &str)], extra: &[&str]) -> String {
    let ctx = context(files);
    let (_, err, code) = run_fail(
        gantry()
            .arg("build")
            .arg(ctx.path())
            .args(["--builder", "native", "--tag", "127.0.0.1:9/x/y:z"])
            .args(extra),
    );
    assert_eq!(code, 2, "{err}");
    err
}

#[test]
fn native_refuses_run_naming_the_line() {
    let err = bad(
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY a /a\n\nRUN make \\\n  install\n",
            ),
            ("a", ""),
        ],
        &[],
    );
    assert!(err.contains("Dockerfile:4: RUN needs a container"), "{err}");
    assert!(err.contains("--builder docker"), "{err}");
}

#[test]
fn bad_input_is_a_usage_error_with_lines() {
    // Missing context.
    let (_, err, code) = run_fail(gantry().args([
        "build",
        "/nonexistent/context",
        "--builder",
        "native",
        "--tag",
        "127.0.0.1:9/x:y",
    ]));
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/context: no such directory"),
        "{err}"
    );

    // Syntax errors: all of them, with lines.
    let err = bad(
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY a\nBOGUS x\nLABEL\nCOPY --from=base a b\n",
        )],
        &[],
    );
    for want in [
        "Dockerfile:2: COPY requires at least two arguments",
        "Dockerfile:3: unknown instruction \"BOGUS\"",
        "Dockerfile:4: LABEL requires at least one argument",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }

    // COPY outside the context.
    let err = bad(
        &[("Dockerfile", "FROM scratch\nCOPY ../../etc/passwd /x\n")],
        &[],
    );
    assert!(
        err.contains("Dockerfile:2:") && err.contains("outside the build context"),
        "{err}"
    );
    let err = bad(&[("Dockerfile", "FROM scratch\nCOPY nothere /x\n")], &[]);
    assert!(
        err.contains("Dockerfile:2:") && err.contains("no such file"),
        "{err}"
    );

    // Unknown stages.
    let err = bad(
        &[(
            "Dockerfile",
            "FROM scratch AS one\nFROM scratch\nCOPY --from=tow /a /b\n",
        )],
        &[],
    );
    assert!(
        err.contains("Dockerfile:3: --from=tow: unknown stage (stages before this one: one)"),
        "{err}"
    );
    let err = bad(
        &[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "")],
        &["--target", "nope"],
    );
    assert!(err.contains("target stage \"nope\" not found"), "{err}");
    let err = bad(
        &[("Dockerfile", "FROM scratch\nCOPY --from=1 /a /b\n")],
        &[],
    );
    assert!(
        err.contains("--from=1: no stage 1 before this one"),
        "{err}"
    );
}

#[test]
fn docker_builder_with_unreachable_engine() {
    let ctx = context(&[("Dockerfile", "FROM scratch\n")]);
    let dead = ctx.path().join("dead.sock");
    let (_, err, code) = run_fail(
        gantry()
            .env("DOCKER_HOST", format!("unix://{}", dead.display()))
            .arg("build")
            .arg(ctx.path())
            .args(["--builder", "docker", "--tag", "127.0.0.1:9/x:y"]),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot reach the Docker engine at unix://"),
        "{err}"
    );
    assert!(err.contains("dead.sock"), "{err}");
}

#[test]
fn push_rejected_by_registry() {
    let ro = GantryServer::registry(&["--read-only"]);
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a")]);
    let (_, err, code) = run_fail(gantry().arg("build").arg(ctx.path()).args([
        "--builder",
        "native",
        "--tag",
        &format!("{}/x/y:z", ro.host()),
    ]));
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("pushing to docker://{}/x/y:z", ro.host())),
        "{err}"
    );
}

#[test]
fn docker_builder_surfaces_engine_errors_from_the_stream() {
    if !common::have_docker() {
        return;
    }
    // The engine answers 200 and reports the failed RUN inside the JSON stream.
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a /a\nRUN /bin/true\n"),
        ("a", "a"),
    ]);
    let (_, err, code) = run_fail(gantry().arg("build").arg(ctx.path()).args([
        "--builder",
        "docker",
        "--tag",
        "127.0.0.1:9/never/pushed:v1",
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("docker build failed:"), "{err}");
    assert!(
        err.contains("/bin/true") || err.contains("no such file"),
        "{err}"
    );
}

#[test]
fn auto_builder_falls_back_to_native_without_an_engine() {
    let dest = GantryServer::registry(&[]);
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a")]);
    let out = run(gantry()
        .env(
            "DOCKER_HOST",
            format!("unix://{}/dead.sock", ctx.path().display()),
        )
        .arg("build")
        .arg(ctx.path())
        .args(["--tag", &format!("{}/auto/app", dest.host()), "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["builder"], "native");
    assert_eq!(
        v["images"][0]["reference"],
        format!("{}/auto/app:latest", dest.host())
    );
}
