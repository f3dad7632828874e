//! The registry client: one HTTP client (reqwest) with Docker-style auth, and operations
//! (copy, tag, promote, delete, list) over two kinds of image store — a live registry and
//! an OCI image layout directory — so images move between registries and disk alike.
//!
//! Owns the network edge for images; uses `oci` for pure types; never shells out to
//! skopeo or docker. Manifest *bytes* are the unit of copy and tag: they are fetched and
//! put unchanged, never re-serialised, so digests survive every move.

mod auth;
pub mod body;
pub mod copy;
pub mod docker_config;
mod error;
pub mod layout;
pub mod ops;
pub mod registry;
pub mod retry;
mod store;
mod transport;
pub mod trust;

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

pub use auth::Credentials;
pub use body::Limits;
pub use copy::{CopyOptions, CopyReport, copy};
pub use error::ClientError;
pub use store::{ImageRef, Store, StoreFactory};
pub use transport::{ClientOptions, RegistryClient};

use crate::oci::Digest;

/// A stream of blob bytes.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, ClientError>> + Send>>;

/// Manifest bytes exactly as stored, with their media type and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
