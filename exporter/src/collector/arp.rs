//! `arp`: the number of neighbour-table entries per interface, counted
//! from `/proc/net/arp`, as node_exporter's `node_arp_entries{device}`,
//! with its `--collector.arp.device-include/-exclude` filters.

use std::collections::BTreeMap;
use std::path::Path;

use super::{CollectError, Collector};
use crate::config::{Config, DeviceFilter};
use crate::roots::{Roots, read_string};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "arp";

/// The `arp` collector.
#[derive(Debug)]
pub struct ArpCollector {
    roots: Roots,
    devices: DeviceFilter,
}

/// Builds the collector.
pub fn new(config: &Config) -> ArpCollector {
    ArpCollector {
        roots: config.roots.clone(),
        devices: config.arp_devices.clone(),
    }
}

/// Entries per device (the sixth column), after the header line.
pub fn count_entries(path: &Path, text: &str) -> Result<BTreeMap<String, u64>, CollectError> {
    let mut lines = text.lines();
    if !lines.next().is_some_and(|h| h.starts_with("IP address")) {
        return Err(CollectError::parse(path, "no 'IP address ...' header line"));
    }
    let mut counts = BTreeMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let device = line
            .split_ascii_whitespace()
            .nth(5)
            .ok_or_else(|| CollectError::parse(path, format!("short line {line:?}")))?;
        *counts.entry(device.to_owned()).or_insert(0u64) += 1;
    }
    Ok(counts)
}

impl Collector for ArpCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let path = self.roots.proc("net/arp");
        for (device, count) in count_entries(&path, &read_string(&path)?)? {
            if self.devices.ignored(&device) {
                continue;
            }
            out.gauge(
                "node_arp_entries",
                "ARP entries by device",
                vec![("device", device)],
                count as f64,
            );
        }
        Ok(())
    }
}
