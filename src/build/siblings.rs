//! Zuul siblings (ZUUL.md §9, build-docker-image): sibling project directories are copied
//! into `<context>/.zuul-siblings/<name>` before the build, the build gets the build arg
//! `ZUUL_SIBLINGS="<name> <name>…"`, and the directory is removed afterwards — on success,
//! failure or panic alike (a guard's `Drop`).
//!
//! Owns that directory only: refuses to start when it already exists (never deletes what
//! it did not create). Must not know about builders.

use std::path::{Path, PathBuf};

use super::Sibling;

pub const DIR: &str = ".zuul-siblings";

#[derive(Debug, thiserror::Error)]
pub enum SiblingsError {
    #[error("{0} already exists: remove it, gantry creates and deletes it around the build")]
    Exists(PathBuf),
    #[error("sibling {name:?}: {dir} is not a directory")]
    NotADir { name: String, dir: PathBuf },
    #[error("sibling name {0:?} must be a relative path without '..'")]
    BadName(String),
    #[error("copying sibling {name:?} from {from}: {source}")]
    Copy {
        name: String,
        from: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SiblingsError {
    pub fn is_usage(&self) -> bool {
        !matches!(self, SiblingsError::Copy { .. })
    }
}

/// The `ZUUL_SIBLINGS` build arg, when there are siblings.
pub fn build_arg(siblings: &[Sibling]) -> Option<(String, String)> {
    if siblings.is_empty() {
        return None;
    }
    let names: Vec<&str> = siblings.iter().map(|s| s.name.as_str()).collect();
    Some(("ZUUL_SIBLINGS".to_string(), names.join(" ")))
}

/// The copied siblings; dropping it removes `.zuul-siblings`.
#[derive(Debug)]
pub struct Siblings {
    dir: Option<PathBuf>,
}

impl Siblings {
    pub fn copy_in(context: &Path, siblings: &[Sibling]) -> Result<Siblings, SiblingsError> {
        if siblings.is_empty() {
            return Ok(Siblings { dir: None });
        }
        let dir = context.join(DIR);
        if dir.symlink_metadata().is_ok() {
            return Err(SiblingsError::Exists(dir));
        }
        for s in siblings {
            if super::context::clean_relative(&s.name).is_none_or(|c| c.is_empty())
                || Path::new(&s.name).is_absolute()
            {
                return Err(SiblingsError::BadName(s.name.clone()));
            }
            if !s.dir.is_dir() {
                return Err(SiblingsError::NotADir {
                    name: s.name.clone(),
                    dir: s.dir.clone(),
                });
            }
        }
        // From here on the guard owns the directory, so a failed copy cleans up too.
        let guard = Siblings {
            dir: Some(dir.clone()),
        };
        for s in siblings {
            let to = dir.join(&s.name);
            copy_tree(&s.dir, &to).map_err(|source| SiblingsError::Copy {
                name: s.name.clone(),
                from: s.dir.clone(),
                source,
            })?;
        }
        Ok(guard)
    }
}

impl Drop for Siblings {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take()
            && let Err(e) = std::fs::remove_dir_all(&d)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", d.display());
        }
    }
}

/// `cp -r` keeping symlinks as symlinks.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let ft = e.file_type()?;
        let dst = to.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path())?, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(e.path(), &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_then_removed() {
        let t = tempfile::tempdir().unwrap();
        let ctx = t.path().join("ctx");
        let sib = t.path().join("lib");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::create_dir_all(sib.join("pkg")).unwrap();
        std::fs::write(sib.join("pkg/x.py"), "x").unwrap();
        let list = vec![Sibling {
            name: "opendev.org/org/lib".into(),
            dir: sib.clone(),
        }];
        {
            let _g = Siblings::copy_in(&ctx, &list).unwrap();
            assert!(
                ctx.join(".zuul-siblings/opendev.org/org/lib/pkg/x.py")
                    .exists()
            );
            assert!(matches!(
                Siblings::copy_in(&ctx, &list),
                Err(SiblingsError::Exists(_))
            ));
        }
        assert!(!ctx.join(DIR).exists());
        assert_eq!(
            build_arg(&list),
            Some(("ZUUL_SIBLINGS".into(), "opendev.org/org/lib".into()))
        );
        let bad = vec![Sibling {
            name: "../x".into(),
            dir: sib,
        }];
        assert!(matches!(
            Siblings::copy_in(&ctx, &bad),
            Err(SiblingsError::BadName(_))
        ));
    }
}
