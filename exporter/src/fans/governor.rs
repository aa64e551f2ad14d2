//! The fan policy at work: each interval of the fan safety task, read the
//! policy's sources, let each zone's [`Regulator`] decide, and hold the BMC
//! to it: full mode (the only mode in which it keeps a manual duty), the
//! decided duty read back, and a revert (the BMC leaving full mode, or a
//! duty that is no longer what was set) re-asserted and counted. Every
//! decision is kept for `/metrics`; the scrape only reads it.
//!
//! With no policy nothing here runs and the BMC's own mode stays in charge.

use std::collections::BTreeMap;
use std::time::Instant;

use dcmon_protocol::commands::FanMode;

use super::control::FanController;
use super::policy::{Policy, SourceKind};
use super::regulator::{Decision, Failsafe, Reading, Regulator};
use super::sensors::Temperature;
use super::sources::{self, Inputs};
use crate::collector::ipmi_parse::SensorRow;

/// One zone's decision, on its way to the BMC.
#[derive(Debug, Clone, Copy)]
struct Planned {
    zone: u8,
    duty: u8,
    /// What dcmon last set on this zone, to tell a BMC revert.
    set_before: Option<u8>,
}

/// What the BMC did with an interval's decisions.
#[derive(Debug)]
struct BmcOutcome {
    /// The BMC is (now) in full mode.
    full_mode: bool,
    /// Per zone, the duty read back after setting (None: unknown).
    applied: Vec<(u8, Option<u8>)>,
    /// Why the BMC could not be driven at all.
    failure: Option<String>,
}

/// A policy in force and its zones' memory.
#[derive(Debug)]
pub struct Governor {
    policy: Policy,
    regulators: BTreeMap<u8, Regulator>,
    zones: BTreeMap<u8, ZoneGauges>,
    /// Whether dcmon has put the BMC in full mode for this policy.
    holding: bool,
    /// Set while the thermal guard holds every zone at 100 %.
    guard: bool,
}

/// One zone's latest decision, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZoneGauges {
    /// Duty the policy asked for, percent.
    pub target: Option<u8>,
    /// Duty the BMC read back after it was set, percent.
    pub applied: Option<u8>,
    /// Label of the winning source and its temperature.
    pub winner: Option<(String, f64)>,
    /// Why the zone is at 100 %, while it fails safe: (kind, detail).
    pub failsafe: Option<(&'static str, String)>,
    /// BMC reverts seen on this zone (left full mode, or a changed duty).
    pub reverts: u64,
}

/// The policy's state for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyGauges {
    /// The policy's `version`.
    pub version: String,
    /// The policy's content hash.
    pub hash: String,
    /// Per zone.
    pub zones: BTreeMap<u8, ZoneGauges>,
}

impl FanController {
    /// Puts `policy` in force (or, with `None`, none). Removing a policy
    /// that held the fans hands them back to the BMC's default mode.
    pub fn set_policy(&self, policy: Option<Policy>) {
        if let Some(policy) = policy {
            tracing::info!(
                version = policy.doc.version,
                hash = policy.hash,
                "fan policy in force"
            );
            let mut governor = self.lock_governor();
            let holding = governor.as_ref().is_some_and(|g| g.holding);
            *governor = Some(Governor {
                policy,
                regulators: BTreeMap::new(),
                zones: BTreeMap::new(),
                holding,
                guard: false,
            });
            return;
        }
        if let Some(mode) = self.release_policy() {
            tracing::info!(
                mode = mode.name(),
                "fan policy removed; the BMC's own mode takes over"
            );
            if let Err(err) = self.set_mode(mode) {
                tracing::error!(error = %err, "restoring the fan mode failed");
            }
        }
    }

    fn lock_governor(&self) -> std::sync::MutexGuard<'_, Option<Governor>> {
        self.governor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `version` of the policy in force.
    pub fn policy_version(&self) -> Option<String> {
        self.lock_governor()
            .as_ref()
            .map(|g| g.policy.doc.version.clone())
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<Policy> {
        self.lock_governor().as_ref().map(|g| g.policy.clone())
    }

    /// Takes the policy out of force; the mode to hand back to when it
    /// held the fans.
    pub(super) fn release_policy(&self) -> Option<FanMode> {
        let governor = self.lock_governor().take()?;
        governor.holding.then(|| {
            governor
                .policy
                .doc
                .default_mode
                .unwrap_or(self.rules.default_mode)
        })
    }

    /// What this interval's sources need read: the GPUs and hwmon only
    /// when the policy reads them; the BMC's sensors are read anyway.
    pub(super) fn policy_inputs(&self, sensors: Result<Vec<SensorRow>, String>) -> Inputs {
        let kinds: Vec<SourceKind> = self
            .lock_governor()
            .as_ref()
            .map(|g| {
                g.policy
                    .doc
                    .zones
                    .iter()
                    .flat_map(|z| z.sources.iter().map(|s| s.kind))
                    .collect()
            })
            .unwrap_or_default();
        let wants = |k: &[SourceKind]| kinds.iter().any(|kind| k.contains(kind));
        Inputs {
            gpus: (wants(&[SourceKind::Gpu, SourceKind::GpuMemory])).then(|| match &self.gpus {
                Some(gpus) => gpus.read(),
                None => Err(crate::collector::gpu_source::GpuSourceError::Unavailable(
                    "no GPU source".into(),
                )),
            }),
            sensors: Some(sensors),
            hwmon: wants(&[SourceKind::Hwmon, SourceKind::Nvme])
                .then(|| sources::read_hwmon(&self.sysfs)),
        }
    }

    /// The thermal guard tripped: every policy zone is at 100 % until the
    /// temperature falls. Whether this is news (the guard was not
    /// already holding the zones).
    pub(super) fn govern_full(&self, now: Instant, hot: &Temperature) -> bool {
        let mut lock = self.lock_governor();
        let Some(governor) = lock.as_mut() else {
            return true;
        };
        let fresh = !governor.guard;
        governor.guard = true;
        governor.holding = true;
        for zone in &governor.policy.doc.zones {
            let failsafe = Failsafe {
                kind: "thermal_guard",
                detail: format!(
                    "{} at {} °C, critical {} °C",
                    hot.name, hot.celsius, hot.critical
                ),
            };
            let decision = governor
                .regulators
                .entry(zone.id)
                .or_default()
                .force_full(now, failsafe);
            let gauges = governor.zones.entry(zone.id).or_default();
            record(gauges, &decision, None);
            gauges.applied = Some(100);
        }
        fresh
    }

    /// One interval of the policy: decide each zone, re-assert full mode
    /// where the BMC left it, set and read back the duties. The policy's
    /// lock is held to decide and to record, never across BMC requests,
    /// so a slow BMC does not hold up a scrape or a command.
    pub(super) fn govern(&self, now: Instant, inputs: &Inputs) {
        let manual_zones: Vec<u8> = self
            .state()
            .manual
            .as_ref()
            .map(|m| m.duties.keys().copied().collect())
            .unwrap_or_default();
        let (hash, holding, plan) = {
            let mut lock = self.lock_governor();
            let Some(governor) = lock.as_mut() else {
                return;
            };
            governor.guard = false;
            let mut plan = Vec::new();
            for (zi, zone) in governor.policy.doc.zones.iter().enumerate() {
                if manual_zones.contains(&zone.id) {
                    continue;
                }
                let readings: Vec<Reading> = zone
                    .sources
                    .iter()
                    .enumerate()
                    .map(|(si, source)| {
                        sources::reading(source, governor.policy.regexes[zi][si].as_ref(), inputs)
                    })
                    .collect();
                let regulator = governor.regulators.entry(zone.id).or_default();
                let decision = regulator.step(zone, self.rules.min_duty, &readings, now);
                let previous = governor
                    .zones
                    .get(&zone.id)
                    .and_then(|g| g.failsafe.clone());
                match (&decision.failsafe, previous) {
                    (Some(f), previous) if previous.as_ref().is_none_or(|p| p.1 != f.detail) => {
                        tracing::error!(
                            zone = zone.id,
                            reason = f.kind,
                            detail = f.detail,
                            "fan policy failsafe: zone to 100 %"
                        );
                    }
                    (None, Some(_)) => {
                        tracing::info!(zone = zone.id, "fan policy failsafe cleared")
                    }
                    _ => {}
                }
                let winner = decision
                    .winner
                    .map(|(si, celsius)| (zone.sources[si].label(), celsius));
                let gauges = governor.zones.entry(zone.id).or_default();
                record(gauges, &decision, winner);
                plan.push(Planned {
                    zone: zone.id,
                    duty: decision.duty,
                    set_before: gauges.applied,
                });
            }
            (governor.policy.hash.clone(), governor.holding, plan)
        };
        let outcome = self.hold_bmc(holding, &plan);
        let mut lock = self.lock_governor();
        // A policy replaced meanwhile keeps its own record.
        let Some(governor) = lock.as_mut().filter(|g| g.policy.hash == hash) else {
            return;
        };
        governor.holding |= outcome.full_mode;
        for (zone, applied) in outcome.applied {
            let gauges = governor.zones.entry(zone).or_default();
            gauges.applied = applied;
            if let Some(err) = &outcome.failure {
                gauges.failsafe = Some(("bmc_error", err.clone()));
            }
        }
    }

    /// The BMC's part of an interval: full mode first (a revert when dcmon
    /// held it already), then each zone's duty, set and read back.
    fn hold_bmc(&self, holding: bool, plan: &[Planned]) -> BmcOutcome {
        let failed = |err: String| BmcOutcome {
            full_mode: false,
            applied: plan.iter().map(|p| (p.zone, None)).collect(),
            failure: Some(err),
        };
        let mode = match self.bmc.fan_mode() {
            Ok(mode) => mode,
            Err(err) => {
                tracing::error!(error = %err, "fan policy: reading the BMC's fan mode failed");
                return failed(err.to_string());
            }
        };
        let mode_reverted = mode != FanMode::Full && holding;
        if mode != FanMode::Full {
            if mode_reverted {
                self.reasserts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    mode = mode.name(),
                    "the BMC left full mode under the fan policy; re-asserting"
                );
            }
            if let Err(err) = self.apply_mode(FanMode::Full) {
                tracing::error!(error = %err, "fan policy: setting full mode failed");
                return failed(err.to_string());
            }
        }
        let mut applied = Vec::with_capacity(plan.len());
        for planned in plan {
            let (zone, duty) = (planned.zone, planned.duty);
            let read = self.bmc.zone_duty(zone);
            let drifted = match (&read, planned.set_before) {
                (Ok(now), Some(set)) => *now != set,
                _ => false,
            };
            if mode_reverted || drifted {
                *self
                    .zone_reverts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(zone)
                    .or_default() += 1;
                if drifted && !mode_reverted {
                    tracing::warn!(
                        zone,
                        set = planned.set_before,
                        reads = read.as_ref().ok(),
                        "the BMC changed a duty the fan policy set; re-asserting"
                    );
                }
            }
            if read.as_ref().ok() == Some(&duty) && !mode_reverted {
                self.state().duties.insert(zone, duty);
                applied.push((zone, Some(duty)));
                continue;
            }
            match self.apply_duty(zone, duty) {
                Ok(()) => applied.push((zone, Some(duty))),
                Err(err) => {
                    tracing::error!(zone, duty, error = %err, "fan policy: setting the duty failed");
                    applied.push((zone, read.ok()));
                }
            }
        }
        BmcOutcome {
            full_mode: true,
            applied,
            failure: None,
        }
    }

    /// The policy's gauges, while one is in force.
    pub(super) fn policy_gauges(&self) -> Option<PolicyGauges> {
        let lock = self.lock_governor();
        let governor = lock.as_ref()?;
        let reverts = self
            .zone_reverts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut zones = governor.zones.clone();
        for zone in &governor.policy.doc.zones {
            let gauges = zones.entry(zone.id).or_default();
            gauges.reverts = reverts.get(&zone.id).copied().unwrap_or_default();
        }
        Some(PolicyGauges {
            version: governor.policy.doc.version.clone(),
            hash: governor.policy.hash.clone(),
            zones,
        })
    }
}

fn record(gauges: &mut ZoneGauges, decision: &Decision, winner: Option<(String, f64)>) {
    gauges.target = Some(decision.duty);
    gauges.winner = winner;
    gauges.failsafe = decision
        .failsafe
        .as_ref()
        .map(|f| (f.kind, f.detail.clone()));
}
