//! What garbage collection needs from storage, and the protocol that makes gc safe beside
//! live pushes — in this process, in another process, or on another replica sharing the
//! bucket. It needs nothing from a driver beyond put-if-absent, stat and touch.
//!
//! Every object carries a "last referenced" time ([`Meta::modified`](super::Meta)): a blob
//! is stamped when it is written, linked, mounted, HEAD-checked by a push or named by a
//! manifest PUT; a link when it is created or re-checked; a manifest link and a tag when
//! they are written. gc only removes an object whose time is older than its cutoff
//! (`gc start - grace`), and it re-reads that time right before removing it.
//!
//! gc removes only while it holds `gc.lock`, an object created with put-if-absent
//! ([`GcLock`]). A push stamps first, then looks at the lock ([`Storage::fence`]):
//! - no lock: any gc that takes the lock later re-reads the fresh stamp and keeps the object;
//! - a lock: the push waits until it is released, then checks that what it stamped still
//!   exists — if gc removed it first, the push sees it missing (the blob is uploaded again,
//!   or the manifest PUT is refused), never acknowledged and then broken.
//!
//! A gc that dies holding the lock stops being waited for after [`LOCK_LEASE`]: a live gc
//! renews the lock well before that, and stops removing if it could not.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::driver::{Mode, Put};
use super::{Result, Storage, StorageError};
use crate::oci::Digest;

/// Staging files not written to for this long belong to a request that died.
pub const TMP_MAX_IDLE: Duration = Duration::from_secs(15 * 60);

const LOCK_KEY: &str = "gc.lock";

/// A lock not renewed for this long belongs to a gc that died.
pub const LOCK_LEASE: Duration = Duration::from_secs(120);

/// A gc renews its lock when it is older than this.
const LOCK_RENEW: Duration = Duration::from_secs(20);

/// How long a push waits for a gc to finish removing before it gives up (and the client
/// retries).
const FENCE_WAIT: Duration = Duration::from_secs(300);

/// One thing gc may remove.
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    Blob(&'a Digest),
    BlobLink(&'a str, &'a Digest),
    ManifestLink(&'a str, &'a Digest),
}

/// Held by a gc while it removes; released by [`GcLock::release`] (or, if the gc dies,
/// after [`LOCK_LEASE`]).
pub struct GcLock {
    version: tokio::sync::Mutex<(String, Instant)>,
}

fn stale(modified: SystemTime) -> bool {
    SystemTime::now()
        .duration_since(modified)
        .map(|age| age > LOCK_LEASE)
        .unwrap_or(false)
}

impl Storage {
    fn object_key(o: Object<'_>) -> String {
        match o {
            Object::Blob(d) => Storage::blob_key(d),
            Object::BlobLink(repo, d) => Storage::link_key(repo, d),
            Object::ManifestLink(repo, d) => Storage::manifest_link_key(repo, d),
        }
    }

    /// Takes the gc lock; [`StorageError::Busy`] when another gc holds it.
    pub async fn gc_lock(&self) -> Result<GcLock> {
        for _ in 0..2 {
            let body = Bytes::from(format!("{{\"pid\":{}}}", std::process::id()));
            match self
                .driver
                .put(LOCK_KEY, body, Mode::CreateVolatile)
                .await?
            {
                Put::Done(v) => {
                    return Ok(GcLock {
                        version: tokio::sync::Mutex::new((v, Instant::now())),
                    });
                }
                Put::Exists | Put::Conflict => {}
            }
            match self.driver.stat(LOCK_KEY).await? {
                Some(m) if stale(m.modified) => {
                    tracing::warn!("gc: removing the lock of a gc that died");
                    self.driver.delete(LOCK_KEY).await?;
                }
                Some(_) => break,
                None => {}
            }
        }
        Err(StorageError::Busy(format!(
            "another gc is running on {} (gc.lock)",
            self.describe()
        )))
    }

    /// Renews the lock if due; an error when it was taken over (then gc must stop).
    async fn renew(&self, lock: &GcLock) -> Result<()> {
        let mut v = lock.version.lock().await;
        if v.1.elapsed() < LOCK_RENEW {
            return Ok(());
        }
        let body = Bytes::from(format!("{{\"pid\":{}}}", std::process::id()));
        match self
            .driver
            .put(LOCK_KEY, body, Mode::UpdateVolatile(v.0.clone()))
            .await?
        {
            Put::Done(new) => {
                *v = (new, Instant::now());
                Ok(())
            }
            _ => Err(StorageError::Busy(
                "gc lost its lock (renewed too late)".into(),
            )),
        }
    }

    /// Releases the gc lock.
    pub async fn gc_unlock(&self, lock: GcLock) -> Result<()> {
        drop(lock);
        self.driver.delete(LOCK_KEY).await.map(|_| ())
    }

    /// Called by a push after stamping `keys`: waits while a gc holds the lock, then
    /// tells whether every key still exists (see the module comment).
    pub(super) async fn fence(&self, keys: &[&str]) -> Result<bool> {
        let start = Instant::now();
        let mut waited = false;
        loop {
            match self.driver.stat(LOCK_KEY).await? {
                Some(m) if !stale(m.modified) => {
                    if start.elapsed() > FENCE_WAIT {
                        return Err(StorageError::Busy(
                            "gc holds its lock too long; retry".into(),
                        ));
                    }
                    waited = true;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => break,
            }
        }
        if waited {
            for k in keys {
                if self.driver.stat(k).await?.is_none() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Size of blob `d` if it exists and is linked into `repo`, stamping link and blob as
    /// referenced now (a push that finds a blob present relies on it staying).
    pub async fn reference_blob(&self, repo: &str, d: &Digest) -> Result<Option<u64>> {
        let (link, blob) = (Storage::link_key(repo, d), Storage::blob_key(d));
        if self.driver.touch(&link).await?.is_none() {
            return Ok(None);
        }
        let Some(size) = self.driver.touch(&blob).await? else {
            return Ok(None);
        };
        Ok(self.fence(&[&link, &blob]).await?.then_some(size))
    }

    /// [`Storage::reference_blob`] for every blob a manifest names: stamped concurrently,
    /// fenced once.
    pub async fn reference_blobs(&self, repo: &str, ds: &[Digest]) -> Result<Vec<Option<u64>>> {
        use futures_util::{StreamExt, TryStreamExt};
        let touch = |d: &Digest| {
            let (link, blob) = (Storage::link_key(repo, d), Storage::blob_key(d));
            async move {
                if self.driver.touch_expected(&link).await?.is_none() {
                    return Ok::<_, StorageError>(None);
                }
                self.driver.touch_expected(&blob).await
            }
        };
        let mut sizes: Vec<Option<u64>> = futures_util::stream::iter(ds.iter().map(touch))
            .buffered(16)
            .try_collect()
            .await?;
        let keys: Vec<String> = ds
            .iter()
            .zip(&sizes)
            .filter(|(_, s)| s.is_some())
            .flat_map(|(d, _)| [Storage::link_key(repo, d), Storage::blob_key(d)])
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        if !self.fence(&refs).await? {
            // gc removed some while this push waited: tell which.
            for (d, size) in ds.iter().zip(sizes.iter_mut()) {
                if size.is_some()
                    && (self
                        .driver
                        .stat(&Storage::link_key(repo, d))
                        .await?
                        .is_none()
                        || self.driver.stat(&Storage::blob_key(d)).await?.is_none())
                {
                    *size = None;
                }
            }
        }
        Ok(sizes)
    }

    /// The media type of manifest `d` in `repo`, stamping its link and bytes as referenced
    /// now (an index names it).
    pub async fn reference_manifest(&self, repo: &str, d: &Digest) -> Result<Option<String>> {
        let (link, blob) = (Storage::manifest_link_key(repo, d), Storage::blob_key(d));
        if self.driver.touch(&link).await?.is_none() || self.driver.touch(&blob).await?.is_none() {
            return Ok(None);
        }
        if !self.fence(&[&link, &blob]).await? {
            return Ok(None);
        }
        self.manifest_media_type(repo, d).await
    }

    /// Digests of the manifests of `repo` with the time their link was last written.
    pub async fn manifests_stamped(&self, repo: &str) -> Result<Vec<(Digest, SystemTime)>> {
        let all = self.digests_under(repo, "_manifests").await?;
        Ok(all.into_iter().map(|(d, e)| (d, e.modified)).collect())
    }

    /// Digests of the blobs linked into `repo` with the time each link was last referenced.
    pub async fn blob_links_stamped(&self, repo: &str) -> Result<Vec<(Digest, SystemTime)>> {
        let all = self.digests_under(repo, "_links").await?;
        Ok(all.into_iter().map(|(d, e)| (d, e.modified)).collect())
    }

    /// Every blob in the store with the time it was last referenced.
    pub async fn blobs_stamped(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let entries = self.driver.list("blobs").await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let mut parts = e.name.split('/');
                let (alg, _, hex) = (parts.next()?, parts.next()?, parts.next()?);
                Some((Digest::parse(&format!("{alg}:{hex}")).ok()?, e.modified))
            })
            .collect())
    }

    /// gc: removes `o` if it still exists and was last referenced before `cutoff`; the
    /// bytes freed. Without `lock` (a dry run), only reports what would go.
    pub async fn remove_if_older(
        &self,
        o: Object<'_>,
        cutoff: SystemTime,
        lock: Option<&GcLock>,
    ) -> Result<Option<u64>> {
        let key = Storage::object_key(o);
        if let Some(lock) = lock {
            self.renew(lock).await?;
        }
        let Some(m) = self.driver.stat(&key).await? else {
            return Ok(None);
        };
        if m.modified >= cutoff {
            return Ok(None);
        }
        if lock.is_some() && !self.driver.delete(&key).await? {
            return Ok(None);
        }
        Ok(Some(m.size))
    }

    /// Removes staging files idle for `max_idle` (requests that died: killed uploads,
    /// failed writes, a full disk) and aborts the driver's streamed writes left behind
    /// that long (S3 multipart uploads); how many.
    pub async fn sweep_tmp(&self, max_idle: Duration, dry_run: bool) -> Result<usize> {
        let now = SystemTime::now();
        let mut n = 0;
        for e in self.driver.list("tmp").await? {
            if now.duration_since(e.modified).unwrap_or_default() < max_idle {
                continue;
            }
            n += 1;
            if !dry_run {
                self.driver.delete(&format!("tmp/{}", e.name)).await?;
            }
        }
        Ok(n + self.driver.sweep_parts(max_idle, dry_run).await?)
    }

    /// Removes upload sessions idle for `max_age` (their multipart uploads aborted); how
    /// many.
    pub async fn sweep_uploads(&self, max_age: Duration, dry_run: bool) -> Result<usize> {
        let now = SystemTime::now();
        let mut n = 0;
        for id in self.driver.list_dir("uploads").await? {
            let prefix = format!("uploads/{id}");
            // The state is written after every chunk; a session without one is debris.
            let t = match self.driver.stat(&format!("{prefix}/state")).await? {
                Some(m) => m.modified,
                None => self
                    .driver
                    .list(&prefix)
                    .await?
                    .iter()
                    .map(|e| e.modified)
                    .max()
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            };
            if now.duration_since(t).unwrap_or_default() < max_age {
                continue;
            }
            n += 1;
            if !dry_run {
                self.remove_upload(&id).await?;
            }
        }
        Ok(n)
    }

    /// Ok when the store can be listed (readiness).
    pub async fn check(&self) -> Result<()> {
        self.driver.list_dir("repos").await.map(|_| ())
    }
}
