//! Image references as users write them: `[registry/]repository[:tag][@digest]`.
//!
//! Follows the grammar of distribution's `reference` package: the first component is a
//! registry when it contains `.` or `:` or is `localhost`; otherwise the registry is
//! `docker.io`, and a single-component repository gains `library/` — only then, so a
//! reference with an explicit registry is never rewritten.

use std::fmt;
use std::str::FromStr;

use super::{Digest, NameError, validate_repository, validate_tag};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]`, e.g. `127.0.0.1:5000`, `quay.io`, `docker.io`.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference {input:?}: {why}")]
    Invalid { input: String, why: String },
}

fn invalid(input: &str, why: impl fmt::Display) -> ReferenceError {
    ReferenceError::Invalid {
        input: input.to_string(),
        why: why.to_string(),
    }
}

fn looks_like_registry(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn valid_registry(host: &str) -> bool {
    let (h, port) = if let Some(v6) = host.strip_prefix('[') {
        // [::1]:5000
        let Some((inside, after)) = v6.split_once(']') else {
            return false;
        };
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(p) => ("v6", Some(p)),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return false;
    }
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid(input, "empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| invalid(input, e))?)),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|e| invalid(input, e))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if looks_like_registry(first) => {
                (first.to_string(), path.to_string())
            }
            _ if name.contains('/') => (DOCKER_HUB.to_string(), name.to_string()),
            _ => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        if !valid_registry(&registry) {
            return Err(invalid(input, format!("bad registry host {registry:?}")));
        }
        validate_repository(&repository).map_err(|e: NameError| invalid(input, e))?;
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(String::from),
            digest,
        })
    }

    /// What to put after `/manifests/`: the digest when pinned, else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn short_names_default_to_docker_hub() {
        assert_eq!(p("busybox").to_string(), "docker.io/library/busybox");
        assert_eq!(p("zuul/zuul:1").to_string(), "docker.io/zuul/zuul:1");
        assert_eq!(p("busybox").reference(), "latest");
    }

    #[test]
    fn explicit_registries_are_kept() {
        let r = p("127.0.0.1:5000/a/b:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("v1"))
        );
        let r = p("quay.io/example/base:1");
        assert_eq!(r.registry, "quay.io");
        assert_eq!(p("localhost/x").registry, "localhost");
        assert_eq!(p("localhost:5000/x").registry, "localhost:5000");
        assert_eq!(p("[::1]:5000/x").registry, "[::1]:5000");
        let r = p(&format!("host:5000/x@{D}"));
        assert_eq!(r.reference(), D);
        assert_eq!(r.tag, None);
        let r = p(&format!("host:5000/x:t@{D}"));
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.to_string(), format!("host:5000/x:t@{D}"));
    }

    #[test]
    fn bad_references() {
        for bad in [
            "",
            "UPPER/x",
            "host:5000/x:bad tag",
            "host:5000/x@sha256:abc",
            "host:99999/x",
            "host:5000/",
            "a//b",
            "x:",
            "host:port/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        let e = Reference::parse("x@md5:00").unwrap_err().to_string();
        assert!(e.starts_with("invalid reference \"x@md5:00\""), "{e}");
    }
}
