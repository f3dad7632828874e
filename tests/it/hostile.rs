//! A deliberately hostile registry (issue 16): each repository name selects a way of
//! misbehaving — sizes that would abort an allocator, an endless manifest, a `Link` that
//! loops, a redirect or upload `Location` to a second listener that records whether our
//! credentials arrived, a blob whose bytes do not match its digest, a blob served at one
//! byte per second. gantry must fail each one with exit 1 and one line on stderr, under
//! 256 MiB peak RSS, never a panic (101), an abort (134) or a hang.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gantry::oci::{Digest, MediaType};
use serde_json::json;

use crate::common::{self, image};

/// What the second listener saw: the Authorization header of each request (or none).
type Seen = Arc<Mutex<Vec<Option<String>>>>;

struct Hostile {
    addr: SocketAddr,
    second: SocketAddr,
    seen: Seen,
}

struct St {
    second: SocketAddr,
}

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
const LAYER: &[u8] = b"these are the layer's real bytes, all 48 of them";

fn manifest(config_size: u64, layer: &[u8], layer_size: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(CONFIG).to_string(), "size": config_size},
        "layers": [{"mediaType": MediaType::OCI_LAYER_TAR,
                    "digest": Digest::sha256(layer).to_string(), "size": layer_size}],
    }))
    .unwrap()
}

fn manifest_response(bytes: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, MediaType::OCI_MANIFEST)],
        Body::from(bytes),
    )
        .into_response()
}

fn needs_auth(req: &Request) -> Option<Response> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return None;
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"hostile\"")],
        )
            .into_response(),
    )
}

async fn hostile(State(st): State<Arc<St>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/v2/" {
        return StatusCode::OK.into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let repo = rest.split('/').next().unwrap_or("");
    let is_manifest = rest.contains("/manifests/");
    let blob = rest
        .split_once("/blobs/")
        .map(|(_, d)| d.to_string())
        .filter(|d| d.starts_with("sha256:"));
    let second = st.second;
    match repo {
        // A manifest whose config claims a petabyte and whose layer claims u64::MAX.
        "huge" if is_manifest => manifest_response(manifest(1 << 50, LAYER, u64::MAX)),
        // A manifest body that never ends.
        "endless" if is_manifest => {
            let chunk = bytes::Bytes::from(vec![b' '; 64 << 10]);
            let s =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            manifest_response_stream(Body::from_stream(s))
        }
        // Every page of tags says the next page is the same page.
        "loop" if rest.ends_with("/tags/list") => (
            [(
                header::LINK,
                HeaderValue::from_static("</v2/loop/tags/list?last=a&n=1>; rel=\"next\""),
            )],
            axum::Json(json!({"name": "loop", "tags": ["a"]})),
        )
            .into_response(),
        // After authenticating, the manifest lives "elsewhere".
        "redirect" if is_manifest => {
            if let Some(r) = needs_auth(&req) {
                return r;
            }
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(
                    header::LOCATION,
                    format!("http://{second}/v2/redirect/manifests/v1"),
                )],
            )
                .into_response()
        }
        // Uploads go "elsewhere": the Location points at the second listener.
        "location" => {
            if let Some(r) = needs_auth(&req) {
                return r;
            }
            if rest.contains("/blobs/uploads/") {
                (
                    StatusCode::ACCEPTED,
                    [(header::LOCATION, format!("http://{second}/upload/1"))],
                )
                    .into_response()
            } else {
                StatusCode::NOT_FOUND.into_response()
            }
        }
        // The layer's bytes do not match its digest (same length).
        "badblob" if is_manifest => {
            manifest_response(manifest(CONFIG.len() as u64, LAYER, LAYER.len() as u64))
        }
        "badblob" if blob.is_some() => {
            if blob.as_deref() == Some(Digest::sha256(CONFIG).to_string().as_str()) {
                Body::from(CONFIG).into_response()
            } else {
                let mut bad = LAYER.to_vec();
                bad[0] ^= 1;
                Body::from(bad).into_response()
            }
        }
        // The layer arrives one byte per second.
        "slow" if is_manifest => {
            manifest_response(manifest(CONFIG.len() as u64, LAYER, LAYER.len() as u64))
        }
        "slow" if blob.is_some() => {
            if blob.as_deref() == Some(Digest::sha256(CONFIG).to_string().as_str()) {
                return Body::from(CONFIG).into_response();
            }
            let s = futures_util::stream::unfold(0usize, |i| async move {
                if i >= LAYER.len() {
                    return None;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(&LAYER[i..=i])),
                    i + 1,
                ))
            });
            Body::from_stream(s).into_response()
        }
        // Other blobs are served honestly.
        _ if blob.as_deref() == Some(Digest::sha256(CONFIG).to_string().as_str()) => {
            Body::from(CONFIG).into_response()
        }
        _ if blob.as_deref() == Some(Digest::sha256(LAYER).to_string().as_str()) => {
            Body::from(LAYER).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn manifest_response_stream(body: Body) -> Response {
    ([(header::CONTENT_TYPE, MediaType::OCI_MANIFEST)], body).into_response()
}

async fn second(State(seen): State<Seen>, req: Request) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    seen.lock().unwrap().push(auth);
    StatusCode::FORBIDDEN.into_response()
}

impl Hostile {
    /// Both listeners bound before the thread starts (port 0, no race).
    fn start() -> Hostile {
        let l1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (addr, second_addr) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
        l1.set_nonblocking(true).unwrap();
        l2.set_nonblocking(true).unwrap();
        let seen: Seen = Arc::default();
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app1 = axum::Router::new()
                    .fallback(hostile)
                    .with_state(Arc::new(St {
                        second: second_addr,
                    }));
                let app2 = axum::Router::new().fallback(second).with_state(seen2);
                let l1 = tokio::net::TcpListener::from_std(l1).unwrap();
                let l2 = tokio::net::TcpListener::from_std(l2).unwrap();
                let a = axum::serve(l1, app1);
                let b = axum::serve(l2, app2);
                let _ = tokio::join!(a, b);
            });
        });
        Hostile {
            addr,
            second: second_addr,
            seen,
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }
}

/// Runs gantry under `/usr/bin/time` (peak RSS) and `timeout` (a hang fails the test);
/// returns (exit code, stderr, peak RSS in KiB).
fn gantry_measured(args: &[String]) -> (i32, String, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let rss = tmp.path().join("rss");
    let out = Command::new("timeout")
        .arg("120")
        .arg("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(common::gantry_bin())
        .args(args)
        .env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let rss_kib = std::fs::read_to_string(&rss)
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0);
    (
        code,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rss_kib,
    )
}

fn assert_fails_cleanly(args: &[String], expect: &str) -> String {
    let (code, stderr, rss) = gantry_measured(args);
    assert_ne!(code, 124, "{args:?} hung (killed by timeout)");
    assert_eq!(code, 1, "{args:?}: exit {code}, stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected, got: {stderr}");
    assert!(lines[0].contains(expect), "{args:?}: {stderr}");
    assert!(rss > 0 && rss < 256 * 1024, "{args:?}: peak RSS {rss} KiB");
    lines[0].to_string()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn huge_sizes_are_refused_not_allocated() {
    let h = Hostile::start();
    let r = format!("{}/huge:v1", h.host());
    assert_fails_cleanly(&s(&["image", "inspect", &r]), "over the limit");
    // A copy of the layer claiming u64::MAX bytes: refused, nothing lands.
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("dst");
    let src = format!("docker://{r}");
    assert_fails_cleanly(
        &s(&[
            "image",
            "copy",
            "-q",
            &src,
            &format!("oci:{}:v1", dst.display()),
        ]),
        "digest mismatch",
    );
    nothing_landed(&dst, &Digest::sha256(LAYER));
}

#[test]
fn an_endless_manifest_stops_at_the_limit() {
    let h = Hostile::start();
    let r = format!("{}/endless:v1", h.host());
    assert_fails_cleanly(&s(&["image", "inspect", &r]), "over the limit of 4194304");
}

#[test]
fn a_self_referencing_link_ends_the_listing() {
    let h = Hostile::start();
    let r = format!("{}/loop", h.host());
    assert_fails_cleanly(&s(&["image", "ls", &r]), "already read");
}

#[test]
fn credentials_never_reach_another_host() {
    let h = Hostile::start();
    // A redirect on a manifest GET.
    let r = format!("{}/redirect:v1", h.host());
    assert_fails_cleanly(
        &s(&["image", "inspect", "--creds", "alice:secret", &r]),
        "403",
    );
    // An upload Location pointing elsewhere.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    image::single_image_layout(&src, "v1", &[common::random_bytes(100, 7)]);
    let dst = format!("{}/location:v1", h.host());
    assert_fails_cleanly(
        &s(&[
            "image",
            "copy",
            "--creds",
            "alice:secret",
            &format!("oci:{}:v1", src.display()),
            &dst,
        ]),
        "403",
    );
    let seen = h.seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "the second listener was reached: {seen:?}");
    assert!(
        seen.iter().all(Option::is_none),
        "credentials reached {}: {seen:?}",
        h.second
    );
}

fn nothing_landed(layout: &Path, bad: &Digest) {
    let blobs = layout.join("blobs/sha256");
    let names: Vec<String> = std::fs::read_dir(&blobs)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !names
            .iter()
            .any(|n| n == bad.hex() || n.starts_with(".tmp")),
        "left in {}: {names:?}",
        blobs.display()
    );
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap_or_default();
    assert!(!index.contains("\"v1\""), "the tag landed: {index}");
}

#[test]
fn a_blob_that_does_not_match_its_digest_lands_nowhere() {
    let h = Hostile::start();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("dst");
    let src = format!("docker://{}/badblob:v1", h.host());
    assert_fails_cleanly(
        &s(&[
            "image",
            "copy",
            "-q",
            &src,
            &format!("oci:{}:v1", dst.display()),
        ]),
        "digest mismatch",
    );
    nothing_landed(&dst, &Digest::sha256(LAYER));
}

#[test]
fn a_blob_served_at_one_byte_per_second_is_cut_off() {
    let h = Hostile::start();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("dst");
    let src = format!("docker://{}/slow:v1", h.host());
    assert_fails_cleanly(
        &s(&[
            "image",
            "copy",
            "-q",
            // The cut-off is 20 s by default; 2 s proves the same at one byte per second.
            "--low-speed-time",
            "2",
            &src,
            &format!("oci:{}:v1", dst.display()),
        ]),
        "stalled",
    );
    nothing_landed(&dst, &Digest::sha256(LAYER));
}
