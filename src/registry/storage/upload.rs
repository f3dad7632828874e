//! Upload sessions: `uploads/<id>/data` grows as chunks arrive, hashed in the same pass;
//! `uploads/<id>/state` records the repository, the offset and the serialized hash state
//! after every chunk, so a session survives a server restart and never re-reads its data.
//!
//! A chunk that dies half-way (client gone, server killed) may leave bytes past the
//! recorded offset; the next append truncates back to the offset first, so those bytes
//! never reach a blob. Nothing in `uploads/` is visible to clients until commit.

use std::io::SeekFrom;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{IoContext, Result, Storage, StorageError};
use crate::oci::{Algorithm, Digest, Hasher};

/// Where an upload session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

#[derive(Serialize, Deserialize)]
struct State {
    repository: String,
    offset: u64,
    algorithm: String,
    /// base64 of [`Hasher::save_state`] after `offset` bytes.
    hash_state: String,
    /// Unix seconds when the session started (garbage collection of stale uploads).
    started: u64,
}

impl State {
    /// The hash of the bytes received so far, restored from the persisted state.
    fn hasher(&self, id: &str) -> Result<Hasher> {
        let algorithm = Algorithm::parse(&self.algorithm).unwrap_or(Algorithm::Sha256);
        B64.decode(&self.hash_state)
            .ok()
            .and_then(|s| Hasher::restore_state(algorithm, &s))
            .ok_or_else(|| StorageError::UploadUnknown(id.to_string()))
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Write buffer for upload data: large enough that a 64 MiB layer takes few syscalls.
const WRITE_BUFFER: usize = 1 << 20;

impl Storage {
    /// Starts a session for `repo`.
    pub async fn upload_start(&self, repo: &str) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.upload_dir(&id);
        tokio::fs::create_dir_all(&dir)
            .await
            .ctx(|| format!("create {}", dir.display()))?;
        tokio::fs::File::create(dir.join("data"))
            .await
            .ctx(|| format!("create {}/data", dir.display()))?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let state = State {
            repository: repo.to_string(),
            offset: 0,
            algorithm: Algorithm::Sha256.as_str().to_string(),
            hash_state: B64.encode(Algorithm::Sha256.hasher().save_state()),
            started,
        };
        self.save_state(&id, &state).await?;
        Ok(UploadStatus { id, offset: 0 })
    }

    async fn load_state(&self, repo: &str, id: &str) -> Result<State> {
        let path = self.upload_dir(id).join("state");
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::UploadUnknown(id.to_string()));
            }
            Err(e) => return Err(e).ctx(|| format!("read {}", path.display())),
        };
        let state: State = serde_json::from_slice(&bytes)
            .map_err(|_| StorageError::UploadUnknown(id.to_string()))?;
        // A session belongs to the repository that started it.
        if state.repository != repo {
            return Err(StorageError::UploadUnknown(id.to_string()));
        }
        Ok(state)
    }

    async fn save_state(&self, id: &str, state: &State) -> Result<()> {
        let json = serde_json::to_vec(state).map_err(|e| StorageError::Io {
            context: "encoding upload state".into(),
            source: std::io::Error::other(e),
        })?;
        self.write_replace(self.upload_dir(id).join("state"), json, false)
            .await
    }

    /// The current offset of a session.
    pub async fn upload_status(&self, repo: &str, id: &str) -> Result<UploadStatus> {
        let state = self.load_state(repo, id).await?;
        Ok(UploadStatus {
            id: id.to_string(),
            offset: state.offset,
        })
    }

    /// Appends `body` to a session. `start`, when given (from `Content-Range`), must equal
    /// the current offset: chunks arrive in order or not at all.
    pub async fn upload_append<S, E>(
        &self,
        repo: &str,
        id: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let mut state = self.load_state(repo, id).await?;
        if let Some(got) = start
            && got != state.offset
        {
            return Err(StorageError::RangeMismatch {
                offset: state.offset,
                got,
            });
        }
        let (_, result) = self.append_locked(id, &mut state, body).await?;
        self.save_state(id, &state).await?;
        result?;
        Ok(UploadStatus {
            id: id.to_string(),
            offset: state.offset,
        })
    }

    /// Appends to the data file and advances `state`. The outer error is a storage failure
    /// (state not advanced); the inner one a body that broke off (state advanced by what
    /// arrived, so the client can resume).
    async fn append_locked<S, E>(
        &self,
        id: &str,
        state: &mut State,
        mut body: S,
    ) -> Result<(u64, Result<()>)>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut hasher = state.hasher(id)?;
        let path = self.upload_dir(id).join("data");
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .ctx(|| format!("open {}", path.display()))?;
        // Drop bytes a killed request wrote past the recorded offset.
        file.set_len(state.offset)
            .await
            .ctx(|| format!("truncate {}", path.display()))?;
        file.seek(SeekFrom::Start(state.offset))
            .await
            .ctx(|| format!("seek {}", path.display()))?;
        let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut written = 0u64;
        let mut body_result = Ok(());
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    body_result = Err(StorageError::Body(e.to_string()));
                    break;
                }
            };
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .ctx(|| format!("write {}", path.display()))?;
            written += chunk.len() as u64;
        }
        out.flush()
            .await
            .ctx(|| format!("write {}", path.display()))?;
        state.offset += written;
        state.hash_state = B64.encode(hasher.save_state());
        Ok((written, body_result))
    }

    /// Appends the final `body`, verifies `digest` (and `size` when known), then commits:
    /// fsync, rename into `blobs/`, link into `repo`, remove the session. On a digest
    /// mismatch the session is discarded and nothing is stored.
    pub async fn upload_finish<S, E>(
        &self,
        repo: &str,
        id: &str,
        start: Option<u64>,
        digest: &Digest,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let mut state = self.load_state(repo, id).await?;
        if let Some(got) = start
            && got != state.offset
        {
            return Err(StorageError::RangeMismatch {
                offset: state.offset,
                got,
            });
        }
        let (_, body_result) = self.append_locked(id, &mut state, body).await?;
        if let Err(e) = body_result {
            self.save_state(id, &state).await?;
            return Err(e);
        }
        let data = self.upload_dir(id).join("data");
        // 1. verify: the streaming hash is sha256; other algorithms re-read the data once.
        let hasher = state.hasher(id)?;
        let actual = if digest.algorithm() == hasher.algorithm() {
            hasher.finish()
        } else {
            hash_file(&data, digest.algorithm()).await?
        };
        if &actual != digest {
            self.remove_upload(id).await?;
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // 2. move: fsync the data, then rename into place (atomic on one filesystem) and
        //    fsync the directory, under the push side of the gc lock (see sweep.rs).
        let target = self.blob_path(digest);
        let size = state.offset;
        let _guard = self.push_guard().await?;
        super::sweep::blocking("commit", move || {
            let f = std::fs::File::open(&data).ctx(|| format!("open {}", data.display()))?;
            f.sync_all().ctx(|| format!("fsync {}", data.display()))?;
            super::rename_durable(&data, &target)
        })
        .await?;
        // 3. link, 4. clean up.
        self.link_blob(repo, digest).await?;
        self.remove_upload(id).await?;
        Ok(size)
    }

    /// Cancels a session.
    pub async fn upload_cancel(&self, repo: &str, id: &str) -> Result<()> {
        self.load_state(repo, id).await?;
        self.remove_upload(id).await
    }

    async fn remove_upload(&self, id: &str) -> Result<()> {
        let dir = self.upload_dir(id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("remove {}", dir.display())),
        }
    }
}

async fn hash_file(path: &std::path::Path, algorithm: Algorithm) -> Result<Digest> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path).ctx(|| format!("open {}", path.display()))?;
        let mut h = algorithm.hasher();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .ctx(|| format!("read {}", path.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    })
    .await
    .map_err(|e| StorageError::Io {
        context: "hash task".into(),
        source: std::io::Error::other(e),
    })?
}
