//! S3 multipart uploads that a dead request leaves behind are aborted by the sweep, never
//! one a live upload session still owns; an object over S3's server-side copy limit is
//! committed by copying it part by part (the limit lowered here to take that path).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use gantry::oci::{Algorithm, Digest};
use gantry::registry::Storage;

use crate::registry_s3::Moto;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn body(data: Vec<u8>) -> impl futures_util::Stream<Item = Result<Bytes, String>> + Unpin {
    let chunks: Vec<Result<Bytes, String>> = data
        .chunks(3 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(chunks)
}

async fn read_blob(s: &Storage, d: &Digest, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = s.read_blob_range(d, 0, len).await.unwrap();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

#[tokio::test]
async fn a_dead_requests_multipart_upload_is_aborted_by_the_sweep_and_a_live_session_kept() {
    let Some(moto) = Moto::start() else { return };
    moto.bucket("parts").await;
    let s = moto.storage("parts", "reg");
    let d = s.driver();

    // A live session with a part written (its state holds the handle) ...
    let live = s.upload_start("app").await.unwrap();
    let first = pattern(9 << 20, 1);
    s.upload_append("app", &live.id, Some(0), body(first.clone()))
        .await
        .unwrap();
    // ... and a monolithic push whose request died after its first part.
    let orphan_key = "blobs/sha256/00/orphan";
    let orphan = d.part_start(orphan_key, "tmp/x").await.unwrap();
    let part = d
        .part_write(orphan_key, &orphan, 0, 0, Bytes::from(pattern(5 << 20, 2)))
        .await
        .unwrap();

    // Nothing is idle for an hour yet.
    assert_eq!(
        s.sweep_tmp(Duration::from_secs(3600), false).await.unwrap(),
        0
    );
    // Dry run counts the orphan only.
    assert_eq!(s.sweep_tmp(Duration::ZERO, true).await.unwrap(), 1);
    assert_eq!(s.sweep_tmp(Duration::ZERO, false).await.unwrap(), 1);
    // The orphan is gone: completing it now fails, and nothing is visible.
    assert!(
        d.part_commit(orphan_key, &orphan, vec![part])
            .await
            .is_err(),
        "the dead request's multipart upload should have been aborted"
    );
    assert!(d.stat(orphan_key).await.unwrap().is_none());
    // Nothing left to sweep.
    assert_eq!(s.sweep_tmp(Duration::ZERO, false).await.unwrap(), 0);

    // The live session finishes whole.
    let rest = pattern(2 << 20, 3);
    let mut all = first;
    all.extend_from_slice(&rest);
    let digest = Digest::of(Algorithm::Sha256, &all);
    let size = s
        .upload_finish("app", &live.id, Some(9 << 20), &digest, body(rest))
        .await
        .unwrap();
    assert_eq!(size, all.len() as u64);
    assert_eq!(read_blob(&s, &digest, size).await, all);
    // Its record went with the commit.
    assert_eq!(s.sweep_tmp(Duration::ZERO, true).await.unwrap(), 0);
}

#[tokio::test]
async fn an_upload_over_the_copy_limit_is_committed_part_by_part() {
    let Some(moto) = Moto::start() else { return };
    moto.bucket("big").await;
    let s = Storage::with_driver(Arc::new(moto.driver("big", "").with_copy_limit(4 << 20)));
    let data = pattern(21 << 20, 7);
    let digest = Digest::of(Algorithm::Sha256, &data);
    let up = s.upload_start("app").await.unwrap();
    let size = s
        .upload_finish("app", &up.id, Some(0), &digest, body(data.clone()))
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(read_blob(&s, &digest, size).await, data);
    // Written as a multipart upload (its ETag ends in `-<parts>`), not a server-side copy.
    let blob = format!("blobs/sha256/{}/{}", &digest.hex()[..2], digest.hex());
    let meta = s.driver().stat(&blob).await.unwrap().expect("blob stored");
    assert!(meta.version.contains('-'), "ETag {}", meta.version);
    // The staging object and every record are gone.
    assert!(s.driver().list("uploads").await.unwrap().is_empty());
    assert_eq!(s.sweep_tmp(Duration::ZERO, true).await.unwrap(), 0);
}
