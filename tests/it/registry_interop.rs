//! Interop: gantry's registry driven by real clients — skopeo, the Docker engine and
//! oci-client — over plain HTTP, over TLS from a generated CA with htpasswd, and over TLS
//! with the Docker token flow. Every test asserts content: digests equal, image runs.

use std::path::PathBuf;
use std::process::Command;

use gantry::oci::Digest;

use crate::common::{self, GantryServer, image, run, run_fail};

#[derive(Clone, Copy, Debug)]
enum Mode {
    Plain,
    TlsHtpasswd,
    TlsToken,
}

struct Target {
    server: GantryServer,
    creds: Option<(String, String)>,
    /// A directory holding only `ca.crt` (skopeo's --cert-dir, docker's certs.d).
    cert_dir: Option<PathBuf>,
    tmp: tempfile::TempDir,
}

const USER: &str = "zuul";
const PASSWORD: &str = "Interop-Pass-123";

fn target(mode: Mode) -> Target {
    let tmp = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![];
    let mut creds = None;
    let mut cert_dir = None;
    if !matches!(mode, Mode::Plain) {
        let tls = tmp.path().join("tls");
        let hp = tmp.path().join("htpasswd");
        let line = gantry::registry::auth::htpasswd::entry(USER, PASSWORD, 4).unwrap();
        std::fs::write(&hp, format!("{line}\n")).unwrap();
        args.extend(["--tls-self-signed".into(), tls.display().to_string()]);
        args.extend(["--htpasswd".into(), hp.display().to_string()]);
        creds = Some((USER.to_string(), PASSWORD.to_string()));
        if matches!(mode, Mode::TlsToken) {
            args.push("--token-auth".into());
        }
        let certs = tmp.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        cert_dir = Some(certs);
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = tmp.path().join("data");
    let server = GantryServer::registry_at(&data, &arg_refs);
    if let Some(certs) = &cert_dir {
        std::fs::copy(tmp.path().join("tls/ca.crt"), certs.join("ca.crt")).unwrap();
    }
    Target {
        server,
        creds,
        cert_dir,
        tmp,
    }
}

impl Target {
    fn host(&self) -> String {
        self.server.host()
    }

    /// skopeo flags for one side (`src` or `dest`).
    fn skopeo_flags(&self, side: &str) -> Vec<String> {
        let mut f = vec![];
        match &self.cert_dir {
            Some(d) => f.push(format!("--{side}-cert-dir={}", d.display())),
            None => f.push(format!("--{side}-tls-verify=false")),
        }
        if let Some((u, p)) = &self.creds {
            f.push(format!("--{side}-creds={u}:{p}"));
        }
        f
    }

    fn inspect_flags(&self) -> Vec<String> {
        let mut f = vec![];
        match &self.cert_dir {
            Some(d) => f.push(format!("--cert-dir={}", d.display())),
            None => f.push("--tls-verify=false".into()),
        }
        if let Some((u, p)) = &self.creds {
            f.push(format!("--creds={u}:{p}"));
        }
        f
    }

    fn raw_manifest(&self, reference: &str) -> Vec<u8> {
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .args(self.inspect_flags())
            .arg(format!("docker://{}/{reference}", self.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

fn skopeo_roundtrip(mode: Mode) {
    if !common::have_skopeo() {
        return;
    }
    let t = target(mode);
    let host = t.host();
    // Single image: oci layout → gantry → oci layout, identical digest.
    let src = t.tmp.path().join("single");
    let layers = vec![
        common::random_bytes(300_000, 1),
        common::random_bytes(1000, 2),
    ];
    let digest = image::single_image_layout(&src, "v1", &layers);
    run(Command::new("skopeo")
        .args(["copy", "--preserve-digests"])
        .args(t.skopeo_flags("dest"))
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("docker://{host}/interop/single:v1")));
    let raw = t.raw_manifest("interop/single:v1");
    assert_eq!(
        Digest::sha256(&raw).to_string(),
        digest,
        "digest at the registry == digest at the source"
    );
    let out = t.tmp.path().join("single-out");
    run(Command::new("skopeo")
        .args(["copy", "--preserve-digests"])
        .args(t.skopeo_flags("src"))
        .arg(format!("docker://{host}/interop/single:v1"))
        .arg(format!("oci:{}:v1", out.display())));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    for l in &layers {
        let d = Digest::sha256(l);
        assert_eq!(
            &std::fs::read(out.join("blobs/sha256").join(d.hex())).unwrap(),
            l
        );
    }

    // Multi-arch index with --all.
    let msrc = t.tmp.path().join("multi");
    let (index_digest, children) = image::multiarch_layout(&msrc, "v1");
    run(Command::new("skopeo")
        .args(["copy", "--all", "--preserve-digests"])
        .args(t.skopeo_flags("dest"))
        .arg(format!("oci:{}:v1", msrc.display()))
        .arg(format!("docker://{host}/interop/multi:v1")));
    let raw = t.raw_manifest("interop/multi:v1");
    assert_eq!(Digest::sha256(&raw).to_string(), index_digest);
    for c in &children {
        let raw = t.raw_manifest(&format!("interop/multi@{c}"));
        assert_eq!(&Digest::sha256(&raw).to_string(), c);
    }
    let mout = t.tmp.path().join("multi-out");
    run(Command::new("skopeo")
        .args(["copy", "--all", "--preserve-digests"])
        .args(t.skopeo_flags("src"))
        .arg(format!("docker://{host}/interop/multi:v1"))
        .arg(format!("oci:{}:v1", mout.display())));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], index_digest.as_str());

    // skopeo delete removes the manifest.
    run(Command::new("skopeo")
        .arg("delete")
        .args(t.inspect_flags())
        .arg(format!("docker://{host}/interop/single:v1")));
    let (_, err, _) = run_fail(
        Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .args(t.inspect_flags())
            .arg(format!("docker://{host}/interop/single:v1")),
    );
    assert!(
        err.contains("manifest unknown") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn skopeo_plain() {
    skopeo_roundtrip(Mode::Plain);
}

#[test]
fn skopeo_tls_htpasswd() {
    skopeo_roundtrip(Mode::TlsHtpasswd);
}

#[test]
fn skopeo_tls_token() {
    skopeo_roundtrip(Mode::TlsToken);
}

#[test]
fn skopeo_wrong_password_is_refused() {
    if !common::have_skopeo() {
        return;
    }
    let mut t = target(Mode::TlsToken);
    t.creds = Some((USER.into(), "wrong".into()));
    let src = t.tmp.path().join("single");
    image::single_image_layout(&src, "v1", &[common::random_bytes(100, 3)]);
    let (_, err, _) = run_fail(
        Command::new("skopeo")
            .arg("copy")
            .args(t.skopeo_flags("dest"))
            .arg(format!("oci:{}:v1", src.display()))
            .arg(format!("docker://{}/x:v1", t.host())),
    );
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "{err}"
    );
}

fn docker(config: &std::path::Path) -> Command {
    let mut c = Command::new("docker");
    c.arg("--config").arg(config);
    c
}

fn docker_roundtrip(mode: Mode) {
    if !common::have_docker() {
        return;
    }
    let t = target(mode);
    let host = t.host();
    let cfg = t.tmp.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    // Docker trusts a registry's CA from certs.d/<host:port>/ca.crt.
    let certs_d = PathBuf::from("/etc/docker/certs.d").join(&host);
    if let Some(d) = &t.cert_dir {
        std::fs::create_dir_all(&certs_d).unwrap();
        std::fs::copy(d.join("ca.crt"), certs_d.join("ca.crt")).unwrap();
    }
    struct Cleanup(PathBuf, Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
            for i in &self.1 {
                let _ = Command::new("docker").args(["rmi", "-f", i]).output();
            }
        }
    }
    let uniq = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let local = format!("gantry-test/base:{uniq}");
    let remote = format!("{host}/interop/base:{uniq}");
    let _cleanup = Cleanup(certs_d.clone(), vec![local.clone(), remote.clone()]);
    let rootfs = t.tmp.path().join("rootfs.tar");
    assert!(
        image::busybox_rootfs_tar(&rootfs),
        "busybox-static is needed (scripts/test.sh installs it)"
    );
    run(docker(&cfg).arg("import").arg(&rootfs).arg(&local));
    if let Some((u, p)) = &t.creds {
        let mut login = docker(&cfg);
        login
            .args(["login", "-u", u, "--password-stdin", &host])
            .stdin(std::process::Stdio::piped());
        let mut child = login
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(p.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    run(docker(&cfg).args(["tag", &local, &remote]));
    let push = run(docker(&cfg).args(["push", &remote]));
    let pushed_digest = push
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in docker push output: {push}"))
        .to_string();
    run(docker(&cfg).args(["rmi", &remote, &local]));
    run(docker(&cfg).args(["pull", &remote]));
    let out = run(docker(&cfg).args(["run", "--rm", &remote, "/bin/echo", "hello from gantry"]));
    assert_eq!(out.trim(), "hello from gantry");
    let repo_digests = run(docker(&cfg).args([
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &remote,
    ]));
    assert!(
        repo_digests.contains(&pushed_digest),
        "{repo_digests} vs {pushed_digest}"
    );
}

#[test]
fn docker_plain() {
    docker_roundtrip(Mode::Plain);
}

#[test]
fn docker_tls_htpasswd() {
    docker_roundtrip(Mode::TlsHtpasswd);
}

#[test]
fn docker_tls_token() {
    docker_roundtrip(Mode::TlsToken);
}

async fn oci_client_roundtrip(mode: Mode) {
    use oci_client::client::{
        Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
    };
    use oci_client::secrets::RegistryAuth;
    common::crypto();
    let t = target(mode);
    let mut config = ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    };
    if let Some(d) = &t.cert_dir {
        config.protocol = ClientProtocol::Https;
        config.extra_root_certificates = vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: std::fs::read(d.join("ca.crt")).unwrap(),
        }];
    }
    let client = oci_client::Client::new(config);
    let auth = match &t.creds {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => RegistryAuth::Anonymous,
    };
    let reference: oci_client::Reference = format!("{}/oci/app:v1", t.host()).parse().unwrap();
    let layers = vec![
        ImageLayer::new(
            common::random_bytes(2 << 20, 5),
            "application/vnd.oci.image.layer.v1.tar".into(),
            None,
        ),
        ImageLayer::new(
            common::random_bytes(10, 6),
            "application/vnd.oci.image.layer.v1.tar".into(),
            None,
        ),
    ];
    let cfg = Config::new(
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
        "application/vnd.oci.image.config.v1+json".into(),
        None,
    );
    client
        .push(&reference, &layers, cfg, &auth, None)
        .await
        .expect("oci-client push");
    let img = client
        .pull(
            &reference,
            &auth,
            vec!["application/vnd.oci.image.layer.v1.tar"],
        )
        .await
        .expect("oci-client pull");
    // Compare by digest (never print megabytes of layer bytes).
    let digests = |ls: &[ImageLayer]| {
        let mut v: Vec<String> = ls
            .iter()
            .map(|l| Digest::sha256(&l.data).to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(digests(&img.layers), digests(&layers));
    assert_eq!(
        img.config.data.as_ref(),
        br#"{"architecture":"amd64","os":"linux"}"#
    );
    // The digest oci-client reports is the digest of the bytes the registry serves.
    let (_, digest) = client.pull_manifest(&reference, &auth).await.unwrap();
    assert_eq!(img.digest.as_deref(), Some(digest.as_str()));
}

#[tokio::test]
async fn oci_client_plain() {
    oci_client_roundtrip(Mode::Plain).await;
}

#[tokio::test]
async fn oci_client_tls_htpasswd() {
    oci_client_roundtrip(Mode::TlsHtpasswd).await;
}

#[tokio::test]
async fn oci_client_tls_token() {
    oci_client_roundtrip(Mode::TlsToken).await;
}
