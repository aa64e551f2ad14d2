//! The fan policy document: per zone, the temperature sources that drive
//! it (each with a curve), and the rules that keep the zone calm and safe
//! (deadband, hold time, largest step, floor and ceiling). TOML, parsed
//! with serde so an unknown key is refused, then validated so every error
//! names the field it is about (`zone[0].source[1].curve[2]`).
//!
//! Shared by both programs: the receiver checks a policy before it queues
//! a `config_update`, the host checks it again before it applies it. This
//! module is pure: it parses, checks and interpolates; the exporter's
//! `fans` module reads the sources, decides duties over time and talks to
//! the BMC.

use std::fmt::Write as _;

use crate::commands::{FanMode, ZONES};
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest a source may go without a fresh reading before its zone fails
/// safe, seconds (an hour: longer is no longer "watching").
pub const MAX_TIMEOUT_S: u32 = 3_600;
/// Longest hold time before lowering, seconds.
pub const MAX_HOLD_S: u32 = 3_600;
/// Widest deadband, °C.
pub const MAX_DEADBAND_C: f64 = 20.0;
/// Temperatures a curve may name, °C.
pub const CURVE_RANGE_C: std::ops::RangeInclusive<f64> = 0.0..=150.0;

/// Why a policy document is refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// Not TOML, or a key/type the schema does not have.
    #[error("fan policy: {0}")]
    Syntax(String),
    /// A value outside its allowed range or shape.
    #[error("fan policy: {field}: {message}")]
    Invalid {
        /// Path of the field, e.g. `zone[0].source[1].curve`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// A fan policy, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanPolicyDoc {
    /// A label for this revision (letters, digits, `.`, `_`, `-`; up to 64).
    pub version: String,
    /// The BMC mode to hand the fans back to when the policy stops (the
    /// exporter exits or the policy is removed); the host's
    /// `--fans.default-mode` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<FanMode>,
    /// One entry per zone the policy drives; other zones stay as they are.
    #[serde(rename = "zone")]
    pub zones: Vec<ZonePolicy>,
}

/// How one zone is driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonePolicy {
    /// Zone number (0: CPU/system, 1: peripheral).
    pub id: u8,
    /// Lowest duty, percent (never below the host's `--fans.min-duty`).
    #[serde(default = "default_floor")]
    pub floor: u8,
    /// Highest duty outside failsafe, percent.
    #[serde(default = "default_ceiling")]
    pub ceiling: u8,
    /// Hysteresis, °C: the duty is lowered only once the temperature has
    /// fallen this far below the point that asks for the current duty.
    #[serde(default = "default_deadband")]
    pub deadband_c: f64,
    /// Minimum time after a change before the duty may be lowered, seconds.
    #[serde(default = "default_hold")]
    pub hold_s: u32,
    /// Largest change per control interval, percent (failsafe ignores it).
    #[serde(default = "default_step")]
    pub max_step: u8,
    /// The temperatures that drive the zone; the highest demand wins.
    #[serde(rename = "source")]
    pub sources: Vec<SourcePolicy>,
}

fn default_floor() -> u8 {
    30
}
fn default_ceiling() -> u8 {
    100
}
fn default_deadband() -> f64 {
    3.0
}
fn default_hold() -> u32 {
    30
}
fn default_step() -> u8 {
    10
}
fn default_timeout() -> u32 {
    30
}

/// What a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// NVML GPU core temperature (the hottest of the selected GPUs).
    Gpu,
    /// NVML HBM temperature, on GPUs that report one.
    GpuMemory,
    /// A BMC temperature sensor (`ipmitool sensor`) by name or regex.
    Ipmi,
    /// A hwmon temperature under sysfs, by chip and sensor label regex.
    Hwmon,
    /// NVMe drive temperatures, as the kernel's `nvme` hwmon chips report them.
    Nvme,
}

impl SourceKind {
    /// The name used in the document and in metric labels.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Gpu => "gpu",
            SourceKind::GpuMemory => "gpu_memory",
            SourceKind::Ipmi => "ipmi",
            SourceKind::Hwmon => "hwmon",
            SourceKind::Nvme => "nvme",
        }
    }
}

/// One temperature source of a zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePolicy {
    /// What it reads.
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// `gpu`/`gpu_memory`: NVML indices to watch; all GPUs when absent.
    /// A listed GPU that disappears is a missing source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Vec<u32>>,
    /// `ipmi`: the exact sensor name (e.g. `CPU1 Temp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    /// `ipmi`/`hwmon`: sensor names (ipmi) or `chip/label` (hwmon, e.g.
    /// `k10temp/Tctl`) matching this regex; the hottest counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_regex: Option<String>,
    /// Seconds without a fresh reading before the zone fails safe.
    #[serde(default = "default_timeout")]
    pub timeout_s: u32,
    /// `[temperature °C, duty %]` points, temperatures rising; linear
    /// between points, flat beyond the ends.
    pub curve: Vec<[f64; 2]>,
}

impl SourcePolicy {
    /// A short label for metrics and logs: `gpu`, `ipmi:CPU1 Temp`, `hwmon:~k10temp/.*`.
    pub fn label(&self) -> String {
        let mut label = self.kind.name().to_owned();
        if let Some(gpus) = &self.gpus {
            let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
            let _ = write!(label, ":{}", list.join(","));
        }
        if let Some(sensor) = &self.sensor {
            let _ = write!(label, ":{sensor}");
        }
        if let Some(regex) = &self.sensor_regex {
            let _ = write!(label, ":~{regex}");
        }
        label
    }

    /// The duty the curve asks for at `celsius`.
    pub fn duty_at(&self, celsius: f64) -> f64 {
        interpolate(&self.curve, celsius)
    }
}

/// Linear interpolation over `points` (validated: non-empty, rising).
pub fn interpolate(points: &[[f64; 2]], celsius: f64) -> f64 {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return 100.0;
    };
    if celsius.is_nan() {
        return 100.0;
    }
    if celsius <= first[0] {
        return first[1];
    }
    if celsius >= last[0] {
        return last[1];
    }
    for pair in points.windows(2) {
        let ([t0, d0], [t1, d1]) = (pair[0], pair[1]);
        if celsius <= t1 {
            return d0 + (d1 - d0) * (celsius - t0) / (t1 - t0);
        }
    }
    last[1]
}

/// A validated policy, with its compiled regexes and its content hash.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The document.
    pub doc: FanPolicyDoc,
    /// SHA-256 of the canonical TOML, first 16 hex digits.
    pub hash: String,
    /// `sensor_regex` compiled, by (zone index, source index).
    pub regexes: Vec<Vec<Option<Regex>>>,
}

impl Policy {
    /// Parses and validates a TOML document against the host's duty floor.
    pub fn parse(text: &str, host_min_duty: u8) -> Result<Policy, PolicyError> {
        let doc: FanPolicyDoc =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string().trim().into()))?;
        Policy::new(doc, host_min_duty)
    }

    /// Validates a parsed document against the host's duty floor.
    pub fn new(doc: FanPolicyDoc, host_min_duty: u8) -> Result<Policy, PolicyError> {
        let regexes = doc.validate(host_min_duty)?;
        let hash = doc.hash();
        Ok(Policy { doc, hash, regexes })
    }
}

impl FanPolicyDoc {
    /// The canonical TOML of this document.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a policy always serializes")
    }

    /// SHA-256 of the canonical TOML, first 16 hex digits.
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.to_toml().as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks every value the types cannot; errors name the field. Returns
    /// the compiled regexes.
    pub fn validate(&self, host_min_duty: u8) -> Result<Vec<Vec<Option<Regex>>>, PolicyError> {
        check_version("version", &self.version)?;
        if self.default_mode == Some(FanMode::Pue) {
            return Err(invalid(
                "default_mode",
                "pue cannot be set; use standard, full, optimal or heavy_io",
            ));
        }
        if self.zones.is_empty() {
            return Err(invalid("zone", "at least one zone is required"));
        }
        let mut regexes = Vec::new();
        for (zi, zone) in self.zones.iter().enumerate() {
            let at = |field: &str| format!("zone[{zi}].{field}");
            if !ZONES.contains(&zone.id) {
                return Err(invalid(
                    at("id"),
                    format!("zone {} does not exist (zones: 0, 1)", zone.id),
                ));
            }
            if self.zones[..zi].iter().any(|z| z.id == zone.id) {
                return Err(invalid(at("id"), format!("zone {} appears twice", zone.id)));
            }
            if zone.floor < host_min_duty || zone.floor > 100 {
                return Err(invalid(
                    at("floor"),
                    format!(
                        "{}% is outside the allowed {host_min_duty}..=100% (the duty floor in force)",
                        zone.floor
                    ),
                ));
            }
            if zone.ceiling < zone.floor || zone.ceiling > 100 {
                return Err(invalid(
                    at("ceiling"),
                    format!(
                        "{}% must be between the floor ({}%) and 100%",
                        zone.ceiling, zone.floor
                    ),
                ));
            }
            if !(0.0..=MAX_DEADBAND_C).contains(&zone.deadband_c) {
                return Err(invalid(
                    at("deadband_c"),
                    format!("{} must be 0..={MAX_DEADBAND_C} °C", zone.deadband_c),
                ));
            }
            if zone.hold_s > MAX_HOLD_S {
                return Err(invalid(
                    at("hold_s"),
                    format!("{} must be 0..={MAX_HOLD_S} s", zone.hold_s),
                ));
            }
            if zone.max_step == 0 || zone.max_step > 100 {
                return Err(invalid(
                    at("max_step"),
                    format!("{} must be 1..=100 %", zone.max_step),
                ));
            }
            if zone.sources.is_empty() {
                return Err(invalid(at("source"), "at least one source is required"));
            }
            let mut compiled = Vec::new();
            for (si, source) in zone.sources.iter().enumerate() {
                compiled.push(source.validate(&format!("zone[{zi}].source[{si}]"))?);
            }
            regexes.push(compiled);
        }
        Ok(regexes)
    }
}

fn check_version(field: &str, version: &str) -> Result<(), PolicyError> {
    if crate::commands::valid_version(version) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{version:?} must be 1-64 letters, digits, '.', '_' or '-'"),
        ))
    }
}

impl SourcePolicy {
    fn validate(&self, at: &str) -> Result<Option<Regex>, PolicyError> {
        let field = |name: &str| format!("{at}.{name}");
        let gpu = matches!(self.kind, SourceKind::Gpu | SourceKind::GpuMemory);
        if self.gpus.is_some() && !gpu {
            return Err(invalid(
                field("gpus"),
                "only gpu and gpu_memory sources select GPUs",
            ));
        }
        if self.gpus.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid(
                field("gpus"),
                "an empty list selects nothing; leave it out for every GPU",
            ));
        }
        match (self.kind, &self.sensor, &self.sensor_regex) {
            (SourceKind::Ipmi, None, None) => {
                return Err(invalid(
                    field("sensor"),
                    "an ipmi source needs sensor or sensor_regex",
                ));
            }
            (SourceKind::Ipmi, Some(_), Some(_)) => {
                return Err(invalid(
                    field("sensor_regex"),
                    "give sensor or sensor_regex, not both",
                ));
            }
            (SourceKind::Hwmon, _, None) => {
                return Err(invalid(
                    field("sensor_regex"),
                    "a hwmon source needs sensor_regex (matched against chip/label)",
                ));
            }
            (SourceKind::Ipmi, _, _) => {}
            (_, Some(_), _) => {
                return Err(invalid(field("sensor"), "only ipmi sources name a sensor"));
            }
            (SourceKind::Hwmon, None, Some(_)) => {}
            (_, None, Some(_)) => {
                return Err(invalid(
                    field("sensor_regex"),
                    "only ipmi and hwmon sources match sensors",
                ));
            }
            (_, None, None) => {}
        }
        if let Some(sensor) = &self.sensor
            && (sensor.trim().is_empty()
                || sensor.len() > 64
                || sensor.chars().any(char::is_control))
        {
            return Err(invalid(
                field("sensor"),
                "must be 1-64 printable characters",
            ));
        }
        let regex = match &self.sensor_regex {
            None => None,
            Some(text) if text.len() > 256 => {
                return Err(invalid(field("sensor_regex"), "longer than 256 characters"));
            }
            Some(text) => {
                Some(Regex::new(text).map_err(|e| invalid(field("sensor_regex"), e.to_string()))?)
            }
        };
        if self.timeout_s == 0 || self.timeout_s > MAX_TIMEOUT_S {
            return Err(invalid(
                field("timeout_s"),
                format!("{} must be 1..={MAX_TIMEOUT_S} s", self.timeout_s),
            ));
        }
        if self.curve.is_empty() {
            return Err(invalid(
                field("curve"),
                "needs at least one [temperature, duty] point",
            ));
        }
        let mut previous: Option<f64> = None;
        for (i, [celsius, duty]) in self.curve.iter().copied().enumerate() {
            let point = format!("{at}.curve[{i}]");
            if !CURVE_RANGE_C.contains(&celsius) {
                return Err(invalid(
                    point,
                    format!("temperature {celsius} °C is outside 0..=150"),
                ));
            }
            if !(0.0..=100.0).contains(&duty) {
                return Err(invalid(point, format!("duty {duty}% is outside 0..=100")));
            }
            if previous.is_some_and(|p| celsius <= p) {
                return Err(invalid(point, "temperatures must rise from point to point"));
            }
            previous = Some(celsius);
        }
        Ok(regex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = "gpu-2026-12"
default_mode = "optimal"

[[zone]]
id = 1
floor = 30
deadband_c = 3
hold_s = 20
max_step = 15

[[zone.source]]
type = "gpu"
curve = [[40, 30], [60, 50], [80, 100]]

[[zone.source]]
type = "ipmi"
sensor_regex = "^CPU\\d Temp$"
curve = [[40, 30], [85, 100]]
"#;

    #[test]
    fn a_good_policy_parses_with_its_defaults() {
        let policy = Policy::parse(GOOD, 25).unwrap();
        let zone = &policy.doc.zones[0];
        assert_eq!(
            (zone.id, zone.floor, zone.ceiling, zone.max_step),
            (1, 30, 100, 15)
        );
        assert_eq!(zone.sources[0].timeout_s, 30);
        assert_eq!(zone.sources[1].label(), "ipmi:~^CPU\\d Temp$");
        assert!(policy.regexes[0][1].as_ref().unwrap().is_match("CPU2 Temp"));
        assert_eq!(policy.hash.len(), 16);
        // The canonical form parses back to the same document and hash.
        let again = Policy::parse(&policy.doc.to_toml(), 25).unwrap();
        assert_eq!(again.doc, policy.doc);
        assert_eq!(again.hash, policy.hash);
    }

    #[test]
    fn curves_interpolate_linearly_and_are_flat_beyond_the_ends() {
        let curve = [[40.0, 30.0], [60.0, 50.0], [80.0, 100.0]];
        assert_eq!(interpolate(&curve, 20.0), 30.0);
        assert_eq!(interpolate(&curve, 50.0), 40.0);
        assert_eq!(interpolate(&curve, 70.0), 75.0);
        assert_eq!(interpolate(&curve, 95.0), 100.0);
        assert_eq!(interpolate(&curve, f64::NAN), 100.0);
    }

    #[test]
    fn every_error_names_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("floor = 30", "floor = 10", "zone[0].floor"),
            ("floor = 30", "floor = 30\nceiling = 20", "zone[0].ceiling"),
            ("id = 1", "id = 7", "zone[0].id"),
            ("max_step = 15", "max_step = 0", "zone[0].max_step"),
            ("deadband_c = 3", "deadband_c = -1", "zone[0].deadband_c"),
            ("hold_s = 20", "hold_s = 99999", "zone[0].hold_s"),
            (
                "[[40, 30], [60, 50], [80, 100]]",
                "[[40, 30], [30, 50]]",
                "zone[0].source[0].curve[1]",
            ),
            (
                "[[40, 30], [60, 50], [80, 100]]",
                "[[40, 130]]",
                "zone[0].source[0].curve[0]",
            ),
            (
                "[[40, 30], [60, 50], [80, 100]]",
                "[]",
                "zone[0].source[0].curve",
            ),
            (
                "sensor_regex = \"^CPU\\\\d Temp$\"",
                "sensor_regex = \"(\"",
                "zone[0].source[1].sensor_regex",
            ),
            (
                "sensor_regex = \"^CPU\\\\d Temp$\"",
                "",
                "zone[0].source[1].sensor",
            ),
            (
                "type = \"gpu\"",
                "type = \"gpu\"\ntimeout_s = 0",
                "zone[0].source[0].timeout_s",
            ),
            (
                "type = \"gpu\"",
                "type = \"gpu\"\nsensor = \"x\"",
                "zone[0].source[0].sensor",
            ),
            (
                "version = \"gpu-2026-12\"",
                "version = \"/etc/passwd\"",
                "version",
            ),
            (
                "default_mode = \"optimal\"",
                "default_mode = \"pue\"",
                "default_mode",
            ),
        ];
        for (from, to, field) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            match Policy::parse(&text, 25) {
                Err(PolicyError::Invalid {
                    field: got,
                    message,
                }) => {
                    assert_eq!(&got, field, "{to}: {message}")
                }
                other => panic!("{to}: expected an error on {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_keys_types_and_shapes_are_refused_naming_the_key() {
        for (bad, names) in [
            (
                GOOD.replacen("floor = 30", "floor = 30\ncommand = \"rm\"", 1),
                "command",
            ),
            (
                GOOD.replacen("type = \"gpu\"", "type = \"smart\"", 1),
                "smart",
            ),
            (GOOD.replacen("floor = 30", "floor = \"low\"", 1), "floor"),
            (
                GOOD.replacen("version", "path = \"/tmp\"\nversion", 1),
                "path",
            ),
        ] {
            let err = Policy::parse(&bad, 25).unwrap_err();
            assert!(matches!(err, PolicyError::Syntax(_)), "{err}");
            assert!(err.to_string().contains(names), "{names}: {err}");
        }
    }
}
