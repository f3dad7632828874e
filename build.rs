//! Build script: records the git commit gantry is built from (`gantry version`,
//! `--version`). Outside a git checkout (a crate tarball, `cargo install` from a copy) the
//! commit is "unknown" and the build goes on; `GANTRY_GIT_COMMIT` overrides both.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
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
