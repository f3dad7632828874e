//! Operating `gantry registry serve`: `/healthz`, `/readyz`, `/metrics` (parsed with a
//! Prometheus text parser), the request log (remote address, authenticated user), and
//! the conformance answers for invalid tags and out-of-order final chunks.

use gantry::oci::Digest;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{self, GantryServer};
use crate::registry_spec::start;

async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pull_by_invalid_tag_is_manifest_unknown() {
    let reg = start().await;
    for m in [Method::GET, Method::HEAD] {
        let r = reg
            .req(m.clone(), "/v2/app/manifests/-not-a-tag")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{m}");
        if m == Method::GET {
            assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
        }
    }
    // A push by an invalid tag is still refused as invalid.
    let r = reg
        .req(Method::PUT, "/v2/app/manifests/-not-a-tag")
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "TAG_INVALID");
}

#[tokio::test]
async fn final_put_with_out_of_order_chunk_is_416_with_range() {
    let reg = start().await;
    let data = common::random_bytes(3000, 7);
    let d = Digest::sha256(&data);
    let r = reg
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = reg
        .req(Method::PATCH, &loc)
        .header("Content-Range", "0-999")
        .body(data[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The final chunk claims to start at 2000: 416, and where the session stands.
    let r = reg
        .req(Method::PUT, &format!("{loc}?digest={d}"))
        .header("Content-Range", "2000-2999")
        .body(data[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["range"], "0-999");
    assert_eq!(r.headers()["location"].to_str().unwrap(), loc);
    // The session is intact: the right chunks finish it.
    let r = reg
        .req(Method::PATCH, &loc)
        .header("Content-Range", "1000-1999")
        .body(data[1000..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg
        .req(Method::PUT, &format!("{loc}?digest={d}"))
        .header("Content-Range", "2000-2999")
        .body(data[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = reg
        .req(Method::GET, &format!("/v2/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
}

/// The value of the sample of `name` whose labels include every pair of `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

async fn scrape(reg: &crate::registry_spec::Reg) -> prometheus_parse::Scrape {
    let r = reg.req(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap()
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let reg = start().await;
    let r = reg.req(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = reg.req(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let (_, manifest) = reg.push_image("team/app", "v1", 3).await;
    let r = reg
        .req(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap();
    let r = reg
        .req(Method::GET, "/v2/team/app/manifests/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let s = scrape(&reg).await;
    let req = "gantry_registry_requests_total";
    assert_eq!(
        sample(
            &s,
            req,
            &[("method", "PUT"), ("route", "manifest"), ("status", "201")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &s,
            req,
            &[("method", "GET"), ("route", "manifest"), ("status", "200")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &s,
            req,
            &[("method", "GET"), ("route", "manifest"), ("status", "404")]
        ),
        Some(1.0)
    );
    // Two monolithic blob pushes committed; a layer of 1000 bytes, a config and a
    // manifest went in; the manifest came back out.
    assert_eq!(
        sample(&s, "gantry_registry_blob_uploads_committed_total", &[]),
        Some(2.0)
    );
    let received = sample(&s, "gantry_registry_received_bytes_total", &[]).unwrap();
    assert!(received >= (1000 + manifest.len()) as f64, "{received}");
    let sent = sample(&s, "gantry_registry_sent_bytes_total", &[]).unwrap();
    assert!(sent >= manifest.len() as f64, "{sent}");
    assert_eq!(sample(&s, "gantry_registry_gc_runs_total", &[]), Some(0.0));
    // No repository name or tag in any label.
    for smp in &s.samples {
        for (_, v) in smp.labels.iter() {
            assert!(!v.contains("team") && !v.contains("v1"), "{smp:?}");
        }
    }
}

#[tokio::test]
async fn request_log_names_remote_address_and_user() {
    let tmp = tempfile::tempdir().unwrap();
    let hp = tmp.path().join("htpasswd");
    let line = gantry::registry::auth::htpasswd::entry("zuul", "pw-123", 4).unwrap();
    std::fs::write(&hp, format!("{line}\n")).unwrap();
    let s = GantryServer::registry(&["--htpasswd", hp.to_str().unwrap()]);
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/v2/_catalog", s.host()))
        .basic_auth("zuul", Some("pw-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(format!("http://{}/v2/", s.host()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let log = s.requests();
    let ok = log
        .iter()
        .find(|l| l.starts_with("GET /v2/_catalog 200"))
        .unwrap_or_else(|| panic!("{log:?}"));
    assert!(ok.contains(" remote=127.0.0.1:"), "{ok}");
    assert!(ok.ends_with(" user=zuul"), "{ok}");
    let denied = log
        .iter()
        .find(|l| l.starts_with("GET /v2/ 401"))
        .unwrap_or_else(|| panic!("{log:?}"));
    assert!(denied.ends_with(" user=-"), "{denied}");
    // Never the password.
    let all = std::fs::read_to_string(&s.log).unwrap();
    assert!(!all.contains("pw-123"));
}
