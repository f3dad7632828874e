//! The byte driver under registry storage: keys to bytes, nothing more.
//!
//! A key is a `/`-separated relative name (`blobs/sha256/ab/ab12…`, `repos/app/_tags/v1`)
//! built only by `storage/mod.rs` from validated names, tags and digests; a driver never
//! sees HTTP, a path from a request or a registry rule. Two drivers implement it: the
//! local filesystem (`fs.rs`) and S3-compatible object storage (`s3.rs`). Everything the
//! registry needs for safety beside replicas and gc is expressed here:
//!
//! - atomic whole-object writes ([`Driver::put`]), with put-if-absent ([`Mode::Create`])
//!   and compare-and-swap on a version ([`Mode::Update`], S3 `If-Match` on the ETag);
//! - a "last referenced" time per object ([`Meta::modified`], renewed by
//!   [`Driver::touch`]), which gc compares with its cutoff;
//! - streamed writes that become visible whole or not at all ([`Driver::part_start`] …
//!   [`Driver::part_commit`]): S3 multipart uploads, or a staging file renamed into place.
//!   The handle and part ids are strings, so a session's state can be persisted and the
//!   write resumed by another process.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use super::Result;

/// Bytes of an object, streamed.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What a driver knows of an object.
#[derive(Clone, Debug)]
pub struct Meta {
    pub size: u64,
    /// When the object was written or last touched.
    pub modified: SystemTime,
    /// Opaque version for [`Mode::Update`] (an ETag; on the filesystem mtime, size, inode).
    pub version: String,
}

/// An entry of [`Driver::list`]: the key relative to the listed prefix.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// How [`Driver::put`] treats an object already at the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Replace it, durably (fsync file and directory on the filesystem).
    Overwrite,
    /// Replace it; a power loss may lose the write (links, upload state a client re-sends).
    Volatile,
    /// Write only if nothing is there: [`Put::Exists`] otherwise.
    Create,
    /// Write only if the object is still at this version: [`Put::Conflict`] otherwise.
    Update(String),
    /// [`Mode::Create`] without the durability (upload state, the gc lock).
    CreateVolatile,
    /// [`Mode::Update`] without the durability (upload state, the gc lock).
    UpdateVolatile(String),
}

impl Mode {
    /// Whether a power loss after the write returns may lose it (the filesystem skips
    /// fsync for these).
    pub fn volatile(&self) -> bool {
        matches!(
            self,
            Mode::Volatile | Mode::CreateVolatile | Mode::UpdateVolatile(_)
        )
    }
}

/// The outcome of a [`Driver::put`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// Written; the new version.
    Done(String),
    /// [`Mode::Create`] found an object.
    Exists,
    /// [`Mode::Update`] found another version, or none.
    Conflict,
}

#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Where the bytes live, for logs and errors (`/var/lib/gantry`, `s3://bucket/prefix`).
    fn describe(&self) -> String;

    /// A whole (small) object.
    async fn get(&self, key: &str) -> Result<Option<(Bytes, Meta)>>;

    /// The whole object, streamed, with its size; `None` when it does not exist.
    async fn open(&self, key: &str) -> Result<Option<(u64, ByteStream)>>;

    /// `len` bytes from `start`; the object must exist (callers stat first).
    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ByteStream>;

    async fn stat(&self, key: &str) -> Result<Option<Meta>>;

    /// The size of an object, when its last-referenced time does not matter (a pull):
    /// one request where the driver can.
    async fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.stat(key).await?.map(|m| m.size))
    }

    /// Writes a whole object atomically: readers see the old bytes or the new, never a mix.
    async fn put(&self, key: &str, data: Bytes, mode: Mode) -> Result<Put>;

    /// Removes an object; true if it was there.
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Removes an object that is never touched (upload state, tails), without telling
    /// whether it was there: one request where the driver can.
    async fn remove(&self, key: &str) -> Result<()> {
        self.delete(key).await.map(|_| ())
    }

    /// Removes every object under `prefix/`.
    async fn delete_prefix(&self, prefix: &str) -> Result<()>;

    /// Every object under `prefix/` (recursively), names relative to it.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>>;

    /// The names one level under `prefix/` (objects and "directories").
    async fn list_dir(&self, prefix: &str) -> Result<Vec<String>>;

    /// Renews the object's last-referenced time; its size, or `None` when it does not
    /// exist (then nothing is created).
    async fn touch(&self, key: &str) -> Result<Option<u64>>;

    /// [`Driver::touch`] of an object expected to exist (a blob a manifest names): fewer
    /// requests when it does.
    async fn touch_expected(&self, key: &str) -> Result<Option<u64>> {
        self.touch(key).await
    }

    /// Moves an object (the commit of a chunked upload into `blobs/`).
    async fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Parts of a streamed write must be at least this long, except the last one.
    fn min_part(&self) -> usize;

    /// Starts a streamed write of `key`, invisible until committed. `staging` is a key the
    /// driver may write the bytes to meanwhile (the filesystem does; S3 does not need it).
    /// Returns the handle to pass to the other part calls (persistable).
    async fn part_start(&self, key: &str, staging: &str) -> Result<String>;

    /// Writes part `index` (0-based), which starts at byte `offset` of the object. A part
    /// written again replaces the earlier attempt. Returns the part's id for the commit.
    async fn part_write(
        &self,
        key: &str,
        handle: &str,
        index: usize,
        offset: u64,
        data: Bytes,
    ) -> Result<String>;

    /// Makes `key` the concatenation of `parts`, atomically and durably.
    async fn part_commit(&self, key: &str, handle: &str, parts: Vec<String>) -> Result<()>;

    /// Drops a streamed write.
    async fn part_abort(&self, key: &str, handle: &str) -> Result<()>;

    /// Drops streamed writes that nobody has continued for `max_idle` (their request
    /// died: a killed server, a client gone) and that no upload session owns; how many.
    /// Object stores keep such a write until it is aborted; the filesystem's staging
    /// files are swept with `tmp/`, so the default does nothing.
    async fn sweep_parts(&self, _max_idle: Duration, _dry_run: bool) -> Result<usize> {
        Ok(0)
    }
}
