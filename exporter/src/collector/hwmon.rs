//! `hwmon`: temperatures, fan speeds, voltages and alarms from
//! `/sys/class/hwmon/hwmon<N>/`, with node_exporter's chip names
//! (`platform_coretemp_0`), `chip`/`sensor` labels, metric names and units.
//! Also `node_hwmon_chip_names` and `node_hwmon_sensor_label`.
//!
//! Sensor types handled: temp (°C), in (V), fan (RPM), intrusion and freq.
//! curr, power, energy, humidity and pwm files are not exported yet.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{CollectError, Collector};
use crate::config::{Config, DeviceFilter};
use crate::roots::{Roots, list_dir};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "hwmon";

/// The `hwmon` collector.
#[derive(Debug)]
pub struct HwmonCollector {
    roots: Roots,
    chips: DeviceFilter,
}

/// Builds the collector.
pub fn new(config: &Config) -> HwmonCollector {
    HwmonCollector {
        roots: config.roots.clone(),
        chips: config.hwmon_chips.clone(),
    }
}

/// Lower-cases and replaces everything outside `[a-z0-9:_]` with `_`,
/// trimming underscores: `coretemp.0` → `coretemp_0`.
pub fn clean_name(raw: &str) -> String {
    let lowered: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    lowered.trim_matches('_').to_owned()
}

/// Splits a sensor file name: `temp1_crit_alarm` → (`temp`, `1`, `crit_alarm`).
pub fn split_sensor_file(file: &str) -> Option<(&str, &str, &str)> {
    let type_end = file.find(|c: char| c.is_ascii_digit())?;
    let (kind, rest) = file.split_at(type_end);
    let id_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (id, property) = rest.split_at(id_end);
    let property = match property {
        "" => "",
        p => p.strip_prefix('_')?,
    };
    (!kind.is_empty()).then_some((kind, id, property))
}

const TYPES: [&str; 5] = ["temp", "in", "fan", "intrusion", "freq"];

/// `sensor → property → raw text` for every sensor file of a chip directory
/// and its `device/` subdirectory (older drivers put the files there).
fn read_sensors(dir: &Path) -> Result<BTreeMap<String, HashMap<String, String>>, CollectError> {
    let mut sensors: BTreeMap<String, HashMap<String, String>> = BTreeMap::new();
    for base in [dir.to_path_buf(), dir.join("device")] {
        for file in list_dir(&base)? {
            let Some((kind, id, property)) = split_sensor_file(&file) else {
                continue;
            };
            if !TYPES.contains(&kind) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(base.join(&file)) else {
                continue;
            };
            sensors
                .entry(format!("{kind}{id}"))
                .or_default()
                .insert(property.to_owned(), text.trim().to_owned());
        }
    }
    Ok(sensors)
}

impl HwmonCollector {
    /// node_exporter's chip name: `<bus>_<device>` from the `device` link
    /// (suffixed with the `name` attribute when several chips share a
    /// device), else the cleaned `name`, else the `hwmonN` directory name.
    fn chip_name(&self, dir: &Path, shared_devices: &HashMap<PathBuf, usize>) -> String {
        let name = std::fs::read_to_string(dir.join("name"))
            .ok()
            .map(|n| clean_name(&n));
        if let Ok(device) = std::fs::canonicalize(dir.join("device")) {
            let dev_name = device
                .file_name()
                .map(|n| clean_name(&n.to_string_lossy()))
                .unwrap_or_default();
            let dev_type = device
                .parent()
                .and_then(Path::file_name)
                .map(|n| clean_name(&n.to_string_lossy()))
                .unwrap_or_default();
            let mut chip = match (dev_type.is_empty(), dev_name.is_empty()) {
                (false, false) => format!("{dev_type}_{dev_name}"),
                (true, false) => dev_name,
                _ => String::new(),
            };
            if !chip.is_empty() {
                if shared_devices.get(&device).copied().unwrap_or(0) > 1
                    && let Some(name) = name.as_ref().filter(|n| !n.is_empty())
                {
                    chip = format!("{chip}_{name}");
                }
                return chip;
            }
        }
        match name {
            Some(name) if !name.is_empty() => name,
            _ => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    fn emit_chip(&self, out: &mut Snapshot, dir: &Path, chip: &str) -> Result<(), CollectError> {
        if let Ok(raw) = std::fs::read_to_string(dir.join("name")) {
            out.gauge(
                "node_hwmon_chip_names",
                "Annotation metric for human-readable chip names",
                vec![("chip", chip.to_owned()), ("chip_name", clean_name(&raw))],
                1.0,
            );
        }
        for (sensor, properties) in read_sensors(dir)? {
            let kind = &sensor[..sensor
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(sensor.len())];
            let label = properties.get("label");
            if let Some(label) = label {
                out.gauge(
                    "node_hwmon_sensor_label",
                    "Label for given chip and sensor",
                    vec![
                        ("chip", chip.to_owned()),
                        ("label", label.clone()),
                        ("sensor", sensor.clone()),
                    ],
                    1.0,
                );
            }
            for (property, text) in &properties {
                if property == "label" {
                    continue;
                }
                let Ok(raw) = text.parse::<f64>() else {
                    continue;
                };
                let Some((name, help, value)) =
                    describe(kind, property, properties.contains_key(""), raw)
                else {
                    continue;
                };
                // freq sensors are keyed by their label (`sclk`), as node_exporter does.
                let sensor_label = match (kind, label) {
                    ("freq", Some(l)) => l.clone(),
                    _ => sensor.clone(),
                };
                out.gauge(
                    name,
                    help,
                    vec![("chip", chip.to_owned()), ("sensor", sensor_label)],
                    value,
                );
            }
        }
        Ok(())
    }
}

/// Metric name, help and scaled value for one sensor property, or `None`
/// for properties that are not exported.
fn describe(kind: &str, property: &str, has_bare: bool, raw: f64) -> Option<(String, String, f64)> {
    let base = format!("node_hwmon_{kind}");
    // A bare `fan1` file and `fan1_input` both exist on some drivers: keep both apart.
    let element = match property {
        "" => "input",
        "input" if has_bare => "input_input",
        other => other,
    };
    if element == "alarm" || element == "fault" {
        return Some((
            format!("{base}_{element}"),
            format!("Hardware sensor {element} status ({kind})"),
            raw,
        ));
    }
    if element == "beep" {
        return Some((
            format!("{base}_beep_enabled"),
            "Hardware monitor sensor has beeping enabled".into(),
            raw,
        ));
    }
    let suffix = |unit: &str| match element {
        "input" => format!("{base}_{unit}"),
        e => format!("{base}_{e}_{unit}"),
    };
    match kind {
        "temp" if element != "type" => Some((
            suffix("celsius"),
            format!("Hardware monitor for temperature ({element})"),
            raw * 0.001,
        )),
        "in" => Some((
            suffix("volts"),
            format!("Hardware monitor for voltage ({element})"),
            raw * 0.001,
        )),
        "fan" if matches!(element, "input" | "min" | "max" | "target") => Some((
            suffix("rpm"),
            format!("Hardware monitor for fan revolutions per minute ({element})"),
            raw,
        )),
        "fan" => Some((
            format!("{base}_{element}"),
            format!("Hardware monitor fan element {element}"),
            raw,
        )),
        "freq" if element == "input" => Some((
            "node_hwmon_freq_freq_mhz".into(),
            "Hardware monitor for GPU frequency in MHz".into(),
            raw / 1e6,
        )),
        _ => None,
    }
}

impl Collector for HwmonCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let class = self.roots.sys("class/hwmon");
        let dirs: Vec<PathBuf> = list_dir(&class)?
            .into_iter()
            .map(|n| class.join(n))
            .collect();
        let mut shared_devices: HashMap<PathBuf, usize> = HashMap::new();
        for dir in &dirs {
            if let Ok(device) = std::fs::canonicalize(dir.join("device")) {
                *shared_devices.entry(device).or_default() += 1;
            }
        }
        for dir in &dirs {
            let chip = self.chip_name(dir, &shared_devices);
            if self.chips.ignored(&chip) {
                continue;
            }
            self.emit_chip(out, dir, &chip)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sensor_files() {
        assert_eq!(
            split_sensor_file("temp1_crit_alarm"),
            Some(("temp", "1", "crit_alarm"))
        );
        assert_eq!(split_sensor_file("fan2_input"), Some(("fan", "2", "input")));
        assert_eq!(
            split_sensor_file("intrusion0_alarm"),
            Some(("intrusion", "0", "alarm"))
        );
        assert_eq!(split_sensor_file("name"), None);
    }

    #[test]
    fn cleans_chip_names() {
        assert_eq!(clean_name("coretemp.0"), "coretemp_0");
        assert_eq!(clean_name("asus-nb-wmi\n"), "asus_nb_wmi");
    }
}
