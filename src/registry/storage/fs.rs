//! The filesystem driver: a key is a file under the root, the layout drawn in
//! `storage/mod.rs`. Every write goes to `tmp/` first, is fsynced, renamed into place, and
//! the directory fsynced, so a crash leaves the old object or the new one, never a torn
//! one. Put-if-absent is a hard link (fails atomically if the name exists); compare-and-swap
//! compares mtime, size and inode under a process-wide lock (replicas share S3, not a
//! directory). All file work runs on blocking threads.

use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::driver::{ByteStream, Driver, Entry, Meta, Mode, Put};
use super::{IoContext, Result, StorageError};

/// Read buffer for streaming objects out.
const READ_BUFFER: usize = 256 << 10;

pub struct FsDriver {
    root: PathBuf,
    /// Serializes compare-and-swap writes in this process.
    cas: Arc<Mutex<()>>,
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            context: format!("{what} task"),
            source: io::Error::other(e),
        })?
}

fn meta_of(m: &std::fs::Metadata) -> Meta {
    let modified = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let nanos = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Meta {
        size: m.len(),
        modified,
        version: format!("{nanos}-{}-{}", m.len(), m.ino()),
    }
}

fn stat_sync(path: &Path) -> Result<Option<Meta>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(meta_of(&m))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("stat {}", path.display())),
    }
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
    }
    Ok(())
}

/// fsync of the directory holding `path`: without it a rename may not survive a crash.
fn sync_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .ctx(|| format!("fsync {}", parent.display()))?;
    }
    Ok(())
}

/// Renames an fsynced file into place and makes the rename durable.
fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    create_parent(to)?;
    std::fs::rename(from, to).ctx(|| format!("rename into {}", to.display()))?;
    sync_parent(to)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("list {}", dir.display())),
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            walk(&e.path(), &rel, out)?;
        } else {
            let meta = meta_of(&m);
            out.push(Entry {
                name: rel,
                size: meta.size,
                modified: meta.modified,
            });
        }
    }
    Ok(())
}

impl FsDriver {
    /// Opens (creating if needed) a storage root.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsDriver> {
        let root = root.into();
        for d in ["blobs", "uploads", "repos", "tmp"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        }
        Ok(FsDriver {
            root,
            cas: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(uuid::Uuid::new_v4().to_string())
    }
}

fn put_sync(cas: &Mutex<()>, path: &Path, tmp: &Path, data: &[u8], mode: &Mode) -> Result<Put> {
    let durable = !mode.volatile();
    let mut f = std::fs::File::create(tmp).ctx(|| format!("create {}", tmp.display()))?;
    f.write_all(data)
        .ctx(|| format!("write {}", tmp.display()))?;
    if durable {
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    }
    drop(f);
    create_parent(path)?;
    match mode {
        Mode::Overwrite | Mode::Volatile => {
            std::fs::rename(tmp, path).ctx(|| format!("rename into {}", path.display()))?
        }
        Mode::Create | Mode::CreateVolatile => {
            let linked = std::fs::hard_link(tmp, path);
            let _ = std::fs::remove_file(tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Put::Exists),
                Err(e) => return Err(e).ctx(|| format!("link into {}", path.display())),
            }
        }
        Mode::Update(version) | Mode::UpdateVolatile(version) => {
            let _cas = cas.lock().unwrap_or_else(|p| p.into_inner());
            if stat_sync(path)?.map(|m| m.version).as_ref() != Some(version) {
                return Ok(Put::Conflict);
            }
            std::fs::rename(tmp, path).ctx(|| format!("rename into {}", path.display()))?;
        }
    }
    if durable {
        sync_parent(path)?;
    }
    Ok(Put::Done(
        stat_sync(path)?.map(|m| m.version).unwrap_or_default(),
    ))
}

/// Runs `f` with a clone of the driver's root-relative path helper on a blocking thread.
macro_rules! on_path {
    ($self:ident, $key:expr, $what:literal, |$p:ident| $body:expr) => {{
        let $p = $self.path($key);
        blocking($what, move || $body).await
    }};
}

#[async_trait]
impl Driver for FsDriver {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Meta)>> {
        on_path!(self, key, "read", |p| {
            let mut f = match std::fs::File::open(&p) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).ctx(|| format!("open {}", p.display())),
            };
            let m = f.metadata().ctx(|| format!("stat {}", p.display()))?;
            if m.is_dir() {
                return Ok(None);
            }
            let mut buf = Vec::with_capacity(m.len() as usize);
            std::io::Read::read_to_end(&mut f, &mut buf).ctx(|| format!("read {}", p.display()))?;
            Ok(Some((Bytes::from(buf), meta_of(&m))))
        })
    }

    async fn open(&self, key: &str) -> Result<Option<(u64, ByteStream)>> {
        let p = self.path(key);
        let f = match tokio::fs::File::open(&p).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx(|| format!("open {}", p.display())),
        };
        let len = f
            .metadata()
            .await
            .ctx(|| format!("stat {}", p.display()))?
            .len();
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), READ_BUFFER);
        Ok(Some((len, Box::pin(stream))))
    }

    async fn read(&self, key: &str, start: u64, len: u64) -> Result<ByteStream> {
        let p = self.path(key);
        let mut f = tokio::fs::File::open(&p)
            .await
            .ctx(|| format!("open {}", p.display()))?;
        if start > 0 {
            f.seek(SeekFrom::Start(start))
                .await
                .ctx(|| format!("seek {}", p.display()))?;
        }
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            f.take(len),
            READ_BUFFER,
        )))
    }

    async fn stat(&self, key: &str) -> Result<Option<Meta>> {
        on_path!(self, key, "stat", |p| stat_sync(&p))
    }

    async fn put(&self, key: &str, data: Bytes, mode: Mode) -> Result<Put> {
        let path = self.path(key);
        let tmp = self.tmp_path();
        let cas = self.cas.clone();
        blocking("write", move || {
            let r = put_sync(&cas, &path, &tmp, &data, &mode);
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp); // a full disk leaves no staging file
            }
            r
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        on_path!(self, key, "remove", |p| match std::fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx(|| format!("remove {}", p.display())),
        })
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        on_path!(
            self,
            prefix,
            "remove",
            |p| match std::fs::remove_dir_all(&p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).ctx(|| format!("remove {}", p.display())),
            }
        )
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        on_path!(self, prefix, "list", |p| {
            let mut out = Vec::new();
            walk(&p, "", &mut out)?;
            Ok(out)
        })
    }

    async fn list_dir(&self, prefix: &str) -> Result<Vec<String>> {
        on_path!(self, prefix, "list", |p| {
            let rd = match std::fs::read_dir(&p) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e).ctx(|| format!("list {}", p.display())),
            };
            Ok(rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect())
        })
    }

    async fn touch(&self, key: &str) -> Result<Option<u64>> {
        on_path!(self, key, "stamp", |p| match std::fs::File::open(&p) {
            Ok(f) => {
                // A store mounted read-only cannot be stamped, and gc cannot remove from
                // it either: answering matters more than the stamp.
                if let Err(e) = f.set_modified(SystemTime::now()) {
                    tracing::warn!("stamping {}: {e}", p.display());
                }
                let m = f.metadata().ctx(|| format!("stat {}", p.display()))?;
                Ok(m.is_file().then_some(m.len()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx(|| format!("open {}", p.display())),
        })
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.path(from), self.path(to));
        blocking("rename", move || rename_durable(&from, &to)).await
    }

    fn min_part(&self) -> usize {
        0
    }

    async fn part_start(&self, _key: &str, staging: &str) -> Result<String> {
        on_path!(self, staging, "create", |p| {
            create_parent(&p)?;
            std::fs::File::create(&p).ctx(|| format!("create {}", p.display()))?;
            Ok(())
        })?;
        Ok(staging.to_string())
    }

    async fn part_write(
        &self,
        _key: &str,
        handle: &str,
        _index: usize,
        offset: u64,
        data: Bytes,
    ) -> Result<String> {
        on_path!(self, handle, "write", |p| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .ctx(|| format!("open {}", p.display()))?;
            // Drop bytes a killed request wrote past the recorded offset.
            f.set_len(offset)
                .ctx(|| format!("truncate {}", p.display()))?;
            f.seek(SeekFrom::Start(offset))
                .ctx(|| format!("seek {}", p.display()))?;
            f.write_all(&data)
                .ctx(|| format!("write {}", p.display()))?;
            Ok(String::new())
        })
    }

    async fn part_commit(&self, key: &str, handle: &str, _parts: Vec<String>) -> Result<()> {
        let (staging, target) = (self.path(handle), self.path(key));
        blocking("commit", move || {
            let f = std::fs::File::open(&staging).ctx(|| format!("open {}", staging.display()))?;
            f.sync_all()
                .ctx(|| format!("fsync {}", staging.display()))?;
            if staging == target {
                return sync_parent(&target);
            }
            rename_durable(&staging, &target)
        })
        .await
    }

    async fn part_abort(&self, _key: &str, handle: &str) -> Result<()> {
        self.delete(handle).await.map(|_| ())
    }
}
