//! Registry notifications (distribution's docs/notifications.md): after a manifest is
//! pushed under a tag, an envelope (`application/vnd.docker.distribution.events.v1+json`)
//! with one `push` event is POSTed to every configured endpoint.
//!
//! Delivery goes through a persistent queue, one JSON file per (endpoint, event) under
//! `<data>/notifications/`, so a restart or an endpoint that is down loses nothing:
//! 1. the handler writes the file (temp file, fsync, rename) before answering the push;
//! 2. the delivery task POSTs queued files oldest first; a 2xx removes the file;
//! 3. a failure keeps it with a later due time (gantry's one retry policy: 1 s, 2 s, 4 s …
//!    jittered, capped at 5 min).
//!
//! Must not: block or fail a push because an endpoint is down; block the async runtime
//! (every file operation runs on a blocking thread).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::client::retry::RetryPolicy;
use serde_json::{Value, json};

pub const ENVELOPE_V1: &str = "application/vnd.docker.distribution.events.v1+json";
/// Longest wait between two attempts of one notification.
const MAX_BACKOFF_MS: u64 = 300_000;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notification queue {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the notification client: {0}")]
    Client(String),
}

#[derive(Serialize, Deserialize)]
struct Queued {
    url: String,
    envelope: Value,
    attempts: u32,
    due_ms: u64,
}

/// What was pushed, for the event.
pub struct Pushed<'a> {
    pub repository: &'a str,
    pub tag: &'a str,
    pub digest: &'a str,
    pub media_type: &'a str,
    pub size: u64,
    /// The Host the client used (also the host of `target.url`).
    pub host: &'a str,
    pub scheme: &'a str,
    pub user: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

pub struct Notifier {
    endpoints: Vec<String>,
    dir: PathBuf,
    http: reqwest::Client,
    wake: tokio::sync::Notify,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 UTC time, as distribution writes `timestamp`.
fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

impl Notifier {
    pub fn new(data_dir: &Path, endpoints: Vec<String>) -> Result<Arc<Notifier>, NotifyError> {
        let dir = data_dir.join("notifications");
        std::fs::create_dir_all(&dir).map_err(|e| NotifyError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("gantry-registry/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(Arc::new(Notifier {
            endpoints,
            dir,
            http,
            wake: tokio::sync::Notify::new(),
        }))
    }

    fn io(&self, e: std::io::Error) -> NotifyError {
        NotifyError::Io {
            path: self.dir.clone(),
            source: e,
        }
    }

    /// Writes queue files durably (temp file, fsync, rename, fsync of the directory) on a
    /// blocking thread.
    async fn write(&self, files: Vec<(String, Queued)>) -> Result<(), NotifyError> {
        let dir = self.dir.clone();
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            for (name, q) in files {
                let tmp = dir.join(format!(".{name}.tmp"));
                let bytes = serde_json::to_vec(&q).unwrap_or_default();
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                std::fs::rename(&tmp, dir.join(name))?;
            }
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        result.map_err(|e| self.io(e))
    }

    /// Queues a push event for every endpoint (step 1).
    pub async fn pushed(&self, p: &Pushed<'_>) -> Result<(), NotifyError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let event = json!({
            "id": id,
            "timestamp": rfc3339(now),
            "action": "push",
            "target": {
                "mediaType": p.media_type,
                "size": p.size,
                "length": p.size,
                "digest": p.digest,
                "repository": p.repository,
                "url": format!("{}://{}/v2/{}/manifests/{}", p.scheme, p.host, p.repository, p.digest),
                "tag": p.tag,
            },
            "request": {
                "id": uuid::Uuid::new_v4().to_string(),
                "host": p.host,
                "method": "PUT",
                "useragent": p.user_agent.unwrap_or(""),
            },
            "actor": {"name": p.user.unwrap_or("")},
            "source": {"addr": p.host, "instanceID": "gantry"},
        });
        let files = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let q = Queued {
                    url: url.clone(),
                    envelope: json!({ "events": [event.clone()] }),
                    attempts: 0,
                    due_ms: 0,
                };
                (format!("{now:015}-{id}-{i}.json"), q)
            })
            .collect();
        self.write(files).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Delivers queued notifications until the process ends (steps 2 and 3).
    pub async fn deliver(self: Arc<Self>) {
        loop {
            let next = match self.deliver_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("{e}");
                    Some(now_ms() + 1000)
                }
            };
            let wait = next
                .map(|t| Duration::from_millis(t.saturating_sub(now_ms()).min(MAX_BACKOFF_MS)))
                .unwrap_or(Duration::from_secs(60));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass; returns when the next queued notification is due.
    async fn deliver_due(&self) -> Result<Option<u64>, NotifyError> {
        let mut names: Vec<String> = Vec::new();
        let mut rd = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(|e| self.io(e))?;
        while let Some(e) = rd.next_entry().await.map_err(|e| self.io(e))? {
            let n = e.file_name().to_string_lossy().to_string();
            if n.ends_with(".json") && !n.starts_with('.') {
                names.push(n);
            }
        }
        names.sort();
        let mut next: Option<u64> = None;
        for name in names {
            let path = self.dir.join(&name);
            let Ok(bytes) = tokio::fs::read(&path).await else {
                continue;
            };
            let Ok(mut q) = serde_json::from_slice::<Queued>(&bytes) else {
                tracing::warn!("dropping unreadable notification {}", path.display());
                let _ = tokio::fs::remove_file(&path).await;
                continue;
            };
            if q.due_ms > now_ms() {
                next = Some(next.map_or(q.due_ms, |n| n.min(q.due_ms)));
                continue;
            }
            let sent = self
                .http
                .post(&q.url)
                .header(reqwest::header::CONTENT_TYPE, ENVELOPE_V1)
                .body(serde_json::to_vec(&q.envelope).unwrap_or_default())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    let _ = tokio::fs::remove_file(&path).await;
                }
                other => {
                    let why = match other {
                        Ok(r) => format!("status {}", r.status()),
                        // Not the URL: its query may hold the receiver's token.
                        Err(e) => e.without_url().to_string(),
                    };
                    q.attempts += 1;
                    let policy = RetryPolicy::background(Duration::from_millis(MAX_BACKOFF_MS));
                    let backoff = policy.delay(q.attempts - 1).as_millis() as u64;
                    q.due_ms = now_ms() + backoff;
                    tracing::warn!(
                        "notification to {} failed ({why}); attempt {} again in {} ms",
                        redact(&q.url),
                        q.attempts + 1,
                        backoff
                    );
                    next = Some(next.map_or(q.due_ms, |n| n.min(q.due_ms)));
                    self.write(vec![(name, q)]).await?;
                }
            }
        }
        Ok(next)
    }
}

/// The URL without its query (webhook tokens often travel there).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_endpoint_keeps_the_notification_queued() {
        let d = tempfile::tempdir().unwrap();
        // An endpoint that hangs up on every request without answering.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
        let n = Notifier::new(d.path(), vec![url]).unwrap();
        n.pushed(&Pushed {
            repository: "a/b",
            tag: "t",
            digest: "sha256:00",
            media_type: "application/vnd.oci.image.manifest.v1+json",
            size: 2,
            host: "h:1",
            scheme: "http",
            user: None,
            user_agent: None,
        })
        .await
        .unwrap();
        let next = n.deliver_due().await.unwrap();
        assert!(next.is_some(), "a retry is scheduled");
        let files: Vec<_> = std::fs::read_dir(d.path().join("notifications"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let q: Queued = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
        assert_eq!(q.attempts, 1);
        assert_eq!(q.envelope["events"][0]["target"]["tag"], "t");
        // Not due yet: a second pass sends nothing and keeps it.
        n.deliver_due().await.unwrap();
        assert_eq!(
            std::fs::read_dir(d.path().join("notifications"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_417_566_161_123), "2014-12-03T00:22:41.123Z");
    }
}
