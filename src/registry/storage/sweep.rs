//! What garbage collection needs from storage, and the lock that makes gc safe beside
//! live pushes (in this process or another one on the same directory).
//!
//! Every object carries a "last referenced" time, its modification time: a blob is
//! stamped when it is written, linked, mounted, HEAD-checked by a push or named by a
//! manifest PUT; a link when it is created or re-checked; a manifest link and a tag when
//! they are written. gc only removes an object whose time is older than its cutoff
//! (`gc start - grace`), and it re-reads that time right before removing it.
//!
//! The re-read and the removal happen under an exclusive `flock` on `<root>/gc.lock`;
//! a push stamps and checks under a shared lock on it ([`Storage::push_guard`]). So the
//! two are ordered: either the push stamped first (gc sees a fresh time and keeps the
//! object), or gc removed first (the push sees the object missing and uploads it again,
//! or its manifest PUT is refused — never acknowledged and then broken).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{IoContext, Result, Storage, StorageError};
use crate::oci::{Algorithm, Digest};

/// Staging files not written to for this long belong to a request that died.
pub const TMP_MAX_IDLE: Duration = Duration::from_secs(15 * 60);

/// Held by a push while it stamps, checks and writes; gc removes nothing meanwhile.
/// Dropping it closes the descriptor, which releases the lock.
pub struct PushGuard {
    _file: Option<File>,
}

/// One thing gc may remove.
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    Blob(&'a Digest),
    BlobLink(&'a str, &'a Digest),
    ManifestLink(&'a str, &'a Digest),
}

pub(super) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            context: format!("{what} task"),
            source: io::Error::other(e),
        })?
}

/// Sets the modification time of `path` to now; false when it does not exist.
pub(super) fn stamp(path: &Path) -> Result<bool> {
    match File::open(path) {
        Ok(f) => {
            // A store mounted read-only cannot be stamped, and gc cannot remove from it
            // either: answering matters more than the stamp.
            if let Err(e) = f.set_modified(SystemTime::now()) {
                tracing::warn!("stamping {}: {e}", path.display());
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx(|| format!("open {}", path.display())),
    }
}

fn lock(path: &Path, exclusive: bool) -> Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ctx(|| format!("open {}", path.display()))?;
    if exclusive { f.lock() } else { f.lock_shared() }
        .ctx(|| format!("lock {}", path.display()))?;
    Ok(f)
}

fn modified(path: &Path) -> Result<Option<(SystemTime, u64)>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((
            m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            m.len(),
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("stat {}", path.display())),
    }
}

/// Removes every entry of `dir` not modified for `max_idle`; how many were removed.
fn sweep_dir(dir: &Path, max_idle: Duration, dry_run: bool) -> Result<usize> {
    let now = SystemTime::now();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).ctx(|| format!("list {}", dir.display())),
    };
    let mut n = 0;
    for e in rd.flatten() {
        let p = e.path();
        // An upload session is a directory; its state file is written after every chunk.
        let state = if p.is_dir() {
            modified(&p.join("state"))?
        } else {
            None
        };
        let t = state.or(modified(&p)?).map(|(t, _)| t).unwrap_or(now);
        if now.duration_since(t).unwrap_or_default() < max_idle {
            continue;
        }
        n += 1;
        if dry_run {
            continue;
        }
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(|| format!("remove {}", p.display())),
        }
    }
    Ok(n)
}

impl Storage {
    fn lock_path(&self) -> PathBuf {
        self.root.join("gc.lock")
    }

    fn object_path(&self, o: Object<'_>) -> PathBuf {
        match o {
            Object::Blob(d) => self.blob_path(d),
            Object::BlobLink(repo, d) => self.link_path(repo, d),
            Object::ManifestLink(repo, d) => self.manifest_link_path(repo, d),
        }
    }

    /// The shared side of the gc lock, for a push's stamp-check-write sequence. On a store
    /// that cannot be written (mounted read-only) there is no lock file and no gc either:
    /// reads go on without it.
    pub async fn push_guard(&self) -> Result<PushGuard> {
        let path = self.lock_path();
        blocking("lock", move || match lock(&path, false) {
            Ok(f) => Ok(PushGuard { _file: Some(f) }),
            Err(e) => match File::open(&path) {
                Ok(f) => {
                    f.lock_shared().ctx(|| format!("lock {}", path.display()))?;
                    Ok(PushGuard { _file: Some(f) })
                }
                Err(_) => {
                    tracing::debug!("no gc lock: {e}");
                    Ok(PushGuard { _file: None })
                }
            },
        })
        .await
    }

    /// Size of blob `d` if it exists and is linked into `repo`, stamping link and blob as
    /// referenced now (a push that finds a blob present relies on it staying). Call with
    /// a [`PushGuard`] held.
    pub async fn reference_blob(&self, repo: &str, d: &Digest) -> Result<Option<u64>> {
        let link = self.link_path(repo, d);
        let blob = self.blob_path(d);
        blocking("stamp", move || {
            if !stamp(&link)? || !stamp(&blob)? {
                return Ok(None);
            }
            Ok(modified(&blob)?.map(|(_, len)| len))
        })
        .await
    }

    /// The media type of manifest `d` in `repo`, stamping its link and bytes as referenced
    /// now (an index names it). Call with a [`PushGuard`] held.
    pub async fn reference_manifest(&self, repo: &str, d: &Digest) -> Result<Option<String>> {
        let link = self.manifest_link_path(repo, d);
        let blob = self.blob_path(d);
        let present = blocking("stamp", move || Ok(stamp(&link)? && stamp(&blob)?)).await?;
        if !present {
            return Ok(None);
        }
        self.manifest_media_type(repo, d).await
    }

    /// Digests of the manifests of `repo` with the time their link was last written.
    pub async fn manifests_stamped(&self, repo: &str) -> Result<Vec<(Digest, SystemTime)>> {
        let dir = self.repo_dir(repo).join("_manifests");
        blocking("list", move || list_stamped(&dir, false)).await
    }

    /// Every blob in the store with the time it was last referenced.
    pub async fn blobs_stamped(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let dir = self.root.join("blobs");
        blocking("list", move || list_stamped(&dir, true)).await
    }

    /// gc: removes `o` if it still exists and was last referenced before `cutoff`, under
    /// the exclusive lock; the bytes freed when it was removed. With `dry_run`, only
    /// reports what would go.
    pub async fn remove_if_older(
        &self,
        o: Object<'_>,
        cutoff: SystemTime,
        dry_run: bool,
    ) -> Result<Option<u64>> {
        let path = self.object_path(o);
        let lock_path = self.lock_path();
        blocking("remove", move || {
            let _lock = if dry_run {
                None
            } else {
                Some(lock(&lock_path, true)?)
            };
            let Some((t, len)) = modified(&path)? else {
                return Ok(None);
            };
            if t >= cutoff {
                return Ok(None);
            }
            if !dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e).ctx(|| format!("remove {}", path.display())),
                }
            }
            Ok(Some(len))
        })
        .await
    }

    /// Removes staging files idle for `max_idle` (requests that died: killed uploads,
    /// failed writes, a full disk); how many.
    pub async fn sweep_tmp(&self, max_idle: Duration, dry_run: bool) -> Result<usize> {
        let dir = self.root.join("tmp");
        blocking("sweep", move || sweep_dir(&dir, max_idle, dry_run)).await
    }

    /// Removes upload sessions idle for `max_age`; how many.
    pub async fn sweep_uploads(&self, max_age: Duration, dry_run: bool) -> Result<usize> {
        let dir = self.root.join("uploads");
        blocking("sweep", move || sweep_dir(&dir, max_age, dry_run)).await
    }

    /// Ok when the storage root can be listed (readiness).
    pub async fn check(&self) -> Result<()> {
        let dir = self.root.join("repos");
        blocking("check", move || {
            std::fs::read_dir(&dir)
                .map(|_| ())
                .ctx(|| format!("list {}", dir.display()))
        })
        .await
    }
}

/// `<dir>/<alg>/[<2 hex>/]<hex>` entries with their modification times.
fn list_stamped(dir: &Path, fanned_out: bool) -> Result<Vec<(Digest, SystemTime)>> {
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let base = dir.join(alg.as_str());
        let dirs: Vec<PathBuf> = if fanned_out {
            match std::fs::read_dir(&base) {
                Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("list {}", base.display())),
            }
        } else {
            vec![base]
        };
        for d in dirs {
            let rd = match std::fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("list {}", d.display())),
            };
            for f in rd.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                let Ok(digest) = Digest::parse(&format!("{alg}:{name}")) else {
                    continue;
                };
                // Gone since the listing: nothing to keep or remove.
                let Some((t, _)) = modified(&f.path())? else {
                    continue;
                };
                out.push((digest, t));
            }
        }
    }
    Ok(out)
}
