//! What a stage has produced so far: its layers (base or built), diff_ids, history and
//! config, with the small config helpers the instructions use. No I/O.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::build::image::BaseImage;
use crate::build::layer::{BuiltLayer, Entries};
use crate::client::Store;
use crate::oci::{Descriptor, Platform};

/// Where a layer's bytes are.
#[derive(Clone)]
pub(super) enum Layer {
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
pub(super) struct ImageState {
    pub(super) layers: Vec<Layer>,
    pub(super) diff_ids: Vec<Value>,
    pub(super) history: Vec<Value>,
    pub(super) config: Map<String, Value>,
    pub(super) platform: Platform,
    pub(super) author: Option<String>,
}

impl ImageState {
    pub(super) fn scratch(platform: &Platform) -> ImageState {
        ImageState {
            layers: Vec::new(),
            diff_ids: Vec::new(),
            history: Vec::new(),
            config: Map::new(),
            platform: platform.clone(),
            author: None,
        }
    }

    pub(super) fn from_image(img: &BaseImage, target: &Platform) -> Result<ImageState, String> {
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
    pub(super) fn history_reset_onbuild(&mut self, file: &str, line: usize) {
        if let Some(Value::Array(t)) = self.config.remove("OnBuild")
            && !t.is_empty()
        {
            tracing::warn!(
                "{file}:{line}: the base image has ONBUILD triggers, which the native builder does not run"
            );
        }
    }

    pub(super) fn env(&self) -> Vec<(String, String)> {
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

    pub(super) fn set_env(&mut self, key: &str, value: &str) {
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

    pub(super) fn workdir(&self) -> String {
        self.config
            .get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    pub(super) fn shell(&self) -> Vec<String> {
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

pub(super) fn labels(config: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let v = config.entry("Labels").or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

pub(super) fn object<'a>(
    config: &'a mut Map<String, Value>,
    key: &str,
) -> &'a mut Map<String, Value> {
    let v = config.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}
