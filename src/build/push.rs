//! Pushing a natively built image whose blobs live in two kinds of place: the blobs the
//! build wrote (an OCI layout directory) and the base images' layers (still in their
//! registries, never downloaded just to be re-uploaded).
//!
//! Steps, for each destination tag:
//! 1. for every blob (config and layers, several at once): HEAD the destination — present
//!    blobs are skipped;
//! 2. a blob on the same registry as one of its sources (a base image, or a destination
//!    pushed earlier in this build) is mounted across repositories;
//! 3. otherwise it streams from its source (layout file or source registry) to the
//!    destination;
//! 4. the manifest bytes are PUT under the tag — the same bytes for every destination, so
//!    every tag gets the same digest.
//!
//! Progress (a byte bar on a terminal, a line per blob otherwise, nothing when quiet) is
//! the caller's `Progress`, as `image copy` shows it.
//!
//! Uses `client::Store` for every request; must not build anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt, TryStreamExt};

use crate::client::copy::{Progress, human};
use crate::client::registry::Mount;
use crate::client::{ClientError, ImageRef, RawManifest, Store, StoreFactory};
use crate::oci::{Descriptor, Digest};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushing to {dest}: {source}")]
    Push {
        dest: String,
        #[source]
        source: ClientError,
    },
    #[error(transparent)]
    Client(ClientError),
    #[error("blob {0} has no source (internal error)")]
    NoSource(Digest),
}

impl PushError {
    pub fn is_usage(&self) -> bool {
        let e = match self {
            PushError::Push { source, .. } | PushError::Client(source) => source,
            PushError::NoSource(_) => return false,
        };
        matches!(e, ClientError::Auth { .. } | ClientError::Invalid(_))
    }
}

/// A blob and where to read it.
#[derive(Clone)]
pub struct BlobSource {
    pub desc: Descriptor,
    pub store: Arc<Store>,
}

/// Pushes `manifest` (whose blobs are `blobs`) to every tag; returns the digests in order.
pub async fn push_all(
    factory: &StoreFactory,
    tags: &[ImageRef],
    manifest: &RawManifest,
    blobs: &[BlobSource],
    progress: &Progress,
) -> Result<Vec<Digest>, PushError> {
    let mut pushed: Vec<Arc<Store>> = Vec::new();
    let mut digests = Vec::new();
    for tag in tags {
        let dest = tag.to_string();
        let err = |source| PushError::Push {
            dest: dest.clone(),
            source,
        };
        let dst = factory.store(tag).map_err(err)?;
        let earlier = pushed.clone();
        let mut uploads = Vec::with_capacity(blobs.len());
        for b in blobs {
            let (dst, earlier, dest) = (&dst, &earlier, &dest);
            uploads.push(async move {
                push_blob(dst, b, earlier, progress)
                    .await
                    .map_err(|source| PushError::Push {
                        dest: dest.clone(),
                        source,
                    })
            });
        }
        futures_util::stream::iter(uploads)
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await?;
        let d = dst.put_manifest(tag.tag(), manifest).await.map_err(err)?;
        tracing::info!("pushed {dest} {d}");
        progress.line(|| format!("pushed {dest} {d}"));
        digests.push(d);
        pushed.push(Arc::new(dst));
    }
    Ok(digests)
}

async fn push_blob(
    dst: &Store,
    b: &BlobSource,
    earlier: &[Arc<Store>],
    progress: &Progress,
) -> Result<(), ClientError> {
    let d = &b.desc.digest;
    let size = b.desc.size;
    let bar = match progress {
        Progress::Bar(bar) => {
            bar.inc_length(size);
            Some(bar.clone())
        }
        _ => None,
    };
    if dst.blob_size_for_push(d).await?.is_some() {
        tracing::debug!("blob {d} exists in {dst}");
        if let Some(bar) = &bar {
            bar.inc(size);
        }
        progress.line(|| format!("blob {d} exists, skipped"));
        return Ok(());
    }
    let mut session = None;
    let mounts = std::iter::once(&b.store).chain(earlier.iter());
    for from in mounts {
        if let Some(repo) = dst.same_registry_repo(from) {
            match dst.mount(d, repo).await? {
                Some(Mount::Mounted) => {
                    tracing::debug!("blob {d} mounted from {repo}");
                    if let Some(bar) = &bar {
                        bar.inc(size);
                    }
                    progress.line(|| format!("blob {d} mounted from {repo}"));
                    return Ok(());
                }
                Some(Mount::Session(url)) => {
                    session = Some(url);
                    break;
                }
                None => {}
            }
        }
    }
    let mut attempt = 0;
    loop {
        let sent = Arc::new(AtomicU64::new(0));
        let result = async {
            let body = b.store.get_blob(d).await?;
            let body: crate::client::BlobStream = match &bar {
                Some(bar) => {
                    let (bar, sent) = (bar.clone(), sent.clone());
                    Box::pin(body.inspect_ok(move |chunk| {
                        bar.inc(chunk.len() as u64);
                        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }))
                }
                None => body,
            };
            dst.put_blob(&b.desc, body, session.take()).await
        }
        .await;
        if result.is_err()
            && let Some(bar) = &bar
        {
            // A retry sends the bytes again: take back what this attempt counted.
            bar.set_position(bar.position().saturating_sub(sent.load(Ordering::Relaxed)));
        }
        match result {
            Ok(()) => break,
            Err(e) if e.retryable() && attempt < 3 => {
                attempt += 1;
                tracing::warn!("pushing blob {d}: {e}; retrying ({attempt}/3)");
                let wait = crate::client::retry::RetryPolicy::REQUEST.delay(attempt - 1);
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
    tracing::debug!("blob {d} uploaded ({size} bytes)");
    progress.line(|| format!("blob {d} pushed ({})", human(size)));
    Ok(())
}
