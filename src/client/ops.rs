//! Small operations over a store: tag, promote, delete, list, inspect, sweep.
//! One function per operation; each says what requests it makes.

use serde::Serialize;

use super::{ClientError, RawManifest, Result, Store};
use crate::oci::{Digest, Manifest};

/// `tag`: one manifest GET and one PUT of the same bytes under `new_tag`. No blob moves.
pub async fn tag(store: &Store, src_ref: &str, new_tag: &str) -> Result<Digest> {
    let m = store.get_manifest(src_ref).await?;
    store.put_manifest(Some(new_tag), &m).await
}

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
    /// Docker Hub: JWT login at hub.docker.com, then its tag API.
    DockerHub { username: String, password: String },
    /// quay.io: its REST API with an OAuth token.
    Quay { token: String },
}

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

/// Deletes a tag with the OCI API, falling back to the registry-specific API.
/// Returns (deleted, why not).
pub async fn delete_tag(
    store: &Store,
    tag: &str,
    registry_type: &RegistryType,
) -> (bool, Option<String>) {
    let oci = store.delete(tag).await;
    let oci_err = match oci {
        Ok(true) => return (true, None),
        Ok(false) => return (false, Some(format!("tag {tag} was not found"))),
        Err(e) => e,
    };
    let Store::Registry { client, repo } = store else {
        return (false, Some(oci_err.to_string()));
    };
    let fallback = match registry_type {
        RegistryType::Oci => {
            return (
                false,
                Some(format!(
                    "{oci_err} (set --registry-type for a registry-specific API)"
                )),
            );
        }
        RegistryType::DockerHub { username, password } => {
            dockerhub_delete(repo, tag, username, password).await
        }
        RegistryType::Quay { token } => quay_delete(&client.registry, repo, tag, token).await,
    };
    match fallback {
        Ok(()) => (true, None),
        Err(e) => (false, Some(format!("{oci_err}; fallback: {e}"))),
    }
}

fn api_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Invalid(e.to_string()))
}

/// Docker Hub: `POST /v2/users/login/` for a JWT, then
/// `DELETE /v2/repositories/<namespace>/<repo>/tags/<tag>/`. The base URL can be
/// overridden with `GANTRY_DOCKERHUB_URL`.
async fn dockerhub_delete(repo: &str, tag: &str, username: &str, password: &str) -> Result<()> {
    let base =
        std::env::var("GANTRY_DOCKERHUB_URL").unwrap_or_else(|_| "https://hub.docker.com".into());
    let http = api_client()?;
    let login = http
        .post(format!("{base}/v2/users/login/"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .map_err(|e| ClientError::Transport {
            method: "POST".into(),
            url: format!("{base}/v2/users/login/"),
            message: e.to_string(),
        })?;
    if !login.status().is_success() {
        return Err(ClientError::Auth {
            registry: "hub.docker.com".into(),
            why: format!("login answered {}", login.status()),
        });
    }
    let token = login
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["token"].as_str().map(String::from))
        .ok_or_else(|| ClientError::Auth {
            registry: "hub.docker.com".into(),
            why: "login response without token".into(),
        })?;
    let url = format!("{base}/v2/repositories/{repo}/tags/{tag}/");
    api_delete(
        http.delete(&url)
            .header("Authorization", format!("JWT {token}")),
        url,
    )
    .await
}

/// Sends a registry-API DELETE; any 2xx is success.
async fn api_delete(req: reqwest::RequestBuilder, url: String) -> Result<()> {
    let resp = req.send().await.map_err(|e| ClientError::Transport {
        method: "DELETE".into(),
        url: url.clone(),
        message: e.to_string(),
    })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(ClientError::Status {
            method: "DELETE".into(),
            url,
            status: resp.status().as_u16(),
            codes: Default::default(),
        })
    }
}

/// quay.io: `DELETE /api/v1/repository/<namespace>/<repo>/tag/<tag>` with a Bearer token.
async fn quay_delete(registry: &str, repo: &str, tag: &str, token: &str) -> Result<()> {
    let url = format!("https://{registry}/api/v1/repository/{repo}/tag/{tag}");
    let http = api_client()?;
    api_delete(http.delete(&url).bearer_auth(token), url).await
}

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

/// What `inspect` shows.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub digest: Digest,
    pub media_type: String,
    pub size: usize,
    pub manifest: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    pub platforms: Vec<String>,
    pub layers: Vec<crate::oci::Descriptor>,
}

/// `inspect`: the manifest, its config (for images) and the platform list (for indexes).
pub async fn inspect(store: &Store, reference: &str) -> Result<Inspection> {
    let m = store.get_manifest(reference).await?;
    let parsed = Manifest::parse(&m.bytes, Some(&m.media_type))
        .map_err(|e| ClientError::Invalid(format!("{store}:{reference}: {e}")))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&m.bytes).map_err(|e| ClientError::Invalid(e.to_string()))?;
    let mut config = None;
    let mut platforms = Vec::new();
    if parsed.is_index() {
        platforms = parsed
            .manifests
            .iter()
            .map(|d| {
                d.platform
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "unknown".into())
            })
            .collect();
    } else if let Some(c) = &parsed.config {
        let bytes = super::registry::collect(store.get_blob(&c.digest).await?, c.size).await?;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            if let (Some(os), Some(arch)) = (v["os"].as_str(), v["architecture"].as_str()) {
                platforms.push(format!("{os}/{arch}"));
            }
            config = Some(v);
        }
    }
    Ok(Inspection {
        digest: m.digest,
        media_type: m.media_type,
        size: m.bytes.len(),
        manifest,
        config,
        platforms,
        layers: parsed.layers,
    })
}

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
    let bytes = super::registry::collect(store.get_blob(&c.digest).await?, c.size).await?;
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

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - offset)
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

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-23T12:00:00.123456789Z"),
            Some(1795435200)
        );
        assert_eq!(parse_rfc3339("2026-11-23T13:00:00+01:00"), Some(1795435200));
        assert_eq!(parse_rfc3339("nope"), None);
    }
}
