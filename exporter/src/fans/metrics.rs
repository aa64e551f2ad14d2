//! Fan state as metrics (names from METRICS.md), so dashboards show the
//! mode and duties and alerts see a long manual override or a guard trip.

use super::control::FanGauges;
use crate::snapshot::Snapshot;

impl FanGauges {
    /// Appends the fan families to `out`.
    pub fn write_to(&self, out: &mut Snapshot) {
        if let Some(mode) = self.mode {
            out.gauge(
                "dcmon_fan_mode",
                "BMC fan mode: 0 standard, 1 full, 2 optimal, 3 pue, 4 heavy_io.",
                vec![],
                f64::from(mode.code()),
            );
        }
        for (zone, duty) in &self.duties {
            out.gauge(
                "dcmon_fan_zone_duty_ratio",
                "Fan zone duty as last read from the BMC (0-1).",
                vec![("zone", zone.to_string())],
                f64::from(*duty) / 100.0,
            );
        }
        out.gauge(
            "dcmon_fan_manual_override",
            "1 while dcmon holds a manual fan duty.",
            vec![],
            if self.manual_override { 1.0 } else { 0.0 },
        );
        out.counter(
            "dcmon_fan_thermal_guard_trips_total",
            "Times the thermal guard set full speed because a temperature reached its critical threshold.",
            vec![],
            self.thermal_guard_trips as f64,
        );
        out.gauge(
            "dcmon_fan_near_lower_critical",
            "Fans spinning within 1.5x of their lower-critical threshold while dcmon holds a manual duty.",
            vec![],
            self.fans_near_lower_critical as f64,
        );
        out.counter(
            "dcmon_fan_mode_reasserts_total",
            "Times the BMC was found out of full mode during a manual duty and full mode was re-asserted.",
            vec![],
            self.reasserts as f64,
        );
    }
}
