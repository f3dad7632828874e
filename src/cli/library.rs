//! The shipped job library (`jobs/`, `playbooks/`) compiled into the binary, so an
//! installed `gantry` works alone: when no library is found beside the binary, the embedded
//! copy is written once to `$XDG_CACHE_HOME/gantry/library-<hash>/` (or `~/.cache/…`,
//! else the temp dir) and used from there. The hash is of the contents, so a new binary
//! never reads an old copy and two versions never share one.

use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/library.rs"));
}

fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("gantry")
}

fn write_all(dir: &Path) -> std::io::Result<()> {
    for (rel, bytes) in embedded::FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, bytes)?;
    }
    Ok(())
}

/// `<cache>/library-<hash>/jobs`, written on first use; `None` when nothing can be written.
pub fn embedded_jobs_dir() -> Option<PathBuf> {
    let mut h = sha2::Sha256::default();
    for (rel, bytes) in embedded::FILES {
        sha2::Digest::update(&mut h, rel.as_bytes());
        sha2::Digest::update(&mut h, (bytes.len() as u64).to_le_bytes());
        sha2::Digest::update(&mut h, bytes);
    }
    let hash = hex::encode(sha2::Digest::finalize(h));
    let root = cache_root();
    let dir = root.join(format!("library-{}", &hash[..16]));
    if !dir.join("jobs").is_dir() {
        std::fs::create_dir_all(&root).ok()?;
        // Written aside and renamed into place: a concurrent gantry sees all or nothing.
        let tmp = tempfile::Builder::new()
            .prefix(".library-")
            .tempdir_in(&root)
            .ok()?;
        write_all(tmp.path()).ok()?;
        let staged = tmp.keep();
        if std::fs::rename(&staged, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
    }
    let jobs = dir.join("jobs");
    jobs.is_dir().then_some(jobs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_library_is_embedded() {
        let names: Vec<&str> = super::embedded::FILES.iter().map(|f| f.0).collect();
        assert!(names.contains(&"jobs/container-images.yaml"), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("playbooks/")),
            "{names:?}"
        );
    }
}
