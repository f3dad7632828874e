//! Content-addressed filesystem storage for the registry.
//!
//! Owns every byte on disk; knows nothing of HTTP. Handlers call it with validated names,
//! tags and digests (see `path.rs`), so no string from a request reaches a path unchecked.
//!
//! ```text
//! <root>/
//!   blobs/<alg>/<2 hex>/<hex>                     content, written once, fsynced, renamed in
//!   uploads/<id>/data                             upload session bytes
//!   uploads/<id>/state                            JSON: repository, offset, hash state
//!   repos/<name>/_links/<alg>/<hex>               this repository may see that blob
//!   repos/<name>/_manifests/<alg>/<hex>           manifest link; holds the media type
//!   repos/<name>/_tags/<tag>                      current digest of the tag
//!   repos/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>   referrer descriptor (JSON)
//!   tmp/                                          staging for atomic replace-by-rename
//!   gc.lock                                       flock: gc removes vs pushes stamp (sweep.rs)
//! ```
//!
//! The `_` prefix keeps our files apart from nested repository names: a name component can
//! never start with `_` (see `oci::name`), so `a/_tags` is never a repository while `a/tags`
//! may be. (DESIGN.md draws these without the prefix; the prefix is what makes it safe.)
//!
//! Blob commit is four named steps: write (hashing while streaming), verify digest, move
//! (fsync then rename, so a crash leaves either no blob or a whole one), link.

mod sweep;
mod upload;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::oci::{Algorithm, Descriptor, Digest};

pub use sweep::{Object, PushGuard, TMP_MAX_IDLE};
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

/// A manifest as stored: its digest, media type and exact bytes.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// The filesystem backend.
pub struct Storage {
    root: PathBuf,
    /// One lock per upload session: a session is appended to by one request at a time.
    upload_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Storage {
    /// Opens (creating if needed) a storage root.
    pub fn open(root: impl Into<PathBuf>) -> Result<Storage> {
        let root = root.into();
        for d in ["blobs", "uploads", "repos", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        }
        Ok(Storage {
            root,
            upload_locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    // ---- paths -------------------------------------------------------------------------

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join("repos").join(repo)
    }

    fn link_path(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_links")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn manifest_link_path(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn tag_path(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo_dir(repo).join("_tags").join(tag)
    }

    fn referrers_dir(&self, repo: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(uuid::Uuid::new_v4().to_string())
    }

    // ---- small-file helpers ----------------------------------------------------------

    /// Replaces `path` with `data` atomically (write to tmp, fsync, rename): for manifests
    /// and tags, which must survive a crash once the client has been told they exist.
    async fn write_atomic(&self, path: PathBuf, data: Vec<u8>) -> Result<()> {
        self.write_replace(path, data, true).await
    }

    /// Like [`Storage::write_atomic`] without the fsync: for links and upload state, which
    /// a client re-creates by retrying if a power loss takes them.
    async fn write_replace(&self, path: PathBuf, data: Vec<u8>, durable: bool) -> Result<()> {
        let tmp = self.tmp_path();
        tokio::task::spawn_blocking(move || write_atomic_sync(&tmp, &path, &data, durable))
            .await
            .map_err(|e| StorageError::Io {
                context: "write task".into(),
                source: io::Error::other(e),
            })?
    }

    // ---- blobs -----------------------------------------------------------------------

    /// Opens a blob linked into `repo` for reading.
    pub async fn open_blob(
        &self,
        repo: &str,
        d: &Digest,
    ) -> Result<Option<(tokio::fs::File, u64)>> {
        if !exists(&self.link_path(repo, d)).await? {
            return Ok(None);
        }
        match tokio::fs::File::open(self.blob_path(d)).await {
            Ok(f) => {
                let len = f.metadata().await.ctx(|| format!("stat blob {d}"))?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("open blob {d}")),
        }
    }

    /// Reads a whole blob (manifests, configs) regardless of repository links.
    pub async fn read_blob(&self, d: &Digest) -> Result<Option<Bytes>> {
        match tokio::fs::read(self.blob_path(d)).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("read blob {d}")),
        }
    }

    /// Makes blob `d` visible to `repo` (after an upload or a mount), and stamps link and
    /// blob as referenced now (see `sweep.rs`). The link is an empty file: creating it is
    /// atomic enough, no rename needed.
    pub async fn link_blob(&self, repo: &str, d: &Digest) -> Result<()> {
        let p = self.link_path(repo, d);
        let blob = self.blob_path(d);
        sweep::blocking("link", move || -> Result<()> {
            sweep::stamp(&blob)?;
            if sweep::stamp(&p)? {
                return Ok(());
            }
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
            }
            std::fs::File::create(&p).ctx(|| format!("create {}", p.display()))?;
            Ok(())
        })
        .await
    }

    /// A whole blob in one request (monolithic upload): stream into a temporary file while
    /// hashing, verify, fsync, rename into place, link. No upload session is recorded:
    /// if the request dies, the temporary file is all there is, and it is removed.
    pub async fn put_blob_stream<S, E>(
        &self,
        repo: &str,
        digest: &Digest,
        mut body: S,
    ) -> Result<u64>
    where
        S: futures_util::Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let tmp = self.tmp_path();
        let file = tokio::fs::File::create(&tmp)
            .await
            .ctx(|| format!("create {}", tmp.display()))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut h = digest.algorithm().hasher();
        let mut size = 0u64;
        let written: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
                h.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk)
                    .await
                    .ctx(|| format!("write {}", tmp.display()))?;
            }
            out.flush()
                .await
                .ctx(|| format!("write {}", tmp.display()))?;
            out.get_ref()
                .sync_all()
                .await
                .ctx(|| format!("fsync {}", tmp.display()))?;
            Ok(())
        }
        .await;
        let actual = h.finish();
        if written.is_err() || &actual != digest {
            let _ = tokio::fs::remove_file(&tmp).await;
            written?;
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let target = self.blob_path(digest);
        let _guard = self.push_guard().await?;
        sweep::blocking("commit", move || rename_durable(&tmp, &target)).await?;
        self.link_blob(repo, digest).await?;
        Ok(size)
    }

    /// Removes `repo`'s link to blob `d`; true if there was one.
    pub async fn unlink_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        remove_if_exists(&self.link_path(repo, d)).await
    }

    /// Stores `data` as a blob (if absent) and links it into `repo`.
    pub async fn put_blob_bytes(&self, repo: &str, d: &Digest, data: Bytes) -> Result<()> {
        let _guard = self.push_guard().await?;
        self.write_blob_if_absent(d, data).await?;
        self.link_blob(repo, d).await
    }

    /// Writes blob `d` unless it is there already; then it is stamped as referenced now.
    async fn write_blob_if_absent(&self, d: &Digest, data: Bytes) -> Result<()> {
        let path = self.blob_path(d);
        let present = {
            let path = path.clone();
            sweep::blocking("stamp", move || sweep::stamp(&path)).await?
        };
        if !present {
            self.write_atomic(path, data.to_vec()).await?;
        }
        Ok(())
    }

    // ---- manifests and tags ----------------------------------------------------------

    /// Stores manifest bytes (already validated) under their digest in `repo`. Call with
    /// a [`PushGuard`] held.
    pub async fn put_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<()> {
        self.write_blob_if_absent(digest, bytes).await?;
        self.write_atomic(
            self.manifest_link_path(repo, digest),
            media_type.as_bytes().to_vec(),
        )
        .await
    }

    /// The media type of manifest `d` in `repo`, if that repository has it.
    pub async fn manifest_media_type(&self, repo: &str, d: &Digest) -> Result<Option<String>> {
        match tokio::fs::read_to_string(self.manifest_link_path(repo, d)).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("read manifest link {d}")),
        }
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
    pub async fn delete_manifest(&self, repo: &str, d: &Digest) -> Result<bool> {
        let existed = remove_if_exists(&self.manifest_link_path(repo, d)).await?;
        for tag in self.tags(repo).await? {
            if self.resolve_tag(repo, &tag).await?.as_ref() == Some(d) {
                remove_if_exists(&self.tag_path(repo, &tag)).await?;
            }
        }
        Ok(existed)
    }

    pub async fn set_tag(&self, repo: &str, tag: &str, d: &Digest) -> Result<()> {
        self.write_atomic(self.tag_path(repo, tag), d.to_string().into_bytes())
            .await
    }

    pub async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        match tokio::fs::read_to_string(self.tag_path(repo, tag)).await {
            Ok(s) => Ok(Digest::parse(s.trim()).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("read tag {repo}:{tag}")),
        }
    }

    /// Deletes a tag (not the manifest). True if it existed.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        remove_if_exists(&self.tag_path(repo, tag)).await
    }

    /// Tags of `repo`, sorted; empty when the repository has none.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let mut tags = list_dir(&self.repo_dir(repo).join("_tags")).await?;
        tags.retain(|t| crate::oci::validate_tag(t).is_ok());
        tags.sort();
        Ok(tags)
    }

    /// True when `repo` has ever stored a manifest, tag or blob link.
    pub async fn repo_exists(&self, repo: &str) -> Result<bool> {
        let dir = self.repo_dir(repo);
        for sub in ["_manifests", "_tags", "_links"] {
            if exists(&dir.join(sub)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every repository, sorted.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let root = self.root.join("repos");
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk_repos(&root, "", &mut out).ctx(|| format!("listing {}", root.display()))?;
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| StorageError::Io {
            context: "list task".into(),
            source: io::Error::other(e),
        })?
    }

    /// Digests of every manifest stored in `repo`.
    pub async fn manifests(&self, repo: &str) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.repo_dir(repo).join("_manifests").join(alg.as_str());
            for hex in list_dir(&dir).await? {
                if let Ok(d) = Digest::parse(&format!("{alg}:{hex}")) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Digests of every blob linked into `repo`.
    pub async fn blob_links(&self, repo: &str) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.repo_dir(repo).join("_links").join(alg.as_str());
            for hex in list_dir(&dir).await? {
                if let Ok(d) = Digest::parse(&format!("{alg}:{hex}")) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    // ---- referrers ---------------------------------------------------------------------

    pub async fn add_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        referrer: &Descriptor,
    ) -> Result<()> {
        let path = self.referrers_dir(repo, subject).join(format!(
            "{}-{}",
            referrer.digest.algorithm(),
            referrer.digest.hex()
        ));
        let json = serde_json::to_vec(referrer).map_err(|e| StorageError::Io {
            context: "encoding referrer".into(),
            source: io::Error::other(e),
        })?;
        self.write_atomic(path, json).await
    }

    pub async fn remove_referrer(
        &self,
        repo: &str,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<()> {
        let path = self.referrers_dir(repo, subject).join(format!(
            "{}-{}",
            referrer.algorithm(),
            referrer.hex()
        ));
        remove_if_exists(&path).await.map(|_| ())
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, sorted by digest.
    pub async fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>> {
        let dir = self.referrers_dir(repo, subject);
        let mut out = Vec::new();
        for name in list_dir(&dir).await? {
            let p = dir.join(&name);
            let bytes = match tokio::fs::read(&p).await {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("read {}", p.display())),
            };
            if let Ok(d) = serde_json::from_slice::<Descriptor>(&bytes) {
                out.push(d);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    // ---- uploads: see upload.rs ----------------------------------------------------------

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.upload_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(id.to_string()).or_default().clone()
    }
}

fn write_atomic_sync(tmp: &Path, path: &Path, data: &[u8], durable: bool) -> Result<()> {
    use std::io::Write;
    let written = (|| {
        let mut f = std::fs::File::create(tmp).ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(data)
            .ctx(|| format!("write {}", tmp.display()))?;
        if durable {
            f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
        }
        std::fs::rename(tmp, path).ctx(|| format!("rename into {}", path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp); // a full disk leaves no staging file behind
    }
    written?;
    if durable {
        sync_parent(path)?;
    }
    Ok(())
}

/// Renames an fsynced file into place and makes the rename durable.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
    }
    std::fs::rename(from, to).ctx(|| format!("rename into {}", to.display()))?;
    sync_parent(to)
}

/// fsync of the directory holding `path`: without it a rename may not survive a crash.
fn sync_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .ctx(|| format!("fsync {}", parent.display()))?;
    }
    Ok(())
}

fn walk_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut is_repo = false;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !e.file_type()?.is_dir() {
            continue;
        }
        if name.starts_with('_') {
            is_repo |= name == "_manifests" || name == "_tags";
            continue;
        }
        let child = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        walk_repos(&e.path(), &child, out)?;
    }
    if is_repo && !prefix.is_empty() {
        out.push(prefix.to_string());
    }
    Ok(())
}

async fn exists(p: &Path) -> Result<bool> {
    tokio::fs::try_exists(p)
        .await
        .ctx(|| format!("stat {}", p.display()))
}

async fn remove_if_exists(p: &Path) -> Result<bool> {
    match tokio::fs::remove_file(p).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx(|| format!("remove {}", p.display())),
    }
}

async fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut rd = match tokio::fs::read_dir(dir).await {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("list {}", dir.display())),
    };
    let mut out = Vec::new();
    while let Some(e) = rd
        .next_entry()
        .await
        .ctx(|| format!("list {}", dir.display()))?
    {
        out.push(e.file_name().to_string_lossy().to_string());
    }
    Ok(out)
}
