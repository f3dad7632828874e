//! The Dockerfile as the docker builder sends it: global `ARG`s for `FROM` lines, each
//! speculative `FROM` rewritten to the digest reference it was pulled as (so no name the
//! user has in the engine is retagged), and where the Dockerfile goes in the context tar.
//! Pure text work; the engine calls live in `docker.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::BuildRequest;
use super::dockerfile;
use super::words;
use crate::oci::Digest;

/// A speculative base image pulled into the engine by digest.
pub(super) struct Pulled {
    /// The name the Dockerfile uses (after `ARG` substitution).
    pub name: String,
    /// `buildset-host/repo@sha256:…`, what `FROM` is rewritten to.
    pub digest_ref: String,
}

/// Global `ARG` values (build args override defaults), as `FROM` lines see them.
pub(super) fn global_args(
    req: &BuildRequest,
    df: &dockerfile::Dockerfile,
) -> HashMap<String, String> {
    let args: HashMap<String, String> = req.build_args.iter().cloned().collect();
    let mut globals: HashMap<String, String> = HashMap::new();
    for ins in &df.global_args {
        for w in words::split_raw(ins.shell(), df.escape).unwrap_or_default() {
            let (k, d) = match w.split_once('=') {
                Some((k, d)) => (k.to_string(), Some(d.to_string())),
                None => (w.clone(), None),
            };
            let v = match args.get(&k) {
                Some(v) => Some(v.clone()),
                None => d.and_then(|d| {
                    words::process_word(&d, &|n: &str| globals.get(n).cloned(), df.escape).ok()
                }),
            };
            if let Some(v) = v {
                globals.insert(k, v);
            }
        }
    }
    globals
}

/// The Dockerfile with each `FROM` of a pulled speculative image pointing at its digest
/// reference; `None` when nothing was pulled. `names[i]` is stage i's resolved image.
pub(super) fn rewrite_from(
    df: &dockerfile::Dockerfile,
    text: &str,
    names: &[Option<String>],
    pulled: &[Pulled],
) -> Option<String> {
    if pulled.is_empty() {
        return None;
    }
    // Byte offset of each line's start (1-based lines).
    let mut starts = vec![0usize];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    for (stage, name) in df.stages.iter().zip(names) {
        let Some(p) = pulled.iter().find(|p| Some(&p.name) == name.as_ref()) else {
            continue;
        };
        let Some(&start) = starts.get(stage.line.saturating_sub(1)) else {
            continue;
        };
        // The base is the first occurrence of its written form after the FROM keyword
        // (flags such as --platform come before it and cannot contain it whole).
        let rest = &text[start..];
        let Some(kw) = rest.to_ascii_lowercase().find("from") else {
            continue;
        };
        let after = start + kw + 4;
        if let Some(off) = text[after..].find(stage.base.as_str()) {
            edits.push((after + off, after + off + stage.base.len(), &p.digest_ref));
        }
    }
    let mut out = text.to_string();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (a, b, with) in edits {
        out.replace_range(a..b, with);
    }
    Some(out)
}

/// A Dockerfile sent beside the context under a name of its own.
pub(super) fn dockerfile_outside(text: &str) -> (String, Option<(String, Vec<u8>)>) {
    let name = format!(
        ".gantry-dockerfile-{}",
        &Digest::sha256(text.as_bytes()).hex()[..12]
    );
    (name.clone(), Some((name, text.as_bytes().to_vec())))
}

/// The Dockerfile's name inside the context tar; a Dockerfile outside the context is
/// added under a name of its own (as the docker CLI does).
pub(super) fn dockerfile_in_context(
    root: &Path,
    df: &Path,
    text: &str,
) -> (String, Option<(String, Vec<u8>)>) {
    let real = std::fs::canonicalize(df).unwrap_or_else(|_| PathBuf::from(df));
    if let Ok(rel) = real.strip_prefix(root) {
        return (rel.to_string_lossy().replace('\\', "/"), None);
    }
    dockerfile_outside(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_outside_context_is_added() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir_all(root.join("ctx/sub")).unwrap();
        std::fs::write(root.join("ctx/sub/Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(root.join("Other"), "FROM scratch\n").unwrap();
        let (n, extra) =
            dockerfile_in_context(&root.join("ctx"), &root.join("ctx/sub/Dockerfile"), "");
        assert_eq!((n.as_str(), extra.is_none()), ("sub/Dockerfile", true));
        let (n, extra) =
            dockerfile_in_context(&root.join("ctx"), &root.join("Other"), "FROM scratch\n");
        assert!(n.starts_with(".gantry-dockerfile-"));
        assert_eq!(extra.unwrap().1, b"FROM scratch\n");
    }

    #[test]
    fn speculative_from_lines_point_at_the_digest() {
        let text = "ARG BASE=example/base:1\nFROM --platform=linux/amd64 ${BASE} AS build\nRUN true\nfrom example/base:1\nFROM python:3.12\n";
        let df = dockerfile::parse("Dockerfile", text).unwrap();
        let names = vec![
            Some("example/base:1".to_string()),
            Some("example/base:1".to_string()),
            Some("python:3.12".to_string()),
        ];
        let pulled = [Pulled {
            name: "example/base:1".into(),
            digest_ref: "127.0.0.1:5000/example/base@sha256:ab".into(),
        }];
        let out = rewrite_from(&df, text, &names, &pulled).unwrap();
        assert_eq!(
            out,
            "ARG BASE=example/base:1\nFROM --platform=linux/amd64 127.0.0.1:5000/example/base@sha256:ab AS build\nRUN true\nfrom 127.0.0.1:5000/example/base@sha256:ab\nFROM python:3.12\n"
        );
        assert_eq!(rewrite_from(&df, text, &names, &[]), None);
    }
}
