//! Writing credentials where docker, podman and skopeo read them: docker's `config.json`
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`) — `auths` entries, or the
//! credential helper the file names (`credHelpers` for this host, else `credsStore`), run
//! as `docker-credential-<helper> store|erase` exactly as docker runs it.
//!
//! Owns only the file and the helper protocol; checking the credentials against the
//! registry is the caller's (`gantry login` pings first). Every other key of the file is
//! kept as it was; the file is replaced atomically with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use super::auth::docker_config_path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no docker configuration directory: set DOCKER_CONFIG or HOME")]
    NoPath,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a docker client configuration: {why}")]
    Parse { path: PathBuf, why: String },
    #[error("credential helper docker-credential-{helper} {action} for {host}: {why}")]
    Helper {
        helper: String,
        action: &'static str,
        host: String,
        why: String,
    },
}

/// Where credentials for `host` went (or came from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// An `auths` entry in this file.
    File(PathBuf),
    /// This credential helper (`docker-credential-<name>`).
    Helper(String),
}

impl std::fmt::Display for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stored::File(p) => write!(f, "{}", p.display()),
            Stored::Helper(h) => write!(f, "credential helper docker-credential-{h}"),
        }
    }
}

/// The key docker uses for `host` (Docker Hub's historical index URL for docker.io).
pub fn server_key(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        h => h.to_string(),
    }
}

fn load(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    match std::fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(ConfigError::Parse {
                path: path.to_path_buf(),
                why: "not a JSON object".into(),
            }),
            Err(e) => Err(ConfigError::Parse {
                path: path.to_path_buf(),
                why: e.to_string(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(source) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn save(path: &Path, cfg: &Map<String, Value>) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    let mut text = serde_json::to_vec_pretty(cfg).map_err(|e| io(std::io::Error::other(e)))?;
    text.push(b'\n');
    tmp.write_all(&text).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// The helper configured for `key`: `credHelpers[key]`, else `credsStore`.
fn helper_for(cfg: &Map<String, Value>, key: &str) -> Option<String> {
    cfg.get("credHelpers")
        .and_then(|h| h.get(key))
        .or_else(|| cfg.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin (docker's protocol).
fn run_helper(
    helper: &str,
    action: &'static str,
    host: &str,
    input: &[u8],
) -> Result<(), ConfigError> {
    let err = |why: String| ConfigError::Helper {
        helper: helper.to_string(),
        action,
        host: host.to_string(),
        why,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let msg = if msg.is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        } else {
            msg
        };
        Err(err(format!("{} ({msg})", out.status)))
    }
}

/// Stores `username`/`password` for `host`, as `docker login` does. Blocking (file and
/// helper process): call it off the async runtime.
pub fn store(host: &str, username: &str, password: &str) -> Result<Stored, ConfigError> {
    let path = docker_config_path().ok_or(ConfigError::NoPath)?;
    let key = server_key(host);
    let mut cfg = load(&path)?;
    if let Some(helper) = helper_for(&cfg, &key) {
        let input = serde_json::json!({"ServerURL": key, "Username": username, "Secret": password});
        run_helper(&helper, "store", host, input.to_string().as_bytes())?;
        // docker keeps an empty auths entry so the host shows as logged in
        with_auths(&mut cfg, |a| a.insert(key, Value::Object(Map::new())));
        save(&path, &cfg)?;
        return Ok(Stored::Helper(helper));
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    with_auths(&mut cfg, |a| {
        a.insert(key, serde_json::json!({ "auth": auth }))
    });
    save(&path, &cfg)?;
    Ok(Stored::File(path))
}

/// Removes the credentials for `host`; `Ok(None)` when there were none.
pub fn erase(host: &str) -> Result<Option<Stored>, ConfigError> {
    let path = docker_config_path().ok_or(ConfigError::NoPath)?;
    let key = server_key(host);
    let mut cfg = load(&path)?;
    let had_entry = with_auths(&mut cfg, |a| a.remove(&key)).is_some();
    if let Some(helper) = helper_for(&cfg, &key) {
        run_helper(&helper, "erase", host, key.as_bytes())?;
        save(&path, &cfg)?;
        return Ok(Some(Stored::Helper(helper)));
    }
    if had_entry {
        save(&path, &cfg)?;
        Ok(Some(Stored::File(path)))
    } else {
        Ok(None)
    }
}

/// Runs `f` on the `auths` object (created when missing or not an object).
fn with_auths<R>(cfg: &mut Map<String, Value>, f: impl FnOnce(&mut Map<String, Value>) -> R) -> R {
    let mut auths = match cfg.remove("auths") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let r = f(&mut auths);
    cfg.insert("auths".to_string(), Value::Object(auths));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_key_is_the_index_url() {
        assert_eq!(server_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(server_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn helper_per_host_wins_over_store() {
        let cfg: Map<String, Value> =
            serde_json::from_str(r#"{"credsStore":"desktop","credHelpers":{"quay.io":"pass"}}"#)
                .unwrap();
        assert_eq!(helper_for(&cfg, "quay.io").as_deref(), Some("pass"));
        assert_eq!(helper_for(&cfg, "ghcr.io").as_deref(), Some("desktop"));
    }
}
