//! The pure parser for `/v2/...` paths (distribution spec, "Endpoints").
//!
//! Repository names contain `/`, so one catch-all route feeds this parser, which matches
//! the fixed *suffix* of each endpoint and takes everything before it as the name.
//! Names and references are validated here, so handlers only ever see valid values.

use crate::oci::{Digest, validate_repository, validate_tag};

use super::error::{Code, RegistryError};

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// One endpoint of the distribution API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { name: String },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        name: String,
        reference: ManifestRef,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: String },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: String, id: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: Digest },
}

impl Route {
    /// The repository this route acts on, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

fn not_found(path: &str) -> RegistryError {
    RegistryError::new(Code::NameUnknown, format!("no such endpoint: {path}"))
        .with_status(axum::http::StatusCode::NOT_FOUND)
}

fn name(segments: &[&str], path: &str) -> Result<String, RegistryError> {
    if segments.is_empty() {
        return Err(not_found(path));
    }
    let name = segments.join("/");
    validate_repository(&name).map_err(|e| RegistryError::new(Code::NameInvalid, e.to_string()))?;
    Ok(name)
}

fn digest(s: &str) -> Result<Digest, RegistryError> {
    Digest::parse(s).map_err(|e| RegistryError::new(Code::DigestInvalid, e.to_string()))
}

/// Parses the part of the path after `/v2` (e.g. `/library/busybox/manifests/latest`).
pub fn parse(rest: &str) -> Result<Route, RegistryError> {
    let path = rest;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Route::Base);
    }
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let seg: Vec<&str> = rest.split('/').collect();
    let n = seg.len();
    // `/blobs/uploads/` (trailing slash) and `/blobs/uploads` both start an upload.
    if n >= 3 && seg[n - 3] == "blobs" && seg[n - 2] == "uploads" && seg[n - 1].is_empty() {
        return Ok(Route::UploadStart {
            name: name(&seg[..n - 3], path)?,
        });
    }
    if n >= 3 && seg[n - 1].is_empty() {
        return Err(not_found(path));
    }
    if n >= 2 && seg[n - 2] == "blobs" && seg[n - 1] == "uploads" {
        return Ok(Route::UploadStart {
            name: name(&seg[..n - 2], path)?,
        });
    }
    if n >= 4 && seg[n - 3] == "blobs" && seg[n - 2] == "uploads" {
        let id = seg[n - 1];
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(RegistryError::new(
                Code::BlobUploadUnknown,
                "invalid upload id",
            ));
        }
        return Ok(Route::Upload {
            name: name(&seg[..n - 3], path)?,
            id: id.to_string(),
        });
    }
    if n >= 3 && seg[n - 2] == "blobs" {
        return Ok(Route::Blob {
            name: name(&seg[..n - 2], path)?,
            digest: digest(seg[n - 1])?,
        });
    }
    if n >= 3 && seg[n - 2] == "manifests" {
        let r = seg[n - 1];
        let reference = if r.contains(':') {
            ManifestRef::Digest(digest(r)?)
        } else {
            validate_tag(r).map_err(|e| RegistryError::new(Code::TagInvalid, e.to_string()))?;
            ManifestRef::Tag(r.to_string())
        };
        return Ok(Route::Manifest {
            name: name(&seg[..n - 2], path)?,
            reference,
        });
    }
    if n >= 3 && seg[n - 2] == "tags" && seg[n - 1] == "list" {
        return Ok(Route::Tags {
            name: name(&seg[..n - 2], path)?,
        });
    }
    if n >= 3 && seg[n - 2] == "referrers" {
        return Ok(Route::Referrers {
            name: name(&seg[..n - 2], path)?,
            digest: digest(seg[n - 1])?,
        });
    }
    Err(not_found(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn code(p: &str) -> Code {
        parse(p).unwrap_err().code
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse("/").unwrap(), Route::Base);
        assert_eq!(parse("").unwrap(), Route::Base);
        assert_eq!(parse("/_catalog").unwrap(), Route::Catalog);
        assert_eq!(
            parse("/a/b/tags/list").unwrap(),
            Route::Tags { name: "a/b".into() }
        );
        assert_eq!(
            parse("/a/manifests/latest").unwrap(),
            Route::Manifest {
                name: "a".into(),
                reference: ManifestRef::Tag("latest".into())
            }
        );
        assert!(matches!(
            parse(&format!("/a/manifests/{D}")).unwrap(),
            Route::Manifest {
                reference: ManifestRef::Digest(_),
                ..
            }
        ));
        assert_eq!(
            parse("/x/y/blobs/uploads/").unwrap(),
            Route::UploadStart { name: "x/y".into() }
        );
        assert_eq!(
            parse("/x/blobs/uploads").unwrap(),
            Route::UploadStart { name: "x".into() }
        );
        assert_eq!(
            parse("/x/blobs/uploads/0a-b").unwrap(),
            Route::Upload {
                name: "x".into(),
                id: "0a-b".into()
            }
        );
        assert!(matches!(
            parse(&format!("/x/blobs/{D}")).unwrap(),
            Route::Blob { .. }
        ));
        assert!(matches!(
            parse(&format!("/x/referrers/{D}")).unwrap(),
            Route::Referrers { .. }
        ));
    }

    #[test]
    fn names_that_look_like_endpoints() {
        // A repository may be called "blobs" or "manifests": the suffix decides.
        assert_eq!(
            parse("/blobs/manifests/manifests/v1").unwrap(),
            Route::Manifest {
                name: "blobs/manifests".into(),
                reference: ManifestRef::Tag("v1".into())
            }
        );
        assert!(matches!(
            parse(&format!("/a/blobs/blobs/{D}")).unwrap(),
            Route::Blob { name, .. } if name == "a/blobs"
        ));
    }

    #[test]
    fn invalid_input() {
        assert_eq!(code("/../etc/manifests/x"), Code::NameInvalid);
        assert_eq!(code("/a/%2e%2e/manifests/x"), Code::NameInvalid);
        assert_eq!(code("/A/manifests/x"), Code::NameInvalid);
        assert_eq!(code("/a/manifests/..x"), Code::TagInvalid);
        assert_eq!(code("/a/blobs/sha256:abc"), Code::DigestInvalid);
        assert!(parse("/a/blobs/uploads/../../x").is_err());
        assert_eq!(code("/a/manifests/sha1:00"), Code::DigestInvalid);
        assert_eq!(code("/a/unknown"), Code::NameUnknown);
        assert_eq!(code("/manifests/latest"), Code::NameUnknown);
    }
}
