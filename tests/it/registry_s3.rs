//! The storage suite, one generic function run against both drivers: the filesystem and
//! S3 (moto's server, a real S3 implementation started here on 127.0.0.1:0).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use gantry::oci::{Descriptor, Digest, MediaType};
use gantry::registry::Storage;
use gantry::registry::gc::{self, GcOptions};
use gantry::registry::storage::{Mode, Put, S3Driver, StorageError};

use crate::common;

/// moto's S3 server on 127.0.0.1 (port 0); killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// `None` (test skipped) outside CI when moto is not installed.
    pub fn start() -> Option<Moto> {
        let bin = common::venv_tool("moto_server")?;
        let mut child = Command::new(bin)
            .args(["-p", "0"])
            .env_remove("AWS_CA_BUNDLE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        // It prints ` * Running on http://127.0.0.1:PORT` on stderr once it listens.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let endpoint = loop {
            let line = lines
                .next()
                .expect("moto_server exited before listening")
                .unwrap();
            if let Some((_, url)) = line.split_once("Running on ") {
                break url.trim().to_string();
            }
        };
        // Keep draining its log, or it blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Some(Moto { child, endpoint })
    }

    /// Creates `bucket` (moto accepts an unsigned request).
    pub async fn bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// The variables a gantry process reads its S3 settings from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// In-process storage on `bucket`.
    pub fn storage(&self, bucket: &str, prefix: &str) -> Storage {
        Storage::with_driver(Arc::new(self.driver(bucket, prefix)))
    }

    /// An S3 driver on `bucket`.
    pub fn driver(&self, bucket: &str, prefix: &str) -> S3Driver {
        common::crypto();
        let builder = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test");
        S3Driver::from_builder(builder, bucket, prefix).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn body(chunks: Vec<Vec<u8>>) -> impl futures_util::Stream<Item = Result<Bytes, String>> + Unpin {
    futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))))
}

async fn read_all(s: &Storage, d: &Digest, start: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = s.read_blob_range(d, start, len).await.unwrap();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// The suite. `a` and `b` are two instances on the same store (two replicas).
async fn suite(a: &Storage, b: &Storage) {
    let d = a.driver();
    // Driver: put-if-absent and compare-and-swap.
    let v1 = match d.put("t/x", Bytes::from("1"), Mode::Create).await.unwrap() {
        Put::Done(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        d.put("t/x", Bytes::from("2"), Mode::Create).await.unwrap(),
        Put::Exists
    );
    let v2 = match d
        .put("t/x", Bytes::from("3"), Mode::Update(v1.clone()))
        .await
        .unwrap()
    {
        Put::Done(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        d.put("t/x", Bytes::from("4"), Mode::Update(v1))
            .await
            .unwrap(),
        Put::Conflict,
        "a stale version must not win"
    );
    assert_eq!(d.get("t/x").await.unwrap().unwrap().0, Bytes::from("3"));
    assert!(d.stat("t/x").await.unwrap().unwrap().version == v2);
    assert!(d.delete("t/x").await.unwrap());
    assert!(!d.delete("t/x").await.unwrap());
    assert_eq!(d.touch("t/x").await.unwrap(), None, "touch creates nothing");
    assert!(d.stat("t/x").await.unwrap().is_none());

    // Monolithic blob through one instance, read (and ranges) through the other.
    let big = common::random_bytes(11 << 20, 7); // over two S3 parts
    let dig = Digest::sha256(&big);
    let chunks: Vec<Vec<u8>> = big.chunks(700_000).map(|c| c.to_vec()).collect();
    let n = a.put_blob_stream("app", &dig, body(chunks)).await.unwrap();
    assert_eq!(n, big.len() as u64);
    assert_eq!(b.linked_blob_size("app", &dig).await.unwrap(), Some(n));
    assert_eq!(b.linked_blob_size("other", &dig).await.unwrap(), None);
    assert_eq!(read_all(b, &dig, 0, n).await, big);
    assert_eq!(read_all(b, &dig, 5, 10).await, &big[5..15]);
    // A wrong digest stores nothing.
    let bad = Digest::sha256(b"something else");
    let e = a
        .put_blob_stream("app", &bad, body(vec![b"abc".to_vec()]))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::DigestMismatch { .. }), "{e}");
    assert_eq!(b.linked_blob_size("app", &bad).await.unwrap(), None);
    // A small one.
    let small = b"{\"os\":\"linux\"}".to_vec();
    let sd = Digest::sha256(&small);
    a.put_blob_stream("app", &sd, body(vec![small.clone()]))
        .await
        .unwrap();
    assert_eq!(b.read_blob(&sd).await.unwrap().unwrap(), small);

    // Chunked upload: started on `a`, continued on `b` with chunks short of a part, out of
    // order refused, finished on `a`.
    let layer = common::random_bytes(13 << 20, 8);
    let ld = Digest::sha256(&layer);
    let st = a.upload_start("app").await.unwrap();
    let mut offset = 0usize;
    for (i, piece) in layer.chunks(3 << 20).enumerate() {
        let s = if i % 2 == 0 { a } else { b };
        let r = s
            .upload_append(
                "app",
                &st.id,
                Some(offset as u64),
                body(vec![piece.to_vec()]),
            )
            .await
            .unwrap();
        offset += piece.len();
        assert_eq!(r.offset, offset as u64);
        assert_eq!(
            b.upload_status("app", &st.id).await.unwrap().offset,
            offset as u64
        );
    }
    let e = b
        .upload_append("app", &st.id, Some(5), body(vec![b"x".to_vec()]))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::RangeMismatch { .. }), "{e}");
    assert!(matches!(
        b.upload_status("other", &st.id).await.unwrap_err(),
        StorageError::UploadUnknown(_)
    ));
    let size = a
        .upload_finish("app", &st.id, None, &ld, body(vec![]))
        .await
        .unwrap();
    assert_eq!(size, layer.len() as u64);
    assert_eq!(read_all(b, &ld, 0, size).await, layer);
    assert!(matches!(
        b.upload_status("app", &st.id).await.unwrap_err(),
        StorageError::UploadUnknown(_)
    ));
    // A session whose digest does not match is discarded.
    let st = b.upload_start("app").await.unwrap();
    b.upload_append("app", &st.id, None, body(vec![b"abc".to_vec()]))
        .await
        .unwrap();
    let e = a
        .upload_finish("app", &st.id, None, &bad, body(vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::DigestMismatch { .. }), "{e}");
    assert!(
        a.driver()
            .list(&format!("uploads/{}", st.id))
            .await
            .unwrap()
            .is_empty()
    );

    // Manifests, tags, referrers, catalog.
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MediaType::OCI_MANIFEST,
        "config": {"mediaType": MediaType::OCI_CONFIG, "digest": sd, "size": small.len()},
        "layers": [{"mediaType": MediaType::OCI_LAYER_TAR, "digest": ld, "size": size}],
    }))
    .unwrap();
    let md = Digest::sha256(&m);
    a.put_manifest("app", &md, MediaType::OCI_MANIFEST, Bytes::from(m.clone()))
        .await
        .unwrap();
    a.set_tag("app", "v1", &md).await.unwrap();
    a.set_tag("app", "v2", &md).await.unwrap();
    assert_eq!(b.resolve_tag("app", "v1").await.unwrap(), Some(md.clone()));
    assert_eq!(b.tags("app").await.unwrap(), vec!["v1", "v2"]);
    let got = b.get_manifest("app", &md).await.unwrap().unwrap();
    assert_eq!(got.bytes, m);
    assert_eq!(got.media_type, MediaType::OCI_MANIFEST);
    let sig: Descriptor = serde_json::from_value(serde_json::json!({
        "mediaType": MediaType::OCI_MANIFEST, "digest": Digest::sha256(b"sig"), "size": 3
    }))
    .unwrap();
    a.add_referrer("app", &md, &sig).await.unwrap();
    assert_eq!(b.referrers("app", &md).await.unwrap().len(), 1);
    a.put_blob_bytes("nested/deep/repo", &sd, Bytes::from(small.clone()))
        .await
        .unwrap();
    a.set_tag("nested/deep/repo", "t", &sd).await.unwrap();
    assert_eq!(
        b.repositories().await.unwrap(),
        vec!["app".to_string(), "nested/deep/repo".to_string()]
    );
    assert!(b.repo_exists("nested/deep/repo").await.unwrap());
    assert!(!b.repo_exists("nested/deep").await.unwrap());
    // Deleting a manifest removes the tags that point at it, and only those.
    a.set_tag("app", "v2", &sd).await.unwrap();
    assert!(b.delete_manifest("app", &md).await.unwrap());
    assert_eq!(a.tags("app").await.unwrap(), vec!["v2"]);

    // gc: one lock at a time; with no grace, what no tag reaches goes, the rest stays.
    let lock = a.gc_lock().await.unwrap();
    assert!(matches!(
        b.gc_lock().await.map(|_| ()).unwrap_err(),
        StorageError::Busy(_)
    ));
    a.gc_unlock(lock).await.unwrap();
    b.delete_tag("app", "v2").await.unwrap();
    let zero = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    let report = gc::collect(b, &zero).await.unwrap();
    let mut deleted: Vec<String> = report.blobs_deleted.iter().map(|d| d.to_string()).collect();
    deleted.sort();
    let mut expected = vec![dig.to_string(), ld.to_string(), md.to_string()];
    expected.sort();
    assert_eq!(deleted, expected, "what the nested repo tags stays");
    assert!(a.read_blob(&sd).await.unwrap().is_some());
    assert!(a.read_blob(&md).await.unwrap().is_none());
    assert_eq!(a.linked_blob_size("app", &ld).await.unwrap(), None);
}

#[tokio::test]
async fn storage_suite_on_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let a = Storage::open(dir.path()).unwrap();
    let b = Storage::open(dir.path()).unwrap();
    suite(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_on_s3() {
    let Some(moto) = Moto::start() else { return };
    moto.bucket("suite").await;
    let a = moto.storage("suite", "some/prefix");
    let b = moto.storage("suite", "some/prefix");
    suite(&a, &b).await;
    // Nothing escaped the prefix.
    let other = moto.storage("suite", "");
    let names = other.driver().list_dir("").await.unwrap();
    assert_eq!(names, vec!["some"], "{names:?}");
}

/// A bad `--storage` URL is a one-line usage error naming it (exit 2), for serve and gc.
#[test]
fn bad_storage_url_is_a_one_line_usage_error() {
    for url in [
        "ftp://host/dir",
        "s3://",
        "s3://UPPER",
        "s3://ok-bucket/../x",
        "file://relative",
    ] {
        for cmd in [
            &["registry", "serve", "--listen", "127.0.0.1:0"][..],
            &["registry", "gc"][..],
        ] {
            let (_, err, code) = common::run_fail(
                Command::new(common::gantry_bin())
                    .args(cmd)
                    .args(["--storage", url]),
            );
            assert_eq!(code, 2, "{cmd:?} {url}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(err.contains(&format!("{url:?}")), "{err}");
        }
    }
    // Neither given: told what is needed.
    let (_, err, code) = common::run_fail(
        Command::new(common::gantry_bin())
            .args(["registry", "gc"])
            .env_remove("GANTRY_REGISTRY_DATA")
            .env_remove("GANTRY_REGISTRY_STORAGE"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--storage") && err.contains("--data-dir"),
        "{err}"
    );
}
