//! `gantry image …` against real registries: gantry's own and Debian's docker-registry
//! (distribution 2.8, with TLS from a generated CA and bcrypt htpasswd). Asserts digests,
//! request counts (promote is three manifest requests, no blob request) and mounts.

use std::path::{Path, PathBuf};
use std::process::Command;

use gantry::oci::Digest;

use crate::common::{self, DockerRegistry, GantryServer, image, run, run_fail};

fn gantry() -> Command {
    let mut c = Command::new(common::gantry_bin());
    // Never read the developer's own docker config unless a test sets one.
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test");
    c
}

fn index_digest(layout: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    v["manifests"][0]["digest"].as_str().unwrap().to_string()
}

/// Requests the server logged after `from` (index into its request log).
fn requests_since(s: &GantryServer, from: usize) -> Vec<String> {
    s.requests().into_iter().skip(from).collect()
}

#[test]
fn layout_to_registry_to_layout_keeps_digests() {
    let s = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let layers = vec![
        common::random_bytes(3 << 20, 1),
        common::random_bytes(100, 2),
        common::random_bytes(5000, 3),
    ];
    let digest = image::single_image_layout(&src, "v1", &layers);
    let out = run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/app/one:v1", s.host())));
    assert_eq!(out.trim(), digest);
    let back = tmp.path().join("back");
    let out = run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("docker://{}/app/one:v1", s.host()))
        .arg(format!("oci:{}:v1", back.display())));
    assert_eq!(out.trim(), digest);
    assert_eq!(index_digest(&back), digest);
    for l in &layers {
        let d = Digest::sha256(l);
        assert_eq!(
            &std::fs::read(back.join("blobs/sha256").join(d.hex())).unwrap(),
            l
        );
    }
    // A second copy skips every blob (HEAD) and still writes the manifest.
    let json = run(gantry()
        .args(["image", "copy", "-q", "--json"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/app/one:v2", s.host())));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["blobs_skipped"], 4);
    assert_eq!(v["blobs_copied"], 0);
}

#[test]
fn multiarch_index_all_and_one_platform() {
    let s = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("multi");
    let (index, children) = image::multiarch_layout(&src, "v1");
    let out = run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/multi:v1", s.host())));
    assert_eq!(out.trim(), index);
    for c in &children {
        let out = run(gantry()
            .args(["image", "inspect", "--json"])
            .arg(format!("{}/multi@{c}", s.host())));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["digest"], c.as_str());
    }
    let out = run(gantry()
        .args(["image", "inspect"])
        .arg(format!("{}/multi:v1", s.host())));
    assert!(
        out.contains("Platforms:    linux/amd64, linux/arm64"),
        "{out}"
    );
    // --platform: the destination tag holds just the arm64 manifest.
    let out = run(gantry()
        .args(["image", "copy", "-q", "--platform", "linux/arm64"])
        .arg(format!("{}/multi:v1", s.host()))
        .arg(format!("{}/arm:v1", s.host())));
    assert_eq!(out.trim(), children[1]);
    let (_, err, code) = run_fail(
        gantry()
            .args(["image", "copy", "-q", "--platform", "linux/s390x"])
            .arg(format!("{}/multi:v1", s.host()))
            .arg(format!("{}/x:v1", s.host())),
    );
    assert_eq!(
        code, 1,
        "not found is a failed operation (README exit codes)"
    );
    assert!(
        err.contains("platform linux/s390x") && err.contains("linux/amd64, linux/arm64"),
        "{err}"
    );
    // And back to disk with every child.
    let back = tmp.path().join("back");
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("{}/multi:v1", s.host()))
        .arg(format!("oci:{}:v1", back.display())));
    assert_eq!(index_digest(&back), index);
}

#[test]
fn same_registry_copy_mounts_instead_of_moving_bytes() {
    let s = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let digest = image::single_image_layout(
        &src,
        "v1",
        &[
            common::random_bytes(2 << 20, 4),
            common::random_bytes(10, 5),
        ],
    );
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/team-a/app:v1", s.host())));
    let before = s.requests().len();
    let out = run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("{}/team-a/app:v1", s.host()))
        .arg(format!("{}/team-b/app:v1", s.host())));
    assert_eq!(out.trim(), digest);
    let reqs = requests_since(&s, before);
    let mounts = reqs
        .iter()
        .filter(|r| {
            r.starts_with("POST /v2/team-b/app/blobs/uploads/?mount=")
                && r.contains("from=team-a%2Fapp")
                && r.contains(" 201 ")
        })
        .count();
    assert_eq!(mounts, 3, "config and two layers mounted: {reqs:#?}");
    assert!(
        !reqs
            .iter()
            .any(|r| r.starts_with("PATCH") || r.starts_with("GET /v2/team-a/app/blobs")),
        "no blob bytes moved: {reqs:#?}"
    );
}

#[test]
fn promote_is_get_put_delete_and_no_blob_request() {
    let s = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let layers: Vec<Vec<u8>> = (0..50)
        .map(|i| common::random_bytes(1024, 100 + i))
        .collect();
    let digest = image::single_image_layout(&src, "v1", &layers);
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/app:change_7_latest", s.host())));
    let before = s.requests().len();
    let out = run(gantry()
        .args(["image", "promote", "-q"])
        .arg(format!("{}/app", s.host()))
        .args(["--tag", "latest", "--change", "7"]));
    assert_eq!(out.trim(), format!("{}/app:latest {digest}", s.host()));
    let reqs: Vec<String> = requests_since(&s, before)
        .into_iter()
        .map(|r| r.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        reqs,
        vec![
            "GET /v2/app/manifests/change_7_latest 200".to_string(),
            "PUT /v2/app/manifests/latest 201".to_string(),
            "DELETE /v2/app/manifests/change_7_latest 202".to_string(),
        ]
    );
    let out = run(gantry()
        .args(["image", "ls", "--long"])
        .arg(format!("{}/app", s.host())));
    assert_eq!(out.trim(), format!("latest\t{digest}"));
    // Promoting again: the temporary tag is gone, a clear error.
    let (_, err, code) = run_fail(
        gantry()
            .args(["image", "promote"])
            .arg(format!("{}/app", s.host()))
            .args(["--tag", "latest", "--change", "7"]),
    );
    assert_eq!(
        code, 1,
        "not found is a failed operation (README exit codes)"
    );
    assert!(
        err.contains("temporary tag") && err.contains("change_7_latest"),
        "{err}"
    );
}

fn tls_htpasswd(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    common::crypto();
    let files =
        gantry::registry::tls::self_signed(&dir.join("tls"), &["127.0.0.1".to_string()]).unwrap();
    let hp = dir.join("htpasswd");
    let line = gantry::registry::auth::htpasswd::entry("zuul", "Dist-Pass-1", 5).unwrap();
    std::fs::write(&hp, format!("{line}\n")).unwrap();
    (files.cert, files.key, files.ca_cert, hp)
}

#[test]
fn docker_registry_with_tls_htpasswd_and_docker_config_credentials() {
    if !common::have_docker_registry() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key, ca, hp) = tls_htpasswd(tmp.path());
    let reg = DockerRegistry::start(Some((&cert, &key)), Some(&hp));
    // Credentials come from a docker config.json, as `docker login` writes it.
    let cfg = tmp.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "zuul:Dist-Pass-1",
    );
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let with_cfg = || {
        let mut c = Command::new(common::gantry_bin());
        c.env("DOCKER_CONFIG", &cfg).arg("image");
        c
    };
    let src = tmp.path().join("multi");
    let (index, children) = image::multiarch_layout(&src, "v1");
    let out = run(with_cfg()
        .args(["copy", "-q", "--ca-cert"])
        .arg(&ca)
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/app:change_3_v1", reg.host())));
    assert_eq!(out.trim(), index);
    let back = tmp.path().join("back");
    run(with_cfg()
        .args(["copy", "-q", "--ca-cert"])
        .arg(&ca)
        .arg(format!("{}/app:change_3_v1", reg.host()))
        .arg(format!("oci:{}:v1", back.display())));
    assert_eq!(index_digest(&back), index);
    let out = run(with_cfg()
        .args(["copy", "-q", "--platform", "linux/amd64", "--ca-cert"])
        .arg(&ca)
        .arg(format!("{}/app:change_3_v1", reg.host()))
        .arg(format!("{}/amd:v1", reg.host())));
    assert_eq!(out.trim(), children[0]);
    // Promote: distribution 2.8 refuses tag DELETE; the report says what was left behind.
    let out = Command::new(common::gantry_bin())
        .env("DOCKER_CONFIG", &cfg)
        .args(["image", "promote", "--ca-cert"])
        .arg(&ca)
        .arg(format!("{}/app", reg.host()))
        .args(["--tag", "v1", "--change", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("temporary tag left behind"), "{err}");
    let out = run(with_cfg()
        .args(["ls", "--long", "--ca-cert"])
        .arg(&ca)
        .arg(format!("{}/app", reg.host())));
    assert!(out.contains(&format!("v1\t{index}")), "{out}");
    // Without trusting the CA: a TLS error, exit 1, nothing silently downgraded.
    let (_, err, _) = run_fail(with_cfg().args(["ls"]).arg(format!("{}/app", reg.host())));
    assert!(
        err.contains("certificate")
            || err.contains("UnknownIssuer")
            || err.contains("authentication"),
        "{err}"
    );
}

#[test]
fn wrong_password_is_a_clear_error_without_a_retry_storm() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, _, hp) = tls_htpasswd(tmp.path());
    for token in [false, true] {
        let mut args = vec!["--htpasswd", hp.to_str().unwrap()];
        if token {
            args.push("--token-auth");
        }
        let s = GantryServer::registry(&args);
        let (_, err, code) = run_fail(
            gantry()
                .args(["image", "ls", "--creds", "zuul:wrong"])
                .arg(format!("{}/app", s.host())),
        );
        assert_eq!(code, 1, "refused credentials: a failed operation: {err}");
        assert!(
            err.contains("authentication to") && err.contains("failed"),
            "{err}"
        );
        assert!(!err.contains("wrong"), "the password never appears: {err}");
        assert!(
            s.requests().len() <= 4,
            "no retry storm: {:#?}",
            s.requests()
        );
    }
}

#[test]
fn bad_input_is_refused_with_clear_messages() {
    let s = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    for (bad, expect) in [
        ("UPPER/x:v1", "invalid reference"),
        ("host:5000/x:bad tag", "invalid reference"),
        ("http://host/x", "supported forms"),
        ("oci:", "oci: needs a directory"),
    ] {
        let (_, err, code) = run_fail(gantry().args(["image", "copy", bad, "oci:/tmp/none:v1"]));
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains(expect), "{bad}: {err}");
    }
    // A manifest whose blob is missing at the source.
    let src = tmp.path().join("broken");
    image::single_image_layout(&src, "v1", &[common::random_bytes(100, 9)]);
    let missing = Digest::sha256(&common::random_bytes(100, 9));
    std::fs::remove_file(src.join("blobs/sha256").join(missing.hex())).unwrap();
    let (_, err, _) = run_fail(
        gantry()
            .args(["image", "copy", "-q"])
            .arg(format!("oci:{}:v1", src.display()))
            .arg(format!("{}/x:v1", s.host())),
    );
    assert!(err.contains(&missing.to_string()), "{err}");
    // A destination that rejects the manifest (read-only registry).
    let ro = GantryServer::registry(&["--read-only"]);
    let good = tmp.path().join("good");
    image::single_image_layout(&good, "v1", &[common::random_bytes(100, 10)]);
    let (_, err, code) = run_fail(
        gantry()
            .args(["image", "copy", "-q"])
            .arg(format!("oci:{}:v1", good.display()))
            .arg(format!("{}/x:v1", ro.host())),
    );
    assert_eq!(code, 1);
    assert!(err.contains("405") && err.contains("UNSUPPORTED"), "{err}");
}

#[test]
fn interrupted_copy_completes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let src = tmp.path().join("src");
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|i| common::random_bytes(32 << 20, 50 + i))
        .collect();
    let digest = image::single_image_layout(&src, "v1", &layers);
    let mut s = GantryServer::registry_at(&data, &[]);
    // Not quiet and not a terminal: the copy prints a line as each blob completes.
    let mut child = gantry()
        .args(["image", "copy", "-j", "1"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/big:v1", s.host()))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the registry as soon as the first blob is in (the event: its line), while the
    // next 32 MiB layer is on its way.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let first = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("blob sha256:"));
    assert!(first.is_some(), "the copy reported no blob");
    s.kill9();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the copy fails when the registry dies: {rest:?}"
    );
    let s = GantryServer::registry_at(&data, &[]);
    let json = run(gantry()
        .args(["image", "copy", "-q", "--json"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/big:v1", s.host())));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["digest"], digest.as_str());
    assert!(
        v["blobs_skipped"].as_u64().unwrap() >= 1,
        "blobs from the first run are reused: {v}"
    );
    let back = tmp.path().join("back");
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("{}/big:v1", s.host()))
        .arg(format!("oci:{}:v1", back.display())));
    assert_eq!(index_digest(&back), digest);
}

#[test]
fn tag_delete_sweep_and_referrers() {
    let s = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    // Two uploads under temporary tags: one made long ago, one today.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let today = {
        let days = now / 86400;
        // civil date from days (Hinnant), enough for an RFC 3339 string.
        let z = days as i64 + 719468;
        let era = z.div_euclid(146097);
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
        format!("{y:04}-{m:02}-{d:02}T00:00:00Z")
    };
    for (change, created) in [(1, "2001-01-01T00:00:00Z"), (2, today.as_str())] {
        let layout = tmp.path().join(format!("c{change}"));
        let (_, mut d) = image::write_image_created(
            &layout,
            &[common::random_bytes(64, change)],
            "linux",
            "amd64",
            created,
        );
        d.as_object_mut().unwrap().remove("platform");
        image::write_index_json(&layout, d, "v1");
        run(gantry()
            .args(["image", "copy", "-q"])
            .arg(format!("oci:{}:v1", layout.display()))
            .arg(format!("{}/app:change_{change}_latest", s.host())));
    }
    let out = run(gantry()
        .args([
            "image",
            "promote",
            "-q",
            "--json",
            "--sweep-older-than",
            "24h",
        ])
        .arg(format!("{}/app", s.host()))
        .args(["--tag", "latest", "--change", "2"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["swept"],
        serde_json::json!([["change_1_latest", true, null]]),
        "{v}"
    );
    let out = run(gantry()
        .args(["image", "ls"])
        .arg(format!("{}/app", s.host())));
    assert_eq!(out.trim(), "latest");

    // tag: one GET and one PUT, no blob request.
    let before = s.requests().len();
    let out = run(gantry()
        .args(["image", "tag"])
        .arg(format!("{}/app:latest", s.host()))
        .arg("stable"));
    let reqs: Vec<String> = requests_since(&s, before)
        .into_iter()
        .map(|r| r.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        reqs,
        vec![
            "GET /v2/app/manifests/latest",
            "PUT /v2/app/manifests/stable"
        ]
    );
    let digest = out.trim().to_string();
    // delete a tag: the manifest stays under its other tag.
    run(gantry()
        .args(["image", "delete"])
        .arg(format!("{}/app:stable", s.host())));
    let out = run(gantry()
        .args(["image", "ls", "--long"])
        .arg(format!("{}/app", s.host())));
    assert_eq!(out.trim(), format!("latest\t{digest}"));
    let (_, err, code) = run_fail(
        gantry()
            .args(["image", "delete"])
            .arg(format!("{}/app:stable", s.host())),
    );
    assert_eq!(
        code, 1,
        "not found is a failed operation (README exit codes)"
    );
    assert!(err.contains("not found"), "{err}");

    // --referrers brings a signature along.
    let sig_layout = tmp.path().join("sig");
    let sig = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": image::write_blob(&sig_layout, b"{}").0, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": image::write_blob(&sig_layout, b"sig").0, "size": 3}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1},
    });
    let sig_bytes = serde_json::to_vec(&sig).unwrap();
    let (sig_digest, _) = image::write_blob(&sig_layout, &sig_bytes);
    image::write_index_json(
        &sig_layout,
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sig_digest, "size": sig_bytes.len()}),
        "sig",
    );
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:sig", sig_layout.display()))
        .arg(format!("{}/app@{sig_digest}", s.host())));
    let other = GantryServer::registry(&[]);
    run(gantry()
        .args(["image", "copy", "-q", "--referrers"])
        .arg(format!("{}/app:latest", s.host()))
        .arg(format!("{}/copy:latest", other.host())));
    let body = reqwest::blocking_get(&format!(
        "http://{}/v2/copy/referrers/{digest}",
        other.host()
    ));
    assert!(body.contains(&sig_digest), "{body}");
}

mod reqwest {
    /// A tiny blocking GET for assertions (the tests here are synchronous).
    pub fn blocking_get(url: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}

#[test]
fn tags_and_catalog_follow_link_pagination() {
    let s = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    image::single_image_layout(&src, "v1", &[common::random_bytes(10, 77)]);
    for (repo, tag) in [
        ("a/one", "t1"),
        ("a/one", "t2"),
        ("a/one", "t3"),
        ("b/two", "x"),
        ("c", "y"),
    ] {
        run(gantry()
            .args(["image", "copy", "-q"])
            .arg(format!("oci:{}:v1", src.display()))
            .arg(format!("{}/{repo}:{tag}", s.host())));
    }
    let before = s.requests().len();
    let out = run(gantry()
        .args(["image", "ls", "--page-size", "2"])
        .arg(format!("{}/a/one", s.host())));
    assert_eq!(out.trim(), "t1\nt2\nt3");
    let out = run(gantry()
        .args(["image", "catalog", "--page-size", "2"])
        .arg(s.host()));
    assert_eq!(out.trim(), "a/one\nb/two\nc");
    let pages = requests_since(&s, before)
        .iter()
        .filter(|r| r.contains("tags/list") || r.contains("_catalog"))
        .count();
    assert_eq!(
        pages,
        4,
        "two pages each: {:#?}",
        requests_since(&s, before)
    );
}
