//! When the shipper collects: on multiples of the interval since the Unix
//! epoch, so every host's samples of one round share a timestamp and the
//! receiver's delta-of-delta timestamp encoding sees a constant step.
//! Samples are stamped with the tick, never with the moment a collector
//! finished (that jitter would cost the receiver's compression dearly).
//!
//! The interval itself may change while the shipper runs (a
//! `config_update`, or its rollback): [`LiveInterval`] carries it, and the
//! shipper plans each tick with [`next_tick_after`], which keeps ticks
//! aligned to whatever interval is in force and strictly increasing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// The collection interval in force: the flag's, or the one a runtime
/// configuration sets. Clones share it; the shipper is woken by a change.
#[derive(Debug, Clone)]
pub struct LiveInterval {
    /// `--remote-write.interval`, in force while no configuration sets one.
    base: Duration,
    sender: Arc<watch::Sender<InForce>>,
}

/// An interval and when it came into force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InForce {
    /// The interval.
    pub interval: Duration,
    /// Milliseconds since the epoch when it was set (0: from the start):
    /// its ticks before then were never due.
    pub since_ms: i64,
}

impl LiveInterval {
    /// Starts at `base`.
    pub fn new(base: Duration) -> LiveInterval {
        LiveInterval {
            base,
            sender: Arc::new(watch::Sender::new(InForce {
                interval: base,
                since_ms: 0,
            })),
        }
    }

    /// Puts `interval` in force (`None`: back to the flag's). Returns
    /// whether that changed it.
    pub fn set(&self, interval: Option<Duration>) -> bool {
        let wanted = interval.unwrap_or(self.base);
        self.sender.send_if_modified(|current| {
            if current.interval == wanted {
                return false;
            }
            *current = InForce {
                interval: wanted,
                since_ms: now_ms(),
            };
            true
        })
    }

    /// The interval in force.
    pub fn get(&self) -> Duration {
        self.sender.borrow().interval
    }

    /// Follows changes: `changed()` wakes on each. The sender lives as
    /// long as any clone of `self`, so a follower holds one beside the
    /// receiver.
    pub fn subscribe(&self) -> watch::Receiver<InForce> {
        self.sender.subscribe()
    }
}

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

/// The tick to collect next at `interval`: the first one at or after
/// `now` and strictly after `last` (the tick collected before, if any), so
/// a tick is never collected twice, even across an interval change. Also
/// returns how many ticks it passes over that were due: those at
/// `interval` after `last` and after `due_from` (when this interval came
/// into force), a round that overran having missed them.
pub fn next_tick_after(
    now: SystemTime,
    interval: Duration,
    last: Option<i64>,
    due_from: i64,
) -> (i64, u64) {
    let Some(last) = last else {
        return (next_tick_ms(now, interval), 0);
    };
    let after_last = UNIX_EPOCH + Duration::from_millis(u64::try_from(last + 1).unwrap_or(0));
    let tick = next_tick_ms(now.max(after_last), interval);
    let step = i64::try_from(interval.as_millis().max(1)).unwrap_or(i64::MAX);
    // Multiples of `step` strictly between `from` and `tick` (a multiple).
    let from = last.max(due_from);
    let missed = (tick / step - from.div_euclid(step) - 1).max(0);
    (tick, missed as u64)
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
    fn the_next_tick_follows_the_last_one_and_counts_what_an_overrun_missed() {
        let interval = Duration::from_secs(10);
        assert_eq!(
            next_tick_after(at(1_003_000), interval, None, i64::MIN),
            (1_010_000, 0)
        );
        // On time: the following tick, nothing missed.
        assert_eq!(
            next_tick_after(at(1_010_050), interval, Some(1_010_000), i64::MIN),
            (1_020_000, 0)
        );
        // A round that finished on its own tick does not collect it again.
        assert_eq!(
            next_tick_after(at(1_010_000), interval, Some(1_010_000), i64::MIN),
            (1_020_000, 0)
        );
        // A round that overran by 25 s missed two ticks.
        assert_eq!(
            next_tick_after(at(1_035_000), interval, Some(1_010_000), i64::MIN),
            (1_040_000, 2)
        );
        // A clock stepped back: still after the last tick.
        assert_eq!(
            next_tick_after(at(990_000), interval, Some(1_010_000), i64::MIN),
            (1_020_000, 0)
        );
    }

    #[test]
    fn a_new_interval_stays_aligned_and_misses_nothing_it_was_never_due_for() {
        // 30 s -> 10 s at 1 045.5 s, last tick 1 020 s: the next 10 s tick,
        // and the 10 s ticks before the change were never due.
        assert_eq!(
            next_tick_after(
                at(1_045_500),
                Duration::from_secs(10),
                Some(1_020_000),
                1_045_500
            ),
            (1_050_000, 0)
        );
        // 10 s -> 30 s just after the 1 050 s tick: aligned to 30 s.
        assert_eq!(
            next_tick_after(
                at(1_050_200),
                Duration::from_secs(30),
                Some(1_050_000),
                1_050_200
            ),
            (1_080_000, 0)
        );
        // 15 s -> 10 s while the 15 s tick at 1 005 s is still collecting
        // (change seen at 1 006 s, round done at 1 026 s): the 10 s ticks
        // 1 010 s and 1 020 s were missed, not the ones before the change.
        assert_eq!(
            next_tick_after(
                at(1_026_000),
                Duration::from_secs(10),
                Some(1_005_000),
                1_006_000
            ),
            (1_030_000, 2)
        );
    }

    #[test]
    fn a_live_interval_falls_back_to_the_flag_and_wakes_its_followers() {
        let interval = LiveInterval::new(Duration::from_secs(30));
        let mut follower = interval.subscribe();
        assert!(!interval.set(Some(Duration::from_secs(30))), "unchanged");
        assert!(!follower.has_changed().unwrap());
        let before = now_ms();
        assert!(interval.set(Some(Duration::from_secs(5))));
        assert!(follower.has_changed().unwrap());
        let in_force = *follower.borrow_and_update();
        assert_eq!(in_force.interval, Duration::from_secs(5));
        assert!(in_force.since_ms >= before, "{in_force:?}");
        assert!(interval.set(None));
        assert_eq!(interval.get(), Duration::from_secs(30));
    }

    #[test]
    fn sleep_until_tick_never_goes_negative() {
        assert_eq!(until_tick(at(10_000), 10_500), Duration::from_millis(500));
        assert_eq!(until_tick(at(10_600), 10_500), Duration::ZERO);
    }
}
