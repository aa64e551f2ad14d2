//! What fan control reads from `ipmitool sensor` (parsed by the ipmi
//! collector's parser): temperatures with their critical thresholds, for
//! the thermal guard, and fan speeds with theirs, for `get_status` and the
//! near-lower-critical warning.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::collector::ipmi_parse::SensorRow;

/// Threshold columns: lower critical, lower non-critical, upper critical,
/// upper non-recoverable (positions in [`SensorRow::thresholds`]).
const LCR: usize = 1;
const LNC: usize = 2;
const UCR: usize = 4;
const UNR: usize = 5;

/// A fan at or below this multiple of its lower-critical threshold is
/// "near" it: a little slower and the BMC spins its whole zone to 100 %.
pub const NEAR_LOWER_CRITICAL: f64 = 1.5;

/// A temperature with its critical threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Temperature {
    /// Sensor name.
    pub name: String,
    /// Reading, °C.
    pub celsius: f64,
    /// Upper critical threshold (upper non-recoverable where no critical is set), °C.
    pub critical: f64,
}

/// Temperatures other collectors leave for the thermal guard (the GPUs').
pub type SharedTemperatures = Arc<Mutex<Vec<Temperature>>>;

/// A fan tachometer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanSensor {
    /// Sensor name.
    pub name: String,
    /// Reading, RPM (`None`: no reading, e.g. no fan on the header).
    pub rpm: Option<f64>,
    /// Lower critical threshold, RPM.
    pub lower_critical: Option<f64>,
    /// Lower non-critical threshold, RPM.
    pub lower_non_critical: Option<f64>,
}

impl FanSensor {
    /// Whether it spins but close to its lower-critical threshold.
    pub fn near_lower_critical(&self) -> bool {
        match (self.rpm, self.lower_critical) {
            (Some(rpm), Some(lcr)) => rpm > 0.0 && rpm <= lcr * NEAR_LOWER_CRITICAL,
            _ => false,
        }
    }
}

/// Temperatures that have a reading and a critical threshold.
pub fn temperatures(rows: &[SensorRow]) -> Vec<Temperature> {
    rows.iter()
        .filter(|r| r.unit == "degrees C")
        .filter_map(|r| {
            Some(Temperature {
                name: r.name.clone(),
                celsius: r.value?,
                critical: r.thresholds[UCR].or(r.thresholds[UNR])?,
            })
        })
        .collect()
}

/// Fan tachometers (RPM sensors), read or not.
pub fn fans(rows: &[SensorRow]) -> Vec<FanSensor> {
    rows.iter()
        .filter(|r| {
            r.unit == "RPM" || (r.value.is_none() && r.name.to_ascii_uppercase().starts_with("FAN"))
        })
        .map(|r| FanSensor {
            name: r.name.clone(),
            rpm: r.value,
            lower_critical: r.thresholds[LCR],
            lower_non_critical: r.thresholds[LNC],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::ipmi_parse::parse_sensor;

    const SUPERMICRO: &str =
        include_str!("../../tests/fixtures/ipmitool/sensor_supermicro-x9-x10-gpu-board.txt");

    #[test]
    fn reads_temperatures_and_fans_from_a_supermicro_capture() {
        let rows = parse_sensor(SUPERMICRO).unwrap();
        let temps = temperatures(&rows);
        let cpu = temps.iter().find(|t| t.name == "CPU1 Temp").unwrap();
        assert_eq!((cpu.celsius, cpu.critical), (33.0, 82.0));
        assert!(
            temps.iter().all(|t| t.name != "GPU1 Temp"),
            "na readings are skipped"
        );
        let fans = fans(&rows);
        let fan2 = fans.iter().find(|f| f.name == "FAN2").unwrap();
        assert_eq!(fan2.rpm, Some(3000.0));
        assert_eq!(fan2.lower_critical, Some(450.0));
        assert!(!fan2.near_lower_critical());
        let fan1 = fans.iter().find(|f| f.name == "FAN1").unwrap();
        assert_eq!(fan1.rpm, None, "FAN1 reads na in this capture");
    }

    #[test]
    fn near_lower_critical_means_spinning_within_half_again_of_it() {
        let fan = |rpm| FanSensor {
            name: "FANA".into(),
            rpm,
            lower_critical: Some(450.0),
            lower_non_critical: Some(600.0),
        };
        assert!(fan(Some(675.0)).near_lower_critical());
        assert!(!fan(Some(676.0)).near_lower_critical());
        assert!(
            !fan(Some(0.0)).near_lower_critical(),
            "stopped is an alarm of its own"
        );
        assert!(!fan(None).near_lower_critical());
    }
}
