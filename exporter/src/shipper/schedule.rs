//! When the shipper collects: on multiples of the interval since the Unix
//! epoch, so every host's samples of one round share a timestamp and the
//! receiver's delta-of-delta timestamp encoding sees a constant step.
//! Samples are stamped with the tick, never with the moment a collector
//! finished (that jitter would cost the receiver's compression dearly).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first tick at or after `now`, in milliseconds since the epoch.
pub fn next_tick_ms(now: SystemTime, interval: Duration) -> i64 {
    let step = interval.as_millis().max(1);
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let tick = now_ms.div_ceil(step) * step;
    i64::try_from(tick).unwrap_or(i64::MAX)
}

/// How long to sleep from `now` until `tick_ms` (zero when it has passed).
pub fn until_tick(now: SystemTime, tick_ms: i64) -> Duration {
    let tick = UNIX_EPOCH + Duration::from_millis(u64::try_from(tick_ms).unwrap_or(0));
    tick.duration_since(now).unwrap_or(Duration::ZERO)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn ticks_are_multiples_of_the_interval_since_the_epoch() {
        let interval = Duration::from_secs(30);
        assert_eq!(
            next_tick_ms(at(1_700_000_000_001), interval),
            1_700_000_010_000
        );
        assert_eq!(
            next_tick_ms(at(1_700_000_009_999), interval),
            1_700_000_010_000
        );
        // Exactly on a tick: that tick, not the next one.
        assert_eq!(
            next_tick_ms(at(1_700_000_010_000), interval),
            1_700_000_010_000
        );
    }

    #[test]
    fn sub_second_and_odd_intervals_align_too() {
        assert_eq!(next_tick_ms(at(1_234), Duration::from_millis(500)), 1_500);
        assert_eq!(
            next_tick_ms(at(1_000_001), Duration::from_secs(7)),
            1_001_000
        );
        assert_eq!(1_001_000 % 7_000, 0);
    }

    #[test]
    fn sleep_until_tick_never_goes_negative() {
        assert_eq!(until_tick(at(10_000), 10_500), Duration::from_millis(500));
        assert_eq!(until_tick(at(10_600), 10_500), Duration::ZERO);
    }
}
