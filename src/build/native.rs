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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::context::{Context, Kind};
use super::dockerfile::{self, Args, Dockerfile, DockerfileError, Instruction, LineError};
use super::image::{self, BaseImage};
use super::layer::{BuiltLayer, Entries, EntryKind, LayerEntry};
use super::push::{self, BlobSource};
use super::words::{self, Vars};
use super::{BuildError, BuildRequest, BuildResult, Builder, BuilderKind, PushedImage};
use crate::client::layout::Layout;
use crate::client::{RawManifest, Store, StoreFactory};
use crate::oci::{Descriptor, Digest, MediaType, Platform};

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
        let digests = push::push_all(&factory, &req.tags, &out.manifest, &out.blobs).await?;
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
    let text = std::fs::read_to_string(&df_path).map_err(|source| BuildError::Read {
        path: df_path.clone(),
        source,
    })?;
    let ctx = Context::open(&req.context)?;
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

/// Where a layer's bytes are.
#[derive(Clone)]
enum Layer {
    Base {
        desc: Descriptor,
        store: Arc<Store>,
        image: String,
    },
    Built {
        built: BuiltLayer,
        entries: Arc<Entries>,
    },
}

/// The image a stage has produced so far.
#[derive(Clone)]
struct ImageState {
    layers: Vec<Layer>,
    diff_ids: Vec<Value>,
    history: Vec<Value>,
    config: Map<String, Value>,
    platform: Platform,
    author: Option<String>,
}

impl ImageState {
    fn scratch(platform: &Platform) -> ImageState {
        ImageState {
            layers: Vec::new(),
            diff_ids: Vec::new(),
            history: Vec::new(),
            config: Map::new(),
            platform: platform.clone(),
            author: None,
        }
    }

    fn from_image(img: &BaseImage, target: &Platform) -> Result<ImageState, String> {
        let c = &img.config;
        let diff_ids = c["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if diff_ids.len() != img.layers.len() {
            return Err(format!(
                "image {}: {} layers but {} diff_ids in its config",
                img.name,
                img.layers.len(),
                diff_ids.len()
            ));
        }
        let s = |k: &str| c[k].as_str().filter(|v| !v.is_empty()).map(String::from);
        Ok(ImageState {
            layers: img
                .layers
                .iter()
                .map(|d| Layer::Base {
                    desc: d.clone(),
                    store: img.store.clone(),
                    image: img.name.clone(),
                })
                .collect(),
            diff_ids,
            history: c["history"].as_array().cloned().unwrap_or_default(),
            config: c["config"].as_object().cloned().unwrap_or_default(),
            platform: Platform {
                os: s("os").unwrap_or_else(|| target.os.clone()),
                architecture: s("architecture").unwrap_or_else(|| target.architecture.clone()),
                variant: s("variant").or_else(|| target.variant.clone()),
                ..Platform::default()
            },
            author: None,
        })
    }

    /// ONBUILD triggers of a base run in the child with Docker; here they cannot (they
    /// are usually RUN), so they are dropped with a warning, as the child's config drops
    /// them anyway.
    fn history_reset_onbuild(&mut self, file: &str, line: usize) {
        if let Some(Value::Array(t)) = self.config.remove("OnBuild")
            && !t.is_empty()
        {
            tracing::warn!(
                "{file}:{line}: the base image has ONBUILD triggers, which the native builder does not run"
            );
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect()
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => env.push((key.to_string(), value.to_string())),
        }
        self.config.insert(
            "Env".into(),
            Value::Array(
                env.into_iter()
                    .map(|(k, v)| Value::String(format!("{k}={v}")))
                    .collect(),
            ),
        );
    }

    fn workdir(&self) -> String {
        self.config
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .get("Shell")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
}

fn labels(config: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let v = config.entry("Labels").or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = config.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Variables a stage's instructions see: its ARGs, then (in FROM lines) globals.
struct StageScope {
    args: BTreeMap<String, String>,
    globals: BTreeMap<String, Option<String>>,
    cmd_set: bool,
}

struct Build {
    file: String,
    escape: char,
    ctx: Context,
    factory: StoreFactory,
    buildset: Option<String>,
    platform: Platform,
    epoch: u64,
    created: String,
    blobs_dir: PathBuf,
    cache: PathBuf,
    images: HashMap<String, BaseImage>,
    build_args: BTreeMap<String, String>,
    used_args: BTreeSet<String>,
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

impl Build {
    fn at(&self, line: usize, message: impl Into<String>) -> BuildError {
        BuildError::Instruction {
            file: self.file.clone(),
            line,
            message: message.into(),
        }
    }

    /// Platform args BuildKit predefines, usable in FROM lines.
    fn platform_args(&self) -> Vec<(String, String)> {
        let p = &self.platform;
        let host = super::host_platform();
        let plat = |p: &Platform| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        };
        vec![
            ("TARGETPLATFORM".into(), plat(p)),
            ("TARGETOS".into(), p.os.clone()),
            ("TARGETARCH".into(), p.architecture.clone()),
            (
                "TARGETVARIANT".into(),
                p.variant.clone().unwrap_or_default(),
            ),
            ("BUILDPLATFORM".into(), plat(&host)),
            ("BUILDOS".into(), host.os.clone()),
            ("BUILDARCH".into(), host.architecture.clone()),
            ("BUILDVARIANT".into(), String::new()),
        ]
    }

    fn global_args(
        &mut self,
        df: &Dockerfile,
    ) -> Result<BTreeMap<String, Option<String>>, BuildError> {
        let mut globals: BTreeMap<String, Option<String>> = self
            .platform_args()
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        for ins in &df.global_args {
            for (name, default) in
                self.arg_words(ins, &|n: &str| globals.get(n).cloned().flatten())?
            {
                let v = match self.build_args.get(&name) {
                    Some(v) => {
                        self.used_args.insert(name.clone());
                        Some(v.clone())
                    }
                    None => default,
                };
                globals.insert(name, v);
            }
        }
        Ok(globals)
    }

    /// `ARG a=1 b` → [(a, Some(1)), (b, None)], defaults substituted.
    fn arg_words(
        &self,
        ins: &Instruction,
        vars: &dyn Vars,
    ) -> Result<Vec<(String, Option<String>)>, BuildError> {
        let raw = words::split_raw(ins.shell(), self.escape)
            .map_err(|e| self.at(ins.line, e.to_string()))?;
        let mut out = Vec::new();
        for w in raw {
            let (name, default) = match w.split_once('=') {
                Some((n, d)) => (
                    n.to_string(),
                    Some(
                        words::process_word(d, vars, self.escape)
                            .map_err(|e| self.at(ins.line, e.to_string()))?,
                    ),
                ),
                None => (w.clone(), None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(self.at(ins.line, format!("ARG: invalid name {name:?}")));
            }
            out.push((name, default));
        }
        Ok(out)
    }

    fn subst_global(
        &self,
        s: &str,
        globals: &BTreeMap<String, Option<String>>,
        line: usize,
    ) -> Result<String, BuildError> {
        words::process_word(s, &|n: &str| globals.get(n).cloned().flatten(), self.escape)
            .map_err(|e| self.at(line, e.to_string()))
    }

    /// Step 1: the stages the target needs, checked for what this builder cannot do.
    fn check(
        &self,
        df: &Dockerfile,
        globals: &BTreeMap<String, Option<String>>,
        target: usize,
    ) -> Result<Vec<usize>, BuildError> {
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        let mut errors = Vec::new();
        while let Some(i) = todo.pop() {
            if !needed.insert(i) {
                continue;
            }
            let stage = &df.stages[i];
            if let Ok(base) = self.subst_global(&stage.base, globals, stage.line)
                && let Some(dep) = stage_ref(df, &base, i)
            {
                todo.push(dep);
            }
            for ins in &stage.instructions {
                match ins.keyword.as_str() {
                    "RUN" => errors.push(LineError {
                        line: ins.line,
                        message: "RUN needs a container; the native builder runs none: build with --builder docker".into(),
                    }),
                    "COPY" | "ADD" => {
                        if let Some(from) = ins.flag("from") {
                            let from = self.subst_global(from, globals, ins.line).unwrap_or_else(|_| from.to_string());
                            match stage_ref(df, &from, i) {
                                Some(dep) => todo.push(dep),
                                None if from.parse::<usize>().is_ok() => errors.push(LineError {
                                    line: ins.line,
                                    message: format!("--from={from}: no stage {from} before this one"),
                                }),
                                None if looks_like_stage(&from) => {
                                    let names: Vec<&str> = df.stages[..i].iter().filter_map(|s| s.name.as_deref()).collect();
                                    errors.push(LineError {
                                        line: ins.line,
                                        message: format!(
                                            "--from={from}: unknown stage (stages before this one: {}); name an image with its registry or tag, e.g. docker.io/library/{from}:latest",
                                            if names.is_empty() { "none".to_string() } else { names.join(", ") }
                                        ),
                                    });
                                }
                                None => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if errors.is_empty() {
            Ok(needed.into_iter().collect())
        } else {
            errors.sort_by_key(|e| e.line);
            Err(DockerfileError {
                file: self.file.clone(),
                errors,
            }
            .into())
        }
    }

    async fn image(&mut self, name: &str, line: usize) -> Result<BaseImage, BuildError> {
        if let Some(i) = self.images.get(name) {
            return Ok(i.clone());
        }
        let img = image::fetch(
            name,
            &self.platform,
            &self.factory,
            self.buildset.as_deref(),
        )
        .await
        .map_err(|e| {
            if e.is_usage() {
                self.at(line, e.to_string())
            } else {
                e.into()
            }
        })?;
        self.images.insert(name.to_string(), img.clone());
        Ok(img)
    }

    fn history(&self, st: &mut ImageState, ins: &Instruction, empty: bool) {
        let mut h =
            json!({"created": self.created, "created_by": ins.text, "comment": "gantry build"});
        if empty {
            h["empty_layer"] = json!(true);
        }
        st.history.push(h);
    }

    async fn apply(
        &mut self,
        ins: &Instruction,
        st: &mut ImageState,
        scope: &mut StageScope,
        df: &Dockerfile,
        built: &[Option<ImageState>],
        stage: usize,
    ) -> Result<(), BuildError> {
        let env: HashMap<String, String> = scope.args.clone().into_iter().chain(st.env()).collect();
        let vars = move |n: &str| env.get(n).cloned();
        let line = ins.line;
        let word = |s: &str| {
            words::process_word(s, &vars, self.escape).map_err(|e| self.at(line, e.to_string()))
        };
        let words_of = |s: &str| {
            words::process_words(s, &vars, self.escape).map_err(|e| self.at(line, e.to_string()))
        };
        match ins.keyword.as_str() {
            "COPY" | "ADD" => {
                let entries = self.copy(ins, st, df, built, stage, &vars).await?;
                let blobs_dir = self.blobs_dir.clone();
                let epoch = self.epoch;
                let entries = Arc::new(entries);
                let e2 = entries.clone();
                let layer = tokio::task::spawn_blocking(move || {
                    super::layer::write_layer(&e2, epoch, &blobs_dir)
                })
                .await
                .map_err(|e| BuildError::io("writing a layer", std::io::Error::other(e)))??;
                tracing::info!(
                    "{}:{line}: {} → layer {} ({} bytes)",
                    self.file,
                    ins.keyword,
                    layer.digest,
                    layer.size
                );
                st.diff_ids.push(json!(layer.diff_id));
                st.layers.push(Layer::Built {
                    built: layer,
                    entries,
                });
                self.history(st, ins, false);
                return Ok(());
            }
            "ENV" => {
                for (k, v) in self.pairs(ins, &vars)? {
                    st.set_env(&k, &v);
                }
            }
            "ARG" => {
                let globals = scope.globals.clone();
                for (name, default) in self.arg_words(ins, &vars)? {
                    let v = match self.build_args.get(&name) {
                        Some(v) => {
                            self.used_args.insert(name.clone());
                            Some(v.clone())
                        }
                        // `ARG NAME` inside a stage takes the global value.
                        None => default.or_else(|| globals.get(&name).cloned().flatten()),
                    };
                    if let Some(v) = v {
                        scope.args.insert(name, v);
                    } else {
                        scope.args.remove(&name);
                    }
                }
            }
            "LABEL" => {
                for (k, v) in self.pairs(ins, &vars)? {
                    labels(&mut st.config).insert(k, Value::String(v));
                }
            }
            "MAINTAINER" => st.author = Some(word(ins.shell())?),
            "WORKDIR" => {
                let w = word(ins.shell())?;
                let abs = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", st.workdir())
                };
                let clean = format!("/{}", super::context::clean_destination(&abs));
                st.config.insert("WorkingDir".into(), json!(clean));
            }
            "USER" => {
                st.config.insert("User".into(), json!(word(ins.shell())?));
            }
            "EXPOSE" => {
                for p in words_of(ins.shell())? {
                    for port in expose(&p).map_err(|m| self.at(line, m))? {
                        object(&mut st.config, "ExposedPorts").insert(port, json!({}));
                    }
                }
            }
            "VOLUME" => {
                let vols = match &ins.args {
                    Args::Json(v) => v.iter().map(|s| word(s)).collect::<Result<Vec<_>, _>>()?,
                    Args::Shell(s) => words_of(s)?,
                };
                for v in vols {
                    if v.is_empty() {
                        return Err(self.at(line, "VOLUME: empty path"));
                    }
                    object(&mut st.config, "Volumes").insert(v, json!({}));
                }
            }
            "STOPSIGNAL" => {
                st.config
                    .insert("StopSignal".into(), json!(word(ins.shell())?));
            }
            "ENTRYPOINT" => {
                let v = self.command(ins, st);
                st.config.insert("Entrypoint".into(), v);
                if !scope.cmd_set {
                    st.config.insert("Cmd".into(), Value::Null);
                }
            }
            "CMD" => {
                let v = self.command(ins, st);
                st.config.insert("Cmd".into(), v);
                scope.cmd_set = true;
            }
            "SHELL" => {
                if let Args::Json(v) = &ins.args {
                    st.config.insert("Shell".into(), json!(v));
                }
            }
            "HEALTHCHECK" => {
                let hc = self.healthcheck(ins, st)?;
                st.config.insert("Healthcheck".into(), hc);
            }
            "ONBUILD" => {
                let trig = ins.shell().trim().to_string();
                let v = st.config.entry("OnBuild").or_insert_with(|| json!([]));
                if let Value::Array(a) = v {
                    a.push(json!(trig));
                } else {
                    *v = json!([trig]);
                }
            }
            // Refused in `check`; kept here so a new caller cannot slip one through.
            "RUN" => {
                return Err(self.at(line, "RUN needs a container: build with --builder docker"));
            }
            other => {
                return Err(self.at(
                    line,
                    format!("{other} is not supported by the native builder"),
                ));
            }
        }
        self.history(st, ins, true);
        Ok(())
    }

    /// `KEY=value …` (or the legacy `KEY value`) with values substituted.
    fn pairs(
        &self,
        ins: &Instruction,
        vars: &dyn Vars,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let line = ins.line;
        let err = |e: words::WordsError| self.at(line, e.to_string());
        let raw = words::split_raw(ins.shell(), self.escape).map_err(err)?;
        if let Some(first) = raw.first()
            && !first.contains('=')
        {
            // Legacy form: the rest of the line is the value.
            let rest = ins.shell().trim_start()[first.len()..].trim();
            if ins.keyword == "LABEL" || rest.is_empty() {
                return Err(self.at(
                    line,
                    format!("{}: expected KEY=value, got {:?}", ins.keyword, ins.shell()),
                ));
            }
            return Ok(vec![(
                words::process_word(first, vars, self.escape).map_err(err)?,
                words::process_word(rest, vars, self.escape).map_err(err)?,
            )]);
        }
        let mut out = Vec::new();
        for w in raw {
            let Some((k, v)) = w.split_once('=') else {
                return Err(self.at(
                    line,
                    format!("{}: expected KEY=value, got {w:?}", ins.keyword),
                ));
            };
            let k = words::process_word(k, vars, self.escape).map_err(err)?;
            if k.is_empty() {
                return Err(self.at(line, format!("{}: empty key in {w:?}", ins.keyword)));
            }
            out.push((k, words::process_word(v, vars, self.escape).map_err(err)?));
        }
        Ok(out)
    }

    /// CMD/ENTRYPOINT: exec form as is, shell form wrapped in the stage's SHELL.
    fn command(&self, ins: &Instruction, st: &ImageState) -> Value {
        match &ins.args {
            Args::Json(v) if v.is_empty() => Value::Null,
            Args::Json(v) => json!(v),
            Args::Shell(s) if s.trim().is_empty() => Value::Null,
            Args::Shell(s) => {
                let mut c = st.shell();
                c.push(s.trim().to_string());
                json!(c)
            }
        }
    }

    fn healthcheck(&self, ins: &Instruction, st: &ImageState) -> Result<Value, BuildError> {
        let line = ins.line;
        let s = ins.shell().trim();
        let (first, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        if first.eq_ignore_ascii_case("NONE") {
            if !rest.trim().is_empty() || !ins.flags.is_empty() {
                return Err(self.at(line, "HEALTHCHECK NONE takes no arguments"));
            }
            return Ok(json!({"Test": ["NONE"]}));
        }
        let rest = rest.trim();
        let test = match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) if rest.starts_with('[') => {
                let mut t = vec!["CMD".to_string()];
                t.extend(v);
                t
            }
            _ if rest.is_empty() => return Err(self.at(line, "HEALTHCHECK CMD needs a command")),
            _ => {
                let _ = st;
                vec!["CMD-SHELL".to_string(), rest.to_string()]
            }
        };
        let mut hc = Map::new();
        hc.insert("Test".into(), json!(test));
        for (name, key) in [
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ] {
            if let Some(v) = ins.flag(name) {
                let ns = duration_ns(v).ok_or_else(|| {
                    self.at(
                        line,
                        format!("HEALTHCHECK --{name}={v}: not a duration (e.g. 30s, 1m30s)"),
                    )
                })?;
                hc.insert(key.into(), json!(ns));
            }
        }
        if let Some(r) = ins.flag("retries") {
            let n: u64 = r
                .parse()
                .map_err(|_| self.at(line, format!("HEALTHCHECK --retries={r}: not a number")))?;
            hc.insert("Retries".into(), json!(n));
        }
        Ok(Value::Object(hc))
    }

    /// COPY/ADD → the entries of its layer.
    async fn copy(
        &mut self,
        ins: &Instruction,
        st: &ImageState,
        df: &Dockerfile,
        built: &[Option<ImageState>],
        stage: usize,
        vars: &dyn Vars,
    ) -> Result<Entries, BuildError> {
        let line = ins.line;
        let err = |e: words::WordsError| self.at(line, e.to_string());
        let mut args = match &ins.args {
            Args::Json(v) => v
                .iter()
                .map(|s| words::process_word(s, vars, self.escape))
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?,
            Args::Shell(s) => words::process_words(s, vars, self.escape).map_err(err)?,
        };
        if args.len() < 2 {
            return Err(self.at(
                line,
                format!("{} needs a source and a destination", ins.keyword),
            ));
        }
        let dest_raw = args.pop().unwrap_or_default();
        let srcs = args;
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", st.workdir())
        };
        let dest_is_dir = dest_raw.ends_with('/')
            || dest_raw.ends_with("/.")
            || dest_raw == "."
            || srcs.len() > 1;
        let dest = super::context::clean_destination(&dest_abs);
        let owner = match ins.flag("chown") {
            Some(c) => {
                let c = words::process_word(c, vars, self.escape).map_err(err)?;
                Some(self.owner(&c, st, line).await?)
            }
            None => None,
        };
        let chmod = match ins.flag("chmod") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        self.at(
                            line,
                            format!("--chmod={m}: expected an octal mode such as 755"),
                        )
                    })?,
            ),
            None => None,
        };
        let mut out = Entries::new();
        if let Some(from) = ins.flag("from") {
            let from = words::process_word(from, vars, self.escape).map_err(err)?;
            let source = match stage_ref(df, &from, stage) {
                Some(i) => built[i]
                    .clone()
                    .ok_or_else(|| self.at(line, format!("--from={from}: stage not built")))?,
                None => {
                    let img = self.image(&from, line).await?;
                    ImageState::from_image(&img, &self.platform).map_err(|m| self.at(line, m))?
                }
            };
            for src in &srcs {
                self.copy_from_image(
                    &source,
                    &from,
                    src,
                    &dest,
                    dest_is_dir,
                    owner,
                    chmod,
                    line,
                    &mut out,
                )
                .await?;
            }
            return Ok(out);
        }
        let mut sources = Vec::new();
        for src in &srcs {
            if ins.keyword == "ADD" && src.contains("://") {
                return Err(self.at(line, format!("ADD {src}: URLs are not fetched by the native builder (builds must be reproducible); download it into the context, or use --builder docker")));
            }
            if src.starts_with("git@") {
                return Err(self.at(line, format!("ADD {src}: git sources are not supported")));
            }
            let s = self
                .ctx
                .sources(src)
                .map_err(|e| self.at(line, format!("{} {e}", ins.keyword)))?;
            sources.extend(s);
        }
        if sources.len() > 1 && !dest_is_dir {
            return Err(self.at(
                line,
                format!(
                    "{} with more than one source needs a destination directory ending in /",
                    ins.keyword
                ),
            ));
        }
        let (uid, gid) = owner.unwrap_or((0, 0));
        for s in sources {
            if s.is_dir {
                for e in &s.entries {
                    let path = join(&dest, &e.rel);
                    if path.is_empty() {
                        continue;
                    }
                    out.insert(path, context_entry(&e.kind, e.mode, chmod, uid, gid));
                }
            } else {
                let base = s.name.rsplit('/').next().unwrap_or(&s.name).to_string();
                let target = if dest_is_dir {
                    join(&dest, &base)
                } else {
                    dest.clone()
                };
                let e = &s.entries[0];
                if ins.keyword == "ADD"
                    && let Kind::File { path, .. } = &e.kind
                    && is_tar_archive(path)
                {
                    self.extract_archive(path, &dest, owner, chmod, line, &mut out)
                        .await?;
                    continue;
                }
                if target.is_empty() {
                    return Err(
                        self.at(line, format!("{}: cannot copy a file onto /", ins.keyword))
                    );
                }
                out.insert(target, context_entry(&e.kind, e.mode, chmod, uid, gid));
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_from_image(
        &mut self,
        source: &ImageState,
        from: &str,
        src: &str,
        dest: &str,
        dest_is_dir: bool,
        owner: Option<(u64, u64)>,
        chmod: Option<u32>,
        line: usize,
        out: &mut Entries,
    ) -> Result<(), BuildError> {
        let mut path = super::context::clean_relative(src).unwrap_or_default();
        let mut found;
        let mut hops = 0;
        loop {
            let p = path.clone();
            let prefix = format!("{p}/");
            let want = move |k: &str| p.is_empty() || k == p || k.starts_with(&prefix);
            found = self.read_paths(source, Arc::new(want)).await?;
            // A symlink named as the source is followed, as a path on that filesystem.
            match found.get(&path).map(|e| &e.kind) {
                Some(EntryKind::Symlink(t)) if hops < 8 => {
                    hops += 1;
                    let t = if t.starts_with('/') {
                        t.clone()
                    } else {
                        let parent = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        format!("/{parent}/{t}")
                    };
                    path = super::context::clean_relative(&t).unwrap_or_default();
                }
                _ => break,
            }
        }
        if found.is_empty() {
            return Err(self.at(line, format!("COPY --from={from}: {src} not found")));
        }
        let is_dir = path.is_empty() || found.get(&path).is_none_or(|e| e.kind == EntryKind::Dir);
        let base = src
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        for (k, e) in found {
            let rel = if k == path {
                String::new()
            } else {
                k[path.len()..].trim_start_matches('/').to_string()
            };
            let target = if is_dir {
                join(dest, &rel)
            } else if dest_is_dir {
                join(dest, &base)
            } else {
                dest.to_string()
            };
            if target.is_empty() {
                continue;
            }
            let (uid, gid) = owner.unwrap_or((e.uid, e.gid));
            let mode = match (&e.kind, chmod) {
                (EntryKind::Symlink(_), _) => 0o777,
                (_, Some(m)) => m,
                _ => e.mode,
            };
            out.insert(
                target,
                LayerEntry {
                    kind: e.kind,
                    mode,
                    uid,
                    gid,
                },
            );
        }
        Ok(())
    }

    /// The merged entries of an image's layers that `want` accepts.
    async fn read_paths(
        &self,
        img: &ImageState,
        want: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Result<Entries, BuildError> {
        let mut merged = Entries::new();
        let extract = self.cache.join("files");
        for l in &img.layers {
            match l {
                Layer::Built { entries, .. } => {
                    for (k, e) in entries.iter() {
                        if want(k) {
                            merged.insert(k.clone(), e.clone());
                        }
                    }
                }
                Layer::Base { desc, store, image } => {
                    let file = image::download_layer(image, store, desc, &self.cache).await?;
                    let w = want.clone();
                    let x = extract.clone();
                    let digest = desc.digest.clone();
                    let name = image.clone();
                    merged = tokio::task::spawn_blocking(move || {
                        let mut m = merged;
                        image::scan_tar(&file, &*w, &x, &mut m).map(|_| m)
                    })
                    .await
                    .map_err(|e| BuildError::io("reading a layer", std::io::Error::other(e)))?
                    .map_err(|source| image::ImageError::Layer {
                        name,
                        digest,
                        source,
                    })?;
                }
            }
        }
        Ok(merged)
    }

    /// `--chown=user[:group]`: numbers, or names looked up in the stage's /etc/passwd and
    /// /etc/group. A user without a group gets the user's primary group (names) or the
    /// same number (numeric), as Docker does.
    async fn owner(
        &self,
        spec: &str,
        st: &ImageState,
        line: usize,
    ) -> Result<(u64, u64), BuildError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let numeric = |s: &str| s.parse::<u64>().ok();
        let need_files = numeric(user).is_none() || group.is_some_and(|g| numeric(g).is_none());
        let (passwd, groups) = if need_files {
            let want: Arc<dyn Fn(&str) -> bool + Send + Sync> =
                Arc::new(|k: &str| k == "etc/passwd" || k == "etc/group");
            let files = self.read_paths(st, want).await?;
            let read = |k: &str| match files.get(k).map(|e| &e.kind) {
                Some(EntryKind::File { source, .. }) => {
                    std::fs::read_to_string(source).unwrap_or_default()
                }
                _ => String::new(),
            };
            (read("etc/passwd"), read("etc/group"))
        } else {
            (String::new(), String::new())
        };
        let lookup = |text: &str, name: &str, field: usize| -> Option<u64> {
            text.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
        };
        let (uid, primary) = match numeric(user) {
            Some(u) => (u, u),
            None => {
                let uid = lookup(&passwd, user, 2).ok_or_else(|| {
                    self.at(
                        line,
                        format!("--chown={spec}: no user {user:?} in the image's /etc/passwd"),
                    )
                })?;
                (uid, lookup(&passwd, user, 3).unwrap_or(uid))
            }
        };
        let gid = match group {
            None => primary,
            Some(g) => match numeric(g) {
                Some(n) => n,
                None => lookup(&groups, g, 2).ok_or_else(|| {
                    self.at(
                        line,
                        format!("--chown={spec}: no group {g:?} in the image's /etc/group"),
                    )
                })?,
            },
        };
        Ok((uid, gid))
    }

    /// ADD of a local tar archive: its contents, unpacked under `dest`.
    async fn extract_archive(
        &self,
        path: &Path,
        dest: &str,
        owner: Option<(u64, u64)>,
        chmod: Option<u32>,
        line: usize,
        out: &mut Entries,
    ) -> Result<(), BuildError> {
        let p = path.to_path_buf();
        let x = self.cache.join("files");
        let found = tokio::task::spawn_blocking(move || {
            let mut m = Entries::new();
            image::scan_tar(&p, &|_| true, &x, &mut m).map(|_| m)
        })
        .await
        .map_err(|e| BuildError::io("reading an archive", std::io::Error::other(e)))?
        .map_err(|e| self.at(line, format!("ADD {}: {e}", path.display())))?;
        for (k, mut e) in found {
            if let Some((u, g)) = owner {
                e.uid = u;
                e.gid = g;
            }
            if let (Some(m), false) = (chmod, matches!(e.kind, EntryKind::Symlink(_))) {
                e.mode = m;
            }
            out.insert(join(dest, &k), e);
        }
        Ok(())
    }

    /// Step 3: config and manifest into the layout; the list of blobs to push.
    async fn finish(
        &self,
        st: &ImageState,
        layout_dir: &Path,
    ) -> Result<(RawManifest, Vec<BlobSource>), BuildError> {
        let mut config = st.config.clone();
        for key in ["Labels", "ExposedPorts", "Volumes"] {
            if let Some(Value::Object(m)) = config.get_mut(key) {
                let mut sorted: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                m.extend(sorted);
            }
        }
        let mut doc = Map::new();
        doc.insert("created".into(), json!(self.created));
        if let Some(a) = &st.author {
            doc.insert("author".into(), json!(a));
        }
        doc.insert("architecture".into(), json!(st.platform.architecture));
        doc.insert("os".into(), json!(st.platform.os));
        if let Some(v) = &st.platform.variant {
            doc.insert("variant".into(), json!(v));
        }
        doc.insert("config".into(), Value::Object(config));
        doc.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": st.diff_ids}),
        );
        doc.insert("history".into(), json!(st.history));
        let config_bytes = serde_json::to_vec(&Value::Object(doc))
            .map_err(|e| BuildError::io("encoding the config", e.into()))?;
        let config_desc = descriptor(
            MediaType::OCI_CONFIG,
            Digest::sha256(&config_bytes),
            config_bytes.len() as u64,
        );
        let layout = Layout::new(layout_dir);
        let layout_store = Arc::new(Store::Layout(layout.clone()));
        let body: crate::client::BlobStream = Box::pin(futures_util::stream::once(async move {
            Ok(Bytes::from(config_bytes))
        }));
        layout.put_blob(&config_desc, body).await?;
        let mut blobs = vec![BlobSource {
            desc: config_desc.clone(),
            store: layout_store.clone(),
        }];
        let mut layers = Vec::new();
        for l in &st.layers {
            let (desc, store) = match l {
                Layer::Base { desc, store, .. } => (desc.clone(), store.clone()),
                Layer::Built { built, .. } => (
                    descriptor(MediaType::OCI_LAYER_GZIP, built.digest.clone(), built.size),
                    layout_store.clone(),
                ),
            };
            if !blobs.iter().any(|b| b.desc.digest == desc.digest) {
                blobs.push(BlobSource {
                    desc: desc.clone(),
                    store,
                });
            }
            layers.push(desc);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::OCI_MANIFEST,
            "config": config_desc,
            "layers": layers,
        });
        let bytes = Bytes::from(
            serde_json::to_vec(&manifest)
                .map_err(|e| BuildError::io("encoding the manifest", e.into()))?,
        );
        let raw = RawManifest {
            digest: Digest::sha256(&bytes),
            bytes,
            media_type: MediaType::OCI_MANIFEST.to_string(),
        };
        layout.put_manifest(Some("latest"), &raw).await?;
        Ok((raw, blobs))
    }
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// A context file in a layer: modes normalised (a checkout's umask must not change the
/// digest) unless `--chmod` says otherwise.
fn context_entry(kind: &Kind, mode: u32, chmod: Option<u32>, uid: u64, gid: u64) -> LayerEntry {
    let (kind, normal) = match kind {
        Kind::Dir => (EntryKind::Dir, 0o755),
        Kind::Symlink(t) => (EntryKind::Symlink(t.clone()), 0o777),
        Kind::File { path, size } => (
            EntryKind::File {
                source: path.clone(),
                size: *size,
            },
            if mode & 0o111 != 0 { 0o755 } else { 0o644 },
        ),
    };
    let mode = match (&kind, chmod) {
        (EntryKind::Symlink(_), _) => 0o777,
        (_, Some(m)) => m,
        _ => normal,
    };
    LayerEntry {
        kind,
        mode,
        uid,
        gid,
    }
}

/// ADD unpacks local tar archives (plain or gzip'd); other files are copied.
fn is_tar_archive(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 512];
    let Ok(n) = f.read(&mut head) else {
        return false;
    };
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        // A gzip'd file is an archive only if what it holds is a tar.
        let Ok(f) = std::fs::File::open(path) else {
            return false;
        };
        let mut inner = [0u8; 512];
        let mut gz = flate2::read::GzDecoder::new(f);
        return gz.read_exact(&mut inner).is_ok() && &inner[257..262] == b"ustar";
    }
    n == 512 && &head[257..262] == b"ustar"
}

/// `80`, `80/udp`, `8000-8002/tcp` → `["80/tcp"]`, ….
fn expose(p: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {p}: protocol must be tcp, udp or sctp"));
    }
    let num = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0);
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (num(a), num(b)),
        None => (num(ports), num(ports)),
    };
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect()),
        _ => Err(format!("EXPOSE {p}: invalid port")),
    }
}

/// Go duration syntax (`1m30s`, `500ms`) in nanoseconds.
fn duration_ns(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Some(total as u64)
}

/// RFC 3339 UTC for seconds since the epoch (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ports_and_durations() {
        assert_eq!(expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(expose("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expose("8000-8002").unwrap().len(), 3);
        assert!(expose("0").is_err() && expose("80/foo").is_err() && expose("x").is_err());
        assert_eq!(duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_ns("500ms"), Some(500_000_000));
        assert_eq!(duration_ns("5"), None);
        assert_eq!(duration_ns(""), None);
    }

    #[test]
    fn modes_are_normalised() {
        let k = Kind::File {
            path: "/x".into(),
            size: 1,
        };
        assert_eq!(context_entry(&k, 0o664, None, 0, 0).mode, 0o644);
        assert_eq!(context_entry(&k, 0o700, None, 0, 0).mode, 0o755);
        assert_eq!(context_entry(&k, 0o644, Some(0o600), 1, 2).mode, 0o600);
        assert_eq!(context_entry(&Kind::Dir, 0o700, None, 0, 0).mode, 0o755);
    }
}
