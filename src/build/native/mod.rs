//! The daemonless builder: a RUN-free Dockerfile turned straight into OCI layers, written
//! to an OCI layout in a temporary directory and pushed with the client.
//!
//! Steps of a build:
//! 1. parse the Dockerfile; pick the target stage and the stages it needs (`FROM <stage>`,
//!    `COPY --from`); refuse `RUN` and unknown stages there, all errors at once;
//! 2. per needed stage, in order: start from `scratch`, an earlier stage, or an image's
//!    manifest and config (speculative version first, `image`), then apply each
//!    instruction — COPY/ADD make one reproducible layer each (`layer`), the others change
//!    the config and add an empty-layer history entry;
//! 3. write the config and an OCI manifest, then push to every tag (`push`): the build's
//!    blobs from the layout, base layers registry to registry.
//!
//! Reproducible: every timestamp (layer entries, config `created`, history) is
//! `SOURCE_DATE_EPOCH` or 0; no host names, paths or build times enter the image.
//! Must not run containers or talk to a Docker engine.

mod copy;
mod finish;
mod instructions;
mod stages;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::context::Context;
use super::dockerfile::{self, Dockerfile};
use super::image::BaseImage;
use super::push::{self, BlobSource};
use super::{BuildError, BuildRequest, BuildResult, Builder, BuilderKind, PushedImage};
use crate::client::copy::Progress;
use crate::client::{RawManifest, StoreFactory};
use crate::oci::Platform;
use finish::rfc3339;
use state::{ImageState, labels};

/// The daemonless builder.
pub struct NativeBuilder;

impl Builder for NativeBuilder {
    fn kind(&self) -> BuilderKind {
        BuilderKind::Native
    }

    async fn build(&self, req: &BuildRequest) -> Result<BuildResult, BuildError> {
        let work = tempfile::Builder::new()
            .prefix("gantry-build-")
            .tempdir()
            .map_err(|e| BuildError::io("creating a temporary directory", e))?;
        let out = build_to_layout(req, work.path()).await?;
        let factory = factory(req);
        let pushed = push::push_all(
            &factory,
            &req.tags,
            &out.manifest,
            &out.blobs,
            &req.progress,
        )
        .await;
        if let Progress::Bar(b) = &req.progress {
            b.finish_and_clear();
        }
        let digests = pushed?;
        Ok(BuildResult {
            builder: BuilderKind::Native,
            images: req
                .tags
                .iter()
                .zip(digests)
                .map(|(t, d)| PushedImage {
                    reference: super::shown(t),
                    digest: d,
                })
                .collect(),
            speculative: out.speculative,
        })
    }
}

/// The client factory of a build: the buildset registry has its own credentials and CA.
pub fn factory(req: &BuildRequest) -> StoreFactory {
    let f = StoreFactory::new(req.registry.clone());
    match &req.buildset {
        Some(b) => f.with_registry_options(&b.host, b.options.clone()),
        None => f,
    }
}

/// A built image in a layout directory, ready to push.
pub struct Output {
    pub manifest: RawManifest,
    pub blobs: Vec<BlobSource>,
    pub layout: PathBuf,
    pub speculative: Vec<String>,
}

/// Builds into `work/layout` (tag `latest`), without pushing.
pub async fn build_to_layout(req: &BuildRequest, work: &Path) -> Result<Output, BuildError> {
    let df_path = req.dockerfile_path();
    let file = df_path.display().to_string();
    let (text, ctx) = crate::build::open_inputs(req).await?;
    let df = dockerfile::parse(&file, &text)?;
    let platform = req.target_platform();
    let layout_dir = work.join("layout");
    let mut b = Build {
        file,
        escape: df.escape,
        ctx,
        factory: factory(req),
        buildset: req.buildset.as_ref().map(|b| b.host.clone()),
        platform: platform.clone(),
        epoch: req.source_date_epoch,
        created: rfc3339(req.source_date_epoch),
        blobs_dir: layout_dir.join("blobs/sha256"),
        cache: work.join("cache"),
        images: HashMap::new(),
        build_args: req.build_args.iter().cloned().collect(),
        used_args: BTreeSet::new(),
    };
    let globals = b.global_args(&df)?;
    let target = match &req.target {
        Some(t) => df
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
                BuildError::Invalid(format!(
                    "target stage {t:?} not found in {} (stages: {})",
                    b.file,
                    if names.is_empty() {
                        "none named".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })?,
        None => df.stages.len() - 1,
    };
    let needed = b.check(&df, &globals, target)?;
    let mut built: Vec<Option<ImageState>> = vec![None; df.stages.len()];
    let mut speculative = Vec::new();
    for idx in needed {
        let stage = &df.stages[idx];
        let base_name = b.subst_global(&stage.base, &globals, stage.line)?;
        let mut st = if base_name.eq_ignore_ascii_case("scratch") {
            ImageState::scratch(&platform)
        } else if let Some(i) = stage_ref(&df, &base_name, idx) {
            built[i]
                .clone()
                .ok_or_else(|| b.at(stage.line, format!("stage {base_name:?} was not built")))?
        } else {
            let img = b.image(&base_name, stage.line).await?;
            if img.speculative {
                speculative.push(format!("{} from {}", img.name, img.fetched_from));
            }
            ImageState::from_image(&img, &platform).map_err(|m| b.at(stage.line, m))?
        };
        st.history_reset_onbuild(&b.file, stage.line);
        let mut scope = StageScope {
            args: BTreeMap::new(),
            globals: globals.clone(),
            cmd_set: false,
        };
        for ins in &stage.instructions {
            b.apply(ins, &mut st, &mut scope, &df, &built, idx).await?;
        }
        built[idx] = Some(st);
    }
    let unused: Vec<&String> = b
        .build_args
        .keys()
        .filter(|k| !b.used_args.contains(*k) && k.as_str() != "ZUUL_SIBLINGS")
        .collect();
    if !unused.is_empty() {
        tracing::warn!("build args not consumed by any ARG: {unused:?}");
    }
    let mut last = built[target]
        .take()
        .ok_or_else(|| BuildError::Invalid("target stage was not built".into()))?;
    for (k, v) in &req.labels {
        labels(&mut last.config).insert(k.clone(), Value::String(v.clone()));
    }
    let (manifest, blobs) = b.finish(&last, &layout_dir).await?;
    Ok(Output {
        manifest,
        blobs,
        layout: layout_dir,
        speculative,
    })
}

/// Variables a stage's instructions see: its ARGs, then (in FROM lines) globals.
struct StageScope {
    pub(super) args: BTreeMap<String, String>,
    pub(super) globals: BTreeMap<String, Option<String>>,
    pub(super) cmd_set: bool,
}

struct Build {
    pub(super) file: String,
    pub(super) escape: char,
    pub(super) ctx: Context,
    pub(super) factory: StoreFactory,
    pub(super) buildset: Option<String>,
    pub(super) platform: Platform,
    pub(super) epoch: u64,
    pub(super) created: String,
    pub(super) blobs_dir: PathBuf,
    pub(super) cache: PathBuf,
    pub(super) images: HashMap<String, BaseImage>,
    pub(super) build_args: BTreeMap<String, String>,
    pub(super) used_args: BTreeSet<String>,
}

/// A stage named or numbered `name`, defined before stage `before`.
fn stage_ref(df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if let Some(s) = df.stages[..before]
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Some(s.index);
    }
    match name.parse::<usize>() {
        Ok(i) if i < before => Some(i),
        _ => None,
    }
}

/// True for `--from` values that can only be meant as a stage (no registry, path, tag or
/// digest): treating them as Docker Hub images would turn a typo into a network error.
fn looks_like_stage(name: &str) -> bool {
    !name.contains(['/', ':', '@', '.'])
}
