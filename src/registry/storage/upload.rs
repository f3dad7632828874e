//! Upload sessions and streamed blob writes, over the driver's parts (`driver.rs`).
//!
//! A session is `uploads/<id>/state` (JSON: repository, offset, the serialized hash state,
//! the streamed write's handle and part ids) and the bytes: on the filesystem the file
//! `uploads/<id>/data`, grown in place; on S3 a multipart upload of `uploads/<id>/data`
//! whose parts are at least 5 MiB, plus the bytes short of a part kept in the state
//! itself (base64, under 5 MiB). Everything needed to continue is in the store, so a
//! session survives a restart and continues on another replica; the state is written with
//! compare-and-swap, so two replicas appending to one session cannot both win. At most one
//! part per request is held in memory, never a whole blob.
//!
//! A chunk that dies half-way (client gone, server killed) may leave bytes past the
//! recorded offset (a part written, state not saved); the next append rewrites that part
//! from the recorded offset, so those bytes never reach a blob. Nothing in `uploads/` is
//! visible to clients until commit.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::driver::{Mode, Put};
use super::{Result, Storage, StorageError};
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
    /// The streamed write's handle, once a part was written.
    #[serde(default)]
    handle: Option<String>,
    /// Ids of the parts written, in order.
    #[serde(default)]
    parts: Vec<String>,
    /// Bytes in those parts; `offset - parts_len` bytes are in `tail` (base64).
    #[serde(default)]
    parts_len: u64,
    #[serde(default)]
    tail: Option<String>,
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

/// Parts written to the filesystem (it has no minimum): few syscalls for a large layer.
const FS_PART: usize = 1 << 20;

/// Parts written to object storage.
const OBJECT_PART: usize = 8 << 20;

fn state_key(id: &str) -> String {
    format!("uploads/{id}/state")
}

fn data_key(id: &str) -> String {
    format!("uploads/{id}/data")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A streamed write in progress: bytes buffered up to a part, parts written so far.
struct Parts<'a> {
    storage: &'a Storage,
    key: String,
    staging: String,
    handle: Option<String>,
    ids: Vec<String>,
    written: u64,
    buf: BytesMut,
}

impl Parts<'_> {
    fn part_size(&self) -> usize {
        match self.storage.driver.min_part() {
            0 => FS_PART,
            min => min.max(OBJECT_PART),
        }
    }

    async fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        let size = self.part_size();
        while self.buf.len() >= size {
            let part = self.buf.split_to(size).freeze();
            self.write(part).await?;
        }
        Ok(())
    }

    async fn write(&mut self, part: Bytes) -> Result<()> {
        let d = &self.storage.driver;
        let handle = match &self.handle {
            Some(h) => h.clone(),
            None => {
                let h = d.part_start(&self.key, &self.staging).await?;
                self.handle = Some(h.clone());
                h
            }
        };
        let len = part.len() as u64;
        let id = d
            .part_write(&self.key, &handle, self.ids.len(), self.written, part)
            .await?;
        self.ids.push(id);
        self.written += len;
        Ok(())
    }

    /// Writes what is buffered as a part if the driver allows a part that short here.
    async fn flush_if_allowed(&mut self) -> Result<()> {
        if !self.buf.is_empty() && self.buf.len() >= self.storage.driver.min_part() {
            let part = self.buf.split().freeze();
            self.write(part).await?;
        }
        Ok(())
    }

    /// Writes the rest as the last part and makes the object visible. False when nothing
    /// was streamed yet: the bytes are all in `buf`, for the caller to store whole.
    async fn commit(&mut self) -> Result<bool> {
        let Some(handle) = self.handle.clone() else {
            return Ok(false);
        };
        if !self.buf.is_empty() {
            let part = self.buf.split().freeze();
            self.write(part).await?;
        }
        self.storage
            .driver
            .part_commit(&self.key, &handle, self.ids.clone())
            .await?;
        Ok(true)
    }

    async fn abort(&self) {
        if let Some(h) = &self.handle
            && let Err(e) = self.storage.driver.part_abort(&self.key, h).await
        {
            tracing::warn!("dropping a failed write of {}: {e}", self.key);
        }
    }
}

impl Storage {
    /// Starts a session for `repo`.
    pub async fn upload_start(&self, repo: &str) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        let state = State {
            repository: repo.to_string(),
            offset: 0,
            algorithm: Algorithm::Sha256.as_str().to_string(),
            hash_state: B64.encode(Algorithm::Sha256.hasher().save_state()),
            started: now_secs(),
            handle: None,
            parts: Vec::new(),
            parts_len: 0,
            tail: None,
        };
        self.save_state(&id, &state, Mode::CreateVolatile).await?;
        Ok(UploadStatus { id, offset: 0 })
    }

    /// The session's state and its version (for the compare-and-swap that saves it).
    async fn load_state(&self, repo: Option<&str>, id: &str) -> Result<(State, String)> {
        let unknown = || StorageError::UploadUnknown(id.to_string());
        let (bytes, meta) = self.driver.get(&state_key(id)).await?.ok_or_else(unknown)?;
        let state: State = serde_json::from_slice(&bytes).map_err(|_| unknown())?;
        // A session belongs to the repository that started it.
        if repo.is_some_and(|r| r != state.repository) {
            return Err(unknown());
        }
        Ok((state, meta.version))
    }

    async fn save_state(&self, id: &str, state: &State, mode: Mode) -> Result<()> {
        let json = serde_json::to_vec(state).map_err(|e| StorageError::Io {
            context: "encoding upload state".into(),
            source: std::io::Error::other(e),
        })?;
        match self.driver.put(&state_key(id), json.into(), mode).await? {
            Put::Done(_) => Ok(()),
            Put::Exists | Put::Conflict => Err(StorageError::Busy(format!(
                "upload {id} was changed by another request at the same time"
            ))),
        }
    }

    /// The current offset of a session.
    pub async fn upload_status(&self, repo: &str, id: &str) -> Result<UploadStatus> {
        let (state, _) = self.load_state(Some(repo), id).await?;
        Ok(UploadStatus {
            id: id.to_string(),
            offset: state.offset,
        })
    }

    /// The session's write, with the tail bytes of earlier requests buffered again.
    async fn resume<'a>(&'a self, id: &str, state: &State) -> Result<Parts<'a>> {
        let mut buf = BytesMut::new();
        if let Some(tail) = &state.tail {
            let bytes = B64
                .decode(tail)
                .map_err(|_| StorageError::UploadUnknown(id.to_string()))?;
            buf.extend_from_slice(&bytes);
        }
        Ok(Parts {
            storage: self,
            key: data_key(id),
            staging: data_key(id),
            handle: state.handle.clone(),
            ids: state.parts.clone(),
            written: state.parts_len,
            buf,
        })
    }

    /// Streams `body` into the session's write, hashing; advances `state.offset` and the
    /// hash state. The outer error is a storage failure (state not to be saved); the inner
    /// one a body that broke off (what arrived counts, so the client can resume).
    async fn append_body<S, E>(
        &self,
        id: &str,
        state: &mut State,
        parts: &mut Parts<'_>,
        mut body: S,
    ) -> Result<Result<()>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut hasher = state.hasher(id)?;
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
            parts.push(&chunk).await?;
            state.offset += chunk.len() as u64;
        }
        state.hash_state = B64.encode(hasher.save_state());
        Ok(body_result)
    }

    /// Records where a write stands after a request: parts written, the rest as a tail.
    async fn checkpoint(
        &self,
        id: &str,
        state: &mut State,
        parts: &mut Parts<'_>,
        version: String,
    ) -> Result<()> {
        parts.flush_if_allowed().await?;
        state.tail = (!parts.buf.is_empty()).then(|| B64.encode(&parts.buf));
        state.handle = parts.handle.clone();
        state.parts = parts.ids.clone();
        state.parts_len = parts.written;
        self.save_state(id, state, Mode::UpdateVolatile(version))
            .await?;
        Ok(())
    }

    /// A session as a request continues it: its lock held, its state loaded and checked
    /// against `start` (from `Content-Range`), its buffered parts resumed.
    async fn continue_session<'a>(
        &'a self,
        repo: &str,
        id: &str,
        start: Option<u64>,
    ) -> Result<Session<'a>> {
        let _guard = self.upload_lock(id).lock_owned().await;
        let (state, version) = self.load_state(Some(repo), id).await?;
        check_start(&state, start)?;
        let parts = self.resume(id, &state).await?;
        Ok(Session {
            _guard,
            state,
            version,
            parts,
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
        let mut session = self.continue_appending(repo, id, start, body).await?;
        let Session {
            state,
            version,
            parts,
            ..
        } = &mut session;
        self.checkpoint(id, state, parts, version.clone()).await?;
        Ok(UploadStatus {
            id: id.to_string(),
            offset: state.offset,
        })
    }

    /// Continues a session and appends `body` to it. A body that fails midway leaves what
    /// arrived recorded (checkpointed) and returns its error.
    async fn continue_appending<S, E>(
        &self,
        repo: &str,
        id: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<Session<'_>>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut session = self.continue_session(repo, id, start).await?;
        let Session {
            state,
            version,
            parts,
            ..
        } = &mut session;
        if let Err(e) = self.append_body(id, state, parts, body).await? {
            self.checkpoint(id, state, parts, version.clone()).await?;
            return Err(e);
        }
        Ok(session)
    }

    /// Appends the final `body`, verifies `digest`, then commits: the write made visible,
    /// moved into `blobs/`, linked into `repo`, the session removed. On a digest mismatch
    /// the session is discarded and nothing is stored.
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
        let Session {
            _guard,
            state,
            mut parts,
            ..
        } = self.continue_appending(repo, id, start, body).await?;
        let size = state.offset;
        // 1. verify: the streaming hash is sha256; other algorithms re-read the data once.
        let hasher = state.hasher(id)?;
        let streamed = parts.commit().await?;
        let actual = if digest.algorithm() == hasher.algorithm() {
            hasher.finish()
        } else if streamed {
            self.hash_object(&data_key(id), size, digest.algorithm())
                .await?
        } else {
            Digest::of(digest.algorithm(), &parts.buf)
        };
        if &actual != digest {
            self.remove_upload(id).await?;
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // 2. move into place (the blob may be there already: then it is only stamped),
        // 3. link, 4. clean up.
        if streamed {
            let blob = Storage::blob_key(digest);
            if self.driver.touch(&blob).await?.is_some() && self.fence(&[&blob]).await? {
                self.driver.delete(&data_key(id)).await?;
            } else {
                self.driver.rename(&data_key(id), &blob).await?;
            }
        } else {
            self.write_blob_if_absent(digest, parts.buf.split().freeze())
                .await?;
        }
        self.link_blob(repo, digest).await?;
        // The data was moved; the state is all that is left.
        let removed = async {
            self.driver.remove(&state_key(id)).await?;
            if self.driver.min_part() == 0 {
                self.driver.delete_prefix(&format!("uploads/{id}")).await?;
            }
            Ok::<_, StorageError>(())
        };
        if let Err(e) = removed.await {
            tracing::warn!("removing finished upload {id}: {e}");
        }
        Ok(size)
    }

    /// A whole blob in one request (monolithic upload): streamed while hashing, made
    /// visible only when the digest matches, then linked. No session is recorded: if the
    /// request dies, a staging file (filesystem) or an uncompleted multipart upload (S3)
    /// is all there is.
    pub async fn put_blob_stream<S, E>(
        &self,
        repo: &str,
        digest: &Digest,
        mut body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut parts = Parts {
            storage: self,
            key: Storage::blob_key(digest),
            staging: format!("tmp/{}", uuid::Uuid::new_v4()),
            handle: None,
            ids: Vec::new(),
            written: 0,
            buf: BytesMut::new(),
        };
        let mut h = digest.algorithm().hasher();
        let mut size = 0u64;
        let streamed: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
                h.update(&chunk);
                size += chunk.len() as u64;
                parts.push(&chunk).await?;
            }
            Ok(())
        }
        .await;
        let actual = h.finish();
        if streamed.is_err() || &actual != digest {
            parts.abort().await;
            streamed?;
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if !parts.commit().await? {
            self.write_blob_if_absent(digest, parts.buf.split().freeze())
                .await?;
        }
        self.link_blob(repo, digest).await?;
        Ok(size)
    }

    /// Cancels a session.
    pub async fn upload_cancel(&self, repo: &str, id: &str) -> Result<()> {
        self.load_state(Some(repo), id).await?;
        self.remove_upload(id).await
    }

    /// Removes a session and drops its streamed write.
    pub(super) async fn remove_upload(&self, id: &str) -> Result<()> {
        let state = self.load_state(None, id).await.ok().map(|(s, _)| s);
        self.remove_session(id, state.and_then(|s| s.handle)).await
    }

    async fn remove_session(&self, id: &str, handle: Option<String>) -> Result<()> {
        if let Some(h) = handle {
            self.driver.part_abort(&data_key(id), &h).await?;
        }
        self.driver.delete_prefix(&format!("uploads/{id}")).await
    }

    async fn hash_object(&self, key: &str, len: u64, algorithm: Algorithm) -> Result<Digest> {
        let mut stream = self.driver.read(key, 0, len).await?;
        let mut h = algorithm.hasher();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StorageError::Io {
                context: format!("read {key}"),
                source: e,
            })?;
            h.update(&chunk);
        }
        Ok(h.finish())
    }
}

/// See [`Storage::continue_session`].
struct Session<'a> {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    state: State,
    version: String,
    parts: Parts<'a>,
}

fn check_start(state: &State, start: Option<u64>) -> Result<()> {
    match start {
        Some(got) if got != state.offset => Err(StorageError::RangeMismatch {
            offset: state.offset,
            got,
        }),
        _ => Ok(()),
    }
}
