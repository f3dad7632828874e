//! TLS for the registry: load a certificate and key, or make a private CA and a leaf
//! certificate for the hosts we listen on (`--tls-self-signed DIR`).
//!
//! ```text
//! DIR/ca.crt       the CA clients trust (docker certs.d, skopeo --cert-dir, --ca-cert)
//! DIR/ca.key       the CA key (0600), reused on restart so clients keep trusting us
//! DIR/server.crt   leaf for the SANs asked for, signed by the CA (remade on each start)
//! DIR/server.key   leaf key (0600)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Pem(PathBuf, String),
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Files written by [`self_signed`].
#[derive(Clone, Debug)]
pub struct SelfSigned {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

const CA_NAME: &str = "gantry registry CA";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|e| TlsError::Io(path.into(), e))?;
    f.write_all(data.as_bytes())
        .map_err(|e| TlsError::Io(path.into(), e))
}

/// Seeds aws-lc's random generator on a background thread, so the first key, certificate
/// or TLS handshake of the process does not wait for it.
///
/// Why: aws-lc seeds its process-wide DRBG from CPU jitter entropy (plus the OS) the
/// first time any thread asks for random bytes — tens of milliseconds of timing loops,
/// built at -O0 on purpose, so as slow in a release build. Measured as the bimodal
/// 4 ms / 68 ms "ready in" of the buildset registry: whichever step came first paid it.
/// Seeding early on another thread overlaps it with argument parsing and config loading;
/// the entropy sources and the generator are unchanged.
pub fn warm_up_rng() {
    let _ = std::thread::Builder::new()
        .name("rng-seed".into())
        .spawn(|| {
            let mut b = [0u8; 16];
            let _ = aws_lc_rs::rand::fill(&mut b);
        });
}

/// Makes (or reuses) a CA in `dir` and issues a leaf for `hosts` (DNS names or IPs).
pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<SelfSigned, TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Io(dir.into(), e))?;
    let ca_key_path = dir.join("ca.key");
    let ca_cert_path = dir.join("ca.crt");
    let params = ca_params()?;
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) if ca_cert_path.exists() => KeyPair::from_pem(&pem)
            .map_err(|e| TlsError::Pem(ca_key_path.clone(), e.to_string()))?,
        _ => {
            let key = KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            std::fs::write(&ca_cert_path, cert.pem())
                .map_err(|e| TlsError::Io(ca_cert_path.clone(), e))?;
            key
        }
    };
    let issuer = Issuer::new(params, ca_key);
    let mut sans: Vec<String> = hosts.to_vec();
    for default in ["127.0.0.1", "::1", "localhost"] {
        if !sans.iter().any(|s| s == default) {
            sans.push(default.to_string());
        }
    }
    let mut leaf = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        hosts.first().map(String::as_str).unwrap_or("localhost"),
    );
    leaf.distinguished_name = dn;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_key = KeyPair::generate()?;
    let cert = leaf.signed_by(&leaf_key, &issuer)?;
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    std::fs::write(&cert_path, cert.pem()).map_err(|e| TlsError::Io(cert_path.clone(), e))?;
    write_private(&key_path, &leaf_key.serialize_pem())?;
    Ok(SelfSigned {
        ca_cert: ca_cert_path,
        cert: cert_path,
        key: key_path,
    })
}

/// A rustls server configuration from PEM files (HTTP/2 and HTTP/1.1 offered).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with_client_ca(cert, key, None)
}

/// [`server_config`] that, with `client_ca` (PEM, one or more CAs), requires every client
/// to present a certificate signed by one of them (mutual TLS).
pub fn server_config_with_client_ca(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Pem(cert.into(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(cert.into(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(cert.into(), "no certificate found".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem(key.into(), e.to_string()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| TlsError::Pem(ca.into(), e.to_string()))?
            {
                let c = c.map_err(|e| TlsError::Pem(ca.into(), e.to_string()))?;
                roots.add(c)?;
            }
            if roots.is_empty() {
                return Err(TlsError::Pem(ca.into(), "no certificate found".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| TlsError::Pem(ca.into(), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
