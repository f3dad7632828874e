//! The distribution API calls the operations need (manifests, blobs, uploads, mounts,
//! tags, catalog, referrers), on top of the transport in `transport.rs`.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use super::body::{SMALL_BLOB_MAX, collect_capped, verified};
use super::error::redact;
use super::transport::status_error;
use super::{BlobStream, ClientError, RawManifest, RegistryClient, Result};
use crate::oci::{Descriptor, Digest, MediaType};

/// Accept header for manifests: every type we understand.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Blobs up to this size go up in one POST (monolithic upload, one round trip).
const MONOLITHIC_MAX: u64 = 1 << 20;

/// Outcome of a cross-repository mount request.
pub enum Mount {
    Mounted,
    /// The registry started an upload session instead (Location given).
    Session(Url),
}

impl RegistryClient {
    /// `GET /v2/`: reachability and credentials.
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("/v2/").await?;
        let resp = self.send(Method::GET, url.clone(), &[], |r| r).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(resp, &Method::GET, &url).await)
        }
    }

    /// Sends `method` for a manifest with our `Accept` list: the response and its URL, or
    /// `None` when the registry has no such manifest.
    async fn manifest_response(
        &self,
        method: Method,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(Response, Url)>> {
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .await?;
        let resp = self
            .send(method.clone(), url.clone(), &Self::pull_scope(repo), |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        Ok(found(resp, &method, &url).await?.map(|r| (r, url)))
    }

    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<RawManifest> {
        let Some((resp, url)) = self.manifest_response(Method::GET, repo, reference).await? else {
            return Err(ClientError::NotFound(format!(
                "manifest {}/{repo}:{reference}",
                self.registry
            )));
        };
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let what = format!("manifest {}/{repo}:{reference}", self.registry);
        let bytes = self
            .read_capped(resp, &Method::GET, &url, self.limits().manifest, &what)
            .await?;
        // The digest is computed from the bytes, never trusted from a header.
        let digest = match Digest::parse(reference) {
            Ok(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if actual != expected {
                    return Err(ClientError::DigestMismatch {
                        what: format!("manifest {}/{repo}@{expected}", self.registry),
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            Err(_) => Digest::sha256(&bytes),
        };
        let media_type = match header_type {
            Some(t) if MediaType::is_manifest(&t) => t,
            _ => crate::oci::Manifest::parse(&bytes, None)
                .map(|m| m.media_type)
                .map_err(|e| {
                    ClientError::Invalid(format!(
                        "manifest {}/{repo}:{reference}: {e}",
                        self.registry
                    ))
                })?,
        };
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `HEAD` a manifest: its digest when it exists.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let Some((resp, _)) = self
            .manifest_response(Method::HEAD, repo, reference)
            .await?
        else {
            return Ok(None);
        };
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok()))
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        m: &RawManifest,
    ) -> Result<Digest> {
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .await?;
        let bytes = m.bytes.clone();
        let resp = self
            .send(Method::PUT, url.clone(), &Self::push_scope(repo), |r| {
                r.header(CONTENT_TYPE, &m.media_type).body(bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &Method::PUT, &url).await);
        }
        Ok(m.digest.clone())
    }

    /// Deletes a tag or a manifest (by digest). `Ok(false)` when it did not exist.
    pub async fn delete_manifest(&self, repo: &str, reference: &str) -> Result<bool> {
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .await?;
        let resp = self
            .send(
                Method::DELETE,
                url.clone(),
                &Self::delete_scope(repo),
                |r| r,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(resp, &Method::DELETE, &url).await),
        }
    }

    /// Size of a blob when the repository has it.
    pub async fn blob_size(
        &self,
        repo: &str,
        digest: &Digest,
        scopes: &[String],
    ) -> Result<Option<u64>> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}")).await?;
        let resp = self.send(Method::HEAD, url.clone(), scopes, |r| r).await?;
        let Some(resp) = found(resp, &Method::HEAD, &url).await? else {
            return Ok(None);
        };
        Ok(resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .or(Some(0)))
    }

    /// Streams a blob; the caller verifies the digest while consuming.
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}")).await?;
        let resp = self
            .send(Method::GET, url.clone(), &Self::pull_scope(repo), |r| r)
            .await?;
        let Some(resp) = found(resp, &Method::GET, &url).await? else {
            return Err(ClientError::NotFound(format!(
                "blob {}/{repo}@{digest}",
                self.registry
            )));
        };
        // Verified while it streams: a consumer sees an error instead of the end of a
        // blob whose bytes do not match its digest.
        let body = self.body_stream(resp, &Method::GET, &url);
        let what = format!("blob {}/{repo}@{digest}", self.registry);
        Ok(verified(body, digest.clone(), None, what))
    }

    /// Asks the registry to mount `digest` from `from` into `repo`.
    pub async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<Mount> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/")).await?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let scopes = vec![
            format!("repository:{repo}:pull,push"),
            format!("repository:{from}:pull"),
        ];
        let resp = self
            .send(Method::POST, url.clone(), &scopes, |r| {
                r.header(CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Session(self.location(&resp, &url)?)),
            _ => Err(status_error(resp, &Method::POST, &url).await),
        }
    }

    fn location(&self, resp: &Response, request_url: &Url) -> Result<Url> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "{}: upload response without Location",
                    redact(request_url)
                ))
            })?;
        request_url
            .join(loc)
            .map_err(|e| ClientError::Invalid(format!("bad Location {loc:?}: {e}")))
    }

    /// Uploads a blob. Small blobs go in one monolithic POST; others start a session and
    /// stream in one PATCH, then commit with PUT. `session` reuses a session a failed
    /// mount already opened.
    pub async fn upload_blob(
        &self,
        repo: &str,
        desc: &Descriptor,
        body: BlobStream,
        session: Option<Url>,
    ) -> Result<()> {
        let scopes = Self::push_scope(repo);
        if desc.size <= MONOLITHIC_MAX && session.is_none() {
            let what = format!("blob {}", desc.digest);
            let bytes = collect_capped(body, Some(desc.size), MONOLITHIC_MAX, &what).await?;
            let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/")).await?;
            url.query_pairs_mut()
                .append_pair("digest", &desc.digest.to_string());
            let resp = self
                .send(Method::POST, url.clone(), &scopes, |r| {
                    r.header(CONTENT_TYPE, "application/octet-stream")
                        .body(bytes.clone())
                })
                .await?;
            return match resp.status() {
                StatusCode::CREATED => Ok(()),
                // Registries without monolithic POST start a session: finish with PUT.
                StatusCode::ACCEPTED => {
                    let loc = self.location(&resp, &url)?;
                    self.finish_upload(loc, &desc.digest, &scopes, Some(bytes))
                        .await
                }
                _ => Err(status_error(resp, &Method::POST, &url).await),
            };
        }
        let loc = match session {
            Some(l) => l,
            None => {
                let url = self.url(&format!("/v2/{repo}/blobs/uploads/")).await?;
                let resp = self
                    .send(Method::POST, url.clone(), &scopes, |r| {
                        r.header(CONTENT_LENGTH, "0")
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error(resp, &Method::POST, &url).await);
                }
                self.location(&resp, &url)?
            }
        };
        let resp = self
            .send_once(Method::PATCH, loc.clone(), &scopes, |r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, desc.size)
                    .body(reqwest::Body::wrap_stream(body))
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &Method::PATCH, &loc).await);
        }
        let loc = self.location(&resp, &loc).unwrap_or(loc);
        self.finish_upload(loc, &desc.digest, &scopes, None).await
    }

    async fn finish_upload(
        &self,
        loc: Url,
        digest: &Digest,
        scopes: &[String],
        body: Option<Bytes>,
    ) -> Result<()> {
        let mut url = loc;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .send(Method::PUT, url.clone(), scopes, |r| match &body {
                Some(b) => r
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(b.clone()),
                None => r.header(CONTENT_LENGTH, "0"),
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, &Method::PUT, &url).await);
        }
        Ok(())
    }

    /// Reads a paginated list (`tags` or `repositories`), following `Link: <…>; rel="next"`.
    /// A `Link` to another origin or to a page already read ends the listing with an
    /// error (a registry that loops would otherwise hold us forever); so does a page
    /// over the manifest size limit.
    async fn paginated(&self, path: &str, field: &str, scopes: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut url = self.url(path).await?;
        url.query_pairs_mut()
            .append_pair("n", &self.page_size.to_string());
        let mut seen = std::collections::HashSet::new();
        loop {
            seen.insert(url.clone());
            let resp = self.send(Method::GET, url.clone(), scopes, |r| r).await?;
            let Some(resp) = found(resp, &Method::GET, &url).await? else {
                return Err(ClientError::NotFound(format!("{}{path}", self.registry)));
            };
            let next = next_link(&resp, &url);
            let what = format!("{}{path}", self.registry);
            let body = self
                .read_capped(resp, &Method::GET, &url, self.limits().manifest, &what)
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ClientError::Invalid(format!("{what}: {e}")))?;
            out.extend(
                v[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
            match next {
                Some(n) if n.origin() != url.origin() => {
                    return Err(ClientError::Refused(format!(
                        "{what}: refusing a pagination Link to another host ({})",
                        redact(&n)
                    )));
                }
                Some(n) if seen.contains(&n) => {
                    return Err(ClientError::Refused(format!(
                        "{what}: pagination Link points back to a page already read ({})",
                        redact(&n)
                    )));
                }
                Some(n) => url = n,
                None => return Ok(out),
            }
        }
    }

    /// Every tag of `repo`.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.paginated(
            &format!("/v2/{repo}/tags/list"),
            "tags",
            &Self::pull_scope(repo),
        )
        .await
        .map_err(|e| match e {
            ClientError::NotFound(_) => {
                ClientError::NotFound(format!("repository {}/{repo}", self.registry))
            }
            e => e,
        })
    }

    /// Every repository of the registry (`/v2/_catalog`).
    pub async fn catalog(&self) -> Result<Vec<String>> {
        self.paginated(
            "/v2/_catalog",
            "repositories",
            &["registry:catalog:*".to_string()],
        )
        .await
    }

    /// Manifests whose subject is `digest` (OCI referrers API). Registries without the
    /// API answer 404: then no referrers are reported.
    pub async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Descriptor>> {
        let url = self.url(&format!("/v2/{repo}/referrers/{digest}")).await?;
        let resp = self
            .send(Method::GET, url.clone(), &Self::pull_scope(repo), |r| {
                r.header(ACCEPT, MediaType::OCI_INDEX)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !resp.status().is_success() {
            return Err(status_error(resp, &Method::GET, &url).await);
        }
        #[derive(serde::Deserialize)]
        struct Index {
            manifests: Vec<Descriptor>,
        }
        let idx: Index = resp
            .json()
            .await
            .map_err(|e| ClientError::Invalid(format!("referrers of {digest}: {e}")))?;
        Ok(idx.manifests)
    }
}

/// Reads a whole small blob (config, build record) into memory: at most its declared
/// size and never more than `SMALL_BLOB_MAX`, whatever the declared size says.
pub async fn collect_stream(body: BlobStream, declared: u64) -> Result<Bytes> {
    collect(body, declared, SMALL_BLOB_MAX).await
}

/// Like `collect_stream`, with the limit given.
pub(crate) async fn collect(body: BlobStream, declared: u64, cap: u64) -> Result<Bytes> {
    collect_capped(body, Some(declared), cap, "blob").await
}

/// A response the caller can use: `None` for 404, the status error for any other failure.
async fn found(resp: Response, method: &Method, url: &Url) -> Result<Option<Response>> {
    if resp.status() == StatusCode::NOT_FOUND {
        Ok(None)
    } else if resp.status().is_success() {
        Ok(Some(resp))
    } else {
        Err(status_error(resp, method, url).await)
    }
}

fn next_link(resp: &Response, url: &Url) -> Option<Url> {
    let link = resp.headers().get(reqwest::header::LINK)?.to_str().ok()?;
    let target = link
        .split(';')
        .next()?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    if !link.contains("rel=\"next\"") && !link.contains("rel=next") {
        return None;
    }
    url.join(target).ok()
}
