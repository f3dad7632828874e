//! The build context on disk: the directory a build may read, its `.dockerignore`, and
//! the files a `COPY`/`ADD` source names (wildcards, directories walked in sorted order).
//!
//! Owns the rule that nothing outside the context is read: sources are resolved lexically
//! and symlinks are followed only when they stay inside. Must not write anything (siblings
//! are `siblings`' business) nor know about layers or registries.

use std::path::{Component, Path, PathBuf};

use super::ignore::{Ignore, PatternError, matcher};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {0}: no such directory")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}/.dockerignore: {source}")]
    Ignore {
        path: PathBuf,
        #[source]
        source: PatternError,
    },
    #[error("{0:?}: bad wildcard pattern")]
    BadPattern(String),
    #[error("{0:?} is outside the build context")]
    Outside(String),
    #[error("{0:?}: no such file in the build context (or excluded by .dockerignore)")]
    NotFound(String),
    #[error("{name:?} resolves to {target:?}, which .dockerignore excludes")]
    IgnoredTarget { name: String, target: String },
    #[error(
        "{0:?} is a FIFO, socket or device: only files, directories and symlinks can be copied"
    )]
    Special(String),
}

fn io(path: &Path, source: std::io::Error) -> ContextError {
    ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a context entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File { path: PathBuf, size: u64 },
    Dir,
    Symlink(String),
}

/// A file, directory or symlink found under a source, `rel` relative to the source root
/// (`""` for the source itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub rel: String,
    pub kind: Kind,
    /// Permission bits on disk.
    pub mode: u32,
}

/// One source of a COPY after wildcard expansion.
#[derive(Clone, Debug)]
pub struct Source {
    /// Its path relative to the context.
    pub name: String,
    pub is_dir: bool,
    /// The source itself first (rel `""`), then everything under a directory, sorted.
    pub entries: Vec<Entry>,
}

/// An opened build context.
#[derive(Clone, Debug)]
pub struct Context {
    pub root: PathBuf,
    pub ignore: Ignore,
}

impl Context {
    pub fn open(dir: &Path) -> Result<Context, ContextError> {
        let root = match std::fs::canonicalize(dir) {
            Ok(r) if r.is_dir() => r,
            Ok(_) => return Err(ContextError::Missing(dir.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContextError::Missing(dir.to_path_buf()));
            }
            Err(e) => return Err(io(dir, e)),
        };
        let ignore = match std::fs::read_to_string(root.join(".dockerignore")) {
            Ok(t) => Ignore::parse(&t).map_err(|source| ContextError::Ignore {
                path: root.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(io(&root.join(".dockerignore"), e)),
        };
        Ok(Context { root, ignore })
    }

    /// Resolves a COPY/ADD source (wildcards allowed) to the sources it names.
    pub fn sources(&self, src: &str) -> Result<Vec<Source>, ContextError> {
        let clean = clean_relative(src).ok_or_else(|| ContextError::Outside(src.to_string()))?;
        let names = if clean.split('/').any(has_glob) {
            // A wildcard that matches nothing copies nothing (BuildKit, docker's default
            // builder since 23.0): Dockerfiles use it for optional files. A literal
            // source that does not exist is still an error.
            self.expand(&clean)?
        } else {
            vec![clean]
        };
        names.into_iter().map(|n| self.source(&n, src)).collect()
    }

    fn expand(&self, pattern: &str) -> Result<Vec<String>, ContextError> {
        let mut found = vec![String::new()];
        for seg in pattern.split('/') {
            let m = if has_glob(seg) {
                Some(matcher(seg).ok_or_else(|| ContextError::BadPattern(pattern.to_string()))?)
            } else {
                None
            };
            let mut next = Vec::new();
            for base in &found {
                let dir = self.root.join(base);
                let Some(m) = &m else {
                    if dir.join(seg).symlink_metadata().is_ok() {
                        next.push(join(base, seg));
                    }
                    continue;
                };
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| m.is_match(n))
                    .collect();
                names.sort();
                next.extend(names.iter().map(|n| join(base, n)));
            }
            found = next;
        }
        Ok(found
            .into_iter()
            .filter(|n| !self.ignore.excluded(n))
            .collect())
    }

    fn source(&self, name: &str, as_written: &str) -> Result<Source, ContextError> {
        let path = self.root.join(name);
        if !name.is_empty() && self.ignore.excluded(name) && !self.ignore.has_exceptions() {
            return Err(ContextError::NotFound(as_written.to_string()));
        }
        // The source itself is followed when it is a symlink, but only inside the context.
        let real = match std::fs::canonicalize(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContextError::NotFound(as_written.to_string()));
            }
            Err(e) => return Err(io(&path, e)),
        };
        if !real.starts_with(&self.root) {
            return Err(ContextError::Outside(as_written.to_string()));
        }
        // `.dockerignore` is decided on what the source resolves to, not only on its
        // name: a symlink to an ignored file must not ship the file.
        let target = real
            .strip_prefix(&self.root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !target.is_empty() && target != name && self.ignore.excluded(&target) {
            return Err(ContextError::IgnoredTarget {
                name: as_written.to_string(),
                target,
            });
        }
        let meta = std::fs::metadata(&real).map_err(|e| io(&real, e))?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(ContextError::Special(name.to_string()));
        }
        let mut entries = Vec::new();
        if meta.is_dir() {
            entries.push(Entry {
                rel: String::new(),
                kind: Kind::Dir,
                mode: mode_of(&meta),
            });
            self.walk(&real, name, "", &mut entries)?;
        } else {
            if self.ignore.excluded(name) {
                return Err(ContextError::NotFound(as_written.to_string()));
            }
            entries.push(Entry {
                rel: String::new(),
                kind: Kind::File {
                    path: real,
                    size: meta.len(),
                },
                mode: mode_of(&meta),
            });
        }
        Ok(Source {
            name: name.to_string(),
            is_dir: meta.is_dir(),
            entries,
        })
    }

    /// Appends the sorted contents of `dir` (context path `ctx`), skipping ignored paths.
    fn walk(
        &self,
        dir: &Path,
        ctx: &str,
        rel: &str,
        out: &mut Vec<Entry>,
    ) -> Result<(), ContextError> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| io(dir, e))?;
        names.sort();
        for n in names {
            let Some(name) = n.to_str() else {
                return Err(io(
                    &dir.join(&n),
                    std::io::Error::other("file name is not UTF-8"),
                ));
            };
            let ctx_path = join(ctx, name);
            let rel_path = join(rel, name);
            let path = dir.join(name);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
            let excluded = self.ignore.excluded(&ctx_path);
            if meta.is_dir() {
                if excluded && !self.ignore.has_exceptions() {
                    continue;
                }
                let at = out.len();
                if !excluded {
                    out.push(Entry {
                        rel: rel_path.clone(),
                        kind: Kind::Dir,
                        mode: mode_of(&meta),
                    });
                }
                self.walk(&path, &ctx_path, &rel_path, out)?;
                // An excluded directory still appears when an exception re-includes a file in it.
                if excluded && out.len() > at {
                    out.insert(
                        at,
                        Entry {
                            rel: rel_path,
                            kind: Kind::Dir,
                            mode: mode_of(&meta),
                        },
                    );
                }
                continue;
            }
            if excluded {
                continue;
            }
            let kind = if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
                Kind::Symlink(t.to_string_lossy().into_owned())
            } else if meta.is_file() {
                Kind::File {
                    path,
                    size: meta.len(),
                }
            } else {
                // Sockets, FIFOs and devices have no place in an image built from a
                // context (and reading a FIFO would wait forever).
                return Err(ContextError::Special(ctx_path));
            };
            out.push(Entry {
                rel: rel_path,
                kind,
                mode: mode_of(&meta),
            });
        }
        Ok(())
    }

    /// Every path of the context that `.dockerignore` keeps, for sending to an engine.
    /// `always` (the Dockerfile, `.dockerignore`) is kept even when ignored, as Docker does.
    pub fn all(&self, always: &[&str]) -> Result<Vec<Entry>, ContextError> {
        let mut out = Vec::new();
        self.walk(&self.root, "", "", &mut out)?;
        for a in always {
            if out.iter().any(|e| e.rel == *a) {
                continue;
            }
            let p = self.root.join(a);
            if let Ok(meta) = std::fs::metadata(&p)
                && meta.is_file()
            {
                out.push(Entry {
                    rel: a.to_string(),
                    kind: Kind::File {
                        path: p,
                        size: meta.len(),
                    },
                    mode: mode_of(&meta),
                });
            }
        }
        Ok(out)
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn has_glob(seg: &str) -> bool {
    seg.contains(['*', '?', '['])
}

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    if meta.is_dir() { 0o755 } else { 0o644 }
}

/// A source path made relative to the context root (`/x` means `x`), or `None` when it
/// climbs out with `..`.
pub fn clean_relative(src: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(src).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
        }
    }
    Some(out.join("/"))
}

/// A destination path inside the image, normalised as Docker does: relative to `/`,
/// `.` dropped, and `..` at the root staying at the root (`/../../x` is `/x`).
pub fn clean_destination(dest: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
        }
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_normalised_as_docker_does() {
        assert_eq!(clean_destination("/../../x"), "x");
        assert_eq!(clean_destination("/app/./a/../b/"), "app/b");
        assert_eq!(clean_destination("/"), "");
    }

    #[test]
    fn ignored_targets_and_special_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::write(r.join(".env"), "SECRET").unwrap();
        std::fs::write(r.join(".dockerignore"), ".env\n").unwrap();
        std::os::unix::fs::symlink(".env", r.join("envlink")).unwrap();
        std::fs::create_dir(r.join("d")).unwrap();
        let fifo = r.join("d/pipe");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let ctx = Context::open(r).unwrap();
        let e = ctx.sources("envlink").unwrap_err();
        assert!(matches!(e, ContextError::IgnoredTarget { .. }), "{e}");
        let e = ctx.sources("d").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"d/pipe\" is a FIFO, socket or device: only files, directories and symlinks can be copied"
        );
        assert!(matches!(
            ctx.sources("d/pipe"),
            Err(ContextError::Special(_))
        ));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_relative("a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(clean_relative("/abs/x").as_deref(), Some("abs/x"));
        assert_eq!(clean_relative(".").as_deref(), Some(""));
        assert_eq!(clean_relative("../x"), None);
        assert_eq!(clean_relative("a/../../x"), None);
    }

    #[test]
    fn sources_walk_and_ignore() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("src/sub")).unwrap();
        std::fs::create_dir_all(r.join("target")).unwrap();
        std::fs::write(r.join("src/a.txt"), "a").unwrap();
        std::fs::write(r.join("src/b.log"), "b").unwrap();
        std::fs::write(r.join("src/sub/c.txt"), "c").unwrap();
        std::fs::write(r.join("target/x"), "x").unwrap();
        std::fs::write(r.join("top.txt"), "t").unwrap();
        std::fs::write(r.join(".dockerignore"), "**/*.log\ntarget\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("escape")).unwrap();
        let ctx = Context::open(r).unwrap();
        let s = ctx.sources("src").unwrap();
        let rels: Vec<&str> = s[0].entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, ["", "a.txt", "sub", "sub/c.txt"]);
        assert!(matches!(
            ctx.sources("target/x"),
            Err(ContextError::NotFound(_))
        ));
        assert!(matches!(
            ctx.sources("../etc"),
            Err(ContextError::Outside(_))
        ));
        assert!(matches!(
            ctx.sources("escape"),
            Err(ContextError::Outside(_))
        ));
        assert!(matches!(
            ctx.sources("nope"),
            Err(ContextError::NotFound(_))
        ));
        let g = ctx.sources("*.txt").unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].name, "top.txt");
        // An unmatched wildcard names nothing; it is not an error (BuildKit).
        assert!(ctx.sources("requirements*.txt").unwrap().is_empty());
        assert!(matches!(
            Context::open(&r.join("missing")),
            Err(ContextError::Missing(_))
        ));
        let all: Vec<String> = ctx
            .all(&[".dockerignore"])
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert!(
            all.contains(&"src/a.txt".to_string()) && !all.iter().any(|p| p.starts_with("target"))
        );
    }
}
