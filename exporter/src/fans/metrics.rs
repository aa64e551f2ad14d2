//! Fan state as metrics (dcmon's own names, listed in `docs/metrics.md`), so
//! dashboards show the mode and duties and alerts see a long manual override
//! or a guard trip.

use super::control::FanGauges;
use super::governor::PolicyGauges;
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
            "Fans spinning within 1.5x of their lower-critical threshold while dcmon holds the fans (a manual duty or a fan policy).",
            vec![],
            self.fans_near_lower_critical as f64,
        );
        out.counter(
            "dcmon_fan_mode_reasserts_total",
            "Times the BMC was found out of full mode while dcmon held the fans (a manual duty or a fan policy) and full mode was re-asserted.",
            vec![],
            self.reasserts as f64,
        );
        if let Some(policy) = &self.policy {
            policy.write_to(out);
        }
    }
}

impl PolicyGauges {
    /// The fan policy's families: one series per zone for each decision.
    pub fn write_to(&self, out: &mut Snapshot) {
        out.gauge(
            "dcmon_fan_policy_info",
            "The fan policy in force: its version label and content hash.",
            vec![
                ("version", self.version.clone()),
                ("hash", self.hash.clone()),
            ],
            1.0,
        );
        for (zone, gauges) in &self.zones {
            let z = || vec![("zone", zone.to_string())];
            if let Some(target) = gauges.target {
                out.gauge(
                    "dcmon_fan_policy_target_duty_ratio",
                    "Duty the fan policy decided for the zone (0-1).",
                    z(),
                    f64::from(target) / 100.0,
                );
            }
            if let Some(applied) = gauges.applied {
                out.gauge(
                    "dcmon_fan_policy_applied_duty_ratio",
                    "Duty the BMC read back after the fan policy set it (0-1).",
                    z(),
                    f64::from(applied) / 100.0,
                );
            }
            if let Some((source, celsius)) = &gauges.winner {
                out.gauge(
                    "dcmon_fan_policy_winning_temperature_celsius",
                    "Temperature of the source whose curve decided the zone's duty.",
                    vec![("zone", zone.to_string()), ("source", source.clone())],
                    *celsius,
                );
            }
            let (reason, active) = match &gauges.failsafe {
                Some((kind, _)) => (*kind, 1.0),
                None => ("none", 0.0),
            };
            out.gauge(
                "dcmon_fan_policy_failsafe",
                "1 while the zone runs at 100 % because a source is stale, missing or failing, the thermal guard tripped or the BMC failed (reason label).",
                vec![("zone", zone.to_string()), ("reason", reason.to_owned())],
                active,
            );
            out.counter(
                "dcmon_fan_policy_reverts_total",
                "Times the BMC left full mode or changed the zone's duty under the fan policy (each was re-asserted).",
                z(),
                gauges.reverts as f64,
            );
        }
    }
}
