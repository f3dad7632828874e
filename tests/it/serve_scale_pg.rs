//! `gantry serve` replicas on a real PostgreSQL (issue 12), started here once per test
//! process: `initdb` in a temp dir as the `postgres` user, `pg_ctl start` on a free port of
//! 127.0.0.1 (retried on another port if that one was taken meanwhile); each test has a
//! database of its own. Two replicas share the work: each event
//! runs once, a burst runs once, the survivor finishes a killed replica's run, a poll runs
//! once per interval, migrations are idempotent, logs are served by any replica.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, GantryServer, image, run};
use crate::serve_scale::{
    ENVELOPE, all_finished, envelope, executions, gantry, hook, http, marks, repo, start, wait_for,
    wait_no_process_of, write_config,
};

/// The PostgreSQL cluster of this test process, made on first use (`initdb` and the start
/// cost seconds of CPU each, so the tests share one; each test has a database of its own).
struct Cluster {
    bin: PathBuf,
    port: u16,
    /// The watchdog, whose stdin (a pipe from this process) is never closed while the
    /// process lives: when the test process exits (or is killed), the watchdog reads EOF,
    /// stops the cluster and removes its directory.
    _watchdog: std::process::Child,
}

static CLUSTER: std::sync::OnceLock<Option<Cluster>> = std::sync::OnceLock::new();

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let bin = common::pg_bin()?;
        // Kept until the watchdog removes it.
        let dir = tempfile::tempdir().unwrap().keep();
        run(Command::new("chown").arg("postgres").arg(&dir));
        let data = dir.join("data");
        run(as_postgres(&bin, "initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let ok = as_postgres(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("pg.log"))
                .args(["-w", "-o"])
                .arg(format!(
                    "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                    dir.display()
                ))
                .arg("start")
                .status()
                .unwrap()
                .success();
            if ok {
                // Ignores the terminal's signals so a Ctrl-C of the tests still cleans up.
                let watchdog = Command::new("sh")
                    .args([
                        "-c",
                        "trap '' INT TERM HUP; cat >/dev/null; \
                         runuser -u postgres -- \"$0/pg_ctl\" -D \"$1\" -m immediate stop >/dev/null 2>&1; \
                         rm -rf \"$2\"",
                    ])
                    .arg(&bin)
                    .arg(&data)
                    .arg(&dir)
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                return Some(Cluster {
                    bin,
                    port,
                    _watchdog: watchdog,
                });
            }
        }
        panic!("PostgreSQL did not start on any of 5 free ports");
    }

    fn psql(&self, database: &str, sql: &str) -> String {
        run(Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
            .args(["-Atc", sql, "-p"])
            .arg(self.port.to_string()))
    }
}

/// A database of its own in the process's cluster; dropped with the test.
pub struct Postgres {
    cluster: &'static Cluster,
    name: String,
}

impl Postgres {
    /// `None` (skipped) when PostgreSQL is not installed and CI is not set.
    pub fn start() -> Option<Postgres> {
        let cluster = CLUSTER.get_or_init(Cluster::start).as_ref()?;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        cluster.psql("postgres", &format!("CREATE DATABASE {name}"));
        Some(Postgres { cluster, name })
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:unused@127.0.0.1:{}/{}",
            self.cluster.port, self.name
        )
    }

    pub fn psql(&self, sql: &str) -> String {
        self.cluster.psql(&self.name, sql)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.cluster.psql(
            "postgres",
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        );
    }
}

/// Two replicas `a` and `b` on `pg`, each with its own state dir under `dir`.
fn replicas(dir: &Path, config: &Path, pg: &Postgres, lease: &str) -> Vec<GantryServer> {
    ["a", "b"]
        .iter()
        .map(|name| {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            start(
                &d,
                config,
                &[
                    "--database",
                    &pg.url(),
                    "--replica",
                    name,
                    "--lease-timeout",
                    lease,
                ],
            )
        })
        .collect()
}

#[test]
fn serve_scale_pg_migrations_from_empty_and_again_are_a_no_op() {
    let Some(pg) = Postgres::start() else { return };
    for _ in 0..2 {
        let out = run(gantry().args(["events", "ls", "--database", &pg.url()]));
        assert!(out.trim().is_empty(), "{out}");
    }
    assert_eq!(
        pg.psql("SELECT version FROM _sqlx_migrations ORDER BY version"),
        "1\n2\n"
    );
    // Trigger state lives in the database (the name is checked against the configuration).
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = write_config(tmp.path(), 0.2, 60, "");
    run(gantry()
        .args([
            "trigger",
            "disable",
            "app",
            "--database",
            &pg.url(),
            "--config",
        ])
        .arg(&config));
    assert_eq!(
        pg.psql("SELECT enabled FROM trigger_state WHERE name = 'app'"),
        "0\n"
    );
}

#[test]
fn serve_scale_pg_two_replicas_ten_hooks_each_run_once() {
    let Some(pg) = Postgres::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (config, out) = write_config(tmp.path(), 0.2, 60, "");
    let rs = replicas(tmp.path(), &config, &pg, "10");
    for i in 0..10u8 {
        hook(&rs[(i % 2) as usize], &format!("t{i}"), i + 1);
    }
    let xs = all_finished(&rs[0], 10, 120);
    assert_eq!(xs.len(), 10);
    for i in 0..10 {
        let m = marks(&out, &format!("t{i}"));
        assert_eq!(m.len(), 2, "t{i} ran once: {m:?}");
    }
    for x in &xs {
        assert_eq!(x["status"], "SUCCESS", "{x}");
        let replica = x["replica"].as_str().unwrap();
        assert!(replica == "a" || replica == "b", "{x}");
        assert_eq!(x["attempts"].as_array().unwrap().len(), 1, "{x}");
        // Any replica serves the log, whichever ran the build.
        for s in &rs {
            let (code, text) = http(
                "GET",
                &format!(
                    "http://{}/api/executions/{}/logs/{}",
                    s.addr,
                    x["id"].as_str().unwrap(),
                    x["builds"][0]["uuid"].as_str().unwrap()
                ),
                vec![],
                None,
            );
            assert_eq!(code, 200, "{text}");
            assert!(text.contains("Start, sleep, end"), "{text}");
        }
    }
    let by: Vec<&str> = xs.iter().map(|x| x["replica"].as_str().unwrap()).collect();
    eprintln!(
        "runs per replica: a {}, b {}",
        by.iter().filter(|r| **r == "a").count(),
        by.iter().filter(|r| **r == "b").count()
    );
    let ls = run(gantry().args(["events", "ls", "--database", &pg.url()]));
    assert_eq!(ls.matches("started → succeeded on ").count(), 10, "{ls}");
}

#[test]
fn serve_scale_pg_burst_to_both_replicas_runs_once() {
    let Some(pg) = Postgres::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (config, out) = write_config(tmp.path(), 0.1, 300, "");
    let rs = replicas(tmp.path(), &config, &pg, "10");
    let urls: Vec<String> = rs
        .iter()
        .map(|s| format!("http://{}/hooks/registry/app?token=s3cret", s.addr))
        .collect();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let url = urls[i % 2].clone();
            std::thread::spawn(move || http("POST", &url, envelope("latest", 7), Some(ENVELOPE)).0)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 202);
    }
    let events = wait_for(60, "eight handled events", || {
        let (_, body) = http(
            "GET",
            &format!("http://{}/api/events", rs[1].addr),
            vec![],
            None,
        );
        let evs: Vec<Value> = serde_json::from_str(&body).unwrap();
        (evs.len() == 8 && evs.iter().all(|e| e["state"] == "done")).then_some(evs)
    });
    let started = events.iter().filter(|e| e["outcome"] == "started").count();
    assert_eq!(started, 1, "{events:?}");
    all_finished(&rs[0], 1, 60);
    assert_eq!(executions(&rs[1]).len(), 1);
    assert_eq!(marks(&out, "latest").len(), 2);
}

#[test]
fn serve_scale_pg_kill9_of_the_running_replica_the_other_finishes_it() {
    let Some(pg) = Postgres::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // The run outlasts the lease (3 s) and a claim tick, so the survivor takes over while
    // the dead replica's shell still sleeps and must kill it.
    let (config, out) = write_config(tmp.path(), 6.0, 60, "");
    let mut rs = replicas(tmp.path(), &config, &pg, "3");
    hook(&rs[0], "long", 1);
    let (x, first) = wait_for(60, "the run to start", || {
        let xs = executions(&rs[0]);
        let m = marks(&out, "long");
        (xs.len() == 1 && xs[0]["state"] == "running" && !m.is_empty())
            .then(|| (xs[0].clone(), m[0].2.clone()))
    });
    let owner = x["replica"].as_str().unwrap().to_string();
    let (dead, alive) = if owner == "a" { (0, 1) } else { (1, 0) };
    let killed = Instant::now();
    rs[dead].kill9();
    let xs = all_finished(&rs[alive], 1, 60);
    let took = killed.elapsed();
    let x = &xs[0];
    assert_eq!(x["status"], "SUCCESS", "{x}");
    let attempts = x["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{x}");
    assert_eq!(attempts[0]["replica"], owner.as_str(), "{x}");
    assert_eq!(attempts[0]["state"], "abandoned", "{x}");
    assert!(
        attempts[0]["reason"]
            .as_str()
            .unwrap()
            .contains("stopped renewing its lease"),
        "{x}"
    );
    assert_ne!(attempts[1]["replica"], owner.as_str(), "{x}");
    assert_eq!(x["replica"], attempts[1]["replica"], "{x}");
    // lease (3 s) + a claim tick + the 6 s run, with slack for a loaded machine.
    assert!(took < Duration::from_secs(30), "{took:?}");
    // The dead replica's shell is gone (killed by the survivor on this host), so it can
    // never write its end mark.
    wait_no_process_of(&first);
    let m = marks(&out, "long");
    let ends: Vec<_> = m.iter().filter(|(k, _, _)| k == "end").collect();
    assert_eq!(ends.len(), 1, "the dead replica's shell never ended: {m:?}");
    assert!(ends[0].2.ends_with("/2"), "{m:?}");
    let show = run(gantry().args(["events", "show", "1", "--database", &pg.url()]));
    assert!(show.contains("abandoned"), "{show}");
}

/// Pushes a one-layer image to `host/repo:tag`; returns its digest.
fn push_image(host: &str, repo_name: &str, tag: &str, seed: u64) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = image::single_image_layout(&layout, tag, &[common::random_bytes(512, seed)]);
    run(gantry()
        .args(["image", "copy", "-q"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("{host}/{repo_name}:{tag}")));
    digest
}

#[test]
fn serve_scale_pg_poll_with_two_replicas_polls_once_per_interval() {
    let Some(pg) = Postgres::start() else { return };
    let reg = GantryServer::registry(&[]);
    push_image(&reg.host(), "team/app", "v1", 1);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = tmp.path().join("gantry-serve.yaml");
    std::fs::write(
        &config,
        format!(
            "endpoints:\n  - name: reg\n    url: http://{}\ntriggers:\n  - name: poller\n    source: poll\n    endpoint: reg\n    image: team/app\n    project: {}\n    pipeline: check\n    parameters: {{out: {}, nap: 0}}\n    poll: {{interval: 1}}\n",
            reg.host(),
            repo().join("tests/fixtures/serve_scale/project").display(),
            out.display()
        ),
    )
    .unwrap();
    let rs = replicas(tmp.path(), &config, &pg, "10");
    let polls = || {
        reg.requests()
            .iter()
            .filter(|r| r.contains("/tags/list"))
            .count()
    };
    let xs = all_finished(&rs[0], 1, 60);
    assert_eq!(xs[0]["tag"], "v1");
    // Counting polls needs a stretch of wall-clock time: 6 intervals.
    let before = polls();
    std::thread::sleep(Duration::from_secs(6));
    let n = polls() - before;
    assert!(
        (4..=7).contains(&n),
        "{n} polls in 6 intervals with 2 replicas"
    );
    assert_eq!(executions(&rs[1]).len(), 1, "v1 fired once");
}
