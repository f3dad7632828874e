//! `gantry serve` as a trust boundary (issue 10): payload values are data in every source,
//! names are checked at intake, webhook triggers need tokens, the page and API take
//! credentials, and every server closes half-sent requests.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, GantryServer, image, run, run_fail};
use crate::trigger::{fixtures, gantry, get_json, http, repo, wait_for};

fn project() -> PathBuf {
    repo().join("tests/fixtures/serve-trust/project")
}

/// Template syntax an attacker would send: if it were rendered, the run would hold the
/// serve configuration (tokens, endpoint credentials) or a loop's output.
fn lookup_of(path: &Path) -> String {
    format!("{{{{ lookup('file', '{}') }}}}", path.display())
}
const LOOP: &str = "{% for x in range(3) %}looped{{ x }}{% endfor %}";

const REG_USER: &str = "gate";
const REG_PASS: &str = "Reg-Pass-7c1e";
const HUB_TOKEN: &str = "hub-token-5a9d";
const DIST_TOKEN: &str = "dist-token-e13b";
const GL_TOKEN: &str = "gl-token-77f0";

/// A gantry registry with Basic auth; `team/app:v1` pushed; returns (registry, digest).
fn registry_with_image(dir: &Path) -> (GantryServer, String) {
    let hp = dir.join("registry.htpasswd");
    let line = gantry::registry::auth::htpasswd::entry(REG_USER, REG_PASS, 5).unwrap();
    std::fs::write(&hp, format!("{line}\n")).unwrap();
    let reg = GantryServer::registry(&["--htpasswd", hp.to_str().unwrap()]);
    let layout = dir.join("layout");
    let digest = image::single_image_layout(&layout, "v1", &[common::random_bytes(600, 77)]);
    run(gantry()
        .args([
            "image",
            "copy",
            "-q",
            "--creds",
            &format!("{REG_USER}:{REG_PASS}"),
        ])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("{}/team/app:v1", reg.host())));
    (reg, digest)
}

struct Served {
    server: GantryServer,
    dir: PathBuf,
    out: PathBuf,
    state: PathBuf,
    config: PathBuf,
}

impl Served {
    fn url(&self, p: &str) -> String {
        format!("http://{}{p}", self.server.addr)
    }
}

/// Writes `config` (PROJECT, OUT replaced) next to its secret files and starts serve.
fn serve_with(dir: &Path, config: &str, env: &[(&str, &str)]) -> Served {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let path = dir.join("gantry-serve.yaml");
    std::fs::write(
        &path,
        config
            .replace("PROJECT", &project().display().to_string())
            .replace("OUT", &out.display().to_string()),
    )
    .unwrap();
    let state = dir.join("state");
    let args: Vec<String> = vec![
        "serve".into(),
        "--config".into(),
        path.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--state-dir".into(),
        state.display().to_string(),
        "--jobs-dir".into(),
        repo().join("jobs").display().to_string(),
    ];
    let server = GantryServer::spawn_env(
        &args,
        dir.join(format!("serve-{}.log", uuid::Uuid::new_v4())),
        state.clone(),
        env,
    );
    Served {
        server,
        dir: dir.to_path_buf(),
        out,
        state,
        config: path,
    }
}

fn executions(s: &Served) -> Vec<Value> {
    get_json(&s.url("/api/executions"))
        .as_array()
        .unwrap()
        .clone()
}

fn finished_for(s: &Served, event: i64) -> Value {
    wait_for(120, &format!("the execution of event {event}"), || {
        executions(s)
            .into_iter()
            .find(|x| x["event_id"] == event && x["finished_ms"].is_number())
    })
}

fn recorded(s: &Served, event: i64) -> (Value, String) {
    let j = std::fs::read_to_string(s.out.join(format!("{event}.json"))).unwrap();
    let e = std::fs::read_to_string(s.out.join(format!("{event}.env"))).unwrap();
    (serde_json::from_str(&j).unwrap(), e)
}

fn event_id(body: &str) -> i64 {
    serde_json::from_str::<Value>(body).unwrap()["events"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no event in {body}"))
}

/// Every file under `dir` (logs, outputs, the event log's JSON) and the server's log.
fn all_text(dirs: &[&Path], extra: &[&Path]) -> String {
    let mut out = String::new();
    fn walk(d: &Path, out: &mut String) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&b));
                out.push('\n');
            }
        }
    }
    for d in dirs {
        walk(d, &mut out);
    }
    for f in extra {
        out.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    out
}

#[test]
fn serve_trust_template_payloads_arrive_verbatim_from_every_source() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (reg, digest) = registry_with_image(dir);
    std::fs::write(dir.join("hub.token"), format!("{HUB_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("reg.creds"), format!("{REG_USER}:{REG_PASS}\n")).unwrap();
    let config = format!(
        "endpoints:\n  - name: reg\n    url: http://{host}\n    credentials_file: reg.creds\n\
         triggers:\n\
         \x20 - name: hub\n    source: dockerhub\n    endpoint: reg\n    token_file: hub.token\n    image: 'team/.*'\n    project: PROJECT\n    pipeline: check\n    parameters: {{out: OUT}}\n    debounce: 0\n\
         \x20 - name: dist\n    source: registry\n    endpoint: reg\n    token_env: SERVE_TRUST_DIST_TOKEN\n    project: PROJECT\n    pipeline: check\n    parameters: {{out: OUT}}\n    debounce: 0\n\
         \x20 - name: gl\n    source: gitlab\n    endpoint: reg\n    token: {GL_TOKEN}\n    project: PROJECT\n    pipeline: check\n    parameters: {{out: OUT}}\n    debounce: 0\n\
         \x20 - name: poller\n    source: poll\n    endpoint: reg\n    image: team/app\n    project: PROJECT\n    pipeline: check\n    parameters: {{out: OUT}}\n    poll: {{interval: 0.5}}\n    debounce: 0\n",
        host = reg.host()
    );
    let s = serve_with(dir, &config, &[("SERVE_TRUST_DIST_TOKEN", DIST_TOKEN)]);
    let evil_owner = lookup_of(&s.config);

    // Docker Hub: owner and pusher hold template syntax.
    let hub = json!({
        "push_data": {"tag": "v1", "pusher": LOOP},
        "repository": {"repo_name": "team/app", "owner": evil_owner}
    });
    let (code, body) = http(
        "POST",
        &s.url(&format!("/hooks/dockerhub/hub?token={HUB_TOKEN}")),
        &[],
        hub.to_string().into_bytes(),
    );
    assert_eq!(code, 202, "{body}");
    let hub_id = event_id(&body);

    // Distribution notification: the actor's name.
    let env = json!({"events": [{
        "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "repository": "team/app", "tag": "v1", "digest": digest},
        "request": {"host": reg.host()},
        "actor": {"name": evil_owner}
    }]});
    let (code, body) = http(
        "POST",
        &s.url("/hooks/registry/dist"),
        &[
            ("Authorization", &format!("Bearer {DIST_TOKEN}")),
            (
                "Content-Type",
                "application/vnd.docker.distribution.events.v1+json",
            ),
        ],
        env.to_string().into_bytes(),
    );
    assert_eq!(code, 202, "{body}");
    let dist_id = event_id(&body);

    // GitLab: the user name.
    let mut gl: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("gitlab-tag-push.json")).unwrap())
            .unwrap();
    gl["user_username"] = json!(LOOP);
    gl["project"]["path_with_namespace"] = json!("team/app");
    let (code, body) = http(
        "POST",
        &s.url("/hooks/gitlab/gl"),
        &[("X-Gitlab-Token", GL_TOKEN)],
        gl.to_string().into_bytes(),
    );
    assert_eq!(code, 202, "{body}");
    let gl_id = event_id(&body);

    for (id, owner, pusher) in [
        (hub_id, evil_owner.as_str(), LOOP),
        (dist_id, evil_owner.as_str(), evil_owner.as_str()),
        (gl_id, "team", LOOP),
    ] {
        let x = finished_for(&s, id);
        assert_eq!(x["status"], "SUCCESS", "{x}");
        assert_eq!(x["digest"], digest.as_str());
        let (vars, envfile) = recorded(&s, id);
        assert_eq!(vars["owner"], owner, "event {id}: {vars}");
        assert_eq!(vars["pusher"], pusher, "event {id}: {vars}");
        assert_eq!(vars["env_owner"], owner, "event {id}: {vars}");
        assert_eq!(envfile, format!("{owner}\n{pusher}\nv1"), "event {id}");
    }
    // The poll: its values come from the registry (tags are grammar-checked names) and
    // reach the run as they are.
    let polled = wait_for(120, "a poll run", || {
        executions(&s)
            .into_iter()
            .find(|x| x["trigger"] == "poller" && x["finished_ms"].is_number())
    });
    assert_eq!(polled["status"], "SUCCESS", "{polled}");
    let (vars, envfile) = recorded(&s, polled["event_id"].as_i64().unwrap());
    assert_eq!(vars["tag"], "v1");
    assert_eq!(vars["digest"], digest.as_str());
    assert!(envfile.ends_with("\nv1"), "{envfile}");

    // No token and no credential in any run output, build log, the event log, the API
    // or the server's log; the loop did not run.
    let api = format!(
        "{}{}",
        get_json(&s.url("/api/executions")),
        get_json(&s.url("/api/events"))
    );
    let text = all_text(&[&s.out, &s.state.join("builds")], &[&s.server.log]) + &api;
    for secret in [HUB_TOKEN, DIST_TOKEN, GL_TOKEN, REG_PASS] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    // Rendered, the loop would print `looped0looped1looped2` (job-output.txt lines carry
    // timestamps, so a bare `012` could appear anyway).
    assert!(!text.contains("looped0looped1"), "a template loop ran");
    assert!(
        text.contains("owner={{ lookup('file'"),
        "the log shows it literally"
    );
    drop(s);
    drop(reg);
}

#[test]
fn serve_trust_bad_names_get_400_and_no_registry_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (reg, _) = registry_with_image(dir);
    std::fs::write(dir.join("reg.creds"), format!("{REG_USER}:{REG_PASS}")).unwrap();
    let config = format!(
        "endpoints:\n  - name: reg\n    url: http://{}\n    credentials_env: SERVE_TRUST_BAD_CREDS\n\
         triggers:\n  - name: hub\n    source: dockerhub\n    endpoint: reg\n    token: {HUB_TOKEN}\n    image: 'team/.*'\n    project: PROJECT\n    pipeline: check\n    parameters: {{out: OUT}}\n",
        reg.host()
    );
    let s = serve_with(
        dir,
        &config,
        &[("SERVE_TRUST_BAD_CREDS", &format!("{REG_USER}:{REG_PASS}"))],
    );
    let before = reg.requests().len();
    let hook = |repo: &str, tag: &str| {
        let body = json!({"push_data": {"tag": tag}, "repository": {"repo_name": repo}});
        http(
            "POST",
            &s.url(&format!("/hooks/dockerhub/hub?token={HUB_TOKEN}")),
            &[],
            body.to_string().into_bytes(),
        )
    };
    for (repo, tag, what) in [
        ("team/../other/secret", "v1", "repository"),
        ("team/app", "$(touch /tmp/pwned)", "tag"),
        ("team/app", "v1\n\u{1b}[31mred", "tag"),
        ("Team/App", "v1", "repository"),
    ] {
        let (code, body) = hook(repo, tag);
        assert_eq!(code, 400, "{repo}:{tag}: {body}");
        let msg = serde_json::from_str::<Value>(&body).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.starts_with(&format!("rejected: {what}")), "{msg}");
        assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
    }
    let events = get_json(&s.url("/api/events"));
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 4, "rejected payloads are recorded");
    for e in events {
        assert!(
            e["outcome"].as_str().unwrap().starts_with("rejected: "),
            "{e}"
        );
        assert_eq!(e["state"], "done");
        assert!(!e["push"]["tag"].as_str().unwrap().contains('\n'), "{e}");
    }
    // Nothing reached the registry: no manifest HEAD, with or without credentials.
    assert_eq!(reg.requests().len(), before, "{:?}", reg.requests());
    // A good one still runs.
    let (code, body) = hook("team/app", "v1");
    assert_eq!(code, 202, "{body}");
    assert_eq!(finished_for(&s, event_id(&body))["status"], "SUCCESS");
}

#[test]
fn serve_trust_config_refuses_what_could_not_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let start = |config: &str| {
        let path = dir.join("gantry-serve.yaml");
        std::fs::write(
            &path,
            config.replace("PROJECT", &project().display().to_string()),
        )
        .unwrap();
        run_fail(
            gantry()
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(&path)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .arg("--jobs-dir")
                .arg(repo().join("jobs")),
        )
    };
    // A registry trigger without a token.
    let (_, err, code) = start(
        "triggers:\n  - name: open\n    source: registry\n    project: PROJECT\n    pipeline: check\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("gantry-serve.yaml:2:") && err.contains("needs a `token`"),
        "{err}"
    );
    // A token file that is not there, an unset variable, two ways at once.
    let (_, err, code) = start(
        "triggers:\n  - name: a\n    source: dockerhub\n    token_file: missing.token\n    project: PROJECT\n    pipeline: check\n  - name: b\n    source: gitlab\n    token_env: SERVE_TRUST_UNSET_VAR\n    project: PROJECT\n    pipeline: check\n  - name: c\n    source: gitlab\n    token: x\n    token_env: Y\n    project: PROJECT\n    pipeline: check\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(":2:") && err.contains("missing.token"),
        "{err}"
    );
    assert!(
        err.contains(":7:") && err.contains("SERVE_TRUST_UNSET_VAR is not set"),
        "{err}"
    );
    assert!(err.contains(":12:") && err.contains("not several"), "{err}");
    // A project that is not there.
    let (_, err, code) = start(
        "triggers:\n  - name: gone\n    source: gitlab\n    token: t\n    project: /nonexistent/project\n    pipeline: check\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(":2:") && err.contains("/nonexistent/project does not exist"),
        "{err}"
    );
    // A project whose pipeline does not exist: its configuration is loaded at start.
    let (_, err, code) = start(
        "triggers:\n  - name: wrong\n    source: gitlab\n    token: t\n    project: PROJECT\n    pipeline: nosuch\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("gantry-serve.yaml:2:") && err.contains("trigger wrong: project"),
        "{err}"
    );
}

#[test]
fn serve_trust_page_and_api_need_credentials_with_a_web_section() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let line = gantry::registry::auth::htpasswd::entry("viewer", "Page-Pass-1", 5).unwrap();
    std::fs::write(dir.join("web.htpasswd"), format!("{line}\n")).unwrap();
    let s = serve_with(
        dir,
        &format!(
            "web:\n  htpasswd: web.htpasswd\ntriggers:\n  - name: hub\n    source: dockerhub\n    token: {HUB_TOKEN}\n    project: PROJECT\n    pipeline: check\n    parameters: {{out: OUT}}\n"
        ),
        &[],
    );
    let basic = format!("Basic {}", base64_encode(b"viewer:Page-Pass-1"));
    let wrong = format!("Basic {}", base64_encode(b"viewer:nope"));
    for path in [
        "/",
        "/executions/abc",
        "/api/executions",
        "/api/events",
        "/api/events/1",
    ] {
        assert_eq!(http("GET", &s.url(path), &[], vec![]).0, 401, "{path}");
        assert_eq!(
            http("GET", &s.url(path), &[("Authorization", &wrong)], vec![]).0,
            401,
            "{path}"
        );
    }
    for path in ["/", "/executions/abc", "/api/executions", "/api/events"] {
        let (code, body) = http("GET", &s.url(path), &[("Authorization", &basic)], vec![]);
        assert_eq!(code, 200, "{path}: {body}");
    }
    // Hooks keep their own token, no Basic credentials needed. The registry this
    // trigger resolves against (Docker Hub) is not reachable here: the event stays
    // pending, which is all this test needs.
    let body = json!({"push_data": {"tag": "v1"}, "repository": {"repo_name": "team/app"}});
    let (code, resp) = http(
        "POST",
        &s.url(&format!("/hooks/dockerhub/hub?token={HUB_TOKEN}")),
        &[],
        body.to_string().into_bytes(),
    );
    assert_eq!(code, 202, "{resp}");
    let id = event_id(&resp);
    // Replay: behind the credentials, and only with the page's header.
    let replay = s.url(&format!("/api/events/{id}/replay"));
    assert_eq!(http("POST", &replay, &[], vec![]).0, 401);
    assert_eq!(
        http("POST", &replay, &[("Authorization", &basic)], vec![]).0,
        403,
        "a cross-site form cannot replay"
    );
    let (code, resp) = http(
        "POST",
        &replay,
        &[("Authorization", &basic), ("X-Requested-With", "test")],
        vec![],
    );
    assert_eq!(code, 202, "{resp}");
    let _ = &s.dir;
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Opens a connection, sends half a request's headers, and returns how long the server
/// took to close it.
fn half_sent_request_closed_after(addr: std::net::SocketAddr) -> Duration {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let start = Instant::now();
    c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    let mut buf = [0u8; 512];
    // The server either closes (0) or resets; a timeout here means it kept waiting.
    loop {
        match c.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("{addr}: the half-sent request was still open after 40 s")
            }
            Err(_) => return start.elapsed(),
        }
    }
}

#[test]
fn serve_trust_half_sent_headers_are_closed_by_serve_and_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let s = serve_with(
        tmp.path(),
        &format!(
            "triggers:\n  - name: hub\n    source: dockerhub\n    token: {HUB_TOKEN}\n    project: PROJECT\n    pipeline: check\n"
        ),
        &[],
    );
    let reg = GantryServer::registry(&[]);
    let (a, b) = (s.server.addr, reg.addr);
    let serve_side = std::thread::spawn(move || half_sent_request_closed_after(a));
    let reg_side = std::thread::spawn(move || half_sent_request_closed_after(b));
    for (what, took) in [
        ("gantry serve", serve_side.join().unwrap()),
        ("gantry registry serve", reg_side.join().unwrap()),
    ] {
        // gantry::server::HEADER_READ_TIMEOUT is 10 s.
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_secs(30),
            "{what}: closed after {took:?}"
        );
    }
    // Both still serve complete requests.
    assert_eq!(http("GET", &s.url("/api/events"), &[], vec![]).0, 200);
    assert_eq!(
        http("GET", &format!("http://{}/v2/", reg.host()), &[], vec![]).0,
        200
    );
}

#[test]
fn serve_trust_page_follows_a_running_build_in_headless_chromium() {
    if !common::require_tool("chromium", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (reg, _) = registry_with_image(dir);
    let gate = dir.join("gate");
    let config = format!(
        "endpoints:\n  - name: reg\n    url: http://{}\n    credentials: {REG_USER}:{REG_PASS}\n\
         triggers:\n  - name: hub\n    source: dockerhub\n    endpoint: reg\n    token: {HUB_TOKEN}\n    project: PROJECT\n    pipeline: follow\n    parameters: {{out: OUT, gate: {}}}\n",
        reg.host(),
        gate.display()
    );
    let s = serve_with(dir, &config, &[]);
    let body = json!({"push_data": {"tag": "v1"}, "repository": {"repo_name": "team/app"}});
    let (code, resp) = http(
        "POST",
        &s.url(&format!("/hooks/dockerhub/hub?token={HUB_TOKEN}")),
        &[],
        body.to_string().into_bytes(),
    );
    assert_eq!(code, 202, "{resp}");
    // The build is running and has logged its first marker; it waits for the gate.
    let x = wait_for(60, "a running build", || {
        executions(&s).into_iter().find(|x| {
            x["builds"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["job"] == "follow-me"))
        })
    });
    let id = x["id"].as_str().unwrap().to_string();
    let uuid = x["builds"][0]["uuid"].as_str().unwrap().to_string();
    let log_url = s.url(&format!("/api/executions/{id}/logs/{uuid}"));
    wait_for(60, "the first marker in the running build's log", || {
        let (code, text) = http("GET", &log_url, &[], vec![]);
        (code == 200 && text.contains("first marker")).then_some(())
    });

    let follow_path = format!("GET /api/executions/{id}/logs/{uuid} 200");
    let logged = |s: &Served| {
        s.server
            .requests()
            .iter()
            .filter(|r| r.starts_with(&follow_path))
            .count()
    };
    let before = logged(&s);
    let page = s.url(&format!("/executions/{id}"));
    let profile = dir.join("chromium");
    let chromium = std::thread::spawn(move || {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=30000",
                "--window-size=1200,900",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(page)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    });
    // The page opened the log in follow mode (the request is logged when the stream
    // starts); only then does the build go on.
    wait_for(60, "the page following the log", || {
        (logged(&s) > before).then_some(())
    });
    std::fs::write(&gate, "open").unwrap();
    let dom = chromium.join().unwrap();
    let pre = dom
        .split("<pre id=\"log\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no log on the page: {dom}"));
    let pre = &pre[..pre.find("</pre>").unwrap()];
    assert!(
        pre.contains("first marker") && pre.contains("second marker"),
        "{pre}"
    );
    let chunks: usize = pre
        .split("data-chunks=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(chunks >= 2, "the log grew on screen in pieces: {pre}");
    // Its own URL, the failure message of the job after it, local time with its zone,
    // the replay button.
    assert!(dom.contains(&format!("Execution {}", &id[..12])), "{dom}");
    assert!(dom.contains("deliberate failure after the gate"), "{dom}");
    assert!(dom.contains("Times are in "), "{dom}");
    assert!(dom.contains("id=\"replay\""), "{dom}");
    drop(reg);
}

#[test]
fn serve_trust_page_lists_jobs_not_started_yet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (reg, _) = registry_with_image(dir);
    let gate = dir.join("gate");
    let config = format!(
        "endpoints:\n  - name: reg\n    url: http://{}\n    credentials: {REG_USER}:{REG_PASS}\n\
         triggers:\n  - name: hub\n    source: dockerhub\n    endpoint: reg\n    token: {HUB_TOKEN}\n    project: PROJECT\n    pipeline: follow\n    parameters: {{out: OUT, gate: {}}}\n",
        reg.host(),
        gate.display()
    );
    let s = serve_with(dir, &config, &[]);
    let body = json!({"push_data": {"tag": "v1"}, "repository": {"repo_name": "team/app"}});
    let (code, _) = http(
        "POST",
        &s.url(&format!("/hooks/dockerhub/hub?token={HUB_TOKEN}")),
        &[],
        body.to_string().into_bytes(),
    );
    assert_eq!(code, 202);
    let x = wait_for(60, "a running build", || {
        executions(&s)
            .into_iter()
            .find(|x| x["builds"].as_array().is_some_and(|b| !b.is_empty()))
    });
    let one = get_json(&s.url(&format!("/api/executions/{}", x["id"].as_str().unwrap())));
    let jobs: Vec<&str> = one["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    assert!(jobs.contains(&"after-follow"), "{one}");
    assert!(
        one["builds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["job"] != "after-follow"),
        "not started yet: {one}"
    );
    std::fs::write(&gate, "open").unwrap();
    let done = wait_for(120, "the finished execution", || {
        executions(&s)
            .into_iter()
            .find(|x| x["finished_ms"].is_number())
    });
    let failed = done["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["job"] == "after-follow")
        .cloned()
        .unwrap();
    assert_eq!(failed["result"], "FAILURE", "{done}");
    let _ = (&s.state, &s.dir);
    drop(reg);
}

#[test]
fn serve_trust_example_config_runs_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reg = GantryServer::registry(&[]);
    let layout = dir.join("layout");
    let digest = image::single_image_layout(&layout, "v1.2.0", &[common::random_bytes(300, 91)]);
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:v1.2.0", layout.display()))
        .arg(format!("{}/team/app:v1.2.0", reg.host())));
    // The example as shipped, with this test's registry and the project's absolute path.
    let example = std::fs::read_to_string(repo().join("examples/gantry-serve.yaml")).unwrap();
    let config = example.replace("127.0.0.1:5000", &reg.host()).replace(
        "project: serve-project",
        &format!(
            "project: {}",
            repo().join("examples/serve-project").display()
        ),
    );
    // The secrets its comment says to create.
    std::fs::write(dir.join("hub.token"), format!("{HUB_TOKEN}\n")).unwrap();
    let hp = run(gantry()
        .args([
            "registry",
            "htpasswd",
            "viewer",
            "--password-stdin",
            "--cost",
            "5",
        ])
        .stdin_bytes(b"Viewer-Pass-9\n"));
    std::fs::write(dir.join("web.htpasswd"), hp).unwrap();
    let s = serve_with(dir, &config, &[("GANTRY_NOTIFY_TOKEN", DIST_TOKEN)]);
    let basic = format!("Basic {}", base64_encode(b"viewer:Viewer-Pass-9"));
    let body = json!({"push_data": {"tag": "v1.2.0"}, "repository": {"repo_name": "team/app"}});
    let (code, resp) = http(
        "POST",
        &s.url(&format!("/hooks/dockerhub/app?token={HUB_TOKEN}")),
        &[],
        body.to_string().into_bytes(),
    );
    assert_eq!(code, 202, "{resp}");
    let id = event_id(&resp);
    assert_eq!(http("GET", &s.url("/api/executions"), &[], vec![]).0, 401);
    let x = wait_for(120, "the example's run", || {
        let (_, b) = http(
            "GET",
            &s.url("/api/executions"),
            &[("Authorization", &basic)],
            vec![],
        );
        serde_json::from_str::<Value>(&b)
            .ok()?
            .as_array()?
            .iter()
            .find(|x| x["event_id"] == id && x["finished_ms"].is_number())
            .cloned()
    });
    assert_eq!(x["status"], "SUCCESS", "{x}");
    let uuid = x["builds"][0]["uuid"].as_str().unwrap();
    let (code, log) = http(
        "GET",
        &s.url(&format!(
            "/api/executions/{}/logs/{uuid}",
            x["id"].as_str().unwrap()
        )),
        &[("Authorization", &basic)],
        vec![],
    );
    assert_eq!(code, 200);
    assert!(
        log.contains(&format!(
            "deploying {}/team/app@{digest} (v1.2.0) to dev",
            reg.host()
        )),
        "{log}"
    );
}

/// `Command` with bytes on its stdin.
trait StdinBytes {
    fn stdin_bytes(&mut self, bytes: &[u8]) -> &mut Command;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, bytes: &[u8]) -> &mut Command {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        let file = std::fs::File::open(f.path()).unwrap();
        self.stdin(file)
    }
}

#[test]
fn serve_trust_warns_when_the_page_is_open_beyond_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = dir.join("gantry-serve.yaml");
    std::fs::write(
        &config,
        format!(
            "triggers:\n  - name: hub\n    source: dockerhub\n    token: {HUB_TOKEN}\n    project: {}\n    pipeline: check\n",
            project().display()
        ),
    )
    .unwrap();
    let args: Vec<String> = vec![
        "serve".into(),
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        "0.0.0.0:0".into(),
        "--state-dir".into(),
        dir.join("state").display().to_string(),
        "--jobs-dir".into(),
        repo().join("jobs").display().to_string(),
    ];
    let s = GantryServer::spawn(&args, dir.join("serve.log"), dir.join("state"));
    wait_for(30, "the warning about an open page", || {
        std::fs::read_to_string(&s.log)
            .unwrap_or_default()
            .contains("need no credentials")
            .then_some(())
    });
}
