//! Issue 15: the README's quick tour runs as written.
//!
//! Every ```` ```console ```` block under `## Quick tour` in README.md is a step list: a line
//! `$ CMD` is a command (a trailing `\` continues it on the next line), the lines after it
//! are its output (stdout and stderr together). The test pastes the commands in order into
//! bash, in a scratch directory holding a copy of `examples/`, with the built `gantry` on
//! `PATH`, `HOME` in an empty directory, no Docker engine (`DOCKER_HOST` points nowhere, as on
//! a fresh machine, so `gantry build` picks the native builder as the README says) and an
//! otherwise empty environment. Shell variables a command assigns (`PW=$(…)`,
//! `export X=…`) and the last exit code (`echo $?`) carry over from command to command, as
//! in one shell.
//!
//! What is compared, per command:
//! - the exit code is 0, unless the next command is `echo $?` (whose output shows the code);
//! - the output, line by line: `…` in a shown line stands for any text and a line `...` for
//!   any lines; runs of spaces count as one; times (`3.0s`, `12 ms`, timestamps) may differ;
//!   digests (`sha256:` + 64 hex) and 32-hex ids may differ but only up to renaming — the same
//!   digest shown twice must be the same digest in the run, two different ones different;
//!   consecutive per-blob lines of a parallel copy (`blob …`, `Copying …`) may come in any
//!   order.
//!
//! Servers: a command ending in `&` starts a server that stays up. The README gives fixed
//! ports (5000, 5443, 8080); the test starts the server with `--listen 127.0.0.1:0` instead
//! (no port race), reads its first stdout line, which must be the shown `listening on …`,
//! and from then on writes the port the server got wherever the tour names the fixed one:
//! in the later commands, in their shown output and in the tour's copy of
//! `examples/gantry-serve.yaml` (whose endpoint is the tour's registry on 5000). The servers
//! are killed when the test ends, whatever happens.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use regex::Regex;

use crate::common::{gantry_bin, require_tool};

/// Tour commands the test does not run, with the reason. Each entry is a command's exact
/// text as in the README. None today: every step of the tour runs here.
const EXCLUDED: &[(&str, &str)] = &[];

/// One command of the tour and the output the README shows for it.
#[derive(Debug)]
struct Step {
    heading: String,
    command: String,
    shown: Vec<String>,
}

/// The steps of the `console` blocks of the README's `## Quick tour`, in order.
fn tour_steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_tour = false;
    let mut in_console = false;
    let mut in_other_fence = false;
    let mut heading = String::new();
    let mut continued = false;
    for line in readme.lines() {
        if !in_console && !in_other_fence {
            if line.starts_with("## ") {
                in_tour = line == "## Quick tour";
                continue;
            }
            if line.starts_with('#') {
                heading = line.trim_start_matches('#').trim().to_string();
                continue;
            }
        }
        if !in_tour {
            continue;
        }
        if in_other_fence {
            in_other_fence = !line.starts_with("```");
            continue;
        }
        if !in_console {
            if line == "```console" {
                in_console = true;
            } else if line.starts_with("```") {
                in_other_fence = true;
            }
            continue;
        }
        if line == "```" {
            in_console = false;
            continued = false;
            continue;
        }
        if continued {
            let step = steps.last_mut().expect("a continued command");
            step.command.push('\n');
            step.command.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            steps.push(Step {
                heading: heading.clone(),
                command: cmd.to_string(),
                shown: Vec::new(),
            });
            continued = cmd.ends_with('\\');
        } else {
            let step = steps
                .last_mut()
                .unwrap_or_else(|| panic!("output before any command in {heading}: {line}"));
            step.shown.push(line.to_string());
        }
    }
    for s in &mut steps {
        while s.shown.last().is_some_and(|l| l.trim().is_empty()) {
            s.shown.pop();
        }
    }
    steps
}

/// Digests and ids: allowed to differ from the README, but consistently (a bijection).
#[derive(Clone, Default)]
struct Names {
    shown_to_got: HashMap<String, String>,
    got_to_shown: HashMap<String, String>,
}

impl Names {
    fn bind(&mut self, shown: &str, got: &str) -> bool {
        match (self.shown_to_got.get(shown), self.got_to_shown.get(got)) {
            (Some(g), _) if g != got => false,
            (_, Some(s)) if s != shown => false,
            _ => {
                self.shown_to_got.insert(shown.into(), got.into());
                self.got_to_shown.insert(got.into(), shown.into());
                true
            }
        }
    }
}

enum Pattern {
    /// `...`: any lines.
    AnyLines,
    /// One line, with the shown digests/ids its groups capture, and whether it may swap
    /// places with its neighbours of the same kind (per-blob lines).
    Line {
        re: Regex,
        names: Vec<String>,
        unordered: bool,
    },
}

fn squeeze(s: &str) -> String {
    let spaces = Regex::new(" {2,}").unwrap();
    spaces.replace_all(s.trim_end(), " ").into_owned()
}

fn pattern(line: &str) -> Pattern {
    if line.trim() == "..." {
        return Pattern::AnyLines;
    }
    let token = Regex::new(
        r"sha256:[0-9a-f]{64}|\b[0-9a-f]{32}\b|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?Z?|\b\d+(?:\.\d+)? ?(?:ms|s)\b|…",
    )
    .unwrap();
    let line = squeeze(line);
    let mut re = String::from("^");
    let mut names = Vec::new();
    let mut last = 0;
    for m in token.find_iter(&line) {
        re.push_str(&regex::escape(&line[last..m.start()]));
        let t = m.as_str();
        if t == "…" {
            re.push_str(".*");
        } else if t.starts_with("sha256:") {
            re.push_str("(sha256:[0-9a-f]{64})");
            names.push(t.to_string());
        } else if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            re.push_str("([0-9a-f]{32})");
            names.push(t.to_string());
        } else if t.contains('-') {
            re.push_str(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?Z?");
        } else {
            re.push_str(r"\d+(?:\.\d+)? ?(?:ms|s)");
        }
        last = m.end();
    }
    re.push_str(&regex::escape(&line[last..]));
    re.push('$');
    let unordered = line.starts_with("blob ") || line.starts_with("Copying ");
    Pattern::Line {
        re: Regex::new(&re).unwrap_or_else(|e| panic!("pattern of {line:?}: {e}")),
        names,
        unordered,
    }
}

fn line_matches(p: &Pattern, got: &str, names: &mut Names) -> bool {
    let Pattern::Line {
        re, names: shown, ..
    } = p
    else {
        return false;
    };
    let got = squeeze(got);
    let Some(caps) = re.captures(&got) else {
        return false;
    };
    shown
        .iter()
        .zip(caps.iter().skip(1))
        .all(|(s, g)| names.bind(s, g.map(|g| g.as_str()).unwrap_or_default()))
}

/// Matches the patterns against the lines; returns the names bound on success.
fn match_all(pats: &[Pattern], got: &[&str], names: &Names) -> Option<Names> {
    let Some(first) = pats.first() else {
        return got.is_empty().then(|| names.clone());
    };
    match first {
        Pattern::AnyLines => {
            (0..=got.len()).find_map(|skip| match_all(&pats[1..], &got[skip..], names))
        }
        Pattern::Line {
            unordered: true, ..
        } => {
            let k = pats
                .iter()
                .take_while(|p| {
                    matches!(
                        p,
                        Pattern::Line {
                            unordered: true,
                            ..
                        }
                    )
                })
                .count();
            if got.len() < k {
                return None;
            }
            let mut used = vec![false; k];
            match_unordered(&pats[..k], &got[..k], &mut used, names)
                .and_then(|n| match_all(&pats[k..], &got[k..], &n))
        }
        Pattern::Line { .. } => {
            let line = got.first()?;
            let mut n = names.clone();
            line_matches(first, line, &mut n)
                .then_some(())
                .and_then(|()| match_all(&pats[1..], &got[1..], &n))
        }
    }
}

fn match_unordered(
    pats: &[Pattern],
    got: &[&str],
    used: &mut [bool],
    names: &Names,
) -> Option<Names> {
    let Some(first) = pats.first() else {
        return Some(names.clone());
    };
    for i in 0..got.len() {
        if used[i] {
            continue;
        }
        let mut n = names.clone();
        if line_matches(first, got[i], &mut n) {
            used[i] = true;
            if let Some(done) = match_unordered(&pats[1..], got, used, &n) {
                return Some(done);
            }
            used[i] = false;
        }
    }
    None
}

/// The command without its `&` when it starts a server in the background (`CMD &`, or
/// `CMD &   # comment`).
fn background(command: &str) -> Option<String> {
    let re = Regex::new(r"(?s)^(.*?)\s*&\s*(?:#[^'\n]*)?$").unwrap();
    let caps = re.captures(command.trim_end())?;
    let cmd = caps[1].to_string();
    (!cmd.ends_with('&')).then_some(cmd)
}

/// A server the tour started in the background; killed when dropped.
struct Server {
    child: Child,
    command: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Tour {
    dir: PathBuf,
    vars: PathBuf,
    logs: PathBuf,
    bin: PathBuf,
    home: PathBuf,
    last_rc: i32,
    /// Fixed `127.0.0.1:PORT` of the README -> the address the server got.
    ports: Vec<(String, String)>,
    names: Names,
    servers: Vec<Server>,
}

impl Tour {
    fn with_ports(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (fixed, got) in &self.ports {
            t = t.replace(fixed, got);
        }
        t
    }

    /// bash with the tour's environment; `limit`: a command that must end (a watchdog
    /// against a hang; servers run until the test ends).
    fn bash(&self, script: &str, limit: bool) -> Command {
        let mut c = if limit {
            let mut c = Command::new("timeout");
            c.args(["--kill-after=5", "600", "bash"]);
            c
        } else {
            Command::new("bash")
        };
        c.args(["--noprofile", "--norc", "-c", script])
            .current_dir(&self.dir)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .stdin(Stdio::null());
        c
    }

    fn start_server(&mut self, step: &Step) {
        let listen = Regex::new(r"--listen (127\.0\.0\.1:\d+)").unwrap();
        let cmd = self.with_ports(&background(&step.command).expect("a background command"));
        let fixed = listen
            .captures(&cmd)
            .unwrap_or_else(|| panic!("a server step names its --listen address: {cmd}"))[1]
            .to_string();
        let cmd = cmd.replace(&format!("--listen {fixed}"), "--listen 127.0.0.1:0");
        let n = self.servers.len();
        let log = self.logs.join(format!("server-{n}.log"));
        let mut c = self.bash(
            &format!(". {} 2>/dev/null\nexec {cmd}", self.vars.display()),
            false,
        );
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.servers.push(Server {
            child,
            command: step.command.clone(),
        });
        // The first stdout line is the event we wait for; the rest is drained.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let first = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_default();
        let got = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "{}: `{}` did not print `listening on ADDR` (got {first:?}); its log:\n{}",
                    step.heading,
                    step.command,
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        self.ports.push((fixed.clone(), got.clone()));
        let shown: Vec<&String> = step.shown.iter().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            shown,
            [&format!("listening on {fixed}")],
            "{}: a server step shows only its first line, `listening on ADDR`",
            step.heading
        );
        // The example configuration names the tour's registry by its fixed port.
        let example = self.dir.join("examples/gantry-serve.yaml");
        let text = std::fs::read_to_string(&example).unwrap();
        std::fs::write(&example, text.replace(&fixed, &got)).unwrap();
    }

    fn run(&mut self, step: &Step, next: Option<&Step>) {
        let assign = Regex::new(r"(?m)^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=").unwrap();
        let cmd = self.with_ports(&step.command);
        let keep: String = assign
            .captures_iter(&cmd)
            .map(|c| format!("declare -p {} >> {}\n", &c[1], self.vars.display()))
            .collect();
        let script = format!(
            ". {vars} 2>/dev/null\nexec 2>&1\n(exit {rc})\n{cmd}\n__tour_rc=$?\n{keep}exit $__tour_rc\n",
            vars = self.vars.display(),
            rc = self.last_rc,
        );
        let mut child = self
            .bash(&script, true)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        let status = child.wait().unwrap();
        let rc = status.code().unwrap_or(-1);
        let out = String::from_utf8_lossy(&out).into_owned();
        let context = || {
            format!(
                "README tour, {}:\n$ {}\nexit code {rc}\n--- shown in the README:\n{}\n--- printed:\n{out}",
                step.heading,
                step.command,
                step.shown.join("\n")
            )
        };
        let checks_code = next.is_some_and(|n| n.command.trim() == "echo $?");
        assert!(
            rc == 0 || checks_code,
            "a tour command failed\n{}",
            context()
        );
        assert_ne!(rc, 124, "timed out\n{}", context());
        self.last_rc = rc;
        let pats: Vec<Pattern> = step
            .shown
            .iter()
            .map(|l| pattern(&self.with_ports(l)))
            .collect();
        let mut lines: Vec<&str> = out.lines().collect();
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
        match match_all(&pats, &lines, &self.names) {
            Some(n) => self.names = n,
            None => panic!("the output differs from the README's\n{}", context()),
        }
    }
}

/// The README's tour, parsed: the conventions above hold for every block.
#[test]
fn readme_tour_blocks_parse() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let steps = tour_steps(&readme);
    assert!(steps.len() > 30, "{} steps", steps.len());
    for (name, _) in EXCLUDED {
        assert!(
            steps.iter().any(|s| s.command == *name),
            "excluded step {name:?} is not in the tour"
        );
    }
    // Every server the tour starts has a fixed loopback port the test can replace.
    let servers: Vec<&Step> = steps
        .iter()
        .filter(|s| background(&s.command).is_some())
        .collect();
    assert_eq!(servers.len(), 3, "the tour's three servers");
    for s in servers {
        assert!(s.command.contains("--listen 127.0.0.1:"), "{}", s.command);
    }
}

#[test]
fn readme_quick_tour_runs_as_written() {
    let tools = [
        ("skopeo", "--version"),
        ("curl", "--version"),
        ("openssl", "version"),
    ];
    if !tools.iter().all(|(t, a)| require_tool(t, &[a])) {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let steps: Vec<Step> = tour_steps(&readme)
        .into_iter()
        .filter(|s| !EXCLUDED.iter().any(|(c, _)| *c == s.command))
        .collect();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tour");
    let bin = tmp.path().join("bin");
    let home = tmp.path().join("home");
    let logs = tmp.path().join("logs");
    for d in [&dir, &bin, &home, &logs] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::os::unix::fs::symlink(gantry_bin(), bin.join("gantry")).unwrap();
    // The scratch directory of the tour's first paragraph: a copy of examples/.
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo.join("examples"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());

    let mut tour = Tour {
        vars: logs.join("vars.sh"),
        dir,
        logs,
        bin,
        home,
        last_rc: 0,
        ports: Vec::new(),
        names: Names::default(),
        servers: Vec::new(),
    };
    for (i, step) in steps.iter().enumerate() {
        if background(&step.command).is_some() {
            tour.start_server(step);
        } else {
            tour.run(step, steps.get(i + 1));
        }
    }
    // The servers are still up at the end of the tour (none died on the way).
    for s in &mut tour.servers {
        assert!(
            s.child.try_wait().unwrap().is_none(),
            "the server of `{}` exited during the tour",
            s.command
        );
    }
}
