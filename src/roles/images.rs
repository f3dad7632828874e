//! The image list of the container roles: `docker_images` (docker roles) or
//! `container_images` (container roles), each `{context, repository, path?, dockerfile? |
//! container_filename?, build_args?, target?, tags? (default [latest]), siblings?,
//! labels?, arch?}` (ZUUL.md §9).

use super::RoleError;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::playbook::RoleCall;

#[derive(Clone, Debug, Deserialize)]
pub struct ImageSpec {
    pub context: String,
    pub repository: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, alias = "container_filename")]
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub build_args: Vec<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default = "latest")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub siblings: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub arch: Vec<String>,
}

fn latest() -> Vec<String> {
    vec!["latest".to_string()]
}

/// The variable a role reads its images from.
pub fn list_var(role: &str) -> &'static str {
    if role.contains("container") {
        "container_images"
    } else {
        "docker_images"
    }
}

/// Reads the image list; roles that have no images do nothing (as zuul-jobs does).
pub fn images(call: &RoleCall<'_>, var: &str) -> Result<Vec<ImageSpec>, RoleError> {
    let Some(v) = super::var(call, var)? else {
        return Ok(Vec::new());
    };
    let list: Vec<ImageSpec> =
        serde_json::from_value(v).map_err(|e| RoleError::Var(format!("{var}: {e}")))?;
    for i in &list {
        crate::oci::Reference::parse(&i.repository)
            .map_err(|e| RoleError::Var(format!("{var}: repository {:?}: {e}", i.repository)))?;
        for t in &i.tags {
            crate::oci::validate_tag(t).map_err(|e| RoleError::Var(format!("{var}: {e}")))?;
        }
    }
    Ok(list)
}

/// Images in every list a role may be given (`upload`/`push` accept both names).
pub fn any_images(call: &RoleCall<'_>) -> Result<Vec<ImageSpec>, RoleError> {
    let mut out = images(call, "container_images")?;
    out.extend(images(call, "docker_images")?);
    Ok(out)
}

/// Where an image lives inside the buildset and intermediate registries
/// (use-buildset-registry's mirror layout): docker.io images without a prefix
/// (`library/x`, `org/x`), others under their registry (`quay.io/org/x`); a port becomes
/// `_port` because `:` cannot appear in a repository name.
pub fn buildset_repository(repository: &str) -> Result<String, RoleError> {
    let r = crate::oci::Reference::parse(repository)?;
    Ok(if r.registry == crate::oci::DOCKER_HUB {
        r.repository
    } else {
        format!(
            "{}/{}",
            r.registry
                .replace(':', "_")
                .trim_start_matches('[')
                .replace(']', ""),
            r.repository
        )
    })
}

#[cfg(test)]
mod tests {
    use super::buildset_repository;

    #[test]
    fn buildset_names() {
        assert_eq!(buildset_repository("example/app").unwrap(), "example/app");
        assert_eq!(buildset_repository("busybox").unwrap(), "library/busybox");
        assert_eq!(
            buildset_repository("quay.io/example/base").unwrap(),
            "quay.io/example/base"
        );
        assert_eq!(
            buildset_repository("127.0.0.1:5000/example/app").unwrap(),
            "127.0.0.1_5000/example/app"
        );
        assert!(
            crate::oci::validate_repository(
                &buildset_repository("127.0.0.1:5000/example/app").unwrap()
            )
            .is_ok()
        );
    }
}
