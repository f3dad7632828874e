//! Project key files: `<dir>/<project>.pem` (private, mode 0600) and `<dir>/<project>.pub`.
//!
//! Owns: where a project's key pair lives and writing it safely. This is the one place in
//! `job` that writes files, and only when asked (`gantry secret keygen`). Must not: log or
//! print key material.

use std::path::{Path, PathBuf};

use crate::job::secrets::{PrivateKey, PublicKey, SecretError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "a key for project \"{project}\" already exists at {path} (remove it first to replace it)"
    )]
    Exists { project: String, path: PathBuf },
    #[error(
        "no key for project \"{project}\" at {path}: run `gantry secret keygen --project {project}`"
    )]
    Missing { project: String, path: PathBuf },
    #[error("project name \"{0}\" cannot be a key file name")]
    BadProject(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: SecretError,
    },
}

/// Paths of a project's private and public key (`org/app` → `<dir>/org/app.pem`).
pub fn key_paths(dir: &Path, project: &str) -> Result<(PathBuf, PathBuf), KeyError> {
    let bad = project.is_empty()
        || project
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\\'));
    if bad {
        return Err(KeyError::BadProject(project.to_string()));
    }
    Ok((
        dir.join(format!("{project}.pem")),
        dir.join(format!("{project}.pub")),
    ))
}

/// Generate an RSA-4096 pair for `project` and write it; refuses to replace a key.
pub fn keygen(dir: &Path, project: &str) -> Result<(PathBuf, PathBuf), KeyError> {
    let (private, public) = key_paths(dir, project)?;
    if private.exists() {
        return Err(KeyError::Exists {
            project: project.to_string(),
            path: private,
        });
    }
    let key = PrivateKey::generate().map_err(|source| KeyError::Key {
        path: private.clone(),
        source,
    })?;
    let key_pem = key.to_pem().map_err(|source| KeyError::Key {
        path: private.clone(),
        source,
    })?;
    let pub_pem = key.public_key().to_pem().map_err(|source| KeyError::Key {
        path: public.clone(),
        source,
    })?;
    if let Some(parent) = private.parent() {
        std::fs::create_dir_all(parent).map_err(|source| KeyError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    write_private(&private, key_pem.as_bytes())?;
    std::fs::write(&public, pub_pem).map_err(|source| KeyError::Io {
        path: public.clone(),
        source,
    })?;
    Ok((private, public))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

pub fn load_private(dir: &Path, project: &str) -> Result<PrivateKey, KeyError> {
    let (private, _) = key_paths(dir, project)?;
    let pem = read(&private, project)?;
    PrivateKey::from_pem(&pem).map_err(|source| KeyError::Key {
        path: private,
        source,
    })
}

pub fn load_public(dir: &Path, project: &str) -> Result<PublicKey, KeyError> {
    let (_, public) = key_paths(dir, project)?;
    let pem = read(&public, project)?;
    PublicKey::from_pem(&pem).map_err(|source| KeyError::Key {
        path: public,
        source,
    })
}

fn read(path: &Path, project: &str) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            KeyError::Missing {
                project: project.to_string(),
                path: path.to_path_buf(),
            }
        } else {
            KeyError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}
