//! gantry's OCI distribution registry (spec v1.1): the buildset registry started
//! in-process in milliseconds, and the long-lived intermediate registry.
//!
//! Layering points one way: the router feeds one catch-all `/v2/{*rest}` route to the pure
//! path parser (`path.rs`), the dispatcher checks auth (`auth/`), handlers
//! (`handlers/`) speak HTTP and call storage (`storage/`: registry semantics over a byte
//! driver, the filesystem or S3), which never sees HTTP.
//! Servers take an already-bound listener (no port races in tests). `metrics.rs` holds
//! the operations endpoints (`/healthz`, `/readyz`, `/metrics`).

pub mod auth;
pub mod error;
pub mod gc;
mod handlers;
pub mod metrics;
pub mod notify;
pub mod path;
pub mod storage;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Filesystem storage root (and the notification queue's home).
    pub data_dir: PathBuf,
    /// Storage other than `data_dir` (`--storage s3://…`); `None`: the filesystem there.
    pub storage: Option<storage::Location>,
    pub auth: Auth,
    pub read_only: bool,
    /// TLS server configuration; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_manifest_size: usize,
    /// Endpoints to send distribution notifications to (`--notify URL`).
    pub notify: Vec<String>,
    /// Run garbage collection in-process this often (`serve --interval`).
    pub gc_interval: Option<Duration>,
    /// Options of the in-process collections; `upload_max_age` also applies at start.
    pub gc: gc::GcOptions,
}

impl RegistryConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        RegistryConfig {
            data_dir: data_dir.into(),
            storage: None,
            auth: Auth::default(),
            read_only: false,
            tls: None,
            max_manifest_size: DEFAULT_MAX_MANIFEST,
            notify: Vec::new(),
            gc_interval: None,
            gc: gc::GcOptions::default(),
        }
    }

    /// A configuration on the storage `location` names.
    pub fn at(location: storage::Location) -> Self {
        match location {
            storage::Location::Dir(d) => RegistryConfig::new(d),
            other => RegistryConfig {
                storage: Some(other),
                ..RegistryConfig::new(PathBuf::new())
            },
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
    pub metrics: metrics::Metrics,
    pub gc_interval: Option<Duration>,
    pub gc: gc::GcOptions,
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
        let storage = match &config.storage {
            Some(location) => Storage::at(location)?,
            None => Storage::open(&config.data_dir)?,
        };
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
                metrics: metrics::Metrics::default(),
                gc_interval: config.gc_interval,
                gc: config.gc,
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
            .route("/healthz", axum::routing::get(metrics::healthz))
            .route("/readyz", axum::routing::get(metrics::readyz))
            .route("/metrics", axum::routing::get(metrics::metrics))
            .fallback(handlers::not_found)
            .layer(middleware::from_fn_with_state(
                self.inner.clone(),
                log_and_version,
            ))
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
        tokio::spawn(housekeeping(self.inner.clone()));
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

/// Removes what dead requests left behind (staging files, stale upload sessions) at start,
/// then collects garbage every `gc_interval` if set.
async fn housekeeping(inner: Arc<Inner>) {
    let storage = &inner.storage;
    let tmp = storage.sweep_tmp(storage::TMP_MAX_IDLE, false).await;
    let uploads = storage.sweep_uploads(inner.gc.upload_max_age, false).await;
    match (tmp, uploads) {
        (Ok(0), Ok(0)) => {}
        (Ok(t), Ok(u)) => tracing::info!("removed {t} staging files, {u} stale upload sessions"),
        (Err(e), _) | (_, Err(e)) => tracing::warn!("cleaning up at start: {e}"),
    }
    let Some(every) = inner.gc_interval else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; collect after one interval
    loop {
        tick.tick().await;
        match gc::collect(storage, &inner.gc).await {
            Ok(r) => {
                inner.metrics.gc(&r);
                tracing::info!(
                    "gc: deleted {} blobs ({} bytes), {} manifests, {} links, {} uploads",
                    r.blobs_deleted.len(),
                    r.bytes_freed,
                    r.manifests_deleted.len(),
                    r.links_removed,
                    r.uploads_removed
                );
            }
            Err(e) => tracing::error!("gc: {e}"),
        }
    }
}

/// The authenticated user of a request, left in the response by the dispatcher for the
/// request log.
#[derive(Clone, Debug)]
pub(crate) struct User(pub String);

/// Logs one line per request (never headers: they carry credentials) with the remote
/// address and the authenticated user, counts it, and adds the
/// `Docker-Distribution-API-Version` header clients look for.
async fn log_and_version(
    axum::extract::State(inner): axum::extract::State<Arc<Inner>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let remote = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "-".into());
    let start = Instant::now();
    let received = inner.metrics.bytes_in.clone();
    let req = req.map(|body| {
        use futures_util::StreamExt;
        axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
            if let Ok(b) = &chunk {
                received.inc_by(b.len() as u64);
            }
            chunk
        }))
    });
    let mut resp = next.run(req).await.into_response();
    resp.headers_mut().insert(
        API_VERSION.clone(),
        HeaderValue::from_static("registry/2.0"),
    );
    let user = resp
        .extensions()
        .get::<User>()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| "-".into());
    let status = resp.status().as_u16();
    let sent = if method == axum::http::Method::HEAD {
        None
    } else {
        resp.headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    inner.metrics.request(method.as_str(), &path, status, sent);
    tracing::info!(
        "request {} {} {} {}ms remote={} user={}",
        method,
        path,
        status,
        start.elapsed().as_millis(),
        remote,
        user
    );
    resp
}
