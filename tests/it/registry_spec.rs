//! Spec tests for `gantry registry serve`: every endpoint and error code of the OCI
//! distribution spec v1.1 we implement, driven over HTTP against an in-process server
//! (and a subprocess for kill -9 and restart).

use std::sync::Arc;

use gantry::oci::{Algorithm, Digest, MediaType};
use gantry::registry::{Auth, Htpasswd, Registry, RegistryConfig, TokenAuthority};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{self, GantryServer};

pub(crate) struct Reg {
    pub(crate) base: String,
    http: reqwest::Client,
    _tmp: tempfile::TempDir,
    pub(crate) registry: Registry,
}

async fn start_with(configure: impl FnOnce(&mut RegistryConfig)) -> Reg {
    common::crypto();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = RegistryConfig::new(tmp.path().join("data"));
    configure(&mut cfg);
    let registry = Registry::new(cfg).unwrap();
    let (addr, _task) = registry
        .clone()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Reg {
        base: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _tmp: tmp,
        registry,
    }
}

pub(crate) async fn start() -> Reg {
    start_with(|_| {}).await
}

async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

impl Reg {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(crate) fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            self.url(path)
        };
        self.http.request(m, url)
    }

    pub(crate) async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = Digest::sha256(data).to_string();
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            )
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        d
    }

    pub(crate) async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a one-layer OCI image; returns (digest, manifest bytes).
    pub(crate) async fn push_image(&self, repo: &str, tag: &str, seed: u64) -> (String, Vec<u8>) {
        let layer = common::random_bytes(1000, seed);
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
        let l = self.push_blob(repo, &layer).await;
        let c = self.push_blob(repo, &config).await;
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MediaType::OCI_MANIFEST,
            "config": {"mediaType": MediaType::OCI_CONFIG, "digest": c, "size": config.len()},
            "layers": [{"mediaType": MediaType::OCI_LAYER_TAR, "digest": l, "size": layer.len()}],
        }))
        .unwrap();
        let r = self
            .put_manifest(repo, tag, MediaType::OCI_MANIFEST, &m)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        (Digest::sha256(&m).to_string(), m)
    }
}

#[tokio::test]
async fn base_endpoint_reports_api_version() {
    let reg = start().await;
    let r = reg.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let r = reg.req(Method::GET, "/v2").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn monolithic_upload_get_head_and_range() {
    let reg = start().await;
    let data = common::random_bytes(100_000, 1);
    let d = reg.push_blob("a/b", &data).await;
    let r = reg
        .req(Method::GET, &format!("/v2/a/b/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    let r = reg
        .req(Method::HEAD, &format!("/v2/a/b/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "100000");
    let r = reg
        .req(Method::GET, &format!("/v2/a/b/blobs/{d}"))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/100000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[10..20]);
    let r = reg
        .req(Method::GET, &format!("/v2/a/b/blobs/{d}"))
        .header("Range", "bytes=200000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let unknown = Digest::sha256(b"nope");
    let r = reg
        .req(Method::GET, &format!("/v2/a/b/blobs/{unknown}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_in_order_and_out_of_order() {
    let reg = start().await;
    let data = common::random_bytes(30, 2);
    let r = reg
        .req(Method::POST, "/v2/x/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-0");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/v2/x/blobs/uploads/"));
    let r = reg
        .req(Method::PATCH, &loc)
        .header("Content-Range", "0-9")
        .header("Content-Type", "application/octet-stream")
        .body(data[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-9");
    // Out of order: 20-29 while the upload is at 10.
    let r = reg
        .req(Method::PATCH, &loc)
        .header("Content-Range", "20-29")
        .body(data[20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["range"], "0-9");
    let r = reg
        .req(Method::PATCH, &loc)
        .header("Content-Range", "10-19")
        .body(data[10..20].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-19");
    // Final chunk with the PUT.
    let d = Digest::sha256(&data);
    let r = reg
        .req(Method::PUT, &format!("{loc}?digest={d}"))
        .body(data[20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["location"], format!("/v2/x/blobs/{d}").as_str());
    let r = reg
        .req(Method::GET, &format!("/v2/x/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    // The session is gone after commit.
    let r = reg.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn wrong_digest_is_rejected_and_nothing_is_stored() {
    let reg = start().await;
    let wrong = Digest::sha256(b"something else");
    let r = reg
        .req(
            Method::POST,
            &format!("/v2/x/blobs/uploads/?digest={wrong}"),
        )
        .body(b"actual content".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    for d in [wrong, Digest::sha256(b"actual content")] {
        let r = reg
            .req(Method::HEAD, &format!("/v2/x/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(
            !reg.registry
                .storage()
                .local_root()
                .unwrap()
                .join(gantry::registry::Storage::blob_key(&d))
                .exists()
        );
    }
    // Chunked: the session is discarded too.
    let r = reg
        .req(Method::POST, "/v2/x/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = reg
        .req(
            Method::PUT,
            &format!("{loc}?digest={}", Digest::sha256(b"zz")),
        )
        .body(b"yy".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = reg.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let uploads = std::fs::read_dir(reg.registry.storage().local_root().unwrap().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(uploads, 0, "no upload session left behind");
    // Malformed digest and missing digest.
    let r = reg
        .req(Method::POST, "/v2/x/blobs/uploads/?digest=sha256:xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = reg
        .req(Method::POST, "/v2/x/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = reg.req(Method::PUT, &loc).send().await.unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn sha512_blobs() {
    let reg = start().await;
    let data = common::random_bytes(5000, 3);
    let d = Digest::of(Algorithm::Sha512, &data);
    let r = reg
        .req(Method::POST, &format!("/v2/x/blobs/uploads/?digest={d}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = reg
        .req(Method::GET, &format!("/v2/x/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn blobs_are_private_to_repositories_until_mounted() {
    let reg = start().await;
    let d = reg.push_blob("team-a/app", b"secret layer").await;
    let r = reg
        .req(Method::GET, &format!("/v2/team-b/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    // A mount from a repository that lacks the blob falls back to an upload session.
    let r = reg
        .req(
            Method::POST,
            &format!("/v2/team-b/app/blobs/uploads/?mount={d}&from=team-c/none"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/v2/team-b/app/blobs/uploads/")
    );
    let r = reg
        .req(
            Method::POST,
            &format!("/v2/team-b/app/blobs/uploads/?mount={d}&from=team-a/app"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team-b/app/blobs/{d}").as_str()
    );
    let r = reg
        .req(Method::GET, &format!("/v2/team-b/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"secret layer");
    // Delete removes the link only from that repository.
    let r = reg
        .req(Method::DELETE, &format!("/v2/team-b/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg
        .req(Method::HEAD, &format!("/v2/team-b/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = reg
        .req(Method::HEAD, &format!("/v2/team-a/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn manifests_by_tag_and_digest_are_byte_exact() {
    let reg = start().await;
    let (d, bytes) = reg.push_image("app", "v1", 7).await;
    for reference in ["v1", d.as_str()] {
        let r = reg
            .req(Method::GET, &format!("/v2/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], MediaType::OCI_MANIFEST);
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..]);
        let r = reg
            .req(Method::HEAD, &format!("/v2/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["content-length"],
            bytes.len().to_string().as_str()
        );
    }
    // Same bytes with odd whitespace are a different manifest: served exactly as pushed.
    let mut spaced = b"  ".to_vec();
    spaced.extend_from_slice(&bytes);
    let r = reg
        .put_manifest("app", "spaced", MediaType::OCI_MANIFEST, &spaced)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = reg
        .req(Method::GET, "/v2/app/manifests/spaced")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &spaced[..]);
    // Unknown tag / digest.
    let r = reg
        .req(Method::GET, "/v2/app/manifests/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_validation_errors() {
    let reg = start().await;
    // Missing blobs.
    let missing = Digest::sha256(b"missing");
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MediaType::OCI_MANIFEST,
        "config": {"mediaType": MediaType::OCI_CONFIG, "digest": missing, "size": 7},
        "layers": [],
    }))
    .unwrap();
    let r = reg
        .put_manifest("app", "bad", MediaType::OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(v["errors"][0]["detail"]["digest"], missing.to_string());
    // Invalid JSON, wrong schema, type mismatch.
    for (body, ct) in [
        (b"{not json".to_vec(), MediaType::OCI_MANIFEST),
        (br#"{"schemaVersion":1}"#.to_vec(), MediaType::OCI_MANIFEST),
        (
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
                MediaType::OCI_INDEX
            )
            .into_bytes(),
            MediaType::OCI_MANIFEST,
        ),
        (
            br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(),
            "application/vnd.example.unknown+json",
        ),
    ] {
        let r = reg.put_manifest("app", "bad", ct, &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    }
    // PUT by digest must match the content.
    let (_, bytes) = reg.push_image("app", "v1", 8).await;
    let wrong = Digest::sha256(b"other");
    let r = reg
        .put_manifest("app", &wrong.to_string(), MediaType::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let right = Digest::sha256(&bytes);
    let r = reg
        .put_manifest("app", &right.to_string(), MediaType::OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // An index whose child is missing.
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MediaType::OCI_INDEX,
        "manifests": [{"mediaType": MediaType::OCI_MANIFEST, "digest": missing, "size": 10}],
    }))
    .unwrap();
    let r = reg
        .put_manifest("app", "idx", MediaType::OCI_INDEX, &idx)
        .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    // Size limit: 4 MiB accepted... above → 413.
    let big = vec![b' '; (4 << 20) + 1];
    let r = reg
        .put_manifest("app", "big", MediaType::OCI_MANIFEST, &big)
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
}

#[tokio::test]
async fn large_manifest_up_to_4mib_is_accepted() {
    let reg = start().await;
    let (_, bytes) = reg.push_image("app", "v1", 9).await;
    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    v["annotations"] = json!({"pad": "x".repeat((4 << 20) - bytes.len() - 100)});
    let big = serde_json::to_vec(&v).unwrap();
    assert!(big.len() <= 4 << 20 && big.len() > (4 << 20) - 200);
    let r = reg
        .put_manifest("app", "big", MediaType::OCI_MANIFEST, &big)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn docker_manifest_list_and_oci_index() {
    let reg = start().await;
    let (a, abytes) = reg.push_image("multi", "amd64", 10).await;
    let (b, _) = reg.push_image("multi", "arm64", 11).await;
    for (mt, child_mt) in [
        (MediaType::OCI_INDEX, MediaType::OCI_MANIFEST),
        (MediaType::DOCKER_MANIFEST_LIST, MediaType::OCI_MANIFEST),
    ] {
        let idx = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": mt,
            "manifests": [
                {"mediaType": child_mt, "digest": a, "size": abytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": child_mt, "digest": b, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        }))
        .unwrap();
        let r = reg.put_manifest("multi", "latest", mt, &idx).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = reg
            .req(Method::GET, "/v2/multi/manifests/latest")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], mt);
        assert_eq!(r.bytes().await.unwrap().as_ref(), &idx[..]);
    }
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link_headers() {
    let reg = start().await;
    let (d, bytes) = reg.push_image("r/one", "a", 12).await;
    for tag in ["b", "c", "d", "e"] {
        let r = reg
            .put_manifest("r/one", tag, MediaType::OCI_MANIFEST, &bytes)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = reg
        .req(Method::GET, "/v2/r/one/tags/list")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"name": "r/one", "tags": ["a", "b", "c", "d", "e"]})
    );
    let r = reg
        .req(Method::GET, "/v2/r/one/tags/list?n=2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["link"],
        "</v2/r/one/tags/list?n=2&last=b>; rel=\"next\""
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], json!(["a", "b"]));
    let r = reg
        .req(Method::GET, "/v2/r/one/tags/list?n=2&last=d")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], json!(["e"]));
    let r = reg
        .req(Method::GET, "/v2/r/one/tags/list?n=0")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], json!([]));
    let r = reg
        .req(Method::GET, "/v2/unknown/tags/list")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    // Catalog, including a nested name and a name with an endpoint word in it.
    reg.push_image("r/one/two", "x", 13).await;
    reg.push_image("blobs/manifests", "x", 14).await;
    let r = reg.req(Method::GET, "/v2/_catalog").send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["repositories"],
        json!(["blobs/manifests", "r/one", "r/one/two"])
    );
    let r = reg
        .req(Method::GET, "/v2/_catalog?n=1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["link"],
        "</v2/_catalog?n=1&last=blobs/manifests>; rel=\"next\""
    );
    let r = reg
        .req(Method::GET, "/v2/_catalog?n=1&last=r/one")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["r/one/two"]));
    let _ = d;
}

#[tokio::test]
async fn referrers_api_with_artifact_type_filter() {
    let reg = start().await;
    let (subject, sbytes) = reg.push_image("app", "v1", 15).await;
    let empty = reg.push_blob("app", b"{}").await;
    let sig = reg.push_blob("app", b"signature").await;
    let mut referrers = Vec::new();
    for (t, n) in [
        ("application/vnd.example.sig", 1),
        ("application/vnd.example.sbom", 2),
    ] {
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MediaType::OCI_MANIFEST, "artifactType": t,
            "config": {"mediaType": MediaType::OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 9}],
            "subject": {"mediaType": MediaType::OCI_MANIFEST, "digest": subject, "size": sbytes.len()},
            "annotations": {"n": n.to_string()},
        }))
        .unwrap();
        let d = Digest::sha256(&m).to_string();
        let r = reg
            .put_manifest("app", &d, MediaType::OCI_MANIFEST, &m)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["oci-subject"], subject.as_str());
        referrers.push(d);
    }
    let r = reg
        .req(Method::GET, &format!("/v2/app/referrers/{subject}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], MediaType::OCI_INDEX);
    assert!(r.headers().get("oci-filters-applied").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    let r = reg
        .req(
            Method::GET,
            &format!("/v2/app/referrers/{subject}?artifactType=application/vnd.example.sbom"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: Value = r.json().await.unwrap();
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(list[0]["annotations"]["n"], "2");
    assert_eq!(list[0]["digest"], referrers[1].as_str());
    // No referrers: an empty index, not 404.
    let none = Digest::sha256(b"x");
    let r = reg
        .req(Method::GET, &format!("/v2/app/referrers/{none}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], json!([]));
    // Deleting a referrer removes it from the list.
    let r = reg
        .req(
            Method::DELETE,
            &format!("/v2/app/manifests/{}", referrers[0]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg
        .req(Method::GET, &format!("/v2/app/referrers/{subject}"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn delete_tag_and_manifest() {
    let reg = start().await;
    let (d, bytes) = reg.push_image("app", "v1", 16).await;
    reg.put_manifest("app", "v2", MediaType::OCI_MANIFEST, &bytes)
        .await;
    let r = reg
        .req(Method::DELETE, "/v2/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg
        .req(Method::GET, "/v2/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The manifest itself stays reachable by digest and by its other tag.
    let r = reg
        .req(Method::GET, &format!("/v2/app/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = reg
        .req(Method::DELETE, &format!("/v2/app/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for reference in ["v2", d.as_str()] {
        let r = reg
            .req(Method::GET, &format!("/v2/app/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = reg
        .req(Method::DELETE, "/v2/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn invalid_names_and_path_traversal() {
    let reg = start().await;
    for path in [
        "/v2/UPPER/manifests/latest",
        "/v2/a//b/manifests/latest",
        "/v2/_hidden/manifests/latest",
        "/v2/a-/tags/list",
    ] {
        let r = reg.req(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(r).await, "NAME_INVALID", "{path}");
    }
    // Raw `..` and `%2e%2e` segments never reach storage (reqwest would normalise them,
    // so they are sent on a raw socket).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = reg.base.trim_start_matches("http://").to_string();
    for path in [
        "/v2/../../etc/passwd/manifests/x",
        "/v2/a/%2e%2e/%2e%2e/b/manifests/x",
        "/v2/a/../../blobs/uploads/",
    ] {
        let mut s = tokio::net::TcpStream::connect(&host).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(
            out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.1 404"),
            "{path}: {out}"
        );
        assert!(
            out.contains("NAME_INVALID") || out.contains("NAME_UNKNOWN"),
            "{path}: {out}"
        );
    }
    // A pull by an invalid tag is "unknown" (what clients and conformance suites
    // expect); a push by one is "invalid".
    let r = reg
        .req(Method::GET, "/v2/a/manifests/..bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = reg
        .req(Method::PUT, "/v2/a/manifests/..bad")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "TAG_INVALID");
    let r = reg.req(Method::PUT, "/v2/_catalog").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
}

#[tokio::test]
async fn read_only_refuses_writes() {
    let reg = start_with(|c| c.read_only = true).await;
    let r = reg
        .req(Method::POST, "/v2/x/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    let r = reg.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

fn htpasswd_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("htpasswd");
    let line = gantry::registry::auth::htpasswd::entry("zuul", "pw-123", 4).unwrap();
    std::fs::write(&p, format!("{line}\n")).unwrap();
    p
}

#[tokio::test]
async fn basic_auth_and_anonymous_read() {
    let tmp = tempfile::tempdir().unwrap();
    let hp = htpasswd_file(tmp.path());
    let reg = start_with(|c| {
        c.auth = Auth {
            htpasswd: Some(Arc::new(Htpasswd::load(&hp).unwrap())),
            anonymous_read: true,
            ..Auth::default()
        }
    })
    .await;
    let r = reg.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"gantry\"");
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = reg
        .req(Method::GET, "/v2/")
        .basic_auth("zuul", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reg
        .req(Method::GET, "/v2/")
        .basic_auth("zuul", Some("pw-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Push needs credentials; pull does not (anonymous read).
    let r = reg
        .req(Method::POST, "/v2/x/blobs/uploads/?digest=sha256:0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let d = Digest::sha256(b"data");
    let r = reg
        .req(Method::POST, &format!("/v2/x/blobs/uploads/?digest={d}"))
        .basic_auth("zuul", Some("pw-123"))
        .body(b"data".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = reg
        .req(Method::GET, &format!("/v2/x/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn token(reg: &Reg, scope: &str, creds: Option<(&str, &str)>) -> reqwest::Response {
    let mut rb = reg.req(Method::GET, &format!("/token?service=gantry&scope={scope}"));
    if let Some((u, p)) = creds {
        rb = rb.basic_auth(u, Some(p));
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn token_auth_flow_and_bad_tokens() {
    common::crypto();
    let tmp = tempfile::tempdir().unwrap();
    let hp = htpasswd_file(tmp.path());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_path = tmp.path().join("token.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let reg = start_with(|c| {
        c.auth = Auth {
            htpasswd: Some(Arc::new(Htpasswd::load(&hp).unwrap())),
            tokens: Some(TokenAuthority::from_file("gantry", &key_path).unwrap()),
            anonymous_read: false,
            realm: None,
        }
    })
    .await;
    // Challenge names realm, service and scope.
    let r = reg
        .req(Method::GET, "/v2/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!(
            "Bearer realm=\"{}/token\",service=\"gantry\",scope=\"repository:app:pull\"",
            reg.base
        )
        .as_str()
    );
    // Wrong password: the token endpoint refuses.
    let r = token(&reg, "repository:app:pull,push", Some(("zuul", "nope"))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Right password: a token for pull,push on app.
    let r = token(&reg, "repository:app:pull,push", Some(("zuul", "pw-123"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let t = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["access_token"], v["token"]);
    let d = Digest::sha256(b"tok");
    let r = reg
        .req(Method::POST, &format!("/v2/app/blobs/uploads/?digest={d}"))
        .bearer_auth(&t)
        .body(b"tok".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Wrong scope: the token is for `app`, not `other`.
    let r = reg
        .req(Method::GET, &format!("/v2/other/blobs/{d}"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    // Pull-only token cannot push.
    let r = token(&reg, "repository:app:pull", Some(("zuul", "pw-123"))).await;
    let pull: Value = r.json().await.unwrap();
    let r = reg
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .bearer_auth(pull["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Anonymous token: no access when anonymous read is off.
    let r = token(&reg, "repository:app:pull", None).await;
    let anon: Value = r.json().await.unwrap();
    let r = reg
        .req(Method::GET, &format!("/v2/app/blobs/{d}"))
        .bearer_auth(anon["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Forged: signed by another key.
    let other = TokenAuthority::generate("gantry").unwrap();
    let (forged, _) = other
        .issue(
            "zuul",
            vec![gantry::registry::Access::repository(
                "app",
                &["pull", "push"],
            )],
        )
        .unwrap();
    let r = reg
        .req(Method::GET, &format!("/v2/app/blobs/{d}"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // Tampered payload with the original signature.
    let mut parts: Vec<String> = t.split('.').map(String::from).collect();
    parts[1] = parts[1].chars().rev().collect();
    let r = reg
        .req(Method::GET, &format!("/v2/app/blobs/{d}"))
        .bearer_auth(parts.join("."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Expired: right key and claims, exp a minute in the past (beyond the 5 s leeway).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": "gantry/gantry", "sub": "zuul", "aud": "gantry",
        "exp": now - 60, "nbf": now - 120, "iat": now - 120, "jti": "expired",
        "access": [{"type": "repository", "name": "app", "actions": ["pull"]}],
    });
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&key_path).unwrap()).unwrap();
    let tok = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
    .unwrap();
    // The same claims with a live exp pass: only the expiry is refused.
    let mut live = claims.clone();
    live["exp"] = json!(now + 60);
    let live = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &live,
        &key,
    )
    .unwrap();
    let r = reg
        .req(Method::GET, &format!("/v2/app/blobs/{d}"))
        .bearer_auth(&live)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = reg
        .req(Method::GET, &format!("/v2/app/blobs/{d}"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Catalog needs registry:catalog:*.
    let r = token(&reg, "registry:catalog:*", Some(("zuul", "pw-123"))).await;
    let cat: Value = r.json().await.unwrap();
    let r = reg
        .req(Method::GET, "/v2/_catalog")
        .bearer_auth(cat["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// A session survives a restart (hash state persisted), and a kill -9 in the middle of a
/// large chunk leaves no blob and no damage: the restarted server accepts a retry.
#[tokio::test]
async fn kill_9_mid_upload_then_restart_and_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let http = reqwest::Client::new();
    let big = common::random_bytes(64 << 20, 42);
    let digest = Digest::sha256(&big);

    // 1. A chunk, then restart, then the rest: resumable across restarts.
    let mut server = GantryServer::registry_at(&data_dir, &[]);
    let base = format!("http://{}", server.addr);
    let r = http
        .post(format!("{base}/v2/big/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = http
        .patch(format!("{base}{loc}"))
        .header("Content-Range", format!("0-{}", (1 << 20) - 1))
        .body(big[..1 << 20].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    server.kill9();

    // 2. Restart; stream the rest slowly and kill -9 in the middle of it.
    let mut server = GantryServer::registry_at(&data_dir, &[]);
    let base = format!("http://{}", server.addr);
    let r = http.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", (1 << 20) - 1).as_str()
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let rest = big[1 << 20..].to_vec();
    let feeder = tokio::spawn(async move {
        for chunk in rest.chunks(1 << 20).take(8) {
            if tx.send(Ok(chunk.to_vec())).await.is_err() {
                return;
            }
        }
        // Hold the request open: the server dies before it ends.
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    });
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let url = format!("{base}{loc}?digest={digest}");
    let req = tokio::spawn({
        let http = http.clone();
        async move { http.put(url).body(body).send().await }
    });
    // Wait until the server has received some of it, then kill it.
    let upload_data = std::fs::read_dir(data_dir.join("uploads"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("data");
    for _ in 0..200 {
        if std::fs::metadata(&upload_data)
            .map(|m| m.len())
            .unwrap_or(0)
            > (3 << 20)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    server.kill9();
    feeder.abort();
    assert!(
        req.await.unwrap().is_err(),
        "the request dies with the server"
    );
    let blob_path = data_dir
        .join("blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex());
    assert!(!blob_path.exists(), "no partial blob may be visible");

    // 3. Restart: the blob is unknown; the session is still at its recorded offset; a
    //    retry from scratch completes and the content is intact.
    let server = GantryServer::registry_at(&data_dir, &[]);
    let base = format!("http://{}", server.addr);
    let r = http
        .head(format!("{base}/v2/big/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http.get(format!("{base}{loc}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http
        .patch(format!("{base}{loc}"))
        .header("Content-Range", format!("{}-{}", 1 << 20, big.len() - 1))
        .body(big[1 << 20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
    let r = http
        .put(format!("{base}{loc}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = http
        .get(format!("{base}/v2/big/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    let got = r.bytes().await.unwrap();
    assert_eq!(Digest::sha256(&got), digest);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn content_negotiation_serves_the_platform_manifest_to_clients_without_index_support() {
    let reg = start().await;
    let (arm, _) = reg.push_image("neg", "arm", 20).await;
    let (amd, amd_bytes) = reg.push_image("neg", "amd", 21).await;
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MediaType::OCI_INDEX,
        "manifests": [
            {"mediaType": MediaType::OCI_MANIFEST, "digest": arm, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": MediaType::OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    reg.put_manifest("neg", "multi", MediaType::OCI_INDEX, &idx)
        .await;
    let idx_digest = Digest::sha256(&idx).to_string();
    // Accepting the index (or anything): the index itself.
    for accept in [
        None,
        Some("*/*"),
        Some("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"),
    ] {
        let mut rb = reg.req(Method::GET, "/v2/neg/manifests/multi");
        if let Some(a) = accept {
            rb = rb.header("Accept", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(
            r.headers()["docker-content-digest"],
            idx_digest.as_str(),
            "{accept:?}"
        );
    }
    // Accepting only image manifests: the linux/amd64 entry.
    let r = reg
        .req(Method::GET, "/v2/neg/manifests/multi")
        .header("Accept", MediaType::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], amd.as_str());
    assert_eq!(r.headers()["content-type"], MediaType::OCI_MANIFEST);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &amd_bytes[..]);
    // By digest, the bytes asked for, whatever the Accept header.
    let r = reg
        .req(Method::GET, &format!("/v2/neg/manifests/{idx_digest}"))
        .header("Accept", MediaType::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], idx_digest.as_str());
}

#[tokio::test]
async fn cancelled_upload_is_gone() {
    let reg = start().await;
    let r = reg
        .req(Method::POST, "/v2/x/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    reg.req(Method::PATCH, &loc)
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    let r = reg.req(Method::DELETE, &loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = reg.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // Another repository cannot touch a session that is not its own.
    let r = reg
        .req(Method::POST, "/v2/x/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let other = loc.replace("/v2/x/", "/v2/y/");
    let r = reg
        .req(Method::PATCH, &other)
        .body(b"abc".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
