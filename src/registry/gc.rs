//! Garbage collection: mark everything reachable from a tag, sweep the rest.
//!
//! Mark, per repository: every tagged manifest; from each manifest, the blobs its
//! descriptors name (`config`, `layers`, `blobs` — read generically, so artifacts of any
//! media type keep their blobs), its child manifests (`manifests`: OCI indexes and Docker
//! manifest lists), and the manifests whose `subject` it is (referrers: signatures, SBOMs).
//! Sweep: manifest links and blob links a repository no longer needs, blobs no repository
//! needs, and upload sessions older than `upload_max_age`.
//!
//! Safe beside live pushes (in-process with `serve --interval`, `gantry registry gc` from
//! another process, or replicas on one bucket): every object carries a "last referenced"
//! time (see `storage/sweep.rs`), and gc only removes what was last referenced before
//! `start - grace`, re-checking that time right before each removal, while it holds the
//! store's gc lock (pushes look at that lock after stamping). All storage work goes
//! through the driver: the same collection runs on the filesystem and on S3.
//! Whatever a push writes or re-uses after gc starts is therefore newer than the cutoff:
//! an acknowledged push is never broken, and a push whose manifest arrives within `grace`
//! of its blob uploads, mounts or HEAD checks succeeds, however old those blobs are.
//! gc never removes tags (a tag it did not see at mark time was written after it).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use super::storage::{GcLock, Object, Result, Storage, TMP_MAX_IDLE};
use crate::oci::Digest;

#[derive(Clone, Debug)]
pub struct GcOptions {
    pub dry_run: bool,
    pub grace: Duration,
    pub upload_max_age: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
            upload_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a collection removed (or, with `dry_run`, would remove).
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub blobs_kept: usize,
    pub blobs_deleted: Vec<Digest>,
    pub bytes_freed: u64,
    pub manifests_deleted: Vec<(String, Digest)>,
    pub links_removed: usize,
    pub uploads_removed: usize,
    /// Staging files of requests that died (killed uploads, failed writes, full disk).
    pub tmp_removed: usize,
}

/// Digests named by descriptors in a manifest of any media type:
/// (blobs, child manifests).
fn references(bytes: &[u8]) -> (Vec<Digest>, Vec<Digest>) {
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return (blobs, children);
    };
    let digest_of = |d: &serde_json::Value| {
        d.get("digest")
            .and_then(|s| s.as_str())
            .and_then(|s| Digest::parse(s).ok())
    };
    if let Some(d) = v.get("config").and_then(digest_of) {
        blobs.push(d);
    }
    for key in ["layers", "blobs"] {
        if let Some(list) = v.get(key).and_then(|l| l.as_array()) {
            blobs.extend(list.iter().filter_map(digest_of));
        }
    }
    if let Some(list) = v.get("manifests").and_then(|l| l.as_array()) {
        children.extend(list.iter().filter_map(digest_of));
    }
    (blobs, children)
}

fn subject_of(bytes: &[u8]) -> Option<Digest> {
    let v = serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
    Digest::parse(v.get("subject")?.get("digest")?.as_str()?).ok()
}

type Marks = (
    BTreeSet<Digest>,
    BTreeMap<String, (BTreeSet<Digest>, BTreeSet<Digest>)>,
);

/// Runs one collection over `storage`. Marking needs no lock; removal happens under the
/// store's gc lock. A dry run takes no lock and removes nothing.
pub async fn collect(storage: &Storage, opts: &GcOptions) -> Result<GcReport> {
    let cutoff = SystemTime::now()
        .checked_sub(opts.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut marks = mark(storage, cutoff).await?;
    let c = candidates(storage, cutoff, &mut marks).await?;
    let all_blobs = c.total_blobs;
    let nothing = c.manifest_links.is_empty() && c.blob_links.is_empty() && c.blobs.is_empty();
    let lock = if opts.dry_run || nothing {
        None
    } else {
        Some(storage.gc_lock().await?)
    };
    let result = sweep(storage, cutoff, marks.0, c, lock.as_ref()).await;
    if let Some(lock) = lock {
        storage.gc_unlock(lock).await?;
    }
    let mut report = result?;
    report.blobs_kept = all_blobs - report.blobs_deleted.len();
    // Stale uploads and staging files of requests that died (no push references them).
    let dry = opts.dry_run;
    report.uploads_removed = storage.sweep_uploads(opts.upload_max_age, dry).await?;
    report.tmp_removed = storage
        .sweep_tmp(opts.upload_max_age.min(TMP_MAX_IDLE), dry)
        .await?;
    Ok(report)
}

async fn mark(storage: &Storage, cutoff: SystemTime) -> Result<Marks> {
    let young = |t: &SystemTime| *t >= cutoff;

    // Mark.
    let mut marked: BTreeSet<Digest> = BTreeSet::new();
    let mut per_repo: BTreeMap<String, (BTreeSet<Digest>, BTreeSet<Digest>)> = BTreeMap::new();
    for repo in storage.repositories().await? {
        let mut manifests: BTreeSet<Digest> = BTreeSet::new();
        let mut repo_blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut queue: VecDeque<Digest> = VecDeque::new();
        // Subject -> referrers, from one listing (not one per manifest).
        let referrers = storage.referrer_index(&repo).await?;
        // Tags resolved 16 at a time (a request each on S3).
        for chunk in storage.tags(&repo).await?.chunks(16) {
            let mut pending = Vec::with_capacity(chunk.len());
            for tag in chunk {
                pending.push(storage.resolve_tag(&repo, tag));
            }
            let resolved = futures_util::future::try_join_all(pending).await?;
            queue.extend(resolved.into_iter().flatten());
        }
        // Manifests written within the grace period are roots too (an index's children
        // arrive before the index that names them).
        for (d, t) in storage.manifests_stamped(&repo).await? {
            if young(&t) {
                queue.push_back(d);
            }
        }
        while let Some(d) = queue.pop_front() {
            if !manifests.insert(d.clone()) {
                continue;
            }
            if let Some(bytes) = storage.read_blob(&d).await? {
                let (b, children) = references(&bytes);
                repo_blobs.extend(b);
                queue.extend(children);
            }
            if let Some(rs) = referrers.get(&d) {
                queue.extend(rs.iter().cloned());
            }
        }
        marked.extend(manifests.iter().cloned());
        marked.extend(repo_blobs.iter().cloned());
        per_repo.insert(repo, (manifests, repo_blobs));
    }
    Ok((marked, per_repo))
}

/// What may go, listed before the lock is taken (so the lock is held only while these
/// are re-checked and removed).
#[derive(Default)]
struct Candidates {
    manifest_links: Vec<(String, Digest)>,
    blob_links: Vec<(String, Digest)>,
    blobs: Vec<Digest>,
    /// Blobs in the store.
    total_blobs: usize,
}

async fn candidates(
    storage: &Storage,
    cutoff: SystemTime,
    marks: &mut Marks,
) -> Result<Candidates> {
    let (marked, per_repo) = marks;
    let mut c = Candidates::default();
    for (repo, (manifests, repo_blobs)) in per_repo.iter() {
        for (d, t) in storage.manifests_stamped(repo).await? {
            if !manifests.contains(&d) && t < cutoff {
                c.manifest_links.push((repo.clone(), d));
            }
        }
        for (d, t) in storage.blob_links_stamped(repo).await? {
            if repo_blobs.contains(&d) || manifests.contains(&d) {
                continue;
            }
            if t < cutoff {
                c.blob_links.push((repo.clone(), d));
            } else {
                marked.insert(d); // a young link keeps its blob
            }
        }
    }
    let blobs = storage.blobs_stamped().await?;
    c.total_blobs = blobs.len();
    for (d, t) in blobs {
        if !marked.contains(&d) && t < cutoff {
            c.blobs.push(d);
        }
    }
    Ok(c)
}

async fn sweep(
    storage: &Storage,
    cutoff: SystemTime,
    mut marked: BTreeSet<Digest>,
    c: Candidates,
    lock: Option<&GcLock>,
) -> Result<GcReport> {
    let mut report = GcReport::default();
    // Repository links: each re-checked, removed only if still last referenced before
    // the cutoff.
    for (repo, d) in c.manifest_links {
        let subject = storage.read_blob(&d).await?.and_then(|b| subject_of(&b));
        if storage
            .remove_if_older(Object::ManifestLink(&repo, &d), cutoff, lock)
            .await?
            .is_none()
        {
            marked.insert(d);
            continue;
        }
        if let (Some(s), Some(_)) = (subject, lock) {
            storage.remove_referrer(&repo, &s, &d).await?;
        }
        report.manifests_deleted.push((repo, d));
    }
    for (repo, d) in c.blob_links {
        if storage
            .remove_if_older(Object::BlobLink(&repo, &d), cutoff, lock)
            .await?
            .is_none()
        {
            // Kept (young): its blob stays with it.
            marked.insert(d);
            continue;
        }
        report.links_removed += 1;
    }
    // Blobs.
    for d in c.blobs {
        if marked.contains(&d) {
            continue;
        }
        match storage
            .remove_if_older(Object::Blob(&d), cutoff, lock)
            .await?
        {
            Some(len) => {
                report.bytes_freed += len;
                report.blobs_deleted.push(d);
            }
            None => report.blobs_kept += 1,
        }
    }
    Ok(report)
}
