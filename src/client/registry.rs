//! One client per registry host: scheme discovery, auth (anonymous, Basic, Bearer tokens
//! cached per scope), retries with backoff for temporary failures, and the distribution
//! API calls the operations need.
//!
//! Steps of every request (`send`):
//! 1. resolve the base URL once: HTTPS; for loopback hosts (and `--insecure`) fall back to
//!    plain HTTP when HTTPS does not answer, as Docker does;
//! 2. attach the cached token for the request's scopes, or Basic credentials once the
//!    registry asked for them;
//! 3. on 401, read the challenge, fetch a token (or switch to Basic) and retry once —
//!    a second 401 is an authentication error, never a retry storm;
//! 4. on connection errors, 429 and 5xx, retry with exponential backoff; never on 4xx.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{Challenge, Credentials, parse_challenge};
use super::error::{RegistryCodes, redact};
use super::{BlobStream, ClientError, RawManifest, Result};
use crate::oci::{DOCKER_HUB, Descriptor, Digest, MediaType};

/// Settings shared by every registry a command talks to.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Explicit credentials; `None` looks the registry up in `~/.docker/config.json`.
    pub credentials: Option<Credentials>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_certs: Vec<PathBuf>,
    /// Allow plain HTTP and unverified TLS for any host.
    pub insecure: bool,
    /// Attempts for temporary failures, after the first.
    pub retries: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: None,
            ca_certs: Vec::new(),
            insecure: false,
            retries: 3,
        }
    }
}

/// Accept header for manifests: every type we understand.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Blobs up to this size go up in one POST (monolithic upload, one round trip).
const MONOLITHIC_MAX: u64 = 1 << 20;

pub struct RegistryClient {
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    api_host: String,
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    insecure: bool,
    base: tokio::sync::OnceCell<(Url, bool)>,
    creds: Credentials,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    basic: AtomicBool,
    retries: u32,
    /// Requests sent (for reports and tests).
    pub requests: AtomicU64,
    /// The last `ratelimit-remaining` a response carried (Docker Hub: `N;w=SECONDS`);
    /// `u64::MAX` while none has.
    ratelimit_remaining: AtomicU64,
}

/// Parses a `ratelimit-remaining` header (`100;w=21600` or `100`).
pub fn parse_ratelimit(v: &str) -> Option<u64> {
    v.split(';').next()?.trim().parse().ok()
}

fn is_loopback(host: &str) -> bool {
    let h = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn build_http(opts: &ClientOptions, accept_invalid: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(32)
        .danger_accept_invalid_certs(accept_invalid);
    for path in &opts.ca_certs {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::io(format!("reading CA certificate {}", path.display()), e)
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ClientError::Invalid(format!("CA certificate {}: {e}", path.display())))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| ClientError::Invalid(format!("building HTTP client: {e}")))
}

/// Outcome of a cross-repository mount request.
pub enum Mount {
    Mounted,
    /// The registry started an upload session instead (Location given).
    Session(Url),
}

impl RegistryClient {
    pub fn new(registry: &str, opts: &ClientOptions) -> Result<RegistryClient> {
        let api_host = if registry == DOCKER_HUB {
            "registry-1.docker.io".to_string()
        } else {
            registry.to_string()
        };
        let creds = match &opts.credentials {
            Some(c) => c.clone(),
            None => Credentials::from_docker_config(registry),
        };
        Ok(RegistryClient {
            registry: registry.to_string(),
            api_host,
            http: build_http(opts, false)?,
            http_insecure: build_http(opts, true)?,
            insecure: opts.insecure,
            base: tokio::sync::OnceCell::new(),
            creds,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
            retries: opts.retries,
            requests: AtomicU64::new(0),
            ratelimit_remaining: AtomicU64::new(u64::MAX),
        })
    }

    fn client(&self, unverified: bool) -> &reqwest::Client {
        if unverified {
            &self.http_insecure
        } else {
            &self.http
        }
    }

    /// Step 1: the base URL, and whether TLS verification is off for it.
    async fn base(&self) -> Result<&(Url, bool)> {
        self.base
            .get_or_try_init(|| async {
                let https = Url::parse(&format!("https://{}/", self.api_host)).map_err(|e| {
                    ClientError::Invalid(format!("registry {:?}: {e}", self.registry))
                })?;
                let fallback = self.insecure || is_loopback(&self.api_host);
                if !fallback {
                    return Ok((https, false));
                }
                let probe = self
                    .client(self.insecure)
                    .get(https.join("v2/").unwrap_or_else(|_| https.clone()))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                self.requests.fetch_add(1, Ordering::Relaxed);
                match probe {
                    Ok(_) => Ok((https, self.insecure)),
                    Err(_) => {
                        let http =
                            Url::parse(&format!("http://{}/", self.api_host)).map_err(|e| {
                                ClientError::Invalid(format!("registry {:?}: {e}", self.registry))
                            })?;
                        Ok((http, false))
                    }
                }
            })
            .await
    }

    pub async fn url(&self, path: &str) -> Result<Url> {
        let (base, _) = self.base().await?;
        base.join(path.trim_start_matches('/'))
            .map_err(|e| ClientError::Invalid(format!("URL {path:?}: {e}")))
    }

    fn scope_key(scopes: &[String]) -> String {
        scopes.join(" ")
    }

    fn auth_header(&self, scopes: &[String]) -> Option<String> {
        let key = Self::scope_key(scopes);
        if let Some((t, exp)) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && *exp > Instant::now()
        {
            return Some(format!("Bearer {t}"));
        }
        if self.basic.load(Ordering::Relaxed)
            && let Credentials::Basic { username, password } = &self.creds
        {
            use base64::Engine as _;
            let v =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            return Some(format!("Basic {v}"));
        }
        None
    }

    /// Step 3: answer a challenge. Returns an error when there is nothing more to try.
    /// `sent` is the Authorization header the refused request carried: a request refused
    /// with the very credentials we would retry with is final; concurrent requests sent
    /// before credentials were known simply retry.
    async fn authenticate(
        &self,
        challenge: Option<Challenge>,
        scopes: &[String],
        message: &str,
        sent: Option<&str>,
    ) -> Result<()> {
        let fail = |why: String| ClientError::Auth {
            registry: self.registry.clone(),
            why,
        };
        let Some(ch) = challenge else {
            return Err(fail(format!("401 without a challenge: {message}")));
        };
        match ch.scheme.as_str() {
            "basic" => match &self.creds {
                Credentials::Basic { .. } if sent.is_some_and(|s| s.starts_with("Basic ")) => {
                    Err(fail(format!("credentials refused: {message}")))
                }
                Credentials::Basic { .. } => {
                    self.basic.store(true, Ordering::Relaxed);
                    Ok(())
                }
                _ => Err(fail(
                    "the registry requires credentials (use --creds or docker login)".into(),
                )),
            },
            "bearer" => {
                let realm = ch
                    .params
                    .get("realm")
                    .ok_or_else(|| fail("Bearer challenge without realm".into()))?;
                let mut url =
                    Url::parse(realm).map_err(|e| fail(format!("bad realm {realm:?}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = ch.params.get("service") {
                        q.append_pair("service", s);
                    }
                    let mut all: Vec<String> = scopes.to_vec();
                    if let Some(s) = ch.params.get("scope") {
                        for one in s.split(' ') {
                            if !all.iter().any(|x| x == one) {
                                all.push(one.to_string());
                            }
                        }
                    }
                    for s in &all {
                        q.append_pair("scope", s);
                    }
                }
                let unverified = self.base().await.map(|b| b.1).unwrap_or(false);
                let mut req = self.client(unverified).get(url.clone());
                if let Credentials::Basic { username, password } = &self.creds {
                    req = req.basic_auth(username, Some(password));
                }
                self.requests.fetch_add(1, Ordering::Relaxed);
                let resp = req
                    .send()
                    .await
                    .map_err(|e| fail(format!("token endpoint {}: {e}", redact(&url))))?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    return Err(fail(format!(
                        "token endpoint answered {status}: {}",
                        error_message(&body)
                    )));
                }
                #[derive(serde::Deserialize)]
                struct Tok {
                    token: Option<String>,
                    access_token: Option<String>,
                    expires_in: Option<u64>,
                }
                let t: Tok = resp
                    .json()
                    .await
                    .map_err(|e| fail(format!("token response: {e}")))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| fail("token response without a token".into()))?;
                // Refresh a little early; registries default to 60 s when they say nothing.
                let life = Duration::from_secs(t.expires_in.unwrap_or(60).saturating_sub(5).max(1));
                if sent == Some(format!("Bearer {token}").as_str()) {
                    return Err(fail(format!("token refused: {message}")));
                }
                self.tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(Self::scope_key(scopes), (token, Instant::now() + life));
                Ok(())
            }
            other => Err(fail(format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// Sends a replayable request with auth and retries (steps 2–4). Any status other than
    /// 401/429/5xx is returned for the caller to judge.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        scopes: &[String],
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        let unverified = self.base().await?.1;
        let mut auth_tries = 0;
        let mut attempt = 0;
        loop {
            let mut req = self.client(unverified).request(method.clone(), url.clone());
            let sent = self.auth_header(scopes);
            if let Some(h) = &sent {
                req = req.header(reqwest::header::AUTHORIZATION, h);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = build(req).send().await;
            if let Ok(r) = &result
                && let Some(n) = r
                    .headers()
                    .get("ratelimit-remaining")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_ratelimit)
            {
                self.ratelimit_remaining.store(n, Ordering::Relaxed);
            }
            if let Ok(r) = &result {
                tracing::debug!(
                    "{method} {} -> {} (auth: {})",
                    redact(&url),
                    r.status(),
                    sent.as_deref()
                        .map(|s| s.split(' ').next().unwrap_or(""))
                        .unwrap_or("none")
                );
            }
            let err = match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && auth_tries < 2 => {
                    auth_tries += 1;
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    let body = resp.text().await.unwrap_or_default();
                    self.authenticate(challenge, scopes, &error_message(&body), sent.as_deref())
                        .await?;
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(ClientError::Auth {
                        registry: self.registry.clone(),
                        why: format!("{method} {}: {}", redact(&url), error_message(&body)),
                    });
                }
                Ok(resp)
                    if resp.status() == StatusCode::TOO_MANY_REQUESTS
                        || resp.status().is_server_error() =>
                {
                    status_error(resp, &method, &url).await
                }
                Ok(resp) => return Ok(resp),
                Err(e) => ClientError::Transport {
                    method: method.to_string(),
                    url: redact(&url),
                    message: error_chain(&e),
                },
            };
            if attempt >= self.retries {
                return Err(err);
            }
            attempt += 1;
            let backoff = Duration::from_millis(200 * (1 << attempt.min(6)));
            tracing::debug!("{err}; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Sends a request whose body cannot be replayed (a stream): auth must already be in
    /// place (an earlier request with the same scopes earned the token); no retries here.
    async fn send_once(
        &self,
        method: Method,
        url: Url,
        scopes: &[String],
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        let unverified = self.base().await?.1;
        let mut req = self.client(unverified).request(method.clone(), url.clone());
        if let Some(h) = self.auth_header(scopes) {
            req = req.header(reqwest::header::AUTHORIZATION, h);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        build(req).send().await.map_err(|e| ClientError::Transport {
            method: method.to_string(),
            url: redact(&url),
            message: error_chain(&e),
        })
    }

    /// The pulls the registry says are left (`ratelimit-remaining`), once it has said.
    pub fn ratelimit_remaining(&self) -> Option<u64> {
        match self.ratelimit_remaining.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    // ---- scopes ------------------------------------------------------------------------

    pub fn pull_scope(repo: &str) -> Vec<String> {
        vec![format!("repository:{repo}:pull")]
    }

    pub fn push_scope(repo: &str) -> Vec<String> {
        vec![format!("repository:{repo}:pull,push")]
    }

    fn delete_scope(repo: &str) -> Vec<String> {
        vec![format!("repository:{repo}:pull,push,delete")]
    }

    // ---- API calls -----------------------------------------------------------------------

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

    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<RawManifest> {
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .await?;
        let resp = self
            .send(Method::GET, url.clone(), &Self::pull_scope(repo), |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(format!(
                "manifest {}/{repo}:{reference}",
                self.registry
            )));
        }
        if !resp.status().is_success() {
            return Err(status_error(resp, &Method::GET, &url).await);
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
            method: "GET".into(),
            url: redact(&url),
            message: error_chain(&e),
        })?;
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
        let url = self
            .url(&format!("/v2/{repo}/manifests/{reference}"))
            .await?;
        let resp = self
            .send(Method::HEAD, url.clone(), &Self::pull_scope(repo), |r| {
                r.header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(resp, &Method::HEAD, &url).await);
        }
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
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(status_error(resp, &Method::HEAD, &url).await);
        }
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
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(format!(
                "blob {}/{repo}@{digest}",
                self.registry
            )));
        }
        if !resp.status().is_success() {
            return Err(status_error(resp, &Method::GET, &url).await);
        }
        let u = redact(&url);
        Ok(Box::pin(resp.bytes_stream().map_err(move |e| {
            ClientError::Transport {
                method: "GET".into(),
                url: u.clone(),
                message: error_chain(&e),
            }
        })))
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
            let bytes = collect(body, desc.size).await?;
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

    /// Entries per page asked for with `n` (`GANTRY_PAGE_SIZE` overrides it, for tests).
    fn page_size() -> usize {
        std::env::var("GANTRY_PAGE_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1000)
    }

    /// Reads a paginated list (`tags` or `repositories`), following `Link: <…>; rel="next"`.
    async fn paginated(&self, path: &str, field: &str, scopes: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut url = self.url(path).await?;
        url.query_pairs_mut()
            .append_pair("n", &Self::page_size().to_string());
        loop {
            let resp = self.send(Method::GET, url.clone(), scopes, |r| r).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(ClientError::NotFound(format!("{}{path}", self.registry)));
            }
            if !resp.status().is_success() {
                return Err(status_error(resp, &Method::GET, &url).await);
            }
            let next = next_link(&resp, &url);
            let v: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| ClientError::Invalid(format!("{path}: {e}")))?;
            out.extend(
                v[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
            match next {
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

/// Reads a whole (small) blob stream into memory.
pub async fn collect_stream(body: BlobStream, size_hint: u64) -> Result<Bytes> {
    collect(body, size_hint).await
}

/// Reads a whole (small) blob stream into memory.
pub(crate) async fn collect(mut body: BlobStream, size_hint: u64) -> Result<Bytes> {
    let mut buf = Vec::with_capacity(size_hint as usize);
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(Bytes::from(buf))
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

/// Turns an unexpected response into an error with the registry's codes.
pub(crate) async fn status_error(resp: Response, method: &Method, url: &Url) -> ClientError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    ClientError::Status {
        method: method.to_string(),
        url: redact(url),
        status,
        codes: parse_codes(&body),
    }
}

fn parse_codes(body: &str) -> RegistryCodes {
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<E>,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(b) => RegistryCodes(
            b.errors
                .into_iter()
                .map(|e| (e.code.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect(),
        ),
        Err(_) => RegistryCodes::default(),
    }
}

fn error_message(body: &str) -> String {
    let codes = parse_codes(body);
    if codes.0.is_empty() {
        body.chars().take(200).collect()
    } else {
        codes.to_string()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("quay.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn ratelimit_header() {
        assert_eq!(parse_ratelimit("100;w=21600"), Some(100));
        assert_eq!(parse_ratelimit("7"), Some(7));
        assert_eq!(parse_ratelimit("x"), None);
    }

    #[test]
    fn codes() {
        let c = parse_codes(r#"{"errors":[{"code":"DENIED","message":"no"}]}"#);
        assert_eq!(c.to_string(), "DENIED: no");
    }
}
