//! Garbage collection: mark everything reachable from a tag, sweep the rest.
//!
//! Mark, per repository: every tagged manifest; from each manifest, the blobs its
//! descriptors name (`config`, `layers`, `blobs` — read generically, so artifacts of any
//! media type keep their blobs), its child manifests (`manifests`: OCI indexes and Docker
//! manifest lists), and the manifests whose `subject` it is (referrers: signatures, SBOMs).
//! Sweep: manifest links and blob links a repository no longer needs, blobs no repository
//! needs, and upload sessions older than `upload_max_age`.
//!
//! Anything modified within `grace` is kept: a push in progress has uploaded blobs that
//! no manifest names yet. With a grace period gc may run beside a live registry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime};

use super::storage::{Result, Storage};
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

/// Runs one collection over `storage`.
pub async fn collect(storage: &Storage, opts: &GcOptions) -> Result<GcReport> {
    let mut report = GcReport::default();
    let now = SystemTime::now();
    let blobs = storage.all_blobs_sync()?;
    let young: BTreeSet<Digest> = blobs
        .iter()
        .filter(|(_, _, mtime)| now.duration_since(*mtime).unwrap_or_default() < opts.grace)
        .map(|(d, _, _)| d.clone())
        .collect();

    // Mark.
    let mut marked: BTreeSet<Digest> = BTreeSet::new();
    let mut per_repo: BTreeMap<String, (BTreeSet<Digest>, BTreeSet<Digest>)> = BTreeMap::new();
    for repo in storage.repositories().await? {
        let mut manifests: BTreeSet<Digest> = BTreeSet::new();
        let mut repo_blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut queue: VecDeque<Digest> = VecDeque::new();
        for tag in storage.tags(&repo).await? {
            if let Some(d) = storage.resolve_tag(&repo, &tag).await? {
                queue.push_back(d);
            }
        }
        // Manifests pushed within the grace period are roots too (an index's children
        // arrive before the index that names them).
        for d in storage.manifests(&repo).await? {
            if young.contains(&d) {
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
            queue.extend(
                storage
                    .referrers(&repo, &d)
                    .await?
                    .into_iter()
                    .map(|r| r.digest),
            );
        }
        marked.extend(manifests.iter().cloned());
        marked.extend(repo_blobs.iter().cloned());
        per_repo.insert(repo, (manifests, repo_blobs));
    }

    // Sweep repository links.
    for (repo, (manifests, repo_blobs)) in &per_repo {
        for d in storage.manifests(repo).await? {
            if manifests.contains(&d) {
                continue;
            }
            report.manifests_deleted.push((repo.clone(), d.clone()));
            if !opts.dry_run {
                let subject = storage.read_blob(&d).await?.and_then(|b| subject_of(&b));
                storage.delete_manifest(repo, &d).await?;
                if let Some(s) = subject {
                    storage.remove_referrer(repo, &s, &d).await?;
                }
            }
        }
        for d in storage.blob_links(repo).await? {
            if repo_blobs.contains(&d) || manifests.contains(&d) {
                continue;
            }
            if young.contains(&d) {
                marked.insert(d);
                continue;
            }
            report.links_removed += 1;
            if !opts.dry_run {
                storage.unlink_blob(repo, &d).await?;
            }
        }
    }

    // Sweep blobs.
    for (d, path, _) in blobs {
        if marked.contains(&d) || young.contains(&d) {
            report.blobs_kept += 1;
            continue;
        }
        report.bytes_freed += path.metadata().map(|m| m.len()).unwrap_or(0);
        if !opts.dry_run {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(super::storage::StorageError::Io {
                        context: format!("remove {}", path.display()),
                        source: e,
                    });
                }
            }
        }
        report.blobs_deleted.push(d);
    }

    // Sweep stale uploads.
    for dir in storage.stale_uploads_sync(opts.upload_max_age)? {
        report.uploads_removed += 1;
        if !opts.dry_run {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(report)
}
