//! Images a build starts from or copies out of: `FROM` and `COPY --from=<image>`.
//!
//! Resolution (ZUUL.md §9): with a buildset registry, the speculative version is tried
//! first — `quay.io/example/base:1` as repository `quay.io/example/base` there, a Docker Hub
//! image as its path (`library/busybox`) — then the image's own registry. An index is
//! narrowed to the target platform. Only the manifest and config are fetched; layer blobs
//! are downloaded only when a file must be read out of them (`read_paths`).
//!
//! Must not write layers or push; uses `client` for every registry request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::Value;

use super::layer::{Entries, EntryKind, LayerEntry};
use crate::client::{ClientError, ImageRef, Store, StoreFactory};
use crate::oci::{
    Descriptor, Digest, Manifest, MediaType, Platform, Reference, validate_repository,
};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {name:?}: {source}")]
    Reference {
        name: String,
        #[source]
        source: crate::oci::ReferenceError,
    },
    #[error("image {name}: {source}")]
    Client {
        name: String,
        #[source]
        source: ClientError,
    },
    #[error("image {name}: {why}")]
    Invalid { name: String, why: String },
    #[error("reading layer {digest} of {name}: {source}")]
    Layer {
        name: String,
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    pub fn is_usage(&self) -> bool {
        match self {
            ImageError::Reference { .. } | ImageError::Invalid { .. } => true,
            ImageError::Client { source, .. } => matches!(
                source,
                ClientError::NotFound(_) | ClientError::Auth { .. } | ClientError::Invalid(_)
            ),
            ImageError::Layer { .. } => false,
        }
    }
}

/// A base image: where it came from, its config and its layers (OCI media types).
#[derive(Clone)]
pub struct BaseImage {
    /// The name as the Dockerfile wrote it, resolved (`docker.io/library/busybox:latest`).
    pub name: String,
    /// Where it was actually read (the buildset registry for speculative images).
    pub fetched_from: Reference,
    pub speculative: bool,
    pub store: Arc<Store>,
    pub digest: Digest,
    pub config: Value,
    pub layers: Vec<Descriptor>,
}

/// The repository that holds `r`'s speculative version in a buildset registry, when `r`
/// can have one.
pub fn buildset_repository(r: &Reference) -> Option<String> {
    let repo = if r.registry == crate::oci::DOCKER_HUB {
        r.repository.clone()
    } else {
        format!("{}/{}", r.registry, r.repository)
    };
    validate_repository(&repo).ok().map(|_| repo)
}

/// The OCI media type for a layer (Docker's types name the same bytes).
fn oci_layer_type(t: &str) -> String {
    match t {
        MediaType::DOCKER_LAYER_GZIP => MediaType::OCI_LAYER_GZIP.to_string(),
        "application/vnd.docker.image.rootfs.diff.tar" => MediaType::OCI_LAYER_TAR.to_string(),
        other => other.to_string(),
    }
}

fn platform_matches(p: &Platform, want: &Platform) -> bool {
    p.os == want.os
        && p.architecture == want.architecture
        && (want.variant.is_none() || p.variant == want.variant)
}

/// Finds `name` (speculative version first) and reads its manifest and config.
pub async fn fetch(
    name: &str,
    platform: &Platform,
    factory: &StoreFactory,
    buildset: Option<&str>,
) -> Result<BaseImage, ImageError> {
    let r = Reference::parse(name).map_err(|source| ImageError::Reference {
        name: name.to_string(),
        source,
    })?;
    let client_err = |n: &str| {
        let n = n.to_string();
        move |source| ImageError::Client { name: n, source }
    };
    let shown = r.to_string();
    let mut candidates = Vec::new();
    if let Some(host) = buildset
        && let Some(repo) = buildset_repository(&r)
    {
        candidates.push((
            Reference {
                registry: host.to_string(),
                repository: repo,
                ..r.clone()
            },
            true,
        ));
    }
    candidates.push((r.clone(), false));
    for (i, (cand, speculative)) in candidates.iter().enumerate() {
        let store = factory
            .store(&ImageRef::Registry(cand.clone()))
            .map_err(client_err(&shown))?;
        let m = match store.get_manifest(&cand.reference()).await {
            Ok(m) => m,
            // Not speculative: fall through to the image's own registry.
            Err(ClientError::NotFound(_)) if i + 1 < candidates.len() => continue,
            Err(e) => return Err(client_err(&shown)(e)),
        };
        let (m, parsed) = {
            let p = Manifest::parse(&m.bytes, Some(&m.media_type)).map_err(|e| {
                ImageError::Invalid {
                    name: shown.clone(),
                    why: e.to_string(),
                }
            })?;
            if p.is_index() {
                let child = p
                    .manifests
                    .iter()
                    .find(|d| {
                        d.platform
                            .as_ref()
                            .is_some_and(|pl| platform_matches(pl, platform))
                    })
                    .ok_or_else(|| ImageError::Invalid {
                        name: shown.clone(),
                        why: format!("no manifest for platform {platform}"),
                    })?;
                let cm = store
                    .get_manifest(&child.digest.to_string())
                    .await
                    .map_err(client_err(&shown))?;
                let cp = Manifest::parse(&cm.bytes, Some(&cm.media_type)).map_err(|e| {
                    ImageError::Invalid {
                        name: shown.clone(),
                        why: e.to_string(),
                    }
                })?;
                (cm, cp)
            } else {
                (m, p)
            }
        };
        let config_desc = parsed.config.clone().ok_or_else(|| ImageError::Invalid {
            name: shown.clone(),
            why: "manifest has no config".into(),
        })?;
        let config_bytes = read_blob(&store, &config_desc.digest)
            .await
            .map_err(client_err(&shown))?;
        if !config_desc.digest.verify(&config_bytes) {
            return Err(ImageError::Invalid {
                name: shown.clone(),
                why: format!("config {} does not match its digest", config_desc.digest),
            });
        }
        let config: Value =
            serde_json::from_slice(&config_bytes).map_err(|e| ImageError::Invalid {
                name: shown.clone(),
                why: format!("config is not JSON: {e}"),
            })?;
        let layers = parsed
            .layers
            .iter()
            .map(|l| Descriptor {
                media_type: oci_layer_type(&l.media_type),
                ..l.clone()
            })
            .collect();
        if *speculative {
            tracing::info!("FROM {shown}: speculative image from {cand}");
        }
        return Ok(BaseImage {
            name: shown,
            fetched_from: cand.clone(),
            speculative: *speculative,
            store: Arc::new(store),
            digest: m.digest,
            config,
            layers,
        });
    }
    Err(ImageError::Invalid {
        name: shown,
        why: "not found".into(),
    })
}

async fn read_blob(store: &Store, d: &Digest) -> Result<Vec<u8>, ClientError> {
    let mut s = store.get_blob(d).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Downloads a layer blob into `cache/<hex>` (once per build) and returns its path.
pub async fn download_layer(
    name: &str,
    store: &Store,
    desc: &Descriptor,
    cache: &Path,
) -> Result<PathBuf, ImageError> {
    let path = cache.join(desc.digest.hex());
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Ok(path);
    }
    let layer_err = |source| ImageError::Layer {
        name: name.to_string(),
        digest: desc.digest.clone(),
        source,
    };
    tokio::fs::create_dir_all(cache).await.map_err(layer_err)?;
    let local = crate::client::layout::Layout::new(cache.join("layout"));
    let body = store
        .get_blob(&desc.digest)
        .await
        .map_err(|source| ImageError::Client {
            name: name.to_string(),
            source,
        })?;
    local
        .put_blob(desc, body)
        .await
        .map_err(|source| ImageError::Client {
            name: name.to_string(),
            source,
        })?;
    let stored = cache
        .join("layout/blobs")
        .join(desc.digest.algorithm().as_str())
        .join(desc.digest.hex());
    tokio::fs::rename(&stored, &path).await.map_err(layer_err)?;
    Ok(path)
}

/// Reads the entries of a layer file (gzip'd or plain tar) into `into`, keeping only
/// paths `want` accepts, applying whiteouts, extracting file contents under `extract`.
/// Paths are relative to the image root, without leading or trailing `/`.
pub fn scan_tar(
    layer: &Path,
    want: &dyn Fn(&str) -> bool,
    extract: &Path,
    into: &mut Entries,
) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader};
    let f = std::fs::File::open(layer)?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let gz = r.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn std::io::Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(r))
    } else {
        Box::new(r)
    };
    let mut ar = tar::Archive::new(reader);
    std::fs::create_dir_all(extract)?;
    for e in ar.entries()? {
        let mut e = e?;
        let raw = e.path()?.to_string_lossy().into_owned();
        let path = normalize(&raw);
        if path.is_empty() {
            continue;
        }
        // An entry climbing out with `..` would land outside the destination (or, in a
        // base layer, outside the root): refuse it by name, as Docker does.
        if path.split('/').any(|s| s == "..") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("archive entry {raw:?} escapes the destination"),
            ));
        }
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (d.to_string(), b),
            None => (String::new(), path.as_str()),
        };
        if base == ".wh..wh..opq" {
            let prefix = format!("{dir}/");
            into.retain(|k, _| !k.starts_with(&prefix));
            continue;
        }
        if let Some(gone) = base.strip_prefix(".wh.") {
            let gone = if dir.is_empty() {
                gone.to_string()
            } else {
                format!("{dir}/{gone}")
            };
            let prefix = format!("{gone}/");
            into.retain(|k, _| *k != gone && !k.starts_with(&prefix));
            continue;
        }
        if !want(&path) {
            continue;
        }
        let h = e.header();
        // Some writers leave numeric fields empty; that means 0.
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0);
        let gid = h.gid().unwrap_or(0);
        let kind = match h.entry_type() {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink(
                e.link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                let target = e
                    .link_name()?
                    .map(|l| normalize(&l.to_string_lossy()))
                    .unwrap_or_default();
                match into.get(&target) {
                    Some(t) => t.kind.clone(),
                    None => continue,
                }
            }
            t if t.is_file() => {
                let out = extract.join(uuid::Uuid::new_v4().to_string());
                let mut f = std::fs::File::create(&out)?;
                let size = std::io::copy(&mut e, &mut f)?;
                EntryKind::File { source: out, size }
            }
            _ => continue,
        };
        into.insert(
            path,
            LayerEntry {
                kind,
                mode,
                uid,
                gid,
            },
        );
    }
    Ok(())
}

/// `./a/b/` → `a/b`.
fn normalize(p: &str) -> String {
    p.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildset_names() {
        let r = Reference::parse("quay.io/example/base:1").unwrap();
        assert_eq!(
            buildset_repository(&r).as_deref(),
            Some("quay.io/example/base")
        );
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(buildset_repository(&r).as_deref(), Some("library/busybox"));
        let r = Reference::parse("127.0.0.1:5000/x").unwrap();
        assert_eq!(buildset_repository(&r), None);
    }

    #[test]
    fn whiteouts_and_filter() {
        let t = tempfile::tempdir().unwrap();
        let mk = |name: &str, files: &[(&str, &[u8])]| {
            let p = t.path().join(name);
            let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
            for (path, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, path, *data).unwrap();
            }
            b.finish().unwrap();
            p
        };
        let l1 = mk(
            "l1",
            &[("etc/passwd", b"root"), ("app/a", b"a"), ("app/b", b"b")],
        );
        let l2 = mk("l2", &[("app/.wh.a", b""), ("./etc/passwd", b"root2")]);
        let mut into = Entries::new();
        let want = |p: &str| p == "app" || p.starts_with("app/") || p == "etc/passwd";
        scan_tar(&l1, &want, &t.path().join("x"), &mut into).unwrap();
        scan_tar(&l2, &want, &t.path().join("x"), &mut into).unwrap();
        let keys: Vec<&str> = into.keys().map(|s| s.as_str()).collect();
        assert_eq!(keys, ["app/b", "etc/passwd"]);
        let EntryKind::File { source, size } = &into["etc/passwd"].kind else {
            panic!()
        };
        assert_eq!(
            (std::fs::read(source).unwrap(), *size),
            (b"root2".to_vec(), 5)
        );
    }
}
