//! OCI image layout directories (image-spec `image-layout.md`) as an image store:
//!
//! ```text
//! DIR/oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! DIR/index.json                 an index; tags are `org.opencontainers.image.ref.name`
//! DIR/blobs/<alg>/<hex>          content (manifests, configs, layers)
//! ```
//!
//! Blobs are written to a temporary file while hashing and renamed into place only when
//! the digest matches, so a broken copy never leaves a wrong blob behind.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{BlobStream, ClientError, RawManifest, Result};
use crate::oci::{Descriptor, Digest, Manifest, MediaType};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One OCI layout directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    async fn read_index(&self) -> Result<Value> {
        match tokio::fs::read(self.index_path()).await {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ClientError::Invalid(format!("{}: {e}", self.index_path().display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ClientError::NotFound(
                format!("OCI layout {} (no index.json)", self.dir.display()),
            )),
            Err(e) => Err(ClientError::io(
                format!("reading {}", self.index_path().display()),
                e,
            )),
        }
    }

    /// The index entry for a tag or digest.
    async fn find(&self, reference: &str) -> Result<Descriptor> {
        let index = self.read_index().await?;
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let want_digest = Digest::parse(reference).ok();
        for e in &entries {
            let Ok(d) = serde_json::from_value::<Descriptor>(e.clone()) else {
                continue;
            };
            let name = e["annotations"][REF_NAME].as_str();
            if want_digest.as_ref() == Some(&d.digest) || name == Some(reference) {
                return Ok(d);
            }
        }
        // A digest not in index.json may still be a blob (children of an index).
        if let Some(d) = want_digest
            && tokio::fs::try_exists(self.blob_path(&d))
                .await
                .unwrap_or(false)
        {
            let bytes = tokio::fs::read(self.blob_path(&d))
                .await
                .map_err(|e| ClientError::io("reading blob", e))?;
            let m = Manifest::parse(&bytes, None)
                .map_err(|e| ClientError::Invalid(format!("{d}: {e}")))?;
            return Ok(Descriptor {
                media_type: m.media_type,
                digest: d,
                size: bytes.len() as u64,
                urls: None,
                annotations: None,
                platform: None,
                artifact_type: None,
            });
        }
        if reference.is_empty() && entries.len() == 1 {
            return serde_json::from_value(entries[0].clone()).map_err(|e| {
                ClientError::Invalid(format!("{}: {e}", self.index_path().display()))
            });
        }
        Err(ClientError::NotFound(format!(
            "{reference:?} in OCI layout {}",
            self.dir.display()
        )))
    }

    pub async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        let desc = self.find(reference).await?;
        let bytes = tokio::fs::read(self.blob_path(&desc.digest))
            .await
            .map_err(|e| {
                ClientError::io(
                    format!("reading manifest {} in {}", desc.digest, self.dir.display()),
                    e,
                )
            })?;
        if !desc.digest.verify(&bytes) {
            return Err(ClientError::DigestMismatch {
                what: format!("manifest in {}", self.dir.display()),
                expected: desc.digest.to_string(),
                actual: Digest::of(desc.digest.algorithm(), &bytes).to_string(),
            });
        }
        Ok(RawManifest {
            bytes: Bytes::from(bytes),
            media_type: desc.media_type,
            digest: desc.digest,
        })
    }

    /// Stores a manifest and, when `tag` is given, names it in `index.json`.
    pub async fn put_manifest(&self, tag: Option<&str>, m: &RawManifest) -> Result<Digest> {
        self.put_blob_bytes(&m.digest, &m.bytes).await?;
        if let Some(tag) = tag {
            self.ensure_layout().await?;
            let mut index = match self.read_index().await {
                Ok(i) => i,
                Err(ClientError::NotFound(_)) => {
                    json!({"schemaVersion": 2, "mediaType": MediaType::OCI_INDEX, "manifests": []})
                }
                Err(e) => return Err(e),
            };
            let mut entries: Vec<Value> =
                index["manifests"].as_array().cloned().unwrap_or_default();
            entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(tag));
            entries.push(json!({
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.bytes.len(),
                "annotations": {REF_NAME: tag},
            }));
            index["manifests"] = Value::Array(entries);
            let bytes =
                serde_json::to_vec(&index).map_err(|e| ClientError::Invalid(e.to_string()))?;
            write_replace(&self.index_path(), &bytes).await?;
        }
        Ok(m.digest.clone())
    }

    async fn ensure_layout(&self) -> Result<()> {
        let marker = self.dir.join("oci-layout");
        if !tokio::fs::try_exists(&marker).await.unwrap_or(false) {
            tokio::fs::create_dir_all(&self.dir)
                .await
                .map_err(|e| ClientError::io(format!("creating {}", self.dir.display()), e))?;
            write_replace(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).await?;
        }
        Ok(())
    }

    pub async fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(d)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ClientError::io(
                format!("stat {}", self.blob_path(d).display()),
                e,
            )),
        }
    }

    pub async fn get_blob(&self, d: &Digest) -> Result<BlobStream> {
        let path = self.blob_path(d);
        let f = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ClientError::NotFound(format!("blob {d} in OCI layout {}", self.dir.display()))
            } else {
                ClientError::io(format!("opening {}", path.display()), e)
            }
        })?;
        let s = tokio_util::io::ReaderStream::with_capacity(f, 256 << 10);
        Ok(Box::pin(s.map(move |r| {
            r.map_err(|e| ClientError::io("reading blob", e))
        })))
    }

    /// Writes a blob from a stream, verifying digest and size before it becomes visible.
    pub async fn put_blob(&self, desc: &Descriptor, mut body: BlobStream) -> Result<()> {
        let target = self.blob_path(&desc.digest);
        let parent = target.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| ClientError::io(format!("creating {}", parent.display()), e))?;
        let tmp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
        // Removes the temporary file on every way out but success — errors, a digest
        // mismatch, and a copy cancelled mid-blob (the future dropped).
        let mut guard = TempGuard(Some(tmp.clone()));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| ClientError::io(format!("creating {}", tmp.display()), e))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut h = desc.digest.algorithm().hasher();
        let mut size = 0u64;
        let result: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                h.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| ClientError::io("writing blob", e))?;
            }
            out.flush()
                .await
                .map_err(|e| ClientError::io("writing blob", e))?;
            Ok(())
        }
        .await;
        result?;
        let actual = h.finish();
        if actual != desc.digest || size != desc.size {
            return Err(ClientError::DigestMismatch {
                what: format!("blob written to {}", self.dir.display()),
                expected: format!("{} ({} bytes)", desc.digest, desc.size),
                actual: format!("{actual} ({size} bytes)"),
            });
        }
        self.ensure_layout().await?;
        tokio::fs::rename(&tmp, &target)
            .await
            .map_err(|e| ClientError::io(format!("renaming into {}", target.display()), e))?;
        guard.0 = None;
        Ok(())
    }

    async fn put_blob_bytes(&self, d: &Digest, data: &[u8]) -> Result<()> {
        let target = self.blob_path(d);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            return Ok(());
        }
        self.ensure_layout().await?;
        if let Some(p) = target.parent() {
            tokio::fs::create_dir_all(p)
                .await
                .map_err(|e| ClientError::io(format!("creating {}", p.display()), e))?;
        }
        write_replace(&target, data).await
    }

    /// Tags named in `index.json`.
    pub async fn tags(&self) -> Result<Vec<String>> {
        let index = self.read_index().await?;
        let mut tags: Vec<String> = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["annotations"][REF_NAME].as_str().map(String::from))
            .collect();
        tags.sort();
        Ok(tags)
    }

    /// Removes a tag from `index.json` (blobs stay).
    pub async fn delete_tag(&self, tag: &str) -> Result<bool> {
        let mut index = self.read_index().await?;
        let mut entries: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
        let before = entries.len();
        entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(tag));
        let removed = entries.len() != before;
        index["manifests"] = Value::Array(entries);
        let bytes = serde_json::to_vec(&index).map_err(|e| ClientError::Invalid(e.to_string()))?;
        write_replace(&self.index_path(), &bytes).await?;
        Ok(removed)
    }
}

async fn write_replace(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let mut guard = TempGuard(Some(tmp.clone()));
    tokio::fs::write(&tmp, data)
        .await
        .map_err(|e| ClientError::io(format!("writing {}", tmp.display()), e))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(|e| ClientError::io(format!("renaming into {}", path.display()), e))?;
    guard.0 = None;
    Ok(())
}

/// Deletes a temporary file when dropped, unless disarmed (`.0 = None`).
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // One unlink of a file we created; small enough to do in place, and a drop
            // cannot await.
            let _ = std::fs::remove_file(p);
        }
    }
}
