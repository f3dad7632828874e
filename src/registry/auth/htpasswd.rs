//! htpasswd files with bcrypt entries only (`user:$2y$…`), as Apache and Docker write them.
//!
//! bcrypt is slow on purpose (tens of ms), and clients send Basic credentials on every
//! request, so a verified password is remembered as a salted SHA-256 and compared in
//! constant time; a wrong password always pays the full bcrypt cost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{file}:{line}: {why}")]
    Entry {
        file: PathBuf,
        line: usize,
        why: String,
    },
}

pub struct Htpasswd {
    users: HashMap<String, String>,
    salt: [u8; 32],
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| HtpasswdError::Read(path.into(), e))?;
        Htpasswd::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |why: &str| HtpasswdError::Entry {
                file: path.into(),
                line: i + 1,
                why: why.to_string(),
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected user:hash"))?;
            if user.is_empty() {
                return Err(err("empty user name"));
            }
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(err(&format!(
                    "user {user:?}: only bcrypt entries are accepted (create one with `gantry registry htpasswd {user}` or `htpasswd -B`)"
                )));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd {
            users,
            salt: rand::random(),
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn fingerprint(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Checks a user's password. Blocking (bcrypt): call from `spawn_blocking`.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let fp = self.fingerprint(user, password);
        if let Some(known) = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            && bool::from(known.ct_eq(&fp))
        {
            return true;
        }
        // Unknown users pay the bcrypt cost too, so timing does not reveal who exists.
        const DUMMY: &str = "$2b$10$abcdefghijklmnopqrstuuAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let hash = self.users.get(user).map(String::as_str).unwrap_or(DUMMY);
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && self.users.contains_key(user);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(user.to_string(), fp);
        }
        ok
    }
}

/// A bcrypt htpasswd line for `user`.
pub fn entry(user: &str, password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    Ok(format!("{user}:{}", bcrypt::hash(password, cost)?))
}

/// A random password of `len` characters from [A-Za-z0-9].
pub fn random_password(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_bcrypt_and_rejects_others() {
        let line = entry("zuul", "s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# c\n{line}\n"), Path::new("f")).unwrap();
        assert!(h.verify("zuul", "s3cret"));
        assert!(h.verify("zuul", "s3cret")); // cached path
        assert!(!h.verify("zuul", "wrong"));
        assert!(!h.verify("nobody", "s3cret"));
        let e = Htpasswd::parse("a:{SHA}xyz\n", Path::new("f"))
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("f:1: user \"a\": only bcrypt"),
            "{e}"
        );
        assert_eq!(random_password(20).len(), 20);
    }
}
