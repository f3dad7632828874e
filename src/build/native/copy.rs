//! COPY and ADD: sources from the context (through `Context`), from an earlier stage or an
//! image (`--from`), local tar archives unpacked by ADD, `--chown` names looked up in the
//! stage's /etc/passwd and /etc/group, `--chmod`; the result is the entries of one layer.

use std::path::Path;
use std::sync::Arc;

use super::state::{ImageState, Layer};
use super::{Build, stage_ref};
use crate::build::BuildError;
use crate::build::context::Kind;
use crate::build::dockerfile::{Args, Dockerfile, Instruction};
use crate::build::image;
use crate::build::layer::{Entries, EntryKind, LayerEntry};
use crate::build::words::{self, Vars};

impl Build {
    /// COPY/ADD → the entries of its layer.
    pub(super) async fn copy(
        &mut self,
        ins: &Instruction,
        st: &ImageState,
        df: &Dockerfile,
        built: &[Option<ImageState>],
        stage: usize,
        vars: &dyn Vars,
    ) -> Result<Entries, BuildError> {
        let line = ins.line;
        let err = |e: words::WordsError| self.at(line, e.to_string());
        let mut args = match &ins.args {
            Args::Json(v) => v
                .iter()
                .map(|s| words::process_word(s, vars, self.escape))
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?,
            Args::Shell(s) => words::process_words(s, vars, self.escape).map_err(err)?,
        };
        if args.len() < 2 {
            return Err(self.at(
                line,
                format!("{} needs a source and a destination", ins.keyword),
            ));
        }
        let dest_raw = args.pop().unwrap_or_default();
        let srcs = args;
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", st.workdir())
        };
        let dest_is_dir = dest_raw.ends_with('/')
            || dest_raw.ends_with("/.")
            || dest_raw == "."
            || srcs.len() > 1;
        let dest = crate::build::context::clean_destination(&dest_abs);
        let owner = match ins.flag("chown") {
            Some(c) => {
                let c = words::process_word(c, vars, self.escape).map_err(err)?;
                Some(self.owner(&c, st, line).await?)
            }
            None => None,
        };
        let chmod = match ins.flag("chmod") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        self.at(
                            line,
                            format!("--chmod={m}: expected an octal mode such as 755"),
                        )
                    })?,
            ),
            None => None,
        };
        let mut out = Entries::new();
        if let Some(from) = ins.flag("from") {
            let from = words::process_word(from, vars, self.escape).map_err(err)?;
            let source = match stage_ref(df, &from, stage) {
                Some(i) => built[i]
                    .clone()
                    .ok_or_else(|| self.at(line, format!("--from={from}: stage not built")))?,
                None => {
                    let img = self.image(&from, line).await?;
                    ImageState::from_image(&img, &self.platform).map_err(|m| self.at(line, m))?
                }
            };
            for src in &srcs {
                self.copy_from_image(
                    &source,
                    &from,
                    src,
                    &dest,
                    dest_is_dir,
                    owner,
                    chmod,
                    line,
                    &mut out,
                )
                .await?;
            }
            return Ok(out);
        }
        let mut sources = Vec::new();
        for src in &srcs {
            if ins.keyword == "ADD" && src.contains("://") {
                return Err(self.at(line, format!("ADD {src}: URLs are not fetched by the native builder (builds must be reproducible); download it into the context, or use --builder docker")));
            }
            if src.starts_with("git@") {
                return Err(self.at(line, format!("ADD {src}: git sources are not supported")));
            }
            let (ctx, name) = (self.ctx.clone(), src.clone());
            let s = tokio::task::spawn_blocking(move || ctx.sources(&name))
                .await
                .map_err(|e| BuildError::io("walking the build context", std::io::Error::other(e)))?
                .map_err(|e| self.at(line, format!("{} {e}", ins.keyword)))?;
            sources.extend(s);
        }
        if sources.len() > 1 && !dest_is_dir {
            return Err(self.at(
                line,
                format!(
                    "{} with more than one source needs a destination directory ending in /",
                    ins.keyword
                ),
            ));
        }
        let (uid, gid) = owner.unwrap_or((0, 0));
        for s in sources {
            if s.is_dir {
                for e in &s.entries {
                    let path = join(&dest, &e.rel);
                    if path.is_empty() {
                        continue;
                    }
                    out.insert(path, context_entry(&e.kind, e.mode, chmod, uid, gid));
                }
            } else {
                let base = s.name.rsplit('/').next().unwrap_or(&s.name).to_string();
                let target = if dest_is_dir {
                    join(&dest, &base)
                } else {
                    dest.clone()
                };
                let e = &s.entries[0];
                if ins.keyword == "ADD"
                    && let Kind::File { path, .. } = &e.kind
                    && is_tar_archive_async(path).await
                {
                    self.extract_archive(path, &dest, owner, chmod, line, &mut out)
                        .await?;
                    continue;
                }
                if target.is_empty() {
                    return Err(
                        self.at(line, format!("{}: cannot copy a file onto /", ins.keyword))
                    );
                }
                out.insert(target, context_entry(&e.kind, e.mode, chmod, uid, gid));
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn copy_from_image(
        &mut self,
        source: &ImageState,
        from: &str,
        src: &str,
        dest: &str,
        dest_is_dir: bool,
        owner: Option<(u64, u64)>,
        chmod: Option<u32>,
        line: usize,
        out: &mut Entries,
    ) -> Result<(), BuildError> {
        let mut path = crate::build::context::clean_relative(src).unwrap_or_default();
        let mut found;
        let mut hops = 0;
        loop {
            let p = path.clone();
            let prefix = format!("{p}/");
            let want = move |k: &str| p.is_empty() || k == p || k.starts_with(&prefix);
            found = self.read_paths(source, Arc::new(want)).await?;
            // A symlink named as the source is followed, as a path on that filesystem.
            match found.get(&path).map(|e| &e.kind) {
                Some(EntryKind::Symlink(t)) if hops < 8 => {
                    hops += 1;
                    let t = if t.starts_with('/') {
                        t.clone()
                    } else {
                        let parent = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        format!("/{parent}/{t}")
                    };
                    path = crate::build::context::clean_relative(&t).unwrap_or_default();
                }
                _ => break,
            }
        }
        if found.is_empty() {
            return Err(self.at(line, format!("COPY --from={from}: {src} not found")));
        }
        let is_dir = path.is_empty() || found.get(&path).is_none_or(|e| e.kind == EntryKind::Dir);
        let base = src
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        for (k, e) in found {
            let rel = if k == path {
                String::new()
            } else {
                k[path.len()..].trim_start_matches('/').to_string()
            };
            let target = if is_dir {
                join(dest, &rel)
            } else if dest_is_dir {
                join(dest, &base)
            } else {
                dest.to_string()
            };
            if target.is_empty() {
                continue;
            }
            let (uid, gid) = owner.unwrap_or((e.uid, e.gid));
            let mode = match (&e.kind, chmod) {
                (EntryKind::Symlink(_), _) => 0o777,
                (_, Some(m)) => m,
                _ => e.mode,
            };
            out.insert(
                target,
                LayerEntry {
                    kind: e.kind,
                    mode,
                    uid,
                    gid,
                },
            );
        }
        Ok(())
    }

    /// The merged entries of an image's layers that `want` accepts.
    pub(super) async fn read_paths(
        &self,
        img: &ImageState,
        want: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Result<Entries, BuildError> {
        let mut merged = Entries::new();
        let extract = self.cache.join("files");
        for l in &img.layers {
            match l {
                Layer::Built { entries, .. } => {
                    for (k, e) in entries.iter() {
                        if want(k) {
                            merged.insert(k.clone(), e.clone());
                        }
                    }
                }
                Layer::Base { desc, store, image } => {
                    let file = image::download_layer(image, store, desc, &self.cache).await?;
                    let w = want.clone();
                    let x = extract.clone();
                    let digest = desc.digest.clone();
                    let name = image.clone();
                    merged = tokio::task::spawn_blocking(move || {
                        let mut m = merged;
                        image::scan_tar(&file, &*w, &x, &mut m).map(|_| m)
                    })
                    .await
                    .map_err(|e| BuildError::io("reading a layer", std::io::Error::other(e)))?
                    .map_err(|source| image::ImageError::Layer {
                        name,
                        digest,
                        source,
                    })?;
                }
            }
        }
        Ok(merged)
    }

    /// `--chown=user[:group]`: numbers, or names looked up in the stage's /etc/passwd and
    /// /etc/group. A user without a group gets the user's primary group (names) or the
    /// same number (numeric), as Docker does.
    pub(super) async fn owner(
        &self,
        spec: &str,
        st: &ImageState,
        line: usize,
    ) -> Result<(u64, u64), BuildError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let numeric = |s: &str| s.parse::<u64>().ok();
        let need_files = numeric(user).is_none() || group.is_some_and(|g| numeric(g).is_none());
        let (passwd, groups) = if need_files {
            let want: Arc<dyn Fn(&str) -> bool + Send + Sync> =
                Arc::new(|k: &str| k == "etc/passwd" || k == "etc/group");
            let files = self.read_paths(st, want).await?;
            let path = |k: &str| match files.get(k).map(|e| &e.kind) {
                Some(EntryKind::File { source, .. }) => Some(source.clone()),
                _ => None,
            };
            let (p, g) = (path("etc/passwd"), path("etc/group"));
            tokio::task::spawn_blocking(move || {
                let read = |f: Option<std::path::PathBuf>| {
                    f.and_then(|f| std::fs::read_to_string(f).ok())
                        .unwrap_or_default()
                };
                (read(p), read(g))
            })
            .await
            .map_err(|e| BuildError::io("reading /etc/passwd", std::io::Error::other(e)))?
        } else {
            (String::new(), String::new())
        };
        let lookup = |text: &str, name: &str, field: usize| -> Option<u64> {
            text.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
        };
        let (uid, primary) = match numeric(user) {
            Some(u) => (u, u),
            None => {
                let uid = lookup(&passwd, user, 2).ok_or_else(|| {
                    self.at(
                        line,
                        format!("--chown={spec}: no user {user:?} in the image's /etc/passwd"),
                    )
                })?;
                (uid, lookup(&passwd, user, 3).unwrap_or(uid))
            }
        };
        let gid = match group {
            None => primary,
            Some(g) => match numeric(g) {
                Some(n) => n,
                None => lookup(&groups, g, 2).ok_or_else(|| {
                    self.at(
                        line,
                        format!("--chown={spec}: no group {g:?} in the image's /etc/group"),
                    )
                })?,
            },
        };
        Ok((uid, gid))
    }

    /// ADD of a local tar archive: its contents, unpacked under `dest`.
    pub(super) async fn extract_archive(
        &self,
        path: &Path,
        dest: &str,
        owner: Option<(u64, u64)>,
        chmod: Option<u32>,
        line: usize,
        out: &mut Entries,
    ) -> Result<(), BuildError> {
        let p = path.to_path_buf();
        let x = self.cache.join("files");
        let found = tokio::task::spawn_blocking(move || {
            let mut m = Entries::new();
            image::scan_tar(&p, &|_| true, &x, &mut m).map(|_| m)
        })
        .await
        .map_err(|e| BuildError::io("reading an archive", std::io::Error::other(e)))?
        .map_err(|e| self.at(line, format!("ADD {}: {e}", path.display())))?;
        for (k, mut e) in found {
            if let Some((u, g)) = owner {
                e.uid = u;
                e.gid = g;
            }
            if let (Some(m), false) = (chmod, matches!(e.kind, EntryKind::Symlink(_))) {
                e.mode = m;
            }
            out.insert(join(dest, &k), e);
        }
        Ok(())
    }
}

pub(super) fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// A context file in a layer: modes normalised (a checkout's umask must not change the
/// digest) unless `--chmod` says otherwise.
pub(super) fn context_entry(
    kind: &Kind,
    mode: u32,
    chmod: Option<u32>,
    uid: u64,
    gid: u64,
) -> LayerEntry {
    let (kind, normal) = match kind {
        Kind::Dir => (EntryKind::Dir, 0o755),
        Kind::Symlink(t) => (EntryKind::Symlink(t.clone()), 0o777),
        Kind::File { path, size } => (
            EntryKind::File {
                source: path.clone(),
                size: *size,
            },
            if mode & 0o111 != 0 { 0o755 } else { 0o644 },
        ),
    };
    let mode = match (&kind, chmod) {
        (EntryKind::Symlink(_), _) => 0o777,
        (_, Some(m)) => m,
        _ => normal,
    };
    LayerEntry {
        kind,
        mode,
        uid,
        gid,
    }
}

async fn is_tar_archive_async(path: &Path) -> bool {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || is_tar_archive(&p))
        .await
        .unwrap_or(false)
}

/// ADD unpacks local tar archives (plain or gzip'd); other files are copied.
pub(super) fn is_tar_archive(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 512];
    let Ok(n) = f.read(&mut head) else {
        return false;
    };
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        // A gzip'd file is an archive only if what it holds is a tar.
        let Ok(f) = std::fs::File::open(path) else {
            return false;
        };
        let mut inner = [0u8; 512];
        let mut gz = flate2::read::GzDecoder::new(f);
        return gz.read_exact(&mut inner).is_ok() && &inner[257..262] == b"ustar";
    }
    n == 512 && &head[257..262] == b"ustar"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_normalised() {
        let k = Kind::File {
            path: "/x".into(),
            size: 1,
        };
        assert_eq!(context_entry(&k, 0o664, None, 0, 0).mode, 0o644);
        assert_eq!(context_entry(&k, 0o700, None, 0, 0).mode, 0o755);
        assert_eq!(context_entry(&k, 0o644, Some(0o600), 1, 2).mode, 0o600);
        assert_eq!(context_entry(&Kind::Dir, 0o700, None, 0, 0).mode, 0o755);
    }
}
