//! Lookups (`lookup()`, `query()`/`q()`) and `now()`: `env`, `file`, `pipe`, `vars`,
//! `template`, `fileglob`, `first_found`.
//!
//! Relative files are searched as Ansible does: the role's `files/` (`templates/` for
//! `template`) and the role directory, then the playbook's. The file reads and `pipe` run
//! through [`blocking`], so a lookup never blocks an async worker thread.

use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Rest, Value as JValue};
use minijinja::{Environment, Error as JError, ErrorKind, State};

/// The name under which the variable scope hands itself to lookups.
pub(super) const SCOPE: &str = "__gantry_scope__";

fn err(msg: String) -> JError {
    JError::new(ErrorKind::InvalidOperation, msg)
}

/// Runs blocking I/O: on a multi-threaded tokio runtime via `block_in_place` (the worker
/// hands its other tasks away first), elsewhere directly.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn var_str(state: &State, name: &str) -> Option<String> {
    state
        .lookup(name)
        .filter(|v| !v.is_undefined() && !v.is_none())
        .map(|v| v.to_string())
}

/// Where relative files are looked for, for `sub` (`files` or `templates`).
fn search_path(state: &State, sub: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for base in ["role_path", "playbook_dir"] {
        if let Some(d) = var_str(state, base) {
            dirs.push(Path::new(&d).join(sub));
            dirs.push(PathBuf::from(d));
        }
    }
    dirs.push(PathBuf::from("."));
    dirs
}

fn find(state: &State, sub: &str, name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return blocking(|| p.exists()).then(|| p.to_path_buf());
    }
    search_path(state, sub)
        .into_iter()
        .map(|d| d.join(p))
        .find(|c| blocking(|| c.exists()))
}

fn read(state: &State, sub: &str, name: &str) -> Result<String, JError> {
    let path = find(state, sub, name)
        .ok_or_else(|| err(format!("could not locate file in lookup: {name}")))?;
    blocking(|| std::fs::read_to_string(&path))
        .map_err(|e| err(format!("lookup: {}: {e}", path.display())))
}

/// `*` and `?` in the last path component (what playbooks use).
fn glob(state: &State, pattern: &str) -> Vec<String> {
    let p = Path::new(pattern);
    let (dir, name) = (
        p.parent().unwrap_or(Path::new("")),
        p.file_name().and_then(|n| n.to_str()).unwrap_or(""),
    );
    let re = regex::escape(name).replace("\\*", ".*").replace("\\?", ".");
    let Ok(re) = regex::Regex::new(&format!("^{re}$")) else {
        return Vec::new();
    };
    let bases: Vec<PathBuf> = if dir.is_absolute() {
        vec![dir.to_path_buf()]
    } else {
        search_path(state, "files")
            .into_iter()
            .map(|d| d.join(dir))
            .collect()
    };
    for base in bases {
        let found: Vec<String> = blocking(|| {
            let mut v: Vec<String> = std::fs::read_dir(&base)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_file())
                .filter(|e| e.file_name().to_str().is_some_and(|n| re.is_match(n)))
                .map(|e| e.path().display().to_string())
                .collect();
            v.sort();
            v
        });
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// One lookup: its results as a list.
fn run(state: &State, kind: &str, args: &[JValue]) -> Result<Vec<JValue>, JError> {
    let mut terms: Vec<JValue> = Vec::new();
    for a in args {
        match a.as_str() {
            Some(_) => terms.push(a.clone()),
            None => match a.try_iter() {
                Ok(it) => terms.extend(it),
                Err(_) => terms.push(a.clone()),
            },
        }
    }
    let strs: Vec<String> = terms.iter().map(|t| t.to_string()).collect();
    Ok(match kind {
        "env" => strs
            .iter()
            .map(|n| JValue::from(std::env::var(n).unwrap_or_default()))
            .collect(),
        "file" => strs
            .iter()
            .map(|n| read(state, "files", n).map(|s| JValue::from(s.trim_end().to_string())))
            .collect::<Result<_, _>>()?,
        "pipe" => strs
            .iter()
            .map(|cmd| {
                let out = blocking(|| {
                    std::process::Command::new("/bin/sh")
                        .arg("-c")
                        .arg(cmd)
                        .stdin(std::process::Stdio::null())
                        .output()
                })
                .map_err(|e| err(format!("lookup('pipe', {cmd:?}): {e}")))?;
                if !out.status.success() {
                    return Err(err(format!(
                        "lookup('pipe', {cmd:?}) returned {}",
                        out.status.code().unwrap_or(-1)
                    )));
                }
                Ok(JValue::from(
                    String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
                ))
            })
            .collect::<Result<_, _>>()?,
        "vars" => strs
            .iter()
            .map(|n| match state.lookup(n) {
                Some(v) if !v.is_undefined() => Ok(v),
                _ => Err(JError::new(
                    ErrorKind::UndefinedError,
                    format!("No variable found with this name: {n}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        "template" => {
            let scope = state.lookup(SCOPE).unwrap_or_default();
            strs.iter()
                .map(|n| {
                    let text = read(state, "templates", n)?;
                    state
                        .env()
                        .render_str(&super::percent::template(&text), scope.clone())
                        .map(JValue::from)
                })
                .collect::<Result<_, _>>()?
        }
        "fileglob" => strs
            .iter()
            .flat_map(|p| glob(state, p))
            .map(JValue::from)
            .collect(),
        "first_found" => {
            let found = strs.iter().find_map(|n| find(state, "files", n));
            match found {
                Some(p) => vec![JValue::from(p.display().to_string())],
                None => {
                    return Err(err(format!(
                        "No file was found when using first_found: {}",
                        strs.join(", ")
                    )));
                }
            }
        }
        other => {
            return Err(err(format!(
                "lookup plugin '{other}' not found (supported: env, file, pipe, vars, template, fileglob, first_found)"
            )));
        }
    })
}

pub(super) fn add(env: &mut Environment<'static>) {
    env.add_function(
        "lookup",
        |state: &State, kind: String, args: Rest<JValue>, kw: Kwargs| -> Result<JValue, JError> {
            let wantlist: Option<bool> = kw.get("wantlist")?;
            let _: Option<JValue> = kw.get("errors")?;
            let out = run(state, &kind, &args)?;
            if wantlist.unwrap_or(false) {
                return Ok(JValue::from(out));
            }
            Ok(match out.len() {
                1 => out.into_iter().next().unwrap_or_default(),
                _ if out.iter().all(|v| v.as_str().is_some()) => JValue::from(
                    out.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => JValue::from(out),
            })
        },
    );
    let query = |state: &State, kind: String, args: Rest<JValue>| -> Result<JValue, JError> {
        Ok(JValue::from(run(state, &kind, &args)?))
    };
    env.add_function("query", query);
    env.add_function("q", query);
    env.add_function("now", |kw: Kwargs| -> Result<JValue, JError> {
        let utc: Option<bool> = kw.get("utc")?;
        let fmt: Option<String> = kw.get("fmt")?;
        let _ = utc;
        let t = jiff::Timestamp::now();
        let now = t.as_second();
        let dt = jiff::tz::Offset::UTC.to_datetime(t);
        let (y, mo, d) = (i64::from(dt.year()), dt.month(), dt.day());
        let (h, mi, s) = (dt.hour(), dt.minute(), dt.second());
        let iso = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
        Ok(match fmt {
            Some(f) => JValue::from(
                f.replace("%Y", &format!("{y:04}"))
                    .replace("%m", &format!("{mo:02}"))
                    .replace("%d", &format!("{d:02}"))
                    .replace("%H", &format!("{h:02}"))
                    .replace("%M", &format!("{mi:02}"))
                    .replace("%S", &format!("{s:02}"))
                    .replace("%s", &now.to_string()),
            ),
            None => JValue::from_iter([
                ("year", JValue::from(y)),
                ("month", JValue::from(mo)),
                ("day", JValue::from(d)),
                ("hour", JValue::from(h)),
                ("minute", JValue::from(mi)),
                ("second", JValue::from(s)),
                ("epoch", JValue::from(now)),
                ("iso", JValue::from(iso)),
            ]),
        })
    });
}
