//! Periodic work aligned to wall-clock multiples of its interval, as a
//! scrape schedule is: samples written on each tick line up across
//! restarts and with the exporters' own ticks.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use dcmon_protocol::remote_write::{FamilyMetadata, SeriesSamples};

use crate::storage::{Storage, now_ms};

/// Sleeps until the next multiple of `interval` since the epoch and
/// returns that time in ms.
pub async fn next(interval: Duration) -> i64 {
    let interval_ms = interval.as_millis().max(1) as i64;
    let now = now_ms();
    let tick = (now / interval_ms + 1) * interval_ms;
    tokio::time::sleep(Duration::from_millis((tick - now) as u64)).await;
    tick
}

/// Every `interval`, on its multiples, stores what `produce` makes for
/// that tick (its time in ms): the receiver's own series (client presence,
/// self-scrape) are written by this one loop. `what` names them in the
/// warnings; a failed tick is logged and the next one tried.
pub fn store_every<F, Fut, E>(
    storage: Storage,
    interval: Duration,
    what: &'static str,
    mut produce: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(i64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<SeriesSamples>, Vec<FamilyMetadata>), E>> + Send,
    E: Display + Send,
{
    tokio::spawn(async move {
        loop {
            let tick = next(interval).await;
            match produce(tick).await {
                Ok((series, _)) if series.is_empty() => {}
                Ok((series, metadata)) => {
                    if let Err(err) = storage.append(series, metadata).await {
                        tracing::warn!(error = %err, "storing {what} failed");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reading {what} failed"),
            }
        }
    })
}
