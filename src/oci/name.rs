//! Repository names and tags, validated by the grammar of the distribution spec
//! (spec.md, "Pulling manifests"): a name is `/`-separated components matching
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, a tag matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
//!
//! Because no component may start with `.` or `_` or be empty, a valid name can never
//! climb out of a directory (`..`) or collide with the registry's `_`-prefixed files.

/// Longest repository name accepted (distribution's limit, also Docker Hub's).
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid repository name {0:?}: {1}")]
    Repository(String, &'static str),
    #[error("invalid tag {0:?}: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
}

/// Checks a repository name such as `library/busybox` or `quay.io/example/base`
/// (the latter being a valid *name* made of components, as buildset registries store them).
pub fn validate_repository(name: &str) -> Result<(), NameError> {
    let err = |why| Err(NameError::Repository(name.to_string(), why));
    if name.is_empty() {
        return err("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return err("longer than 255 characters");
    }
    for component in name.split('/') {
        if !valid_component(component) {
            return err(
                "each /-separated component must match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*",
            );
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or one or more "-", always followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Checks a tag such as `latest` or `change_12_1.0`.
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NameError::Tag(tag.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for good in [
            "a",
            "library/busybox",
            "quay.io/example/base",
            "a__b",
            "a---b",
            "a.b_c-d/e0",
            "127.0.0.1/x",
        ] {
            assert!(validate_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "A",
            "a//b",
            "/a",
            "a/",
            "..",
            "a/../b",
            "a/./b",
            "_a",
            "a___b",
            "a.-b",
            "a:b",
            "a b",
            "a/%2e%2e",
            "a-",
        ] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
        assert!(validate_repository(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags() {
        for good in ["latest", "_x", "change_1_latest", "v1.0-rc.1", &"a".repeat(128)] {
            assert!(validate_tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }
}
