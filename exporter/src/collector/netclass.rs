//! `netclass`: interface properties from `/sys/class/net/<iface>/`:
//! `node_network_up`, `node_network_info`, MTU, speed, carrier and the other
//! numeric attributes node_exporter exports, with its names
//! (`--collector.netclass.ignore-invalid-speed` as in node_exporter).

use regex::Regex;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, list_dir, read_attribute};
use crate::snapshot::{Kind, Snapshot};

/// Flag and label name.
pub const NAME: &str = "netclass";

/// `(sysfs attribute, metric suffix, value is hexadecimal)`.
const NUMERIC: [(&str, &str, bool); 15] = [
    ("addr_assign_type", "address_assign_type", false),
    ("carrier", "carrier", false),
    ("carrier_changes", "carrier_changes_total", false),
    ("carrier_up_count", "carrier_up_changes_total", false),
    ("carrier_down_count", "carrier_down_changes_total", false),
    ("dev_id", "device_id", true),
    ("dormant", "dormant", false),
    ("flags", "flags", true),
    ("ifindex", "iface_id", false),
    ("iflink", "iface_link", false),
    ("link_mode", "iface_link_mode", false),
    ("mtu", "mtu_bytes", false),
    ("name_assign_type", "name_assign_type", false),
    ("netdev_group", "net_dev_group", false),
    ("type", "protocol_type", false),
];

/// The `netclass` collector.
#[derive(Debug)]
pub struct NetclassCollector {
    roots: Roots,
    ignored: Regex,
    ignore_invalid_speed: bool,
}

/// Builds the collector.
pub fn new(config: &Config) -> NetclassCollector {
    NetclassCollector {
        roots: config.roots.clone(),
        ignored: config.netclass_ignored_devices.clone(),
        ignore_invalid_speed: config.netclass_ignore_invalid_speed,
    }
}

fn property(out: &mut Snapshot, suffix: &str, device: &str, value: f64) {
    let kind = if suffix.ends_with("_total") {
        Kind::Counter
    } else {
        Kind::Gauge
    };
    out.family(
        format!("node_network_{suffix}"),
        format!("Network device property: {suffix}"),
        kind,
    )
    .push(vec![("device", device.to_owned())], value);
}

impl Collector for NetclassCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let class = self.roots.sys("class/net");
        for device in list_dir(&class)? {
            let dir = class.join(&device);
            if self.ignored.is_match(&device) || !dir.is_dir() {
                continue;
            }
            let attr = |name: &str| read_attribute(&dir.join(name));
            let operstate = attr("operstate")?.unwrap_or_default();
            let flags = attr("flags")?
                .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok());
            let adminstate = match flags {
                Some(f) if f & 1 == 1 => "up",
                Some(_) => "down",
                None => "",
            };
            out.gauge(
                "node_network_info",
                "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
                vec![
                    ("address", attr("address")?.unwrap_or_default()),
                    ("adminstate", adminstate.to_owned()),
                    ("broadcast", attr("broadcast")?.unwrap_or_default()),
                    ("device", device.clone()),
                    ("duplex", attr("duplex")?.unwrap_or_default()),
                    ("ifalias", attr("ifalias")?.unwrap_or_default()),
                    ("operstate", operstate.clone()),
                ],
                1.0,
            );
            out.gauge(
                "node_network_up",
                "Value is 1 if operstate is 'up', 0 otherwise.",
                vec![("device", device.clone())],
                if operstate == "up" { 1.0 } else { 0.0 },
            );
            for (file, suffix, hex) in NUMERIC {
                let Some(text) = attr(file)? else { continue };
                let parsed = if hex {
                    i64::from_str_radix(text.trim_start_matches("0x"), 16)
                        .ok()
                        .map(|v| v as f64)
                } else {
                    text.parse::<f64>().ok()
                };
                if let Some(value) = parsed {
                    property(out, suffix, &device, value);
                }
            }
            // Mbit/s → bytes/s. The kernel reports -1 when it knows no
            // speed (link down, virtual NICs); node_exporter 1.x exports that
            // as -125000 unless told to ignore it, and so does dcmon.
            if let Some(speed) = attr("speed")?
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s >= 0 || !self.ignore_invalid_speed)
            {
                property(out, "speed_bytes", &device, speed as f64 * 125_000.0);
            }
            if let Some(qlen) = attr("tx_queue_len")?.and_then(|s| s.parse::<f64>().ok()) {
                property(out, "transmit_queue_length", &device, qlen);
            }
        }
        Ok(())
    }
}
