//! Step 3 of a build: the image config and OCI manifest written into the layout, and the
//! list of blobs (built layers from the layout, base layers from their registry) to push.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Build;
use super::state::{ImageState, Layer};
use crate::build::BuildError;
use crate::build::push::BlobSource;
use crate::client::layout::Layout;
use crate::client::{RawManifest, Store};
use crate::oci::{Descriptor, Digest, MediaType};

impl Build {
    /// Step 3: config and manifest into the layout; the list of blobs to push.
    pub(super) async fn finish(
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

pub(super) fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
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

/// RFC 3339 UTC for seconds since the epoch. `source_date_epoch` refuses values past
/// jiff's range (9999-12-30), so the fallback is never reached from the CLI or a role.
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        let max = jiff::Timestamp::MAX.as_second() as u64;
        assert_eq!(rfc3339(max), "9999-12-30T22:00:00Z");
    }
}
