//! Build script: records the git commit gantry is built from (`gantry version`,
//! `--version`; outside a git checkout the commit is "unknown" and the build goes on;
//! `GANTRY_GIT_COMMIT` overrides both), and lists the shipped job library (`jobs/`,
//! `playbooks/`) for embedding, so an installed binary works alone.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Every file under `dirs`, sorted, as (path relative to the crate, absolute path).
fn files(root: &std::path::Path, dirs: &[&str]) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        println!("cargo:rerun-if-changed={}", dir.display());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(root) {
                println!("cargo:rerun-if-changed={}", p.display());
                out.push((rel.to_string_lossy().replace('\\', "/"), p.clone()));
            }
        }
    }
    out.sort();
    out
}

fn embed_library() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut code = String::from(
        "/// The shipped job library: (path, bytes).\npub const FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, abs) in files(&root, &["jobs", "playbooks"]) {
        code.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            abs.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out =
        std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("library.rs");
    if let Err(e) = std::fs::write(&out, code) {
        panic!("writing {}: {e}", out.display());
    }
}

fn main() {
    embed_library();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GANTRY_GIT_COMMIT");
    let commit = std::env::var("GANTRY_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: HEAD itself and the ref it points to.
            if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
                println!("cargo:rerun-if-changed={head}");
            }
            // (only files that exist: a missing one would rerun this script every build)
            let mut watched = vec!["packed-refs".to_string()];
            watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
            for r in watched {
                if let Some(p) = git(&["rev-parse", "--git-path", &r])
                    && std::path::Path::new(&p).exists()
                {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=GANTRY_GIT_COMMIT={commit}");
}
