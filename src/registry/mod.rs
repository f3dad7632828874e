//! gantry's OCI distribution registry (spec v1.1): the buildset registry started
//! in-process in milliseconds, and the long-lived intermediate registry.
//!
//! Layering points one way: the router feeds one catch-all `/v2/{*rest}` route to the pure
//! path parser (`path.rs`), the dispatcher checks auth (`auth/`), handlers
//! (`handlers/`) speak HTTP and call storage (`storage/`), which never sees HTTP.
//! Servers take an already-bound listener (no port races in tests).

pub mod auth;
pub mod error;
pub mod gc;
mod handlers;
pub mod notify;
pub mod path;
pub mod storage;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

pub use auth::{Access, Auth, Htpasswd, Identity, TokenAuthority};
pub use error::{Code, RegistryError};
pub use storage::Storage;

/// Manifests up to this size are accepted by default (the spec asks for at least 4 MiB).
pub const DEFAULT_MAX_MANIFEST: usize = 4 << 20;

/// Everything a registry instance needs.
pub struct RegistryConfig {
    pub data_dir: PathBuf,
    pub auth: Auth,
    pub read_only: bool,
    /// TLS server configuration; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_manifest_size: usize,
    /// Endpoints to send distribution notifications to (`--notify URL`).
    pub notify: Vec<String>,
}

impl RegistryConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        RegistryConfig {
            data_dir: data_dir.into(),
            auth: Auth::default(),
            read_only: false,
            tls: None,
            max_manifest_size: DEFAULT_MAX_MANIFEST,
            notify: Vec::new(),
        }
    }
}

pub(crate) struct Inner {
    pub storage: Storage,
    pub auth: Auth,
    pub read_only: bool,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_manifest_size: usize,
    pub notifier: Option<Arc<notify::Notifier>>,
}

/// A registry instance: build its router, or serve it on a listener.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Result<Registry, ServeError> {
        let storage = Storage::open(&config.data_dir)?;
        let notifier = if config.notify.is_empty() {
            None
        } else {
            Some(notify::Notifier::new(
                &config.data_dir,
                config.notify.clone(),
            )?)
        };
        Ok(Registry {
            inner: Arc::new(Inner {
                storage,
                auth: config.auth,
                read_only: config.read_only,
                tls: config.tls,
                max_manifest_size: config.max_manifest_size,
                notifier,
            }),
        })
    }

    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The HTTP application, usable without a socket (tests) or behind [`Registry::serve`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2", axum::routing::any(handlers::dispatch))
            .route("/v2/", axum::routing::any(handlers::dispatch))
            .route("/v2/{*rest}", axum::routing::any(handlers::dispatch))
            .route("/token", axum::routing::get(handlers::token))
            .fallback(handlers::not_found)
            .layer(middleware::from_fn(log_and_version))
            .with_state(self.inner.clone())
    }

    /// Serves on an already-bound listener until `shutdown` completes.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        listener.set_nonblocking(true)?;
        if let Some(n) = &self.inner.notifier {
            tokio::spawn(n.clone().deliver());
        }
        // The shared start: header-read and idle timeouts, TLS, graceful shutdown.
        crate::server::serve(listener, self.router(), self.inner.tls.clone(), shutdown).await?;
        Ok(())
    }

    /// Binds `addr`, starts serving in the background, and returns the bound address.
    /// What embedders (roles, tests) use to start a registry in-process.
    pub async fn spawn(
        self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
        let listener = std::net::TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = self.serve(listener, std::future::pending()).await {
                tracing::error!("registry on {bound}: {e}");
            }
        });
        Ok((bound, task))
    }
}

static API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// Logs one line per request (never headers: they carry credentials) and adds the
/// `Docker-Distribution-API-Version` header clients look for.
async fn log_and_version(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let start = Instant::now();
    let mut resp = next.run(req).await.into_response();
    resp.headers_mut().insert(
        API_VERSION.clone(),
        HeaderValue::from_static("registry/2.0"),
    );
    tracing::info!(
        "request {} {} {} {}ms",
        method,
        path,
        resp.status().as_u16(),
        start.elapsed().as_millis()
    );
    resp
}
