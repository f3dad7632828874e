//! The HTTP side of `gantry serve`: webhook intake, the JSON API and the executions page.
//!
//! Intake answers, in this order: unknown trigger (or one of another source) → 404; bad or
//! missing secret → 401 (compared in constant time); body over [`BODY_LIMIT`] → 413;
//! unexpected content type → 415; malformed payload → 400; disabled trigger → 202 with the
//! event recorded as `disabled`; otherwise the event is committed to the log and → 202.
//! Internal details go to the log, not to the sender.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::payload::{self, Push};
use super::{Service, Source, TriggerError};

/// Webhook bodies are small (Docker Hub's is ~2 KiB); 1 MiB is generous and bounds memory.
pub const BODY_LIMIT: usize = 1 << 20;

const PAGE: &str = include_str!("page.html");

/// The one error type of the HTTP side.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<TriggerError> for ApiError {
    fn from(e: TriggerError) -> Self {
        match e {
            TriggerError::Malformed(m) => ApiError(StatusCode::BAD_REQUEST, m),
            TriggerError::UnknownTrigger(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            other => {
                tracing::error!("{other}");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
        }
    }
}

pub fn router(svc: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/hooks/{source}/{trigger}", post(intake))
        .route("/api/events", get(events))
        .route("/api/events/{id}", get(event))
        .route("/api/executions", get(executions))
        .route("/api/executions/{id}", get(execution))
        .route("/api/executions/{id}/logs/{uuid}", get(build_log))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(log_request))
        .with_state(svc)
}

/// One line per request (never headers or query strings: they carry secrets).
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    tracing::info!("request {method} {path} {}", resp.status().as_u16());
    resp
}

fn secret_ok(expected: Option<&str>, given: Option<&str>) -> bool {
    match expected {
        None => true,
        Some(e) => given.is_some_and(|g| bool::from(e.as_bytes().ct_eq(g.as_bytes()))),
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn intake(
    State(svc): State<Arc<Service>>,
    Path((source, name)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no {source} trigger {name:?}"),
        )
    };
    let trigger = svc.config.triggers.get(&name).ok_or_else(not_found)?;
    let expected_source = match source.as_str() {
        "dockerhub" => Source::Dockerhub,
        "registry" => Source::Registry,
        "gitlab" => Source::Gitlab,
        _ => return Err(not_found()),
    };
    if trigger.source != expected_source {
        return Err(not_found());
    }
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let given = match trigger.source {
        Source::Gitlab => header("x-gitlab-token").map(str::to_string),
        _ => q.token.clone().or_else(|| {
            header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .map(str::to_string)
        }),
    };
    if !secret_ok(trigger.token.as_deref(), given.as_deref()) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token".into(),
        ));
    }
    let pushes: Vec<Push> = match trigger.source {
        Source::Dockerhub => vec![payload::dockerhub(&body)?],
        Source::Gitlab => vec![payload::gitlab(&body)?],
        Source::Registry => {
            if let Some(ct) = header("content-type") {
                let ct = ct.split(';').next().unwrap_or("").trim();
                if !payload::ENVELOPE_TYPES.contains(&ct) {
                    return Err(ApiError(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!("content type {ct:?}: expected a distribution events envelope"),
                    ));
                }
            }
            payload::envelope(&body)?
        }
        Source::Poll => return Err(not_found()),
    };
    let key = match trigger.source {
        Source::Gitlab => header("idempotency-key").map(str::to_string),
        _ => None,
    };
    let enabled = svc.enabled(trigger).await;
    let (state, outcome) = if enabled {
        ("pending", "")
    } else {
        ("done", "disabled")
    };
    let source_name = trigger.source.as_str();
    let announced = pushes.len();
    // Committed (on disk, or in PostgreSQL) before the 202.
    let mut ids = Vec::new();
    for p in &pushes {
        if let Some(id) = svc
            .log
            .insert(&name, source_name, p, key.as_deref(), state, outcome)
            .await?
        {
            ids.push(id);
        }
    }
    if enabled && !ids.is_empty() {
        svc.wake.notify_one();
    }
    let outcome = if !enabled {
        "disabled"
    } else if ids.is_empty() && announced > 0 {
        // Every push carried an idempotency key seen before: a redelivery.
        "duplicate delivery"
    } else if ids.is_empty() {
        "nothing to do"
    } else {
        "accepted"
    };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "outcome": outcome, "events": ids })),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<i64>,
}

async fn events(
    State(svc): State<Arc<Service>>,
    Query(l): Query<Limit>,
) -> Result<Response, ApiError> {
    let rows = svc.log.events(l.limit.unwrap_or(100)).await?;
    Ok(axum::Json(rows).into_response())
}

async fn event(State(svc): State<Arc<Service>>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    match svc.log.event(id).await? {
        Some(e) => Ok(axum::Json(e).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no event {id}"))),
    }
}

async fn executions(
    State(svc): State<Arc<Service>>,
    Query(l): Query<Limit>,
) -> Result<Response, ApiError> {
    let rows = svc.log.executions(l.limit.unwrap_or(100)).await?;
    Ok(axum::Json(rows).into_response())
}

async fn execution(
    State(svc): State<Arc<Service>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match svc.log.execution(&id).await? {
        Some(e) => Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(e)).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no execution {id}"),
        )),
    }
}

/// A build's log, found through the execution's record (never a path from the request).
async fn build_log(
    State(svc): State<Arc<Service>>,
    Path((id, uuid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let text = svc
        .build_log(&id, &uuid)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no log for build {uuid}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        assert!(secret_ok(None, None));
        assert!(secret_ok(Some("a"), Some("a")));
        assert!(!secret_ok(Some("a"), Some("b")));
        assert!(!secret_ok(Some("a"), None));
    }
}
