//! Docker token authentication (distribution `docs/spec/auth/token.md`, `jwt.md`,
//! `scope.md`): the registry answers 401 with a Bearer challenge naming a realm, service
//! and scope; the client fetches a JWT from the realm and retries with it.
//!
//! Tokens are ES256 JWTs signed with a key generated per instance (or read from a PEM
//! file shared by several instances). Nothing is signed with a constant: a token is only
//! as good as this instance's key.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// One resource access request or grant: `repository:library/busybox:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    pub fn repository(name: &str, actions: &[&str]) -> Access {
        Access {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn catalog() -> Access {
        Access {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    /// Parses a scope string (scope.md): `type:name:action,action`. The name may contain
    /// `:` (a registry host with a port), so type is before the first colon and actions
    /// after the last.
    pub fn parse_scope(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.into(),
            name: name.into(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
        })
    }

    pub fn to_scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }

    /// True when `granted` allows every action of `self`.
    pub fn satisfied_by(&self, granted: &[Access]) -> bool {
        let have: BTreeSet<&str> = granted
            .iter()
            .filter(|g| g.kind == self.kind && g.name == self.name)
            .flat_map(|g| g.actions.iter().map(String::as_str))
            .collect();
        have.contains("*") || self.actions.iter().all(|a| have.contains(a.as_str()))
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading token key {0}: {1}")]
    Read(String, std::io::Error),
    #[error("token key {0}: {1}")]
    Key(String, String),
    #[error("signing token: {0}")]
    Sign(String),
}

/// Issues and checks tokens for one service.
pub struct TokenAuthority {
    pub service: String,
    pub issuer: String,
    pub lifetime: Duration,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenAuthority {
    /// A fresh P-256 key for this instance only.
    pub fn generate(service: &str) -> Result<TokenAuthority, TokenError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TokenError::Key("generated".into(), e.to_string()))?;
        Self::from_key_pair(service, &kp, "generated")
    }

    /// A PEM (PKCS#8) P-256 private key from a file, e.g. shared by several replicas.
    pub fn from_file(service: &str, path: &Path) -> Result<TokenAuthority, TokenError> {
        let name = path.display().to_string();
        let pem = std::fs::read_to_string(path).map_err(|e| TokenError::Read(name.clone(), e))?;
        let kp = rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| TokenError::Key(name.clone(), e.to_string()))?;
        Self::from_key_pair(service, &kp, &name)
    }

    fn from_key_pair(
        service: &str,
        kp: &rcgen::KeyPair,
        name: &str,
    ) -> Result<TokenAuthority, TokenError> {
        let key_err = |e: jsonwebtoken::errors::Error| TokenError::Key(name.into(), e.to_string());
        let encoding = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).map_err(key_err)?;
        let decoding = DecodingKey::from_ec_pem(kp.public_key_pem().as_bytes()).map_err(key_err)?;
        let issuer = format!("gantry/{service}");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "nbf"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(TokenAuthority {
            service: service.into(),
            issuer,
            lifetime: Duration::from_secs(300),
            encoding,
            decoding,
            validation,
        })
    }

    /// Signs a token for `subject` with the `granted` access.
    pub fn issue(
        &self,
        subject: &str,
        granted: Vec<Access>,
    ) -> Result<(String, Claims), TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.into(),
            aud: self.service.clone(),
            exp: now + self.lifetime.as_secs(),
            nbf: now.saturating_sub(1),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access: granted,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, claims))
    }

    /// Verifies signature, issuer, audience and expiry; returns the claims.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let a = Access::parse_scope("repository:127.0.0.1:5000/x:pull,push").unwrap();
        assert_eq!(a.name, "127.0.0.1:5000/x");
        assert_eq!(a.actions, vec!["pull", "push"]);
        assert_eq!(a.to_scope(), "repository:127.0.0.1:5000/x:pull,push");
        assert!(Access::parse_scope("nonsense").is_none());
        let need = Access::repository("x", &["pull"]);
        assert!(need.satisfied_by(&[Access::repository("x", &["pull", "push"])]));
        assert!(!need.satisfied_by(&[Access::repository("y", &["pull"])]));
        assert!(need.satisfied_by(&[Access::repository("x", &["*"])]));
    }

    #[test]
    fn tokens_verify_only_with_their_key() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let a = TokenAuthority::generate("svc").unwrap();
        let b = TokenAuthority::generate("svc").unwrap();
        let (t, _) = a
            .issue("zuul", vec![Access::repository("x", &["pull"])])
            .unwrap();
        let c = a.verify(&t).unwrap();
        assert_eq!(c.sub, "zuul");
        assert!(
            b.verify(&t).is_none(),
            "a token from another instance must not verify"
        );
        let mut forged = t.clone();
        forged.pop();
        assert!(a.verify(&forged).is_none());
    }
}
