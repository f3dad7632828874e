//! `sweep`: deletes temporary tags older than a maximum age, judged by image creation time.

use super::{RegistryType, TemporaryTag, delete_tag};
use crate::client::{ClientError, Result, Store};
use crate::oci::Manifest;

/// When an image was created: the config's `created` (for an index, its first child's).
async fn created(store: &Store, tag: &str) -> Result<Option<i64>> {
    let mut m = store.get_manifest(tag).await?;
    let mut parsed = Manifest::parse(&m.bytes, Some(&m.media_type))
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
    if parsed.is_index() {
        let Some(first) = parsed.manifests.first() else {
            return Ok(None);
        };
        m = store.get_manifest(&first.digest.to_string()).await?;
        parsed = Manifest::parse(&m.bytes, Some(&m.media_type))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
    }
    let Some(c) = parsed.config else {
        return Ok(None);
    };
    let bytes = crate::client::registry::collect(store.get_blob(&c.digest).await?, c.size).await?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(v["created"].as_str().and_then(parse_rfc3339))
}

/// `sweep`: deletes temporary tags older than `max_age` — the age is the image's creation
/// time. (Zuul's own sweep compares `timedelta.seconds`, which never exceeds a day, so it
/// never deletes anything; this one does what it says.)
pub async fn sweep(
    store: &Store,
    pattern: &TemporaryTag,
    max_age: std::time::Duration,
    registry_type: &RegistryType,
    now: i64,
) -> Result<Vec<(String, bool, Option<String>)>> {
    let mut out = Vec::new();
    for t in store.tags().await? {
        if !pattern.matches(&t) {
            continue;
        }
        let Some(created) = created(store, &t).await? else {
            continue;
        };
        if now - created > max_age.as_secs() as i64 {
            let (deleted, why) = delete_tag(store, &t, registry_type).await;
            out.push((t, deleted, why));
        }
    }
    Ok(out)
}

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-23T12:00:00.123456789Z"),
            Some(1795435200)
        );
        assert_eq!(parse_rfc3339("2026-11-23T13:00:00+01:00"), Some(1795435200));
        assert_eq!(parse_rfc3339("2026-11-23t12:00:00z"), Some(1795435200));
        assert_eq!(parse_rfc3339("2026-11-23 12:00:00Z"), Some(1795435200));
        assert_eq!(parse_rfc3339("nope"), None);
    }
}
