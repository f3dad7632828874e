//! `promote`: the final tags point at what the temporary tags point at (ZUUL.md §9).

use serde::Serialize;

use super::{RegistryType, TemporaryTag, delete_tag};
use crate::client::{ClientError, RawManifest, Result, Store};
use crate::oci::Digest;

/// What happened to one tag during promote.
#[derive(Debug, Serialize)]
pub struct Promoted {
    pub tag: String,
    pub temporary_tag: String,
    pub digest: Digest,
    pub temporary_deleted: bool,
    /// Why the temporary tag is still there, when it is.
    pub left_behind: Option<String>,
}

/// `promote`, per tag: GET the manifest under the temporary tag, PUT the identical bytes
/// (same Content-Type) under the final tag, DELETE the temporary tag. Three requests per
/// tag whatever the image size; no blob request.
pub async fn promote(
    store: &Store,
    tags: &[String],
    temporary: &TemporaryTag,
    registry_type: &RegistryType,
) -> Result<Vec<Promoted>> {
    if let TemporaryTag::Explicit(_) = temporary
        && tags.len() != 1
    {
        return Err(ClientError::Invalid(
            "an explicit temporary tag promotes exactly one --tag".into(),
        ));
    }
    let mut out = Vec::new();
    for t in tags {
        let temp = temporary.for_tag(t);
        let m: RawManifest = store.get_manifest(&temp).await.map_err(|e| match e {
            ClientError::NotFound(_) => ClientError::NotFound(format!(
                "temporary tag {store}:{temp} (was the image uploaded in gate?)"
            )),
            e => e,
        })?;
        store.put_manifest(Some(t), &m).await?;
        let (deleted, left) = delete_tag(store, &temp, registry_type).await;
        out.push(Promoted {
            tag: t.clone(),
            temporary_tag: temp,
            digest: m.digest.clone(),
            temporary_deleted: deleted,
            left_behind: left,
        });
    }
    Ok(out)
}
