//! Prometheus-style durations (`500ms`, `15s`, `1h30m`, `7d`), as used by
//! flags such as `--storage.retention` and `--collector.timeout`.
//!
//! The grammar is Prometheus's own (`model.ParseDuration`): one or more
//! `<integer><unit>` pairs, units in descending order, each at most once.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

const UNITS: [(&str, u64); 8] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("ms", 1),
    ("m", 60 * 1000),
    ("s", 1000),
    ("", 0),
];

/// Rank of each unit in the required descending order (`ms` sorts after `s`).
fn rank(unit: &str) -> usize {
    ["y", "w", "d", "h", "m", "s", "ms"]
        .iter()
        .position(|u| *u == unit)
        .unwrap_or(usize::MAX)
}

/// Parses a Prometheus duration such as `1h30m` or `250ms`. `0` alone is zero.
pub fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let fail = |reason| ParseDurationError {
        input: input.to_owned(),
        reason,
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(fail("empty"));
    }
    let mut rest = input;
    let mut total_ms: u64 = 0;
    let mut last_rank = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("expected a number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| fail("number too large"))?;
        rest = &rest[digits..];
        let (unit, unit_ms) = UNITS
            .iter()
            .find(|(u, _)| !u.is_empty() && rest.starts_with(u))
            .ok_or_else(|| fail("missing or unknown unit (use ms, s, m, h, d, w, y)"))?;
        let this_rank = rank(unit);
        if last_rank.is_some_and(|r| r >= this_rank) {
            return Err(fail("units must appear once each, largest first"));
        }
        last_rank = Some(this_rank);
        rest = &rest[unit.len()..];
        total_ms = number
            .checked_mul(*unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| fail("duration too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            parse_duration("1m500ms").unwrap(),
            Duration::from_millis(60_500)
        );
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in [
            "",
            "5",
            "s",
            "1x",
            "1s1m",
            "1m1m",
            "-1s",
            "1.5s",
            "99999999999999999999y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }
}
