//! HTTP handlers. `dispatch` parses the path, works out the access a request needs, asks
//! `auth`, refuses writes on a read-only registry, then calls one handler per endpoint.
//! Handlers translate storage results to spec responses; they hold no state.

mod blobs;
mod manifests;
mod tags;
mod uploads;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Inner;
use super::auth::Access;
use super::error::{Code, RegistryError, Result};
use super::path::{self, Route};
use super::storage::StorageError;

pub(crate) type Reg = Arc<Inner>;

/// The query string of a request, decoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `scheme://host` of the request, for absolute URLs (token realm).
fn base_url(reg: &Inner, req: &Request) -> String {
    let scheme = if reg.tls.is_some() { "https" } else { "http" };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(String::from)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}")
}

/// What a request needs from auth (scope.md actions).
fn needs(route: &Route, method: &Method) -> Vec<Access> {
    let repo = match route {
        Route::Base => return vec![],
        Route::Catalog => return vec![Access::catalog()],
        other => other.repository().unwrap_or_default(),
    };
    let read = *method == Method::GET || *method == Method::HEAD;
    let actions: &[&str] = match route {
        Route::UploadStart { .. } | Route::Upload { .. } => &["pull", "push"],
        _ if read => &["pull"],
        _ if *method == Method::DELETE => &["delete"],
        _ => &["pull", "push"],
    };
    vec![Access::repository(repo, actions)]
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The one entry point for `/v2/...`.
pub(crate) async fn dispatch(State(reg): State<Reg>, req: Request) -> Response {
    match dispatch_inner(reg, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch_inner(reg: Reg, req: Request) -> Result<Response> {
    let rest = req
        .uri()
        .path()
        .strip_prefix("/v2")
        .unwrap_or("")
        .to_string();
    let method = req.method().clone();
    let route = match path::parse(&rest) {
        // Conformance suites and clients expect a pull by a tag that cannot exist to be
        // "unknown", not "invalid"; a PUT by an invalid tag still answers TAG_INVALID.
        Err(e) if e.code == Code::TagInvalid && matches!(method, Method::GET | Method::HEAD) => {
            return Err(RegistryError::new(Code::ManifestUnknown, e.message));
        }
        r => r?,
    };
    let query = Query(super::auth::query_pairs(req.uri().query().unwrap_or("")));
    let base = base_url(&reg, &req);
    let identity = reg
        .auth
        .authorize(req.headers(), &needs(&route, &method), &base)
        .await?;
    let mut resp = route_request(reg, req, route, method, query, base)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if let super::Identity::User(name) = identity {
        resp.extensions_mut().insert(super::User(name));
    }
    Ok(resp)
}

async fn route_request(
    reg: Reg,
    req: Request,
    route: Route,
    method: Method,
    query: Query,
    base: String,
) -> Result<Response> {
    if reg.read_only && is_write(&method) {
        return Err(RegistryError::new(
            Code::Unsupported,
            "the registry is read-only",
        ));
    }
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let unsupported = || {
        Err(RegistryError::new(
            Code::Unsupported,
            format!("{method} is not supported on this endpoint"),
        ))
    };
    match route {
        Route::Base => match method {
            Method::GET | Method::HEAD => Ok(Json(serde_json::json!({})).into_response()),
            _ => unsupported(),
        },
        Route::Catalog => match method {
            Method::GET => tags::catalog(&reg, &query).await,
            _ => unsupported(),
        },
        Route::Tags { name } => match method {
            Method::GET => tags::list(&reg, &name, &query).await,
            _ => unsupported(),
        },
        Route::Referrers { name, digest } => match method {
            Method::GET => tags::referrers(&reg, &name, &digest, &query).await,
            _ => unsupported(),
        },
        Route::Manifest { name, reference } => match method {
            Method::GET => manifests::get(&reg, &name, &reference, false, &headers).await,
            Method::HEAD => manifests::get(&reg, &name, &reference, true, &headers).await,
            Method::PUT => manifests::put(&reg, &name, &reference, &headers, body).await,
            Method::DELETE => manifests::delete(&reg, &name, &reference).await,
            _ => unsupported(),
        },
        Route::Blob { name, digest } => match method {
            Method::GET => blobs::get(&reg, &name, &digest, &headers, false).await,
            Method::HEAD => blobs::get(&reg, &name, &digest, &headers, true).await,
            Method::DELETE => blobs::delete(&reg, &name, &digest).await,
            _ => unsupported(),
        },
        Route::UploadStart { name } => match method {
            Method::POST => uploads::start(&reg, &name, &query, &headers, &base, body).await,
            _ => unsupported(),
        },
        Route::Upload { name, id } => match method {
            Method::GET => uploads::status(&reg, &name, &id).await,
            Method::PATCH => uploads::patch(&reg, &name, &id, &headers, body).await,
            Method::PUT => uploads::put(&reg, &name, &id, &query, &headers, body).await,
            Method::DELETE => uploads::cancel(&reg, &name, &id).await,
            _ => unsupported(),
        },
    }
}

/// `GET /token`: the Docker token endpoint.
pub(crate) async fn token(State(reg): State<Reg>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("").to_string();
    match reg.auth.token(req.headers(), &query).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn not_found() -> Response {
    RegistryError::new(Code::NameUnknown, "no such endpoint")
        .with_status(StatusCode::NOT_FOUND)
        .into_response()
}

pub(crate) fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Maps storage failures to spec errors.
pub(crate) fn storage_err(e: StorageError) -> RegistryError {
    match e {
        StorageError::UploadUnknown(id) => {
            RegistryError::new(Code::BlobUploadUnknown, format!("upload {id} not found"))
        }
        StorageError::DigestMismatch { expected, actual } => RegistryError::new(
            Code::DigestInvalid,
            format!("digest mismatch: expected {expected}, content is {actual}"),
        ),
        StorageError::RangeMismatch { offset, got } => RegistryError::new(
            Code::BlobUploadInvalid,
            format!("chunk starts at {got}, expected {offset}"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE),
        StorageError::SizeMismatch { expected, actual } => RegistryError::new(
            Code::SizeInvalid,
            format!("expected {expected} bytes, got {actual}"),
        ),
        StorageError::Body(e) => RegistryError::new(
            Code::BlobUploadInvalid,
            format!("request body broke off: {e}"),
        ),
        StorageError::Busy(e) => RegistryError::new(Code::TooManyRequests, e),
        e @ (StorageError::Io { .. } | StorageError::Location(_)) => {
            RegistryError::internal("storage", e)
        }
    }
}

pub(crate) fn body_stream(
    body: Body,
) -> impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, axum::Error>> + Unpin {
    body.into_data_stream()
}
