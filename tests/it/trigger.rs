//! `gantry serve` (issue 7): webhooks (Docker Hub's seed body, a distribution envelope from
//! Debian's docker-registry after a real skopeo copy), bursts, polls, crash safety of the
//! event log, bad input, and the CLI beside it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, GantryServer, image, run, run_fail};

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/trigger")
}

pub(crate) fn gantry() -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test");
    c
}

/// A tiny blocking HTTP client for the tests (they are synchronous).
pub(crate) fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().unwrap(), url).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    })
}

pub(crate) fn get_json(url: &str) -> Value {
    let (s, body) = http("GET", url, &[], vec![]);
    assert_eq!(s, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Checks `f` until it returns Some, for at most `secs` seconds: again each time a
/// `gantry serve` of these tests logs a line (an event taken in, a run queued, started or
/// ended: `common::wait_for_activity`), not on a clock. A state change that logs nothing
/// would go unseen, so while the servers are silent `f` is also checked once a second.
pub(crate) fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let seen = common::activity();
        if let Some(v) = f() {
            return v;
        }
        let now = Instant::now();
        assert!(now < end, "timed out waiting for {what}");
        common::wait_for_activity(seen, (end - now).min(Duration::from_secs(1)));
    }
}

/// Pushes a one-layer image (different per `seed`) to `host/repo:tag`; returns its digest.
pub(crate) fn push_image(host: &str, repo: &str, tag: &str, seed: u64) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = image::single_image_layout(&layout, tag, &[common::random_bytes(512, seed)]);
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("{host}/{repo}:{tag}")));
    digest
}

/// A `gantry serve` with its state dir and output dir.
pub(crate) struct Serve {
    pub(crate) server: GantryServer,
    pub(crate) dir: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) config: PathBuf,
}

impl Serve {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    pub(crate) fn executions(&self) -> Vec<Value> {
        get_json(&self.url("/api/executions"))
            .as_array()
            .unwrap()
            .clone()
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        get_json(&self.url("/api/events"))
            .as_array()
            .unwrap()
            .clone()
    }

    pub(crate) fn event(&self, id: i64) -> Value {
        get_json(&self.url(&format!("/api/events/{id}")))
    }

    /// Waits until an execution has finished; returns it.
    pub(crate) fn finished_execution(&self, n: usize) -> Value {
        wait_for(120, "a finished execution", || {
            let xs = self.executions();
            (xs.len() >= n && xs.iter().all(|x| x["status"] != "RUNNING")).then(|| xs[0].clone())
        })
    }

    /// What the run of event `id` wrote.
    pub(crate) fn recorded(&self, id: i64) -> Value {
        let path = self.out.join(format!("{id}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    pub(crate) fn restart(&mut self, extra: &[&str]) {
        self.server.kill9();
        self.server = start_server(&self.dir, &self.config, &self.state, extra);
    }
}

pub(crate) fn start_server(
    dir: &Path,
    config: &Path,
    state: &Path,
    extra: &[&str],
) -> GantryServer {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--state-dir".into(),
        state.display().to_string(),
        "--jobs-dir".into(),
        repo().join("jobs").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    GantryServer::spawn_watched(
        &args,
        dir.join(format!("serve-{}.log", uuid::Uuid::new_v4())),
        state.to_path_buf(),
        &[],
    )
}

/// Writes a config with `endpoints` (name, url) and `triggers` (YAML text, indented as list
/// items), then starts `gantry serve` on it.
pub(crate) fn serve(
    dir: &Path,
    endpoints: &[(&str, String)],
    triggers: &str,
    extra: &[&str],
) -> Serve {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut cfg = String::from("endpoints:\n");
    for (name, url) in endpoints {
        cfg.push_str(&format!("  - name: {name}\n    url: {url}\n"));
    }
    cfg.push_str("triggers:\n");
    cfg.push_str(
        &triggers
            .replace("PROJECT", &fixtures().join("project").display().to_string())
            .replace("OUT", &out.display().to_string()),
    );
    let config = dir.join("gantry-serve.yaml");
    std::fs::write(&config, cfg).unwrap();
    let state = dir.join("state");
    let server = start_server(dir, &config, &state, extra);
    Serve {
        server,
        dir: dir.to_path_buf(),
        state,
        out,
        config,
    }
}

pub(crate) fn hub_trigger(name: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    source: dockerhub\n    endpoint: reg\n    token: s3cret\n    image: 'svendowideit/.*'\n    project: PROJECT\n    pipeline: check\n    parameters: {{out: OUT}}\n{extra}"
    )
}

pub(crate) fn seed_body() -> Vec<u8> {
    std::fs::read(fixtures().join("dockerhub-seed.json")).unwrap()
}

#[test]
fn trigger_dockerhub_seed_body_with_right_and_wrong_token() {
    let reg = GantryServer::registry(&[]);
    let digest = push_image(&reg.host(), "svendowideit/testhook", "latest", 1);
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(
        tmp.path(),
        &[("reg", format!("http://{}", reg.host()))],
        &hub_trigger("hub-app", ""),
        &[],
    );
    let (code, _) = http(
        "POST",
        &s.url("/hooks/dockerhub/hub-app?token=wrong"),
        &[],
        seed_body(),
    );
    assert_eq!(code, 401);
    let (code, _) = http("POST", &s.url("/hooks/dockerhub/hub-app"), &[], seed_body());
    assert_eq!(code, 401, "no token");
    assert!(s.events().is_empty(), "a refused hook is not logged");

    let (code, body) = http(
        "POST",
        &s.url("/hooks/dockerhub/hub-app?token=s3cret"),
        &[],
        seed_body(),
    );
    assert_eq!(code, 202, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["events"][0]
        .as_i64()
        .unwrap();
    let x = s.finished_execution(1);
    assert_eq!(x["status"], "SUCCESS", "{x}");
    assert_eq!(x["digest"], digest.as_str());
    assert_eq!(x["builds"][0]["job"], "record-trigger");
    assert_eq!(x["builds"][0]["result"], "SUCCESS");
    let got = s.recorded(id);
    assert_eq!(got["digest"], digest.as_str());
    assert_eq!(
        got["reference"],
        format!("{}/svendowideit/testhook@{digest}", reg.host()).as_str()
    );
    assert_eq!(got["tag"], "latest");
    assert_eq!(got["owner"], "svendowideit");
    assert_eq!(got["namespace"], "svendowideit");
    assert_eq!(got["name"], "testhook");
    assert_eq!(got["source"], "dockerhub");
    assert_eq!(got["label"], "latest");
    assert_eq!(got["image"], "svendowideit/testhook");
    assert_eq!(got["registry_name"], reg.host().as_str());
    assert_eq!(
        got["environment"]["GO_PACKAGE_HUB_APP_LABEL"], "latest",
        "{got}"
    );
    let shell_env = std::fs::read_to_string(s.out.join(format!("{id}.env"))).unwrap();
    assert_eq!(shell_env, format!("latest {digest}"));
    let env = got["environment"].to_string();
    assert!(!env.to_lowercase().contains("password"), "{env}");
    let uuid = x["builds"][0]["uuid"].as_str().unwrap();
    let (code, log) = http(
        "GET",
        &s.url(&format!(
            "/api/executions/{}/logs/{uuid}",
            x["id"].as_str().unwrap()
        )),
        &[],
        vec![],
    );
    assert_eq!(code, 200);
    assert!(log.contains("Write what the trigger handed over"), "{log}");
    let ev = s.event(id);
    assert_eq!(ev["outcome"], "started");
    assert_eq!(ev["execution"], x["id"]);
    // The page and the CLI see the same.
    let (code, page) = http("GET", &s.url("/"), &[], vec![]);
    assert_eq!(code, 200);
    assert!(page.contains("/api/executions"), "{page}");
    let ls = run(gantry().args(["events", "ls", "--state-dir"]).arg(&s.state));
    assert!(
        ls.contains("svendowideit/testhook:latest") && ls.contains("started"),
        "{ls}"
    );
    let show = run(gantry()
        .args(["events", "show", &id.to_string(), "--state-dir"])
        .arg(&s.state));
    assert!(show.contains("record-trigger\tSUCCESS"), "{show}");
}

#[test]
fn trigger_burst_of_six_identical_hooks_starts_one_run() {
    let reg = GantryServer::registry(&[]);
    push_image(&reg.host(), "svendowideit/testhook", "latest", 2);
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(
        tmp.path(),
        &[("reg", format!("http://{}", reg.host()))],
        &hub_trigger("hub-app", "    debounce: 300\n"),
        &[],
    );
    let url = s.url("/hooks/dockerhub/hub-app?token=s3cret");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || http("POST", &url, &[], seed_body()).0)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 202);
    }
    let events = wait_for(60, "six handled events", || {
        let evs = s.events();
        (evs.len() == 6 && evs.iter().all(|e| e["state"] == "done")).then_some(evs)
    });
    let started = events.iter().filter(|e| e["outcome"] == "started").count();
    let dups = events
        .iter()
        .filter(|e| {
            e["outcome"]
                .as_str()
                .unwrap()
                .starts_with("duplicate of event")
        })
        .count();
    assert_eq!((started, dups), (1, 5), "{events:?}");
    s.finished_execution(1);
    assert_eq!(s.executions().len(), 1);
    // A replay is never a duplicate: the running server starts a second run.
    let dup = events.iter().find(|e| e["outcome"] != "started").unwrap()["id"]
        .as_i64()
        .unwrap();
    run(gantry()
        .args(["events", "replay", &dup.to_string(), "--state-dir"])
        .arg(&s.state));
    s.finished_execution(2);
    assert_eq!(s.event(dup)["outcome"], "started");
}

#[test]
fn trigger_event_logged_before_202_survives_kill9() {
    let reg = GantryServer::registry(&[]);
    let digest = push_image(&reg.host(), "svendowideit/testhook", "latest", 3);
    let tmp = tempfile::tempdir().unwrap();
    // --paused: intake only, so the run cannot start before the kill.
    let mut s = serve(
        tmp.path(),
        &[("reg", format!("http://{}", reg.host()))],
        &hub_trigger("hub-app", ""),
        &["--paused"],
    );
    let (code, body) = http(
        "POST",
        &s.url("/hooks/dockerhub/hub-app?token=s3cret"),
        &[],
        seed_body(),
    );
    assert_eq!(code, 202, "{body}");
    s.server.kill9();
    s.restart(&[]);
    let x = s.finished_execution(1);
    assert_eq!(x["status"], "SUCCESS", "{x}");
    assert_eq!(x["digest"], digest.as_str());
}

#[test]
fn trigger_bad_input() {
    let reg = GantryServer::registry(&[]);
    push_image(&reg.host(), "svendowideit/testhook", "latest", 4);
    let tmp = tempfile::tempdir().unwrap();
    let triggers = format!(
        "{}{}{}",
        hub_trigger("hub-app", ""),
        hub_trigger("disabled-app", "    enabled: false\n"),
        // An endpoint nobody listens on: port 9 (discard) on loopback refuses.
        hub_trigger("down", "").replace("endpoint: reg", "endpoint: down"),
    );
    let s = serve(
        tmp.path(),
        &[
            ("reg", format!("http://{}", reg.host())),
            ("down", "http://127.0.0.1:9".into()),
        ],
        &triggers,
        &[],
    );
    let hook = |name: &str, body: Vec<u8>| {
        http(
            "POST",
            &s.url(&format!("/hooks/dockerhub/{name}?token=s3cret")),
            &[],
            body,
        )
    };
    assert_eq!(hook("hub-app", vec![b' '; 2 << 20]).0, 413, "oversized");
    assert_eq!(
        hook("hub-app", b"{\"repository\": ".to_vec()).0,
        400,
        "malformed"
    );
    assert_eq!(
        hook("hub-app", b"[1, 2]".to_vec()).0,
        400,
        "not a hub payload"
    );
    assert_eq!(hook("nope", seed_body()).0, 404, "unknown trigger");
    assert_eq!(
        http("POST", &s.url("/hooks/registry/hub-app"), &[], seed_body()).0,
        404,
        "a trigger of another source"
    );
    assert!(s.events().is_empty());

    let (code, body) = hook("disabled-app", seed_body());
    assert_eq!(code, 202);
    assert!(body.contains("disabled"), "{body}");
    let (_, body) = hook("down", seed_body());
    let down: i64 = serde_json::from_str::<Value>(&body).unwrap()["events"][0]
        .as_i64()
        .unwrap();
    let ev = wait_for(30, "a retried resolve", || {
        let e = s.event(down);
        (e["attempts"].as_i64().unwrap() >= 2).then_some(e)
    });
    assert_eq!(ev["state"], "pending", "{ev}");
    assert!(
        ev["outcome"].as_str().unwrap().starts_with("retrying"),
        "{ev}"
    );
    let off = s
        .events()
        .into_iter()
        .find(|e| e["trigger"] == "disabled-app")
        .unwrap();
    assert_eq!(off["outcome"], "disabled");
    assert!(
        s.executions().is_empty(),
        "no run for disabled or unresolved events"
    );

    // gantry trigger disable/enable, read by the running server at each event.
    run(gantry()
        .args(["trigger", "disable", "hub-app", "--state-dir"])
        .arg(&s.state)
        .arg("--config")
        .arg(&s.config));
    let (code, body) = hook("hub-app", seed_body());
    assert_eq!(code, 202);
    assert!(body.contains("disabled"), "{body}");
    run(gantry()
        .args(["trigger", "enable", "hub-app", "--state-dir"])
        .arg(&s.state)
        .arg("--config")
        .arg(&s.config));
    // An unknown name is a usage error (exit 2), not a silent "disabled".
    let (_, err, code) = run_fail(
        gantry()
            .args(["trigger", "disable", "nope", "--state-dir"])
            .arg(&s.state)
            .arg("--config")
            .arg(&s.config),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no trigger \"nope\""), "{err}");
    assert!(hook("hub-app", seed_body()).1.contains("accepted"));
}

#[test]
fn trigger_config_errors_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gantry-serve.yaml");
    std::fs::write(
        &cfg,
        "endpoints: []\ntriggers:\n  - name: a\n    source: dockerhub\n    project: .\n    pipeline: check\n    endpoint: nowhere\n    token: t\n    tags: {include: '(', match: full}\n",
    )
    .unwrap();
    let (_, err, code) = run_fail(
        gantry()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .arg("--state-dir")
            .arg(tmp.path().join("state")),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("gantry-serve.yaml:3:"), "{err}");
    assert!(err.contains("unknown endpoint \"nowhere\""), "{err}");
    assert!(err.contains("include"), "{err}");
}

#[test]
fn trigger_test_explains_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gantry-serve.yaml");
    std::fs::write(
        &cfg,
        "triggers:\n  - name: app\n    source: dockerhub\n    token: t\n    image: 'team/.*'\n    tags: {include: 'v[0-9.]+'}\n    project: .\n    pipeline: check\n",
    )
    .unwrap();
    let out = run(gantry()
        .args([
            "trigger", "test", "app", "--tag", "v1.2", "--image", "team/app", "--config",
        ])
        .arg(&cfg));
    assert!(out.contains("would start a run"), "{out}");
    let (out, _, code) = run_fail(
        gantry()
            .args([
                "trigger",
                "test",
                "app",
                "--tag",
                "sha256-abc.sig",
                "--config",
            ])
            .arg(&cfg),
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL  include /v[0-9.]+/ (full match)"),
        "{out}"
    );
    assert!(out.contains("FAIL  exclude sha256-*.sig"), "{out}");
}

#[test]
fn trigger_poll_sees_new_and_repushed_tags() {
    let reg = GantryServer::registry(&[]);
    let host = reg.host();
    push_image(&host, "team/app", "v1.0.0", 10);
    push_image(&host, "team/app", "nightly", 11);
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(
        tmp.path(),
        &[("reg", format!("http://{host}"))],
        "  - name: poller\n    source: poll\n    endpoint: reg\n    image: team/app\n    tags: {include: 'v.*'}\n    project: PROJECT\n    pipeline: check\n    parameters: {out: OUT}\n    poll: {interval: 0.3, order: semver, range: '>=1.0.0'}\n",
        &[],
    );
    // First poll: the latest matching tag runs.
    let first = s.finished_execution(1);
    assert_eq!(first["tag"], "v1.0.0", "{first}");
    // A new matching tag.
    let d2 = push_image(&host, "team/app", "v1.1.0", 12);
    let x = wait_for(60, "a run for v1.1.0", || {
        s.executions().into_iter().find(|x| x["tag"] == "v1.1.0")
    });
    assert_eq!(x["digest"], d2.as_str());
    // The same tag pushed again with other content.
    let d3 = push_image(&host, "team/app", "v1.1.0", 13);
    assert_ne!(d2, d3);
    let x = wait_for(60, "a run for the re-pushed v1.1.0", || {
        s.executions()
            .into_iter()
            .find(|x| x["tag"] == "v1.1.0" && x["digest"] == d3.as_str())
    });
    assert_eq!(x["repository"], "team/app");
    s.finished_execution(3);
    assert!(
        s.executions().iter().all(|x| x["tag"] != "nightly"),
        "the tag filter keeps nightly out"
    );
}

#[test]
fn trigger_distribution_envelope_from_docker_registry_after_skopeo_copy() {
    if !common::have_docker_registry() || !common::have_skopeo() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(
        tmp.path(),
        &[],
        "  - name: dist\n    source: registry\n    token: n0tify\n    image: 'team/.*'\n    project: PROJECT\n    pipeline: check\n    parameters: {out: OUT}\n",
        &[],
    );
    let notify = format!(
        "notifications:\n  endpoints:\n    - name: gantry\n      url: {}\n      headers: {{Authorization: [Bearer n0tify]}}\n      timeout: 5s\n      threshold: 3\n      backoff: 1s\n",
        s.url("/hooks/registry/dist")
    );
    let dreg = common::DockerRegistry::start_with(None, None, &notify);
    let layout = tmp.path().join("layout");
    image::single_image_layout(&layout, "v1", &[common::random_bytes(700, 20)]);
    let digest_file = tmp.path().join("digest");
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--digestfile"])
        .arg(&digest_file)
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{}/team/app:v1", dreg.host())));
    // What the registry stores (skopeo may convert the manifest on the way).
    let digest = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_string();
    let x = wait_for(60, "a run from the registry's notification", || {
        s.executions()
            .into_iter()
            .find(|x| x["status"] != "RUNNING")
    });
    assert_eq!(x["status"], "SUCCESS", "{x}");
    assert_eq!(x["digest"], digest.as_str());
    assert_eq!(x["tag"], "v1");
    assert_eq!(x["registry"], dreg.host().as_str());
    let got = s.recorded(x["event_id"].as_i64().unwrap());
    assert_eq!(
        got["reference"],
        format!("{}/team/app@{digest}", dreg.host()).as_str()
    );
    assert_eq!(got["source"], "registry");
}

#[test]
fn trigger_gantry_registry_notify_starts_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(
        tmp.path(),
        &[],
        "  - name: own\n    source: registry\n    token: n0tify\n    image: 'team/.*'\n    project: PROJECT\n    pipeline: check\n    parameters: {out: OUT}\n",
        &[],
    );
    let notify = s.url("/hooks/registry/own?token=n0tify");
    let reg = GantryServer::registry(&["--notify", &notify]);
    // A blob-only or untagged push sends nothing; the tagged manifest push does.
    let digest = push_image(&reg.host(), "team/app", "v2", 30);
    let x = wait_for(60, "a run from gantry's registry notification", || {
        s.executions()
            .into_iter()
            .find(|x| x["status"] != "RUNNING")
    });
    assert_eq!(x["status"], "SUCCESS", "{x}");
    assert_eq!(x["digest"], digest.as_str());
    assert_eq!(x["registry"], reg.host().as_str());
    let got = s.recorded(x["event_id"].as_i64().unwrap());
    assert_eq!(
        got["reference"],
        format!("{}/team/app@{digest}", reg.host()).as_str()
    );
    // Delivered notifications leave the queue.
    let queue = reg.data.join("notifications");
    wait_for(10, "an empty notification queue", || {
        (std::fs::read_dir(&queue).unwrap().count() == 0).then_some(())
    });
}

#[test]
fn trigger_page_in_headless_chromium_shows_the_run_and_its_timeline() {
    if !common::require_tool("chromium", &["--version"]) {
        return;
    }
    let reg = GantryServer::registry(&[]);
    push_image(&reg.host(), "svendowideit/testhook", "latest", 40);
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(
        tmp.path(),
        &[("reg", format!("http://{}", reg.host()))],
        &hub_trigger("hub-app", ""),
        &[],
    );
    let (code, _) = http(
        "POST",
        &s.url("/hooks/dockerhub/hub-app?token=s3cret"),
        &[],
        seed_body(),
    );
    assert_eq!(code, 202);
    let x = s.finished_execution(1);
    let chromium = |extra: &[&str]| {
        let mut c = Command::new("chromium");
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--window-size=1200,800",
        ])
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("chromium").display()
        ))
        .args(extra)
        .arg(s.url("/"));
        c
    };
    let dom = run(&mut chromium(&["--dump-dom"]));
    assert!(dom.contains("svendowideit/testhook:latest"), "{dom}");
    assert!(dom.contains("record-trigger"), "the job timeline: {dom}");
    assert!(dom.contains("class=\"bar SUCCESS\""), "{dom}");
    assert!(dom.contains(&x["id"].as_str().unwrap()[..12]), "{dom}");
    // A screenshot for people (kept next to the test's target dir).
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gantry-serve-page.png");
    let _ = std::fs::remove_file(&shot);
    run(&mut chromium(&[&format!(
        "--screenshot={}",
        shot.display()
    )]));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{}", shot.display());
}

#[test]
fn trigger_gitlab_tag_push_with_idempotency_key() {
    let reg = GantryServer::registry(&[]);
    let digest = push_image(&reg.host(), "team/app", "v1", 50);
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(
        tmp.path(),
        &[("reg", format!("http://{}", reg.host()))],
        "  - name: gl\n    source: gitlab\n    endpoint: reg\n    token: gl-secret\n    project: PROJECT\n    pipeline: check\n    parameters: {out: OUT}\n",
        &[],
    );
    let body = std::fs::read(fixtures().join("gitlab-tag-push.json")).unwrap();
    let url = s.url("/hooks/gitlab/gl");
    let (code, _) = http("POST", &url, &[("X-Gitlab-Token", "nope")], body.clone());
    assert_eq!(code, 401);
    let headers = [("X-Gitlab-Token", "gl-secret"), ("Idempotency-Key", "k-1")];
    let (code, first) = http("POST", &url, &headers, body.clone());
    assert_eq!(code, 202, "{first}");
    // GitLab retries a delivery with the same key: accepted, not logged twice.
    let (code, again) = http("POST", &url, &headers, body.clone());
    assert_eq!(code, 202);
    assert!(again.contains("\"events\":[]"), "{again}");
    let x = s.finished_execution(1);
    assert_eq!(x["status"], "SUCCESS", "{x}");
    assert_eq!(x["repository"], "team/app");
    assert_eq!(x["digest"], digest.as_str());
    assert_eq!(s.events().len(), 1);
}

#[test]
fn trigger_endpoint_check() {
    let reg = GantryServer::registry(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("gantry-serve.yaml");
    std::fs::write(
        &cfg,
        format!(
            "endpoints:\n  - name: up\n    url: http://{}\n  - name: down\n    url: http://127.0.0.1:9\n",
            reg.host()
        ),
    )
    .unwrap();
    let out = run(gantry()
        .args(["endpoint", "check", "up", "--config"])
        .arg(&cfg));
    assert!(out.contains("connection OK"), "{out}");
    let (out, _, code) = run_fail(
        gantry()
            .args(["endpoint", "check", "down", "--config"])
            .arg(&cfg),
    );
    assert_eq!(code, 1);
    assert!(out.contains("connection failed"), "{out}");
}
