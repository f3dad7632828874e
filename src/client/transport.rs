//! The HTTP edge of the client, one per registry host: scheme discovery, auth (anonymous,
//! Basic, Bearer tokens cached per scope) and retries with backoff for temporary failures.
//! The distribution API calls built on it live in `registry.rs`.
//!
//! Steps of every request (`send`):
//! 1. resolve the base URL once: HTTPS, trusting the system roots, `--ca-cert` and the
//!    host's certs.d CAs (client certificate too; `trust.rs`); for loopback hosts (and
//!    `--insecure`) fall back to plain HTTP when the server does not speak TLS, as Docker
//!    does — never after a certificate failure, which is one clear error, and never for an
//!    endpoint written `https://` (`https_only`);
//! 2. attach the cached token for the request's scopes, or Basic credentials once the
//!    registry asked for them;
//! 3. on 401, read the challenge, fetch a token (or switch to Basic) and retry once —
//!    a second 401 is an authentication error, never a retry storm;
//! 4. on connection errors, 408, 429 and 5xx, retry under the one retry policy
//!    (`retry.rs`: jittered exponential backoff, capped, `Retry-After` honoured); never
//!    on another 4xx.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{Challenge, Credentials, parse_challenge};
use super::body::{Limits, check_declared, collect_capped, low_speed_guarded};
use super::error::{RegistryCodes, redact};
use super::retry::{RetryPolicy, retry_after, retryable_status};
use super::trust::{TlsFailure, classify};
use super::{BlobStream, ClientError, Result};
use crate::oci::DOCKER_HUB;

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
    /// Caps on what is read from a registry (manifest and small-blob sizes, low speed).
    pub limits: Limits,
    /// Entries per page asked for with `n` when listing tags and repositories.
    pub page_size: usize,
    /// certs.d roots searched for `<root>/HOST[:PORT]/` (docker's and podman's by default).
    pub certs_d: Vec<PathBuf>,
    /// The registry was written `https://…`: never fall back to plain HTTP.
    pub https_only: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: None,
            ca_certs: Vec::new(),
            insecure: false,
            retries: 3,
            limits: Limits::default(),
            page_size: 1000,
            certs_d: super::trust::default_certs_d_roots(),
            https_only: false,
        }
    }
}

pub struct RegistryClient {
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    api_host: String,
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    insecure: bool,
    https_only: bool,
    base: tokio::sync::OnceCell<(Url, bool)>,
    creds: Credentials,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    basic: AtomicBool,
    retries: u32,
    limits: Limits,
    pub(super) page_size: usize,
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

fn build_http(opts: &ClientOptions, host: &str, accept_invalid: bool) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(Duration::from_secs(10))
        // A registry that stops answering mid-response fails the request (idle time per
        // read); one that trickles is cut off by the low-speed guard in `body.rs`.
        .read_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(32)
        .danger_accept_invalid_certs(accept_invalid);
    let certs_d = super::trust::host_certs(&opts.certs_d, host);
    if let Some((cert, key)) = &certs_d.identity {
        let mut pem = super::trust::read_pem(cert).map_err(|e| {
            ClientError::io(format!("reading client certificate {}", cert.display()), e)
        })?;
        pem.push(b'\n');
        pem.extend(
            super::trust::read_pem(key)
                .map_err(|e| ClientError::io(format!("reading client key {}", key.display()), e))?,
        );
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            ClientError::Invalid(format!(
                "client certificate {} with {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        b = b.identity(id);
    }
    for path in opts.ca_certs.iter().chain(&certs_d.cas) {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::io(format!("reading CA certificate {}", path.display()), e)
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| ClientError::Invalid(format!("CA certificate {}: {e}", path.display())))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if !accept_invalid {
        // The system roots, read once per process (see `trust::system_roots`).
        b = b.tls_certs_only(super::trust::system_roots().iter().cloned());
    }
    b.build()
        .map_err(|e| ClientError::Invalid(format!("building HTTP client: {e}")))
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
            http: build_http(opts, registry, false)?,
            http_insecure: build_http(opts, registry, true)?,
            insecure: opts.insecure,
            https_only: opts.https_only,
            base: tokio::sync::OnceCell::new(),
            creds,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
            retries: opts.retries,
            limits: opts.limits,
            page_size: opts.page_size.max(1),
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
                let fallback = !self.https_only && (self.insecure || is_loopback(&self.api_host));
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
                    // A certificate failure is never a reason to try plain HTTP.
                    Err(e) if let Some(TlsFailure::Certificate(why)) = classify(&e) => {
                        Err(self.untrusted(&why))
                    }
                    Err(e) => {
                        tracing::debug!(
                            "{}: HTTPS failed ({}); trying plain HTTP",
                            self.api_host,
                            error_chain(&e)
                        );
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

    fn untrusted(&self, why: &str) -> ClientError {
        ClientError::Tls(super::trust::untrusted_message(&self.registry, why))
    }

    /// A request error as a client error: certificate failures get their one clear line.
    fn transport(&self, method: &Method, url: &Url, e: reqwest::Error) -> ClientError {
        match classify(&e) {
            Some(TlsFailure::Certificate(why)) => self.untrusted(&why),
            Some(TlsFailure::NotTls) if self.https_only => ClientError::Tls(format!(
                "TLS: {} does not speak TLS, and it was written https:// (never downgraded to plain HTTP)",
                self.registry
            )),
            _ => ClientError::Transport {
                method: method.to_string(),
                url: redact(url),
                message: error_chain(&e),
            },
        }
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
            let sent = self.auth_header_for(&url, scopes).await;
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
            let mut server_wait = None;
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
                Ok(resp) if retryable_status(resp.status().as_u16()) => {
                    server_wait = retry_after(resp.headers());
                    status_error(resp, &method, &url).await
                }
                Ok(resp) => return Ok(resp),
                Err(e) => match self.transport(&method, &url, e) {
                    e @ ClientError::Tls(_) => return Err(e),
                    e => e,
                },
            };
            if attempt >= self.retries {
                return Err(err);
            }
            let backoff = RetryPolicy::REQUEST.wait(attempt, server_wait);
            attempt += 1;
            tracing::debug!("{err}; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Sends a request whose body cannot be replayed (a stream): auth must already be in
    /// place (an earlier request with the same scopes earned the token); no retries here.
    pub(super) async fn send_once(
        &self,
        method: Method,
        url: Url,
        scopes: &[String],
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        let unverified = self.base().await?.1;
        let mut req = self.client(unverified).request(method.clone(), url.clone());
        if let Some(h) = self.auth_header_for(&url, scopes).await {
            req = req.header(reqwest::header::AUTHORIZATION, h);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        build(req)
            .send()
            .await
            .map_err(|e| self.transport(&method, &url, e))
    }

    /// The Authorization header for a request to `url`: only when `url` is on the
    /// registry's own origin (scheme, host, port). An upload `Location` or any other URL a
    /// registry hands out that points elsewhere gets no credentials (distribution spec;
    /// redirects are covered by reqwest, which drops Authorization across hosts).
    async fn auth_header_for(&self, url: &Url, scopes: &[String]) -> Option<String> {
        let (base, _) = self.base().await.ok()?;
        if url.origin() != base.origin() {
            tracing::debug!("not sending credentials to {}", redact(url));
            return None;
        }
        self.auth_header(scopes)
    }

    /// The limits this client reads under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A response body as a stream, cut off when it crawls (`Limits::low_speed_*`).
    pub(super) fn body_stream(&self, resp: Response, method: &Method, url: &Url) -> BlobStream {
        let (m, u) = (method.to_string(), redact(url));
        let what = format!("{m} {u}");
        let s: BlobStream =
            Box::pin(
                resp.bytes_stream()
                    .map_err(move |e| ClientError::Transport {
                        method: m.clone(),
                        url: u.clone(),
                        message: error_chain(&e),
                    }),
            );
        low_speed_guarded(s, &self.limits, what)
    }

    /// Reads a whole response body of at most `cap` bytes; the Content-Length a registry
    /// claims is checked against the cap but never used to allocate.
    pub(super) async fn read_capped(
        &self,
        resp: Response,
        method: &Method,
        url: &Url,
        cap: u64,
        what: &str,
    ) -> Result<Bytes> {
        check_declared(resp.content_length(), cap, what)?;
        collect_capped(self.body_stream(resp, method, url), None, cap, what).await
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

    pub(super) fn delete_scope(repo: &str) -> Vec<String> {
        vec![format!("repository:{repo}:pull,push,delete")]
    }
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

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
