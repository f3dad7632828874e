//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>` (spec.md "Pulling blobs", "Deleting blobs").
//! Blobs stream from the storage driver; `Range: bytes=a-b` gives 206 with `Content-Range`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Reg, hv, storage_err};
use crate::oci::Digest;
use crate::registry::error::{Code, RegistryError, Result};

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `len` bytes.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multipart ranges are not supported
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (len.saturating_sub(n), len.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && end < len).then_some((start, end))
}

pub(super) async fn get(
    reg: &Reg,
    name: &str,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    if head {
        return head_blob(reg, name, digest).await;
    }
    let unknown = || {
        RegistryError::new(
            Code::BlobUnknown,
            format!("blob {digest} unknown to repository {name}"),
        )
    };
    // Without a range: one open gives the size and the bytes.
    let mut whole = None;
    let len = if headers.contains_key(header::RANGE) {
        reg.storage
            .linked_blob_size(name, digest)
            .await
            .map_err(storage_err)?
            .ok_or_else(unknown)?
    } else {
        let (len, stream) = reg
            .storage
            .open_blob(name, digest)
            .await
            .map_err(storage_err)?
            .ok_or_else(unknown)?;
        whole = Some(stream);
        len
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(v) => match parse_range(v, len) {
            Some(r) => Some(r),
            None => {
                let mut resp = RegistryError::new(
                    Code::RangeInvalid,
                    format!("unsatisfiable range {v:?} for {len} bytes"),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_RANGE, hv(&format!("bytes */{len}")));
                return Ok(resp);
            }
        },
    };
    let (status, start, count) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, len),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, count)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        .header("Docker-Content-Digest", digest.to_string());
    if range.is_some() {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{len}", start, start + count - 1),
        );
    }
    let stream = match whole {
        Some(stream) => stream,
        None => reg
            .storage
            .read_blob_range(digest, start, count)
            .await
            .map_err(storage_err)?,
    };
    let body = Body::from_stream(stream);
    builder
        .body(body)
        .map_err(|e| RegistryError::internal("response", e))
}

/// HEAD is how a push asks "do you have this blob?" before skipping its upload: the
/// answer stamps the blob as referenced now, so gc keeps it for the grace period in which
/// the push's manifest is due (storage/sweep.rs).
async fn head_blob(reg: &Reg, name: &str, digest: &Digest) -> Result<Response> {
    let size = reg
        .storage
        .reference_blob(name, digest)
        .await
        .map_err(storage_err)?;
    let Some(len) = size else {
        return Err(RegistryError::new(
            Code::BlobUnknown,
            format!("blob {digest} unknown to repository {name}"),
        ));
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        .header("Docker-Content-Digest", digest.to_string())
        .body(Body::empty())
        .map_err(|e| RegistryError::internal("response", e))
}

pub(super) async fn delete(reg: &Reg, name: &str, digest: &Digest) -> Result<Response> {
    if reg
        .storage
        .unlink_blob(name, digest)
        .await
        .map_err(storage_err)?
    {
        Ok((
            StatusCode::ACCEPTED,
            [("Docker-Content-Digest", digest.to_string())],
        )
            .into_response())
    } else {
        Err(RegistryError::new(
            Code::BlobUnknown,
            format!("blob {digest} unknown to repository {name}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }
}
