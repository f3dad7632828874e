//! Where images live: a repository in a registry, or an OCI layout directory. One enum,
//! so operations are written once and work between any two stores.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::layout::Layout;
use super::registry::Mount;
use super::transport::{ClientOptions, RegistryClient};
use super::{BlobStream, ClientError, RawManifest, Result};
use crate::oci::{Descriptor, Digest, Reference, validate_tag};

/// An image as the user named it: `docker://host/repo:tag`, `host/repo:tag`, `oci:DIR[:tag]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    Registry(Reference),
    Layout { dir: PathBuf, tag: Option<String> },
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef> {
        if let Some(rest) = s.strip_prefix("oci:") {
            if rest.is_empty() {
                return Err(ClientError::Invalid(format!(
                    "invalid reference {s:?}: oci: needs a directory"
                )));
            }
            // `oci:DIR:tag` — the tag is after the last ':' when that part is a valid tag
            // and not a path.
            if let Some((dir, tag)) = rest.rsplit_once(':')
                && !tag.contains('/')
                && !dir.is_empty()
            {
                validate_tag(tag)
                    .map_err(|e| ClientError::Invalid(format!("invalid reference {s:?}: {e}")))?;
                return Ok(ImageRef::Layout {
                    dir: PathBuf::from(dir),
                    tag: Some(tag.to_string()),
                });
            }
            return Ok(ImageRef::Layout {
                dir: PathBuf::from(rest),
                tag: None,
            });
        }
        let rest = s.strip_prefix("docker://").unwrap_or(s);
        if rest.contains("://") || s.starts_with("docker-daemon:") || s.starts_with("dir:") {
            return Err(ClientError::Invalid(format!(
                "invalid reference {s:?}: supported forms are docker://host/repo:tag, host/repo:tag and oci:DIR[:tag]"
            )));
        }
        Reference::parse(rest)
            .map(ImageRef::Registry)
            .map_err(|e| ClientError::Invalid(e.to_string()))
    }

    /// The tag or digest to read, as a manifest reference.
    pub fn reference(&self) -> String {
        match self {
            ImageRef::Registry(r) => r.reference(),
            ImageRef::Layout { tag, .. } => tag.clone().unwrap_or_default(),
        }
    }

    /// The tag to write under, if the reference names one.
    pub fn tag(&self) -> Option<&str> {
        match self {
            ImageRef::Registry(r) => r.tag.as_deref().or(if r.digest.is_none() {
                Some("latest")
            } else {
                None
            }),
            ImageRef::Layout { tag, .. } => tag.as_deref(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry(r) => write!(f, "docker://{r}"),
            ImageRef::Layout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            ImageRef::Layout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
        }
    }
}

/// Makes stores, sharing one client (and its token cache) per registry host.
pub struct StoreFactory {
    opts: ClientOptions,
    overrides: HashMap<String, ClientOptions>,
    clients: Mutex<HashMap<String, Arc<RegistryClient>>>,
}

impl StoreFactory {
    pub fn new(opts: ClientOptions) -> StoreFactory {
        StoreFactory {
            opts,
            overrides: HashMap::new(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Different options (credentials, CA) for one registry host.
    pub fn with_registry_options(mut self, registry: &str, opts: ClientOptions) -> StoreFactory {
        self.overrides.insert(registry.to_string(), opts);
        self
    }

    pub fn client(&self, registry: &str) -> Result<Arc<RegistryClient>> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(registry) {
            return Ok(c.clone());
        }
        let opts = self.overrides.get(registry).unwrap_or(&self.opts);
        let c = Arc::new(RegistryClient::new(registry, opts)?);
        clients.insert(registry.to_string(), c.clone());
        Ok(c)
    }

    pub fn store(&self, r: &ImageRef) -> Result<Store> {
        Ok(match r {
            ImageRef::Registry(r) => Store::Registry {
                client: self.client(&r.registry)?,
                repo: r.repository.clone(),
            },
            ImageRef::Layout { dir, .. } => Store::Layout(Layout::new(dir)),
        })
    }
}

/// One repository of a registry, or one layout directory.
#[derive(Clone)]
pub enum Store {
    Registry {
        client: Arc<RegistryClient>,
        repo: String,
    },
    Layout(Layout),
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::Registry { client, repo } => write!(f, "{}/{repo}", client.registry),
            Store::Layout(l) => write!(f, "oci:{}", l.dir.display()),
        }
    }
}

impl Store {
    pub async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        match self {
            Store::Registry { client, repo } => client.get_manifest(repo, reference).await,
            Store::Layout(l) => l.get_manifest(reference).await,
        }
    }

    /// Puts a manifest under `tag`, or by its digest when `tag` is `None`.
    pub async fn put_manifest(&self, tag: Option<&str>, m: &RawManifest) -> Result<Digest> {
        match self {
            Store::Registry { client, repo } => {
                let reference = tag
                    .map(String::from)
                    .unwrap_or_else(|| m.digest.to_string());
                client.put_manifest(repo, &reference, m).await
            }
            Store::Layout(l) => l.put_manifest(tag, m).await,
        }
    }

    pub async fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        match self {
            Store::Registry { client, repo } => {
                client
                    .blob_size(repo, d, &RegistryClient::pull_scope(repo))
                    .await
            }
            Store::Layout(l) => l.blob_size(d).await,
        }
    }

    /// Like `blob_size`, asking for push access up front (one token for the whole copy).
    pub async fn blob_size_for_push(&self, d: &Digest) -> Result<Option<u64>> {
        match self {
            Store::Registry { client, repo } => {
                client
                    .blob_size(repo, d, &RegistryClient::push_scope(repo))
                    .await
            }
            Store::Layout(l) => l.blob_size(d).await,
        }
    }

    pub async fn get_blob(&self, d: &Digest) -> Result<BlobStream> {
        match self {
            Store::Registry { client, repo } => client.get_blob(repo, d).await,
            Store::Layout(l) => l.get_blob(d).await,
        }
    }

    pub async fn put_blob(
        &self,
        desc: &Descriptor,
        body: BlobStream,
        session: Option<reqwest::Url>,
    ) -> Result<()> {
        match self {
            Store::Registry { client, repo } => client.upload_blob(repo, desc, body, session).await,
            Store::Layout(l) => l.put_blob(desc, body).await,
        }
    }

    /// The repository `other` lives in when both are on the same registry (mountable).
    pub fn same_registry_repo<'a>(&self, other: &'a Store) -> Option<&'a str> {
        match (self, other) {
            (Store::Registry { client: a, .. }, Store::Registry { client: b, repo })
                if a.registry == b.registry =>
            {
                Some(repo)
            }
            _ => None,
        }
    }

    /// Cross-repository mount on a registry; `None` for layouts.
    pub async fn mount(&self, d: &Digest, from_repo: &str) -> Result<Option<Mount>> {
        match self {
            Store::Registry { client, repo } => {
                client.mount_blob(repo, d, from_repo).await.map(Some)
            }
            Store::Layout(_) => Ok(None),
        }
    }

    /// Deletes a tag (or, given a digest, a manifest). `Ok(false)` when absent.
    pub async fn delete(&self, reference: &str) -> Result<bool> {
        match self {
            Store::Registry { client, repo } => client.delete_manifest(repo, reference).await,
            Store::Layout(l) => l.delete_tag(reference).await,
        }
    }

    pub async fn tags(&self) -> Result<Vec<String>> {
        match self {
            Store::Registry { client, repo } => client.tags(repo).await,
            Store::Layout(l) => l.tags().await,
        }
    }

    pub async fn referrers(&self, d: &Digest) -> Result<Vec<Descriptor>> {
        match self {
            Store::Registry { client, repo } => client.referrers(repo, d).await,
            Store::Layout(_) => Ok(Vec::new()),
        }
    }

    /// Requests sent so far to this store's registry (0 for layouts).
    pub fn requests(&self) -> u64 {
        match self {
            Store::Registry { client, .. } => {
                client.requests.load(std::sync::atomic::Ordering::Relaxed)
            }
            Store::Layout(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs() {
        assert_eq!(
            ImageRef::parse("oci:/tmp/x:v1").unwrap(),
            ImageRef::Layout {
                dir: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/tmp/x").unwrap(),
            ImageRef::Layout {
                dir: "/tmp/x".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageRef::parse("oci:rel/dir").unwrap(),
            ImageRef::Layout {
                dir: "rel/dir".into(),
                tag: None
            }
        );
        let r = ImageRef::parse("docker://127.0.0.1:5000/a:v1").unwrap();
        assert_eq!(r.reference(), "v1");
        assert_eq!(r.to_string(), "docker://127.0.0.1:5000/a:v1");
        assert_eq!(
            ImageRef::parse("127.0.0.1:5000/a").unwrap().tag(),
            Some("latest")
        );
        for bad in [
            "oci:",
            "http://x/y",
            "docker://",
            "docker://UP/x",
            "oci:/x:bad tag",
            "dir:/x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
