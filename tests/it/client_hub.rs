//! `image promote --registry-type dockerhub` against a registry that refuses the OCI tag
//! DELETE (distribution 2.8): the temporary tag is deleted through Docker Hub's API, here a
//! small fake on 127.0.0.1 named with `--dockerhub-url` (a typed option; the client reads
//! no environment variable).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;

use crate::common::{self, DockerRegistry, image, run};

/// One request as the fake Hub API saw it: request line, Authorization, body.
type Seen = (String, Option<String>, String);

/// Answers `n` requests (login → a JWT, anything else → 204), one per connection.
fn fake_hub(n: usize) -> (String, mpsc::Receiver<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((s, _)) = l.accept() else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let (mut auth, mut len) = (None, 0usize);
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "authorization" => auth = Some(v.trim().to_string()),
                    "content-length" => len = v.trim().parse().unwrap(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let line = line.trim_end().to_string();
            let reply = if line.starts_with("POST /v2/users/login/") {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\nConnection: close\r\n\r\n{\"token\": \"jwt-123\"}"
            } else {
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
            };
            (&s).write_all(reply.as_bytes()).unwrap();
            tx.send((line, auth, String::from_utf8_lossy(&body).into_owned()))
                .unwrap();
        }
    });
    (url, rx)
}

#[test]
fn promote_deletes_the_temporary_tag_through_the_hub_api_named_by_an_option() {
    if !common::have_docker_registry() {
        return;
    }
    let reg = DockerRegistry::start(None, None);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let digest = image::single_image_layout(&src, "v1", &[common::random_bytes(100, 77)]);
    let gantry = || {
        let mut c = Command::new(common::gantry_bin());
        c.env("DOCKER_CONFIG", "/nonexistent-gantry-test")
            .env_remove("GANTRY_DOCKERHUB_URL");
        c
    };
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("{}/team/app:change_7_latest", reg.host())));
    let (hub, seen) = fake_hub(2);
    let out = run(gantry()
        .args(["image", "promote", "-q", "--registry-type", "dockerhub"])
        .args(["--creds", "hubuser:hubpass", "--dockerhub-url", &hub])
        .arg(format!("{}/team/app", reg.host()))
        .args(["--tag", "latest", "--change", "7"]));
    assert_eq!(
        out.trim(),
        format!("{}/team/app:latest {digest}", reg.host())
    );
    let timeout = std::time::Duration::from_secs(30);
    let (login, _, body) = seen.recv_timeout(timeout).unwrap();
    assert_eq!(login, "POST /v2/users/login/ HTTP/1.1");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"username": "hubuser", "password": "hubpass"})
    );
    let (delete, auth, _) = seen.recv_timeout(timeout).unwrap();
    assert_eq!(
        delete,
        "DELETE /v2/repositories/team/app/tags/change_7_latest/ HTTP/1.1"
    );
    assert_eq!(auth.as_deref(), Some("JWT jwt-123"));
}
