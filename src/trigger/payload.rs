//! Webhook bodies → the image pushes they announce.
//!
//! Three formats:
//! - Docker Hub (`push_data` + `repository`): lenient about older forms (`repo_name`
//!   missing → `namespace/name`; `name` holding `ns/name`; no tag → `latest`);
//! - distribution notifications (docs/notifications.md): an envelope `{"events": [...]}`;
//!   only `push` events of a manifest *with a tag* count (blob pushes and digest-only
//!   manifest pushes are not new tags);
//! - GitLab push and tag-push hooks: the ref's last segment is the tag, the project path the
//!   repository (the pipeline resolves `repository:tag` in the trigger's endpoint).
//!
//! [`validate`] checks every name a push carries against the distribution grammar before
//! anything else happens (a repository such as `team/../other` or a tag holding `$(…)` never
//! reaches a filter, a registry request or a run); [`printable`] escapes what is printed.
//!
//! Owns: JSON shape handling and validation only. Must not: do I/O, look at tokens.

use serde_json::Value;

use super::TriggerError;

/// One pushed tag, as a webhook told it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Push {
    /// `host:port` the payload named (distribution's `request.host`), if any.
    pub registry: Option<String>,
    pub repository: String,
    pub tag: String,
    /// Known from the payload (distribution) or resolved later with a manifest HEAD.
    pub digest: Option<String>,
    pub owner: Option<String>,
    pub pusher: Option<String>,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k)
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
}

fn bad(msg: impl Into<String>) -> TriggerError {
    TriggerError::Malformed(msg.into())
}

fn json(body: &[u8]) -> Result<Value, TriggerError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))
}

/// Docker Hub's own documented example escapes `[` and `]` (`\[`), which JSON does not
/// allow; senders copied from it do the same. Invalid escapes are read as the character.
fn lenient_json(body: &[u8]) -> Result<Value, TriggerError> {
    let strict = match json(body) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let text = std::str::from_utf8(body).map_err(|_| strict)?;
    let mut fixed = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            fixed.push(c);
            continue;
        }
        match chars.next() {
            Some(n @ ('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' | 'u')) => {
                fixed.push('\\');
                fixed.push(n);
            }
            Some(n) => fixed.push(n),
            None => fixed.push('\\'),
        }
    }
    json(fixed.as_bytes())
}

/// Docker Hub's webhook body.
pub fn dockerhub(body: &[u8]) -> Result<Push, TriggerError> {
    let v = lenient_json(body)?;
    let repo = v
        .get("repository")
        .filter(|r| r.is_object())
        .ok_or_else(|| bad("no `repository` object"))?;
    let push = v.get("push_data").cloned().unwrap_or(Value::Null);
    let repository = match s(repo, "repo_name") {
        Some(r) => r,
        None => match (s(repo, "namespace"), s(repo, "name")) {
            (_, Some(n)) if n.contains('/') => n,
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            // Official images: `library/<name>` on Docker Hub.
            (None, Some(n)) => format!("library/{n}"),
            _ => return Err(bad("`repository` has neither repo_name nor name")),
        },
    };
    let tag = s(&push, "tag").unwrap_or_else(|| "latest".into());
    Ok(Push {
        registry: None,
        repository,
        tag,
        digest: None,
        owner: s(repo, "owner").or_else(|| s(repo, "namespace")),
        pusher: s(&push, "pusher"),
    })
}

/// Media types of a distribution notification envelope.
pub const ENVELOPE_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
];

/// Manifest media types (blob pushes carry layer or config types).
fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type.contains("image.index")
}

/// The manifest pushes with a tag in a distribution envelope (possibly none).
pub fn envelope(body: &[u8]) -> Result<Vec<Push>, TriggerError> {
    let v = json(body)?;
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `events` list"))?;
    let mut out = Vec::new();
    for e in events {
        if e.get("action").and_then(Value::as_str) != Some("push") {
            continue;
        }
        let target = e.get("target").cloned().unwrap_or(Value::Null);
        let (Some(repository), Some(tag)) = (s(&target, "repository"), s(&target, "tag")) else {
            continue;
        };
        if !s(&target, "mediaType").is_some_and(|m| is_manifest(&m)) {
            continue;
        }
        out.push(Push {
            registry: e.get("request").and_then(|r| s(r, "host")),
            repository,
            tag,
            digest: s(&target, "digest"),
            owner: e.get("actor").and_then(|a| s(a, "name")),
            pusher: e.get("actor").and_then(|a| s(a, "name")),
        });
    }
    Ok(out)
}

/// A GitLab push or tag-push hook.
pub fn gitlab(body: &[u8]) -> Result<Push, TriggerError> {
    let v = json(body)?;
    let kind = s(&v, "object_kind").ok_or_else(|| bad("no `object_kind`"))?;
    if kind != "push" && kind != "tag_push" {
        return Err(bad(format!(
            "object_kind {kind:?}: expected push or tag_push"
        )));
    }
    let r = s(&v, "ref").ok_or_else(|| bad("no `ref`"))?;
    let tag = r.rsplit('/').next().unwrap_or(&r).to_string();
    let repository = v
        .get("project")
        .and_then(|p| s(p, "path_with_namespace"))
        .or_else(|| s(&v, "project_path"))
        .ok_or_else(|| bad("no `project.path_with_namespace`"))?
        .to_lowercase();
    Ok(Push {
        registry: None,
        owner: repository.split('/').next().map(str::to_string),
        repository,
        tag,
        digest: None,
        pusher: s(&v, "user_username"),
    })
}

/// Free-text fields (owner, pusher) are data, but bounded and printable.
const MAX_TEXT: usize = 256;

/// Checks every field of `p` against the distribution grammar (repository, tag, digest,
/// `host[:port]`); owner and pusher may hold anything printable. The error is one line
/// naming the field, with the value escaped.
pub fn validate(p: &Push) -> Result<(), TriggerError> {
    let rejected = |field: &str, value: &str, why: String| {
        TriggerError::Rejected(format!("{field} {}: {why}", printable(value)))
    };
    crate::oci::validate_repository(&p.repository)
        .map_err(|e| rejected("repository", &p.repository, e.to_string()))?;
    crate::oci::validate_tag(&p.tag).map_err(|e| rejected("tag", &p.tag, e.to_string()))?;
    if let Some(d) = &p.digest {
        crate::oci::Digest::parse(d).map_err(|e| rejected("digest", d, e.to_string()))?;
    }
    if let Some(h) = &p.registry
        && !valid_host(h)
    {
        return Err(rejected(
            "registry host",
            h,
            "expected host[:port]".to_string(),
        ));
    }
    for (field, v) in [("owner", &p.owner), ("pusher", &p.pusher)] {
        if let Some(v) = v {
            if v.chars().any(char::is_control) {
                return Err(rejected(field, v, "holds control characters".into()));
            }
            if v.len() > MAX_TEXT {
                return Err(rejected(
                    field,
                    &v[..v.floor_char_boundary(40)],
                    format!("longer than {MAX_TEXT} bytes"),
                ));
            }
        }
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]:port` as distribution's reference grammar has them.
fn valid_host(h: &str) -> bool {
    let (host, port) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                ("v6", port.strip_prefix(':'))
            }
            None => return false,
        },
        None => match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        },
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    host_ok && port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), for logs, tables and messages.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A copy of `p` safe to record and print (control characters escaped), for rejected
/// events.
pub fn printable_push(p: &Push) -> Push {
    let opt = |o: &Option<String>| o.as_deref().map(printable);
    Push {
        registry: opt(&p.registry),
        repository: printable(&p.repository),
        tag: printable(&p.tag),
        digest: opt(&p.digest),
        owner: opt(&p.owner),
        pusher: opt(&p.pusher),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let ok = Push {
            repository: "team/app".into(),
            tag: "v1".into(),
            owner: Some("{{ lookup('file', '/etc/passwd') }}".into()),
            registry: Some("127.0.0.1:5000".into()),
            ..Push::default()
        };
        validate(&ok).unwrap();
        let bad = |f: &dyn Fn(&mut Push)| {
            let mut p = ok.clone();
            f(&mut p);
            validate(&p).unwrap_err().to_string()
        };
        assert!(bad(&|p| p.repository = "team/../other/secret".into()).contains("repository"));
        assert!(bad(&|p| p.tag = "$(id)".into()).contains("tag $(id)"));
        assert!(bad(&|p| p.tag = "a\nb".into()).contains("tag a\\nb"));
        assert!(bad(&|p| p.digest = Some("sha256:1".into())).contains("digest"));
        assert!(bad(&|p| p.registry = Some("h/x:1".into())).contains("registry host"));
        assert!(bad(&|p| p.owner = Some("\u{1b}[31mred".into())).contains("\\u{1b}"));
        assert!(valid_host("[::1]:5000") && valid_host("registry-1.docker.io"));
    }

    #[test]
    fn dockerhub_old_forms() {
        let p = dockerhub(br#"{"repository":{"name":"ns/app"}}"#).unwrap();
        assert_eq!(
            (p.repository.as_str(), p.tag.as_str()),
            ("ns/app", "latest")
        );
        let p =
            dockerhub(br#"{"push_data":{"tag":"1"},"repository":{"namespace":"a","name":"b"}}"#)
                .unwrap();
        assert_eq!(p.repository, "a/b");
        assert!(dockerhub(b"{").is_err());
        let p = dockerhub(br#"{"repository":{"repo_name":"a/b","dockerfile":"[\/x\]"}}"#).unwrap();
        assert_eq!(p.repository, "a/b");
        assert!(dockerhub(b"[]").is_err());
    }

    #[test]
    fn envelope_keeps_tagged_manifest_pushes() {
        let body = br#"{"events":[
          {"action":"push","target":{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","repository":"a","digest":"sha256:1"}},
          {"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"a","digest":"sha256:2"}},
          {"action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"a","tag":"t","digest":"sha256:3"}},
          {"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"a","tag":"t","digest":"sha256:4"},"request":{"host":"h:1"}}]}"#;
        let p = envelope(body).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].digest.as_deref(), Some("sha256:4"));
        assert_eq!(p[0].registry.as_deref(), Some("h:1"));
    }
}
