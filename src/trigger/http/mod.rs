//! The HTTP side of `gantry serve`: the router, its one error type, and the page's
//! protection. Webhook intake is in [`intake`], the page and JSON API in [`web`].
//!
//! Hooks authenticate with their trigger's token; everything else (`/`, `/executions/…`,
//! `/api/*`, build logs) needs Basic credentials from the `web: {htpasswd: FILE}` file when
//! that section is configured (401 otherwise). Internal details go to the log, not to the
//! client.

pub mod intake;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use super::{Service, TriggerError};

pub use intake::BODY_LIMIT;

/// The one error type of the HTTP side.
pub(crate) struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<TriggerError> for ApiError {
    fn from(e: TriggerError) -> Self {
        match e {
            TriggerError::Malformed(_) | TriggerError::Rejected(_) => {
                ApiError(StatusCode::BAD_REQUEST, e.to_string())
            }
            TriggerError::UnknownTrigger(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            other => {
                tracing::error!("{other}");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        }
    }
}

pub fn router(svc: Arc<Service>) -> Router {
    let pages = web::routes().route_layer(middleware::from_fn_with_state(
        svc.clone(),
        require_credentials,
    ));
    intake::routes()
        .merge(pages)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(log_request))
        .with_state(svc)
}

/// One line per request (never headers or query strings: they carry secrets).
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = super::payload::printable(req.uri().path());
    let resp = next.run(req).await;
    tracing::info!("request {method} {path} {}", resp.status().as_u16());
    resp
}

/// With a `web:` section: Basic credentials checked against its htpasswd file.
async fn require_credentials(
    State(svc): State<Arc<Service>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(web) = &svc.config.web else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let ok = match given {
        Some((user, password)) => {
            let h = web.htpasswd.clone();
            // bcrypt blocks: off the async workers.
            tokio::task::spawn_blocking(move || h.verify(&user, &password))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"gantry\"")],
            axum::Json(json!({ "error": "credentials required" })),
        )
            .into_response()
    }
}

/// Without a `web:` section anyone who reaches the port reads the page, the API and build
/// logs: say so when that is more than this machine.
pub fn warn_if_open(svc: &Service, addr: std::net::SocketAddr) {
    if svc.config.web.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            "the executions page, /api/* and build logs on {addr} need no credentials: add \
             `web: {{htpasswd: FILE}}` to {} to protect them",
            svc.config.path.display()
        );
    }
}
