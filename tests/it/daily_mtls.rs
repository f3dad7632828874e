//! Issue 15, mutual TLS: a registry that requires client certificates (`gantry registry
//! serve --tls-client-ca FILE`) serves gantry's client when the host's certs.d directory
//! holds the pair `client.cert` + `client.key` (podman's user directory,
//! `$HOME/.config/containers/certs.d/HOST:PORT/`, with HOME a temp dir); without the pair
//! gantry fails with one line and exit 1.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::common::{GantryServer, image, run, run_fail};
use crate::daily_tls::gantry;

/// A throwaway client CA (written to `dir/client-ca.crt`) and a client certificate it
/// signed: (certificate PEM, key PEM).
fn client_ca_and_pair(dir: &Path) -> (String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "gantry test client CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("client-ca.crt"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "zuul");
    leaf.distinguished_name = dn;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn client_certificate_from_certs_d_is_presented_and_required() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = client_ca_and_pair(tmp.path());
    let tls = tmp.path().join("tls");
    let reg = GantryServer::registry(&[
        "--tls-self-signed",
        tls.to_str().unwrap(),
        "--tls-client-ca",
        tmp.path().join("client-ca.crt").to_str().unwrap(),
    ]);
    let host = reg.host();
    let home = tmp.path().join("home");
    let certs_d = home.join(".config/containers/certs.d").join(&host);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(tls.join("ca.crt"), certs_d.join("ca.crt")).unwrap();

    // The server CA alone: the registry refuses the handshake; one line, exit 1.
    let (_, err, code) = run_fail(gantry(&home).args(["image", "catalog", &host]));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&host), "names the host: {err}");
    assert!(!err.contains("panicked"), "{err}");

    // With the pair beside the CA: a push and a listing succeed.
    std::fs::write(certs_d.join("client.cert"), &cert).unwrap();
    std::fs::write(certs_d.join("client.key"), &key).unwrap();
    let layout = tmp.path().join("layout");
    let digest = image::single_image_layout(&layout, "v1", &[b"mtls layer".to_vec()]);
    let out = run(gantry(&home).args([
        "image",
        "copy",
        "-q",
        &format!("oci:{}:v1", layout.display()),
        &format!("{host}/demo/mtls:v1"),
    ]));
    assert_eq!(out.trim(), digest);
    let ls = run(gantry(&home).args(["image", "ls", "--long", &format!("{host}/demo/mtls")]));
    assert_eq!(ls, format!("v1\t{digest}\n"));
}
