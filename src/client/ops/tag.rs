//! `tag`: a new tag for an existing manifest, by its bytes.

use crate::client::{Result, Store};
use crate::oci::Digest;

/// `tag`: one manifest GET and one PUT of the same bytes under `new_tag`. No blob moves.
pub async fn tag(store: &Store, src_ref: &str, new_tag: &str) -> Result<Digest> {
    let m = store.get_manifest(src_ref).await?;
    store.put_manifest(Some(new_tag), &m).await
}
