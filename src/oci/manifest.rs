//! Manifests and descriptors: just enough structure to know what a manifest refers to.
//!
//! The bytes of a manifest are its identity; this module only *reads* them (to find the
//! config, layers, child manifests and subject) and never re-serialises a manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Digest, MediaType};

/// A content descriptor (image-spec descriptor.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// The platform of an index entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("manifest mediaType {field:?} does not match Content-Type {header:?}")]
    MediaTypeMismatch { field: String, header: String },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("cannot tell the manifest type: no mediaType and neither config/layers nor manifests")]
    UnknownShape,
    #[error("{media_type} requires the field {field:?}")]
    MissingField {
        media_type: String,
        field: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What a manifest or index refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The resolved media type (Content-Type, else the mediaType field, else the shape).
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    /// Child manifests of an index / manifest list.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Parses manifest bytes. `content_type` is the Content-Type the bytes came with, if any;
    /// a generic type (`application/json`, empty) is ignored in favour of the document.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty() && *c != "application/json" && *c != "*/*");
        let media_type = match (header, raw.media_type.as_deref()) {
            (Some(h), Some(f)) if h != f => {
                return Err(ManifestError::MediaTypeMismatch {
                    field: f.to_string(),
                    header: h.to_string(),
                });
            }
            (Some(h), _) => h.to_string(),
            (None, Some(f)) => f.to_string(),
            (None, None) => {
                if raw.manifests.is_some() {
                    MediaType::OCI_INDEX.to_string()
                } else if raw.config.is_some() {
                    MediaType::OCI_MANIFEST.to_string()
                } else {
                    return Err(ManifestError::UnknownShape);
                }
            }
        };
        if !MediaType::is_manifest(&media_type) {
            return Err(ManifestError::UnsupportedMediaType(media_type));
        }
        let missing = |field| ManifestError::MissingField {
            media_type: media_type.clone(),
            field,
        };
        if MediaType::is_index(&media_type) {
            if raw.manifests.is_none() {
                return Err(missing("manifests"));
            }
        } else {
            if raw.config.is_none() {
                return Err(missing("config"));
            }
            if raw.layers.is_none() {
                return Err(missing("layers"));
            }
        }
        Ok(Manifest {
            media_type,
            artifact_type: raw.artifact_type,
            config: raw.config,
            layers: raw.layers.unwrap_or_default(),
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            annotations: raw.annotations,
        })
    }

    pub fn is_index(&self) -> bool {
        MediaType::is_index(&self.media_type)
    }

    /// Blobs this manifest needs in the same repository (config and distributable layers).
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(
            self.layers
                .iter()
                .filter(|l| !MediaType::is_foreign_layer(&l.media_type)),
        )
    }

    /// The artifact type a referrers response reports (image-spec manifest.md):
    /// `artifactType`, else the config media type.
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn image_manifest() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},
               "layers":[{{"mediaType":"{}","digest":"{}","size":3}},{{"mediaType":"{}","digest":"{}","size":3,"urls":["http://x"]}}],
               "subject":{{"mediaType":"{}","digest":"{}","size":9}}}}"#,
            MediaType::OCI_MANIFEST,
            MediaType::OCI_CONFIG,
            d(1),
            MediaType::OCI_LAYER_GZIP,
            d(2),
            MediaType::DOCKER_FOREIGN_LAYER,
            d(3),
            MediaType::OCI_MANIFEST,
            d(4)
        );
        let m = Manifest::parse(m.as_bytes(), None).unwrap();
        assert_eq!(m.media_type, MediaType::OCI_MANIFEST);
        let blobs: Vec<_> = m.blobs().map(|b| b.digest.to_string()).collect();
        assert_eq!(blobs, vec![d(1), d(2)]);
        assert_eq!(m.subject.unwrap().digest.to_string(), d(4));
        assert_eq!(m.artifact_type, None);
    }

    #[test]
    fn index_inferred_and_mismatch() {
        let idx = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(Manifest::parse(idx, None).unwrap().is_index());
        let typed = format!(r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#, MediaType::OCI_INDEX);
        assert!(matches!(
            Manifest::parse(typed.as_bytes(), Some(MediaType::DOCKER_MANIFEST_LIST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert_eq!(Manifest::parse(b"{", None).unwrap_err().to_string().split(':').next(), Some("manifest is not valid JSON"));
        assert_eq!(Manifest::parse(br#"{"schemaVersion":1}"#, None), Err(ManifestError::SchemaVersion));
        assert!(matches!(
            Manifest::parse(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#, None),
            Err(ManifestError::MissingField { field: "config", .. })
        ));
    }
}
