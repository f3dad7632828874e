//! More of Ansible's builtin modules: `include_vars`, `lineinfile`, `tempfile`, `slurp`,
//! `setup`, `wait_for`, and `package`/`pip`/`uri`, which fail with a clear message (the
//! built-in interpreter installs nothing and talks to no web service; use
//! `--executor ansible` for playbooks that need them).
//!
//! File work is done through `tokio::fs` or `spawn_blocking`, never on the runtime.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::files::find_src;
use super::resolve;
use super::{Args, ModuleCtx, ModuleError, ModuleResult, Outcome, opt_str, req_str};
use crate::playbook::model::Files;

fn flag(m: &Map<String, Value>, k: &str, default: bool) -> bool {
    match m.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1")
        }
        _ => default,
    }
}

pub(super) async fn include_vars(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let file = match opt_str(m, "file")? {
        Some(f) => f,
        None => req_str(m, "_raw_params", "include_vars needs a file")?,
    };
    let path = find_src(&file, "vars", ctx)?;
    let loaded = tokio::task::spawn_blocking(move || {
        Files {
            project_dir: std::path::PathBuf::new(),
            role_paths: Vec::new(),
        }
        .vars(&path)
    })
    .await
    .map_err(|e| ModuleError::Args(e.to_string()))?
    .map_err(|e| ModuleError::Args(e.to_string()))?;
    let facts = match opt_str(m, "name")? {
        Some(name) => {
            let mut f = Map::new();
            f.insert(name, Value::Object(loaded));
            f
        }
        None => loaded,
    };
    let mut r = ModuleResult::ok(false).with("ansible_facts", Value::Object(facts.clone()));
    r.facts = facts;
    Ok(r)
}

pub(super) async fn slurp(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let src = match opt_str(m, "src")? {
        Some(s) => s,
        None => req_str(m, "path", "slurp needs src")?,
    };
    let path = resolve(ctx.work_dir, &src);
    let data = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(_) => return Ok(ModuleResult::fail(format!("file not found: {src}"))),
    };
    Ok(ModuleResult::ok(false)
        .with(
            "content",
            json!(base64::engine::general_purpose::STANDARD.encode(data)),
        )
        .with("encoding", json!("base64"))
        .with("source", json!(src)))
}

pub(super) async fn lineinfile(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let p = ["path", "dest", "name"]
        .iter()
        .find_map(|k| opt_str(m, k).ok().flatten())
        .ok_or_else(|| ModuleError::Args("lineinfile needs path".into()))?;
    let path = resolve(ctx.work_dir, &p);
    let present = opt_str(m, "state")?.as_deref() != Some("absent");
    let line = opt_str(m, "line")?;
    let regexp = opt_str(m, "regexp")?
        .map(|r| regex::Regex::new(&r))
        .transpose()
        .map_err(|e| ModuleError::Args(format!("lineinfile: regexp: {e}")))?;
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ModuleError::io("read", &path)(e)),
    };
    let Some(text) = text.or_else(|| (flag(m, "create", false) || !present).then(String::new))
    else {
        return Ok(
            ModuleResult::fail(format!("Destination {p} does not exist !")).with("rc", json!(257)),
        );
    };
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let bare = |l: &str| l.trim_end_matches(['\n', '\r']).to_string();
    let mut changed = false;
    let mut msg = String::new();
    if present {
        let line = line.ok_or_else(|| {
            ModuleError::Args("lineinfile: line is required with state=present".into())
        })?;
        let found = regexp
            .as_ref()
            .and_then(|re| lines.iter().rposition(|l| re.is_match(&bare(l))));
        match found {
            Some(i) => {
                if bare(&lines[i]) != line {
                    lines[i] = format!("{line}\n");
                    changed = true;
                    msg = "line replaced".into();
                }
            }
            None if lines.iter().any(|l| bare(l) == line) => {}
            None => {
                let before = opt_str(m, "insertbefore")?;
                let after = opt_str(m, "insertafter")?;
                let at = match (before.as_deref(), after.as_deref()) {
                    (Some("BOF"), _) => 0,
                    (Some(b), _) => regex::Regex::new(b)
                        .ok()
                        .and_then(|re| lines.iter().rposition(|l| re.is_match(&bare(l))))
                        .unwrap_or(lines.len()),
                    (None, Some(a)) if a != "EOF" => regex::Regex::new(a)
                        .ok()
                        .and_then(|re| lines.iter().rposition(|l| re.is_match(&bare(l))))
                        .map(|i| i + 1)
                        .unwrap_or(lines.len()),
                    _ => lines.len(),
                };
                if at == lines.len()
                    && let Some(last) = lines.last_mut()
                    && !last.ends_with('\n')
                {
                    last.push('\n');
                }
                lines.insert(at, format!("{line}\n"));
                changed = true;
                msg = "line added".into();
            }
        }
    } else {
        let before = lines.len();
        lines.retain(|l| {
            let b = bare(l);
            !(regexp.as_ref().is_some_and(|re| re.is_match(&b))
                || line.as_deref() == Some(b.as_str()))
        });
        if lines.len() != before {
            changed = true;
            msg = format!("{} line(s) removed", before - lines.len());
        }
    }
    if changed {
        tokio::fs::write(&path, lines.concat())
            .await
            .map_err(ModuleError::io("write", &path))?;
    }
    if let Some(mode) = opt_str(m, "mode")? {
        let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
            .map_err(|_| ModuleError::Args(format!("lineinfile: bad mode {mode}")))?;
        use std::os::unix::fs::PermissionsExt;
        let current = tokio::fs::metadata(&path)
            .await
            .map_err(ModuleError::io("stat", &path))?
            .permissions()
            .mode()
            & 0o7777;
        if current != mode {
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .await
                .map_err(ModuleError::io("chmod", &path))?;
            changed = true;
        }
    }
    Ok(ModuleResult::ok(changed).with("msg", json!(msg)))
}

pub(super) async fn tempfile(m: &Args, _ctx: &ModuleCtx<'_>) -> Outcome {
    let dir = opt_str(m, "path")?
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let prefix = opt_str(m, "prefix")?.unwrap_or_else(|| "ansible.".into());
    let suffix = opt_str(m, "suffix")?.unwrap_or_default();
    let directory = opt_str(m, "state")?.as_deref() == Some("directory");
    let path = tokio::task::spawn_blocking(move || -> std::io::Result<std::path::PathBuf> {
        let b = {
            let mut b = tempfile::Builder::new();
            b.prefix(&prefix).suffix(&suffix).to_owned()
        };
        Ok(if directory {
            b.tempdir_in(&dir)?.keep()
        } else {
            b.tempfile_in(&dir)?.keep().map_err(|e| e.error)?.1
        })
    })
    .await
    .map_err(|e| ModuleError::Args(e.to_string()))?
    .map_err(ModuleError::io("create", Path::new("temporary file")))?;
    Ok(ModuleResult::ok(true).with("path", json!(path.display().to_string())))
}

pub(super) fn setup(
    _m: &Map<String, Value>,
    ctx: &ModuleCtx<'_>,
) -> Result<ModuleResult, ModuleError> {
    let env: Map<String, Value> = ctx
        .vars
        .get("ansible_env")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let facts = json!({
        "system": "Linux",
        "architecture": std::env::consts::ARCH,
        "hostname": host,
        "nodename": host,
        "env": env,
        "user_dir": ctx.vars.get("ansible_user_dir").cloned().unwrap_or(json!("/")),
        "user_id": ctx.vars.get("ansible_user_id").cloned().unwrap_or(json!("")),
        "os_family": "Debian",
    });
    let mut r = ModuleResult::ok(false);
    let mut as_vars = Map::new();
    if let Value::Object(f) = &facts {
        for (k, v) in f {
            as_vars.insert(format!("ansible_{k}"), v.clone());
        }
    }
    as_vars.insert("ansible_facts".into(), facts.clone());
    r.facts = as_vars;
    Ok(r.with("ansible_facts", facts))
}

pub(super) async fn wait_for(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let num = |k: &str, d: u64| -> Result<u64, ModuleError> {
        Ok(match m.get(k) {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(d),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| ModuleError::Args(format!("wait_for: {k} must be a number")))?,
            _ => d,
        })
    };
    let timeout = Duration::from_secs(num("timeout", 300)?);
    let delay = Duration::from_secs(num("delay", 0)?);
    let sleep = Duration::from_millis(num("sleep", 1)? * 1000);
    let state = opt_str(m, "state")?.unwrap_or_else(|| "started".into());
    let path = opt_str(m, "path")?.map(|p| resolve(ctx.work_dir, &p));
    let port = num("port", 0)?;
    let host = opt_str(m, "host")?.unwrap_or_else(|| "127.0.0.1".into());
    let start = Instant::now();
    tokio::time::sleep(delay).await;
    if path.is_none() && port == 0 {
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {}
            _ = ctx.cancel.cancelled() => {}
        }
        return Ok(ModuleResult::ok(false).with("elapsed", json!(start.elapsed().as_secs())));
    }
    let want = !matches!(state.as_str(), "absent" | "stopped");
    loop {
        let here = match &path {
            Some(p) => tokio::fs::metadata(p).await.is_ok(),
            None => tokio::net::TcpStream::connect((host.as_str(), port as u16))
                .await
                .is_ok(),
        };
        if here == want {
            return Ok(ModuleResult::ok(false).with("elapsed", json!(start.elapsed().as_secs())));
        }
        if start.elapsed() >= timeout || ctx.cancel.is_cancelled() {
            let what = match &path {
                Some(p) => p.display().to_string(),
                None => format!("{host}:{port}"),
            };
            return Ok(
                ModuleResult::fail(format!("Timeout when waiting for {what}"))
                    .with("elapsed", json!(start.elapsed().as_secs())),
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep.min(Duration::from_millis(250))) => {}
            _ = ctx.cancel.cancelled() => {}
        }
    }
}

/// `package`, `pip`, `uri`: not done by the built-in interpreter.
pub(super) fn unsupported(name: &str) -> ModuleResult {
    let why = match name {
        "uri" => "does not call web services",
        _ => {
            "does not install packages (bake them into the image, or run the playbook with --executor ansible)"
        }
    };
    ModuleResult::fail(format!(
        "{name}: gantry's built-in interpreter {why}; use --executor ansible for this playbook"
    ))
}
