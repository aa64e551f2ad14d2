//! `nvme`: NVMe health from nvme-cli (`nvme list -o json`, then
//! `nvme smart-log /dev/<ns> -o json` per namespace), with the names of the
//! node-exporter-textfile-collector-scripts `nvme_metrics` script. Ratios are
//! nvme-cli's percent ÷ 100; the temperature is converted from Kelvin.
//! JSON handling for every nvme-cli version is in `nvme_parse`.

use super::background::Absence;
use super::nvme_parse::{self, Namespace, SmartLog};
use super::{CollectError, Collector};
use crate::config::Config;
use crate::snapshot::Snapshot;
use crate::tool::Tool;

/// Flag and label name.
pub const NAME: &str = "nvme";

/// The `nvme` collector.
#[derive(Debug)]
pub struct NvmeCollector {
    nvme: Tool,
    /// "No NVMe here" is logged once, not per scrape.
    absence: Absence,
}

/// Builds the collector.
pub fn new(config: &Config) -> NvmeCollector {
    NvmeCollector {
        nvme: Tool::new(&config.nvme.program, config.nvme.timeout),
        absence: Absence::default(),
    }
}

/// `(smart-log key, metric, help, multiplier)` for the counters.
const COUNTERS: [(&str, &str, &str, f64); 10] = [
    (
        "data_units_read",
        "nvme_data_units_read_total",
        "Number of 512-byte data units read by host, reported in thousands",
        1.0,
    ),
    (
        "data_units_written",
        "nvme_data_units_written_total",
        "Number of 512-byte data units written by host, reported in thousands",
        1.0,
    ),
    (
        "host_read_commands",
        "nvme_host_read_commands_total",
        "Number of read commands completed",
        1.0,
    ),
    (
        "host_write_commands",
        "nvme_host_write_commands_total",
        "Number of write commands completed",
        1.0,
    ),
    (
        "power_cycles",
        "nvme_power_cycles_total",
        "Number of power cycles",
        1.0,
    ),
    (
        "power_on_hours",
        "nvme_power_on_hours_total",
        "Number of power-on hours",
        1.0,
    ),
    (
        "unsafe_shutdowns",
        "nvme_unsafe_shutdowns_total",
        "Number of unsafe shutdowns",
        1.0,
    ),
    (
        "media_errors",
        "nvme_media_errors_total",
        "Number of unrecovered data integrity errors",
        1.0,
    ),
    (
        "num_err_log_entries",
        "nvme_num_err_log_entries_total",
        "Lifetime number of error log entries",
        1.0,
    ),
    // Reported in minutes; the catalog names it without `_total`, so it
    // is written as a gauge.
    (
        "controller_busy_time",
        "nvme_controller_busy_time_seconds",
        "Amount of time in seconds the controller is busy with I/O commands",
        60.0,
    ),
];

/// nvme-cli and the NVMe spec convert Kelvin with 273 (integer degrees);
/// the textfile script does the same, so values match what both show.
const KELVIN_OFFSET: f64 = 273.0;

/// Writes the families for one namespace and its smart log.
pub fn write_namespace(out: &mut Snapshot, ns: &Namespace, log: &SmartLog) {
    let device = || vec![("device", ns.device.clone())];
    let mut gauge = |name: &'static str, help: &'static str, value: Option<f64>| {
        if let Some(value) = value {
            out.gauge(name, help, device(), value);
        }
    };
    gauge(
        "nvme_critical_warning",
        "Critical warnings for the state of the controller",
        log.critical_warning,
    );
    gauge(
        "nvme_temperature_celsius",
        "Temperature in degrees Celsius",
        log.temperature_kelvin.map(|k| k - KELVIN_OFFSET),
    );
    gauge(
        "nvme_available_spare_ratio",
        "Normalized percentage of remaining spare capacity available",
        log.avail_spare.map(|p| p / 100.0),
    );
    gauge(
        "nvme_available_spare_threshold_ratio",
        "Async event completion may occur when avail spare < threshold",
        log.spare_thresh.map(|p| p / 100.0),
    );
    gauge(
        "nvme_percentage_used_ratio",
        "Vendor specific estimate of the percentage of life used",
        log.percent_used.map(|p| p / 100.0),
    );
    gauge(
        "nvme_physical_size_bytes",
        "Device size in bytes",
        ns.physical_size,
    );
    gauge("nvme_used_bytes", "Used space in bytes", ns.used_bytes);
    for (key, name, help, scale) in COUNTERS {
        let Some(value) = log.counters.iter().find(|(k, _)| *k == key).map(|c| c.1) else {
            continue;
        };
        if name.ends_with("_total") {
            out.counter(name, help, device(), value * scale);
        } else {
            out.gauge(name, help, device(), value * scale);
        }
    }
}

fn write_info(out: &mut Snapshot, ns: &Namespace) {
    out.gauge(
        "nvme_device_info",
        "Device information",
        vec![
            ("device", ns.device.clone()),
            ("model", ns.model.clone()),
            ("firmware", ns.firmware.clone()),
            ("serial", ns.serial.clone()),
        ],
        1.0,
    );
}

impl NvmeCollector {
    fn list(&self) -> Result<Vec<Namespace>, CollectError> {
        let output = self.nvme.clone().args(["list", "-o", "json"]).run()?;
        // nvme-cli 2.3 with no devices prints nothing and exits 1 ("Failed
        // to scan topology"); others print `{"Devices":[]}`.
        if output.stdout.trim().is_empty() {
            return Err(CollectError::NoData(format!(
                "nvme list: no devices ({})",
                output.first_error_line()
            )));
        }
        nvme_parse::parse_list(&output.stdout)
            .map_err(|msg| CollectError::parse(self.nvme.program(), msg))
    }

    fn smart_log(&self, ns: &Namespace) -> Result<SmartLog, String> {
        let path = format!("/dev/{}", ns.device);
        let output = self
            .nvme
            .clone()
            .args(["smart-log", path.as_str(), "-o", "json"])
            .run()
            .map_err(|e| e.to_string())?;
        if !output.succeeded() {
            return Err(format!("{path}: {}", output.first_error_line()));
        }
        nvme_parse::parse_smart_log(&output.stdout).map_err(|e| format!("{path}: {e}"))
    }
}

impl Collector for NvmeCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let namespaces = self.list().inspect_err(|err| {
            if matches!(err, CollectError::NoData(_)) {
                self.absence.note(
                    NAME,
                    err,
                    "no NVMe devices readable; the nvme collector will report success 0",
                );
            }
        })?;
        if namespaces.is_empty() {
            return Err(CollectError::NoData("no NVMe namespaces".into()));
        }
        // One unreadable drive does not hide the others: its info series is
        // still written, and the first failure is reported after the loop.
        let mut first_error = None;
        for ns in &namespaces {
            write_info(out, ns);
            match self.smart_log(ns) {
                Ok(log) => write_namespace(out, ns, &log),
                Err(msg) => {
                    first_error.get_or_insert(msg);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(msg) => Err(CollectError::parse(self.nvme.program(), msg)),
        }
    }
}
