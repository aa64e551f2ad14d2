//! Fan control with the host's own safety rules, enforced here whatever the
//! receiver asks: a duty floor, manual duty only in full mode (otherwise the
//! BMC overrides it), read-back after every change, re-assertion when the
//! BMC drifts out of full mode, optional revert, a thermal guard, and the
//! default mode restored when the exporter stops with a manual duty active.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dcmon_protocol::commands::{FanAction, FanMode, ZONES};
use serde::Serialize;

use super::bmc::{Bmc, BmcError, Ipmitool};
use super::board::Board;
use super::sensors::{self, Fan, SharedTemperatures};
use crate::collector::ipmi_parse::{SensorRow, parse_sensor};
use crate::config::{FanConfig, FanPolicy};

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
    pub fans: Vec<Fan>,
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
}

#[derive(Debug, Clone)]
struct Manual {
    previous_mode: FanMode,
    duties: BTreeMap<u8, u8>,
    revert_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    manual: Option<Manual>,
    mode: Option<FanMode>,
    duties: BTreeMap<u8, u8>,
}

/// The fan controller of this host.
pub struct FanController {
    bmc: Box<dyn Bmc>,
    board: Board,
    policy: FanPolicy,
    state: Mutex<State>,
    trips: AtomicU64,
    reasserts: AtomicU64,
    near_lower_critical: AtomicUsize,
    /// Temperatures from outside the BMC (the GPUs), for the guard.
    other_temperatures: SharedTemperatures,
}

impl std::fmt::Debug for FanController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanController")
            .field("board", &self.board)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl FanController {
    /// A controller for `board` through `bmc`.
    pub fn new(bmc: Box<dyn Bmc>, board: Board, policy: FanPolicy) -> FanController {
        FanController {
            bmc,
            board,
            policy,
            state: Mutex::default(),
            trips: AtomicU64::new(0),
            reasserts: AtomicU64::new(0),
            near_lower_critical: AtomicUsize::new(0),
            other_temperatures: SharedTemperatures::default(),
        }
    }

    /// Also guards the temperatures other collectors leave in `board`.
    /// The controller for this host: ipmitool as `config` says, the board
    /// read from DMI under `sysfs`.
    pub fn for_host(config: &FanConfig, sysfs: &Path) -> FanController {
        FanController::new(
            Box::new(Ipmitool {
                path: config.ipmitool.program.clone(),
                timeout: config.ipmitool.timeout,
            }),
            Board::detect(sysfs),
            config.policy,
        )
    }

    pub fn watching(mut self, board: SharedTemperatures) -> FanController {
        self.other_temperatures = board;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rules in force.
    pub fn policy(&self) -> FanPolicy {
        self.policy
    }

    /// Whether this board's fan commands are verified (else no BMC traffic).
    pub fn supported_board(&self) -> bool {
        self.board.fan_support().is_ok()
    }

    /// The BMC's sensor table; empty (and logged) when it cannot be read.
    fn sensors(&self) -> Vec<SensorRow> {
        let parsed = self
            .bmc
            .run(&["sensor"])
            .map_err(|e| e.to_string())
            .and_then(|text| parse_sensor(&text).map_err(|e| e.to_string()));
        parsed.unwrap_or_else(|err| {
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
        self.apply_mode(mode)?;
        self.state().manual = None;
        self.status()
    }

    fn apply_mode(&self, mode: FanMode) -> Result<(), FanError> {
        self.bmc.set_fan_mode(mode)?;
        std::thread::sleep(self.policy.settle);
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

    fn apply_duty(&self, zone: u8, duty: u8) -> Result<(), FanError> {
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
        if duty < self.policy.min_duty || duty > 100 {
            return Err(FanError::Refused(format!(
                "duty {duty}% is outside this host's allowed {}..=100%",
                self.policy.min_duty
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
    pub fn restore_auto(&self) -> Result<FanStatus, FanError> {
        self.set_mode(self.policy.default_mode)
    }

    /// Called every collection: while a manual duty is active, reads the
    /// sensors, trips the thermal guard, warns of fans near their
    /// lower-critical threshold, reverts an expired duty, and re-asserts full
    /// mode and the duties where the BMC drifted. Errors are logged; the
    /// next collection tries again.
    pub fn maintain(&self) {
        let Some(manual) = self.state().manual.clone() else {
            self.near_lower_critical.store(0, Ordering::Relaxed);
            return;
        };
        let sensors = self.sensors();
        let slow: Vec<String> = sensors::fans(&sensors)
            .into_iter()
            .filter(Fan::near_lower_critical)
            .map(|f| format!("{} {} RPM", f.name, f.rpm.unwrap_or_default()))
            .collect();
        if !slow.is_empty() {
            tracing::warn!(
                fans = slow.join(", "),
                "fans spin near their lower-critical threshold at the manual duty; the BMC will run the zone at 100 % if they cross it"
            );
        }
        self.near_lower_critical
            .store(slow.len(), Ordering::Relaxed);
        let mut temperatures = sensors::temperatures(&sensors);
        temperatures.extend(
            self.other_temperatures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let margin = self.policy.guard_margin;
        if let Some(hot) = temperatures
            .iter()
            .find(|t| t.celsius >= t.critical - margin)
        {
            self.trips.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                sensor = hot.name,
                celsius = hot.celsius,
                critical = hot.critical,
                "thermal guard: temperature at its critical threshold with a manual fan duty; fans to full speed"
            );
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
        if manual.revert_at.is_some_and(|at| Instant::now() >= at) {
            tracing::info!(
                mode = manual.previous_mode.name(),
                "manual fan duty expired; reverting"
            );
            if let Err(err) = self.set_mode(manual.previous_mode) {
                tracing::error!(error = %err, "reverting the fan mode failed");
            }
            return;
        }
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

    /// On shutdown: a manual duty must not outlive the exporter, so the
    /// default mode is restored.
    pub fn release(&self) {
        if self.state().manual.is_none() {
            return;
        }
        tracing::info!(
            mode = self.policy.default_mode.name(),
            "stopping with a manual fan duty; restoring the default mode"
        );
        if let Err(err) = self.restore_auto() {
            tracing::error!(error = %err, "restoring the fan mode failed");
        }
    }

    /// Current gauges.
    pub fn gauges(&self) -> FanGauges {
        let state = self.state();
        FanGauges {
            mode: state.mode,
            duties: state.duties.clone(),
            manual_override: state.manual.is_some(),
            thermal_guard_trips: self.trips.load(Ordering::Relaxed),
            reasserts: self.reasserts.load(Ordering::Relaxed),
            fans_near_lower_critical: self.near_lower_critical.load(Ordering::Relaxed),
        }
    }
}
