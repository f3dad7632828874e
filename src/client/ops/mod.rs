//! Small operations over a store, one per file: tag, promote, delete, list, inspect,
//! sweep. Each says what requests it makes. The temporary-tag naming and registry types
//! they share live here.

mod delete;
mod inspect;
mod list;
mod promote;
mod sweep;
mod tag;

pub use delete::delete_tag;
pub use inspect::{Inspection, inspect};
pub use list::{TagInfo, list};
pub use promote::{Promoted, promote};
pub use sweep::{parse_rfc3339, sweep};
pub use tag::tag;

/// How the temporary tag of an upload is named (ZUUL.md §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemporaryTag {
    /// `change_<N>_<tag>`
    Change(u64),
    /// `<pipeline>_<tag>` (no change, e.g. periodic pipelines)
    Pipeline(String),
    /// An explicit temporary tag (one final tag only).
    Explicit(String),
}

impl TemporaryTag {
    pub fn for_tag(&self, tag: &str) -> String {
        match self {
            TemporaryTag::Change(n) => format!("change_{n}_{tag}"),
            TemporaryTag::Pipeline(p) => format!("{p}_{tag}"),
            TemporaryTag::Explicit(t) => t.clone(),
        }
    }

    /// True when `tag` is a temporary tag of this kind (any change number for `Change`).
    pub fn matches(&self, tag: &str) -> bool {
        match self {
            TemporaryTag::Change(_) => tag
                .strip_prefix("change_")
                .and_then(|r| r.split_once('_'))
                .is_some_and(|(n, rest)| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()
                }),
            TemporaryTag::Pipeline(p) => tag.starts_with(&format!("{p}_")),
            TemporaryTag::Explicit(t) => tag == t,
        }
    }
}

/// Registry-specific ways to delete a tag when the OCI tag DELETE is refused.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum RegistryType {
    /// Only the OCI API.
    #[default]
    Oci,
    /// Docker Hub: JWT login at hub.docker.com, then its tag API. `api_url` replaces
    /// `https://hub.docker.com` (a mirror of the API, or a fake one in tests).
    DockerHub {
        username: String,
        password: String,
        api_url: Option<String>,
    },
    /// quay.io: its REST API with an OAuth token.
    Quay { token: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_tags() {
        assert_eq!(
            TemporaryTag::Change(12).for_tag("latest"),
            "change_12_latest"
        );
        assert_eq!(
            TemporaryTag::Pipeline("periodic".into()).for_tag("v1"),
            "periodic_v1"
        );
        assert!(TemporaryTag::Change(0).matches("change_3_latest"));
        assert!(!TemporaryTag::Change(0).matches("change_x_latest"));
        assert!(!TemporaryTag::Change(0).matches("latest"));
        assert!(TemporaryTag::Pipeline("gate".into()).matches("gate_v1"));
    }
}
