//! `time`: the system clock (`node_time_seconds`), the local zone offset
//! and the kernel's clocksources from
//! `/sys/devices/system/clocksource/clocksource<N>/`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, list_dir, read_attribute};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "time";

/// The `time` collector.
#[derive(Debug)]
pub struct TimeCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> TimeCollector {
    TimeCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for TimeCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| CollectError::NoData(format!("clock before 1970: {e}")))?;
        out.gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            vec![],
            now.as_secs_f64(),
        );
        let base = self.roots.sys("devices/system/clocksource");
        for entry in list_dir(&base)? {
            let Some(device) = entry.strip_prefix("clocksource") else {
                continue;
            };
            let dir = base.join(&entry);
            if let Some(available) = read_attribute(&dir.join("available_clocksource"))? {
                for source in available.split_ascii_whitespace() {
                    out.gauge(
                        "node_time_clocksource_available_info",
                        "Available clocksources read from '/sys/devices/system/clocksource'.",
                        vec![
                            ("clocksource", source.to_owned()),
                            ("device", device.to_owned()),
                        ],
                        1.0,
                    );
                }
            }
            if let Some(current) = read_attribute(&dir.join("current_clocksource"))? {
                out.gauge(
                    "node_time_clocksource_current_info",
                    "Current clocksource read from '/sys/devices/system/clocksource'.",
                    vec![("clocksource", current), ("device", device.to_owned())],
                    1.0,
                );
            }
        }
        Ok(())
    }
}
