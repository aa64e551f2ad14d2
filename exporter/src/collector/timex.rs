//! `timex`: the kernel's NTP clock discipline (`adjtimex(2)`, read only,
//! through `dcmon-adjtimex`), as node_exporter's `node_timex_*`: whether the
//! clock is synchronised, its offset and error bounds, and the PPS state.
//! The clock alerts (clock not synchronising, clock skew) read these.

use std::path::Path;

use dcmon_adjtimex::{ClockState, STA_NANO, TIME_ERROR};

use super::{CollectError, Collector};
use crate::config::Config;
use crate::snapshot::{Kind, Snapshot};

/// Flag and label name.
pub const NAME: &str = "timex";

const MICROS: f64 = 1e6;
const NANOS: f64 = 1e9;
/// `freq`, `ppsfreq` and `stabil` are ppm with a 16-bit binary fraction.
const PPM16: f64 = 1e6 * 65536.0;

/// The `timex` collector.
#[derive(Debug)]
pub struct TimexCollector;

/// Builds the collector.
pub fn new(_config: &Config) -> TimexCollector {
    TimexCollector
}

/// node_exporter's families for one reading.
pub fn families(state: &ClockState, out: &mut Snapshot) {
    // With STA_NANO the kernel reports offset and jitter in nanoseconds.
    let fine = if state.status & STA_NANO != 0 {
        NANOS
    } else {
        MICROS
    };
    let rows: [(&str, &str, Kind, f64); 17] = [
        (
            "node_timex_sync_status",
            "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
            Kind::Gauge,
            if state.state == TIME_ERROR { 0.0 } else { 1.0 },
        ),
        (
            "node_timex_offset_seconds",
            "Time offset in between local system and reference clock.",
            Kind::Gauge,
            state.offset as f64 / fine,
        ),
        (
            "node_timex_frequency_adjustment_ratio",
            "Local clock frequency adjustment.",
            Kind::Gauge,
            1.0 + state.freq as f64 / PPM16,
        ),
        (
            "node_timex_maxerror_seconds",
            "Maximum error in seconds.",
            Kind::Gauge,
            state.maxerror as f64 / MICROS,
        ),
        (
            "node_timex_estimated_error_seconds",
            "Estimated error in seconds.",
            Kind::Gauge,
            state.esterror as f64 / MICROS,
        ),
        (
            "node_timex_status",
            "Value of the status array bits.",
            Kind::Gauge,
            f64::from(state.status),
        ),
        (
            "node_timex_loop_time_constant",
            "Phase-locked loop time constant.",
            Kind::Gauge,
            state.constant as f64,
        ),
        (
            "node_timex_tick_seconds",
            "Seconds between clock ticks.",
            Kind::Gauge,
            state.tick as f64 / MICROS,
        ),
        (
            "node_timex_pps_frequency_hertz",
            "Pulse per second frequency.",
            Kind::Gauge,
            state.ppsfreq as f64 / PPM16,
        ),
        (
            "node_timex_pps_jitter_seconds",
            "Pulse per second jitter.",
            Kind::Gauge,
            state.jitter as f64 / fine,
        ),
        (
            "node_timex_pps_shift_seconds",
            "Pulse per second interval duration.",
            Kind::Gauge,
            f64::from(state.shift),
        ),
        (
            "node_timex_pps_stability_hertz",
            "Pulse per second stability, average of recent frequency changes.",
            Kind::Gauge,
            state.stabil as f64 / PPM16,
        ),
        (
            "node_timex_pps_jitter_total",
            "Pulse per second count of jitter limit exceeded events.",
            Kind::Counter,
            state.jitcnt as f64,
        ),
        (
            "node_timex_pps_calibration_total",
            "Pulse per second count of calibration intervals.",
            Kind::Counter,
            state.calcnt as f64,
        ),
        (
            "node_timex_pps_error_total",
            "Pulse per second count of calibration errors.",
            Kind::Counter,
            state.errcnt as f64,
        ),
        (
            "node_timex_pps_stability_exceeded_total",
            "Pulse per second count of stability limit exceeded events.",
            Kind::Counter,
            state.stbcnt as f64,
        ),
        (
            "node_timex_tai_offset_seconds",
            "International Atomic Time (TAI) offset.",
            Kind::Gauge,
            f64::from(state.tai),
        ),
    ];
    for (name, help, kind, value) in rows {
        out.family(name, help, kind).push(vec![], value);
    }
}

impl Collector for TimexCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        match dcmon_adjtimex::read() {
            Ok(state) => {
                families(&state, out);
                Ok(())
            }
            // A seccomp profile may refuse the call: nothing to report then.
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => Err(
                CollectError::NoData(format!("adjtimex(2) not permitted: {err}")),
            ),
            Err(err) => Err(CollectError::io(Path::new("adjtimex(2)"), err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(out: &Snapshot, name: &str) -> f64 {
        out.get(name).unwrap().samples[0].value
    }

    #[test]
    fn converts_units_as_node_exporter() {
        let mut out = Snapshot::new();
        let state = ClockState {
            state: 0,
            offset: -1500,
            freq: 65536 * 10,
            maxerror: 16_000,
            esterror: 250,
            status: 0x2001,
            tick: 10_000,
            jitter: 2_000,
            ..ClockState::default()
        };
        families(&state, &mut out);
        assert_eq!(value(&out, "node_timex_sync_status"), 1.0);
        // STA_NANO is set: offset and jitter are nanoseconds.
        assert_eq!(value(&out, "node_timex_offset_seconds"), -1.5e-6);
        assert_eq!(value(&out, "node_timex_pps_jitter_seconds"), 2e-6);
        assert_eq!(
            value(&out, "node_timex_frequency_adjustment_ratio"),
            1.00001
        );
        assert_eq!(value(&out, "node_timex_maxerror_seconds"), 0.016);
        assert_eq!(value(&out, "node_timex_estimated_error_seconds"), 0.00025);
        assert_eq!(value(&out, "node_timex_tick_seconds"), 0.01);
        assert_eq!(value(&out, "node_timex_status"), 8193.0);

        let mut out = Snapshot::new();
        families(
            &ClockState {
                state: TIME_ERROR,
                offset: -1500,
                ..ClockState::default()
            },
            &mut out,
        );
        assert_eq!(value(&out, "node_timex_sync_status"), 0.0);
        assert_eq!(value(&out, "node_timex_offset_seconds"), -0.0015);
        assert_eq!(out.families().len(), 17);
    }
}
