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

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use super::driver::{ByteStream, Driver, Entry, Meta, Mode, Put};
use super::{Result, StorageError};

/// S3's smallest part (all but the last).
const MIN_PART: usize = 5 << 20;

/// Where the touch markers live, beside the registry's own top-level prefixes.
const TOUCH: &str = "_touch";

pub struct S3Driver {
    store: Arc<AmazonS3>,
    bucket: String,
    /// Key prefix inside the bucket, without a trailing `/` ("" for none).
    prefix: String,
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
        })
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
        self.store
            .copy(&f, &t)
            .await
            .map_err(|e| err(format!("copy {f} to {t}"), e))?;
        self.delete(from).await.map(|_| ())
    }

    fn min_part(&self) -> usize {
        MIN_PART
    }

    async fn part_start(&self, key: &str, _staging: &str) -> Result<String> {
        let p = self.path(key);
        self.store
            .create_multipart(&p)
            .await
            .map_err(|e| err(format!("start multipart upload of {p}"), e))
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
        self.store
            .put_part(&p, &id, index, PutPayload::from_bytes(data))
            .await
            .map(|part| part.content_id)
            .map_err(|e| err(format!("upload part {index} of {p}"), e))
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
            .map(|_| ())
            .map_err(|e| err(format!("complete multipart upload of {p}"), e))
    }

    async fn part_abort(&self, key: &str, handle: &str) -> Result<()> {
        let p = self.path(key);
        let id = handle.to_string();
        match self.store.abort_multipart(&p, &id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err(format!("abort multipart upload of {p}"), e)),
        }
    }
}
