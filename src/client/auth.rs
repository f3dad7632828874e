//! Credentials (`--creds`, environment, `~/.docker/config.json` with `auths`, `credHelpers`
//! and `credsStore`) and `WWW-Authenticate` challenge parsing.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use super::ClientError;

/// How to authenticate to one registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`).
    IdentityToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}:***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

impl Credentials {
    /// `user:password` as given to `--creds`.
    pub fn parse(s: &str) -> Result<Credentials, ClientError> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials::Basic {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(ClientError::Invalid(
                "credentials must be given as user:password".into(),
            )),
        }
    }

    /// The secret part, for log redaction.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Credentials::Anonymous => None,
            Credentials::Basic { password, .. } => Some(password),
            Credentials::IdentityToken(t) => Some(t),
        }
    }

    /// Looks `registry` up in the Docker client configuration (`$DOCKER_CONFIG/config.json`
    /// or `~/.docker/config.json`); anonymous when nothing matches.
    pub fn from_docker_config(registry: &str) -> Credentials {
        let Some(path) = docker_config_path() else {
            return Credentials::Anonymous;
        };
        let Ok(text) = std::fs::read(&path) else {
            return Credentials::Anonymous;
        };
        let keys: Vec<String> = if registry == crate::oci::DOCKER_HUB {
            vec![
                "https://index.docker.io/v1/".into(),
                "docker.io".into(),
                "index.docker.io".into(),
            ]
        } else {
            vec![
                registry.to_string(),
                format!("https://{registry}"),
                format!("http://{registry}"),
            ]
        };
        for key in keys {
            match docker_credential::get_credential_from_reader(text.as_slice(), &key) {
                Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
                    return Credentials::Basic {
                        username: u,
                        password: p,
                    };
                }
                Ok(docker_credential::DockerCredential::IdentityToken(t)) => {
                    return Credentials::IdentityToken(t);
                }
                Err(_) => continue,
            }
        }
        Credentials::Anonymous
    }
}

pub(crate) fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// A parsed `WWW-Authenticate` header: `Bearer realm="…",service="…",scope="…"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key = rest[start..i].trim().to_ascii_lowercase();
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                v.push(b[i] as char);
                i += 1;
            }
            i += 1;
            v
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            rest[s..i].trim().to_string()
        };
        params.insert(key, value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(r#"Bearer realm="https://h/token",service="gantry",scope="repository:a:pull,push",error="invalid_token""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://h/token");
        assert_eq!(c.params["scope"], "repository:a:pull,push");
        assert_eq!(c.params["error"], "invalid_token");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
    }

    #[test]
    fn creds() {
        assert_eq!(
            Credentials::parse("u:p:q").unwrap(),
            Credentials::Basic {
                username: "u".into(),
                password: "p:q".into()
            }
        );
        assert!(Credentials::parse("nopass").is_err());
        assert_eq!(
            format!("{:?}", Credentials::parse("u:secret").unwrap()),
            "Basic(u:***)"
        );
    }

    #[test]
    fn docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "zuul:pw");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        // SAFETY of env: this test is the only one touching DOCKER_CONFIG in unit tests.
        let text = std::fs::read(dir.path().join("config.json")).unwrap();
        let c = docker_credential::get_credential_from_reader(text.as_slice(), "127.0.0.1:5000")
            .unwrap();
        assert!(
            matches!(c, docker_credential::DockerCredential::UsernamePassword(u, p) if u == "zuul" && p == "pw")
        );
    }
}
