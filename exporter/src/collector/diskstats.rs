//! `diskstats`: block device I/O counters from `/proc/diskstats` (parsed by
//! `procfs-core`), plus `node_disk_info` and the udev-derived info metrics
//! node_exporter exports (`--path.udev.data`, default `/run/udev/data`).

use std::collections::HashMap;

use procfs_core::{DiskStat, DiskStats};
use regex::Regex;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_attribute, read_procfs};
use crate::snapshot::{Kind, SampleLabels, Snapshot};

/// Flag and label name.
pub const NAME: &str = "diskstats";

/// node_exporter's default: partitions, ram, loop and floppy devices (the
/// `--collector.diskstats.device-exclude` default).
pub const DEFAULT_DEVICE_EXCLUDE: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

/// `/proc/diskstats` counts 512-byte sectors whatever the device's sector size.
const SECTOR_BYTES: f64 = 512.0;
/// Times are in milliseconds; node_exporter multiplies by this constant.
const SECONDS_PER_MS: f64 = 0.001;

/// The `diskstats` collector.
#[derive(Debug)]
pub struct DiskstatsCollector {
    roots: Roots,
    exclude: Regex,
}

/// Builds the collector.
pub fn new(config: &Config) -> DiskstatsCollector {
    DiskstatsCollector {
        roots: config.roots.clone(),
        exclude: config.diskstats_device_exclude.clone(),
    }
}

type Counter = (&'static str, &'static str, fn(&DiskStat) -> Option<f64>);

/// Every counter, in node_exporter's names and units.
const COUNTERS: [Counter; 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        |d| Some(d.reads as f64),
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        |d| Some(d.merged as f64),
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        |d| Some(d.sectors_read as f64 * SECTOR_BYTES),
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        |d| Some(d.time_reading as f64 * SECONDS_PER_MS),
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        |d| Some(d.writes as f64),
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        |d| Some(d.writes_merged as f64),
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        |d| Some(d.sectors_written as f64 * SECTOR_BYTES),
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        |d| Some(d.time_writing as f64 * SECONDS_PER_MS),
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        |d| Some(d.time_in_progress as f64 * SECONDS_PER_MS),
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        |d| Some(d.weighted_time_in_progress as f64 * SECONDS_PER_MS),
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        |d| d.discards.map(|v| v as f64),
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        |d| d.discards_merged.map(|v| v as f64),
    ),
    (
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        |d| d.sectors_discarded.map(|v| v as f64),
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        |d| d.time_discarding.map(|v| v as f64 * SECONDS_PER_MS),
    ),
    (
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        |d| d.flushes.map(|v| v as f64),
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        |d| d.time_flushing.map(|v| v as f64 * SECONDS_PER_MS),
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        |d| Some(d.in_progress as f64),
    ),
];

/// Properties of one device from the udev database (`E:KEY=VALUE` lines).
fn read_udev(roots: &Roots, major: i32, minor: i32) -> HashMap<String, String> {
    let path = roots.udev_data.join(format!("b{major}:{minor}"));
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("E:"))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl DiskstatsCollector {
    fn emit_info(&self, out: &mut Snapshot, disk: &DiskStat) -> Result<(), CollectError> {
        let udev = read_udev(&self.roots, disk.major, disk.minor);
        let prop = |key: &str| udev.get(key).cloned().unwrap_or_default();
        let device = || ("device", disk.name.clone());
        let rotational = read_attribute(
            &self
                .roots
                .sys(&format!("block/{}/queue/rotational", disk.name)),
        )?
        .unwrap_or_else(|| "0".into());
        let serial = udev
            .get("ID_SERIAL_SHORT")
            .or_else(|| udev.get("ID_SERIAL"))
            .cloned()
            .unwrap_or_default();
        out.gauge(
            "node_disk_info",
            "Info of /sys/block/<block_device>.",
            vec![
                device(),
                ("major", disk.major.to_string()),
                ("minor", disk.minor.to_string()),
                ("model", prop("ID_MODEL")),
                ("path", prop("ID_PATH")),
                ("revision", prop("ID_REVISION")),
                ("rotational", rotational),
                ("serial", serial),
                ("wwn", prop("ID_WWN")),
            ],
            1.0,
        );
        if udev.get("ID_FS_TYPE").is_some_and(|t| !t.is_empty()) {
            out.gauge(
                "node_disk_filesystem_info",
                "Info about disk filesystem.",
                vec![
                    device(),
                    ("type", prop("ID_FS_TYPE")),
                    ("usage", prop("ID_FS_USAGE")),
                    ("uuid", prop("ID_FS_UUID")),
                    ("version", prop("ID_FS_VERSION")),
                ],
                1.0,
            );
        }
        if udev.get("DM_NAME").is_some_and(|n| !n.is_empty()) {
            out.gauge(
                "node_disk_device_mapper_info",
                "Info about disk device mapper.",
                vec![
                    device(),
                    ("lv_layer", prop("DM_LV_LAYER")),
                    ("lv_name", prop("DM_LV_NAME")),
                    ("name", prop("DM_NAME")),
                    ("uuid", prop("DM_UUID")),
                    ("vg_name", prop("DM_VG_NAME")),
                ],
                1.0,
            );
        }
        let ata = [
            (
                "ID_ATA_WRITE_CACHE",
                "node_disk_ata_write_cache",
                "ATA disk has a write cache.",
            ),
            (
                "ID_ATA_WRITE_CACHE_ENABLED",
                "node_disk_ata_write_cache_enabled",
                "ATA disk has its write cache enabled.",
            ),
            (
                "ID_ATA_ROTATION_RATE_RPM",
                "node_disk_ata_rotation_rate_rpm",
                "ATA disk rotation rate in RPMs (0 for SSDs).",
            ),
        ];
        for (key, name, help) in ata {
            if let Some(value) = udev.get(key).and_then(|v| v.parse::<f64>().ok()) {
                out.gauge(name, help, vec![device()], value);
            }
        }
        Ok(())
    }
}

impl Collector for DiskstatsCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let path = self.roots.proc("diskstats");
        let DiskStats(disks) = read_procfs(&path)?;
        for disk in disks.iter().filter(|d| !self.exclude.is_match(&d.name)) {
            let labels: SampleLabels = vec![("device", disk.name.clone())];
            for (name, help, read) in &COUNTERS {
                if let Some(value) = read(disk) {
                    let kind = if name.ends_with("_total") {
                        Kind::Counter
                    } else {
                        Kind::Gauge
                    };
                    out.family(*name, *help, kind).push(labels.clone(), value);
                }
            }
            self.emit_info(out, disk)?;
        }
        Ok(())
    }
}
