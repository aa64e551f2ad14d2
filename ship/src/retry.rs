//! How long to wait before the next try: exponential backoff with jitter,
//! and the server's `Retry-After` (delay-seconds or an HTTP date, RFC 9110
//! section 10.2.3) when it sends one.

use std::time::{Duration, SystemTime};

/// Exponential backoff: `min`, `2·min`, `4·min`… capped at `max`, each
/// delay drawn uniformly from its upper half so that many hosts failing at
/// once do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `min` and never exceeding `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The delay after one more failure, with fresh randomness.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay(self.failures, random_fraction());
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Forgets the failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay after `failures` earlier failures, for a random `fraction`
    /// in `[0, 1)`: in `[ceiling / 2, ceiling]`, where the ceiling doubles per
    /// failure from `min` up to `max`.
    pub fn delay(&self, failures: u32, fraction: f64) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(2u32.saturating_pow(failures.min(31)))
            .min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(fraction.clamp(0.0, 1.0))
    }
}

/// A uniformly random number in `[0, 1)`; jitter needs no cryptographic
/// quality, and a failing entropy source must not stop shipping.
fn random_fraction() -> f64 {
    let bits = getrandom::u64().unwrap_or_else(|_| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64)
    });
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses a `Retry-After` value: whole seconds, or an HTTP date (then the
/// time from `now` until it; zero if it has passed). `None` for anything
/// else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_caps() {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
        for failures in 0..40 {
            let ceiling = (250u64 << failures.min(20)).min(5_000);
            for fraction in [0.0, 0.25, 0.5, 0.999_999] {
                let delay = backoff.delay(failures, fraction).as_millis() as u64;
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "failures {failures}, fraction {fraction}: {delay} ms outside [{}, {ceiling}]",
                    ceiling / 2
                );
            }
        }
        assert_eq!(backoff.delay(0, 0.0), Duration::from_millis(125));
        assert_eq!(backoff.delay(2, 0.0), Duration::from_millis(500));
        assert_eq!(backoff.delay(10, 0.0), Duration::from_millis(2_500));
    }

    #[test]
    fn random_delays_stay_in_bounds_and_vary() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: Vec<_> = (0..50).map(|_| backoff.next_delay()).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_secs(1))
        );
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "no jitter: {delays:?}"
        );
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }
}
