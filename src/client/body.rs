//! Reading bodies from registries we do not trust: a size the registry claims is never used
//! to allocate, every read is capped, every blob stream is checked against its digest while
//! it flows, and a transfer that crawls is cut off instead of hanging the command.
//!
//! Owns the limits (`Limits`) and the stream adapters; knows nothing of auth or retries.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{BlobStream, ClientError, Result};
use crate::oci::{Digest, Hasher};

/// Manifests larger than this are refused: the limit distribution (registry:2) applies
/// to manifest PUTs, so no conforming registry serves a larger one.
pub const MANIFEST_MAX: u64 = 4 << 20;

/// Configs, build records and other small JSON blobs read into memory are refused above
/// this. Real image configs are a few KiB; 16 MiB leaves room for huge histories.
pub const SMALL_BLOB_MAX: u64 = 16 << 20;

/// Limits on what the client reads from a registry. Adjustable per command through
/// `ClientOptions::limits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest (or index) read, in bytes.
    pub manifest: u64,
    /// Largest config or record blob read into memory, in bytes.
    pub small_blob: u64,
    /// A transfer that moves fewer than `low_speed_bytes` in any `low_speed_time` window
    /// fails (curl's `--speed-limit`/`--speed-time`): a registry that trickles bytes can
    /// not hold a command forever.
    pub low_speed_bytes: u64,
    pub low_speed_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest: MANIFEST_MAX,
            small_blob: SMALL_BLOB_MAX,
            low_speed_bytes: 1024,
            low_speed_time: Duration::from_secs(20),
        }
    }
}

/// A size the sender declared, refused up front when it is over `cap`.
pub(super) fn check_declared(declared: Option<u64>, cap: u64, what: &str) -> Result<()> {
    match declared {
        Some(d) if d > cap => Err(ClientError::TooLarge {
            what: what.to_string(),
            size: d,
            limit: cap,
        }),
        _ => Ok(()),
    }
}

/// Reads a whole (small) stream into memory: at most `cap` bytes, and never more than
/// `declared` when the sender declared a size. The buffer grows with what arrives; the
/// declared size is only an upper bound, never an allocation.
pub async fn collect_capped(
    mut body: BlobStream,
    declared: Option<u64>,
    cap: u64,
    what: &str,
) -> Result<Bytes> {
    check_declared(declared, cap, what)?;
    let limit = declared.unwrap_or(cap).min(cap);
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(match declared {
                Some(d) if d < cap => {
                    ClientError::Refused(format!("{what}: more bytes than the {d} declared"))
                }
                _ => ClientError::TooLarge {
                    what: what.to_string(),
                    size: (buf.len() + chunk.len()) as u64,
                    limit: cap,
                },
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Checks a blob stream against its digest (and its size, when known) while it flows.
/// The check happens before the stream ends: a consumer that uploads or writes the bytes
/// sees an error instead of the end, so a bad blob never completes anywhere.
pub fn verified(body: BlobStream, digest: Digest, size: Option<u64>, what: String) -> BlobStream {
    Box::pin(Verified {
        inner: body,
        hasher: Some(digest.algorithm().hasher()),
        digest,
        size,
        seen: 0,
        what,
    })
}

struct Verified {
    inner: BlobStream,
    hasher: Option<Hasher>,
    digest: Digest,
    size: Option<u64>,
    seen: u64,
    what: String,
}

impl Verified {
    fn mismatch(&self, actual: String) -> ClientError {
        ClientError::DigestMismatch {
            what: self.what.clone(),
            expected: self.digest.to_string(),
            actual,
        }
    }
}

impl Stream for Verified {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.hasher.is_none() {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if let Some(s) = self.size
                    && self.seen > s
                {
                    self.hasher = None;
                    let e = self.mismatch(format!("more than the {s} bytes declared"));
                    return Poll::Ready(Some(Err(e)));
                }
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.hasher = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let Some(h) = self.hasher.take() else {
                    return Poll::Ready(None);
                };
                let actual = h.finish();
                if actual != self.digest {
                    return Poll::Ready(Some(Err(self.mismatch(actual.to_string()))));
                }
                if let Some(s) = self.size
                    && self.seen != s
                {
                    let e = self.mismatch(format!("{} bytes, {s} declared", self.seen));
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None)
            }
        }
    }
}

/// Fails a stream that moves fewer than `min_bytes` in a `window` (see `Limits`).
pub fn low_speed_guarded(body: BlobStream, limits: &Limits, what: String) -> BlobStream {
    let (min, window) = (limits.low_speed_bytes, limits.low_speed_time);
    let state = (body, tokio::time::Instant::now() + window, 0u64, false);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut body, mut deadline, mut moved, done)| {
            let what = what.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match tokio::time::timeout_at(deadline, body.next()).await {
                        Err(_) if moved < min => {
                            let e = ClientError::Stalled {
                                what,
                                bytes: moved,
                                seconds: window.as_secs(),
                            };
                            return Some((Err(e), (body, deadline, moved, true)));
                        }
                        Err(_) => {
                            deadline += window;
                            moved = 0;
                        }
                        Ok(None) => return None,
                        Ok(Some(item)) => {
                            if let Ok(c) = &item {
                                moved += c.len() as u64;
                            }
                            if tokio::time::Instant::now() >= deadline {
                                if moved < min {
                                    let e = ClientError::Stalled {
                                        what,
                                        bytes: moved,
                                        seconds: window.as_secs(),
                                    };
                                    return Some((Err(e), (body, deadline, moved, true)));
                                }
                                deadline = tokio::time::Instant::now() + window;
                                moved = 0;
                            }
                            let failed = item.is_err();
                            return Some((item, (body, deadline, moved, failed)));
                        }
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: &[&'static [u8]]) -> BlobStream {
        let v: Vec<Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(v))
    }

    async fn drain(mut s: BlobStream) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn collect_never_trusts_the_declared_size() {
        // A declared petabyte is refused before anything is read or allocated.
        let e = collect_capped(stream(&[b"x"]), Some(1 << 50), 1024, "config")
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::TooLarge { .. }), "{e}");
        // u64::MAX (≥ 2^63) likewise, no panic.
        assert!(
            collect_capped(stream(&[b"x"]), Some(u64::MAX), 1024, "c")
                .await
                .is_err()
        );
        // More bytes than declared.
        assert!(
            collect_capped(stream(&[b"abc", b"def"]), Some(4), 1024, "c")
                .await
                .is_err()
        );
        // An undeclared endless body stops at the cap.
        assert!(
            collect_capped(stream(&[b"abc", b"def"]), None, 5, "c")
                .await
                .is_err()
        );
        let ok = collect_capped(stream(&[b"abc", b"def"]), Some(6), 1024, "c").await;
        assert_eq!(ok.unwrap().as_ref(), b"abcdef");
    }

    #[tokio::test]
    async fn verification_fails_before_the_end() {
        let d = Digest::sha256(b"abcdef");
        let good = verified(stream(&[b"abc", b"def"]), d.clone(), Some(6), "b".into());
        assert_eq!(drain(good).await.unwrap(), b"abcdef");
        let bad = verified(stream(&[b"abc", b"deX"]), d.clone(), Some(6), "b".into());
        assert!(matches!(
            drain(bad).await,
            Err(ClientError::DigestMismatch { .. })
        ));
        let long = verified(stream(&[b"abc", b"defg"]), d, Some(6), "b".into());
        assert!(drain(long).await.is_err());
    }

    #[tokio::test]
    async fn a_trickle_is_cut_off() {
        // One byte every 10 ms against "1 KiB per 200 ms": cut off after one window.
        let trickle: BlobStream =
            Box::pin(futures_util::stream::iter(0..1000u32).then(|_| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(Bytes::from_static(b"x"))
            }));
        let limits = Limits {
            low_speed_time: Duration::from_millis(200),
            ..Limits::default()
        };
        let e = drain(low_speed_guarded(trickle, &limits, "blob".into()))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Stalled { .. }), "{e}");
    }
}
