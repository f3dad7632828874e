//! Image builders: a context directory and a Dockerfile in, an image pushed to every
//! requested tag out, with the manifest digest(s) returned for roles and reports.
//!
//! Two builders behind one trait: `docker` drives a Docker engine through bollard (classic
//! builder API, so RUN works), `native` is daemonless and turns a RUN-free Dockerfile
//! straight into reproducible OCI layers. Both honour the buildset registry (speculative
//! base images), Zuul's change labels and siblings (ZUUL.md §9).
//!
//! Owns Dockerfile semantics and layer production. Must not implement registry protocol
//! (it uses `client`), must not print (progress goes through `tracing`; the CLI prints
//! results), and never shells out to docker or skopeo.

pub mod context;
pub mod docker;
mod docker_file;
pub mod dockerfile;
pub mod ignore;
pub mod image;
pub mod layer;
pub mod native;
pub mod push;
pub mod siblings;
pub mod words;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::client::{ClientError, ClientOptions, ImageRef};
use crate::oci::{Digest, Platform};

/// Which builder to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderKind {
    Docker,
    Native,
}

impl std::fmt::Display for BuilderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuilderKind::Docker => "docker",
            BuilderKind::Native => "native",
        })
    }
}

/// The buildset registry holding speculative images (ZUUL.md §9): `host:port` plus how to
/// talk to it.
#[derive(Clone, Debug)]
pub struct BuildsetRegistry {
    pub host: String,
    pub options: ClientOptions,
}

/// A sibling project copied into `<context>/.zuul-siblings/<name>` for the build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sibling {
    /// Path under `.zuul-siblings` (Zuul uses the canonical project name).
    pub name: String,
    pub dir: PathBuf,
}

/// Everything a build needs, validated.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub context: PathBuf,
    /// The Dockerfile (default `<context>/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// Destinations; the image is pushed to each.
    pub tags: Vec<ImageRef>,
    pub target: Option<String>,
    /// `--build-arg K=V`, in order.
    pub build_args: Vec<(String, String)>,
    /// `--label K=V` plus the change labels.
    pub labels: BTreeMap<String, String>,
    /// Target platform (default: linux and this machine's architecture).
    pub platform: Option<Platform>,
    pub buildset: Option<BuildsetRegistry>,
    pub siblings: Vec<Sibling>,
    /// Options for every registry except the buildset registry.
    pub registry: ClientOptions,
    /// Seconds since the epoch for every timestamp (native builder): `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: u64,
    /// Where the build's own output goes, line by line, as it happens (the docker
    /// builder's `RUN` output): the console for `gantry build`, job-output.txt for roles.
    /// `None` logs it at debug level.
    pub output: Option<OutputSink>,
    /// How the native builder shows its uploads: a byte bar on a terminal, a line per blob,
    /// or nothing (roles: their log has the build's own lines).
    pub progress: crate::client::copy::Progress,
}

/// Receives build output lines (the builder must not print; its caller decides where).
pub type OutputSink = tokio::sync::mpsc::UnboundedSender<String>;

impl BuildRequest {
    /// Adds Zuul's change labels (`org.zuul-ci.change`, `org.zuul-ci.change_url`).
    pub fn with_change(mut self, change: Option<&str>, url: Option<&str>) -> Self {
        if let Some(c) = change {
            self.labels
                .insert("org.zuul-ci.change".to_string(), c.to_string());
        }
        if let Some(u) = url {
            self.labels
                .insert("org.zuul-ci.change_url".to_string(), u.to_string());
        }
        self
    }

    pub fn dockerfile_path(&self) -> PathBuf {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| self.context.join("Dockerfile"))
    }

    pub fn target_platform(&self) -> Platform {
        self.platform.clone().unwrap_or_else(host_platform)
    }
}

/// One pushed tag.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PushedImage {
    pub reference: String,
    pub digest: Digest,
}

/// What a build produced.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildResult {
    pub builder: BuilderKind,
    pub images: Vec<PushedImage>,
    /// Base images taken from the buildset registry (speculative versions).
    pub speculative: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] dockerfile::DockerfileError),
    #[error(transparent)]
    Context(#[from] context::ContextError),
    /// A problem in what the user asked for, at a line of the Dockerfile.
    #[error("{file}:{line}: {message}")]
    Instruction {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Siblings(#[from] siblings::SiblingsError),
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Push(#[from] push::PushError),
    #[error(transparent)]
    Docker(#[from] docker::DockerError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// True when the user can fix it by changing input or flags (exit 2).
    pub fn is_usage(&self) -> bool {
        match self {
            BuildError::Dockerfile(_)
            | BuildError::Context(_)
            | BuildError::Instruction { .. }
            | BuildError::Invalid(_)
            | BuildError::Read { .. } => true,
            BuildError::Siblings(e) => e.is_usage(),
            BuildError::Image(e) => e.is_usage(),
            BuildError::Push(e) => e.is_usage(),
            BuildError::Docker(e) => e.is_usage(),
            BuildError::Layer(_) | BuildError::Io { .. } => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<ClientError> for BuildError {
    fn from(e: ClientError) -> Self {
        BuildError::Push(push::PushError::Client(e))
    }
}

/// A builder: turns a request into pushed images.
pub trait Builder {
    fn kind(&self) -> BuilderKind;
    fn build(
        &self,
        req: &BuildRequest,
    ) -> impl std::future::Future<Output = Result<BuildResult, BuildError>> + Send;
}

/// Runs a build with the chosen builder (`None`: docker when an engine answers, else
/// native). Siblings are copied in first and removed afterwards, also on failure.
pub async fn build(
    kind: Option<BuilderKind>,
    req: &BuildRequest,
) -> Result<BuildResult, BuildError> {
    let kind = match kind {
        Some(k) => k,
        None => {
            if docker::DockerBuilder::reachable().await {
                BuilderKind::Docker
            } else {
                tracing::info!("no Docker engine reachable: using the native builder");
                BuilderKind::Native
            }
        }
    };
    let mut req = req.clone();
    let (ctx, sibs) = (req.context.clone(), req.siblings.clone());
    let guard = blocking("copying siblings", move || {
        siblings::Siblings::copy_in(&ctx, &sibs)
    })
    .await?;
    if let Some(arg) = siblings::build_arg(&req.siblings) {
        req.build_args.push(arg);
    }
    let result = match kind {
        BuilderKind::Docker => match docker::DockerBuilder::connect().await {
            Ok(d) => d.build(&req).await,
            Err(e) => Err(e.into()),
        },
        BuilderKind::Native => native::NativeBuilder.build(&req).await,
    };
    // Removing the copies is a tree walk too: off the runtime.
    let _ = tokio::task::spawn_blocking(move || drop(guard)).await;
    result
}

/// Blocking file-system work of a build (the context walk, reading the Dockerfile,
/// copying siblings) run off the async runtime.
pub(crate) async fn blocking<T, E>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, BuildError>
where
    T: Send + 'static,
    E: Into<BuildError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BuildError::io(what, std::io::Error::other(e)))?
        .map_err(Into::into)
}

/// Both builders' first step, off the runtime: the Dockerfile's text and the opened
/// context (its `.dockerignore` parsed).
pub(crate) async fn open_inputs(
    req: &BuildRequest,
) -> Result<(String, context::Context), BuildError> {
    let df_path = req.dockerfile_path();
    let dir = req.context.clone();
    blocking("reading the build context", move || {
        let text = std::fs::read_to_string(&df_path).map_err(|source| BuildError::Read {
            path: df_path.clone(),
            source,
        })?;
        Ok::<_, BuildError>((text, context::Context::open(&dir)?))
    })
    .await
}

/// How a destination is shown in results: `host/repo:tag` (the tag pushed, `latest` when
/// none was written), `oci:DIR:tag` for layouts.
pub fn shown(r: &ImageRef) -> String {
    match r {
        ImageRef::Registry(reg) if reg.tag.is_none() && reg.digest.is_none() => {
            reg.with_tag("latest").to_string()
        }
        ImageRef::Registry(reg) => reg.to_string(),
        other => other.to_string(),
    }
}

/// This machine's platform in OCI words (`linux/amd64`).
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    Platform {
        os: "linux".to_string(),
        architecture: arch.to_string(),
        ..Platform::default()
    }
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Result<Platform, BuildError> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            ..Platform::default()
        }),
        _ => Err(BuildError::Invalid(format!(
            "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/amd64"
        ))),
    }
}

/// `SOURCE_DATE_EPOCH` from the environment, else 0.
pub fn source_date_epoch() -> Result<u64, BuildError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .ok()
            // jiff's range ends on 9999-12-30: later times have no RFC 3339 form here.
            .filter(|s| i64::try_from(*s).is_ok_and(|s| s <= jiff::Timestamp::MAX.as_second()))
            .ok_or_else(|| {
                BuildError::Invalid(format!(
                    "SOURCE_DATE_EPOCH={v:?}: expected seconds since 1970-01-01 (up to year 9999)"
                ))
            }),
        _ => Ok(0),
    }
}
