//! The S3 driver, on the `object_store` crate: keys under `s3://BUCKET[/PREFIX]`.
//!
//! Settings come from the standard variables every S3 tool reads (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, …) through
//! `AmazonS3Builder::from_env`.
//!
//! - Atomic writes are S3's own (a PUT is all or nothing); put-if-absent is
//!   `If-None-Match: *` and compare-and-swap `If-Match: <ETag>` (object_store's
//!   `PutMode::Create` / `PutMode::Update`). moto 5.2 honours both on PUT.
//! - Streamed writes are multipart uploads (`MultipartStore`), addressed by the upload id
//!   so another replica, or this one after a restart, continues them. An uncompleted
//!   multipart upload is invisible.
//! - The last-referenced time of an object is the later of its own `Last-Modified` and
//!   that of an empty marker `_touch/<key>`: S3 cannot renew an object's time in place
//!   (a copy onto itself is refused), and re-writing a blob would copy its bytes.
//! - Every multipart upload in progress has a record `_parts/<hash of key and handle>`
//!   (its key and handle), renewed while parts arrive and removed when it is completed or
//!   aborted. A request killed half-way leaves an uncompleted multipart upload that S3
//!   keeps (invisible, but stored and billed) until it is aborted; the sweep
//!   ([`Driver::sweep_parts`]) aborts those whose record went stale.
//! - A rename is a server-side copy, which S3 allows up to 5 GiB; a larger object is
//!   copied part by part through this process (object_store has no `UploadPartCopy`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use bytes::BytesMut;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::{Deserialize, Serialize};

use super::driver::{ByteStream, Driver, Entry, Meta, Mode, Put};
use super::{Result, StorageError};

/// S3's smallest part (all but the last).
const MIN_PART: usize = 5 << 20;

/// Where the touch markers live, beside the registry's own top-level prefixes.
const TOUCH: &str = "_touch";

/// Where the records of multipart uploads in progress live.
const PARTS: &str = "_parts";

/// A record is renewed at most this often while parts arrive.
const RECORD_RENEW: Duration = Duration::from_secs(60);

/// S3's largest server-side copy (`CopyObject`).
const COPY_LIMIT: u64 = 5 << 30;

/// Part size of a copy through this process (S3 allows 10,000 parts).
const COPY_PART: u64 = 16 << 20;

/// The record of a multipart upload in progress.
#[derive(Serialize, Deserialize)]
struct PartsRecord {
    key: String,
    handle: String,
}

pub struct S3Driver {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Key prefix inside the bucket, without a trailing `/` ("" for none).
    prefix: String,
    /// Objects larger than this are copied part by part.
    copy_limit: u64,
    /// When this process last wrote each open upload's record.
    renewed: Mutex<HashMap<String, Instant>>,
}

fn err(context: impl Into<String>, e: object_store::Error) -> StorageError {
    StorageError::Io {
        context: context.into(),
        source: std::io::Error::other(e),
    }
}

fn meta(m: &ObjectMeta) -> Meta {
    Meta {
        size: m.size,
        modified: SystemTime::from(m.last_modified),
        version: m.e_tag.clone().unwrap_or_default(),
    }
}

impl S3Driver {
    /// A driver for `bucket` (and an optional key prefix), configured from the environment.
    pub fn from_env(bucket: &str, prefix: &str) -> Result<S3Driver> {
        S3Driver::from_builder(AmazonS3Builder::from_env(), bucket, prefix)
    }

    /// A driver configured by `builder` (tests and embedders that do not use the
    /// environment).
    pub fn from_builder(builder: AmazonS3Builder, bucket: &str, prefix: &str) -> Result<S3Driver> {
        let store = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| err(format!("configuring s3://{bucket}"), e))?;
        Ok(S3Driver {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            copy_limit: COPY_LIMIT,
            renewed: Mutex::new(HashMap::new()),
        })
    }

    /// Copies objects larger than `limit` part by part instead of server-side (S3's own
    /// limit is 5 GiB; tests set a small one to take that path).
    pub fn with_copy_limit(mut self, limit: u64) -> S3Driver {
        self.copy_limit = limit;
        self
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn touch_path(&self, key: &str) -> Path {
        self.path(&format!("{TOUCH}/{key}"))
    }

    async fn head(&self, p: &Path) -> Result<Option<ObjectMeta>> {
        match self.store.head(p).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(err(format!("stat {p}"), e)),
        }
    }

    /// Objects under `prefix`, names relative to it.
    async fn list_raw(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| err(format!("list {prefix}"), e))
    }

    /// The record key of the multipart upload `handle` of `key`.
    fn record_key(key: &str, handle: &str) -> String {
        let d = crate::oci::Digest::of(
            crate::oci::Algorithm::Sha256,
            format!("{key}\n{handle}").as_bytes(),
        );
        format!("{PARTS}/{}", d.hex())
    }

    /// Writes (or renews) the record of an upload in progress.
    async fn record(&self, key: &str, handle: &str) -> Result<()> {
        let rk = Self::record_key(key, handle);
        let json = serde_json::to_vec(&PartsRecord {
            key: key.to_string(),
            handle: handle.to_string(),
        })
        .map_err(|e| StorageError::Io {
            context: format!("encoding {rk}"),
            source: std::io::Error::other(e),
        })?;
        let p = self.path(&rk);
        self.store
            .put(&p, PutPayload::from(json))
            .await
            .map_err(|e| err(format!("put {p}"), e))?;
        self.renewed_map().insert(rk, Instant::now());
        Ok(())
    }

    /// Renews the record when it was last written more than [`RECORD_RENEW`] ago here.
    async fn renew_record(&self, key: &str, handle: &str) -> Result<()> {
        let rk = Self::record_key(key, handle);
        let fresh = self
            .renewed_map()
            .get(&rk)
            .is_some_and(|t| t.elapsed() < RECORD_RENEW);
        if fresh {
            Ok(())
        } else {
            self.record(key, handle).await
        }
    }

    async fn drop_record(&self, key: &str, handle: &str) {
        let rk = Self::record_key(key, handle);
        self.renewed_map().remove(&rk);
        let p = self.path(&rk);
        if let Err(e) = self.store.delete(&p).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            tracing::warn!("deleting {p}: {e}");
        }
    }

    fn renewed_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding it cannot leave the map inconsistent: take it anyway.
        self.renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies `from` to `to` (`size` bytes) through this process, as one multipart
    /// upload (recorded like any other, so a copy that dies half-way is swept).
    async fn copy_in_parts(&self, from: &str, to: &str, size: u64) -> Result<()> {
        let part = COPY_PART.max(size.div_ceil(9_000)) as usize;
        let handle = self.part_start(to, "").await?;
        let copied: Result<()> = async {
            let mut stream = self.read(from, 0, size).await?;
            let (mut ids, mut buf, mut offset) = (Vec::new(), BytesMut::new(), 0u64);
            loop {
                let chunk = match stream.next().await {
                    Some(c) => Some(c.map_err(|e| StorageError::Io {
                        context: format!("read {from}"),
                        source: e,
                    })?),
                    None => None,
                };
                let done = chunk.is_none();
                if let Some(c) = chunk {
                    buf.extend_from_slice(&c);
                }
                while buf.len() >= part || (done && !buf.is_empty()) {
                    let data = buf.split_to(part.min(buf.len())).freeze();
                    let len = data.len() as u64;
                    ids.push(
                        self.part_write(to, &handle, ids.len(), offset, data)
                            .await?,
                    );
                    offset += len;
                }
                if done {
                    break;
                }
            }
            if offset != size {
                return Err(StorageError::SizeMismatch {
                    expected: size,
                    actual: offset,
                });
            }
            self.part_commit(to, &handle, ids).await
        }
        .await;
        if copied.is_err() {
            let _ = self.part_abort(to, &handle).await;
        }
        copied
    }

    fn relative(prefix: &Path, p: &Path) -> Option<String> {
        p.prefix_match(prefix)
            .map(|parts| parts.map(|x| x.as_ref().to_string()).collect::<Vec<_>>())
            .map(|v| v.join("/"))
    }
}

#[async_trait]
impl Driver for S3Driver {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Meta)>> {
        let p = self.path(key);
        let r = match self.store.get(&p).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(err(format!("get {p}"), e)),
        };
        let m = meta(&r.meta);
        let bytes = r.bytes().await.map_err(|e| err(format!("get {p}"), e))?;
        Ok(Some((bytes, m)))
    }

    async fn open(&self, key: &str) -> Result<Option<(u64, ByteStream)>> {
        let p = self.path(key);
        match self.store.get(&p).await {
            Ok(r) => Ok(Some((
                r.meta.size,
                Box::pin(r.into_stream().map_err(std::io::Error::other)),
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(err(format!("get {p}"), e)),
        }
    }

    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ByteStream> {
        let p = self.path(key);
        let opts = object_store::GetOptions {
            range: Some((start..start + len).into()),
            ..Default::default()
        };
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let r = self
            .store
            .get_opts(&p, opts)
            .await
            .map_err(|e| err(format!("get {p}"), e))?;
        Ok(Box::pin(r.into_stream().map_err(std::io::Error::other)))
    }

    async fn stat(&self, key: &str) -> Result<Option<Meta>> {
        let Some(m) = self.head(&self.path(key)).await? else {
            return Ok(None);
        };
        let mut out = meta(&m);
        if let Some(t) = self.head(&self.touch_path(key)).await? {
            out.modified = out.modified.max(SystemTime::from(t.last_modified));
        }
        Ok(Some(out))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.head(&self.path(key)).await?.map(|m| m.size))
    }

    async fn put(&self, key: &str, data: Bytes, mode: Mode) -> Result<Put> {
        let p = self.path(key);
        let mode = match mode {
            Mode::Overwrite | Mode::Volatile => PutMode::Overwrite,
            Mode::Create | Mode::CreateVolatile => PutMode::Create,
            Mode::Update(v) | Mode::UpdateVolatile(v) => PutMode::Update(UpdateVersion {
                e_tag: Some(v),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&p, PutPayload::from_bytes(data), opts)
            .await
        {
            Ok(r) => Ok(Put::Done(r.e_tag.unwrap_or_default())),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Put::Exists),
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => Ok(Put::Conflict),
            Err(e) => Err(err(format!("put {p}"), e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let p = self.path(key);
        let existed = self.head(&p).await?.is_some();
        if existed {
            self.store
                .delete(&p)
                .await
                .map_err(|e| err(format!("delete {p}"), e))?;
        }
        let t = self.touch_path(key);
        match self.store.delete(&t).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!("deleting {t}: {e}"),
        }
        Ok(existed)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for base in [self.path(prefix), self.touch_path(prefix)] {
            let keys: Vec<Result<Path, object_store::Error>> = self
                .list_raw(&base)
                .await?
                .into_iter()
                .map(|m| Ok(m.location))
                .collect();
            let mut gone = self
                .store
                .delete_stream(futures_util::stream::iter(keys).boxed());
            while let Some(r) = gone.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(err(format!("delete under {base}"), e)),
                }
            }
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let base = self.path(prefix);
        let mut out: std::collections::BTreeMap<String, Entry> = self
            .list_raw(&base)
            .await?
            .iter()
            .filter_map(|m| {
                Some((
                    Self::relative(&base, &m.location)?,
                    Entry {
                        name: String::new(),
                        size: m.size,
                        modified: SystemTime::from(m.last_modified),
                    },
                ))
            })
            .map(|(name, e)| (name.clone(), Entry { name, ..e }))
            .collect();
        let touched = self.touch_path(prefix);
        for m in self.list_raw(&touched).await? {
            if let Some(e) = Self::relative(&touched, &m.location).and_then(|n| out.get_mut(&n)) {
                e.modified = e.modified.max(SystemTime::from(m.last_modified));
            }
        }
        Ok(out.into_values().collect())
    }

    async fn list_dir(&self, prefix: &str) -> Result<Vec<String>> {
        let base = self.path(prefix);
        let r = self
            .store
            .list_with_delimiter(Some(&base))
            .await
            .map_err(|e| err(format!("list {base}"), e))?;
        Ok(r.common_prefixes
            .iter()
            .chain(r.objects.iter().map(|m| &m.location))
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    async fn touch(&self, key: &str) -> Result<Option<u64>> {
        let p = self.path(key);
        if self.head(&p).await?.is_none() {
            return Ok(None); // most asked-about blobs are new: one request
        }
        let t = self.touch_path(key);
        self.store
            .put(&t, PutPayload::default())
            .await
            .map_err(|e| err(format!("put {t}"), e))?;
        // After the marker: an object removed meanwhile is seen missing here.
        if let Some(m) = self.head(&p).await? {
            return Ok(Some(m.size));
        }
        let _ = self.store.delete(&t).await;
        Ok(None)
    }

    async fn touch_expected(&self, key: &str) -> Result<Option<u64>> {
        let t = self.touch_path(key);
        self.store
            .put(&t, PutPayload::default())
            .await
            .map_err(|e| err(format!("put {t}"), e))?;
        if let Some(m) = self.head(&self.path(key)).await? {
            return Ok(Some(m.size));
        }
        let _ = self.store.delete(&t).await;
        Ok(None)
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let p = self.path(key);
        match self.store.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err(format!("delete {p}"), e)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (self.path(from), self.path(to));
        let size = self.size(from).await?.unwrap_or(0);
        if size > self.copy_limit {
            self.copy_in_parts(from, to, size).await?;
        } else {
            self.store
                .copy(&f, &t)
                .await
                .map_err(|e| err(format!("copy {f} to {t}"), e))?;
        }
        self.delete(from).await.map(|_| ())
    }

    fn min_part(&self) -> usize {
        MIN_PART
    }

    async fn part_start(&self, key: &str, _staging: &str) -> Result<String> {
        let p = self.path(key);
        let handle = self
            .store
            .create_multipart(&p)
            .await
            .map_err(|e| err(format!("start multipart upload of {p}"), e))?;
        if let Err(e) = self.record(key, &handle).await {
            let _ = self.store.abort_multipart(&p, &handle).await;
            return Err(e);
        }
        Ok(handle)
    }

    async fn part_write(
        &self,
        key: &str,
        handle: &str,
        index: usize,
        _offset: u64,
        data: Bytes,
    ) -> Result<String> {
        let p = self.path(key);
        let id = handle.to_string();
        let part = self
            .store
            .put_part(&p, &id, index, PutPayload::from_bytes(data))
            .await
            .map(|part| part.content_id)
            .map_err(|e| err(format!("upload part {index} of {p}"), e))?;
        self.renew_record(key, handle).await?;
        Ok(part)
    }

    async fn part_commit(&self, key: &str, handle: &str, parts: Vec<String>) -> Result<()> {
        let p = self.path(key);
        let id = handle.to_string();
        let parts = parts
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        self.store
            .complete_multipart(&p, &id, parts)
            .await
            .map_err(|e| err(format!("complete multipart upload of {p}"), e))?;
        self.drop_record(key, handle).await;
        Ok(())
    }

    async fn part_abort(&self, key: &str, handle: &str) -> Result<()> {
        let p = self.path(key);
        let id = handle.to_string();
        match self.store.abort_multipart(&p, &id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(err(format!("abort multipart upload of {p}"), e)),
        }
        self.drop_record(key, handle).await;
        Ok(())
    }

    async fn sweep_parts(&self, max_idle: Duration, dry_run: bool) -> Result<usize> {
        let now = SystemTime::now();
        let mut n = 0;
        for e in self.list(PARTS).await? {
            if now.duration_since(e.modified).unwrap_or_default() < max_idle {
                continue;
            }
            let rk = format!("{PARTS}/{}", e.name);
            let Some((bytes, _)) = self.get(&rk).await? else {
                continue;
            };
            let Ok(r) = serde_json::from_slice::<PartsRecord>(&bytes) else {
                tracing::warn!("{rk}: not an upload record; removed");
                let _ = self.store.delete(&self.path(&rk)).await;
                continue;
            };
            // A session's write belongs to the session while its state exists: the
            // session's own sweep (by its idle time) aborts it.
            if let Some(id) = r
                .key
                .strip_prefix("uploads/")
                .and_then(|k| k.split('/').next())
                && self
                    .head(&self.path(&format!("uploads/{id}/state")))
                    .await?
                    .is_some()
            {
                continue;
            }
            n += 1;
            if !dry_run {
                self.part_abort(&r.key, &r.handle).await?;
            }
        }
        Ok(n)
    }
}
