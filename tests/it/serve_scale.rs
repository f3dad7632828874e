//! `gantry serve` at scale (issues 10 and 12), on SQLite: every accepted event runs to its
//! end at least once (kill -9 and SIGTERM during a run sleeping in a shell; the abandoned
//! shell never finishes its side effect), `max_concurrent_runs` bounds the runs with a FIFO
//! queue, migrations are idempotent. The PostgreSQL replica tests are in
//! `serve_scale_pg.rs` and use the helpers here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, GantryServer, run};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn gantry() -> Command {
    let mut c = Command::new(common::gantry_bin());
    c.env("DOCKER_CONFIG", "/nonexistent-gantry-test");
    c
}

/// A tiny blocking HTTP client.
pub fn http(method: &str, url: &str, body: Vec<u8>, ct: Option<&str>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), url)
            .body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    })
}

/// Polls `f` until it returns Some, for at most `secs` seconds (state visible only through
/// the API: there is no event to await across processes).
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A distribution notification envelope for `team/app:tag` (carries the digest, so no
/// registry is asked).
pub fn envelope(tag: &str, seed: u8) -> Vec<u8> {
    let digest = format!("sha256:{}", format!("{seed:02x}").repeat(32));
    serde_json::to_vec(&serde_json::json!({"events": [{
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "repository": "team/app", "tag": tag, "digest": digest
        },
        "request": {"host": "registry.test:5000"},
        "actor": {"name": "ci"}
    }]}))
    .unwrap()
}

pub const ENVELOPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The processes on this host whose environment carries `GANTRY_RUN=<marker>` (every
/// command of that attempt has it; see `trigger::orphans`).
pub fn marked_processes(marker: &str) -> Vec<u32> {
    let want = format!("GANTRY_RUN={marker}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == want.as_bytes()))
        })
        .collect()
}

/// Waits until no process of the attempt `marker` is left: from then on nothing of that
/// attempt can write a side effect, so its absence can be checked at once instead of after
/// the time its shell would have taken. (`/proc` gives no event to await; the wait covers
/// the moment between the kill and the reaping.)
pub fn wait_no_process_of(marker: &str) {
    wait_for(30, &format!("no process of attempt {marker}"), || {
        marked_processes(marker).is_empty().then_some(())
    });
}

/// A config with one `source: registry` trigger on the slow project (`nap` seconds of
/// sleep in the shell), plus `top` at the top level.
pub fn write_config(dir: &Path, nap: f64, debounce: u32, top: &str) -> (PathBuf, PathBuf) {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let project = repo().join("tests/fixtures/serve_scale/project");
    let cfg = format!(
        "{top}endpoints: []\ntriggers:\n  - name: app\n    source: registry\n    token: s3cret\n    image: 'team/.*'\n    project: {}\n    pipeline: check\n    debounce: {debounce}\n    parameters: {{out: {}, nap: {nap}}}\n",
        project.display(),
        out.display()
    );
    let config = dir.join("gantry-serve.yaml");
    std::fs::write(&config, cfg).unwrap();
    (config, out)
}

/// `gantry serve` on `config` with `extra` arguments.
pub fn start(dir: &Path, config: &Path, extra: &[&str]) -> GantryServer {
    let state = dir.join("state");
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
    GantryServer::spawn(
        &args,
        dir.join(format!("serve-{}.log", uuid::Uuid::new_v4())),
        state,
    )
}

pub fn hook(s: &GantryServer, tag: &str, seed: u8) -> i64 {
    let (code, body) = http(
        "POST",
        &format!("http://{}/hooks/registry/app?token=s3cret", s.addr),
        envelope(tag, seed),
        Some(ENVELOPE),
    );
    assert_eq!(code, 202, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["events"][0]
        .as_i64()
        .unwrap_or(-1)
}

pub fn executions(s: &GantryServer) -> Vec<Value> {
    let (code, body) = http(
        "GET",
        &format!("http://{}/api/executions", s.addr),
        vec![],
        None,
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until `n` executions exist and all are finished.
pub fn all_finished(s: &GantryServer, n: usize, secs: u64) -> Vec<Value> {
    wait_for(secs, &format!("{n} finished executions"), || {
        let xs = executions(s);
        (xs.len() >= n && xs.iter().all(|x| x["finished_ms"].is_i64())).then_some(xs)
    })
}

/// The (start, end) lines the slow job wrote for `tag`: (kind, nanoseconds, marker).
pub fn marks(out: &Path, tag: &str) -> Vec<(String, u128, String)> {
    std::fs::read_to_string(out.join(format!("{tag}.log")))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut p = l.split(' ');
            (
                p.next().unwrap_or("").to_string(),
                p.next().unwrap_or("0").parse().unwrap_or(0),
                p.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub fn sigterm(s: &GantryServer) {
    run(Command::new("kill").args(["-TERM", &s.child.id().to_string()]));
}

/// kill -9 while the run sleeps in its shell; after the restart the event runs again to
/// SUCCESS, the interrupted attempt is recorded, and the orphaned shell never wrote.
#[test]
fn serve_scale_kill9_during_a_run_reruns_it_and_the_orphan_never_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, out) = write_config(tmp.path(), 4.0, 60, "");
    let mut s = start(tmp.path(), &config, &[]);
    hook(&s, "v1", 1);
    let first = wait_for(60, "the shell to start", || {
        let m = marks(&out, "v1");
        (!m.is_empty()).then(|| m[0].2.clone())
    });
    s.kill9();
    // The second attempt need not nap: write_config's parameters are read at run time.
    let (config, out) = write_config(tmp.path(), 0.0, 60, "");
    let s = start(tmp.path(), &config, &[]);
    let xs = all_finished(&s, 1, 90);
    let x = &xs[0];
    assert_eq!(x["status"], "SUCCESS", "{x}");
    assert_eq!(x["state"], "succeeded", "{x}");
    let attempts = x["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{x}");
    assert_eq!(attempts[0]["state"], "abandoned", "{x}");
    assert!(
        attempts[0]["reason"]
            .as_str()
            .unwrap()
            .contains("restarted"),
        "{x}"
    );
    assert_eq!(attempts[1]["state"], "succeeded", "{x}");
    // The first shell (4 s nap) is gone, so it can never write its end mark.
    wait_no_process_of(&first);
    let m = marks(&out, "v1");
    let ends: Vec<_> = m.iter().filter(|(k, _, _)| k == "end").collect();
    assert_eq!(ends.len(), 1, "{m:?}");
    assert_ne!(ends[0].2, first, "the end is the second attempt's: {m:?}");
    assert!(first.ends_with("/1") && ends[0].2.ends_with("/2"), "{m:?}");
    // `gantry events` tells the run's fate.
    let ls = run(gantry()
        .args(["events", "ls", "--state-dir"])
        .arg(tmp.path().join("state")));
    assert!(ls.contains("started → succeeded on"), "{ls}");
}

/// SIGTERM: a run that finishes within the grace period ends normally and the process
/// exits 0; one that does not is abandoned (its shell killed) and runs again after the
/// restart.
#[test]
fn serve_scale_sigterm_waits_for_runs_then_abandons_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, out) = write_config(tmp.path(), 2.0, 60, "");
    let mut s = start(tmp.path(), &config, &["--grace", "30"]);
    hook(&s, "short", 1);
    wait_for(60, "the shell to start", || {
        (!marks(&out, "short").is_empty()).then_some(())
    });
    sigterm(&s);
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let m = marks(&out, "short");
    assert_eq!(m.len(), 2, "the run finished before the exit: {m:?}");

    // Grace 1 s, a 5 s nap: abandoned, then run again after the restart.
    let (config, out) = write_config(tmp.path(), 5.0, 60, "");
    let mut s = start(tmp.path(), &config, &["--grace", "1"]);
    let xs = executions(&s);
    assert_eq!(xs[0]["status"], "SUCCESS", "{xs:?}");
    hook(&s, "long", 2);
    let first = wait_for(60, "the shell to start", || {
        let m = marks(&out, "long");
        (!m.is_empty()).then(|| m[0].2.clone())
    });
    let t = Instant::now();
    sigterm(&s);
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The abandoned shell was killed: none of its processes is left, and it wrote no end.
    wait_no_process_of(&first);
    assert_eq!(
        marks(&out, "long").len(),
        1,
        "the abandoned shell was killed"
    );
    // The run again after the restart need not nap (parameters are read at run time).
    let (config, out) = write_config(tmp.path(), 0.0, 60, "");
    let s = start(tmp.path(), &config, &[]);
    let xs = all_finished(&s, 2, 90);
    let x = xs.iter().find(|x| x["tag"] == "long").unwrap();
    assert_eq!(x["status"], "SUCCESS", "{x}");
    let attempts = x["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{x}");
    assert_eq!(attempts[0]["state"], "abandoned", "{x}");
    assert!(
        attempts[0]["reason"]
            .as_str()
            .unwrap()
            .contains("grace period"),
        "{x}"
    );
    let m = marks(&out, "long");
    assert_eq!(
        m.iter().map(|(k, _, _)| k.as_str()).collect::<Vec<_>>(),
        ["start", "start", "end"],
        "{m:?}"
    );
}

/// Six hooks with `max_concurrent_runs: 2`: never more than two runs at once, the others
/// visible as queued, and all six run in order.
#[test]
fn serve_scale_max_concurrent_runs_queues_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, out) = write_config(tmp.path(), 1.0, 60, "max_concurrent_runs: 2\n");
    let s = start(tmp.path(), &config, &[]);
    for i in 0..6u8 {
        hook(&s, &format!("t{i}"), i + 1);
    }
    let queued = wait_for(30, "queued executions", || {
        let xs = executions(&s);
        let q = xs.iter().filter(|x| x["state"] == "queued").count();
        (q > 0).then_some(q)
    });
    assert!(queued <= 4, "{queued}");
    all_finished(&s, 6, 120);
    let spans: Vec<(u128, u128, String)> = (0..6)
        .map(|i| {
            let tag = format!("t{i}");
            let m = marks(&out, &tag);
            assert_eq!(m.len(), 2, "{tag}: {m:?}");
            (m[0].1, m[1].1, tag)
        })
        .collect();
    let most = spans
        .iter()
        .map(|(a, _, _)| spans.iter().filter(|(s, e, _)| s <= a && a < e).count())
        .max()
        .unwrap();
    assert!(most <= 2, "{most} runs at once: {spans:?}");
    assert_eq!(most, 2, "two slots are used: {spans:?}");
    // FIFO: executions are claimed in the order their events came. (The commands' own
    // start marks may swap when two slots free at once and both runs start together.)
    let mut claimed: Vec<(jiff::Timestamp, String)> = executions(&s)
        .iter()
        .map(|x| {
            let started = x["attempts"][0]["started"].as_str().unwrap_or_default();
            (
                started.parse().unwrap_or_else(|e| panic!("{started}: {e}")),
                x["tag"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    claimed.sort();
    let order: Vec<_> = claimed.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(order, ["t0", "t1", "t2", "t3", "t4", "t5"], "{spans:?}");
}

/// Migrating an empty SQLite database, and again, changes nothing the second time.
#[test]
fn serve_scale_sqlite_migrations_are_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("e.db").display());
    for _ in 0..2 {
        let out = run(gantry().args(["events", "ls", "--database", &url]));
        assert!(out.trim().is_empty(), "{out}");
    }
    let (_, err, code) =
        crate::common::run_fail(gantry().args(["events", "ls", "--database", "mysql://x"]));
    assert!(
        err.contains("expected sqlite://PATH or postgres://"),
        "{err}"
    );
    assert_eq!(code, 2);
}
