//! Registry storage: blobs, links, manifests, tags, referrers and upload sessions over a
//! byte [`Driver`] (the local filesystem in `fs.rs`, S3 in `s3.rs`).
//!
//! Owns the registry's rules about bytes; knows nothing of HTTP. Handlers call it with
//! validated names, tags and digests (see `path.rs`); it turns them into keys, so no string
//! from a request reaches a driver unchecked. Drivers never see a registry rule. Keys, and
//! on the filesystem the paths under the root:
//!
//! ```text
//!   blobs/<alg>/<2 hex>/<hex>                     content, written once, atomically
//!   uploads/<id>/state                            JSON: repository, offset, hash state,
//!                                                 parts, bytes short of a part (S3)
//!   uploads/<id>/data                             upload bytes (filesystem; S3: multipart)
//!   repos/<name>/_links/<alg>/<hex>               this repository may see that blob
//!   repos/<name>/_manifests/<alg>/<hex>           manifest link; holds the media type
//!   repos/<name>/_tags/<tag>                      current digest of the tag
//!   repos/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>   referrer descriptor (JSON)
//!   tmp/                                          filesystem staging for atomic renames
//!   gc.lock                                       held by gc while it removes (sweep.rs)
//! ```
//!
//! The `_` prefix keeps our objects apart from nested repository names: a name component
//! can never start with `_` (see `oci::name`), so `a/_tags` is never a repository while
//! `a/tags` may be.
//!
//! Blob commit is four named steps: write (hashing while streaming), verify digest, move
//! (a streamed write made visible whole: rename on the filesystem, multipart completion
//! on S3), link. Replicas on one bucket need no coordination: blobs are content-addressed,
//! manifests and tags are whole-object writes, upload state is compare-and-swapped.

mod driver;
mod fs;
mod s3;
mod sweep;
mod upload;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::oci::{Descriptor, Digest};

pub use driver::{ByteStream, Driver, Entry, Meta, Mode, Put};
pub use fs::FsDriver;
pub use s3::S3Driver;
pub use sweep::{GcLock, Object, TMP_MAX_IDLE};
pub use upload::UploadStatus;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("upload {0} not found")]
    UploadUnknown(String),
    #[error("digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("chunk starts at {got} but the upload is at {offset}")]
    RangeMismatch { offset: u64, got: u64 },
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("reading the request body: {0}")]
    Body(String),
    #[error(
        "bad storage location {0:?}: expected a directory, file:///DIR or s3://BUCKET[/PREFIX]"
    )]
    Location(String),
    #[error("{0}")]
    Busy(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StorageError::Io {
            context: context(),
            source,
        })
    }
}

/// Where a registry keeps its bytes: `--storage URL` or `--data-dir DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `DIR`, `file:///DIR` or `s3://BUCKET[/PREFIX]`.
    pub fn parse(s: &str) -> Result<Location> {
        let bad = || StorageError::Location(s.to_string());
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
            let prefix = prefix.trim_matches('/');
            let prefix_ok = prefix
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..")
                || prefix.is_empty();
            if !valid || !prefix_ok {
                return Err(bad());
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad());
            }
            return Ok(Location::Dir(PathBuf::from(path)));
        }
        if s.is_empty() || s.contains("://") {
            return Err(bad());
        }
        Ok(Location::Dir(PathBuf::from(s)))
    }
}

/// A manifest as stored: its digest, media type and exact bytes.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// Registry storage over a driver.
pub struct Storage {
    driver: Arc<dyn Driver>,
    /// The root directory when the driver is the filesystem (notifications queue there).
    local: Option<PathBuf>,
    /// One lock per upload session: a session is appended to by one request at a time in
    /// this process (across replicas, its state is compare-and-swapped).
    upload_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn alg_hex(d: &Digest) -> String {
    format!("{}/{}", d.algorithm().as_str(), d.hex())
}

fn storage_task<E: std::fmt::Display>(what: &str, e: E) -> StorageError {
    StorageError::Io {
        context: format!("{what} task"),
        source: io::Error::other(e.to_string()),
    }
}

impl Storage {
    /// Opens (creating if needed) a filesystem storage root.
    pub fn open(root: impl Into<PathBuf>) -> Result<Storage> {
        let root = root.into();
        let driver = FsDriver::open(&root)?;
        let mut s = Storage::with_driver(Arc::new(driver));
        s.local = Some(root);
        Ok(s)
    }

    /// Opens the storage a [`Location`] names (S3 settings from the environment).
    pub fn at(location: &Location) -> Result<Storage> {
        match location {
            Location::Dir(d) => Storage::open(d),
            Location::S3 { bucket, prefix } => Ok(Storage::with_driver(Arc::new(
                S3Driver::from_env(bucket, prefix)?,
            ))),
        }
    }

    pub fn with_driver(driver: Arc<dyn Driver>) -> Storage {
        Storage {
            driver,
            local: None,
            upload_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The root directory of a filesystem store.
    pub fn local_root(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    pub fn driver(&self) -> &dyn Driver {
        &*self.driver
    }

    /// Where the bytes live, for logs.
    pub fn describe(&self) -> String {
        self.driver.describe()
    }

    // ---- keys --------------------------------------------------------------------------

    pub fn blob_key(d: &Digest) -> String {
        format!(
            "blobs/{}/{}/{}",
            d.algorithm().as_str(),
            &d.hex()[..2],
            d.hex()
        )
    }

    fn repo_key(repo: &str) -> String {
        format!("repos/{repo}")
    }

    fn link_key(repo: &str, d: &Digest) -> String {
        format!("repos/{repo}/_links/{}", alg_hex(d))
    }

    fn manifest_link_key(repo: &str, d: &Digest) -> String {
        format!("repos/{repo}/_manifests/{}", alg_hex(d))
    }

    fn tag_key(repo: &str, tag: &str) -> String {
        format!("repos/{repo}/_tags/{tag}")
    }

    fn referrers_key(repo: &str, subject: &Digest) -> String {
        format!("repos/{repo}/_referrers/{}", alg_hex(subject))
    }

    fn referrer_key(repo: &str, subject: &Digest, referrer: &Digest) -> String {
        format!(
            "{}/{}-{}",
            Storage::referrers_key(repo, subject),
            referrer.algorithm(),
            referrer.hex()
        )
    }

    // ---- blobs -----------------------------------------------------------------------

    /// The size of blob `d` if it is linked into `repo` (a pull; no stamp).
    pub async fn linked_blob_size(&self, repo: &str, d: &Digest) -> Result<Option<u64>> {
        if self
            .driver
            .stat(&Storage::link_key(repo, d))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        Ok(self
            .driver
            .stat(&Storage::blob_key(d))
            .await?
            .map(|m| m.size))
    }

    /// Blob `d` if it is linked into `repo`: its size and bytes (a pull without a range).
    pub async fn open_blob(&self, repo: &str, d: &Digest) -> Result<Option<(u64, ByteStream)>> {
        if self
            .driver
            .size(&Storage::link_key(repo, d))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        self.driver.open(&Storage::blob_key(d)).await
    }

    /// `len` bytes of blob `d` from `start`.
    pub async fn read_blob_range(&self, d: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        self.driver.read(&Storage::blob_key(d), start, len).await
    }

    /// Reads a whole blob (manifests, configs) regardless of repository links.
    pub async fn read_blob(&self, d: &Digest) -> Result<Option<Bytes>> {
        Ok(self
            .driver
            .get(&Storage::blob_key(d))
            .await?
            .map(|(b, _)| b))
    }

    /// Makes blob `d` visible to `repo` after an upload or a mount (the blob is fresh or
    /// was just stamped by [`Storage::reference_blob`]); the link is stamped now.
    pub async fn link_blob(&self, repo: &str, d: &Digest) -> Result<()> {
        let link = Storage::link_key(repo, d);
        self.driver.put(&link, Bytes::new(), Mode::Volatile).await?;
        Ok(())
    }

    /// Removes `repo`'s link to blob `d`; true if there was one.
    pub async fn unlink_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        self.driver.delete(&Storage::link_key(repo, d)).await
    }

    /// Stores `data` as a blob (if absent) and links it into `repo`.
    pub async fn put_blob_bytes(&self, repo: &str, d: &Digest, data: Bytes) -> Result<()> {
        self.write_blob_if_absent(d, data).await?;
        self.link_blob(repo, d).await
    }

    /// Writes blob `d` unless it is there already; then it is stamped as referenced now
    /// (and fenced against a running gc, see `sweep.rs`).
    async fn write_blob_if_absent(&self, d: &Digest, data: Bytes) -> Result<()> {
        let key = Storage::blob_key(d);
        for _ in 0..3 {
            match self.driver.put(&key, data.clone(), Mode::Create).await? {
                Put::Done(_) => return Ok(()),
                Put::Exists | Put::Conflict => {}
            }
            // There already: stamp it; if gc removed it meanwhile, write it again.
            if self.driver.touch(&key).await?.is_some() && self.fence(&[&key]).await? {
                return Ok(());
            }
        }
        Err(StorageError::Busy(format!("writing blob {d}")))
    }

    // ---- manifests and tags ----------------------------------------------------------

    /// Stores manifest bytes (already validated) under their digest in `repo`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<()> {
        self.write_blob_if_absent(digest, bytes).await?;
        self.driver
            .put(
                &Storage::manifest_link_key(repo, digest),
                Bytes::from(media_type.as_bytes().to_vec()),
                Mode::Overwrite,
            )
            .await
            .map(|_| ())
    }

    /// The media type of manifest `d` in `repo`, if that repository has it.
    pub async fn manifest_media_type(&self, repo: &str, d: &Digest) -> Result<Option<String>> {
        Ok(self
            .driver
            .get(&Storage::manifest_link_key(repo, d))
            .await?
            .map(|(b, _)| String::from_utf8_lossy(&b).into_owned()))
    }

    /// The manifest with digest `d` in `repo`.
    pub async fn get_manifest(&self, repo: &str, d: &Digest) -> Result<Option<StoredManifest>> {
        let Some(media_type) = self.manifest_media_type(repo, d).await? else {
            return Ok(None);
        };
        let Some(bytes) = self.read_blob(d).await? else {
            return Ok(None);
        };
        Ok(Some(StoredManifest {
            digest: d.clone(),
            media_type,
            bytes,
        }))
    }

    /// Removes manifest `d` from `repo`, and every tag pointing at it. True if it existed.
    /// A tag is removed only if it still holds the version that pointed at `d`
    /// (compare-and-swap to empty, then delete), so a tag moved meanwhile stays.
    pub async fn delete_manifest(&self, repo: &str, d: &Digest) -> Result<bool> {
        let existed = self
            .driver
            .delete(&Storage::manifest_link_key(repo, d))
            .await?;
        for tag in self.tags(repo).await? {
            let key = Storage::tag_key(repo, &tag);
            let Some((bytes, meta)) = self.driver.get(&key).await? else {
                continue;
            };
            if parse_digest(&bytes).as_ref() != Some(d) {
                continue;
            }
            if let Put::Done(_) = self
                .driver
                .put(&key, Bytes::new(), Mode::Update(meta.version))
                .await?
            {
                self.driver.delete(&key).await?;
            }
        }
        Ok(existed)
    }

    pub async fn set_tag(&self, repo: &str, tag: &str, d: &Digest) -> Result<()> {
        self.driver
            .put(
                &Storage::tag_key(repo, tag),
                Bytes::from(d.to_string()),
                Mode::Overwrite,
            )
            .await
            .map(|_| ())
    }

    /// The digest tag `tag` names (an emptied tag, half-way through a delete, names none).
    pub async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        Ok(self
            .driver
            .get(&Storage::tag_key(repo, tag))
            .await?
            .and_then(|(b, _)| parse_digest(&b)))
    }

    /// Deletes a tag (not the manifest). True if it existed.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        self.driver.delete(&Storage::tag_key(repo, tag)).await
    }

    /// Tags of `repo`, sorted; empty when the repository has none.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let mut tags = self
            .driver
            .list_dir(&format!("{}/_tags", Storage::repo_key(repo)))
            .await?;
        tags.retain(|t| crate::oci::validate_tag(t).is_ok());
        tags.sort();
        Ok(tags)
    }

    /// True when `repo` has ever stored a manifest, tag or blob link.
    pub async fn repo_exists(&self, repo: &str) -> Result<bool> {
        let names = self.driver.list_dir(&Storage::repo_key(repo)).await?;
        Ok(names
            .iter()
            .any(|n| n == "_manifests" || n == "_tags" || n == "_links"))
    }

    /// Every repository, sorted.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut todo = vec![String::new()];
        while let Some(name) = todo.pop() {
            let key = if name.is_empty() {
                "repos".to_string()
            } else {
                Storage::repo_key(&name)
            };
            let mut is_repo = false;
            for child in self.driver.list_dir(&key).await? {
                if child.starts_with('_') {
                    is_repo |= child == "_manifests" || child == "_tags";
                } else if name.is_empty() {
                    todo.push(child);
                } else {
                    todo.push(format!("{name}/{child}"));
                }
            }
            if is_repo && !name.is_empty() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Digests under `repos/<repo>/<sub>/<alg>/<hex>`, with their stamps.
    async fn digests_under(&self, repo: &str, sub: &str) -> Result<Vec<(Digest, Entry)>> {
        let entries = self
            .driver
            .list(&format!("{}/{sub}", Storage::repo_key(repo)))
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let (alg, hex) = e.name.split_once('/')?;
                Some((Digest::parse(&format!("{alg}:{hex}")).ok()?, e))
            })
            .collect())
    }

    /// Digests of every manifest stored in `repo`.
    pub async fn manifests(&self, repo: &str) -> Result<Vec<Digest>> {
        let all = self.digests_under(repo, "_manifests").await?;
        Ok(all.into_iter().map(|(d, _)| d).collect())
    }

    /// Digests of every blob linked into `repo`.
    pub async fn blob_links(&self, repo: &str) -> Result<Vec<Digest>> {
        let all = self.digests_under(repo, "_links").await?;
        Ok(all.into_iter().map(|(d, _)| d).collect())
    }

    // ---- referrers ---------------------------------------------------------------------

    pub async fn add_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        referrer: &Descriptor,
    ) -> Result<()> {
        let json =
            serde_json::to_vec(referrer).map_err(|e| storage_task("encoding referrer", e))?;
        self.driver
            .put(
                &Storage::referrer_key(repo, subject, &referrer.digest),
                Bytes::from(json),
                Mode::Overwrite,
            )
            .await
            .map(|_| ())
    }

    pub async fn remove_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<()> {
        self.driver
            .delete(&Storage::referrer_key(repo, subject, referrer))
            .await
            .map(|_| ())
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, sorted by digest.
    pub async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>> {
        let dir = Storage::referrers_key(repo, subject);
        let mut out = Vec::new();
        for name in self.driver.list_dir(&dir).await? {
            let Some((bytes, _)) = self.driver.get(&format!("{dir}/{name}")).await? else {
                continue;
            };
            if let Ok(d) = serde_json::from_slice::<Descriptor>(&bytes) {
                out.push(d);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Every subject in `repo` with the digests of its referrers (one listing).
    pub async fn referrer_index(
        &self,
        repo: &str,
    ) -> Result<std::collections::BTreeMap<Digest, Vec<Digest>>> {
        let mut out: std::collections::BTreeMap<Digest, Vec<Digest>> = Default::default();
        let entries = self
            .driver
            .list(&format!("{}/_referrers", Storage::repo_key(repo)))
            .await?;
        for e in entries {
            let mut parts = e.name.split('/');
            let (Some(alg), Some(hex), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(subject), Some(Ok(referrer))) = (
                Digest::parse(&format!("{alg}:{hex}")),
                name.split_once('-')
                    .map(|(a, h)| Digest::parse(&format!("{a}:{h}"))),
            ) else {
                continue;
            };
            out.entry(subject).or_default().push(referrer);
        }
        Ok(out)
    }

    // ---- uploads: see upload.rs ----------------------------------------------------------

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.upload_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_string()).or_default().clone()
    }
}

fn parse_digest(bytes: &[u8]) -> Option<Digest> {
    Digest::parse(String::from_utf8_lossy(bytes).trim()).ok()
}
