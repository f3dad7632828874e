//! Processes of abandoned attempts. Every command a triggered run starts has
//! `GANTRY_RUN=<database id>/<execution>/<attempt>` in its environment and runs in its own
//! process group (`playbook::process`). When an attempt is abandoned — its replica was
//! killed, or a shutdown's grace period ran out — the processes it left behind are found
//! by that variable in `/proc/<pid>/environ` and their process groups killed, so no orphan
//! finishes a side effect after the execution has started again.
//!
//! The rule (also in the README): a replica kills the leftovers of abandoned attempts on
//! its own host — at start (its previous life's) and when it takes over an execution whose
//! last attempt ran on the same host. Processes on another host cannot be reached; a
//! replica that is alive but lost its lease finds out at its next heartbeat and cancels
//! its run itself (which kills its process groups).

use std::collections::HashSet;

/// The environment variable marking a run's processes.
pub const VAR: &str = "GANTRY_RUN";

/// The marker value of one attempt.
pub fn marker(database: &str, execution: &str, attempt: i64) -> String {
    format!("{database}/{execution}/{attempt}")
}

/// A process of this database's runs: (pid, execution, attempt).
pub type Marked = (u32, String, i64);

/// Every process on this host marked for `database`. Blocking (reads `/proc`): call from
/// a blocking thread. Look first, then ask the database which attempts are current: a
/// process seen here was started after its attempt was claimed, so the answer covers it.
pub fn find(database: &str) -> Vec<Marked> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let me = std::process::id();
    let prefix = format!("{VAR}={database}/");
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let Some(mark) = env
            .split(|b| *b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find_map(|v| v.strip_prefix(&prefix))
        else {
            continue;
        };
        if let Some((execution, attempt)) = mark.rsplit_once('/') {
            found.push((
                pid,
                execution.to_string(),
                attempt.parse::<i64>().unwrap_or(-1),
            ));
        }
    }
    found
}

/// Kills (SIGKILL, whole process group) each found process whose (execution, attempt) is
/// not in `keep`; returns how many.
pub fn kill_unless(found: &[Marked], keep: &HashSet<(String, i64)>) -> usize {
    let mut killed = 0;
    for (pid, execution, attempt) in found {
        if keep.contains(&(execution.clone(), *attempt)) {
            continue;
        }
        let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) else {
            continue;
        };
        killed += 1;
        tracing::warn!("killing process {pid} left by attempt {attempt} of execution {execution}");
        if let Ok(group) = rustix::process::getpgid(Some(pid)) {
            // Never our own group (a run's commands have their own).
            if rustix::process::getpgid(None).ok() != Some(group) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
        }
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    killed
}
