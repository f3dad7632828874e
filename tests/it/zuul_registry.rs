//! Issue 13 item 7's acceptance: the seed's reference configuration
//! (examples/reference-config), with its `intermediate_registry` secret pointing at a live
//! registry that requires those credentials (a `gantry registry serve --htpasswd`), leaves
//! the `<build>_<tag>` images *there*; a configured registry that cannot be reached is an
//! error naming the secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{self, GantryServer};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The reference configuration copied to `dir`, its secret's host and port replaced.
fn reference_at(dir: &Path, host: &str, port: u16) {
    let src = repo().join("examples/reference-config");
    let copy = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(dir)
        .status()
        .unwrap();
    assert!(copy.success());
    let zuul = dir.join("zuul.yaml");
    let text = std::fs::read_to_string(&zuul).unwrap();
    let text = text
        .replace(
            "host: insecure-ci-registry.example.org",
            &format!("host: {host}"),
        )
        .replace("port: 5000", &format!("port: {port}"));
    std::fs::write(&zuul, text).unwrap();
}

fn run_check(dir: &Path, state: &Path) -> (String, String, i32) {
    let out = Command::new(common::gantry_bin())
        .env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .env("GANTRY_BUILDER", "native")
        .arg("run")
        .arg(dir)
        .args([
            "--pipeline",
            "check",
            "--change",
            "7",
            "--executor",
            "builtin",
        ])
        .arg("--key-dir")
        .arg(repo().join("tests/fixtures/job/keys"))
        .arg("--state-dir")
        .arg(state)
        .arg("--jobs-dir")
        .arg(repo().join("jobs"))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn the_configured_intermediate_registry_receives_the_images() {
    let tmp = tempfile::tempdir().unwrap();
    // The secret's credentials (decrypted from the reference configuration).
    let htpasswd = tmp.path().join("htpasswd");
    let mut child = Command::new(common::gantry_bin())
        .args(["registry", "htpasswd", "zuul", "--password-stdin", "--file"])
        .arg(&htpasswd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"not-a-real-password\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let registry = GantryServer::registry(&["--htpasswd", htpasswd.to_str().unwrap()]);
    let host = registry.host();
    let (h, p) = host.rsplit_once(':').unwrap();
    let project = tmp.path().join("reference-config");
    reference_at(&project, h, p.parse().unwrap());

    let (stdout, stderr, code) = run_check(&project, &tmp.path().join("state"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("SUCCESS"), "{stdout}");

    // The images are in the configured registry, under `<build>_<tag>` tags.
    let tags = common::run(
        Command::new(common::gantry_bin())
            .args([
                "image",
                "ls",
                "--insecure",
                "--creds",
                "zuul:not-a-real-password",
            ])
            .arg(format!("{host}/example/app")),
    );
    let tags: Vec<&str> = tags.lines().collect();
    assert!(!tags.is_empty(), "no tags in the configured registry");
    assert!(
        tags.iter()
            .all(|t| t.len() > 33 && t.as_bytes()[32] == b'_'),
        "{tags:?}"
    );
    // Without the credentials the registry refuses: the run really used them.
    let (_, _, code) = common::run_fail(
        Command::new(common::gantry_bin())
            .args(["image", "ls", "--insecure", "--creds", "zuul:wrong"])
            .arg(format!("{host}/example/app")),
    );
    assert_ne!(code, 0);
}

#[test]
fn an_unreachable_configured_registry_is_an_error_naming_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let project = tmp.path().join("reference-config");
    reference_at(&project, "127.0.0.1", port);
    let (stdout, stderr, code) = run_check(&project, &tmp.path().join("state"));
    // The build fails (exit 1), and the message says which configuration named the host.
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "task push-to-intermediate-registry: intermediate registry 127.0.0.1:{port} from the intermediate_registry secret"
        )),
        "{stdout}"
    );
}
