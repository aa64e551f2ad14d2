//! One zone's duty decision, step by step over time: max-wins across the
//! zone's sources, hysteresis (deadband), a hold time before lowering, a
//! largest step per interval, floor and ceiling, and the failsafe to 100 %
//! when a source errs or goes without a fresh reading past its timeout.
//!
//! Pure: the caller passes the readings and the time, so tests (and the
//! thermal simulation) drive it without a clock or a BMC.

use std::time::{Duration, Instant};

use super::policy::ZonePolicy;

/// One source's reading this interval.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// The hottest matching temperature, °C.
    Celsius(f64),
    /// No matching sensor this time (held for the source's timeout).
    Missing(String),
    /// The source failed (NVML or IPMI error): fail safe at once.
    Failed(String),
}

/// Why a zone runs at 100 %.
#[derive(Debug, Clone, PartialEq)]
pub struct Failsafe {
    /// Short kind for the metric label: `source_error`, `source_stale`,
    /// `thermal_guard`, `bmc_error`.
    pub kind: &'static str,
    /// The full reason, for the log.
    pub detail: String,
}

/// What the regulator decided for one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Duty to apply, percent.
    pub duty: u8,
    /// The source whose demand won and its temperature.
    pub winner: Option<(usize, f64)>,
    /// Set while the zone is failing safe.
    pub failsafe: Option<Failsafe>,
}

/// A zone's memory between intervals.
#[derive(Debug, Clone, Default)]
pub struct Regulator {
    /// Last good reading per source: (when, °C).
    last_good: Vec<Option<(Instant, f64)>>,
    /// Duty decided last interval.
    current: Option<u8>,
    /// When the duty last changed.
    changed_at: Option<Instant>,
}

impl Regulator {
    /// The duty decided last interval.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// Decides the duty for `zone` at `now` from this interval's
    /// `readings` (one per source, in order), never below `host_floor`.
    pub fn step(
        &mut self,
        zone: &ZonePolicy,
        host_floor: u8,
        readings: &[Reading],
        now: Instant,
    ) -> Decision {
        self.last_good.resize(zone.sources.len(), None);
        let mut temperatures = Vec::with_capacity(zone.sources.len());
        let mut failsafe = None;
        for (i, (source, reading)) in zone.sources.iter().zip(readings).enumerate() {
            match reading {
                Reading::Celsius(celsius) if celsius.is_finite() => {
                    self.last_good[i] = Some((now, *celsius));
                    temperatures.push((i, *celsius));
                }
                Reading::Celsius(_) => {
                    failsafe.get_or_insert(Failsafe {
                        kind: "source_error",
                        detail: format!("{}: not a temperature", source.label()),
                    });
                }
                Reading::Failed(why) => {
                    failsafe.get_or_insert(Failsafe {
                        kind: "source_error",
                        detail: format!("{}: {why}", source.label()),
                    });
                }
                Reading::Missing(why) => {
                    let timeout = Duration::from_secs(u64::from(source.timeout_s));
                    match self.last_good[i] {
                        Some((at, celsius)) if now.saturating_duration_since(at) < timeout => {
                            temperatures.push((i, celsius));
                        }
                        last => {
                            let age = last.map_or_else(
                                || "never read".to_owned(),
                                |(at, _)| {
                                    format!(
                                        "no fresh reading for {}s",
                                        now.saturating_duration_since(at).as_secs()
                                    )
                                },
                            );
                            failsafe.get_or_insert(Failsafe {
                                kind: "source_stale",
                                detail: format!(
                                    "{}: {why}; {age} (timeout {}s)",
                                    source.label(),
                                    source.timeout_s
                                ),
                            });
                        }
                    }
                }
            }
        }
        if readings.len() != zone.sources.len() {
            failsafe.get_or_insert(Failsafe {
                kind: "source_error",
                detail: format!(
                    "{} readings for {} sources",
                    readings.len(),
                    zone.sources.len()
                ),
            });
        }
        let winner = temperatures
            .iter()
            .map(|&(i, celsius)| (i, celsius, zone.sources[i].duty_at(celsius)))
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(i, celsius, _)| (i, celsius));
        if let Some(failsafe) = failsafe {
            return self.settle(100, now, winner, Some(failsafe));
        }
        let floor = zone.floor.max(host_floor);
        let clamp = |demand: f64| -> u8 {
            let ceiling = zone.ceiling.max(floor);
            (demand.ceil().clamp(0.0, 100.0) as u8).clamp(floor, ceiling)
        };
        // Raising follows the temperature; lowering waits until it has
        // fallen `deadband_c` below the point that asks for today's duty.
        let up = clamp(
            temperatures
                .iter()
                .map(|&(i, c)| zone.sources[i].duty_at(c))
                .fold(0.0, f64::max),
        );
        let down = clamp(
            temperatures
                .iter()
                .map(|&(i, c)| zone.sources[i].duty_at(c + zone.deadband_c))
                .fold(0.0, f64::max),
        );
        let Some(current) = self.current else {
            return self.settle(up, now, winner, None);
        };
        let step = zone.max_step;
        let target = if up > current {
            up.min(current.saturating_add(step))
        } else if down < current {
            let hold = Duration::from_secs(u64::from(zone.hold_s));
            let held = self
                .changed_at
                .is_some_and(|at| now.saturating_duration_since(at) < hold);
            if held {
                current
            } else {
                down.max(current.saturating_sub(step))
            }
        } else {
            current
        };
        // The floor and ceiling apply at once (also when leaving failsafe).
        let target = target.clamp(floor, zone.ceiling.max(floor));
        self.settle(target, now, winner, None)
    }

    fn settle(
        &mut self,
        duty: u8,
        now: Instant,
        winner: Option<(usize, f64)>,
        failsafe: Option<Failsafe>,
    ) -> Decision {
        if self.current != Some(duty) {
            self.current = Some(duty);
            self.changed_at = Some(now);
        }
        Decision {
            duty,
            winner,
            failsafe,
        }
    }

    /// Forces the duty to 100 % for a reason outside the sources (the
    /// thermal guard, a BMC error).
    pub fn force_full(&mut self, now: Instant, failsafe: Failsafe) -> Decision {
        self.settle(100, now, None, Some(failsafe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fans::policy::{SourceKind, SourcePolicy};

    fn zone() -> ZonePolicy {
        let source = |kind| SourcePolicy {
            kind,
            gpus: None,
            sensor: None,
            sensor_regex: None,
            timeout_s: 30,
            curve: vec![[40.0, 30.0], [80.0, 100.0]],
        };
        ZonePolicy {
            id: 1,
            floor: 30,
            ceiling: 90,
            deadband_c: 4.0,
            hold_s: 60,
            max_step: 20,
            sources: vec![source(SourceKind::Gpu), source(SourceKind::GpuMemory)],
        }
    }

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn the_hotter_source_wins_within_floor_and_ceiling() {
        let (zone, t0) = (zone(), Instant::now());
        let mut r = Regulator::default();
        let d = r.step(
            &zone,
            25,
            &[Reading::Celsius(50.0), Reading::Celsius(60.0)],
            t0,
        );
        // 60 °C on 40→30 % .. 80→100 %: 30 + 70·20/40 = 65 %.
        assert_eq!((d.duty, d.winner), (65, Some((1, 60.0))));
        let mut cold = Regulator::default();
        let d = cold.step(
            &zone,
            35,
            &[Reading::Celsius(20.0), Reading::Celsius(20.0)],
            t0,
        );
        assert_eq!(d.duty, 35, "the host floor is above the zone's");
        let mut hot = Regulator::default();
        let d = hot.step(
            &zone,
            25,
            &[Reading::Celsius(99.0), Reading::Celsius(20.0)],
            t0,
        );
        assert_eq!(d.duty, 90, "the ceiling");
    }

    #[test]
    fn steps_are_limited_and_lowering_waits_for_deadband_and_hold() {
        let (zone, t0) = (zone(), Instant::now());
        let mut r = Regulator::default();
        let cool = [Reading::Celsius(40.0), Reading::Celsius(40.0)];
        assert_eq!(r.step(&zone, 25, &cool, t0).duty, 30);
        let hot = [Reading::Celsius(70.0), Reading::Celsius(40.0)];
        // 70 °C asks for 82.5 % → 83; up by at most 20 per interval.
        assert_eq!(r.step(&zone, 25, &hot, at(t0, 5)).duty, 50);
        assert_eq!(r.step(&zone, 25, &hot, at(t0, 10)).duty, 70);
        assert_eq!(r.step(&zone, 25, &hot, at(t0, 15)).duty, 83);
        // Jitter inside the deadband changes nothing, even after the hold.
        let jitter = [Reading::Celsius(67.0), Reading::Celsius(40.0)];
        assert_eq!(r.step(&zone, 25, &jitter, at(t0, 100)).duty, 83);
        // Cooler by more than the deadband, but within the hold time: held.
        let cooler = [Reading::Celsius(60.0), Reading::Celsius(40.0)];
        let mut held = r.clone();
        assert_eq!(held.step(&zone, 25, &cooler, at(t0, 70)).duty, 83);
        // After the hold: down to curve(60 + 4) = 72 %.
        assert_eq!(r.step(&zone, 25, &cooler, at(t0, 80)).duty, 72);
    }

    #[test]
    fn errors_fail_safe_at_once_and_missing_sources_after_their_timeout() {
        let (zone, t0) = (zone(), Instant::now());
        let mut r = Regulator::default();
        let good = [Reading::Celsius(50.0), Reading::Celsius(50.0)];
        assert_eq!(r.step(&zone, 25, &good, t0).duty, 48);
        let missing = [
            Reading::Celsius(50.0),
            Reading::Missing("GPU 0 gone".into()),
        ];
        let d = r.step(&zone, 25, &missing, at(t0, 29));
        assert_eq!((d.duty, d.failsafe), (48, None), "held within the timeout");
        let d = r.step(&zone, 25, &missing, at(t0, 30));
        assert_eq!(d.duty, 100);
        let failsafe = d.failsafe.unwrap();
        assert_eq!(failsafe.kind, "source_stale");
        assert!(
            failsafe.detail.contains("gpu_memory: GPU 0 gone"),
            "{}",
            failsafe.detail
        );
        let failed = [
            Reading::Failed("NVML: GPU is lost".into()),
            Reading::Celsius(50.0),
        ];
        let mut fresh = Regulator::default();
        let d = fresh.step(&zone, 25, &failed, t0);
        assert_eq!((d.duty, d.failsafe.unwrap().kind), (100, "source_error"));
        let mut never = Regulator::default();
        let d = never.step(&zone, 25, &missing, t0);
        assert_eq!(d.duty, 100, "never read is not a reading");
        // Recovering from failsafe: back under the ceiling at once, then
        // down by steps after the hold.
        assert_eq!(r.step(&zone, 25, &good, at(t0, 31)).duty, 90);
        assert_eq!(r.step(&zone, 25, &good, at(t0, 60)).duty, 90);
        assert_eq!(r.step(&zone, 25, &good, at(t0, 95)).duty, 70);
    }
}
