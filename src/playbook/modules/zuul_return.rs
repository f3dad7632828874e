//! `zuul_return` as Zuul's action plugin documents it (`zuul/ansible/base/action/
//! zuul_return.py`): `data` and `secret_data`, `file` and `secret_file` (JSON files whose
//! contents the task's own `data`/`secret_data` are merged over), and `path`: the result
//! file to write instead of the build's, as `{"data": …, "secret_data": …}` merged with
//! what it already holds. Data written to another `path` is not returned to the build.
//!
//! File work through `tokio::fs`; the merge is Zuul's `merge_data` (mappings recursively,
//! the task's values win, `zuul.artifacts` and `zuul.warnings` concatenated, the task's
//! first).

use serde_json::{Map, Value};

use super::{Args, ModuleCtx, ModuleError, ModuleResult, Outcome, kind, opt_str, resolve};
use crate::playbook::Returned;
use crate::playbook::template::merge;

pub(super) async fn run(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let object = |key: &str| -> Result<Map<String, Value>, ModuleError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(o)) => Ok(o.clone()),
            Some(other) => Err(ModuleError::Args(format!(
                "zuul_return {key} must be a mapping, found {}",
                kind(other)
            ))),
        }
    };
    let mut data = Map::new();
    let mut secret_data = Map::new();
    for (key, target) in [("file", &mut data), ("secret_file", &mut secret_data)] {
        let Some(file) = opt_str(m, key)? else {
            continue;
        };
        let path = resolve(ctx.work_dir, &file);
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(ModuleError::io("reading", &path))?;
        let loaded: Value = serde_json::from_str(&text)
            .map_err(|e| ModuleError::Args(format!("zuul_return {key} {}: {e}", path.display())))?;
        let Value::Object(loaded) = loaded else {
            return Err(ModuleError::Args(format!(
                "zuul_return {key} {} must hold a mapping",
                path.display()
            )));
        };
        *target = loaded;
    }
    merge_data(object("data")?, &mut data);
    merge_data(object("secret_data")?, &mut secret_data);
    for d in [&data, &secret_data] {
        check_artifacts(d)?;
    }
    let mut r = ModuleResult::ok(false);
    match opt_str(m, "path")? {
        None => r.returned = Some(Returned { data, secret_data }),
        Some(p) => {
            let path = resolve(ctx.work_dir, &p);
            let (mut old_data, mut old_secret) = match tokio::fs::read_to_string(&path).await {
                Ok(text) if !text.trim().is_empty() => {
                    let v: Value = serde_json::from_str(&text).map_err(|e| {
                        ModuleError::Args(format!("zuul_return path {}: {e}", path.display()))
                    })?;
                    let part = |k: &str| match v.get(k) {
                        Some(Value::Object(o)) => o.clone(),
                        _ => Map::new(),
                    };
                    (part("data"), part("secret_data"))
                }
                _ => (Map::new(), Map::new()),
            };
            merge_data(data, &mut old_data);
            merge_data(secret_data, &mut old_secret);
            let text = serde_json::json!({"data": old_data, "secret_data": old_secret});
            tokio::fs::write(&path, text.to_string())
                .await
                .map_err(ModuleError::io("writing", &path))?;
        }
    }
    Ok(r)
}

/// Zuul's `merge_data(new, into)`.
fn merge_data(new: Map<String, Value>, into: &mut Map<String, Value>) {
    let list = |m: &Map<String, Value>, k: &str| -> Vec<Value> {
        m.get("zuul")
            .and_then(|z| z.get(k))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut lists = Vec::new();
    for k in ["artifacts", "warnings"] {
        let mut l = list(&new, k);
        l.extend(list(into, k));
        lists.push((k, l));
    }
    let mut base = Value::Object(std::mem::take(into));
    merge(&mut base, Value::Object(new), true);
    let Value::Object(mut out) = base else {
        return;
    };
    for (k, l) in lists {
        if l.is_empty() {
            continue;
        }
        if let Value::Object(z) = out
            .entry("zuul")
            .or_insert_with(|| Value::Object(Map::new()))
        {
            z.insert(k.into(), Value::Array(l));
        }
    }
    *into = out;
}

fn check_artifacts(d: &Map<String, Value>) -> Result<(), ModuleError> {
    if let Some(Value::Array(artifacts)) = d.get("zuul").and_then(|z| z.get("artifacts")) {
        for a in artifacts {
            let named = a.get("name").is_some_and(Value::is_string)
                && a.get("url").is_some_and(Value::is_string);
            if !named {
                return Err(ModuleError::Args(format!(
                    "zuul_return: an artifact needs a string name and url, found {a}"
                )));
            }
        }
    }
    Ok(())
}
