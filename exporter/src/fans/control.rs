//! Fan control with the host's own safety rules, enforced here whatever the
//! receiver asks: a duty floor, manual duty only in full mode (otherwise the
//! BMC overrides it), read-back after every change, re-assertion when the
//! BMC drifts out of full mode, optional revert, a thermal guard, and the
//! default mode restored when the exporter stops with a manual duty active.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dcmon_protocol::commands::{FanAction, FanMode, ZONES};
use serde::Serialize;

use super::bmc::{Bmc, BmcError, Ipmitool};
use super::board::Board;
use super::governor::{Governor, PolicyGauges};
use super::sensors::{self, FanSensor, SharedTemperatures, Temperature};
use super::sources::{LazyNvml, SharedGpuSource};
use crate::collector::ipmi_parse::{SensorRow, parse_sensor};
use crate::config::{FanConfig, FanRules};

/// Why a fan action failed.
#[derive(Debug, thiserror::Error)]
pub enum FanError {
    /// No verified command set for this board.
    #[error("{0}")]
    Unsupported(String),
    /// Refused by the host's rules.
    #[error("refused: {0}")]
    Refused(String),
    /// The BMC failed.
    #[error(transparent)]
    Bmc(#[from] BmcError),
    /// The BMC accepted a change but reads back something else.
    #[error("the BMC reads back {what} {got} after setting {expected}")]
    ReadBack {
        /// What was set.
        what: String,
        /// The value set.
        expected: String,
        /// The value read.
        got: String,
    },
}

/// What `get_status` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanStatus {
    /// The board.
    pub board: Board,
    /// Why fan control is refused here, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    /// Current mode.
    pub mode: Option<FanMode>,
    /// Duty per zone, percent.
    pub zones: BTreeMap<u8, u8>,
    /// Whether dcmon holds a manual duty.
    pub manual_override: bool,
    /// Fan tachometers with their lower thresholds (when the BMC lists them).
    pub fans: Vec<FanSensor>,
}

/// Gauges for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FanGauges {
    /// Last mode read or set.
    pub mode: Option<FanMode>,
    /// Last duty per zone, percent.
    pub duties: BTreeMap<u8, u8>,
    /// Manual duty active.
    pub manual_override: bool,
    /// Thermal guard trips since start.
    pub thermal_guard_trips: u64,
    /// Times the BMC was found out of full mode and re-asserted.
    pub reasserts: u64,
    /// Fans spinning near their lower-critical threshold at the last check.
    pub fans_near_lower_critical: usize,
    /// The fan policy's decisions, while one is in force.
    pub policy: Option<PolicyGauges>,
}

#[derive(Debug, Clone)]
pub(super) struct Manual {
    previous_mode: FanMode,
    pub(super) duties: BTreeMap<u8, u8>,
    revert_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) manual: Option<Manual>,
    pub(super) mode: Option<FanMode>,
    pub(super) duties: BTreeMap<u8, u8>,
}

/// The fan controller of this host.
pub struct FanController {
    pub(super) bmc: Box<dyn Bmc>,
    pub(super) board: Board,
    pub(super) rules: FanRules,
    pub(super) state: Mutex<State>,
    pub(super) trips: AtomicU64,
    pub(super) reasserts: AtomicU64,
    near_lower_critical: AtomicUsize,
    /// Temperatures from outside the BMC (the GPUs), for the guard.
    other_temperatures: SharedTemperatures,
    /// The fan policy in force, if any, with its zones' memory.
    pub(super) governor: Mutex<Option<Governor>>,
    /// BMC reverts seen per zone while a policy held it (kept across policies).
    pub(super) zone_reverts: Mutex<BTreeMap<u8, u64>>,
    /// The GPUs, for policies that read them.
    pub(super) gpus: Option<SharedGpuSource>,
    /// Where hwmon is read, for policies that read it.
    pub(super) sysfs: PathBuf,
}

impl std::fmt::Debug for FanController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanController")
            .field("board", &self.board)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl FanController {
    /// A controller for `board` through `bmc`.
    pub fn new(bmc: Box<dyn Bmc>, board: Board, rules: FanRules) -> FanController {
        FanController {
            bmc,
            board,
            rules,
            state: Mutex::default(),
            trips: AtomicU64::new(0),
            reasserts: AtomicU64::new(0),
            near_lower_critical: AtomicUsize::new(0),
            other_temperatures: SharedTemperatures::default(),
            governor: Mutex::new(None),
            zone_reverts: Mutex::default(),
            gpus: None,
            sysfs: PathBuf::from("/sys"),
        }
    }

    /// The controller for this host: ipmitool as `config` says, the board
    /// read from DMI under `sysfs`.
    pub fn for_host(config: &FanConfig, sysfs: &Path) -> FanController {
        FanController::new(
            Box::new(Ipmitool {
                path: config.ipmitool.program.clone(),
                timeout: config.ipmitool.timeout,
            }),
            Board::detect(sysfs),
            config.rules,
        )
        .reading_gpus(Arc::new(LazyNvml::default()))
        .reading_hwmon_under(sysfs)
    }

    /// Policies read GPU temperatures from `gpus` (tests pass a fake).
    pub fn reading_gpus(mut self, gpus: SharedGpuSource) -> FanController {
        self.gpus = Some(gpus);
        self
    }

    /// Policies read hwmon and NVMe temperatures under `sysfs`.
    pub fn reading_hwmon_under(mut self, sysfs: &Path) -> FanController {
        self.sysfs = sysfs.to_owned();
        self
    }

    /// Also guards the temperatures other collectors leave in `board`.
    pub fn watching(mut self, board: SharedTemperatures) -> FanController {
        self.other_temperatures = board;
        self
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rules in force.
    pub fn rules(&self) -> FanRules {
        self.rules
    }

    /// Whether this board's fan commands are verified (else no BMC traffic).
    pub fn supported_board(&self) -> bool {
        self.board.fan_support().is_ok()
    }

    /// Why fan control is refused on this board, if it is.
    pub fn unsupported_reason(&self) -> Option<String> {
        self.board.fan_support().err()
    }

    /// The BMC's sensor table, or why it cannot be read.
    pub(super) fn read_sensors(&self) -> Result<Vec<SensorRow>, String> {
        self.bmc
            .run(&["sensor"])
            .map_err(|e| e.to_string())
            .and_then(|text| parse_sensor(&text).map_err(|e| e.to_string()))
    }

    /// The BMC's sensor table; empty (and logged) when it cannot be read.
    fn sensors(&self) -> Vec<SensorRow> {
        self.read_sensors().unwrap_or_else(|err| {
            tracing::warn!(error = err, "reading the BMC's sensors failed");
            Vec::new()
        })
    }

    fn supported(&self) -> Result<(), FanError> {
        self.board.fan_support().map_err(FanError::Unsupported)
    }

    /// Runs one `fan_control` action; the answer is JSON.
    pub fn execute(&self, action: FanAction) -> Result<String, FanError> {
        let value = match action {
            FanAction::GetStatus {} => serde_json::to_value(self.full_status()?),
            FanAction::SetMode { mode } => serde_json::to_value(self.set_mode(mode)?),
            FanAction::SetZoneDuty {
                zone,
                duty,
                revert_after_s,
            } => serde_json::to_value(self.set_zone_duty(
                zone,
                duty,
                revert_after_s.map(|s| Duration::from_secs(u64::from(s))),
            )?),
            FanAction::RestoreAuto {} => serde_json::to_value(self.restore_auto()?),
        };
        Ok(value.map(|v| v.to_string()).unwrap_or_default())
    }

    /// Board, mode and zone duties (nothing is sent to an unsupported board).
    pub fn status(&self) -> Result<FanStatus, FanError> {
        let unsupported = self.board.fan_support().err();
        let (mode, zones) = if unsupported.is_none() {
            self.read_all()?
        } else {
            (None, BTreeMap::new())
        };
        Ok(FanStatus {
            board: self.board.clone(),
            unsupported,
            mode,
            zones,
            manual_override: self.state().manual.is_some(),
            fans: Vec::new(),
        })
    }

    /// [`FanController::status`] plus the fan tachometers and thresholds
    /// (one more, slower, BMC request: for `get_status`, not every scrape).
    pub fn full_status(&self) -> Result<FanStatus, FanError> {
        let mut status = self.status()?;
        if status.unsupported.is_none() {
            status.fans = sensors::fans(&self.sensors());
        }
        Ok(status)
    }

    fn read_all(&self) -> Result<(Option<FanMode>, BTreeMap<u8, u8>), FanError> {
        let mode = self.bmc.fan_mode()?;
        let mut zones = BTreeMap::new();
        for zone in ZONES {
            zones.insert(zone, self.bmc.zone_duty(zone)?);
        }
        let mut state = self.state();
        state.mode = Some(mode);
        state.duties.clone_from(&zones);
        Ok((Some(mode), zones))
    }

    /// Sets the mode and reads it back; any manual duty ends.
    pub fn set_mode(&self, mode: FanMode) -> Result<FanStatus, FanError> {
        self.supported()?;
        if mode == FanMode::Pue {
            return Err(FanError::Refused("mode pue cannot be set".into()));
        }
        if let Some(version) = self.policy_version() {
            return Err(FanError::Refused(format!(
                "fan policy {version} drives the fans; remove it with config_update (or stop the exporter) to set a BMC mode"
            )));
        }
        self.apply_mode(mode)?;
        self.state().manual = None;
        self.status()
    }

    pub(super) fn apply_mode(&self, mode: FanMode) -> Result<(), FanError> {
        self.bmc.set_fan_mode(mode)?;
        std::thread::sleep(self.rules.settle);
        let got = self.bmc.fan_mode()?;
        self.state().mode = Some(got);
        if got != mode {
            return Err(FanError::ReadBack {
                what: "mode".into(),
                expected: mode.name().into(),
                got: got.name().into(),
            });
        }
        Ok(())
    }

    pub(super) fn apply_duty(&self, zone: u8, duty: u8) -> Result<(), FanError> {
        self.bmc.set_zone_duty(zone, duty)?;
        let got = self.bmc.zone_duty(zone)?;
        self.state().duties.insert(zone, got);
        if got != duty {
            return Err(FanError::ReadBack {
                what: format!("zone {zone} duty"),
                expected: format!("{duty}%"),
                got: format!("{got}%"),
            });
        }
        Ok(())
    }

    /// Sets a zone's duty: checks the floor, switches to full mode first
    /// (remembering the mode it leaves), then sets and reads back the duty.
    pub fn set_zone_duty(
        &self,
        zone: u8,
        duty: u8,
        revert_after: Option<Duration>,
    ) -> Result<FanStatus, FanError> {
        self.supported()?;
        if !ZONES.contains(&zone) {
            return Err(FanError::Refused(format!(
                "zone {zone} does not exist (zones: 0, 1)"
            )));
        }
        if duty < self.rules.min_duty || duty > 100 {
            return Err(FanError::Refused(format!(
                "duty {duty}% is outside this host's allowed {}..=100%",
                self.rules.min_duty
            )));
        }
        let current = self.bmc.fan_mode()?;
        // A duty already held keeps the mode it first left.
        let previous_mode = self
            .state()
            .manual
            .as_ref()
            .map_or(current, |manual| manual.previous_mode);
        if current != FanMode::Full {
            self.apply_mode(FanMode::Full)?;
        }
        self.apply_duty(zone, duty)?;
        {
            let mut state = self.state();
            let manual = state.manual.get_or_insert(Manual {
                previous_mode,
                duties: BTreeMap::new(),
                revert_at: None,
            });
            manual.duties.insert(zone, duty);
            manual.revert_at = revert_after.map(|after| Instant::now() + after);
        }
        self.status()
    }

    /// Back to the configured default mode.
    /// With a fan policy in force, ends any manual duty and hands its
    /// zones back to the policy.
    pub fn restore_auto(&self) -> Result<FanStatus, FanError> {
        if self.policy_version().is_some() {
            self.supported()?;
            self.state().manual = None;
            return self.status();
        }
        self.set_mode(self.rules.default_mode)
    }

    /// Fan safety, run by its own task every `--fans.interval` (never by
    /// a scrape): while dcmon holds the fans (a manual duty or a fan
    /// policy), reads the sensors, trips the thermal guard, warns of fans
    /// near their lower-critical threshold, reverts an expired duty,
    /// re-asserts full mode and the duties where the BMC drifted, and runs
    /// the fan policy. Errors are logged; the next interval tries again.
    pub fn maintain(&self) {
        self.maintain_at(Instant::now());
    }

    /// [`FanController::maintain`] at `now` (tests drive the clock).
    pub fn maintain_at(&self, now: Instant) {
        let manual = self.state().manual.clone();
        let governed = self.policy_version().is_some();
        if manual.is_none() && !governed {
            self.near_lower_critical.store(0, Ordering::Relaxed);
            return;
        }
        if !self.supported_board() {
            return;
        }
        let sensors = self.read_sensors();
        if let Err(err) = &sensors {
            tracing::warn!(error = err, "reading the BMC's sensors failed");
        }
        let rows = sensors.as_deref().unwrap_or_default();
        let slow: Vec<String> = sensors::fans(rows)
            .into_iter()
            .filter(FanSensor::near_lower_critical)
            .map(|f| format!("{} {} RPM", f.name, f.rpm.unwrap_or_default()))
            .collect();
        if !slow.is_empty() {
            tracing::warn!(
                fans = slow.join(", "),
                "fans spin near their lower-critical threshold at the duty dcmon set; the BMC will run the zone at 100 % if they cross it"
            );
        }
        self.near_lower_critical
            .store(slow.len(), Ordering::Relaxed);
        let inputs = self.policy_inputs(sensors.clone());
        let mut temperatures = sensors::temperatures(rows);
        temperatures.extend(
            self.other_temperatures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        if let Some(Ok(gpus)) = &inputs.gpus {
            temperatures.extend(gpus.iter().filter_map(|gpu| {
                Some(Temperature {
                    name: format!("GPU {}", gpu.index),
                    celsius: gpu.temperature_gpu?,
                    critical: gpu.temperature_slowdown?,
                })
            }));
        }
        let margin = self.rules.guard_margin;
        if let Some(hot) = temperatures
            .iter()
            .find(|t| t.celsius >= t.critical - margin)
        {
            // Under a policy the guard holds until the temperature falls;
            // it is counted and logged once per trip.
            if self.govern_full(now, hot) {
                self.trips.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    sensor = hot.name,
                    celsius = hot.celsius,
                    critical = hot.critical,
                    "thermal guard: temperature at its critical threshold while dcmon holds the fans; fans to full speed"
                );
            }
            self.state().manual = None;
            let result = self.apply_mode(FanMode::Full).and_then(|()| {
                ZONES
                    .iter()
                    .try_for_each(|zone| self.apply_duty(*zone, 100))
            });
            if let Err(err) = result {
                tracing::error!(error = %err, "thermal guard could not set full speed");
            }
            return;
        }
        if let Some(manual) = &manual
            && manual.revert_at.is_some_and(|at| Instant::now() >= at)
        {
            tracing::info!(
                mode = manual.previous_mode.name(),
                "manual fan duty expired; reverting"
            );
            self.state().manual = None;
            // Under a policy the zone goes back to it below.
            if !governed {
                if let Err(err) = self.set_mode(manual.previous_mode) {
                    tracing::error!(error = %err, "reverting the fan mode failed");
                }
                return;
            }
        }
        if governed {
            self.govern(now, &inputs);
            return;
        }
        let Some(manual) = manual else {
            return;
        };
        match self.bmc.fan_mode() {
            Ok(FanMode::Full) => {}
            Ok(mode) => {
                self.reasserts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    mode = mode.name(),
                    "the BMC left full mode while a manual duty is active; re-asserting"
                );
                let result = self.apply_mode(FanMode::Full).and_then(|()| {
                    manual
                        .duties
                        .iter()
                        .try_for_each(|(zone, duty)| self.apply_duty(*zone, *duty))
                });
                if let Err(err) = result {
                    tracing::error!(error = %err, "re-asserting the manual fan duty failed");
                }
            }
            Err(err) => tracing::warn!(error = %err, "reading the fan mode failed"),
        }
    }

    /// On shutdown: neither a manual duty nor a fan policy may outlive the
    /// exporter, so the default mode is restored (the policy's own, else
    /// `--fans.default-mode`).
    pub fn release(&self) {
        let policy_mode = self.release_policy();
        let manual = self.state().manual.take().is_some();
        let mode = match (policy_mode, manual) {
            (Some(mode), _) => mode,
            (None, true) => self.rules.default_mode,
            (None, false) => return,
        };
        tracing::info!(
            mode = mode.name(),
            "stopping while dcmon holds the fans; restoring the default mode"
        );
        if let Err(err) = self.set_mode(mode) {
            tracing::error!(error = %err, "restoring the fan mode failed");
        }
    }

    /// Current gauges.
    pub fn gauges(&self) -> FanGauges {
        // Before the state lock: the policy's lock is always taken first.
        let policy = self.policy_gauges();
        let state = self.state();
        FanGauges {
            mode: state.mode,
            duties: state.duties.clone(),
            manual_override: state.manual.is_some(),
            thermal_guard_trips: self.trips.load(Ordering::Relaxed),
            reasserts: self.reasserts.load(Ordering::Relaxed),
            fans_near_lower_critical: self.near_lower_critical.load(Ordering::Relaxed),
            policy,
        }
    }
}
