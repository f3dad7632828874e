//! What a job runs with: its playbook lists (`pre-run`, `run`, `post-run`, `cleanup-run`),
//! its variable mappings (`vars`, `extra-vars`, `host-vars`, `group-vars`) and its
//! `secrets` — parsed for the `job` stanza (`super::job`).
//!
//! Must not: look at other stanzas (a secret's existence is checked in `validate`).

use serde::Serialize;

use super::Loc;
use super::check::{Checker, is_var_name};
use crate::text::yaml::{Node, Value};

/// A playbook entry: a path, or `{name, cleanup, semaphores}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlaybookDef {
    pub path: String,
    /// A post-run playbook that also runs after failure or cancellation.
    pub cleanup: bool,
    pub semaphores: Vec<String>,
    pub loc: Loc,
}

/// A secret bound to a job definition: `secret` is the stanza name, `name` the variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretUse {
    pub secret: String,
    pub name: String,
    pub pass_to_parent: bool,
    pub loc: Loc,
}

/// A variables mapping (`vars`, `extra-vars`, …) with its `!override` choice.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vars {
    pub map: serde_json::Map<String, serde_json::Value>,
    pub override_: bool,
}

pub(super) fn playbooks(
    ck: &mut Checker<'_>,
    node: &Node,
    attr: &str,
    post_run: bool,
) -> Vec<PlaybookDef> {
    ck.no_tag(node, attr);
    let mut out = vec![];
    for item in ck.items(node) {
        match &item.value {
            Value::Str(path) => out.push(PlaybookDef {
                path: path.clone(),
                cleanup: false,
                semaphores: vec![],
                loc: ck.loc(item.mark),
            }),
            Value::Map(_) => {
                let allowed: &[&str] = if post_run {
                    &["name", "cleanup", "semaphores"]
                } else {
                    &["name", "semaphores"]
                };
                let Some(fields) = ck.fields(item, &format!("a {attr} playbook"), allowed) else {
                    continue;
                };
                let mut pb = PlaybookDef {
                    path: String::new(),
                    cleanup: false,
                    semaphores: vec![],
                    loc: ck.loc(item.mark),
                };
                for (k, _, fv) in fields {
                    match k {
                        "name" => pb.path = ck.string(fv, "name").unwrap_or_default(),
                        "cleanup" => pb.cleanup = ck.boolean(fv, "cleanup").unwrap_or(false),
                        _ => pb.semaphores = ck.strings(fv, "semaphores"),
                    }
                }
                if pb.path.is_empty() {
                    ck.error(item.mark, format!("a {attr} playbook needs a \"name\""));
                } else {
                    out.push(pb);
                }
            }
            _ => ck.error(
                item.mark,
                format!(
                    "\"{attr}\" must be a playbook path or a list of them, found {}",
                    item.kind()
                ),
            ),
        }
    }
    out
}

pub(super) fn vars(ck: &mut Checker<'_>, node: &Node, attr: &str) -> Option<Vars> {
    let override_ = ck.override_tag(node, attr) == Some(true);
    let map = ck.vars(node, attr)?;
    if attr != "host-vars"
        && attr != "group-vars"
        && (map.contains_key("zuul") || map.contains_key("nodepool"))
    {
        ck.error(
            node.mark,
            "Variables named 'zuul' or 'nodepool' are not allowed.",
        );
    }
    Some(Vars { map, override_ })
}

pub(super) fn secrets(ck: &mut Checker<'_>, node: &Node) -> Vec<SecretUse> {
    ck.no_tag(node, "secrets");
    let mut out: Vec<SecretUse> = vec![];
    for item in ck.items(node) {
        let loc = ck.loc(item.mark);
        let dict_form = matches!(item.value, Value::Map(_));
        let use_ = match &item.value {
            Value::Str(s) => SecretUse {
                secret: s.clone(),
                name: s.clone(),
                pass_to_parent: false,
                loc,
            },
            Value::Map(_) => {
                let allowed = ["name", "secret", "pass-to-parent"];
                let Some(fields) = ck.fields(item, "a secret use", &allowed) else {
                    continue;
                };
                let (mut name, mut secret, mut ptp) = (None, None, false);
                for (k, _, fv) in fields {
                    match k {
                        "name" => name = ck.string(fv, "name"),
                        "secret" => secret = ck.string(fv, "secret"),
                        _ => ptp = ck.boolean(fv, "pass-to-parent").unwrap_or(false),
                    }
                }
                match (name, secret) {
                    (Some(name), Some(secret)) => SecretUse {
                        secret,
                        name,
                        pass_to_parent: ptp,
                        loc,
                    },
                    _ => {
                        ck.error(item.mark, "a secret use needs \"name\" and \"secret\"");
                        continue;
                    }
                }
            }
            _ => {
                ck.error(
                    item.mark,
                    format!(
                        "\"secrets\" must list secret names or mappings, found {}",
                        item.kind()
                    ),
                );
                continue;
            }
        };
        if dict_form && !is_var_name(&use_.name) {
            ck.error(
                item.mark,
                format!("secret name \"{}\" is not a valid variable name", use_.name),
            );
        } else if use_.name == "zuul" || use_.name == "nodepool" {
            ck.error(
                item.mark,
                "Variables named 'zuul' or 'nodepool' are not allowed.",
            );
        } else if out.iter().any(|s| s.name == use_.name) {
            ck.error(
                item.mark,
                format!("secret name \"{}\" is used twice", use_.name),
            );
        }
        out.push(use_);
    }
    out
}
