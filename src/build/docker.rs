//! The Docker engine builder, through bollard and the classic builder API (`POST /build`),
//! which Debian's Docker 20.10 (API 1.41) serves; the API version is negotiated.
//!
//! Steps of a build:
//! 1. connect (`DOCKER_HOST` or the local socket) and negotiate the API version — an
//!    engine that does not answer is a clear error naming where it was looked for;
//! 2. parse the Dockerfile for its `FROM` images; every one that exists in the buildset
//!    registry (ZUUL.md §9 naming: `quay.io/example/base` there for
//!    `quay.io/example/base:1`) is pulled into the engine *by digest* and the `FROM` is
//!    rewritten to that digest reference (`127.0.0.1:PORT/example/base@sha256:…`) in the
//!    Dockerfile sent with the context — so speculative base images from *any* registry
//!    work, not only Docker Hub's, the build runs without `--pull`, and no name the user
//!    has in the engine (`python:3.12`) is ever retagged;
//! 3. send the context as a tar (`.dockerignore` applied; the Dockerfile added when it
//!    lives outside the context or was rewritten), with build args, labels and target;
//!    stream the output line by line to the request's output sink (console, job log);
//!    errors the engine reports inside successful stream items fail the build;
//! 4. tag the image as each destination and push it through the engine with the
//!    registry's credentials, reading the pushed digest from the push stream;
//! 5. remove what gantry added to the engine: the destination tags (the registry holds
//!    the image now) and the speculative base images' digest references.
//!
//! Pushing through the engine (rather than exporting and pushing with gantry's client)
//! keeps the engine's own layer compression and upload cache, and the digest returned is
//! the one the registry stores; the engine must trust the destination registry, as it
//! must for `docker push`.
//!
//! Must not shell out to the docker CLI.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptions, CreateImageOptions, PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;

use super::context::{Context, Kind};
use super::docker_file::{
    Pulled, dockerfile_in_context, dockerfile_outside, global_args, rewrite_from,
};
use super::dockerfile;
use super::words;
use super::{BuildError, BuildRequest, BuildResult, Builder, BuilderKind, PushedImage};
use crate::client::{ClientError, Credentials, ImageRef};
use crate::oci::{Digest, Reference};

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {host}: {why} (is dockerd running? DOCKER_HOST selects another engine; --builder native needs none)"
    )]
    Unreachable { host: String, why: String },
    #[error("docker build failed: {0}")]
    Build(String),
    #[error("docker {action} {image}: {why}")]
    Engine {
        action: &'static str,
        image: String,
        why: String,
    },
    #[error("pushing {image}: the engine reported no digest")]
    NoDigest { image: String },
    #[error("{0}: only registry references can be pushed by the docker builder")]
    NotRegistry(String),
    #[error("checking the buildset registry for {image}: {source}")]
    Buildset {
        image: String,
        #[source]
        source: ClientError,
    },
}

impl DockerError {
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DockerError::Unreachable { .. } | DockerError::NotRegistry(_)
        )
    }
}

/// A connected engine.
pub struct DockerBuilder {
    docker: Docker,
}

/// Where the engine is: `DOCKER_HOST`, else the local socket.
fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// A build can stream for a long time: the client timeout is generous.
const TIMEOUT_SECS: u64 = 3600;

impl DockerBuilder {
    /// Step 1.
    pub async fn connect() -> Result<DockerBuilder, DockerError> {
        let host = docker_host();
        let unreachable = |why: String| DockerError::Unreachable {
            host: host.clone(),
            why,
        };
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(&host, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else {
            return Err(unreachable("unsupported DOCKER_HOST scheme".into()));
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let docker = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            docker.negotiate_version(),
        )
        .await
        .map_err(|_| unreachable("no answer within 10s".into()))?
        .map_err(|e| unreachable(error_chain(&e)))?;
        tracing::debug!("docker engine at {host}, API {}", docker.client_version());
        Ok(DockerBuilder { docker })
    }

    /// True when an engine answers (for `--builder auto`).
    pub async fn reachable() -> bool {
        match tokio::time::timeout(std::time::Duration::from_secs(3), Self::connect()).await {
            Ok(Ok(d)) => d.docker.ping().await.is_ok(),
            _ => false,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn credentials_for(registry: &str, explicit: Option<&Credentials>) -> Option<DockerCredentials> {
    let c = match explicit {
        Some(c) => c.clone(),
        None => Credentials::from_docker_config(registry),
    };
    match c {
        Credentials::Anonymous => None,
        Credentials::Basic { username, password } => Some(DockerCredentials {
            username: Some(username),
            password: Some(password),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        }),
        Credentials::IdentityToken(t) => Some(DockerCredentials {
            identitytoken: Some(t),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        }),
    }
}

impl Builder for DockerBuilder {
    fn kind(&self) -> BuilderKind {
        BuilderKind::Docker
    }

    async fn build(&self, req: &BuildRequest) -> Result<BuildResult, BuildError> {
        for t in &req.tags {
            if !matches!(t, ImageRef::Registry(_)) {
                return Err(DockerError::NotRegistry(t.to_string()).into());
            }
        }
        let df_path = req.dockerfile_path();
        let file = df_path.display().to_string();
        let (text, ctx) = super::open_inputs(req).await?;
        let df = dockerfile::parse(&file, &text)?;
        let pulled = self.prepull(req, &df).await?;
        let result = self
            .build_and_push(req, &ctx, &df, &df_path, &text, &pulled)
            .await;
        // Step 5, whatever the outcome: nothing gantry added stays in the engine.
        for p in &pulled {
            self.untag(&p.digest_ref).await;
        }
        let (images, pushed_tags) = result?;
        for t in &pushed_tags {
            self.untag(t).await;
        }
        let speculative = pulled
            .iter()
            .map(|p| format!("{} from {}", p.name, p.digest_ref))
            .collect();
        Ok(BuildResult {
            builder: BuilderKind::Docker,
            images,
            speculative,
        })
    }
}

impl DockerBuilder {
    /// Steps 3 and 4; returns the pushed images and the engine tags created for them.
    async fn build_and_push(
        &self,
        req: &BuildRequest,
        ctx: &Context,
        df: &dockerfile::Dockerfile,
        df_path: &Path,
        text: &str,
        pulled: &[Pulled],
    ) -> Result<(Vec<PushedImage>, Vec<String>), BuildError> {
        let rewritten = rewrite_from(df, text, &self.stage_bases(req, df), pulled);
        let (df_name, extra) = match &rewritten {
            Some(t) => dockerfile_outside(t),
            None => dockerfile_in_context(&ctx.root, df_path, text),
        };
        let image_id = self.run_build(req, ctx, &df_name, extra).await?;
        let mut images = Vec::new();
        let mut tags = Vec::new();
        for t in &req.tags {
            let ImageRef::Registry(r) = t else { continue };
            let pushed = self.push(req, &image_id, r, &mut tags).await;
            images.push(PushedImage {
                reference: super::shown(t),
                digest: match pushed {
                    Ok(d) => d,
                    Err(e) => {
                        for t in &tags {
                            self.untag(t).await;
                        }
                        return Err(e);
                    }
                },
            });
        }
        Ok((images, tags))
    }

    /// Removes one reference gantry created; the image goes when nothing else names it
    /// (its parent layers stay: `noprune`, so the build cache survives).
    async fn untag(&self, name: &str) {
        let opts = RemoveImageOptions {
            force: false,
            noprune: true,
            ..Default::default()
        };
        if let Err(e) = self.docker.remove_image(name, Some(opts), None).await {
            tracing::warn!("removing {name} from the engine: {}", error_chain(&e));
        }
    }

    /// Each stage's `FROM` image after global `ARG` substitution (`None`: unresolvable).
    fn stage_bases(&self, req: &BuildRequest, df: &dockerfile::Dockerfile) -> Vec<Option<String>> {
        let globals = global_args(req, df);
        df.stages
            .iter()
            .map(|stage| {
                words::process_word(&stage.base, &|n: &str| globals.get(n).cloned(), df.escape).ok()
            })
            .collect()
    }

    /// Step 2: speculative base images into the engine, by digest.
    async fn prepull(
        &self,
        req: &BuildRequest,
        df: &dockerfile::Dockerfile,
    ) -> Result<Vec<Pulled>, BuildError> {
        let Some(buildset) = &req.buildset else {
            return Ok(Vec::new());
        };
        let names = self.stage_bases(req, df);
        let factory = super::native::factory(req);
        let mut done = Vec::new();
        let mut pulled = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            let Some(name) = name else {
                continue;
            };
            let lower = name.to_ascii_lowercase();
            if lower == "scratch"
                || df.stages[..i]
                    .iter()
                    .any(|s| s.name.as_deref() == Some(lower.as_str()))
                || done.contains(&name)
            {
                continue;
            }
            done.push(name.clone());
            let Ok(r) = Reference::parse(&name) else {
                continue;
            };
            // Speculative images are tags; a digest pins an exact, already-published image.
            if r.digest.is_some() {
                continue;
            }
            let Some(repo) = super::image::buildset_repository(&r) else {
                continue;
            };
            let tag = r.tag.clone().unwrap_or_else(|| "latest".to_string());
            let spec = Reference {
                registry: buildset.host.clone(),
                repository: repo.clone(),
                tag: Some(tag.clone()),
                digest: None,
            };
            let store = factory
                .store(&ImageRef::Registry(spec.clone()))
                .map_err(|source| DockerError::Buildset {
                    image: name.clone(),
                    source,
                })?;
            let digest = match store.get_manifest(&tag).await {
                Ok(m) => m.digest,
                Err(ClientError::NotFound(_)) => continue,
                Err(source) => {
                    return Err(DockerError::Buildset {
                        image: name.clone(),
                        source,
                    }
                    .into());
                }
            };
            let from = format!("{}/{repo}", buildset.host);
            let digest_ref = format!("{from}@{digest}");
            tracing::info!("FROM {name}: pulling the speculative image {from}:{tag} ({digest})");
            let creds = credentials_for(&buildset.host, buildset.options.credentials.as_ref());
            let opts = CreateImageOptions {
                from_image: Some(from.clone()),
                tag: Some(digest.to_string()),
                platform: req
                    .platform
                    .as_ref()
                    .map(platform_string)
                    .unwrap_or_default(),
                ..Default::default()
            };
            let mut s = self.docker.create_image(Some(opts), None, creds);
            while let Some(item) = s.next().await {
                item.map_err(|e| DockerError::Engine {
                    action: "pull",
                    image: digest_ref.clone(),
                    why: error_chain(&e),
                })?;
            }
            pulled.push(Pulled { name, digest_ref });
        }
        Ok(pulled)
    }

    /// Step 3: the build; returns the image ID.
    async fn run_build(
        &self,
        req: &BuildRequest,
        ctx: &Context,
        df_name: &str,
        extra: Option<(String, Vec<u8>)>,
    ) -> Result<String, BuildError> {
        let mut always = vec![".dockerignore".to_string()];
        if extra.is_none() {
            always.push(df_name.to_string());
        }
        let always_ref: Vec<&str> = always.iter().map(String::as_str).collect();
        let c = ctx.clone();
        let always: Vec<String> = always_ref.iter().map(|s| s.to_string()).collect();
        let entries = super::blocking("walking the build context", move || {
            let always: Vec<&str> = always.iter().map(String::as_str).collect();
            c.all(&always)
        })
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            let sink = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            let mut tar = tar::Builder::new(sink);
            tar.mode(tar::HeaderMode::Deterministic);
            let res = (|| -> std::io::Result<()> {
                for e in &entries {
                    let mut h = tar::Header::new_gnu();
                    h.set_mode(e.mode);
                    h.set_mtime(0);
                    match &e.kind {
                        Kind::Dir => {
                            h.set_entry_type(tar::EntryType::Directory);
                            h.set_size(0);
                            tar.append_data(&mut h, format!("{}/", e.rel), std::io::empty())?;
                        }
                        Kind::Symlink(t) => {
                            h.set_entry_type(tar::EntryType::Symlink);
                            h.set_size(0);
                            tar.append_link(&mut h, &e.rel, t)?;
                        }
                        Kind::File { path, size } => {
                            h.set_entry_type(tar::EntryType::Regular);
                            h.set_size(*size);
                            let f = std::fs::File::open(path)?;
                            tar.append_data(&mut h, &e.rel, std::io::Read::take(f, *size))?;
                        }
                    }
                }
                if let Some((name, bytes)) = &extra {
                    let mut h = tar::Header::new_gnu();
                    h.set_mode(0o644);
                    h.set_size(bytes.len() as u64);
                    h.set_entry_type(tar::EntryType::Regular);
                    tar.append_data(&mut h, name, bytes.as_slice())?;
                }
                tar.into_inner()?.flush()
            })();
            if let Err(e) = &res {
                let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
            }
            res
        });
        let body = bollard::body_try_stream(tokio_stream(rx));
        let labels: HashMap<String, String> = req.labels.clone().into_iter().collect();
        let build_args: HashMap<String, String> = req.build_args.iter().cloned().collect();
        let opts = BuildImageOptions {
            dockerfile: df_name.to_string(),
            buildargs: Some(build_args),
            labels: Some(labels),
            target: req.target.clone().unwrap_or_default(),
            platform: req
                .platform
                .as_ref()
                .map(platform_string)
                .unwrap_or_default(),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut stream = self.docker.build_image(opts, None, Some(body));
        let mut id = None;
        let mut output = String::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(i) => i,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(DockerError::Build(error.trim().to_string()).into());
                }
                Err(e) => return Err(DockerError::Build(error_chain(&e)).into()),
            };
            if let Some(d) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Build(d).into());
            }
            if let Some(s) = info.stream {
                output.push_str(&s);
                while let Some(pos) = output.find('\n') {
                    let line: String = output.drain(..=pos).collect();
                    let line = line.trim_end();
                    if !line.is_empty() {
                        match &req.output {
                            Some(out) => {
                                let _ = out.send(line.to_string());
                            }
                            None => tracing::debug!("{line}"),
                        }
                    }
                    if let Some(rest) = line.strip_prefix("Successfully built ") {
                        id.get_or_insert_with(|| rest.trim().to_string());
                    }
                }
            }
            if let Some(i) = info.aux.and_then(|a| a.id) {
                id = Some(i);
            }
        }
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(BuildError::io("sending the build context", e)),
            Err(_) => {
                return Err(BuildError::io(
                    "sending the build context",
                    std::io::Error::other("writer panicked"),
                ));
            }
        }
        id.ok_or_else(|| DockerError::Build("the engine reported no image ID".into()).into())
    }

    /// Step 4: tag and push one destination; returns the pushed digest.
    async fn push(
        &self,
        req: &BuildRequest,
        image_id: &str,
        r: &Reference,
        created: &mut Vec<String>,
    ) -> Result<Digest, BuildError> {
        let tag = r.tag.clone().unwrap_or_else(|| "latest".to_string());
        let name = r.name();
        let engine = |action: &'static str, e: bollard::errors::Error| DockerError::Engine {
            action,
            image: format!("{name}:{tag}"),
            why: match e {
                bollard::errors::Error::DockerStreamError { error } => error,
                e => error_chain(&e),
            },
        };
        self.docker
            .tag_image(
                image_id,
                Some(TagImageOptions {
                    repo: Some(name.clone()),
                    tag: Some(tag.clone()),
                }),
            )
            .await
            .map_err(|e| engine("tag", e))?;
        created.push(format!("{name}:{tag}"));
        let creds = if req.buildset.as_ref().is_some_and(|b| b.host == r.registry) {
            let b = req
                .buildset
                .as_ref()
                .and_then(|b| b.options.credentials.as_ref());
            credentials_for(&r.registry, b)
        } else {
            credentials_for(&r.registry, req.registry.credentials.as_ref())
        };
        let mut s = self.docker.push_image(
            &name,
            Some(PushImageOptions {
                tag: Some(tag.clone()),
                ..Default::default()
            }),
            creds,
        );
        let mut digest = None;
        while let Some(item) = s.next().await {
            let info = item.map_err(|e| engine("push", e))?;
            if let Some(m) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Engine {
                    action: "push",
                    image: format!("{name}:{tag}"),
                    why: m,
                }
                .into());
            }
            // "<tag>: digest: sha256:… size: N" is the last status of a push.
            if let Some(st) = info.status
                && let Some((_, rest)) = st.split_once("digest: ")
                && let Some(d) = rest.split_whitespace().next()
                && let Ok(d) = Digest::parse(d)
            {
                digest = Some(d);
            }
        }
        let d = digest.ok_or_else(|| DockerError::NoDigest {
            image: format!("{name}:{tag}"),
        })?;
        tracing::info!("pushed {name}:{tag} {d}");
        Ok(d)
    }
}

fn platform_string(p: &crate::oci::Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

const CHUNK: usize = 256 << 10;

/// A blocking writer feeding an async body, in chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the engine stopped reading the context",
            )
        })
    }
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
