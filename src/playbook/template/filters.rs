//! The Ansible filters, tests and lookups added to minijinja.

use base64::Engine as _;
use minijinja::value::Value as JValue;
use minijinja::{Environment, Error as JError, ErrorKind};
use serde_json::Value;

use super::{from_json_value, to_json};
use crate::playbook::template::ansible;

pub(super) fn add_filters(env: &mut Environment<'static>) {
    fn default(v: JValue, def: Option<JValue>, boolean: Option<bool>) -> JValue {
        let empty = v.is_undefined() || (boolean.unwrap_or(false) && !v.is_true());
        if empty {
            def.unwrap_or_else(|| JValue::from(""))
        } else {
            v
        }
    }
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("from_json", |s: String| -> Result<JValue, JError> {
        serde_json::from_str::<Value>(&s)
            .map(from_json_value)
            .map_err(|e| JError::new(ErrorKind::InvalidOperation, format!("from_json: {e}")))
    });
    ansible::add(env);
    env.add_filter("from_yaml", |s: String| -> Result<JValue, JError> {
        crate::playbook::model::yaml_value(&s)
            .map(from_json_value)
            .map_err(|e| JError::new(ErrorKind::InvalidOperation, format!("from_yaml: {e}")))
    });
    env.add_filter(
        "regex_replace",
        |s: String, pat: String, rep: Option<String>| -> Result<String, JError> {
            let re = regex::Regex::new(&pat).map_err(|e| {
                JError::new(ErrorKind::InvalidOperation, format!("regex_replace: {e}"))
            })?;
            // Python's \1 backreferences → regex's ${1}.
            let rep = regex::Regex::new(r"\\(\d+)")
                .map(|r| {
                    r.replace_all(&rep.unwrap_or_default(), "$${$1}")
                        .into_owned()
                })
                .unwrap_or_default();
            Ok(re.replace_all(&s, rep.as_str()).into_owned())
        },
    );
    env.add_filter(
        "regex_search",
        |s: String, pat: String| -> Result<JValue, JError> {
            let re = regex::Regex::new(&pat).map_err(|e| {
                JError::new(ErrorKind::InvalidOperation, format!("regex_search: {e}"))
            })?;
            Ok(re
                .find(&s)
                .map(|m| JValue::from(m.as_str()))
                .unwrap_or(JValue::from(())))
        },
    );
    // Python's class name of the value. Ansible says `AnsibleUnicode`, `AnsibleSequence`,
    // `AnsibleMapping` for strings, lists and mappings read from YAML; gantry's values
    // carry no origin, so those print as `str`, `list`, `dict` (docs/zuul-compat.md).
    env.add_filter("type_debug", |v: JValue| {
        use minijinja::value::ValueKind;
        match v.kind() {
            ValueKind::Undefined => "AnsibleUndefined",
            ValueKind::None => "NoneType",
            ValueKind::Bool => "bool",
            ValueKind::Number if v.is_integer() => "int",
            ValueKind::Number => "float",
            ValueKind::String => "str",
            ValueKind::Bytes => "bytes",
            ValueKind::Seq | ValueKind::Iterable => "list",
            ValueKind::Map => "dict",
            _ => "object",
        }
        .to_string()
    });
    env.add_filter("b64encode", |s: String| {
        base64::engine::general_purpose::STANDARD.encode(s)
    });
    env.add_filter("b64decode", |s: String| -> Result<String, JError> {
        let b = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| JError::new(ErrorKind::InvalidOperation, format!("b64decode: {e}")))?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    });
    env.add_filter("dict2items", |v: JValue| -> Result<JValue, JError> {
        let Value::Object(o) = to_json(&v)? else {
            return Err(JError::new(
                ErrorKind::InvalidOperation,
                "dict2items expects a dictionary",
            ));
        };
        Ok(from_json_value(Value::Array(
            o.into_iter()
                .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                .collect(),
        )))
    });
    env.add_filter("items2dict", |v: JValue| -> Result<JValue, JError> {
        let Value::Array(a) = to_json(&v)? else {
            return Err(JError::new(
                ErrorKind::InvalidOperation,
                "items2dict expects a list",
            ));
        };
        let mut o = serde_json::Map::new();
        for item in a {
            if let (Some(k), Some(v)) =
                (item.get("key").and_then(|k| k.as_str()), item.get("value"))
            {
                o.insert(k.to_string(), v.clone());
            }
        }
        Ok(from_json_value(Value::Object(o)))
    });
    env.add_filter("basename", |s: String| {
        s.rsplit('/').next().unwrap_or("").to_string()
    });
    env.add_filter("dirname", |s: String| match s.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => s[..i].to_string(),
        None => String::new(),
    });
    env.add_filter("quote", |s: String| {
        if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b))
        {
            s
        } else {
            format!("'{}'", s.replace('\'', "'\"'\"'"))
        }
    });
    env.add_filter("mandatory", |v: JValue| -> Result<JValue, JError> {
        if v.is_undefined() {
            Err(JError::new(
                ErrorKind::UndefinedError,
                "mandatory variable not defined",
            ))
        } else {
            Ok(v)
        }
    });
    env.add_filter(
        "ternary",
        |v: JValue, a: JValue, b: JValue| if v.is_true() { a } else { b },
    );
    env.add_filter("unique", |v: JValue| -> Result<JValue, JError> {
        let Value::Array(a) = to_json(&v)? else {
            return Ok(v);
        };
        let mut out: Vec<Value> = Vec::new();
        for x in a {
            if !out.contains(&x) {
                out.push(x);
            }
        }
        Ok(from_json_value(Value::Array(out)))
    });
    env.add_filter("flatten", |v: JValue| -> Result<JValue, JError> {
        fn flat(v: Value, out: &mut Vec<Value>) {
            match v {
                Value::Array(a) => a.into_iter().for_each(|x| flat(x, out)),
                other => out.push(other),
            }
        }
        let mut out = Vec::new();
        flat(to_json(&v)?, &mut out);
        Ok(from_json_value(Value::Array(out)))
    });
    fn set_op(
        a: JValue,
        b: JValue,
        op: fn(&[Value], &[Value]) -> Vec<Value>,
    ) -> Result<JValue, JError> {
        let (Value::Array(x), Value::Array(y)) = (to_json(&a)?, to_json(&b)?) else {
            return Err(JError::new(
                ErrorKind::InvalidOperation,
                "expects two lists",
            ));
        };
        // Python's sets: each value once; small integers come out in order.
        let mut out: Vec<Value> = Vec::new();
        for v in op(&x, &y) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        if out.iter().all(|v| v.is_i64()) {
            out.sort_by_key(|v| v.as_i64().unwrap_or(0));
        }
        Ok(from_json_value(Value::Array(out)))
    }
    env.add_filter("difference", |a: JValue, b: JValue| {
        set_op(a, b, |x, y| {
            x.iter().filter(|v| !y.contains(v)).cloned().collect()
        })
    });
    env.add_filter("intersect", |a: JValue, b: JValue| {
        set_op(a, b, |x, y| {
            x.iter().filter(|v| y.contains(v)).cloned().collect()
        })
    });
    env.add_filter("union", |a: JValue, b: JValue| {
        set_op(a, b, |x, y| {
            let mut out = x.to_vec();
            out.extend(y.iter().filter(|v| !x.contains(v)).cloned());
            out
        })
    });
    env.add_test("match", |s: String, pat: String| {
        regex::Regex::new(&format!("^(?:{pat})"))
            .map(|r| r.is_match(&s))
            .unwrap_or(false)
    });
    env.add_test("search", |s: String, pat: String| {
        regex::Regex::new(&pat)
            .map(|r| r.is_match(&s))
            .unwrap_or(false)
    });
    env.add_test("regex", |s: String, pat: String| {
        regex::Regex::new(&pat)
            .map(|r| r.is_match(&s))
            .unwrap_or(false)
    });
    fn field(v: &JValue, k: &str) -> bool {
        v.get_attr(k).map(|x| x.is_true()).unwrap_or(false)
    }
    env.add_test("failed", |v: JValue| field(&v, "failed"));
    env.add_test("success", |v: JValue| !field(&v, "failed"));
    env.add_test("succeeded", |v: JValue| !field(&v, "failed"));
    env.add_test("changed", |v: JValue| field(&v, "changed"));
    env.add_test("skipped", |v: JValue| field(&v, "skipped"));
}

/// Deep merge for `combine(recursive=True)` and `zuul_return`: maps merge, the rest replaces.
pub fn merge(base: &mut Value, other: Value, recursive: bool) {
    match (base, other) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) if recursive && existing.is_object() && v.is_object() => {
                        merge(existing, v, true)
                    }
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (base, other) => *base = other,
    }
}
