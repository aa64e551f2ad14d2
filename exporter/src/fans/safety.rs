//! Fan safety as its own task: `main` starts it whatever collectors are
//! enabled, and every `--fans.interval` it runs [`FanController::maintain`]
//! (revert timers, full-mode re-assertion, the thermal guard, the fan
//! policy) on a blocking thread. A scrape never writes to the BMC; turning
//! the `fan` collector off only hides the gauges.
//!
//! An interval is skipped, not queued, while the previous one still runs
//! (a slow BMC), so a hung `ipmitool` cannot pile up work.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::FanController;

/// Runs fan safety every `interval` until `stopping` turns true. The
/// caller restores the default mode afterwards ([`FanController::release`]).
pub async fn run(
    controller: Arc<FanController>,
    interval: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    if !controller.supported_board() {
        tracing::debug!("fan safety idle: this board has no verified fan command set");
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        let fans = Arc::clone(&controller);
        let work = tokio::task::spawn_blocking(move || fans.maintain());
        tokio::select! {
            result = work => {
                if let Err(err) = result {
                    tracing::error!(error = %err, "fan safety interval panicked; running again next interval");
                }
            }
            // Stopping mid-interval: the caller's release waits for the BMC.
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}
