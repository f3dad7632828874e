//! `inspect`: a manifest, its config and its platforms.

use serde::Serialize;

use crate::client::{ClientError, Result, Store};
use crate::oci::{Digest, Manifest};

/// What `inspect` shows.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub digest: Digest,
    pub media_type: String,
    pub size: usize,
    pub manifest: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    pub platforms: Vec<String>,
    pub layers: Vec<crate::oci::Descriptor>,
}

/// `inspect`: the manifest, its config (for images) and the platform list (for indexes).
pub async fn inspect(store: &Store, reference: &str) -> Result<Inspection> {
    let m = store.get_manifest(reference).await?;
    let parsed = Manifest::parse(&m.bytes, Some(&m.media_type))
        .map_err(|e| ClientError::Invalid(format!("{store}:{reference}: {e}")))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&m.bytes).map_err(|e| ClientError::Invalid(e.to_string()))?;
    let mut config = None;
    let mut platforms = Vec::new();
    if parsed.is_index() {
        platforms = parsed
            .manifests
            .iter()
            .map(|d| {
                d.platform
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "unknown".into())
            })
            .collect();
    } else if let Some(c) = &parsed.config {
        let bytes =
            crate::client::registry::collect(store.get_blob(&c.digest).await?, c.size).await?;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            if let (Some(os), Some(arch)) = (v["os"].as_str(), v["architecture"].as_str()) {
                platforms.push(format!("{os}/{arch}"));
            }
            config = Some(v);
        }
    }
    Ok(Inspection {
        digest: m.digest,
        media_type: m.media_type,
        size: m.bytes.len(),
        manifest,
        config,
        platforms,
        layers: parsed.layers,
    })
}
