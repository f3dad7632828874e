//! `copy`: move an image (or a whole index) between stores with its digest unchanged.
//!
//! Steps:
//! 1. GET the source manifest bytes.
//! 2. An index is copied with every child (`all`), or reduced to one platform's manifest
//!    (`platform`), which then becomes the image copied.
//! 3. For each image manifest, its blobs move concurrently (`jobs` at a time): a blob the
//!    destination has is skipped (HEAD); on the same registry it is mounted, not moved;
//!    otherwise it streams from source to destination, never touching disk in between.
//! 4. Child manifests are PUT by digest, then the top manifest under the tag — the same
//!    bytes, so the destination digest equals the source digest.
//! 5. With `referrers`, manifests whose subject is the copied digest follow it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{StreamExt, TryStreamExt};

use super::registry::Mount;
use super::{ClientError, RawManifest, Result, Store};
use crate::oci::{Descriptor, Digest, Manifest, Platform};

/// How to report progress.
#[derive(Clone, Debug, Default)]
pub enum Progress {
    #[default]
    Quiet,
    /// One line per blob and manifest on stderr (not a terminal, CI logs).
    Lines,
    /// A live byte bar on a terminal.
    Bar(indicatif::ProgressBar),
}

impl Progress {
    /// A bar on a terminal, lines elsewhere, nothing when quiet.
    pub fn for_stderr(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message("copying");
            Progress::Bar(bar)
        } else {
            Progress::Lines
        }
    }

    /// One line (Lines), the bar's message (Bar), or nothing.
    pub fn line(&self, msg: impl FnOnce() -> String) {
        match self {
            Progress::Lines => eprintln!("{}", msg()),
            Progress::Bar(b) => b.set_message(msg()),
            Progress::Quiet => {}
        }
    }
}

#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Copy one platform of an index (`os/arch[/variant]`) instead of all.
    pub platform: Option<String>,
    /// Blobs in flight at once.
    pub jobs: usize,
    /// Also copy manifests whose subject is the copied image (signatures, SBOMs).
    pub referrers: bool,
    pub progress: Progress,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platform: None,
            jobs: 8,
            referrers: false,
            progress: Progress::Quiet,
        }
    }
}

/// What a copy did.
#[derive(Debug, Default, serde::Serialize)]
pub struct CopyReport {
    pub digest: Option<Digest>,
    pub media_type: String,
    pub manifests: u64,
    pub blobs_copied: u64,
    pub blobs_skipped: u64,
    pub blobs_mounted: u64,
    pub bytes_copied: u64,
}

#[derive(Default)]
struct Counters {
    manifests: AtomicU64,
    copied: AtomicU64,
    skipped: AtomicU64,
    mounted: AtomicU64,
    bytes: AtomicU64,
}

fn platform_matches(p: &Platform, want: &str) -> bool {
    let mut parts = want.split('/');
    let os = parts.next().unwrap_or("");
    let arch = parts.next().unwrap_or("");
    let variant = parts.next();
    p.os == os && p.architecture == arch && (variant.is_none() || p.variant.as_deref() == variant)
}

fn parse(m: &RawManifest, at: &str) -> Result<Manifest> {
    Manifest::parse(&m.bytes, Some(&m.media_type))
        .map_err(|e| ClientError::Invalid(format!("manifest {at}: {e}")))
}

/// Copies `src_ref` from `src` to `dst`, tagging it `dst_tag` (or by digest when `None`).
pub async fn copy(
    src: &Store,
    src_ref: &str,
    dst: &Store,
    dst_tag: Option<&str>,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let counters = Arc::new(Counters::default());
    let mut top = src.get_manifest(src_ref).await?;
    let mut parsed = parse(&top, &format!("{src}:{src_ref}"))?;
    if parsed.is_index()
        && let Some(want) = &opts.platform
    {
        let child = parsed
            .manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| platform_matches(p, want))
            })
            .ok_or_else(|| {
                let have: Vec<String> = parsed
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect();
                ClientError::NotFound(format!(
                    "platform {want} in {src}:{src_ref} (it has: {})",
                    have.join(", ")
                ))
            })?
            .clone();
        top = src.get_manifest(&child.digest.to_string()).await?;
        parsed = parse(&top, &format!("{src}@{}", child.digest))?;
    }
    if parsed.is_index() {
        for child in &parsed.manifests {
            let m = src.get_manifest(&child.digest.to_string()).await?;
            let p = parse(&m, &format!("{src}@{}", child.digest))?;
            copy_image(src, dst, &m, &p, None, opts, &counters).await?;
        }
        put(dst, dst_tag, &top, opts, &counters).await?;
    } else {
        copy_image(src, dst, &top, &parsed, dst_tag, opts, &counters).await?;
    }
    if opts.referrers {
        for r in src.referrers(&top.digest).await? {
            let m = src.get_manifest(&r.digest.to_string()).await?;
            let p = parse(&m, &format!("{src}@{}", r.digest))?;
            copy_image(src, dst, &m, &p, None, opts, &counters).await?;
        }
    }
    Ok(CopyReport {
        digest: Some(top.digest.clone()),
        media_type: top.media_type.clone(),
        manifests: counters.manifests.load(Ordering::Relaxed),
        blobs_copied: counters.copied.load(Ordering::Relaxed),
        blobs_skipped: counters.skipped.load(Ordering::Relaxed),
        blobs_mounted: counters.mounted.load(Ordering::Relaxed),
        bytes_copied: counters.bytes.load(Ordering::Relaxed),
    })
}

async fn put(
    dst: &Store,
    tag: Option<&str>,
    m: &RawManifest,
    opts: &CopyOptions,
    c: &Counters,
) -> Result<()> {
    dst.put_manifest(tag, m).await?;
    c.manifests.fetch_add(1, Ordering::Relaxed);
    opts.progress.line(|| match tag {
        Some(t) => format!("wrote manifest {} to {dst}:{t}", m.digest),
        None => format!("wrote manifest {} to {dst}", m.digest),
    });
    Ok(())
}

async fn copy_image(
    src: &Store,
    dst: &Store,
    m: &RawManifest,
    parsed: &Manifest,
    tag: Option<&str>,
    opts: &CopyOptions,
    c: &Arc<Counters>,
) -> Result<()> {
    let blobs: Vec<Descriptor> = parsed.blobs().cloned().collect();
    futures_util::stream::iter(
        blobs
            .into_iter()
            .map(|d| copy_blob(src, dst, d, opts, c.clone())),
    )
    .buffer_unordered(opts.jobs.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    put(dst, tag, m, opts, c).await
}

pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

async fn copy_blob(
    src: &Store,
    dst: &Store,
    d: Descriptor,
    opts: &CopyOptions,
    c: Arc<Counters>,
) -> Result<()> {
    let bar = match &opts.progress {
        Progress::Bar(b) => {
            b.inc_length(d.size);
            Some(b.clone())
        }
        _ => None,
    };
    if dst.blob_size_for_push(&d.digest).await?.is_some() {
        c.skipped.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = &bar {
            b.inc(d.size);
        }
        opts.progress
            .line(|| format!("blob {} exists, skipped", d.digest));
        return Ok(());
    }
    let mut session = None;
    if let Some(from) = dst.same_registry_repo(src) {
        match dst.mount(&d.digest, from).await? {
            Some(Mount::Mounted) => {
                c.mounted.fetch_add(1, Ordering::Relaxed);
                if let Some(b) = &bar {
                    b.inc(d.size);
                }
                opts.progress
                    .line(|| format!("blob {} mounted from {from}", d.digest));
                return Ok(());
            }
            Some(Mount::Session(url)) => session = Some(url),
            None => {}
        }
    }
    // Stream; a temporary failure restarts the blob from the beginning.
    let mut attempt = 0;
    loop {
        let sent = Arc::new(AtomicU64::new(0));
        let result = async {
            let body = src.get_blob(&d.digest).await?;
            let body: super::BlobStream = match &bar {
                Some(b) => {
                    let (b, sent) = (b.clone(), sent.clone());
                    Box::pin(body.inspect_ok(move |chunk| {
                        b.inc(chunk.len() as u64);
                        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }))
                }
                None => body,
            };
            dst.put_blob(&d, body, session.take()).await
        }
        .await;
        if result.is_err()
            && let Some(b) = &bar
        {
            // A retry sends the bytes again: take back what this attempt counted.
            b.set_position(b.position().saturating_sub(sent.load(Ordering::Relaxed)));
        }
        match result {
            Ok(()) => break,
            Err(e) if e.retryable() && attempt < 3 => {
                attempt += 1;
                tracing::warn!("copying blob {}: {e}; retrying ({attempt}/3)", d.digest);
                tokio::time::sleep(super::retry::RetryPolicy::REQUEST.delay(attempt - 1)).await;
            }
            Err(e) => return Err(e),
        }
    }
    c.copied.fetch_add(1, Ordering::Relaxed);
    c.bytes.fetch_add(d.size, Ordering::Relaxed);
    opts.progress
        .line(|| format!("blob {} copied ({})", d.digest, human(d.size)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
            ..Default::default()
        };
        assert!(platform_matches(&p, "linux/arm64"));
        assert!(platform_matches(&p, "linux/arm64/v8"));
        assert!(!platform_matches(&p, "linux/arm64/v7"));
        assert!(!platform_matches(&p, "linux/amd64"));
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(10), "10 B");
    }
}
