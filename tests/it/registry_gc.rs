//! `gantry registry gc`: tagged content of every media type survives (OCI image, Docker
//! image, multi-arch index, referrers of tagged images); untagged blobs, untagged
//! manifests and stale upload sessions go.

use std::process::Command;

use gantry::oci::{Digest, MediaType};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common;
use crate::registry_spec::{Reg, start};

/// Every blob and child manifest of `reference` in `repo` is served with its digest.
async fn assert_complete(reg: &Reg, repo: &str, reference: &str) {
    let r = reg
        .req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{repo}:{reference}");
    let bytes = r.bytes().await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = vec![];
    if let Some(c) = v.get("config") {
        blobs.push(c["digest"].as_str().unwrap().to_string());
    }
    for l in v
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
    {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    for b in blobs {
        let r = reg
            .req(Method::GET, &format!("/v2/{repo}/blobs/{b}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "blob {b} of {repo}:{reference}");
        let got = r.bytes().await.unwrap();
        assert_eq!(Digest::sha256(&got).to_string(), b);
    }
    for m in v
        .get("manifests")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
    {
        Box::pin(assert_complete(reg, repo, m["digest"].as_str().unwrap())).await;
    }
}

fn gc(data: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let out = common::run(
        Command::new(common::gantry_bin())
            .args([
                "registry",
                "gc",
                "--json",
                "--grace",
                "0",
                "--upload-max-age",
                "0",
                "--data-dir",
            ])
            .arg(data)
            .args(extra),
    );
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn gc_keeps_every_tagged_image_and_sweeps_the_rest() {
    let reg = start().await;
    let data = reg.registry.storage().local_root().unwrap().to_path_buf();
    // A tagged OCI image.
    let (oci, obytes) = reg.push_image("apps/oci", "v1", 1).await;
    // A tagged Docker schema 2 image.
    let layer = common::random_bytes(2000, 2);
    let config = br#"{"architecture":"amd64","os":"linux","docker":true}"#;
    let l = reg.push_blob("apps/docker", &layer).await;
    let c = reg.push_blob("apps/docker", config).await;
    let dm = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MediaType::DOCKER_MANIFEST,
        "config": {"mediaType": MediaType::DOCKER_CONFIG, "digest": c, "size": config.len()},
        "layers": [{"mediaType": MediaType::DOCKER_LAYER_GZIP, "digest": l, "size": layer.len()}],
    }))
    .unwrap();
    assert_eq!(
        reg.put_manifest("apps/docker", "v1", MediaType::DOCKER_MANIFEST, &dm)
            .await
            .status(),
        StatusCode::CREATED
    );
    // A multi-arch index whose children are only reachable through it.
    let (a, abytes) = reg.push_image("apps/multi", "tmp-a", 3).await;
    let (b, bbytes) = reg.push_image("apps/multi", "tmp-b", 4).await;
    for t in ["tmp-a", "tmp-b"] {
        reg.req(Method::DELETE, &format!("/v2/apps/multi/manifests/{t}"))
            .send()
            .await
            .unwrap();
    }
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MediaType::OCI_INDEX,
        "manifests": [
            {"mediaType": MediaType::OCI_MANIFEST, "digest": a, "size": abytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": MediaType::OCI_MANIFEST, "digest": b, "size": bbytes.len(), "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }))
    .unwrap();
    assert_eq!(
        reg.put_manifest("apps/multi", "latest", MediaType::OCI_INDEX, &idx)
            .await
            .status(),
        StatusCode::CREATED
    );
    // An artifact of an unusual type referring to the tagged OCI image (a signature).
    let empty = reg.push_blob("apps/oci", b"{}").await;
    let sig = reg.push_blob("apps/oci", b"sig-bytes").await;
    let sm = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MediaType::OCI_MANIFEST, "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "config": {"mediaType": MediaType::OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": sig, "size": 9}],
        "subject": {"mediaType": MediaType::OCI_MANIFEST, "digest": oci, "size": obytes.len()},
    }))
    .unwrap();
    let sd = Digest::sha256(&sm).to_string();
    assert_eq!(
        reg.put_manifest("apps/oci", &sd, MediaType::OCI_MANIFEST, &sm)
            .await
            .status(),
        StatusCode::CREATED
    );
    // Garbage: an untagged image, an orphan blob, a stale upload session.
    let (untagged, ubytes) = reg.push_image("apps/oci", "old", 5).await;
    reg.req(Method::DELETE, "/v2/apps/oci/manifests/old")
        .send()
        .await
        .unwrap();
    let uv: serde_json::Value = serde_json::from_slice(&ubytes).unwrap();
    let untagged_layer = uv["layers"][0]["digest"].as_str().unwrap().to_string();
    let orphan = reg
        .push_blob("apps/oci", b"orphan blob nobody references")
        .await;
    reg.req(Method::POST, "/v2/apps/oci/blobs/uploads/")
        .send()
        .await
        .unwrap();

    // Dry run deletes nothing.
    let report = gc(&data, &["--dry-run"]);
    assert_eq!(report["uploads_removed"], 1);
    let would: Vec<String> = report["blobs_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(
        would.contains(&orphan) && would.contains(&untagged_layer) && would.contains(&untagged),
        "{would:?}"
    );
    let r = reg
        .req(Method::HEAD, &format!("/v2/apps/oci/blobs/{orphan}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The real run.
    let report = gc(&data, &[]);
    let deleted: Vec<String> = report["blobs_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let mut expected = vec![orphan.clone(), untagged_layer.clone(), untagged.clone()];
    // The untagged image's config is garbage too.
    expected.push(uv["config"]["digest"].as_str().unwrap().to_string());
    let mut got = deleted.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(report["uploads_removed"], 1);
    for d in &deleted {
        let d = Digest::parse(d).unwrap();
        assert!(
            !reg.registry
                .storage()
                .local_root()
                .unwrap()
                .join(gantry::registry::Storage::blob_key(&d))
                .exists()
        );
    }
    // Everything tagged is complete.
    assert_complete(&reg, "apps/oci", "v1").await;
    assert_complete(&reg, "apps/docker", "v1").await;
    assert_complete(&reg, "apps/multi", "latest").await;
    assert_complete(&reg, "apps/oci", &sd).await;
    let r = reg
        .req(Method::GET, &format!("/v2/apps/oci/referrers/{oci}"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"][0]["digest"], sd.as_str());
    let r = reg
        .req(Method::GET, &format!("/v2/apps/oci/manifests/{untagged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A second run finds nothing more to do.
    let report = gc(&data, &[]);
    assert_eq!(report["blobs_deleted"], json!([]));
}

#[test]
fn gc_refuses_a_directory_that_is_not_a_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, err, code) = common::run_fail(
        Command::new(common::gantry_bin())
            .args(["registry", "gc", "--data-dir"])
            .arg(tmp.path()),
    );
    assert_eq!(code, 2);
    assert!(err.contains("is not a registry data directory"), "{err}");
}

#[tokio::test]
async fn gc_default_grace_keeps_blobs_of_a_push_in_progress() {
    let reg = start().await;
    let data = reg.registry.storage().local_root().unwrap().to_path_buf();
    let d = reg
        .push_blob("app", b"layer uploaded, manifest not yet pushed")
        .await;
    let out = common::run(
        Command::new(common::gantry_bin())
            .args(["registry", "gc", "--json", "--data-dir"])
            .arg(&data),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["blobs_deleted"], json!([]));
    let r = reg
        .req(Method::HEAD, &format!("/v2/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
