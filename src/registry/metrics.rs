//! Operations endpoints of one registry instance: `GET /healthz` (the process answers),
//! `GET /readyz` (its storage can be reached) and `GET /metrics` (Prometheus text from
//! the `prometheus-client` crate: requests by method, route and status, bytes in and
//! out, upload sessions, gc runs and bytes freed). Labels never carry a repository name,
//! a tag or a user: a scrape cannot reveal what is stored or who pushed it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry as Prom;

use super::Inner;
use super::gc::GcReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: &'static str,
    pub status: u16,
}

/// The counters of one instance.
pub struct Metrics {
    registry: Prom,
    pub requests: Family<RequestLabels, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub uploads_started: Counter,
    pub uploads_committed: Counter,
    pub gc_runs: Counter,
    pub gc_bytes_freed: Counter,
    pub gc_blobs_deleted: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Prom::with_prefix("gantry_registry");
        let m = Metrics {
            requests: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            uploads_started: Counter::default(),
            uploads_committed: Counter::default(),
            gc_runs: Counter::default(),
            gc_bytes_freed: Counter::default(),
            gc_blobs_deleted: Counter::default(),
            registry: Prom::default(),
        };
        registry.register(
            "requests",
            "HTTP requests by method, route and status",
            m.requests.clone(),
        );
        let counters = [
            ("received_bytes", "Request body bytes received", &m.bytes_in),
            (
                "sent_bytes",
                "Response body bytes sent (declared Content-Length)",
                &m.bytes_out,
            ),
            (
                "upload_sessions_started",
                "Blob upload sessions started",
                &m.uploads_started,
            ),
            (
                "blob_uploads_committed",
                "Blob uploads committed (session PUT or monolithic POST)",
                &m.uploads_committed,
            ),
            (
                "gc_runs",
                "Garbage collections run in this process",
                &m.gc_runs,
            ),
            (
                "gc_freed_bytes",
                "Bytes freed by garbage collection in this process",
                &m.gc_bytes_freed,
            ),
            (
                "gc_deleted_blobs",
                "Blobs deleted by garbage collection in this process",
                &m.gc_blobs_deleted,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn request(&self, method: &str, path: &str, status: u16, sent: Option<u64>) {
        let route = route_label(method, path);
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route,
                status,
            })
            .inc();
        if let Some(n) = sent {
            self.bytes_out.inc_by(n);
        }
        match (route, status) {
            ("upload_start", 202) => {
                self.uploads_started.inc();
            }
            ("upload" | "upload_start", 201) => {
                self.uploads_committed.inc();
            }
            _ => {}
        }
    }

    pub fn gc(&self, report: &GcReport) {
        self.gc_runs.inc();
        self.gc_bytes_freed.inc_by(report.bytes_freed);
        self.gc_blobs_deleted
            .inc_by(report.blobs_deleted.len() as u64);
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The endpoint a path addresses, from its fixed suffix (a bounded label set; names and
/// references never become labels).
pub fn route_label(method: &str, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    match path {
        "/healthz" => return "healthz",
        "/readyz" => return "readyz",
        "/metrics" => return "metrics",
        "/token" => return "token",
        "/v2" | "/v2/" => return "base",
        "/v2/_catalog" => return "catalog",
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return "other";
    };
    let seg: Vec<&str> = rest.split('/').collect();
    let n = seg.len();
    let at = |i: usize, s: &str| n > i && seg[n - 1 - i] == s;
    if at(1, "blobs") && seg[n - 1] == "uploads" || at(2, "blobs") && at(1, "uploads") {
        if method == "POST" {
            "upload_start"
        } else {
            "upload"
        }
    } else if at(1, "blobs") {
        "blob"
    } else if at(1, "manifests") {
        "manifest"
    } else if at(1, "tags") && seg[n - 1] == "list" {
        "tags"
    } else if at(1, "referrers") {
        "referrers"
    } else {
        "other"
    }
}

pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

pub(crate) async fn readyz(State(reg): State<Arc<Inner>>) -> Response {
    match reg.storage.check().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!("readiness: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unreachable\n".to_string(),
            )
                .into_response()
        }
    }
}

pub(crate) async fn metrics(State(reg): State<Arc<Inner>>) -> Response {
    match reg.metrics.encode() {
        Ok(text) => Response::builder()
            .header(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(Body::from(text))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn routes() {
        assert_eq!(route_label("GET", "/v2/"), "base");
        assert_eq!(route_label("GET", "/v2/a/b/manifests/v1"), "manifest");
        assert_eq!(route_label("HEAD", "/v2/a/blobs/sha256:00"), "blob");
        assert_eq!(route_label("POST", "/v2/a/blobs/uploads/"), "upload_start");
        assert_eq!(route_label("PATCH", "/v2/a/blobs/uploads/x-1"), "upload");
        assert_eq!(route_label("GET", "/v2/a/tags/list?n=1"), "tags");
        assert_eq!(route_label("GET", "/v2/blobs/manifests/x"), "manifest");
        assert_eq!(route_label("GET", "/etc/passwd"), "other");
    }
}
