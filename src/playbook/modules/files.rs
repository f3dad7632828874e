//! The file modules: `copy`, `template`, `file`, `stat`.
//!
//! Owns: reading, writing and inspecting files for a task, reporting `changed` only when
//! something on disk changed, and modes (`0644`, `"0755"`, or PyYAML's integer reading of
//! an unquoted octal). Relative destinations are under the task's work directory; a
//! relative `src` is searched for in the role's and the playbook's `files/` (`copy`) or
//! `templates/` (`template`) directories first. Must not: change ownership (tasks run as
//! the user running gantry; `owner`/`group` are accepted and ignored) or follow a
//! symbolic link when deleting.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::mode::{FileMode, mode, symbolic, umask};
use super::{
    Args, ModuleCtx, ModuleError, ModuleResult, Outcome, opt_bool, opt_str, req_path, req_str,
    resolve,
};

fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// Sets the mode when it differs; whether it did.
async fn apply_mode(path: &Path, mode: Option<&FileMode>) -> Result<bool, ModuleError> {
    let Some(mode) = mode else { return Ok(false) };
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(ModuleError::io("reading", path))?;
    let current = meta.permissions().mode() & 0o7777;
    let wanted = match mode {
        FileMode::Octal(m) => *m,
        FileMode::Symbolic(s) => {
            symbolic(current, meta.is_dir(), umask(), s).map_err(ModuleError::Args)?
        }
    };
    if current == wanted {
        return Ok(false);
    }
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))
        .await
        .map_err(ModuleError::io("setting the mode of", path))?;
    Ok(true)
}

/// Writes `content` to `dest` unless it already holds exactly that; whether it wrote.
async fn write_if_changed(dest: &Path, content: &[u8]) -> Result<bool, ModuleError> {
    if let Ok(existing) = tokio::fs::read(dest).await
        && existing == content
    {
        return Ok(false);
    }
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(ModuleError::io("creating", parent))?;
    }
    tokio::fs::write(dest, content)
        .await
        .map_err(ModuleError::io("writing", dest))?;
    Ok(true)
}

/// Finds a relative `src` of `copy` (`sub = "files"`) or `template` (`"templates"`).
pub(super) fn find_src(src: &str, sub: &str, ctx: &ModuleCtx<'_>) -> Result<PathBuf, ModuleError> {
    let p = Path::new(src);
    if p.is_absolute() || src.starts_with('~') {
        return Ok(resolve(ctx.work_dir, src));
    }
    let mut tried = Vec::new();
    for base in ctx.search {
        for candidate in [base.join(sub).join(p), base.join(p)] {
            if candidate.exists() {
                return Ok(candidate);
            }
            tried.push(candidate);
        }
    }
    let candidate = ctx.work_dir.join(p);
    if candidate.exists() {
        return Ok(candidate);
    }
    tried.push(candidate);
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(ModuleError::Args(format!(
        "could not find src \"{src}\" (searched {})",
        tried.join(", ")
    )))
}

/// Ansible's `copy` (and `template`, which hands over to it) creates the destination's
/// directory only when `dest` ends with `/`; otherwise a missing directory fails the task
/// with this message, naming the directory as written.
fn missing_dir(dest_arg: &str, target: &Path) -> Option<ModuleResult> {
    if dest_arg.ends_with('/') || target.parent().is_none_or(|p| p.is_dir()) {
        return None;
    }
    let dir = Path::new(dest_arg)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Some(ModuleResult::fail(format!(
        "Destination directory {dir} does not exist"
    )))
}

/// `dest` for a source file: into the directory when `dest` is one (or ends with `/`).
fn dest_for(dest_arg: &str, dest: &Path, src: &Path) -> PathBuf {
    if dest_arg.ends_with('/') || dest.is_dir() {
        dest.join(src.file_name().unwrap_or_default())
    } else {
        dest.to_path_buf()
    }
}

pub async fn copy(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let (dest_arg, dest) = req_path(m, ctx, "dest", "copy needs dest")?;
    let force = opt_bool(m, "force")?.unwrap_or(true);
    let preserve = m.get("mode") == Some(&json!("preserve"));
    let mode = if preserve { None } else { mode(m)? };
    if let Some(content) = m.get("content") {
        if dest_arg.ends_with('/') || dest.is_dir() {
            return Err(ModuleError::Args(
                "copy: dest must be a file when content is given".into(),
            ));
        }
        let text = match content {
            Value::String(s) => s.clone(),
            // Ansible writes structured content as JSON.
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        if let Some(failed) = missing_dir(&dest_arg, &dest) {
            return Ok(failed);
        }
        let mut changed = false;
        if force || !dest.exists() {
            changed = write_if_changed(&dest, text.as_bytes()).await?;
        }
        changed |= apply_mode(&dest, mode.as_ref()).await?;
        return Ok(ModuleResult::ok(changed)
            .with("dest", json!(dest.display().to_string()))
            .with("size", json!(text.len())));
    }
    let src_arg = req_str(m, "src", "copy needs src or content")?;
    let src = if opt_bool(m, "remote_src")?.unwrap_or(false) {
        resolve(ctx.work_dir, &src_arg)
    } else {
        find_src(&src_arg, "files", ctx)?
    };
    let meta = tokio::fs::metadata(&src)
        .await
        .map_err(ModuleError::io("reading", &src))?;
    let changed = if meta.is_dir() {
        // `src/` copies the directory's contents, `src` the directory itself.
        let target = if src_arg.ends_with('/') {
            dest.clone()
        } else {
            dest.join(src.file_name().unwrap_or_default())
        };
        copy_tree(&src, &target, CopyHow::new(mode.as_ref(), force)).await?
    } else {
        let target = dest_for(&dest_arg, &dest, &src);
        if let Some(failed) = missing_dir(&dest_arg, &target) {
            return Ok(failed);
        }
        let mode = if preserve {
            Some(FileMode::Octal(meta.permissions().mode() & 0o7777))
        } else {
            mode
        };
        copy_file(&src, &target, CopyHow::new(mode.as_ref(), force)).await?
    };
    Ok(ModuleResult::ok(changed)
        .with("dest", json!(dest.display().to_string()))
        .with("src", json!(src.display().to_string())))
}

/// How `copy` copies from `src`: the mode to set, and whether to overwrite.
#[derive(Clone, Copy)]
struct CopyHow<'a> {
    mode: Option<&'a FileMode>,
    force: bool,
}

impl<'a> CopyHow<'a> {
    fn new(mode: Option<&'a FileMode>, force: bool) -> CopyHow<'a> {
        CopyHow { mode, force }
    }
}

async fn copy_file(src: &Path, dest: &Path, how: CopyHow<'_>) -> Result<bool, ModuleError> {
    let mut changed = false;
    if how.force || !dest.exists() {
        let bytes = tokio::fs::read(src)
            .await
            .map_err(ModuleError::io("reading", src))?;
        changed = write_if_changed(dest, &bytes).await?;
    }
    Ok(apply_mode(dest, how.mode).await? || changed)
}

async fn copy_tree(src: &Path, dest: &Path, how: CopyHow<'_>) -> Result<bool, ModuleError> {
    let mut changed = false;
    let mut stack = vec![(src.to_path_buf(), dest.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        if !to.is_dir() {
            tokio::fs::create_dir_all(&to)
                .await
                .map_err(ModuleError::io("creating", &to))?;
            changed = true;
        }
        let mut entries = tokio::fs::read_dir(&from)
            .await
            .map_err(ModuleError::io("reading", &from))?;
        while let Some(e) = entries
            .next_entry()
            .await
            .map_err(ModuleError::io("reading", &from))?
        {
            let (f, t) = (e.path(), to.join(e.file_name()));
            if e.file_type().await.map(|t| t.is_dir()).unwrap_or(false) {
                stack.push((f, t));
            } else {
                changed |= copy_file(&f, &t, how).await?;
            }
        }
    }
    Ok(changed)
}

pub async fn template(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let src_arg = req_str(m, "src", "template needs src")?;
    let dest_arg = req_str(m, "dest", "template needs dest")?;
    let src = find_src(&src_arg, "templates", ctx)?;
    let text = tokio::fs::read_to_string(&src)
        .await
        .map_err(ModuleError::io("reading", &src))?;
    let rendered = ctx
        .templar
        .render_file(&text, ctx.vars)
        .map_err(|e| ModuleError::Args(format!("rendering {}: {e}", src.display())))?;
    let dest = dest_for(&dest_arg, &resolve(ctx.work_dir, &dest_arg), &src);
    if let Some(failed) = missing_dir(&dest_arg, &dest) {
        return Ok(failed);
    }
    let force = opt_bool(m, "force")?.unwrap_or(true);
    let mut changed = false;
    if force || !dest.exists() {
        changed = write_if_changed(&dest, rendered.as_bytes()).await?;
    }
    changed |= apply_mode(&dest, mode(m)?.as_ref()).await?;
    Ok(ModuleResult::ok(changed)
        .with("dest", json!(dest.display().to_string()))
        .with("src", json!(src.display().to_string())))
}

pub async fn file(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let path_arg = match opt_str(m, "path")? {
        Some(p) => p,
        None => match opt_str(m, "dest")? {
            Some(p) => p,
            None => req_str(m, "name", "file needs path")?,
        },
    };
    let path = resolve(ctx.work_dir, &path_arg);
    let existing = tokio::fs::symlink_metadata(&path).await.ok();
    let state = opt_str(m, "state")?.unwrap_or_else(|| match &existing {
        Some(meta) if meta.is_dir() => "directory".into(),
        _ => "file".into(),
    });
    let mode = mode(m)?;
    let shown = json!(path.display().to_string());
    let changed = match state.as_str() {
        "absent" => match &existing {
            None => false,
            Some(meta) if meta.is_dir() => {
                tokio::fs::remove_dir_all(&path)
                    .await
                    .map_err(ModuleError::io("removing", &path))?;
                true
            }
            Some(_) => {
                tokio::fs::remove_file(&path)
                    .await
                    .map_err(ModuleError::io("removing", &path))?;
                true
            }
        },
        "directory" => {
            let created = match &existing {
                Some(meta) if meta.is_dir() => false,
                Some(_) => {
                    return Ok(ModuleResult::fail(format!(
                        "{} exists and is not a directory",
                        path.display()
                    )));
                }
                None => {
                    tokio::fs::create_dir_all(&path)
                        .await
                        .map_err(ModuleError::io("creating", &path))?;
                    true
                }
            };
            apply_mode(&path, mode.as_ref()).await? || created
        }
        "touch" => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(ModuleError::io("touching", &path))?;
            f.set_modified(std::time::SystemTime::now())
                .map_err(ModuleError::io("touching", &path))?;
            apply_mode(&path, mode.as_ref()).await?;
            // Ansible reports a touch as a change, always.
            true
        }
        "file" => match &existing {
            None => {
                return Ok(ModuleResult::fail(format!(
                    "file ({}) is absent, cannot continue",
                    path.display()
                ))
                .with("path", shown));
            }
            Some(_) => apply_mode(&path, mode.as_ref()).await?,
        },
        "link" => {
            let src = req_str(m, "src", "state=link needs src")?;
            let current = tokio::fs::read_link(&path).await.ok();
            if current.as_deref() == Some(Path::new(&src)) {
                false
            } else {
                match &existing {
                    Some(meta) if meta.is_dir() && !meta.file_type().is_symlink() => {
                        return Ok(ModuleResult::fail(format!(
                            "refusing to replace directory {} with a link",
                            path.display()
                        )));
                    }
                    Some(_) => tokio::fs::remove_file(&path)
                        .await
                        .map_err(ModuleError::io("replacing", &path))?,
                    None => {}
                }
                tokio::fs::symlink(&src, &path)
                    .await
                    .map_err(ModuleError::io("linking", &path))?;
                true
            }
        }
        other => {
            return Err(ModuleError::Args(format!(
                "file: state \"{other}\" is not supported (supported: file, directory, absent, touch, link)"
            )));
        }
    };
    Ok(ModuleResult::ok(changed)
        .with("path", shown)
        .with("state", Value::String(state)))
}

pub async fn stat(m: &Args, ctx: &ModuleCtx<'_>) -> Outcome {
    let (_, path) = req_path(m, ctx, "path", "stat needs path")?;
    let follow = opt_bool(m, "follow")?.unwrap_or(false);
    let meta = if follow {
        tokio::fs::metadata(&path).await
    } else {
        tokio::fs::symlink_metadata(&path).await
    };
    let stat = match meta {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({"exists": false}),
        Err(e) => return Err(ModuleError::io("inspecting", &path)(e)),
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            json!({
                "exists": true,
                "path": path.display().to_string(),
                "isdir": meta.is_dir(),
                "isreg": meta.is_file(),
                "islnk": meta.file_type().is_symlink(),
                "size": meta.len(),
                "mode": mode_text(meta.permissions().mode()),
                "uid": meta.uid(),
                "gid": meta.gid(),
                "mtime": mtime,
            })
        }
    };
    Ok(ModuleResult::ok(false).with("stat", stat))
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = super::super::Fixture;

    fn fixture() -> T {
        T::new(&[("who", json!("gantry"))])
    }

    fn args(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn copy_content_is_idempotent_and_sets_mode() {
        let t = fixture();
        let a = args(json!({"content": "x\n", "dest": "sub/f", "mode": "0600"}));
        // As Ansible: a missing directory fails the task (and is not created).
        let r = copy(&a, &t.ctx()).await.unwrap();
        assert!(r.failed(), "{r:?}");
        std::fs::create_dir(t.path("sub")).unwrap();
        assert!(copy(&a, &t.ctx()).await.unwrap().changed());
        let meta = std::fs::metadata(t.path("sub/f")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let a = args(json!({"content": "x\n", "dest": "sub/f", "mode": 384}));
        assert!(
            !copy(&a, &t.ctx()).await.unwrap().changed(),
            "same content, same mode"
        );
    }

    #[tokio::test]
    async fn copy_src_searches_files_dirs_and_copies_trees() {
        let mut t = fixture();
        let role = t.path("role");
        std::fs::create_dir_all(role.join("files/tree/inner")).unwrap();
        std::fs::write(role.join("files/a.txt"), "A").unwrap();
        std::fs::write(role.join("files/tree/inner/b.txt"), "B").unwrap();
        t.search = vec![role];
        let a = args(json!({"src": "a.txt", "dest": "out/"}));
        copy(&a, &t.ctx()).await.unwrap();
        assert_eq!(std::fs::read_to_string(t.path("out/a.txt")).unwrap(), "A");
        std::fs::create_dir(t.path("copied")).unwrap();
        let a = args(json!({"src": "tree", "dest": "copied"}));
        copy(&a, &t.ctx()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path("copied/tree/inner/b.txt")).unwrap(),
            "B"
        );
        let a = args(json!({"src": "nope", "dest": "x"}));
        let e = copy(&a, &t.ctx()).await.unwrap_err();
        assert!(e.to_string().contains("could not find src \"nope\""), "{e}");
    }

    #[tokio::test]
    async fn template_renders_with_vars() {
        let mut t = fixture();
        std::fs::create_dir(t.path("templates")).unwrap();
        std::fs::write(
            t.path("templates/t.j2"),
            "hello {{ who }}\n{% if true %}\nyes\n{% endif %}\nend\n",
        )
        .unwrap();
        t.search = vec![t.dir.path().to_path_buf()];
        let a = args(json!({"src": "t.j2", "dest": "t.txt"}));
        assert!(template(&a, &t.ctx()).await.unwrap().changed());
        assert_eq!(
            std::fs::read_to_string(t.path("t.txt")).unwrap(),
            "hello gantry\nyes\nend\n",
            "trim_blocks, as Ansible's template module"
        );
    }

    #[tokio::test]
    async fn file_states_and_stat() {
        let t = fixture();
        let f = |v: Value| {
            let a = args(v);
            let t = &t;
            async move { file(&a, &t.ctx()).await.unwrap() }
        };
        assert!(
            f(json!({"path": "a/b", "state": "directory", "mode": "0750"}))
                .await
                .changed()
        );
        assert!(
            !f(json!({"path": "a/b", "state": "directory", "mode": "0750"}))
                .await
                .changed()
        );
        assert!(
            f(json!({"path": "a/b/t", "state": "touch"}))
                .await
                .changed()
        );
        assert!(
            f(json!({"path": "a/missing", "state": "file"}))
                .await
                .failed()
        );
        assert!(
            f(json!({"path": "a/l", "state": "link", "src": "b"}))
                .await
                .changed()
        );
        let st = |p: &str| {
            let a = args(json!({"path": p}));
            let t = &t;
            async move { stat(&a, &t.ctx()).await.unwrap().result["stat"].clone() }
        };
        let s = st("a/b").await;
        assert_eq!(
            (&s["exists"], &s["isdir"], &s["mode"]),
            (&json!(true), &json!(true), &json!("0750"))
        );
        assert_eq!(st("a/l").await["islnk"], true);
        assert!(f(json!({"path": "a", "state": "absent"})).await.changed());
        assert_eq!(st("a/b").await["exists"], false);
        assert!(!f(json!({"path": "a", "state": "absent"})).await.changed());
    }

    #[test]
    fn modes() {
        let m = |v: Value| mode(&args(json!({ "mode": v })));
        assert_eq!(m(json!("0644")).unwrap(), Some(FileMode::Octal(0o644)));
        assert_eq!(m(json!("755")).unwrap(), Some(FileMode::Octal(0o755)));
        assert_eq!(m(json!(420)).unwrap(), Some(FileMode::Octal(0o644)));
        assert_eq!(
            m(json!("u+x")).unwrap(),
            Some(FileMode::Symbolic("u+x".into()))
        );
        assert!(m(json!("u*x")).is_err());
    }
}
