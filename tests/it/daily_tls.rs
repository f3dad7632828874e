//! Issue 15, trust like docker and podman: a registry's CA in certs.d (docker's, podman's
//! system and user directories) or `--ca-cert` is trusted; an untrusted certificate is one
//! clear line (host, reason, two ways to trust it) with exit 1 — no plain-HTTP fallback,
//! no retries.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::common::{GantryServer, gantry_bin, run, run_fail};

/// gantry with HOME (and docker's config) in `home`, no credentials from the environment.
pub(crate) fn gantry(home: &Path) -> Command {
    let mut c = Command::new(gantry_bin());
    c.env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("GANTRY_CREDS")
        .env_remove("GANTRY_LOG");
    c
}

/// Removes a directory made outside the test's temp dir (a throwaway CA in /etc).
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn untrusted_certificate_is_one_clear_line_without_http_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    let reg = GantryServer::registry(&["--tls-self-signed", tls.to_str().unwrap()]);
    let host = reg.host();
    let started = Instant::now();
    let (_, err, code) = run_fail(gantry(tmp.path()).args(["image", "catalog", &host]));
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let line = lines[0];
    assert!(
        line.contains(&format!("the certificate of {host} is not trusted")),
        "{line}"
    );
    assert!(line.contains("signed by an unknown authority"), "{line}");
    assert!(line.contains("--ca-cert FILE"), "{line}");
    assert!(
        line.contains(&format!("/etc/docker/certs.d/{host}/ca.crt")),
        "{line}"
    );
    assert!(
        !line.contains("HTTP version"),
        "no plain-HTTP attempt: {line}"
    );
    // No retries with backoff (they took 2.8 s before).
    assert!(
        started.elapsed().as_millis() < 2000,
        "{:?}",
        started.elapsed()
    );
    // The server saw no plain-HTTP request (it would log a request line for one it parsed).
    assert!(reg.requests().is_empty(), "{:?}", reg.requests());
}

#[test]
fn certs_d_and_ca_cert_are_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    let reg = GantryServer::registry(&["--tls-self-signed", tls.to_str().unwrap()]);
    let host = reg.host();
    let ca = tls.join("ca.crt");

    // --ca-cert
    let out = run(gantry(tmp.path())
        .args(["image", "catalog", &host, "--ca-cert"])
        .arg(&ca));
    assert_eq!(out, "");

    // $HOME/.config/containers/certs.d/HOST/ca.crt (podman's user directory)
    let home = tmp.path().join("home");
    let user_dir = home.join(".config/containers/certs.d").join(&host);
    std::fs::create_dir_all(&user_dir).unwrap();
    std::fs::copy(&ca, user_dir.join("ca.crt")).unwrap();
    run(gantry(&home).args(["image", "catalog", &host]));
    std::fs::remove_dir_all(&user_dir).unwrap();
    run_fail(gantry(&home).args(["image", "catalog", &host]));

    // /etc/docker/certs.d/HOST/ca.crt (docker's), a throwaway CA removed afterwards; the
    // host directory is named after this test's random port, so nothing else uses it.
    let etc_dir = PathBuf::from("/etc/docker/certs.d").join(&host);
    if std::fs::create_dir_all(&etc_dir).is_err() {
        eprintln!("SKIPPED the /etc/docker/certs.d part: not writable here");
        return;
    }
    let _cleanup = RemoveDir(etc_dir.clone());
    std::fs::copy(&ca, etc_dir.join("ca.crt")).unwrap();
    run(gantry(&home).args(["image", "catalog", &host]));
}
