//! The executions page and the JSON API behind it.
//!
//! - `/` and `/executions/{id}`: the page (one URL per execution);
//! - `/api/events`, `/api/events/{id}`, `POST /api/events/{id}/replay` (the page's replay
//!   button; it must carry `X-Requested-With`, which a cross-site form cannot send);
//! - `/api/executions`, `/api/executions/{id}` (with `jobs`: the pipeline's jobs, so the page
//!   lists those not started yet);
//! - `/api/executions/{id}/logs/{uuid}`: a build's log; with `?follow=1` it streams while
//!   the build runs (chunked), ending when the build has finished.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ApiError;
use crate::trigger::{BuildLog, Service};

const PAGE: &str = include_str!("../page.html");
/// How often a followed log is checked for growth (what `tail -f` does).
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// Largest piece of a log sent at once.
const CHUNK: usize = 64 * 1024;

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(page))
        .route("/executions/{id}", get(page))
        .route("/api/events", get(events))
        .route("/api/events/{id}", get(event))
        .route("/api/events/{id}/replay", post(replay))
        .route("/api/executions", get(executions))
        .route("/api/executions/{id}", get(execution))
        .route("/api/executions/{id}/logs/{uuid}", get(build_log))
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
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

async fn replay(
    State(svc): State<Arc<Service>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !headers.contains_key("x-requested-with") {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "replay needs the X-Requested-With header".into(),
        ));
    }
    if !svc.log.replay(id).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no event {id}")));
    }
    svc.wake.notify_one();
    tracing::info!("event {id}: replay requested from the page");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "outcome": "replay requested", "event": id })),
    )
        .into_response())
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
    let Some(x) = svc.log.execution(&id).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no execution {id}"),
        ));
    };
    let jobs = svc
        .config
        .triggers
        .get(&x.trigger)
        .map(|t| t.jobs.clone())
        .unwrap_or_default();
    let mut v = serde_json::to_value(&x).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("jobs".into(), json!(jobs));
    }
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(v)).into_response())
}

#[derive(serde::Deserialize)]
struct Follow {
    follow: Option<String>,
}

/// A build's log, found through the execution's record ([`Service::build_log`]).
async fn build_log(
    State(svc): State<Arc<Service>>,
    Path((id, uuid)): Path<(String, String)>,
    Query(f): Query<Follow>,
) -> Result<Response, ApiError> {
    let missing = || ApiError(StatusCode::NOT_FOUND, format!("no log for build {uuid}"));
    let found = svc.build_log(&id, &uuid).await?.ok_or_else(missing)?;
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    let (path, running) = match found {
        BuildLog::Stored(text) => return Ok((headers, text).into_response()),
        BuildLog::File { path, running } => (path, running),
    };
    let follow = f.follow.is_some_and(|v| v != "0") && running;
    if !follow {
        let text = tokio::fs::read(&path).await.map_err(|_| missing())?;
        return Ok((headers, text).into_response());
    }
    // Follow: send what is there, then what is appended, until the build has finished
    // and everything it wrote was sent.
    let state = FollowState {
        svc,
        id,
        uuid,
        path,
        file: None,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        st.next()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), st))
    });
    Ok((headers, Body::from_stream(stream)).into_response())
}

struct FollowState {
    svc: Arc<Service>,
    id: String,
    uuid: String,
    path: std::path::PathBuf,
    file: Option<tokio::fs::File>,
    done: bool,
}

impl FollowState {
    /// The next piece of the log; `None` once the build finished and all was sent.
    async fn next(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            if self.file.is_none() {
                self.file = tokio::fs::File::open(&self.path).await.ok();
            }
            if let Some(f) = &mut self.file {
                match f.read(&mut buf).await {
                    Ok(n) if n > 0 => {
                        buf.truncate(n);
                        return Some(buf);
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            if self.done {
                return None;
            }
            // At the end of what was written: has the build finished? If so, read once
            // more (what it wrote last) and stop.
            let running = matches!(
                self.svc.build_log(&self.id, &self.uuid).await,
                Ok(Some(BuildLog::File { running: true, .. }))
            );
            if !running {
                self.done = true;
                if let Some(f) = &mut self.file {
                    let _ = f.seek(std::io::SeekFrom::Current(0)).await;
                }
                continue;
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}
