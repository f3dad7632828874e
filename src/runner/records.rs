//! Build records: when a buildset ends, its builds (job, result, artifacts, change,
//! patchset, pipeline, project, provides) are written to the intermediate registry as a
//! small OCI artifact, so `requires` resolves from changes ahead even when they ran on
//! another machine or in another CI job.
//!
//! ```text
//! <intermediate>/gantry/build-records/<project>:<pipeline>-change-<N>         latest patchset
//! <intermediate>/gantry/build-records/<project>:<pipeline>-change-<N>-ps-<P>
//!   manifest: artifactType application/vnd.gantry.build.v1+json, config = empty
//!   layer:    application/vnd.gantry.build.v1+json — {project, change, patchset,
//!             pipeline, buildset, builds: [BuildRecord]}
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{ClientError, ImageRef, RawManifest, Store, StoreFactory};
use crate::job::{BuildRecord, QueueChange};
use crate::oci::{Descriptor, Digest, MediaType};
use crate::roles::Endpoint;

pub const ARTIFACT_TYPE: &str = "application/vnd.gantry.build.v1+json";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildsetRecord {
    pub project: String,
    pub change: Option<String>,
    pub patchset: Option<String>,
    pub pipeline: String,
    pub buildset: String,
    pub builds: Vec<BuildRecord>,
}

/// A repository name for a project (`org/project` stays, other characters become `-`).
fn repository(project: &str) -> String {
    let cleaned: String = project
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let parts: Vec<String> = cleaned
        .split('/')
        .map(|p| {
            p.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .filter(|p| !p.is_empty())
        .collect();
    format!(
        "gantry/build-records/{}",
        if parts.is_empty() {
            "project".into()
        } else {
            parts.join("/")
        }
    )
}

fn tags(pipeline: &str, change: Option<&str>, patchset: Option<&str>) -> Vec<String> {
    let base = match change {
        Some(c) => format!("{pipeline}-change-{c}"),
        None => format!("{pipeline}-head"),
    };
    let mut out = vec![base.clone()];
    if let Some(p) = patchset {
        out.push(format!("{base}-ps-{p}"));
    }
    out
}

fn store(ep: &Endpoint, project: &str) -> Result<Store, ClientError> {
    let r = ImageRef::parse(&format!("docker://{}/{}", ep.host, repository(project)))?;
    StoreFactory::new(ep.options.clone()).store(&r)
}

/// Writes a buildset's record.
pub async fn write(ep: &Endpoint, rec: &BuildsetRecord) -> Result<Digest, ClientError> {
    let s = store(ep, &rec.project)?;
    let body =
        Bytes::from(serde_json::to_vec(rec).map_err(|e| ClientError::Invalid(e.to_string()))?);
    let empty = Bytes::from_static(b"{}");
    let layer = Descriptor {
        media_type: ARTIFACT_TYPE.into(),
        digest: Digest::sha256(&body),
        size: body.len() as u64,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
    };
    let config = Descriptor {
        media_type: MediaType::OCI_EMPTY.into(),
        digest: Digest::sha256(&empty),
        size: 2,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
    };
    for (d, bytes) in [(&layer, body), (&config, empty)] {
        if s.blob_size(&d.digest).await?.is_none() {
            let stream: crate::client::BlobStream =
                Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
            s.put_blob(d, stream, None).await?;
        }
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MediaType::OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": config,
        "layers": [layer],
        "annotations": {
            "org.opencontainers.image.title": format!("gantry buildset {}", rec.buildset),
            "dev.gantry.pipeline": rec.pipeline,
            "dev.gantry.change": rec.change.clone().unwrap_or_default(),
        },
    }))
    .map_err(|e| ClientError::Invalid(e.to_string()))?;
    let raw = RawManifest {
        digest: Digest::sha256(&manifest),
        bytes: Bytes::from(manifest),
        media_type: MediaType::OCI_MANIFEST.into(),
    };
    for t in tags(
        &rec.pipeline,
        rec.change.as_deref(),
        rec.patchset.as_deref(),
    ) {
        s.put_manifest(Some(&t), &raw).await?;
    }
    Ok(raw.digest)
}

/// Reads the latest record of a change (`None` when it never ran in this pipeline).
pub async fn read(
    ep: &Endpoint,
    project: &str,
    pipeline: &str,
    change: Option<&str>,
    patchset: Option<&str>,
) -> Result<Option<BuildsetRecord>, ClientError> {
    let s = store(ep, project)?;
    let t = tags(pipeline, change, patchset).pop().unwrap_or_default();
    let m = match s.get_manifest(&t).await {
        Ok(m) => m,
        Err(ClientError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let parsed = crate::oci::Manifest::parse(&m.bytes, Some(&m.media_type))
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
    let Some(layer) = parsed.layers.first() else {
        return Ok(None);
    };
    let body =
        crate::client::registry::collect_stream(s.get_blob(&layer.digest).await?, layer.size)
            .await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| ClientError::Invalid(format!("build record {project}:{t}: {e}")))
}

/// All records of a project (for `gantry builds ls`), newest tag names included.
pub async fn list(
    ep: &Endpoint,
    project: &str,
) -> Result<Vec<(String, BuildsetRecord)>, ClientError> {
    let s = store(ep, project)?;
    let tags = match s.tags().await {
        Ok(t) => t,
        Err(ClientError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for t in tags.into_iter().filter(|t| !t.contains("-ps-")) {
        let m = s.get_manifest(&t).await?;
        let parsed = crate::oci::Manifest::parse(&m.bytes, Some(&m.media_type))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        if let Some(layer) = parsed.layers.first() {
            let body = crate::client::registry::collect_stream(
                s.get_blob(&layer.digest).await?,
                layer.size,
            )
            .await?;
            if let Ok(r) = serde_json::from_slice::<BuildsetRecord>(&body) {
                out.push((t, r));
            }
        }
    }
    Ok(out)
}

impl From<BuildsetRecord> for QueueChange {
    fn from(r: BuildsetRecord) -> QueueChange {
        QueueChange {
            project: r.project,
            change: r.change,
            patchset: r.patchset,
            builds: r.builds,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(
            super::repository("example/base"),
            "gantry/build-records/example/base"
        );
        assert_eq!(
            super::repository("Org_X/My Project"),
            "gantry/build-records/org-x/my-project"
        );
        assert_eq!(
            super::tags("gate", Some("2"), Some("1")),
            vec!["gate-change-2", "gate-change-2-ps-1"]
        );
    }
}
