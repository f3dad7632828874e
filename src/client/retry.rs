//! The one retry policy of gantry (client requests, blob copies and pushes, registry
//! notifications, trigger resolution): exponential backoff with jitter and a cap, from
//! `backon`; a registry's `Retry-After` is honoured (up to the cap); 4xx answers other
//! than 408 and 429 are never retried. Pure arithmetic: callers do their own waiting, or
//! schedule a durable retry at `now + delay`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How often and how long to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay (before jitter).
    pub min: Duration,
    /// No single delay exceeds this (Retry-After included).
    pub max: Duration,
}

impl RetryPolicy {
    /// In-process retries of one request or one blob: quick, a few seconds at most.
    pub const REQUEST: RetryPolicy = RetryPolicy {
        min: Duration::from_millis(200),
        max: Duration::from_secs(10),
    };

    /// Durable retries of background work (notifications, triggered events).
    pub const fn background(max: Duration) -> RetryPolicy {
        RetryPolicy {
            min: Duration::from_secs(1),
            max,
        }
    }

    /// The delay before retry number `attempt` (0-based), jittered, capped at `max`.
    /// Jitter ("equal jitter"): half the exponential delay plus a random part of the
    /// other half, so clients that failed together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_max_times(attempt as usize + 1)
            .build()
            .nth(attempt as usize)
            .unwrap_or(self.max)
            .min(self.max);
        let half = base / 2;
        (half + half.mul_f64(rand::random::<f64>())).max(self.min)
    }

    /// Like `delay`, but never shorter than what the server asked for with
    /// `Retry-After` (itself capped at `max`).
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let d = self.delay(attempt);
        match retry_after {
            Some(r) => d.max(r.min(self.max)),
            None => d,
        }
    }
}

/// True for statuses a retry can help with: 408, 429 and 5xx. Every other 4xx is final.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let d = at.duration_since(now);
    Some(Duration::try_from(d).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response, when it has one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_and_stay_under_the_cap() {
        let p = RetryPolicy::REQUEST;
        for attempt in 0..20 {
            let d = p.delay(attempt);
            assert!(d >= p.min && d <= p.max, "{attempt}: {d:?}");
        }
        // Jitter: not every delay of the same attempt is the same.
        let ds: std::collections::HashSet<Duration> = (0..20).map(|_| p.delay(3)).collect();
        assert!(ds.len() > 1);
        assert!(p.delay(12) >= Duration::from_secs(5));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::REQUEST;
        assert!(p.wait(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert_eq!(p.wait(0, Some(Duration::from_secs(3600))), p.max);
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_408_429_and_5xx_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 413, 422] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
