//! A build's log: `<state>/builds/<uuid>/job-output.txt`, every line redacted of every
//! secret (by the rule in `playbook/redact.rs`) and stamped with the UTC time as Zuul's
//! job-output.txt does (`2026-01-02 03:04:05.678901 | TASK [...]`), and forwarded to
//! reporters as events (without the stamp: reporters add their own).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use tokio::sync::mpsc::UnboundedSender;

use super::Event;
use crate::playbook::{LogSink, Redactor, Secret};

pub struct BuildLog {
    pub path: PathBuf,
    pub job: String,
    file: Mutex<Option<std::fs::File>>,
    events: UnboundedSender<Event>,
    redact: Mutex<Redactor>,
}

impl BuildLog {
    pub fn create(
        path: PathBuf,
        job: &str,
        events: UnboundedSender<Event>,
        secrets: Vec<Secret>,
    ) -> std::io::Result<BuildLog> {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(BuildLog {
            path,
            job: job.to_string(),
            file: Mutex::new(Some(file)),
            events,
            redact: Mutex::new(Redactor::new(secrets)),
        })
    }

    /// Adds secrets learned during the build (decrypted secrets, returned secret data).
    pub fn add_secrets(&mut self, more: Vec<Secret>) {
        self.redact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(more);
    }
}

impl LogSink for BuildLog {
    fn line(&self, line: &str) {
        let clean = self
            .redact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(line);
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = writeln!(f, "{} | {clean}", timestamp());
        }
        let _ = self.events.send(Event::Log {
            job: self.job.clone(),
            line: clean,
        });
    }
}

/// Now, as Zuul's job-output.txt prefixes each line (UTC, microseconds).
pub fn timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_log_redacts_secrets_learned_at_any_time() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut log = BuildLog::create(
            dir.path().join("log.txt"),
            "j",
            tx,
            vec!["first-secret".into()],
        )
        .unwrap();
        log.line("a first-secret here");
        log.add_secrets(vec!["later-secret".into()]);
        log.line("and later-secret there");
        let text = std::fs::read_to_string(dir.path().join("log.txt")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let stamp = regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \| ").unwrap();
        assert!(lines.iter().all(|l| stamp.is_match(l)), "{text}");
        let bodies: Vec<String> = lines
            .iter()
            .map(|l| stamp.replace(l, "").into_owned())
            .collect();
        assert_eq!(bodies, vec!["a ****** here", "and ****** there"]);
    }
}
