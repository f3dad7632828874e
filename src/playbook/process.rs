//! Running one program for the `shell` and `command` modules.
//!
//! Owns: spawning the program in its own process group, streaming its stdout and stderr
//! line by line to a callback while it runs, capturing both, and killing the whole process
//! group (the shell *and* what it started) when the run is cancelled or dropped. Must not:
//! decide whether a return code is a failure (that is the task's business: `failed_when`),
//! or write to the log itself (the caller formats and redacts).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// After the program exits, how long to keep reading output that processes it started in
/// the background may still hold open. Ansible waits for ever in that case; a build that
/// starts a daemon with `cmd &` should not hang, and what the daemon writes later belongs
/// to no task anyway.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
}

/// What to run.
pub struct Spawn<'a> {
    pub argv: Vec<String>,
    pub chdir: PathBuf,
    /// Added to gantry's own environment (the task's `environment`).
    pub env: Vec<(String, String)>,
    pub stdin: Option<String>,
    /// Called with every output line (stdout and stderr, in arrival order) while the
    /// program runs; `None` when the task has `no_log`.
    pub on_line: Option<&'a (dyn Fn(&str) + Sync)>,
    pub cancel: &'a CancellationToken,
}

/// How it ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit code, or minus the signal number that killed it (as Ansible reports it).
    pub rc: i64,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Kills the process group when dropped while armed: a cancelled or abandoned task
/// leaves nothing running.
struct GroupGuard(Option<rustix::process::Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            // The group may already be gone; nothing else to do then.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the program to completion (or cancellation).
pub async fn run(spec: Spawn<'_>) -> Result<Finished, ProcessError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(spec.argv.iter().skip(1))
        .current_dir(&spec.chdir)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so cancellation reaches every process the shell started, and a
        // terminal's Ctrl-C reaches gantry (which cancels) rather than the task directly.
        .process_group(0)
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
    );
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let noop = |_: &str| {};
    let on_line: &(dyn Fn(&str) + Sync) = spec.on_line.unwrap_or(&noop);

    let ended: Option<std::io::Result<ExitStatus>> = {
        let feed = async {
            if let (Some(mut w), Some(text)) = (stdin, spec.stdin.as_deref()) {
                // A program that does not read its stdin closes the pipe: not an error.
                let _ = w.write_all(text.as_bytes()).await;
            }
        };
        let readers = async {
            tokio::join!(
                feed,
                pump(stdout, &mut out, on_line),
                pump(stderr, &mut err, on_line)
            )
        };
        tokio::pin!(readers);
        let work = async {
            tokio::select! {
                _ = &mut readers => child.wait().await,
                status = child.wait() => {
                    let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut readers).await;
                    status
                }
            }
        };
        tokio::select! {
            status = work => Some(status),
            _ = spec.cancel.cancelled() => None,
        }
    };
    let Some(status) = ended else {
        guard.kill();
        // Reap it (the group is killed already).
        let _ = child.kill().await;
        return Err(ProcessError::Cancelled);
    };
    // It exited by itself: processes it left running in the background stay, as with
    // Ansible (a build may start a service on purpose).
    guard.0 = None;
    let status = status.map_err(|source| ProcessError::Wait { program, source })?;
    Ok(Finished {
        rc: exit_code(status),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        elapsed: start.elapsed(),
    })
}

fn exit_code(status: ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(sig)) => -i64::from(sig),
        (None, None) => -1,
    }
}

/// Reads lines until end of file, keeping every byte and handing each line on.
async fn pump<R: AsyncRead + Unpin>(
    r: Option<R>,
    keep: &mut Vec<u8>,
    on_line: &(dyn Fn(&str) + Sync),
) {
    let Some(r) = r else { return };
    let mut reader = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                keep.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                on_line(text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// `0:00:01.234567`, the way Ansible reports a command's `delta`.
pub fn delta(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{}:{:02}:{:02}.{:06}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn spawn<'a>(
        argv: &[&str],
        cancel: &'a CancellationToken,
        on_line: Option<&'a (dyn Fn(&str) + Sync)>,
    ) -> Spawn<'a> {
        Spawn {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            chdir: std::env::temp_dir(),
            env: vec![("GANTRY_T".into(), "v".into())],
            stdin: None,
            on_line,
            cancel,
        }
    }

    #[tokio::test]
    async fn captures_streams_and_exit_code() {
        let cancel = CancellationToken::new();
        let lines = Mutex::new(Vec::new());
        let cb = |l: &str| lines.lock().unwrap().push(l.to_string());
        let f = run(spawn(
            &["sh", "-c", "echo out $GANTRY_T; echo err >&2; exit 3"],
            &cancel,
            Some(&cb),
        ))
        .await
        .unwrap();
        assert_eq!(f.rc, 3);
        assert_eq!(f.stdout, "out v\n");
        assert_eq!(f.stderr, "err\n");
        let mut got = lines.into_inner().unwrap();
        got.sort();
        assert_eq!(got, ["err", "out v"]);
    }

    #[tokio::test]
    async fn stdin_is_fed() {
        let cancel = CancellationToken::new();
        let mut s = spawn(&["cat"], &cancel, None);
        s.stdin = Some("hello\n".into());
        assert_eq!(run(s).await.unwrap().stdout, "hello\n");
    }

    /// (Other tests look for stray `sleep 30` processes: durations here differ.)
    #[tokio::test]
    async fn background_children_do_not_hang_the_task() {
        let cancel = CancellationToken::new();
        let t = Instant::now();
        let f = run(spawn(
            &["sh", "-c", "sleep 3 & echo started"],
            &cancel,
            None,
        ))
        .await
        .unwrap();
        assert_eq!(f.stdout, "started\n");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn cancel_kills_the_group() {
        let cancel = CancellationToken::new();
        // Cancel as soon as the program is known to run (no timing guesses).
        let cb = |_: &str| cancel.cancel();
        let t = Instant::now();
        let r = run(spawn(
            &["sh", "-c", "echo started; sleep 41; echo never"],
            &cancel,
            Some(&cb),
        ))
        .await;
        assert!(matches!(r, Err(ProcessError::Cancelled)), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn deltas() {
        assert_eq!(
            delta(Duration::from_micros(3_723_000_042)),
            "1:02:03.000042"
        );
    }
}
