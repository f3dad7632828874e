//! gantry's registry on S3 (moto's server), driven by real clients: skopeo and the Docker
//! engine through an S3-backed registry; two replicas on one bucket; kill -9 during a
//! multipart push; the mount-old-blob → gc → manifest PUT sequence; the gc stress run.

use std::process::Command;
use std::time::Duration;

use gantry::oci::{Digest, MediaType};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{self, GantryServer, image, run};
use crate::registry_s3::Moto;

/// A `gantry registry serve --storage s3://BUCKET` process.
fn s3_server(moto: &Moto, bucket: &str, tmp: &std::path::Path) -> GantryServer {
    let args: Vec<String> = [
        "registry",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--storage",
        &format!("s3://{bucket}/reg"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let log = tmp.join(format!("gantry-{}.log", uuid::Uuid::new_v4()));
    GantryServer::spawn_env(&args, log, tmp.to_path_buf(), &env)
}

/// `gantry registry gc --json --storage s3://BUCKET/reg <extra>`.
fn s3_gc(moto: &Moto, bucket: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.args(["registry", "gc", "--json", "--storage"])
        .arg(format!("s3://{bucket}/reg"))
        .args(extra)
        .envs(moto.env())
        .env_remove("AWS_CA_BUNDLE");
    c
}

async fn setup(bucket: &str) -> Option<(Moto, tempfile::TempDir)> {
    let moto = Moto::start()?;
    moto.bucket(bucket).await;
    Some((moto, tempfile::tempdir().unwrap()))
}

#[tokio::test]
async fn s3_skopeo_and_docker_push_pull() {
    let Some((moto, tmp)) = setup("interop").await else {
        return;
    };
    let server = s3_server(&moto, "interop", tmp.path());
    let host = server.host();
    if common::have_skopeo() {
        let src = tmp.path().join("single");
        let layers = vec![
            common::random_bytes(7 << 20, 1), // a multipart upload
            common::random_bytes(1000, 2),
        ];
        let digest = image::single_image_layout(&src, "v1", &layers);
        run(Command::new("skopeo")
            .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", src.display()))
            .arg(format!("docker://{host}/s3/single:v1")));
        let out = tmp.path().join("out");
        run(Command::new("skopeo")
            .args(["copy", "--preserve-digests", "--src-tls-verify=false"])
            .arg(format!("docker://{host}/s3/single:v1"))
            .arg(format!("oci:{}:v1", out.display())));
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest.as_str());
        for l in &layers {
            let d = Digest::sha256(l);
            assert_eq!(
                &std::fs::read(out.join("blobs/sha256").join(d.hex())).unwrap(),
                l
            );
        }
    }
    if common::have_docker() {
        let cfg = tmp.path().join("docker-config");
        std::fs::create_dir_all(&cfg).unwrap();
        let docker = || {
            let mut c = Command::new("docker");
            c.arg("--config").arg(&cfg);
            c
        };
        let uniq = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let local = format!("gantry-test/s3base:{uniq}");
        let remote = format!("{host}/s3/base:{uniq}");
        struct Cleanup(Vec<String>);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                for i in &self.0 {
                    let _ = Command::new("docker").args(["rmi", "-f", i]).output();
                }
            }
        }
        let _cleanup = Cleanup(vec![local.clone(), remote.clone()]);
        let rootfs = tmp.path().join("rootfs.tar");
        assert!(
            image::busybox_rootfs_tar(&rootfs),
            "busybox-static is needed"
        );
        run(docker().arg("import").arg(&rootfs).arg(&local));
        run(docker().args(["tag", &local, &remote]));
        run(docker().args(["push", &remote]));
        run(docker().args(["rmi", &remote, &local]));
        run(docker().args(["pull", &remote]));
        let out = run(docker().args(["run", "--rm", &remote, "/bin/echo", "hello from s3"]));
        assert_eq!(out.trim(), "hello from s3");
    }
}

/// Two replicas on one bucket: what is pushed through one is pulled through the other at
/// once, and a chunked upload started on one is continued and finished on the other.
#[tokio::test]
async fn s3_two_replicas_share_one_bucket() {
    let Some((moto, tmp)) = setup("replicas").await else {
        return;
    };
    let a = s3_server(&moto, "replicas", tmp.path());
    let b = s3_server(&moto, "replicas", tmp.path());
    let (ua, ub) = (format!("http://{}", a.addr), format!("http://{}", b.addr));
    let http = reqwest::Client::new();

    // Chunked: POST on A, chunks alternate (6 MiB, 1 MiB, 6 MiB), final PUT on B.
    let blob = common::random_bytes(13 << 20, 3);
    let digest = Digest::sha256(&blob);
    let r = http
        .post(format!("{ua}/v2/rep/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut loc = r.headers()["location"].to_str().unwrap().to_string();
    let pieces = [&blob[..6 << 20], &blob[6 << 20..7 << 20], &blob[7 << 20..]];
    let mut start = 0usize;
    for (i, piece) in pieces.iter().enumerate() {
        let base = if i % 2 == 0 { &ua } else { &ub };
        let r = http
            .patch(format!("{base}{loc}"))
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{start}-{}", start + piece.len() - 1),
            )
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "chunk {i}");
        start += piece.len();
        assert_eq!(
            r.headers()["range"].to_str().unwrap(),
            format!("0-{}", start - 1)
        );
        loc = r.headers()["location"].to_str().unwrap().to_string();
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{ub}{loc}{sep}digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = http
        .get(format!("{ua}/v2/rep/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(Digest::sha256(&got.bytes().await.unwrap()), digest);

    // A manifest pushed through B is there through A at once, by tag and by digest.
    let config = br#"{"os":"linux","architecture":"amd64"}"#.to_vec();
    let c = Digest::sha256(&config);
    let r = http
        .post(format!("{ub}/v2/rep/app/blobs/uploads/?digest={c}"))
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MediaType::OCI_MANIFEST,
        "config": {"mediaType": MediaType::OCI_CONFIG, "digest": c, "size": config.len()},
        "layers": [{"mediaType": MediaType::OCI_LAYER_TAR, "digest": digest, "size": blob.len()}],
    }))
    .unwrap();
    let r = http
        .put(format!("{ub}/v2/rep/app/manifests/v1"))
        .header("Content-Type", MediaType::OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    for reference in ["v1".to_string(), Digest::sha256(&m).to_string()] {
        let r = http
            .get(format!("{ua}/v2/rep/app/manifests/{reference}"))
            .header("Accept", MediaType::OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap(), m);
    }
    let tags: serde_json::Value = http
        .get(format!("{ua}/v2/rep/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["v1"]));
}

/// Lists the bucket's pending multipart uploads (moto's ListMultipartUploads).
async fn multipart_uploads(moto: &Moto, bucket: &str) -> usize {
    let xml = reqwest::Client::new()
        .get(format!("{}/{bucket}?uploads", moto.endpoint))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    xml.matches("<UploadId>").count()
}

/// kill -9 while a monolithic push streams into a multipart upload: after a restart the
/// blob is unknown (no partial content visible anywhere), the tag absent, gc aborts the
/// dead push's multipart upload, and the retried push stores the whole blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_kill9_during_multipart_push_leaves_nothing_half_visible() {
    let Some((moto, tmp)) = setup("killed").await else {
        return;
    };
    let mut server = s3_server(&moto, "killed", tmp.path());
    let base = format!("http://{}", server.addr);
    let blob = common::random_bytes(24 << 20, 4);
    let digest = Digest::sha256(&blob);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let feed = blob[..17 << 20].to_vec();
    let feeder = tokio::spawn(async move {
        for c in feed.chunks(1 << 20) {
            if tx.send(Ok(c.to_vec())).await.is_err() {
                return;
            }
        }
        // Hold the request open: the server dies before it ends.
        std::future::pending::<()>().await;
    });
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let http = reqwest::Client::new();
    let req = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/v2/k/app/blobs/uploads/?digest={digest}");
        async move { http.post(url).body(body).send().await }
    });
    // The server has started writing parts once S3 lists a multipart upload.
    let mut seen = false;
    for _ in 0..400 {
        if multipart_uploads(&moto, "killed").await > 0 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "the push never reached a multipart upload");
    server.kill9();
    feeder.abort();
    assert!(
        req.await.unwrap().is_err(),
        "the request dies with the server"
    );

    let server = s3_server(&moto, "killed", tmp.path());
    let base = format!("http://{}", server.addr);
    let r = http
        .head(format!("{base}/v2/k/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(format!("{base}/v2/k/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let listing = reqwest::Client::new()
        .get(format!(
            "{}/killed?list-type=2&prefix=reg/blobs/",
            moto.endpoint
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listing.contains("<Key>"), "no blob object: {listing}");
    // The dead push's multipart upload is still pending (invisible, but stored): gc aborts
    // it once it is idle longer than --upload-max-age (here at once).
    assert_eq!(multipart_uploads(&moto, "killed").await, 1);
    let gc = s3_gc(&moto, "killed", &["--upload-max-age", "0s"])
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert_eq!(multipart_uploads(&moto, "killed").await, 0);
    // The retry stores the whole blob.
    let r = http
        .post(format!("{base}/v2/k/app/blobs/uploads/?digest={digest}"))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .get(format!("{base}/v2/k/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(Digest::sha256(&r.bytes().await.unwrap()), digest);
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The sequence of registry_gc_stress.rs on S3, where object times cannot be backdated:
/// the blobs age past a 3 s grace instead. A push finds them present (HEAD, mount), gc
/// runs, then the manifest arrives — accepted, and intact after more collections.
#[tokio::test]
async fn s3_mount_old_blob_then_gc_then_manifest_put() {
    let Some((moto, tmp)) = setup("mount").await else {
        return;
    };
    let server = s3_server(&moto, "mount", tmp.path());
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let push = |repo: &'static str, bytes: Vec<u8>| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let d = Digest::sha256(&bytes);
            let r = http
                .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            d
        }
    };
    let layer = common::random_bytes(5000, 11);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let l = push("old/base", layer.clone()).await;
    let c = push("app", config.clone()).await;
    let o = push("app", common::random_bytes(700, 12)).await;
    // Let them age past the grace used below (the point of the test is their age).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r = http
        .head(format!("{base}/v2/app/blobs/{c}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(format!(
            "{base}/v2/app/blobs/uploads/?mount={l}&from=old/base"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let report: serde_json::Value =
        serde_json::from_str(&run(&mut s3_gc(&moto, "mount", &["--grace", "3s"]))).unwrap();
    assert_eq!(report["blobs_deleted"], json!([o.to_string()]));
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MediaType::OCI_MANIFEST,
        "config": {"mediaType": MediaType::OCI_CONFIG, "digest": c, "size": config.len()},
        "layers": [{"mediaType": MediaType::OCI_LAYER_TAR, "digest": l, "size": layer.len()}],
    }))
    .unwrap();
    let r = http
        .put(format!("{base}/v2/app/manifests/v1"))
        .header("Content-Type", MediaType::OCI_MANIFEST)
        .body(m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    run(&mut s3_gc(&moto, "mount", &["--grace", "0"]));
    for (d, bytes) in [(&c, &config), (&l, &layer)] {
        let r = http
            .get(format!("{base}/v2/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{d}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..]);
    }
}

/// The gc stress run (3 pushers, gc back to back, ~20 s) against a registry on S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_gc_in_a_loop_beside_three_pushers_breaks_nothing() {
    let Some((moto, tmp)) = setup("stress").await else {
        return;
    };
    let server = s3_server(&moto, "stress", tmp.path());
    let env = moto.env();
    crate::registry_gc_stress::stress(&format!("http://{}", server.addr), move || {
        let mut c = Command::new(common::gantry_bin());
        c.args(["registry", "gc", "--json", "--grace", "3s"])
            .args(["--storage", "s3://stress/reg"])
            .envs(env.clone())
            .env_remove("AWS_CA_BUNDLE");
        c
    })
    .await;
}
