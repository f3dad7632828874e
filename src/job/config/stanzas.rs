//! The smaller stanzas: `secret`, `nodeset`, `semaphore`, `pipeline`, `queue`, `pragma`,
//! and the launcher stanzas gantry accepts without acting on them.
//!
//! Owns: their shape checks. Must not: decrypt anything — an encrypted leaf is kept as its
//! base64 chunks and only checked to *be* base64 (see `job::secrets` for decryption).

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;

use super::check::Checker;
use super::{Loc, Source};
use crate::text::yaml::{Node, Tag, Value};

/// A stanza kept as written (nodesets, semaphores, pipelines, …).
#[derive(Clone, Debug, Serialize)]
pub struct NamedStanza {
    pub kind: String,
    pub name: String,
    pub loc: Loc,
    pub raw: serde_json::Value,
}

/// A `secret` stanza: its data tree with encrypted leaves still encrypted.
#[derive(Debug)]
pub struct SecretDef {
    pub name: String,
    pub loc: Loc,
    pub source: Arc<Source>,
    pub data: SecretValue,
}

/// A secret's data, as written.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretValue {
    Plain(serde_json::Value),
    /// `!encrypted/pkcs1-oaep`: base64 chunks (whitespace from line folding removed).
    Encrypted(Vec<String>),
    List(Vec<SecretValue>),
    Map(Vec<(String, SecretValue)>),
}

impl SecretValue {
    /// True if any leaf is encrypted (then the secret needs the project's private key).
    pub fn is_encrypted(&self) -> bool {
        match self {
            SecretValue::Plain(_) => false,
            SecretValue::Encrypted(_) => true,
            SecretValue::List(items) => items.iter().any(SecretValue::is_encrypted),
            SecretValue::Map(entries) => entries.iter().any(|(_, v)| v.is_encrypted()),
        }
    }
}

pub(crate) fn parse_secret(
    ck: &mut Checker<'_>,
    node: &Node,
    source: &Arc<Source>,
) -> Option<SecretDef> {
    let fields = ck.fields(node, "a secret", &["name", "data", "oidc"])?;
    let mut name = None;
    let mut data = None;
    for (key, _, v) in &fields {
        match *key {
            "name" => {
                name = ck.string(v, "name");
                if let Some(n) = &name {
                    ck.stanza = format!("secret \"{n}\"");
                }
            }
            "data" => {
                if !matches!(v.value, Value::Map(_)) {
                    ck.error(
                        v.mark,
                        format!("\"data\" must be a mapping, found {}", v.kind()),
                    );
                } else {
                    data = Some(secret_value(ck, v, "data"));
                }
            }
            _ => {
                ck.error(
                    v.mark,
                    "oidc secrets are not supported by gantry (use \"data\")",
                );
            }
        }
    }
    let Some(name) = name else {
        ck.error(node.mark, "a secret needs a \"name\"");
        return None;
    };
    let Some(data) = data else {
        if !fields.iter().any(|(k, _, _)| *k == "oidc") {
            ck.error(node.mark, "a secret needs \"data\"");
        }
        return None;
    };
    Some(SecretDef {
        name,
        loc: ck.loc(node.mark),
        source: source.clone(),
        data,
    })
}

fn secret_value(ck: &mut Checker<'_>, node: &Node, path: &str) -> SecretValue {
    if node.tag == Some(Tag::Encrypted) {
        let mut chunks = vec![];
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        for (i, item) in items.into_iter().enumerate() {
            let Some(text) = item.as_str() else {
                ck.error(
                    item.mark,
                    format!(
                        "encrypted chunk {} of \"{path}\" must be a string, found {}",
                        i + 1,
                        item.kind()
                    ),
                );
                continue;
            };
            // zuul-client wraps chunks over several lines; YAML folds them with spaces.
            let chunk: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            if base64::engine::general_purpose::STANDARD
                .decode(&chunk)
                .is_err()
            {
                ck.error(
                    item.mark,
                    format!(
                        "encrypted chunk {} of \"{path}\" is not valid base64",
                        i + 1
                    ),
                );
                continue;
            }
            chunks.push(chunk);
        }
        return SecretValue::Encrypted(chunks);
    }
    if let Some(tag) = &node.tag {
        ck.error(
            node.mark,
            format!("the {tag} tag is not allowed in secret data"),
        );
    }
    match &node.value {
        Value::Seq(items) => SecretValue::List(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| secret_value(ck, n, &format!("{path}[{i}]")))
                .collect(),
        ),
        Value::Map(entries) => SecretValue::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = k.key_text();
                    let child = secret_value(ck, v, &format!("{path}.{key}"));
                    (key, child)
                })
                .collect(),
        ),
        _ => SecretValue::Plain(node.to_json()),
    }
}

/// A stanza gantry keeps as written; `name` is required where Zuul requires it.
pub(crate) fn parse_named(
    ck: &mut Checker<'_>,
    kind: &str,
    node: &Node,
    allowed: Option<&[&str]>,
    name_required: bool,
) -> Option<NamedStanza> {
    match allowed {
        Some(allowed) => {
            ck.fields(node, &format!("a {kind}"), allowed)?;
        }
        None if !matches!(node.value, Value::Map(_)) => {
            ck.error(
                node.mark,
                format!("a {kind} must be a mapping, found {}", node.kind()),
            );
            return None;
        }
        None => {}
    }
    let Value::Map(entries) = &node.value else {
        return None;
    };
    let name = match entries.iter().find(|(k, _)| k.as_str() == Some("name")) {
        Some((_, v)) => {
            let name = ck.scalar_text(v, "name")?;
            ck.stanza = format!("{kind} \"{name}\"");
            name
        }
        None if name_required => {
            ck.error(node.mark, format!("a {kind} needs a \"name\""));
            return None;
        }
        None => String::new(),
    };
    Some(NamedStanza {
        kind: kind.to_string(),
        name,
        loc: ck.loc(node.mark),
        raw: node.to_json(),
    })
}

pub(crate) const NODESET_KEYS: &[&str] = &["name", "nodes", "groups", "alternatives"];
pub(crate) const SEMAPHORE_KEYS: &[&str] = &["name", "max"];
pub(crate) const QUEUE_KEYS: &[&str] = &[
    "name",
    "per-branch",
    "allow-circular-dependencies",
    "dependencies-by-topic",
];
pub(crate) const PRAGMA_KEYS: &[&str] = &["implied-branch-matchers", "implied-branches"];
