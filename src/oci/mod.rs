//! Pure OCI types: digests, names, references, media types and manifests.
//!
//! Owns the vocabulary of the OCI image and distribution specs. Must not do I/O,
//! async, or HTTP: the registry server and the client both build on these types.

mod digest;
mod manifest;
mod media_type;
mod name;
mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Descriptor, Manifest, ManifestError, Platform};
pub use media_type::MediaType;
pub use name::{NameError, validate_repository, validate_tag};
pub use reference::{DOCKER_HUB, Reference, ReferenceError};
