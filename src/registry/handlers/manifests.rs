//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>` (spec.md "Pulling manifests",
//! "Pushing manifests", "Deleting manifests").
//!
//! PUT steps: 1. read at most `max_manifest_size` bytes (413 above); 2. digest the exact
//! bytes (a PUT by digest must match); 3. parse just enough to find what it refers to;
//! 4. every referenced blob and child manifest must already be in the repository;
//! 5. store the bytes unchanged, tag, and index the subject for the referrers API.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::{Reg, hv, storage_err};
use crate::oci::MediaType;
use crate::oci::{Descriptor, Digest, Manifest};
use crate::registry::error::{Code, RegistryError, Result};
use crate::registry::path::ManifestRef;
use crate::registry::storage::StoredManifest;

async fn resolve(reg: &Reg, name: &str, reference: &ManifestRef) -> Result<Digest> {
    let unknown = || {
        RegistryError::new(
            Code::ManifestUnknown,
            format!("manifest {reference} unknown to repository {name}"),
        )
    };
    match reference {
        ManifestRef::Digest(d) => Ok(d.clone()),
        ManifestRef::Tag(t) => reg
            .storage
            .resolve_tag(name, t)
            .await
            .map_err(storage_err)?
            .ok_or_else(unknown),
    }
}

/// True when an `Accept` list admits `media_type` (no header, or `*/*`, admits all).
fn accepts(accept: &[String], media_type: &str) -> bool {
    accept.is_empty()
        || accept
            .iter()
            .any(|a| a == media_type || a == "*/*" || a == "application/*")
}

/// Content negotiation (what distribution does for manifest lists): a client whose
/// `Accept` names image manifests but not the stored index type gets the linux/amd64
/// entry (else the first acceptable one) instead. Everything else is served as stored.
async fn negotiate(
    reg: &Reg,
    name: &str,
    m: StoredManifest,
    accept: &[String],
) -> Result<StoredManifest> {
    if accepts(accept, &m.media_type) || !MediaType::is_index(&m.media_type) {
        return Ok(m);
    }
    let Ok(index) = Manifest::parse(&m.bytes, Some(&m.media_type)) else {
        return Ok(m);
    };
    let acceptable: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| accepts(accept, &d.media_type))
        .collect();
    let chosen = acceptable
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .or_else(|| acceptable.first());
    match chosen {
        Some(d) => Ok(reg
            .storage
            .get_manifest(name, &d.digest)
            .await
            .map_err(storage_err)?
            .unwrap_or(m)),
        None => Ok(m),
    }
}

pub(super) async fn get(
    reg: &Reg,
    name: &str,
    reference: &ManifestRef,
    head: bool,
    req_headers: &HeaderMap,
) -> Result<Response> {
    let digest = resolve(reg, name, reference).await?;
    let Some(m) = reg
        .storage
        .get_manifest(name, &digest)
        .await
        .map_err(storage_err)?
    else {
        return Err(RegistryError::new(
            Code::ManifestUnknown,
            format!("manifest {reference} unknown to repository {name}"),
        ));
    };
    let accept: Vec<String> = req_headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    // A request by digest asks for exactly those bytes.
    let m = match reference {
        ManifestRef::Tag(_) => negotiate(reg, name, m, &accept).await?,
        ManifestRef::Digest(_) => m,
    };
    let digest = m.digest.clone();
    let headers = [
        (header::CONTENT_TYPE, hv(&m.media_type)),
        (header::CONTENT_LENGTH, hv(&m.bytes.len().to_string())),
        (header::ETAG, hv(&format!("\"{digest}\""))),
        (
            header::HeaderName::from_static("docker-content-digest"),
            hv(&digest.to_string()),
        ),
    ];
    if head {
        Ok((headers, Body::empty()).into_response())
    } else {
        Ok((headers, m.bytes).into_response())
    }
}

pub(super) async fn put(
    reg: &Reg,
    name: &str,
    reference: &ManifestRef,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    // 1. read, bounded.
    let max = reg.max_manifest_size;
    let too_big = || {
        RegistryError::new(
            Code::ManifestInvalid,
            format!("manifest larger than {max} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > max
    {
        return Err(too_big());
    }
    let bytes = http_body_util::Limited::new(body, max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_big()
            } else {
                RegistryError::new(Code::ManifestInvalid, format!("reading manifest: {e}"))
            }
        })?
        .to_bytes();
    // 2. digest.
    let digest = match reference {
        ManifestRef::Digest(d) => {
            let actual = Digest::of(d.algorithm(), &bytes);
            if &actual != d {
                return Err(RegistryError::new(
                    Code::DigestInvalid,
                    format!("manifest digest is {actual}, not {d}"),
                ));
            }
            actual
        }
        ManifestRef::Tag(_) => Digest::sha256(&bytes),
    };
    // 3. parse.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let manifest = Manifest::parse(&bytes, content_type)
        .map_err(|e| RegistryError::new(Code::ManifestInvalid, e.to_string()))?;
    // 4. references, stamped as referenced now and fenced against a running gc
    //    (storage/sweep.rs): once checked here they outlive the grace period.
    let blobs: Vec<_> = manifest.blobs().collect();
    let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
    let sizes = reg
        .storage
        .reference_blobs(name, &digests)
        .await
        .map_err(storage_err)?;
    for (blob, size) in blobs.iter().zip(sizes) {
        match size {
            None => {
                return Err(RegistryError::new(
                    Code::ManifestBlobUnknown,
                    format!("blob {} is not in repository {name}", blob.digest),
                )
                .with_detail(serde_json::json!({"digest": blob.digest})));
            }
            Some(size) if size != blob.size => {
                return Err(RegistryError::new(
                    Code::ManifestInvalid,
                    format!(
                        "descriptor of {} says {} bytes, the blob has {size}",
                        blob.digest, blob.size
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for child in &manifest.manifests {
        if reg
            .storage
            .reference_manifest(name, &child.digest)
            .await
            .map_err(storage_err)?
            .is_none()
        {
            return Err(RegistryError::new(
                Code::ManifestBlobUnknown,
                format!(
                    "child manifest {} is not in repository {name}",
                    child.digest
                ),
            )
            .with_detail(serde_json::json!({"digest": child.digest})));
        }
    }
    // 5. store, tag, index the subject.
    let size = bytes.len() as u64;
    reg.storage
        .put_manifest(name, &digest, &manifest.media_type, bytes)
        .await
        .map_err(storage_err)?;
    if let ManifestRef::Tag(tag) = reference {
        reg.storage
            .set_tag(name, tag, &digest)
            .await
            .map_err(storage_err)?;
        // 6. notify (queued durably; delivery never fails the push).
        if let Some(n) = &reg.notifier {
            let h = |k: header::HeaderName| headers.get(k).and_then(|v| v.to_str().ok());
            let pushed = crate::registry::notify::Pushed {
                repository: name,
                tag,
                digest: &digest.to_string(),
                media_type: &manifest.media_type.to_string(),
                size,
                host: h(header::HOST).unwrap_or(""),
                scheme: if reg.tls.is_some() { "https" } else { "http" },
                user: None,
                user_agent: h(header::USER_AGENT),
            };
            if let Err(e) = n.pushed(&pushed).await {
                tracing::error!("queueing a notification for {name}:{tag}: {e}");
            }
        }
    }
    let mut resp = (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                hv(&format!("/v2/{name}/manifests/{digest}")),
            ),
            (header::CONTENT_LENGTH, hv("0")),
            (
                header::HeaderName::from_static("docker-content-digest"),
                hv(&digest.to_string()),
            ),
        ],
    )
        .into_response();
    if let Some(subject) = &manifest.subject {
        let descriptor = Descriptor {
            media_type: manifest.media_type.clone(),
            digest: digest.clone(),
            size,
            urls: None,
            annotations: manifest.annotations.clone(),
            platform: None,
            artifact_type: manifest.effective_artifact_type(),
        };
        reg.storage
            .add_referrer(name, &subject.digest, &descriptor)
            .await
            .map_err(storage_err)?;
        resp.headers_mut()
            .insert("OCI-Subject", hv(&subject.digest.to_string()));
    }
    Ok(resp)
}

pub(super) async fn delete(reg: &Reg, name: &str, reference: &ManifestRef) -> Result<Response> {
    match reference {
        ManifestRef::Tag(tag) => {
            if !reg
                .storage
                .delete_tag(name, tag)
                .await
                .map_err(storage_err)?
            {
                return Err(RegistryError::new(
                    Code::ManifestUnknown,
                    format!("tag {tag} unknown to repository {name}"),
                ));
            }
        }
        ManifestRef::Digest(d) => {
            let stored = reg
                .storage
                .get_manifest(name, d)
                .await
                .map_err(storage_err)?;
            if !reg
                .storage
                .delete_manifest(name, d)
                .await
                .map_err(storage_err)?
            {
                return Err(RegistryError::new(
                    Code::ManifestUnknown,
                    format!("manifest {d} unknown to repository {name}"),
                ));
            }
            if let Some(m) = stored
                && let Ok(parsed) = Manifest::parse(&m.bytes, Some(&m.media_type))
                && let Some(subject) = parsed.subject
            {
                reg.storage
                    .remove_referrer(name, &subject.digest, d)
                    .await
                    .map_err(storage_err)?;
            }
        }
    }
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
