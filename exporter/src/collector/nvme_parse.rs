//! Pure parsers for nvme-cli's JSON: `nvme list -o json` (the flat 1.x–2.10
//! form and the nested 2.11+ form) and `nvme smart-log <dev> -o json`.
//!
//! Key names and value types drift between nvme-cli versions (see
//! `tests/fixtures/nvme/README.md`): counters are JSON numbers, strings of
//! digits, strings with a locale's thousands separators (2.3) or strings
//! with six decimals (2.1), and `critical_warning` is an integer or an
//! object. Every field is therefore read through [`number`].

use serde_json::Value;

/// One NVMe namespace from `nvme list`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Namespace {
    /// Kernel name, `nvme0n1`.
    pub device: String,
    /// `ModelNumber`.
    pub model: String,
    /// `SerialNumber`.
    pub serial: String,
    /// `Firmware`.
    pub firmware: String,
    /// `PhysicalSize`, bytes.
    pub physical_size: Option<f64>,
    /// `UsedBytes`.
    pub used_bytes: Option<f64>,
}

/// A JSON value as a number: numbers as they are; strings with
/// thousands separators removed (`"9,898,518"`), and a 2.1-style decimal
/// tail accepted (`"9898518.000000"`, or `"9898518,000000"` from a
/// comma-decimal locale).
pub fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number_text(s),
        // nvme-cli 2.11/2.12 wrap critical_warning in an object.
        Value::Object(map) => map.get("value").and_then(number),
        _ => None,
    }
}

fn parse_number_text(text: &str) -> Option<f64> {
    let text = text.trim();
    // `%Lf` under a comma-decimal locale: exactly one comma, six digits after.
    let text = match text.split_once(',') {
        Some((int, frac))
            if !frac.contains(',')
                && frac.len() == 6
                && frac.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{int}.{frac}")
        }
        _ => text.replace([',', '\'', ' ', '\u{a0}'], ""),
    };
    text.parse().ok().filter(|v: &f64| v.is_finite())
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Parses `nvme list -o json`, flat or nested.
pub fn parse_list(json: &str) -> Result<Vec<Namespace>, String> {
    let root: Value = serde_json::from_str(json).map_err(|e| format!("nvme list: {e}"))?;
    let devices = root
        .get("Devices")
        .and_then(Value::as_array)
        .ok_or("nvme list: no Devices array")?;
    let mut namespaces = Vec::new();
    for device in devices {
        if let Some(subsystems) = device.get("Subsystems").and_then(Value::as_array) {
            // 2.11+: HostNQN → Subsystems → Controllers → Namespaces.
            for controller in subsystems
                .iter()
                .filter_map(|s| s.get("Controllers")?.as_array())
                .flatten()
            {
                for ns in controller
                    .get("Namespaces")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    namespaces.push(Namespace {
                        device: text(ns.get("NameSpace")),
                        model: text(controller.get("ModelNumber")),
                        serial: text(controller.get("SerialNumber")),
                        firmware: text(controller.get("Firmware")),
                        physical_size: ns.get("PhysicalSize").and_then(number),
                        used_bytes: ns.get("UsedBytes").and_then(number),
                    });
                }
            }
        } else {
            let path = text(device.get("DevicePath"));
            namespaces.push(Namespace {
                device: path.trim_start_matches("/dev/").to_owned(),
                model: text(device.get("ModelNumber")),
                serial: text(device.get("SerialNumber")),
                firmware: text(device.get("Firmware")),
                physical_size: device.get("PhysicalSize").and_then(number),
                used_bytes: device.get("UsedBytes").and_then(number),
            });
        }
    }
    namespaces.retain(|ns| !ns.device.is_empty());
    Ok(namespaces)
}

/// The SMART / health log fields that are exported, in nvme-cli's units.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SmartLog {
    /// Raw `critical_warning` bit field.
    pub critical_warning: Option<f64>,
    /// Composite temperature, Kelvin.
    pub temperature_kelvin: Option<f64>,
    /// `avail_spare`, percent.
    pub avail_spare: Option<f64>,
    /// `spare_thresh`, percent.
    pub spare_thresh: Option<f64>,
    /// `percent_used`, percent.
    pub percent_used: Option<f64>,
    /// The 128-bit counters by nvme-cli key (`data_units_read`, …).
    pub counters: Vec<(&'static str, f64)>,
}

/// The counter keys read from the smart log.
pub const COUNTER_KEYS: [&str; 10] = [
    "data_units_read",
    "data_units_written",
    "host_read_commands",
    "host_write_commands",
    "controller_busy_time",
    "power_cycles",
    "power_on_hours",
    "unsafe_shutdowns",
    "media_errors",
    "num_err_log_entries",
];

/// Parses `nvme smart-log <dev> -o json`.
pub fn parse_smart_log(json: &str) -> Result<SmartLog, String> {
    let root: Value = serde_json::from_str(json).map_err(|e| format!("smart-log: {e}"))?;
    let Value::Object(map) = &root else {
        return Err("smart-log: not a JSON object".into());
    };
    let get = |key: &str| map.get(key).and_then(number);
    let log = SmartLog {
        critical_warning: get("critical_warning"),
        temperature_kelvin: get("temperature"),
        avail_spare: get("avail_spare"),
        spare_thresh: get("spare_thresh"),
        percent_used: get("percent_used"),
        counters: COUNTER_KEYS
            .iter()
            .filter_map(|key| Some((*key, get(key)?)))
            .collect(),
    };
    if log.temperature_kelvin.is_none() && log.counters.is_empty() {
        return Err("smart-log: none of the expected fields".into());
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_every_nvme_cli_spelling() {
        let n = |s: &str| number(&serde_json::from_str(s).unwrap());
        assert_eq!(n("9898518"), Some(9898518.0));
        assert_eq!(n("9898518.0"), Some(9898518.0));
        assert_eq!(n("\"9898518\""), Some(9898518.0));
        assert_eq!(n("\"9,898,518\""), Some(9898518.0));
        assert_eq!(n("\"9898518.000000\""), Some(9898518.0));
        assert_eq!(n("\"9898518,000000\""), Some(9898518.0));
        assert_eq!(n("{\"value\": 16, \"ro\": 0}"), Some(16.0));
        assert_eq!(n("\"n/a\""), None);
        assert_eq!(n("null"), None);
    }

    #[test]
    fn smart_log_without_known_fields_is_an_error() {
        assert!(parse_smart_log("{\"foo\": 1}").is_err());
        assert!(parse_smart_log("[]").is_err());
        assert!(parse_smart_log("not json").is_err());
    }

    #[test]
    fn list_with_the_old_typo_key() {
        // nvme-cli 1.5–1.6 spelled MaximumLBA `MaximiumLBA`; it is not read,
        // so its spelling must not matter.
        let list = parse_list(
            r#"{"Devices":[{"DevicePath":"/dev/nvme0n1","ModelNumber":"M","SerialNumber":"S","Firmware":"F","MaximiumLBA":1,"PhysicalSize":512,"UsedBytes":256}]}"#,
        )
        .unwrap();
        assert_eq!(list[0].device, "nvme0n1");
        assert_eq!(list[0].physical_size, Some(512.0));
    }
}
