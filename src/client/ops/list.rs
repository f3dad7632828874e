//! `list`: the tags of a repository, with their digests on request.

use serde::Serialize;

use crate::client::{Result, Store};
use crate::oci::Digest;

/// A tag and the digest it points to.
#[derive(Debug, Serialize)]
pub struct TagInfo {
    pub tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// `ls`: tags (paginated), with digests when `long` (one manifest GET per tag).
pub async fn list(store: &Store, long: bool) -> Result<Vec<TagInfo>> {
    let mut out = Vec::new();
    for t in store.tags().await? {
        let digest = if long {
            Some(store.get_manifest(&t).await?.digest)
        } else {
            None
        };
        out.push(TagInfo { tag: t, digest });
    }
    Ok(out)
}
