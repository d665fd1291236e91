//! Transport failures as types, and the ONE retry policy, shared by the
//! bundler (image and chart pulls) and the updater (registry pushes).
//!
//! This module does no I/O and has no network code (the format crate has
//! none): the HTTP clients live in the bundler and the updater, which
//! classify their client's errors into a [`TransportError`] once, at the
//! boundary, and ask [`RetryPolicy::delay`] whether and how long to wait.
//! It lives in the format crate's `io/` folder (how bytes move) rather than
//! in a crate of its own because both binaries already depend on
//! `stoa-format` and it is about two hundred lines of pure logic with no
//! dependency.

use std::fmt;
use std::time::Duration;

/// Why a request failed, classified once where the client's error is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The server answered with a status (not 429, see [`Self::RateLimited`]).
    Status { code: u16, message: String },
    /// HTTP 429 (or a registry's TOOMANYREQUESTS), with the server's
    /// `Retry-After` when it sent one.
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// The request or the response timed out.
    Timeout(String),
    /// No connection (refused, reset, DNS).
    Connect(String),
    /// TLS failed (certificate, handshake, a plain-HTTP server): trying
    /// again does not help.
    Tls(String),
    /// The connection dropped while the body was read or sent.
    Body(String),
    /// Anything else (a bad response, a local error): not retried.
    Other(String),
}

impl TransportError {
    /// A status answer: 429 becomes [`Self::RateLimited`].
    pub fn status(code: u16, retry_after: Option<Duration>, message: impl Into<String>) -> Self {
        let message = message.into();
        if code == 429 {
            Self::RateLimited {
                retry_after,
                message,
            }
        } else {
            Self::Status { code, message }
        }
    }
    /// Whether trying again may help: 5xx, 429, timeouts, connection and
    /// body failures. Never 4xx (but 429), TLS or [`Self::Other`].
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { code, .. } => *code >= 500,
            Self::RateLimited { .. } | Self::Timeout(_) | Self::Connect(_) | Self::Body(_) => true,
            Self::Tls(_) | Self::Other(_) => false,
        }
    }
    /// The HTTP status, when the server answered.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            Self::RateLimited { .. } => Some(429),
            _ => None,
        }
    }
    /// The server's `Retry-After`, when rate limited.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
    /// The message (what the client or server said).
    pub fn message(&self) -> &str {
        match self {
            Self::Status { message, .. } | Self::RateLimited { message, .. } => message,
            Self::Timeout(m) | Self::Connect(m) | Self::Tls(m) | Self::Body(m) | Self::Other(m) => {
                m
            }
        }
    }
    /// The same classification with another message (context added).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Status { code, message } => Self::Status {
                code,
                message: f(message),
            },
            Self::RateLimited {
                retry_after,
                message,
            } => Self::RateLimited {
                retry_after,
                message: f(message),
            },
            Self::Timeout(m) => Self::Timeout(f(m)),
            Self::Connect(m) => Self::Connect(f(m)),
            Self::Tls(m) => Self::Tls(f(m)),
            Self::Body(m) => Self::Body(f(m)),
            Self::Other(m) => Self::Other(f(m)),
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for TransportError {}

/// A `Retry-After` header value: delta-seconds or an HTTP date (RFC 9110).
/// `now` is passed in (no clock read here). Unparseable: `None`.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let t = httpdate_to_system_time(v)?;
    Some(t.duration_since(now).unwrap_or(Duration::ZERO))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers send.
fn httpdate_to_system_time(v: &str) -> Option<std::time::SystemTime> {
    let mut it = v.split_whitespace();
    let _day = it.next()?;
    let d = it.next()?;
    let mon = it.next()?;
    let y = it.next()?;
    let hms = it.next()?;
    if it.next()? != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| *x == mon)? + 1;
    let s = format!("{y}-{m:02}-{:02}T{hms}Z", d.parse::<u32>().ok()?);
    humantime::parse_rfc3339(&s).ok()
}

/// The one retry policy: `attempts` in all (the first included), the delay
/// starting at `first_backoff` and doubling up to `max_backoff`; a server's
/// `Retry-After` is honoured instead, capped at `max_retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// What the bundler and the updater use: 6 attempts, 250 ms doubling
    /// to 8 s, a `Retry-After` of at most 60 s.
    pub const DEFAULT: Self = Self {
        attempts: 6,
        first_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
    };

    /// The backoff before attempt `failed + 1`, after `failed` (1-based)
    /// attempts failed, ignoring what the failure was.
    pub fn backoff(&self, failed: u32) -> Duration {
        let shift = failed.saturating_sub(1).min(31);
        self.first_backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_backoff)
    }

    /// Whether to try again after attempt number `failed` (1-based) failed
    /// with `e`, and how long to wait first. `None`: give up (not
    /// retryable, or the attempts are used up).
    pub fn delay(&self, failed: u32, e: &TransportError) -> Option<Duration> {
        if !e.is_retryable() || failed >= self.attempts {
            return None;
        }
        Some(self.delay_unchecked(failed, e.retry_after()))
    }

    /// The wait before the next attempt when the caller decided to retry
    /// (e.g. a short body, which is no [`TransportError`]): `retry_after`
    /// capped, else the backoff. `None` when the attempts are used up.
    pub fn next(&self, failed: u32, retry_after: Option<Duration>) -> Option<Duration> {
        (failed < self.attempts).then(|| self.delay_unchecked(failed, retry_after))
    }

    fn delay_unchecked(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(t) => t.min(self.max_retry_after),
            None => self.backoff(failed),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    const P: RetryPolicy = RetryPolicy::DEFAULT;

    fn s500() -> TransportError {
        TransportError::status(500, None, "HTTP 500")
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let d: Vec<_> = (1..=8).map(|n| P.backoff(n).as_millis()).collect();
        assert_eq!(d, vec![250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(P.backoff(1000), Duration::from_secs(8));
    }

    #[test]
    fn attempts_are_capped() {
        assert_eq!(P.delay(1, &s500()), Some(Duration::from_millis(250)));
        assert!(P.delay(5, &s500()).is_some());
        assert_eq!(P.delay(6, &s500()), None, "6 attempts in all");
        assert_eq!(P.next(6, None), None);
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let e = TransportError::status(429, Some(Duration::from_secs(3)), "HTTP 429");
        assert!(matches!(e, TransportError::RateLimited { .. }));
        assert_eq!(P.delay(1, &e), Some(Duration::from_secs(3)));
        let long = TransportError::status(429, Some(Duration::from_secs(3600)), "HTTP 429");
        assert_eq!(P.delay(1, &long), Some(P.max_retry_after));
        // 429 without Retry-After: the backoff
        let bare = TransportError::status(429, None, "HTTP 429");
        assert_eq!(P.delay(2, &bare), Some(Duration::from_millis(500)));
    }

    #[test]
    fn non_retryable_failures_are_not_retried() {
        for code in [400, 401, 403, 404, 405, 416] {
            let e = TransportError::status(code, None, format!("HTTP {code}"));
            assert!(!e.is_retryable(), "{code}");
            assert_eq!(P.delay(1, &e), None, "{code}");
        }
        assert_eq!(
            P.delay(1, &TransportError::Tls("bad certificate".into())),
            None
        );
        assert_eq!(P.delay(1, &TransportError::Other("too large".into())), None);
        for e in [
            TransportError::Timeout("t".into()),
            TransportError::Connect("c".into()),
            TransportError::Body("b".into()),
            TransportError::status(503, None, "HTTP 503"),
        ] {
            assert!(P.delay(1, &e).is_some(), "{e:?}");
        }
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // 08:49:37
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        // a date in the past: no wait
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
        assert_eq!(parse_retry_after("-1", SystemTime::now()), None);
    }

    #[test]
    fn the_message_is_what_is_shown() {
        let e = TransportError::status(404, None, "HTTP 404: not found");
        assert_eq!(e.to_string(), "HTTP 404: not found");
        assert_eq!(e.status_code(), Some(404));
        let e = e.map_message(|m| format!("{m} (after 1 attempts)"));
        assert_eq!(e.status_code(), Some(404));
        assert_eq!(e.message(), "HTTP 404: not found (after 1 attempts)");
    }
}
