//! A build's log: `<state>/builds/<uuid>/job-output.txt`, every line redacted of every
//! secret string, and forwarded to reporters as events.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use tokio::sync::mpsc::UnboundedSender;

use super::Event;
use crate::playbook::LogSink;

/// Replaces every occurrence of each secret with `******`. Longest first, so a secret
/// containing another is hidden whole. Secrets shorter than 4 characters are not
/// redacted (they would blank out ordinary words), as Zuul's log redaction also skips them.
pub fn redactor(mut secrets: Vec<String>) -> impl Fn(&str) -> String + Send + Sync {
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    move |line: &str| {
        let mut out = line.to_string();
        for s in &secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "******");
            }
        }
        out
    }
}

pub struct BuildLog {
    pub path: PathBuf,
    pub job: String,
    file: Mutex<Option<std::fs::File>>,
    events: UnboundedSender<Event>,
    redact: Box<dyn Fn(&str) -> String + Send + Sync>,
    secrets: Mutex<Vec<String>>,
}

impl BuildLog {
    pub fn create(
        path: PathBuf,
        job: &str,
        events: UnboundedSender<Event>,
        secrets: Vec<String>,
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
            redact: Box::new(redactor(secrets.clone())),
            secrets: Mutex::new(secrets),
        })
    }

    /// Adds secrets learned during the build (secret data returned by a role).
    pub fn add_secrets(&mut self, more: Vec<String>) {
        let all = {
            let mut s = self.secrets.lock().unwrap_or_else(|p| p.into_inner());
            s.extend(more);
            s.clone()
        };
        self.redact = Box::new(redactor(all));
    }
}

impl LogSink for BuildLog {
    fn line(&self, line: &str) {
        let clean = (self.redact)(line);
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = writeln!(f, "{clean}");
        }
        let _ = self.events.send(Event::Log {
            job: self.job.clone(),
            line: clean,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::redactor;

    #[test]
    fn redaction() {
        let r = redactor(vec!["s3cr3t-pass".into(), "abc".into(), "s3cr3t".into()]);
        assert_eq!(
            r("login with s3cr3t-pass and s3cr3t"),
            "login with ****** and ******"
        );
        assert_eq!(r("abc stays"), "abc stays");
    }
}
