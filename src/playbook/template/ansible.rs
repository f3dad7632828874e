//! Filters and tests whose Ansible 2.16 behaviour differs from a naive one: `bool`, `int`,
//! `combine` of a list, `to_json`/`to_nice_json` (Python's separators), `to_yaml` /
//! `to_nice_yaml` (PyYAML's layout), `hash`/`checksum`, `path_join`, `splitext`,
//! `urlsplit`, and the tests `version`, `subset`, `superset`, `contains`.

use std::cmp::Ordering;

use minijinja::value::{Kwargs, Rest, Value as JValue, ValueKind};
use minijinja::{Environment, Error as JError, ErrorKind};
use serde_json::Value;

use super::{from_json_value, merge, to_json};

fn err(msg: impl Into<String>) -> JError {
    JError::new(ErrorKind::InvalidOperation, msg.into())
}

/// Python's `json.dumps`: `", "` and `": "` separators (or `","` with an indent), keys
/// optionally sorted, non-ASCII escaped.
pub(super) fn py_json(v: &Value, indent: Option<usize>, sort: bool, level: usize) -> String {
    let pad = |l: usize| indent.map(|i| " ".repeat(i * l)).unwrap_or_default();
    let (open_nl, sep) = match indent {
        Some(_) => ("\n", ",\n"),
        None => ("", ", "),
    };
    match v {
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Array(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| format!("{}{}", pad(level + 1), py_json(x, indent, sort, level + 1)))
                .collect();
            format!("[{open_nl}{}{open_nl}{}]", items.join(sep), pad(level))
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            if sort {
                keys.sort();
            }
            let items: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}{}: {}",
                        pad(level + 1),
                        ascii_json(&Value::String((*k).clone())),
                        py_json(&o[*k], indent, sort, level + 1)
                    )
                })
                .collect();
            format!("{{{open_nl}{}{open_nl}{}}}", items.join(sep), pad(level))
        }
        other => ascii_json(other),
    }
}

fn ascii_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// PyYAML's `dump` of a scalar (plain when it reads back the same, else single-quoted).
fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let special = s.is_empty()
                || s.trim() != s
                || s.contains(": ")
                || s.contains(" #")
                || s.contains('\n')
                || s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c))
                || s.ends_with(':')
                || matches!(
                    s.to_ascii_lowercase().as_str(),
                    "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "~" | "y" | "n"
                )
                || s.parse::<f64>().is_ok();
            if special {
                format!("'{}'", s.replace('\'', "''"))
            } else {
                s.clone()
            }
        }
        other => py_json(other, None, false, 0),
    }
}

fn yaml_flow(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(yaml_flow).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, x)| format!(
                    "{}: {}",
                    yaml_scalar(&Value::String(k.clone())),
                    yaml_flow(x)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => yaml_scalar(other),
    }
}

fn is_leaf_collection(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().all(|x| !x.is_array() && !x.is_object()),
        Value::Object(o) => o.values().all(|x| !x.is_array() && !x.is_object()),
        _ => true,
    }
}

/// PyYAML's block layout: `flow_leaves` (to_yaml's `default_flow_style=None`) writes
/// collections of scalars in flow style; keys sorted as PyYAML does by default.
fn yaml_block(v: &Value, indent: usize, flow_leaves: bool, level: usize, out: &mut String) {
    let pad = " ".repeat(indent * level);
    match v {
        Value::Object(o) if !o.is_empty() => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            for k in keys {
                let x = &o[k];
                let key = yaml_scalar(&Value::String(k.clone()));
                let nested = matches!(x, Value::Object(m) if !m.is_empty())
                    || matches!(x, Value::Array(a) if !a.is_empty());
                if nested && !(flow_leaves && is_leaf_collection(x)) {
                    out.push_str(&format!("{pad}{key}:\n"));
                    // PyYAML does not indent a list under a mapping key.
                    let l = if x.is_array() { level } else { level + 1 };
                    yaml_block(x, indent, flow_leaves, l, out);
                } else {
                    out.push_str(&format!("{pad}{key}: {}\n", yaml_flow(x)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for x in a {
                let nested = matches!(x, Value::Object(m) if !m.is_empty())
                    || matches!(x, Value::Array(a) if !a.is_empty());
                if nested && !(flow_leaves && is_leaf_collection(x)) {
                    let mut inner = String::new();
                    yaml_block(x, indent, flow_leaves, 0, &mut inner);
                    let inner_pad = " ".repeat(indent * level + 2);
                    for (i, line) in inner.lines().enumerate() {
                        if i == 0 {
                            out.push_str(&format!("{pad}- {line}\n"));
                        } else {
                            out.push_str(&format!("{inner_pad}{line}\n"));
                        }
                    }
                } else {
                    out.push_str(&format!("{pad}- {}\n", yaml_flow(x)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", yaml_flow(other))),
    }
}

pub(super) fn to_yaml(v: &Value, indent: usize, flow_leaves: bool) -> String {
    if flow_leaves && is_leaf_collection(v) && (v.is_array() || v.is_object()) {
        return format!("{}\n", yaml_flow(v));
    }
    if !v.is_array() && !v.is_object() {
        return format!("{}\n", yaml_flow(v));
    }
    let mut out = String::new();
    yaml_block(v, indent, flow_leaves, 0, &mut out);
    out
}

/// Ansible's `bool`: true only for `yes`, `on`, `1`, `true` (any case) and `1`.
fn to_bool(v: &JValue) -> bool {
    match v.kind() {
        ValueKind::Bool => v.is_true(),
        ValueKind::String => matches!(
            v.as_str()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
                .as_str(),
            "yes" | "on" | "1" | "true"
        ),
        ValueKind::Number => to_json(v).ok().and_then(|n| n.as_f64()) == Some(1.0),
        _ => false,
    }
}

fn version_cmp(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.trim_start_matches('v')
            .split(['.', '-', '+'])
            .map(|p| {
                let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                (digits.parse().unwrap_or(0), p[digits.len()..].to_string())
            })
            .collect()
    };
    // LooseVersion: component by component; a prefix is smaller (`2.0` < `2.0.0`).
    parts(a).cmp(&parts(b))
}

fn digest(kind: &str, data: &[u8]) -> Result<String, JError> {
    use sha2::Digest as _;
    Ok(match kind {
        "sha1" => hex::encode(<sha1::Sha1 as sha1::Digest>::digest(data)),
        "md5" => hex::encode(<md5::Md5 as md5::Digest>::digest(data)),
        "sha256" => hex::encode(sha2::Sha256::digest(data)),
        "sha512" => hex::encode(sha2::Sha512::digest(data)),
        "sha384" => hex::encode(sha2::Sha384::digest(data)),
        "sha224" => hex::encode(sha2::Sha224::digest(data)),
        other => return Err(err(format!("hash: unsupported hash type {other}"))),
    })
}

pub(super) fn add(env: &mut Environment<'static>) {
    env.add_filter("bool", |v: JValue| to_bool(&v));
    env.add_filter("int", |v: JValue, kw: Kwargs| -> Result<i64, JError> {
        let base: Option<u32> = kw.get("base")?;
        let default: Option<i64> = kw.get("default")?;
        let d = default.unwrap_or(0);
        Ok(match v.kind() {
            ValueKind::Bool => i64::from(v.is_true()),
            ValueKind::Number => to_json(&v)?.as_f64().map(|f| f as i64).unwrap_or(d),
            ValueKind::String => {
                let s = v.as_str().unwrap_or("").trim();
                match base {
                    Some(b) => {
                        let t = s.trim_start_matches("0x").trim_start_matches("0X");
                        let t = if b == 2 {
                            s.trim_start_matches("0b")
                        } else if b == 8 {
                            s.trim_start_matches("0o")
                        } else {
                            t
                        };
                        i64::from_str_radix(t, b).unwrap_or(d)
                    }
                    None => s
                        .parse::<i64>()
                        .ok()
                        .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
                        .unwrap_or(d),
                }
            }
            _ => d,
        })
    });
    env.add_filter(
        "combine",
        |base: JValue, rest: Rest<JValue>, kwargs: Kwargs| -> Result<JValue, JError> {
            let recursive: Option<bool> = kwargs.get("recursive")?;
            let _: Option<String> = kwargs.get("list_merge")?;
            let mut dicts: Vec<Value> = Vec::new();
            for v in std::iter::once(&base).chain(rest.iter()) {
                match to_json(v)? {
                    Value::Array(a) => dicts.extend(a),
                    other => dicts.push(other),
                }
            }
            let mut out = Value::Object(Default::default());
            for d in dicts {
                if !d.is_object() {
                    return Err(err(format!("combine expects dictionaries, got {d}")));
                }
                merge(&mut out, d, recursive.unwrap_or(false));
            }
            Ok(from_json_value(out))
        },
    );
    env.add_filter(
        "to_json",
        |v: JValue, kw: Kwargs| -> Result<String, JError> {
            let indent: Option<usize> = kw.get("indent")?;
            let sort: Option<bool> = kw.get("sort_keys")?;
            Ok(py_json(&to_json(&v)?, indent, sort.unwrap_or(false), 0))
        },
    );
    env.add_filter(
        "to_nice_json",
        |v: JValue, kw: Kwargs| -> Result<String, JError> {
            let indent: Option<usize> = kw.get("indent")?;
            Ok(py_json(&to_json(&v)?, Some(indent.unwrap_or(4)), true, 0))
        },
    );
    env.add_filter(
        "to_yaml",
        |v: JValue, kw: Kwargs| -> Result<String, JError> {
            let indent: Option<usize> = kw.get("indent")?;
            Ok(to_yaml(&to_json(&v)?, indent.unwrap_or(2), true))
        },
    );
    env.add_filter(
        "to_nice_yaml",
        |v: JValue, kw: Kwargs| -> Result<String, JError> {
            let indent: Option<usize> = kw.get("indent")?;
            Ok(to_yaml(&to_json(&v)?, indent.unwrap_or(4), false))
        },
    );
    env.add_filter("hash", |s: String, kind: Option<String>| {
        digest(kind.as_deref().unwrap_or("sha1"), s.as_bytes())
    });
    env.add_filter("checksum", |s: String| digest("sha1", s.as_bytes()));
    env.add_filter("md5", |s: String| digest("md5", s.as_bytes()));
    env.add_filter("sha1", |s: String| digest("sha1", s.as_bytes()));
    env.add_filter("path_join", |v: JValue| -> Result<String, JError> {
        let parts: Vec<String> = match v.as_str() {
            Some(s) => vec![s.to_string()],
            None => v.try_iter()?.map(|x| x.to_string()).collect(),
        };
        let mut out = String::new();
        for p in parts {
            if p.starts_with('/') || out.is_empty() {
                out = p;
            } else if out.ends_with('/') {
                out.push_str(&p);
            } else {
                out = format!("{out}/{p}");
            }
        }
        Ok(out)
    });
    env.add_filter("splitext", |s: String| {
        let base_start = s.rfind('/').map(|i| i + 1).unwrap_or(0);
        let name = &s[base_start..];
        let dot = name
            .rfind('.')
            .filter(|&i| name[..i].chars().any(|c| c != '.'));
        let (a, b) = match dot {
            Some(i) => (
                s[..base_start + i].to_string(),
                s[base_start + i..].to_string(),
            ),
            None => (s.clone(), String::new()),
        };
        JValue::from(vec![JValue::from(a), JValue::from(b)])
    });
    env.add_filter(
        "urlsplit",
        |s: String, part: Option<String>| -> Result<JValue, JError> {
            let u = url::Url::parse(&s).map_err(|e| err(format!("urlsplit: {e}")))?;
            let netloc = match (u.username(), u.password()) {
                ("", None) => String::new(),
                (user, None) => format!("{user}@"),
                (user, Some(p)) => format!("{user}:{p}@"),
            } + u.host_str().unwrap_or("")
                + &u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let fields: Vec<(&str, JValue)> = vec![
                ("fragment", JValue::from(u.fragment().unwrap_or(""))),
                ("hostname", JValue::from(u.host_str().unwrap_or(""))),
                ("netloc", JValue::from(netloc)),
                (
                    "password",
                    u.password().map(JValue::from).unwrap_or(JValue::from(())),
                ),
                ("path", JValue::from(u.path())),
                (
                    "port",
                    u.port().map(JValue::from).unwrap_or(JValue::from(())),
                ),
                ("query", JValue::from(u.query().unwrap_or(""))),
                ("scheme", JValue::from(u.scheme())),
                (
                    "username",
                    if u.username().is_empty() {
                        JValue::from(())
                    } else {
                        JValue::from(u.username())
                    },
                ),
            ];
            Ok(match part {
                Some(p) => fields
                    .into_iter()
                    .find(|(k, _)| *k == p)
                    .map(|(_, v)| v)
                    .ok_or_else(|| err(format!("urlsplit: unknown URL component: {p}")))?,
                None => JValue::from_iter(fields),
            })
        },
    );
    env.add_test(
        "version",
        |a: JValue, b: JValue, op: Option<String>, kw: Kwargs| -> Result<bool, JError> {
            let _: Option<bool> = kw.get("strict")?;
            let _: Option<String> = kw.get("version_type")?;
            let o = version_cmp(&a.to_string(), &b.to_string());
            Ok(match op.as_deref().unwrap_or("eq") {
                "<" | "lt" => o == Ordering::Less,
                "<=" | "le" => o != Ordering::Greater,
                ">" | "gt" => o == Ordering::Greater,
                ">=" | "ge" => o != Ordering::Less,
                "==" | "=" | "eq" => o == Ordering::Equal,
                "!=" | "<>" | "ne" => o != Ordering::Equal,
                other => return Err(err(format!("version: invalid operator {other}"))),
            })
        },
    );
    env.add_test(
        "version_compare",
        |a: JValue, b: JValue, op: Option<String>| {
            let o = version_cmp(&a.to_string(), &b.to_string());
            match op.as_deref().unwrap_or("eq") {
                "<" | "lt" => o == Ordering::Less,
                "<=" | "le" => o != Ordering::Greater,
                ">" | "gt" => o == Ordering::Greater,
                ">=" | "ge" => o != Ordering::Less,
                "!=" | "<>" | "ne" => o != Ordering::Equal,
                _ => o == Ordering::Equal,
            }
        },
    );
    fn list(v: &JValue) -> Result<Vec<Value>, JError> {
        match to_json(v)? {
            Value::Array(a) => Ok(a),
            other => Ok(vec![other]),
        }
    }
    env.add_test("subset", |a: JValue, b: JValue| -> Result<bool, JError> {
        let (x, y) = (list(&a)?, list(&b)?);
        Ok(x.iter().all(|v| y.contains(v)))
    });
    env.add_test("superset", |a: JValue, b: JValue| -> Result<bool, JError> {
        let (x, y) = (list(&a)?, list(&b)?);
        Ok(y.iter().all(|v| x.contains(v)))
    });
    env.add_test("contains", |a: JValue, b: JValue| -> Result<bool, JError> {
        Ok(list(&a)?.contains(&to_json(&b)?))
    });
}
