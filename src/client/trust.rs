//! Which certificates a registry host is trusted with, the way docker and podman decide:
//! CA files (`*.crt`) and client certificates (`*.cert` with the `*.key` of the same name)
//! from `/etc/docker/certs.d/HOST[:PORT]/`, `/etc/containers/certs.d/HOST[:PORT]/` and
//! `$HOME/.config/containers/certs.d/HOST[:PORT]/`, plus `--ca-cert` files; and what a
//! failed TLS handshake means — a certificate we do not trust (never a reason to try plain
//! HTTP) or a server that does not speak TLS at all (a plain-HTTP registry on loopback).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The system's CA certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else the OpenSSL
/// locations), read once per process; the ones rustls cannot use as a trust anchor are
/// left out, as rustls-platform-verifier does.
///
/// Why once: reqwest's platform verifier re-reads and re-parses the whole system store
/// (`/etc/ssl/certs`: ~150 files) for every client it builds, and gantry builds one per
/// registry per operation — measured as 8 loads in one seed `gantry run`, the largest
/// part of each image copy between two in-process registries. The trust decision is the
/// same: webpki over the same roots plus the host's certs.d and `--ca-cert` files.
pub fn system_roots() -> &'static [reqwest::Certificate] {
    static ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::debug!("loading the system CA certificates: {e}");
        }
        loaded
            .certs
            .into_iter()
            .filter(|der| rustls::RootCertStore::empty().add(der.clone()).is_ok())
            .filter_map(|der| reqwest::Certificate::from_der(der.as_ref()).ok())
            .collect()
    })
}

/// The certs.d roots docker, podman and skopeo read, in their order.
pub fn default_certs_d_roots() -> Vec<PathBuf> {
    let mut roots = vec![
        PathBuf::from("/etc/docker/certs.d"),
        PathBuf::from("/etc/containers/certs.d"),
    ];
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(PathBuf::from(home).join(".config/containers/certs.d"));
    }
    roots
}

/// What the certs.d directories hold for one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCerts {
    /// CA certificates (PEM), `*.crt`.
    pub cas: Vec<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS: `client.cert` + `client.key`.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Reads `<root>/<host>/` for every root (a missing directory is simply nothing).
pub fn host_certs(roots: &[PathBuf], host: &str) -> HostCerts {
    let mut out = HostCerts::default();
    // A host name is a single path component; anything else is not looked up.
    if host.is_empty() || host.contains(['/', '\\']) || host.starts_with('.') {
        return out;
    }
    for root in roots {
        let dir = root.join(host);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            match p.extension().and_then(|e| e.to_str()) {
                Some("crt") => out.cas.push(p),
                Some("cert") if out.identity.is_none() => {
                    let key = p.with_extension("key");
                    if key.is_file() {
                        out.identity = Some((p, key));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Why a TLS connection failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate is not trusted; the reason in words.
    Certificate(String),
    /// The server answered, but not with TLS (a plain-HTTP registry).
    NotTls,
}

/// Finds the rustls error inside a request error, if the failure was TLS's. The rustls
/// error sits inside (possibly nested) `io::Error`s, whose `source()` skips it, so those
/// are opened with `get_ref()`.
pub fn classify(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(match r {
            rustls::Error::InvalidCertificate(ce) => TlsFailure::Certificate(why(ce)),
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. } => TlsFailure::NotTls,
            other => TlsFailure::Certificate(other.to_string()),
        });
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(f) = classify(inner)
    {
        return Some(f);
    }
    e.source().and_then(classify)
}

fn why(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => "it is signed by an unknown authority".into(),
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for this host name".into()
        }
        C::Revoked => "it has been revoked".into(),
        C::BadSignature => "its signature is invalid".into(),
        other => format!("{other:?}"),
    }
}

/// The one line a user sees, naming the host, the reason and the two ways to trust it.
pub fn untrusted_message(host: &str, why: &str) -> String {
    format!(
        "TLS: the certificate of {host} is not trusted: {why}; trust its CA with --ca-cert FILE, or put it in /etc/docker/certs.d/{host}/ca.crt (where docker, podman and skopeo look too)"
    )
}

/// Reads a PEM file for the HTTP client.
pub fn read_pem(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_layout() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        let b = t.path().join("b");
        std::fs::create_dir_all(a.join("127.0.0.1:5000")).unwrap();
        std::fs::create_dir_all(b.join("127.0.0.1:5000")).unwrap();
        std::fs::write(a.join("127.0.0.1:5000/ca.crt"), "x").unwrap();
        std::fs::write(b.join("127.0.0.1:5000/extra.crt"), "x").unwrap();
        std::fs::write(b.join("127.0.0.1:5000/client.cert"), "x").unwrap();
        std::fs::write(b.join("127.0.0.1:5000/client.key"), "x").unwrap();
        let c = host_certs(
            &[a.clone(), b.clone(), t.path().join("missing")],
            "127.0.0.1:5000",
        );
        assert_eq!(
            c.cas,
            vec![
                a.join("127.0.0.1:5000/ca.crt"),
                b.join("127.0.0.1:5000/extra.crt")
            ]
        );
        assert_eq!(
            c.identity,
            Some((
                b.join("127.0.0.1:5000/client.cert"),
                b.join("127.0.0.1:5000/client.key")
            ))
        );
        assert_eq!(host_certs(&[a], "../etc"), HostCerts::default());
    }
}
