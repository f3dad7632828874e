//! Poll triggers: every interval, list the repository's tags (`tags/list`, paginated by the
//! client), HEAD the manifest of each tag that passes the filters (Docker Hub does not count
//! a HEAD as a pull) and turn what changed into events:
//! 1. first poll of a trigger (nothing seen yet): the latest tag by the trigger's ordering
//!    fires, as GoCD's poller does; every other tag is only remembered;
//! 2. later polls: a new tag, or a known tag whose digest changed (re-pushed), fires;
//! 3. a 429 (or any registry error) doubles the wait, up to 16 intervals; success resets it;
//!    a registry that says few pulls are left (`ratelimit-remaining`, Docker Hub) stretches
//!    the wait the same way; an endpoint's `rate_limit` spaces the requests of one poll.
//!
//! The trigger's `image` is the repository name (literally) for polls.
//!
//! With replicas, each poll is claimed in the store (its schedule row: the replica that
//! moves `next_ms` forward polls), so N replicas poll once per interval, not N times.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::Trigger;
use super::payload::Push;
use super::store::now_ms;
use super::{Service, TriggerError};

pub async fn run(svc: Arc<Service>, name: String, cancel: CancellationToken) {
    let Some(trigger) = svc.config.triggers.get(&name) else {
        return;
    };
    let Some(settings) = trigger.poll.clone() else {
        return;
    };
    let mut wait = settings.interval;
    loop {
        let mut sleep = settings.interval;
        if svc.enabled(trigger).await {
            let now = now_ms();
            match svc
                .log
                .claim_poll(&name, &svc.replica, now, now + ms(wait))
                .await
            {
                Ok(Ok(())) => {
                    let result = poll_once(&svc, trigger).await;
                    let remaining = svc
                        .clients
                        .client(&trigger.registry())
                        .ok()
                        .and_then(|c| c.ratelimit_remaining());
                    if let Ok(n) = &result
                        && *n > 0
                    {
                        svc.wake.notify_one();
                    }
                    if let Err(e) = &result {
                        tracing::warn!("poll {name}: {e}");
                    }
                    let next = next_wait(settings.interval, wait, result.is_err(), remaining);
                    if next != wait
                        && let Err(e) = svc
                            .log
                            .reschedule_poll(&name, &svc.replica, now + ms(next))
                            .await
                    {
                        tracing::warn!("poll {name}: {e}");
                    }
                    wait = next;
                    sleep = Duration::from_millis((now + ms(next) - now_ms()).max(0) as u64);
                }
                // Another replica has this one; wake when the next is due.
                Ok(Err(at)) => {
                    sleep = Duration::from_millis((at - now_ms()).clamp(10, ms(wait * 16)) as u64)
                }
                Err(e) => tracing::warn!("poll {name}: {e}"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Pulls left below which a poll backs off: a poll of a repository spends one HEAD per
/// matching tag, so keep a margin for the pipelines' own pulls.
const LOW_RATELIMIT: u64 = 20;

/// The wait before the next poll: back to the interval after a good poll; doubled (up to
/// 16 intervals) after an error or when the registry says few pulls are left; the longest
/// wait when it says none are.
pub fn next_wait(
    interval: Duration,
    current: Duration,
    failed: bool,
    remaining: Option<u64>,
) -> Duration {
    let longest = interval * 16;
    match remaining {
        Some(0) => longest,
        Some(r) if r < LOW_RATELIMIT => (current * 2).min(longest),
        _ if failed => (current * 2).min(longest),
        _ => interval,
    }
}

/// One poll; returns how many events it recorded.
pub async fn poll_once(svc: &Service, trigger: &Trigger) -> Result<usize, TriggerError> {
    let registry = trigger.registry();
    let repository = trigger.image_text.clone().unwrap_or_default();
    let reg_err = |e: crate::client::ClientError| TriggerError::Registry {
        registry: registry.clone(),
        message: e.to_string(),
    };
    let client = svc.clients.client(&registry).map_err(reg_err)?;
    let order = trigger
        .poll
        .as_ref()
        .map(|p| p.order.clone())
        .unwrap_or_default();
    let mut tags: Vec<String> = client
        .tags(&repository)
        .await
        .map_err(reg_err)?
        .into_iter()
        .filter(|t| trigger.tags.matches(t) && order.admits(t))
        .collect();
    tags.sort_by(|a, b| order.cmp(a, b));
    let seen = svc.log.poll_seen(&trigger.name).await?;
    let first = seen.is_empty();
    let latest = order
        .latest(tags.iter().map(String::as_str))
        .map(str::to_string);
    let mut fired = 0;
    // The endpoint's request-rate limit, between the HEADs of one poll.
    let gap = trigger
        .endpoint
        .as_ref()
        .and_then(|e| e.rate_limit)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    for tag in &tags {
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
        let Some(digest) = client
            .head_manifest(&repository, tag)
            .await
            .map_err(reg_err)?
        else {
            continue;
        };
        let digest = digest.to_string();
        let fire = if first {
            latest.as_deref() == Some(tag.as_str())
        } else {
            seen.get(tag) != Some(&digest)
        };
        if fire {
            let push = Push {
                registry: Some(registry.clone()),
                repository: repository.clone(),
                tag: tag.clone(),
                digest: Some(digest.clone()),
                owner: None,
                pusher: None,
            };
            svc.log
                .insert(&trigger.name, "poll", &push, None, "pending", "")
                .await?;
            fired += 1;
        }
        svc.log.poll_saw(&trigger.name, tag, &digest).await?;
    }
    Ok(fired)
}

/// The poll interval a trigger ends up with (for `gantry trigger test`).
pub fn interval(t: &Trigger) -> Option<Duration> {
    t.poll.as_ref().map(|p| p.interval)
}

#[cfg(test)]
mod tests {
    use super::next_wait;
    use std::time::Duration;

    #[test]
    fn backoff() {
        let i = Duration::from_secs(60);
        assert_eq!(next_wait(i, i, false, None), i);
        assert_eq!(next_wait(i, i, true, None), i * 2);
        assert_eq!(next_wait(i, i * 16, true, None), i * 16);
        assert_eq!(next_wait(i, i * 4, false, Some(1000)), i);
        assert_eq!(next_wait(i, i, false, Some(5)), i * 2);
        assert_eq!(next_wait(i, i, false, Some(0)), i * 16);
    }
}
