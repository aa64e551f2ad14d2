//! Periodic work aligned to wall-clock multiples of its interval, as a
//! scrape schedule is: samples written on each tick line up across
//! restarts and with the exporters' own ticks.

use std::time::Duration;

use crate::storage::now_ms;

/// Sleeps until the next multiple of `interval` since the epoch and
/// returns that time in ms.
pub async fn next(interval: Duration) -> i64 {
    let interval_ms = interval.as_millis().max(1) as i64;
    let now = now_ms();
    let tick = (now / interval_ms + 1) * interval_ms;
    tokio::time::sleep(Duration::from_millis((tick - now) as u64)).await;
    tick
}
