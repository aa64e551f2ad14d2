//! `ipmi`: BMC sensors through `ipmitool`, with prometheus-community
//! ipmi_exporter's names (`ipmi_temperature_celsius`, `ipmi_fan_speed_rpm`,
//! …, `ipmi_up{collector}`), plus `dcmon_ipmi_sensor_threshold` so alerts
//! can compare a reading with the BMC's own limits.
//!
//! One refresh runs `sensor` (readings, states, thresholds), `sdr elist`
//! (only for the sensor numbers used as the `id` label), `dcmi power
//! reading`, `mc info` and `chassis status`, each under its own hard
//! timeout (see `crate::tool`). BMCs are slow, so a refresh is reused for
//! `--collector.ipmi.cache-ttl` and then renewed in the background (see
//! [`IpmiCollector`]); failures are cached as well, so a hung BMC is not
//! asked again on every scrape. Parsing lives in `ipmi_parse`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use super::background::{Absence, Background, Renewal};
use super::ipmi_parse::{self, SensorRow, THRESHOLDS};
use super::{CollectError, Collector};
use crate::config::{Config, IpmiConfig};
use crate::snapshot::{SampleLabels, Snapshot};
use crate::tool::{Tool, ToolError, ToolOutput};

/// Flag and label name.
pub const NAME: &str = "ipmi";

/// What one refresh produced: the families, and the error to report (as a
/// message, so it can be replayed from the cache).
#[derive(Debug, Clone)]
struct Refresh {
    snapshot: Snapshot,
    outcome: Result<(), Failure>,
}

#[derive(Debug, Clone)]
enum Failure {
    /// No BMC or no ipmitool: normal on many hosts, logged at debug level.
    Absent(String),
    /// The BMC or tool misbehaved.
    Broken(String),
}

/// The `ipmi` collector.
///
/// The first scrape reads the BMC itself. After that, a scrape that finds
/// the readings older than the TTL serves them once more and starts a
/// refresh in the background, so a BMC slower than the collector timeout
/// does not leave gaps; a TTL of zero reads the BMC on every scrape.
#[derive(Debug)]
pub struct IpmiCollector {
    /// The program, for errors.
    program: PathBuf,
    readings: Background<Refresh>,
    absence: Absence,
}

/// One BMC as ipmitool reaches it.
#[derive(Debug)]
struct IpmiTarget {
    base: Tool,
    /// The unit each sensor last reported, by name and occurrence.
    known_units: Mutex<HashMap<(String, usize), String>>,
}

/// Builds the collector.
pub fn new(config: &Config) -> IpmiCollector {
    let bmc = IpmiTarget {
        base: base_tool(&config.ipmi),
        known_units: Mutex::new(HashMap::new()),
    };
    IpmiCollector {
        program: bmc.base.program().to_owned(),
        readings: Background::new(
            "dcmon-ipmi",
            Renewal::Ttl(config.ipmi.cache_ttl),
            move |_| bmc.refresh(),
        ),
        absence: Absence::default(),
    }
}

/// ipmitool with the interface arguments: `-I open` locally, or `-I
/// lanplus -H … [-U …] [-f …]` for a remote BMC. The password is only ever
/// passed as a file name.
fn base_tool(config: &IpmiConfig) -> Tool {
    let mut args: Vec<OsString> = Vec::new();
    match &config.remote {
        None => args.extend(["-I".into(), "open".into()]),
        Some(remote) => {
            args.extend(["-I".into(), "lanplus".into(), "-H".into()]);
            args.push(remote.host.clone().into());
            if let Some(port) = remote.port {
                args.extend(["-p".into(), port.to_string().into()]);
            }
            if let Some(suite) = remote.cipher_suite {
                args.extend(["-C".into(), suite.to_string().into()]);
            }
            if let Some(user) = &remote.user {
                args.extend(["-U".into(), user.clone().into()]);
            }
            if let Some(file) = &remote.password_file {
                args.extend(["-f".into(), file.clone().into()]);
            }
        }
    }
    Tool::new(&config.ipmitool.program, config.ipmitool.timeout).args(args)
}

impl IpmiTarget {
    fn run(&self, command: &[&str]) -> Result<ToolOutput, ToolError> {
        self.base.clone().args(command.iter().copied()).run()
    }

    fn refresh(&self) -> Refresh {
        let started = Instant::now();
        let mut out = Snapshot::new();
        let outcome = self.collect(&mut out);
        out.gauge(
            "ipmi_scrape_duration_seconds",
            "Returns how long the scrape took to complete in seconds.",
            vec![],
            started.elapsed().as_secs_f64(),
        );
        Refresh {
            snapshot: out,
            outcome,
        }
    }

    fn collect(&self, out: &mut Snapshot) -> Result<(), Failure> {
        let sensors = self.read_sensors();
        up(out, "ipmi", sensors.is_ok());
        // Without a BMC (or with a hung one) the other commands would
        // only fail the same way, each after its own timeout.
        let mut rows = sensors?;
        self.fill_known_units(&mut rows);
        let numbers = self
            .run(&["sdr", "elist"])
            .map(|o| ipmi_parse::parse_sdr_numbers(&o.stdout))
            .unwrap_or_default();
        write_sensors(out, &rows, &numbers);

        let dcmi = self
            .run(&["dcmi", "power", "reading"])
            .ok()
            .filter(ToolOutput::succeeded)
            .and_then(|o| ipmi_parse::parse_dcmi_power(&o.stdout));
        up(out, "dcmi", dcmi.is_some());
        if let Some(power) = dcmi.filter(|p| p.active) {
            out.gauge(
                "ipmi_dcmi_power_consumption_current_watts",
                "Current power consumption in Watts.",
                vec![],
                power.current_watts,
            );
        }

        let mc = self.key_values(&["mc", "info"]);
        up(out, "bmc", mc.is_some());
        if let Some(pairs) = mc {
            let get = |key| ipmi_parse::lookup(&pairs, key).unwrap_or("N/A").to_owned();
            out.gauge(
                "ipmi_bmc_info",
                "Constant metric with value '1' providing details about the BMC.",
                vec![
                    ("firmware_revision", get("Firmware Revision")),
                    ("manufacturer_id", get("Manufacturer ID")),
                    // `mc info` does not show it; ipmi_exporter writes N/A
                    // when the BMC does not report it either.
                    ("system_firmware_version", "N/A".to_owned()),
                ],
                1.0,
            );
        }

        let chassis = self.key_values(&["chassis", "status"]);
        let power = chassis
            .as_deref()
            .and_then(|pairs| ipmi_parse::lookup(pairs, "System Power"));
        up(out, "chassis", power.is_some());
        if let Some(power) = power {
            out.gauge(
                "ipmi_chassis_power_state",
                "Current power state (1=on, 0=off).",
                vec![],
                if power == "on" { 1.0 } else { 0.0 },
            );
        }
        Ok(())
    }

    /// Runs `ipmitool sensor` and parses it. ipmitool can exit non-zero
    /// after printing a usable table (ipmi_exporter issue 57), so the table
    /// decides, and the exit status only explains an empty one.
    fn read_sensors(&self) -> Result<Vec<SensorRow>, Failure> {
        let output = self.run(&["sensor"]).map_err(|err| match err {
            ToolError::NotFound { .. } => Failure::Absent(err.to_string()),
            other => Failure::Broken(other.to_string()),
        })?;
        if output.stdout.trim().is_empty() {
            let why = output.first_error_line().to_owned();
            return Err(if why.starts_with("Could not open device") {
                Failure::Absent(format!("no local BMC: {why}"))
            } else {
                Failure::Broken(format!(
                    "ipmitool sensor printed nothing ({}): {why}",
                    output.status
                ))
            });
        }
        ipmi_parse::parse_sensor(&output.stdout)
            .map_err(|err| Failure::Broken(format!("ipmitool sensor: {err}")))
    }

    /// A sensor that stops reading (`na`) loses its unit in ipmitool's
    /// listing. Reusing the unit it had keeps a dead fan in
    /// `ipmi_fan_speed_state` (as NaN) instead of moving it to the generic
    /// family, where alerts on fan state would not see it.
    fn fill_known_units(&self, rows: &mut [SensorRow]) {
        let mut known = self.known_units.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let occurrence = seen.entry(row.name.clone()).or_default();
            let key = (row.name.clone(), *occurrence);
            *occurrence += 1;
            if row.unit.is_empty() {
                if let Some(unit) = known.get(&key) {
                    row.unit = unit.clone();
                }
            } else {
                known.insert(key, row.unit.clone());
            }
        }
    }

    fn key_values(&self, command: &[&str]) -> Option<Vec<(String, String)>> {
        let output = self.run(command).ok().filter(ToolOutput::succeeded)?;
        let pairs = ipmi_parse::parse_key_values(&output.stdout);
        (!pairs.is_empty()).then_some(pairs)
    }
}

fn up(out: &mut Snapshot, collector: &str, ok: bool) {
    out.gauge(
        "ipmi_up",
        "'1' if a scrape of the IPMI device was successful, '0' otherwise.",
        vec![("collector", collector.to_owned())],
        if ok { 1.0 } else { 0.0 },
    );
}

/// Where a sensor's reading goes: ipmi_exporter's per-type family, or the
/// generic one with a `type` label.
struct Kind {
    value_name: &'static str,
    value_help: &'static str,
    state_name: &'static str,
    state_help: &'static str,
    /// Divisor from the reported unit to the exported one (percent → ratio).
    divisor: f64,
    /// The `type` label: only the generic families carry it, but the
    /// threshold family always does.
    type_label: String,
    generic: bool,
}

fn classify(row: &SensorRow) -> Kind {
    let typed = |value_name, value_help, state_name, state_help, divisor, type_label: &str| Kind {
        value_name,
        value_help,
        state_name,
        state_help,
        divisor,
        type_label: type_label.to_owned(),
        generic: false,
    };
    let fan_state = (
        "ipmi_fan_speed_state",
        "Reported state of a fan speed sensor (0=nominal, 1=warning, 2=critical).",
    );
    match row.unit.as_str() {
        "degrees C" => typed(
            "ipmi_temperature_celsius",
            "Temperature reading in degree Celsius.",
            "ipmi_temperature_state",
            "Reported state of a temperature sensor (0=nominal, 1=warning, 2=critical).",
            1.0,
            "temperature",
        ),
        "RPM" => typed(
            "ipmi_fan_speed_rpm",
            "Fan speed in rotations per minute.",
            fan_state.0,
            fan_state.1,
            1.0,
            "fan",
        ),
        // HPE reports fans in percent of full speed.
        "percent" if row.name.to_ascii_lowercase().contains("fan") => typed(
            "ipmi_fan_speed_ratio",
            "Fan speed as a proportion of the maximum speed.",
            fan_state.0,
            fan_state.1,
            100.0,
            "fan",
        ),
        "Volts" => typed(
            "ipmi_voltage_volts",
            "Voltage reading in Volts.",
            "ipmi_voltage_state",
            "Reported state of a voltage sensor (0=nominal, 1=warning, 2=critical).",
            1.0,
            "voltage",
        ),
        "Amps" => typed(
            "ipmi_current_amperes",
            "Current reading in Amperes.",
            "ipmi_current_state",
            "Reported state of a current sensor (0=nominal, 1=warning, 2=critical).",
            1.0,
            "current",
        ),
        "Watts" => typed(
            "ipmi_power_watts",
            "Power reading in Watts.",
            "ipmi_power_state",
            "Reported state of a power sensor (0=nominal, 1=warning, 2=critical).",
            1.0,
            "power",
        ),
        other => Kind {
            value_name: "ipmi_sensor_value",
            value_help: "Generic data read from an IPMI sensor of unknown type, relying on labels for context.",
            state_name: "ipmi_sensor_state",
            state_help: "Indicates the severity of the state reported by an IPMI sensor (0=nominal, 1=warning, 2=critical).",
            divisor: 1.0,
            // `ipmitool sensor` has no sensor type column: the unit is the
            // best description there is (`discrete`, `percent`, …).
            type_label: if other.is_empty() {
                "unknown".to_owned()
            } else {
                other.to_owned()
            },
            generic: true,
        },
    }
}

/// Writes one value, state and threshold set per sensor row.
///
/// `id` is the sensor number from `sdr elist`, matched by name and
/// occurrence (names repeat on some boards); where the SDR listing is
/// missing it falls back to the row's 1-based position, so two sensors
/// with one name still get distinct series.
pub fn write_sensors(out: &mut Snapshot, rows: &[SensorRow], numbers: &[(String, u8)]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (position, row) in rows.iter().enumerate() {
        let occurrence = seen.entry(row.name.as_str()).or_default();
        let id = numbers
            .iter()
            .filter(|(name, _)| *name == row.name)
            .nth(*occurrence)
            .map_or_else(|| (position + 1).to_string(), |(_, n)| n.to_string());
        *occurrence += 1;

        let kind = classify(row);
        let mut labels: SampleLabels = vec![("id", id), ("name", row.name.clone())];
        let typed_labels = {
            let mut l = labels.clone();
            l.push(("type", kind.type_label.clone()));
            l
        };
        if kind.generic {
            labels = typed_labels.clone();
        }
        // A `na` reading has no value series, only an unknown state.
        if let Some(value) = row.value {
            out.gauge(
                kind.value_name,
                kind.value_help,
                labels.clone(),
                value / kind.divisor,
            );
        }
        out.gauge(kind.state_name, kind.state_help, labels, row.state());
        for (threshold, limit) in THRESHOLDS.iter().zip(row.thresholds) {
            let Some(limit) = limit else { continue };
            let mut labels = typed_labels.clone();
            labels.push(("threshold", (*threshold).to_owned()));
            out.gauge(
                "dcmon_ipmi_sensor_threshold",
                "Sensor threshold configured in the BMC, in the unit of the sensor's reading.",
                labels,
                limit / kind.divisor,
            );
        }
    }
}

impl Collector for IpmiCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        // A TTL renewal always has a result: the first scrape waits for it.
        let Some(readings) = self.readings.latest() else {
            return Err(CollectError::NoData("no BMC reading yet".into()));
        };
        let refresh = readings.value;
        out.absorb(refresh.snapshot);
        match refresh.outcome {
            Ok(()) => Ok(()),
            Err(Failure::Absent(why)) => {
                self.absence.note(
                    NAME,
                    &why,
                    "no BMC readable; the ipmi collector will report success 0",
                );
                Err(CollectError::NoData(why))
            }
            Err(Failure::Broken(why)) => Err(CollectError::parse(&self.program, why)),
        }
    }
}
