//! Client errors: structured (method, redacted URL, status, the registry's error codes)
//! and able to say whether a retry could help.

use std::fmt;

/// The `errors` of a registry's JSON error body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryCodes(pub Vec<(String, String)>);

impl fmt::Display for RegistryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(c, m)| {
                if m.is_empty() {
                    c.clone()
                } else {
                    format!("{c}: {m}")
                }
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{method} {url}: HTTP {status}{}", if codes.0.is_empty() { String::new() } else { format!(" ({codes})") })]
    Status {
        method: String,
        url: String,
        status: u16,
        codes: RegistryCodes,
    },
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
    },
    #[error("authentication to {registry} failed: {why}")]
    Auth { registry: String, why: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: digest mismatch, expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: {size} bytes is over the limit of {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{what}: transfer stalled ({bytes} bytes in {seconds} s)")]
    Stalled {
        what: String,
        bytes: u64,
        seconds: u64,
    },
    #[error("{0}")]
    Refused(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The server's certificate is not trusted, or an `https://` registry does not speak
    /// TLS; never retried, never downgraded. The message names the host, why, and how to
    /// trust it.
    #[error("{0}")]
    Tls(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// True when repeating the same request may succeed (connection trouble, 408, 429,
    /// 5xx); see `retry.rs`.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => super::retry::retryable_status(*status),
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Removes credentials and query strings (upload state, tokens) from a URL for messages.
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}
