//! `netdev`: per-interface traffic counters from `/proc/net/dev` (parsed by
//! `procfs-core`), as `node_network_{receive,transmit}_*_total{device}`, and
//! `node_network_receive_nohandler_total` (packets no protocol took, which
//! `/proc/net/dev` lacks) from `/sys/class/net/<device>/statistics/`.

use procfs_core::FromRead;
use procfs_core::net::{DeviceStatus, InterfaceDeviceStatus};

use super::{CollectError, Collector};
use crate::config::{Config, DeviceFilter};
use crate::roots::{Roots, read_attribute, read_string};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "netdev";

type Stat = (&'static str, fn(&DeviceStatus) -> u64);

/// `/proc/net/dev` columns, named as node_exporter names them.
const STATS: [Stat; 16] = [
    ("receive_bytes", |d| d.recv_bytes),
    ("receive_packets", |d| d.recv_packets),
    ("receive_errs", |d| d.recv_errs),
    ("receive_drop", |d| d.recv_drop),
    ("receive_fifo", |d| d.recv_fifo),
    ("receive_frame", |d| d.recv_frame),
    ("receive_compressed", |d| d.recv_compressed),
    ("receive_multicast", |d| d.recv_multicast),
    ("transmit_bytes", |d| d.sent_bytes),
    ("transmit_packets", |d| d.sent_packets),
    ("transmit_errs", |d| d.sent_errs),
    ("transmit_drop", |d| d.sent_drop),
    ("transmit_fifo", |d| d.sent_fifo),
    ("transmit_colls", |d| d.sent_colls),
    ("transmit_carrier", |d| d.sent_carrier),
    ("transmit_compressed", |d| d.sent_compressed),
];

/// The `netdev` collector.
#[derive(Debug)]
pub struct NetdevCollector {
    roots: Roots,
    devices: DeviceFilter,
}

/// Builds the collector.
pub fn new(config: &Config) -> NetdevCollector {
    NetdevCollector {
        roots: config.roots.clone(),
        devices: config.netdev_devices.clone(),
    }
}

impl Collector for NetdevCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let path = self.roots.proc("net/dev");
        let text = read_string(&path)?;
        // procfs-core skips the two header lines unseen; check them, so a
        // garbage file is an error rather than "no interfaces".
        let mut header = text.lines();
        if !(header.next().is_some_and(|l| l.starts_with("Inter-|"))
            && header.next().is_some_and(|l| l.contains("face |")))
        {
            return Err(CollectError::parse(
                &path,
                "missing the 'Inter-|' / 'face |' header lines",
            ));
        }
        let InterfaceDeviceStatus(devices) = InterfaceDeviceStatus::from_read(text.as_bytes())
            .map_err(|_| {
                CollectError::parse(
                    &path,
                    "unexpected content: a line has missing or non-numeric fields",
                )
            })?;
        let mut names: Vec<&String> = devices
            .keys()
            .filter(|n| !self.devices.ignored(n))
            .collect();
        names.sort();
        for (stat, read) in &STATS {
            let family = out.family(
                format!("node_network_{stat}_total"),
                format!("Network device statistic {stat}."),
                crate::snapshot::Kind::Counter,
            );
            for name in &names {
                family.push(
                    vec![("device", (*name).clone())],
                    read(&devices[*name]) as f64,
                );
            }
        }
        for name in &names {
            let path = self
                .roots
                .sys("class/net")
                .join(name)
                .join("statistics/rx_nohandler");
            let Some(text) = read_attribute(&path)? else {
                continue;
            };
            let value = text
                .parse::<u64>()
                .map_err(|_| CollectError::parse(&path, format!("not a number: {text:?}")))?;
            out.counter(
                "node_network_receive_nohandler_total",
                "Network device statistic receive_nohandler.",
                vec![("device", (*name).clone())],
                value as f64,
            );
        }
        Ok(())
    }
}
