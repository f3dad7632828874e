//! Who may do what: htpasswd (Basic), Docker token auth (Bearer), anonymous read.
//!
//! The dispatcher works out which [`Access`] a request needs and asks [`Auth::authorize`];
//! this module never sees storage. Credentials are compared in constant time and never
//! logged.

pub mod htpasswd;
pub mod token;

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use serde_json::json;

use super::error::{Code, RegistryError};
pub use htpasswd::Htpasswd;
pub use token::{Access, TokenAuthority};

/// The authenticated party of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
}

/// Authentication settings of one registry.
#[derive(Default)]
pub struct Auth {
    pub htpasswd: Option<Arc<Htpasswd>>,
    pub tokens: Option<TokenAuthority>,
    /// Pulls without credentials.
    pub anonymous_read: bool,
    /// Token realm URL; default: `<scheme>://<Host>/token` of the request.
    pub realm: Option<String>,
}

enum Presented {
    None,
    Basic(String, String),
    Bearer(String),
    Malformed,
}

fn presented(headers: &HeaderMap) -> Presented {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Presented::None;
    };
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return Presented::Malformed;
        };
        let Ok(s) = String::from_utf8(raw) else {
            return Presented::Malformed;
        };
        match s.split_once(':') {
            Some((u, p)) => Presented::Basic(u.to_string(), p.to_string()),
            None => Presented::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Presented::Bearer(rest.to_string())
    } else {
        Presented::Malformed
    }
}

fn read_only(needs: &[Access]) -> bool {
    !needs.is_empty()
        && needs
            .iter()
            .all(|a| a.kind == "repository" && a.actions.iter().all(|x| x == "pull"))
}

impl Auth {
    pub fn enabled(&self) -> bool {
        self.htpasswd.is_some() || self.tokens.is_some()
    }

    async fn check_password(&self, user: String, password: String) -> bool {
        let Some(h) = self.htpasswd.clone() else {
            return false;
        };
        tokio::task::spawn_blocking(move || h.verify(&user, &password))
            .await
            .unwrap_or(false)
    }

    fn realm(&self, base: &str) -> String {
        self.realm
            .clone()
            .unwrap_or_else(|| format!("{base}/token"))
    }

    fn bearer_challenge(
        &self,
        t: &TokenAuthority,
        base: &str,
        needs: &[Access],
        error: Option<&str>,
    ) -> String {
        let mut c = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm(base),
            t.service
        );
        if !needs.is_empty() {
            let scopes: Vec<String> = needs.iter().map(Access::to_scope).collect();
            c.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        c
    }

    /// Decides whether a request presenting `headers` may perform `needs`
    /// (empty: any authenticated party, as for `/v2/`). `base` is `scheme://host` of the
    /// request, for the token realm.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        needs: &[Access],
        base: &str,
    ) -> Result<Identity, RegistryError> {
        if !self.enabled() {
            return Ok(Identity::Anonymous);
        }
        if let Some(t) = &self.tokens {
            let unauthorized = |msg: &str, error: Option<&str>| {
                RegistryError::new(Code::Unauthorized, msg)
                    .with_challenge(self.bearer_challenge(t, base, needs, error))
                    .with_detail(json!(needs))
            };
            return match presented(headers) {
                Presented::Bearer(tok) => match t.verify(&tok) {
                    None => Err(unauthorized(
                        "invalid or expired token",
                        Some("invalid_token"),
                    )),
                    Some(claims) => {
                        if needs.iter().all(|n| n.satisfied_by(&claims.access)) {
                            Ok(if claims.sub.is_empty() {
                                Identity::Anonymous
                            } else {
                                Identity::User(claims.sub)
                            })
                        } else {
                            Err(unauthorized(
                                "token does not grant the requested access",
                                Some("insufficient_scope"),
                            ))
                        }
                    }
                },
                _ => Err(unauthorized("authentication required", None)),
            };
        }
        let challenge = "Basic realm=\"gantry\"".to_string();
        let unauthorized = |msg: &str| {
            RegistryError::new(Code::Unauthorized, msg).with_challenge(challenge.clone())
        };
        match presented(headers) {
            Presented::Basic(u, p) => {
                if self.check_password(u.clone(), p).await {
                    Ok(Identity::User(u))
                } else {
                    Err(unauthorized("invalid username or password"))
                }
            }
            Presented::None if self.anonymous_read && read_only(needs) => Ok(Identity::Anonymous),
            Presented::None => Err(unauthorized("authentication required")),
            _ => Err(unauthorized("unsupported authorization")),
        }
    }

    /// The token endpoint: `GET <realm>?service=…&scope=…` with optional Basic credentials.
    /// Wrong credentials are refused (401); no credentials get an anonymous token that
    /// carries pull access only when anonymous read is on.
    pub async fn token(
        &self,
        headers: &HeaderMap,
        query: &str,
    ) -> Result<serde_json::Value, RegistryError> {
        let Some(t) = &self.tokens else {
            return Err(RegistryError::new(
                Code::Unsupported,
                "token authentication is not enabled",
            ));
        };
        let pairs = query_pairs(query);
        if let Some((_, service)) = pairs.iter().find(|(k, _)| k == "service")
            && service != &t.service
        {
            return Err(RegistryError::new(
                Code::Denied,
                format!("unknown service {service:?}"),
            ));
        }
        let identity = match presented(headers) {
            Presented::Basic(u, p) => {
                if self.check_password(u.clone(), p).await {
                    Identity::User(u)
                } else {
                    return Err(RegistryError::new(
                        Code::Unauthorized,
                        "invalid username or password",
                    )
                    .with_challenge("Basic realm=\"gantry\"".into()));
                }
            }
            Presented::None => Identity::Anonymous,
            _ => {
                return Err(
                    RegistryError::new(Code::Unauthorized, "unsupported authorization")
                        .with_challenge("Basic realm=\"gantry\"".into()),
                );
            }
        };
        let mut granted = Vec::new();
        for (_, scope) in pairs.iter().filter(|(k, _)| k == "scope") {
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                let Some(req) = Access::parse_scope(s) else {
                    return Err(RegistryError::new(
                        Code::Denied,
                        format!("invalid scope {s:?}"),
                    ));
                };
                let allowed: Vec<String> = req
                    .actions
                    .iter()
                    .filter(|a| match (&identity, req.kind.as_str()) {
                        (Identity::User(_), "repository") => {
                            matches!(a.as_str(), "pull" | "push" | "delete" | "*")
                        }
                        (Identity::User(_), "registry") => req.name == "catalog",
                        (Identity::Anonymous, "repository") => self.anonymous_read && *a == "pull",
                        _ => false,
                    })
                    .cloned()
                    .collect();
                if !allowed.is_empty() {
                    granted.push(Access {
                        kind: req.kind,
                        name: req.name,
                        actions: allowed,
                    });
                }
            }
        }
        let subject = match &identity {
            Identity::User(u) => u.clone(),
            Identity::Anonymous => String::new(),
        };
        let (token, claims) = t
            .issue(&subject, granted)
            .map_err(|e| RegistryError::internal("token", e))?;
        Ok(json!({
            "token": token,
            "access_token": token,
            "expires_in": claims.exp - claims.iat,
        }))
    }
}

/// Decodes an `application/x-www-form-urlencoded` query string.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Form decoding of one key or value: `+` is a space, then `%XX` escapes (malformed
/// escapes stay as they are), invalid UTF-8 replaced.
fn percent_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        let q = query_pairs("service=gantry&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=x+y&n=");
        assert_eq!(q[0], ("service".into(), "gantry".into()));
        assert_eq!(q[1].1, "repository:a/b:pull,push");
        assert_eq!(q[2].1, "x y");
        assert_eq!(q[3], ("n".into(), "".into()));
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%41"), "aA");
    }
}
