//! Webhook intake: `POST /hooks/{source}/{trigger}`.
//!
//! Intake answers, in this order: unknown trigger (or one of another source) → 404; bad or
//! missing secret → 401 (compared in constant time); body over [`BODY_LIMIT`] → 413;
//! unexpected content type → 415; malformed payload → 400; a name outside the distribution
//! grammar → 400, recorded as `rejected` (escaped) and nothing else happens; disabled
//! trigger → 202 with the event recorded as `disabled`; otherwise the event is committed to
//! the log and → 202.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::trigger::payload::{self, Push};
use crate::trigger::{Service, Source, TriggerError};

/// Webhook bodies are small (Docker Hub's is ~2 KiB); 1 MiB is generous and bounds memory.
pub const BODY_LIMIT: usize = 1 << 20;

pub fn routes() -> Router<Arc<Service>> {
    Router::new().route("/hooks/{source}/{trigger}", post(intake))
}

/// Every webhook trigger has a token (the configuration refuses one without); `None`
/// never matches.
fn secret_ok(expected: Option<&str>, given: Option<&str>) -> bool {
    match (expected, given) {
        (Some(e), Some(g)) => bool::from(e.as_bytes().ct_eq(g.as_bytes())),
        _ => false,
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
    // Names are checked before anything else happens; a bad one is recorded, escaped.
    // Without an endpoint, a notification's own digest is needed: gantry never asks a
    // host named by a payload.
    let check = |p: &Push| {
        payload::validate(p)?;
        if trigger.source == Source::Registry && trigger.endpoint.is_none() && p.digest.is_none() {
            return Err(TriggerError::Rejected(
                "a push without a digest needs the trigger's `endpoint`".into(),
            ));
        }
        Ok(())
    };
    if let Some(err) = pushes.iter().find_map(|p| check(p).err()) {
        let recorded: Vec<Push> = pushes.iter().map(payload::printable_push).collect();
        let reason = err.to_string();
        let source_name = trigger.source.as_str();
        for p in &recorded {
            svc.log
                .insert(&name, source_name, p, None, "done", &reason)
                .await?;
        }
        return Err(err.into());
    }
    let key = match trigger.source {
        Source::Gitlab => header("idempotency-key").map(str::to_string),
        _ => None,
    };
    let source_name = trigger.source.as_str();
    let announced = pushes.len();
    // Committed (on disk, or in PostgreSQL) before the 202; the pushes of one payload are
    // queued together, so they share a commit. The insert reads the enable switch itself.
    let inserts = pushes.iter().map(|p| {
        svc.log
            .insert_accepted(&name, source_name, p, key.as_deref(), trigger.enabled)
    });
    let recorded: Vec<(i64, bool)> = futures_util::future::try_join_all(inserts)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let ids: Vec<i64> = recorded.iter().map(|(id, _)| *id).collect();
    let pending = recorded.iter().any(|(_, pending)| *pending);
    if pending {
        svc.wake.notify_one();
    }
    let outcome = if !recorded.is_empty() && !pending {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        assert!(!secret_ok(None, None));
        assert!(!secret_ok(None, Some("a")));
        assert!(secret_ok(Some("a"), Some("a")));
        assert!(!secret_ok(Some("a"), Some("b")));
        assert!(!secret_ok(Some("a"), None));
    }
}
