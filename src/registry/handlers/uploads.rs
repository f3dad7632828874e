//! Blob uploads (spec.md "Pushing blobs"): POST starts a session (or pushes a whole blob
//! with `?digest=`, or mounts with `?mount=&from=`), PATCH appends in order, PUT commits
//! with `?digest=`, GET reports progress, DELETE cancels.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Query, Reg, body_stream, hv, storage_err};
use crate::oci::{Digest, validate_repository};
use crate::registry::auth::Access;
use crate::registry::error::{Code, RegistryError, Result};
use crate::registry::storage::{StorageError, UploadStatus};

fn digest_param(query: &Query) -> Result<Option<Digest>> {
    query
        .get("digest")
        .map(|d| {
            Digest::parse(d).map_err(|e| RegistryError::new(Code::DigestInvalid, e.to_string()))
        })
        .transpose()
}

/// `Range: 0-<last byte>`; distribution reports `0-0` for an empty session.
fn range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn accepted(name: &str, st: &UploadStatus, status: StatusCode) -> Response {
    (
        status,
        [
            (
                header::LOCATION,
                hv(&format!("/v2/{name}/blobs/uploads/{}", st.id)),
            ),
            (header::RANGE, hv(&range(st.offset))),
            (header::CONTENT_LENGTH, hv("0")),
            (
                header::HeaderName::from_static("docker-upload-uuid"),
                hv(&st.id),
            ),
        ],
    )
        .into_response()
}

fn created(name: &str, digest: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, hv(&format!("/v2/{name}/blobs/{digest}"))),
            (header::CONTENT_LENGTH, hv("0")),
            (
                header::HeaderName::from_static("docker-content-digest"),
                hv(&digest.to_string()),
            ),
        ],
    )
        .into_response()
}

pub(super) async fn start(
    reg: &Reg,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
    base: &str,
    body: Body,
) -> Result<Response> {
    if let Some(mount) = query.get("mount") {
        let digest = Digest::parse(mount)
            .map_err(|e| RegistryError::new(Code::DigestInvalid, e.to_string()))?;
        if let Some(from) = query.get("from")
            && validate_repository(from).is_ok()
            // The caller must be allowed to pull from the source; otherwise fall back to
            // a plain upload, as the spec says for any mount that cannot be done.
            && reg.auth.authorize(headers, &[Access::repository(from, &["pull"])], base).await.is_ok()
        {
            // The mounted blob, however old, is stamped as referenced now and fenced
            // against a running gc (storage/sweep.rs).
            if reg
                .storage
                .reference_blob(from, &digest)
                .await
                .map_err(storage_err)?
                .is_some()
            {
                reg.storage
                    .link_blob(name, &digest)
                    .await
                    .map_err(storage_err)?;
                return Ok(created(name, &digest));
            }
        }
        let st = reg.storage.upload_start(name).await.map_err(storage_err)?;
        return Ok(accepted(name, &st, StatusCode::ACCEPTED));
    }
    if let Some(digest) = digest_param(query)? {
        // Monolithic upload: the whole blob is the body of the POST.
        reg.storage
            .put_blob_stream(name, &digest, body_stream(body))
            .await
            .map_err(storage_err)?;
        return Ok(created(name, &digest));
    }
    let st = reg.storage.upload_start(name).await.map_err(storage_err)?;
    Ok(accepted(name, &st, StatusCode::ACCEPTED))
}

pub(super) async fn status(reg: &Reg, name: &str, id: &str) -> Result<Response> {
    let st = reg
        .storage
        .upload_status(name, id)
        .await
        .map_err(storage_err)?;
    Ok(accepted(name, &st, StatusCode::NO_CONTENT))
}

/// `Content-Range: <start>-<end>` (also accepted with a `bytes ` prefix).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        RegistryError::new(Code::BlobUploadInvalid, "invalid Content-Range")
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

pub(super) async fn patch(
    reg: &Reg,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let cr = content_range(headers)?;
    if let (Some((a, b)), Some(len)) = (
        cr,
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()),
    ) && b - a + 1 != len
    {
        return Err(RegistryError::new(
            Code::BlobUploadInvalid,
            format!("Content-Range {a}-{b} does not match Content-Length {len}"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE));
    }
    let result = reg
        .storage
        .upload_append(name, id, cr.map(|r| r.0), body_stream(body))
        .await;
    match result {
        Ok(st) => Ok(accepted(name, &st, StatusCode::ACCEPTED)),
        Err(e) => Ok(upload_error(name, id, e)),
    }
}

/// A storage failure during PATCH or the final PUT; an out-of-order chunk is 416 with the
/// `Range` the session is at and its `Location`, so the client can resume.
fn upload_error(name: &str, id: &str, e: StorageError) -> Response {
    let offset = match &e {
        StorageError::RangeMismatch { offset, .. } => Some(*offset),
        _ => None,
    };
    let mut resp = storage_err(e).into_response();
    if let Some(offset) = offset {
        resp.headers_mut().insert(header::RANGE, hv(&range(offset)));
        resp.headers_mut().insert(
            header::LOCATION,
            hv(&format!("/v2/{name}/blobs/uploads/{id}")),
        );
    }
    resp
}

pub(super) async fn put(
    reg: &Reg,
    name: &str,
    id: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let Some(digest) = digest_param(query)? else {
        return Err(RegistryError::new(
            Code::DigestInvalid,
            "the digest query parameter is required",
        ));
    };
    let cr = content_range(headers)?;
    match reg
        .storage
        .upload_finish(name, id, cr.map(|r| r.0), &digest, body_stream(body))
        .await
    {
        Ok(_) => Ok(created(name, &digest)),
        Err(e) => Ok(upload_error(name, id, e)),
    }
}

pub(super) async fn cancel(reg: &Reg, name: &str, id: &str) -> Result<Response> {
    reg.storage
        .upload_cancel(name, id)
        .await
        .map_err(storage_err)?;
    Ok((StatusCode::NO_CONTENT, [(header::CONTENT_LENGTH, "0")]).into_response())
}
