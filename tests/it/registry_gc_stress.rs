//! gc beside live pushes: an acknowledged push is never broken, and a push in flight
//! succeeds when its manifest arrives within the grace period, also when it re-uses
//! blobs far older than the grace period (HEAD or cross-repository mount).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use gantry::oci::{Digest, MediaType};
use gantry::registry::gc::{self, GcOptions};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{self, GantryServer};
use crate::registry_spec::start;

fn backdate(path: &std::path::Path, age: Duration) {
    let f = std::fs::File::open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

fn link(data: &std::path::Path, repo: &str, d: &str) -> std::path::PathBuf {
    let hex = d.strip_prefix("sha256:").unwrap();
    data.join("repos")
        .join(repo)
        .join("_links/sha256")
        .join(hex)
}

fn manifest_for(config: (&str, usize), layers: &[(&str, usize)]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OCI_MANIFEST,
        "config": {"mediaType": MediaType::OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, n)| json!({
            "mediaType": MediaType::OCI_LAYER_TAR, "digest": d, "size": n
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// The sequence the issue measured broken: a push finds old, unreferenced blobs present
/// (one by HEAD in its own repository, one by mounting from another), gc runs with the
/// default grace, then the manifest arrives — and is accepted and stays intact.
#[tokio::test]
async fn mount_old_blob_then_gc_then_manifest_put() {
    let reg = start().await;
    let data = reg.registry.storage().local_root().unwrap().to_path_buf();
    let storage = reg.registry.storage();
    let two_hours = Duration::from_secs(7200);
    let layer = common::random_bytes(5000, 11);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let orphan = common::random_bytes(700, 12);
    let l = reg.push_blob("old/base", &layer).await;
    let c = reg.push_blob("app", &config).await;
    let o = reg.push_blob("app", &orphan).await;
    for (repo, d) in [("old/base", &l), ("app", &c), ("app", &o)] {
        let digest = Digest::parse(d).unwrap();
        backdate(
            &storage
                .local_root()
                .unwrap()
                .join(gantry::registry::Storage::blob_key(&digest)),
            two_hours,
        );
        backdate(&link(&data, repo, d), two_hours);
    }
    // The push: HEAD finds the config, the layer is mounted from old/base.
    let r = reg
        .req(Method::HEAD, &format!("/v2/app/blobs/{c}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = reg
        .req(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?mount={l}&from=old/base"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // gc with the default grace (1 h) runs before the manifest arrives.
    let report = gc::collect(storage, &GcOptions::default()).await.unwrap();
    let deleted: Vec<String> = report.blobs_deleted.iter().map(|d| d.to_string()).collect();
    assert_eq!(deleted, vec![o.clone()], "only the untouched orphan goes");
    let m = manifest_for((&c, config.len()), &[(&l, layer.len())]);
    let r = reg
        .put_manifest("app", "v1", MediaType::OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Later collections keep the tagged image whole.
    gc::collect(storage, &GcOptions::default()).await.unwrap();
    let zero = GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    };
    gc::collect(storage, &zero).await.unwrap();
    for (d, bytes) in [(&c, &config), (&l, &layer)] {
        let r = reg
            .req(Method::GET, &format!("/v2/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{d}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[..]);
    }
}

/// Staging files of dead requests are removed by gc; fresh ones (a write in progress)
/// are not.
#[tokio::test]
async fn gc_removes_dead_staging_files() {
    // No server: its start-up sweep would race with this test's files.
    let dir = tempfile::tempdir().unwrap();
    let storage = &gantry::registry::Storage::open(dir.path()).unwrap();
    let tmp = storage.local_root().unwrap().join("tmp");
    let dead = tmp.join("dead-upload");
    let live = tmp.join("live-upload");
    std::fs::write(&dead, b"half a blob").unwrap();
    std::fs::write(&live, b"being written").unwrap();
    backdate(&dead, Duration::from_secs(3600));
    let report = gc::collect(storage, &GcOptions::default()).await.unwrap();
    assert_eq!(report.tmp_removed, 1);
    assert!(!dead.exists());
    assert!(live.exists());
}

/// One push as a client does it: for each blob HEAD, else mount from `pool`, else
/// upload; then the manifest. Returns the manifest status and when the first blob was
/// found or sent.
struct Pusher {
    http: reqwest::Client,
    base: String,
}

impl Pusher {
    async fn ensure_blob(&self, repo: &str, bytes: &[u8], pool: Option<&str>) -> String {
        let d = Digest::sha256(bytes).to_string();
        let r = self
            .http
            .head(format!("{}/v2/{repo}/blobs/{d}", self.base))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            return d;
        }
        if let Some(from) = pool {
            let r = self
                .http
                .post(format!(
                    "{}/v2/{repo}/blobs/uploads/?mount={d}&from={from}",
                    self.base
                ))
                .send()
                .await
                .unwrap();
            if r.status() == StatusCode::CREATED {
                return d;
            }
        }
        let r = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", self.base))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        d
    }
}

/// Three pushers of fresh images (each with a fresh layer and a layer from a small shared
/// pool, found by HEAD or mounted across repositories; half of them under tags that get
/// overwritten, so their blobs become garbage while others re-use them) and
/// `gantry registry gc` in a loop from another process, for ~20 s
/// (`GANTRY_GC_STRESS_SECS`). Then every acknowledged image that is still tagged pulls
/// back intact, and no push whose manifest came within the grace period was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_in_a_loop_beside_three_pushers_breaks_nothing() {
    let server = GantryServer::registry(&[]);
    let data = server.data.clone();
    stress(&format!("http://{}", server.addr), move || {
        let mut c = std::process::Command::new(common::gantry_bin());
        c.args(["registry", "gc", "--json", "--grace", "3s", "--data-dir"])
            .arg(&data);
        c
    })
    .await;
}

/// The stress run against the registry at `base`; `gc` makes one `gantry registry gc
/// --json --grace 3s` command on its storage (run back to back from another process).
pub(crate) async fn stress(base: &str, gc: impl Fn() -> std::process::Command + Send + 'static) {
    let secs: u64 = std::env::var("GANTRY_GC_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let grace = Duration::from_secs(3);
    let base = base.to_string();
    let stop = Arc::new(AtomicBool::new(false));

    // gc back to back, from another process.
    let gc_loop = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut runs, mut deleted) = (0usize, 0usize);
            while !stop.load(Ordering::SeqCst) {
                let out = common::run(&mut gc());
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                deleted += v["blobs_deleted"].as_array().unwrap().len();
                runs += 1;
            }
            (runs, deleted)
        })
    };

    let deadline = Instant::now() + Duration::from_secs(secs);
    let refused_in_grace = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for p in 0..3u64 {
        let base = base.clone();
        let refused_in_grace = refused_in_grace.clone();
        tasks.push(tokio::spawn(async move {
            let pusher = Pusher {
                http: reqwest::Client::new(),
                base,
            };
            let repo = format!("stress/p{p}");
            let pool_from = format!("stress/p{}", (p + 1) % 3);
            // (tag, manifest digest, manifest bytes) of every acknowledged push.
            let mut acked: Vec<(String, String)> = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let fresh = common::random_bytes(2000 + (i as usize % 7) * 100, p * 1_000_000 + i);
                let shared = common::random_bytes(1500, 9_000_000 + (i % 5));
                let config = format!(r#"{{"os":"linux","architecture":"amd64","p":{p},"i":{i}}}"#)
                    .into_bytes();
                let t0 = Instant::now();
                let s = pusher.ensure_blob(&repo, &shared, Some(&pool_from)).await;
                let f = pusher.ensure_blob(&repo, &fresh, None).await;
                let c = pusher.ensure_blob(&repo, &config, None).await;
                // A client thinking between its blobs and its manifest.
                tokio::time::sleep(Duration::from_millis(i % 4 * 100)).await;
                let m = manifest_for((&c, config.len()), &[(&s, shared.len()), (&f, fresh.len())]);
                let tag = if i.is_multiple_of(2) {
                    format!("keep-{i}")
                } else {
                    format!("rot-{}", i % 3)
                };
                let r = pusher
                    .http
                    .put(format!("{}/v2/{repo}/manifests/{tag}", pusher.base))
                    .header("Content-Type", MediaType::OCI_MANIFEST)
                    .body(m.clone())
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                if status == StatusCode::CREATED {
                    acked.retain(|(t, _)| *t != tag);
                    acked.push((tag, Digest::sha256(&m).to_string()));
                } else if t0.elapsed() < grace {
                    let body = r.text().await.unwrap_or_default();
                    eprintln!("refused within the grace period: {status} {body}");
                    refused_in_grace.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
            (repo, acked, i)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let (runs, deleted) = gc_loop.join().unwrap();

    // Every image still tagged pulls back whole.
    let http = reqwest::Client::new();
    let (mut pushes, mut checked, mut broken) = (0u64, 0usize, Vec::new());
    for (repo, acked, n) in &results {
        pushes += n;
        for (tag, digest) in acked {
            checked += 1;
            let r = http
                .get(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("Accept", MediaType::OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            if r.status() != StatusCode::OK {
                broken.push(format!("{repo}:{tag} manifest {}", r.status()));
                continue;
            }
            let bytes = r.bytes().await.unwrap();
            assert_eq!(Digest::sha256(&bytes).to_string(), *digest);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let mut blobs = vec![v["config"]["digest"].as_str().unwrap().to_string()];
            for l in v["layers"].as_array().unwrap() {
                blobs.push(l["digest"].as_str().unwrap().to_string());
            }
            for b in blobs {
                let r = http
                    .get(format!("{base}/v2/{repo}/blobs/{b}"))
                    .send()
                    .await
                    .unwrap();
                let ok = r.status() == StatusCode::OK
                    && Digest::sha256(&r.bytes().await.unwrap()).to_string() == b;
                if !ok {
                    broken.push(format!("{repo}:{tag} blob {b}"));
                }
            }
        }
    }
    eprintln!(
        "gc stress: {pushes} pushes, {checked} tagged images checked, {} broken, {runs} gc runs deleted {deleted} blobs, {} refused within grace",
        broken.len(),
        refused_in_grace.load(Ordering::SeqCst)
    );
    assert!(broken.is_empty(), "broken: {broken:?}");
    assert_eq!(refused_in_grace.load(Ordering::SeqCst), 0);
    assert!(runs >= 3, "gc ran {runs} times");
    assert!(deleted > 0, "gc must have collected the overwritten images");
    assert!(checked >= 10, "only {checked} images");
}
