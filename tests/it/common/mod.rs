//! Shared test helpers: start real servers, find real tools, make images locally.

#![allow(dead_code)]

pub mod image;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;

pub fn gantry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gantry")
}

/// Installs the rustls provider once per test process (what main.rs does for the binary).
pub fn crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// True when `tool` runs. When it does not: in CI (`CI=true`) the test fails, elsewhere it
/// is skipped with a message. Interop tests are never silently skipped in CI.
pub fn require_tool(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "required tool `{tool} {}` is not available (CI=true: interop tests may not be skipped)",
                args.join(" ")
            );
        }
        eprintln!("SKIPPED: `{tool}` is not available; run scripts/test.sh to install it");
    }
    ok
}

pub fn have_skopeo() -> bool {
    require_tool("skopeo", &["--version"])
}

pub fn have_docker() -> bool {
    require_tool("docker", &["info"])
}

/// A `gantry` subprocess serving on 127.0.0.1 with an OS-chosen port; killed on drop.
pub struct GantryServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl GantryServer {
    /// `gantry registry serve --listen 127.0.0.1:0 --data-dir <tmp> <extra…>`.
    pub fn registry(extra: &[&str]) -> GantryServer {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut s = Self::registry_at(&data, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Same, on a given data directory (restart tests).
    pub fn registry_at(data: &Path, extra: &[&str]) -> GantryServer {
        let log = data.with_extension(format!("log-{}", uuid::Uuid::new_v4()));
        let mut args: Vec<String> = vec![
            "registry".into(),
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(&args, log, data.to_path_buf())
    }

    pub fn spawn(args: &[String], log: PathBuf, data: PathBuf) -> GantryServer {
        Self::spawn_env(args, log, data, &[])
    }

    /// [`GantryServer::spawn`] with extra environment variables for the server.
    pub fn spawn_env(
        args: &[String],
        log: PathBuf,
        data: PathBuf,
        env: &[(&str, &str)],
    ) -> GantryServer {
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let log_file = std::fs::File::create(&log).unwrap();
        Self::start(args, log, data, env, log_file.into())
    }

    /// Starts the server with `stderr` and reads its `listening on ADDR` line.
    fn start(
        args: &[String],
        log: PathBuf,
        data: PathBuf,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> GantryServer {
        let mut child = Command::new(gantry_bin())
            .args(args)
            .envs(env.iter().copied())
            .env("GANTRY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start gantry");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("expected `listening on ADDR`, got {line:?}; stderr: {err}")
            })
            .parse()
            .unwrap();
        GantryServer {
            child,
            addr,
            log,
            data,
            _tmp: None,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The request log lines (`request METHOD PATH STATUS`).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("request ").map(|(_, r)| r.to_string()))
            .collect()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GantryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Debian's `docker-registry` (distribution 2.8) on 127.0.0.1:0, optionally with TLS and
/// htpasswd; its address is read from its own `listening on ADDR` log line. Killed on drop.
pub struct DockerRegistry {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl DockerRegistry {
    /// `tls`: (cert, key) PEM files; `htpasswd`: a bcrypt htpasswd file.
    pub fn start(tls: Option<(&Path, &Path)>, htpasswd: Option<&Path>) -> DockerRegistry {
        Self::start_with(tls, htpasswd, "")
    }

    /// Same, with `extra` appended to the configuration (e.g. a `notifications:` block).
    pub fn start_with(
        tls: Option<(&Path, &Path)>,
        htpasswd: Option<&Path>,
        extra: &str,
    ) -> DockerRegistry {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = format!(
            "version: 0.1\nlog: {{level: info}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:0\n",
            tmp.path().join("data").display()
        );
        if let Some((c, k)) = tls {
            cfg.push_str(&format!(
                "  tls: {{certificate: {}, key: {}}}\n",
                c.display(),
                k.display()
            ));
        }
        if let Some(h) = htpasswd {
            cfg.push_str(&format!(
                "auth:\n  htpasswd: {{realm: test, path: {}}}\n",
                h.display()
            ));
        }
        cfg.push_str(extra);
        let cfg_path = tmp.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = tmp.path().join("registry.log");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-registry");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = log.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut out = std::fs::File::create(&log_path).unwrap();
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(out, "{line}");
                if !sent && let Some(i) = line.find("listening on ") {
                    let addr: String = line[i + 13..]
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("docker-registry did not report `listening on`")
            .parse()
            .unwrap();
        DockerRegistry {
            child,
            addr,
            log,
            _tmp: tmp,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn have_docker_registry() -> bool {
    require_tool("sh", &["-c", "command -v docker-registry"])
}

/// Runs a command, panicking with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command expected to fail; returns (stdout, stderr, code).
pub fn run_fail(cmd: &mut Command) -> (String, String, i32) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(!out.status.success(), "{cmd:?} unexpectedly succeeded");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// A random payload (deterministic per seed).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tool from the test venv made by scripts/test.sh (`$GANTRY_TEST_VENV/bin/NAME`, else the
/// default venv path, else PATH). `None` outside CI when it is missing (the test skips);
/// with `CI=true` a missing tool fails the test.
pub fn venv_tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("GANTRY_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gantry-test/venv"))
        });
    let candidate = venv
        .map(|v| v.join("bin").join(name))
        .filter(|p| p.is_file());
    let found = candidate.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "required tool `{name}` is not available (CI=true: run scripts/test.sh, which makes the test venv)"
            );
        }
        eprintln!("SKIPPED: `{name}` is not available; run scripts/test.sh to install it");
    }
    found
}

/// The directory holding PostgreSQL's server binaries (initdb, pg_ctl, postgres):
/// `$GANTRY_TEST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`. Same CI rule as above.
pub fn pg_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("GANTRY_TEST_PG_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|d| d.join("initdb").is_file())
                .collect();
            dirs.sort();
            dirs.pop()
        });
    if dir.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PostgreSQL server binaries are not available (CI=true: run scripts/test.sh)");
        }
        eprintln!("SKIPPED: PostgreSQL is not installed; run scripts/test.sh to install it");
    }
    dir
}

/// Log lines written by servers started with [`GantryServer::spawn_watched`], counted: a
/// test waiting for a server's state to change re-checks when this moves
/// ([`wait_for_activity`]) instead of on a clock.
static ACTIVITY: (std::sync::Mutex<u64>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// The number of server log lines seen so far.
pub fn activity() -> u64 {
    *ACTIVITY.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Blocks until a watched server writes a log line after `seen` lines, or `timeout` passes;
/// returns the new count.
pub fn wait_for_activity(seen: u64, timeout: std::time::Duration) -> u64 {
    let guard = ACTIVITY.0.lock().unwrap_or_else(|e| e.into_inner());
    let (guard, _) = ACTIVITY
        .1
        .wait_timeout_while(guard, timeout, |n| *n == seen)
        .unwrap_or_else(|e| e.into_inner());
    *guard
}

impl GantryServer {
    /// [`GantryServer::spawn_env`] whose stderr goes through this process: each line is
    /// appended to `log` and counted in [`activity`] (lines of `GET /api/` requests, which
    /// waiting tests make themselves, are not counted).
    pub fn spawn_watched(
        args: &[String],
        log: PathBuf,
        data: PathBuf,
        env: &[(&str, &str)],
    ) -> GantryServer {
        use std::io::Write;
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let mut log_file = std::fs::File::create(&log).unwrap();
        let mut server = Self::start(args, log, data, env, Stdio::piped());
        let stderr = server.child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file, "{line}");
                if !line.contains(" request GET /api/") {
                    *ACTIVITY.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    ACTIVITY.1.notify_all();
                }
            }
        });
        server
    }
}

/// `gantry run DIR --pipeline check --json --executor EXECUTOR --state-dir STATE` plus
/// `extra`, with Ansible from `ansible` and no Docker credentials: the report's builds, each
/// asserted SUCCESS (its log shown when not).
pub fn run_check_builds(
    dir: &Path,
    executor: &str,
    ansible: &Path,
    state: &Path,
    extra: &[&std::ffi::OsStr],
) -> Vec<serde_json::Value> {
    let out = Command::new(gantry_bin())
        .env("DOCKER_CONFIG", "/nonexistent-gantry-test")
        .env("GANTRY_ANSIBLE", ansible)
        .arg("run")
        .arg(dir)
        .args(["--pipeline", "check", "--json", "--executor", executor])
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{executor}: {e}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let builds = report["builds"].as_array().cloned().unwrap_or_default();
    for b in &builds {
        let log = PathBuf::from(b["log"].as_str().unwrap_or_default());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(b["result"], "SUCCESS", "{executor}: {b}\n{text}");
    }
    builds
}
