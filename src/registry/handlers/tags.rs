//! Listing endpoints: tags (`/v2/<name>/tags/list`), the catalog (`/v2/_catalog`), both
//! paginated with `n`/`last` and a `Link: <…>; rel="next"` header (spec.md "Listing
//! Tags"), and referrers (`/v2/<name>/referrers/<digest>`, with the `artifactType`
//! filter reported in `OCI-Filters-Applied`).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use axum::Json;

use super::{Query, Reg, hv, storage_err};
use crate::oci::{Digest, MediaType};
use crate::registry::error::{Code, RegistryError, Result};

/// Applies `last` and `n`; returns the page and whether more entries follow.
fn paginate(all: Vec<String>, query: &Query) -> Result<(Vec<String>, bool)> {
    let mut items: Vec<String> = match query.get("last") {
        Some(last) => all.into_iter().filter(|t| t.as_str() > last).collect(),
        None => all,
    };
    let n = match query.get("n") {
        None | Some("") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            RegistryError::new(Code::Unsupported, format!("invalid n={n:?}"))
                .with_status(axum::http::StatusCode::BAD_REQUEST)
        })?),
    };
    let more = match n {
        Some(n) if items.len() > n => {
            items.truncate(n);
            true
        }
        _ => false,
    };
    Ok((items, more))
}

fn link(path: &str, n: &str, last: &str) -> String {
    format!("<{path}?n={n}&last={last}>; rel=\"next\"")
}

pub(super) async fn list(reg: &Reg, name: &str, query: &Query) -> Result<Response> {
    if !reg.storage.repo_exists(name).await.map_err(storage_err)? {
        return Err(RegistryError::new(
            Code::NameUnknown,
            format!("repository {name} not known to registry"),
        ));
    }
    let tags = reg.storage.tags(name).await.map_err(storage_err)?;
    let (page, more) = paginate(tags, query)?;
    let mut resp = Json(json!({"name": name, "tags": page})).into_response();
    if more && let Some(last) = page.last() {
        let l = link(
            &format!("/v2/{name}/tags/list"),
            query.get("n").unwrap_or(""),
            last,
        );
        resp.headers_mut().insert(header::LINK, hv(&l));
    }
    Ok(resp)
}

pub(super) async fn catalog(reg: &Reg, query: &Query) -> Result<Response> {
    let repos = reg.storage.repositories().await.map_err(storage_err)?;
    let (page, more) = paginate(repos, query)?;
    let mut resp = Json(json!({"repositories": page})).into_response();
    if more && let Some(last) = page.last() {
        resp.headers_mut().insert(
            header::LINK,
            hv(&link("/v2/_catalog", query.get("n").unwrap_or(""), last)),
        );
    }
    Ok(resp)
}

pub(super) async fn referrers(
    reg: &Reg,
    name: &str,
    subject: &Digest,
    query: &Query,
) -> Result<Response> {
    let mut list = reg
        .storage
        .referrers(name, subject)
        .await
        .map_err(storage_err)?;
    let filter = query.get("artifactType").filter(|s| !s.is_empty());
    if let Some(t) = filter {
        list.retain(|d| d.artifact_type.as_deref() == Some(t));
    }
    let body = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OCI_INDEX,
        "manifests": list,
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = ([(header::CONTENT_TYPE, MediaType::OCI_INDEX)], bytes).into_response();
    if filter.is_some() {
        resp.headers_mut()
            .insert("OCI-Filters-Applied", hv("artifactType"));
    }
    Ok(resp)
}
