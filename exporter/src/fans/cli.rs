//! `dcmon-exporter fans status | mode <mode> | set <zone> <percent> | auto`:
//! local fan control with the same safety rules as remote commands.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use dcmon_protocol::commands::FanMode;
use dcmon_protocol::duration::parse_duration;

use super::FanController;
use crate::config::{FanConfig, FanRules, ToolConfig};

/// Fan flags, shared by the `fans` CLI and the command runner.
#[derive(Debug, Clone, clap::Args)]
pub struct FanArgs {
    /// ipmitool executable.
    #[arg(long = "fans.ipmitool-path", default_value = "ipmitool", global = true)]
    pub ipmitool_path: PathBuf,

    /// Longest one ipmitool run may take before it is killed.
    #[arg(long = "fans.timeout", default_value = "10s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,

    /// Lowest duty this host accepts, percent (whatever the receiver allows).
    #[arg(long = "fans.min-duty", default_value_t = 25, global = true,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub min_duty: u8,

    /// Mode `auto`/`restore_auto` and shutdown return to: standard, optimal, full or heavy_io.
    #[arg(long = "fans.default-mode", default_value = "optimal", value_parser = parse_mode, global = true)]
    pub default_mode: FanMode,

    /// Wait after a mode change before setting duty (the BMC needs a moment).
    #[arg(long = "fans.settle", default_value = "3s", value_parser = parse_duration, global = true)]
    pub settle: Duration,

    /// While a manual duty is active, go to full speed when a temperature
    /// comes within this many °C of its critical threshold.
    #[arg(
        long = "fans.thermal-guard-margin",
        default_value_t = 0.0,
        global = true
    )]
    pub guard_margin: f64,

    /// How often fan safety runs (revert timers, full-mode re-assertion,
    /// the thermal guard) and the fan policy decides its duties. Runs
    /// whatever collectors are enabled.
    #[arg(long = "fans.interval", default_value = "5s", value_parser = parse_interval, global = true)]
    pub interval: Duration,

    /// A fan policy (TOML) to run from start-up: per-zone curves over GPU,
    /// BMC, hwmon and NVMe temperatures. A policy received with
    /// `config_update` and kept in the state directory takes precedence.
    #[arg(long = "fans.policy-file", value_name = "FILE", global = true)]
    pub policy_file: Option<PathBuf>,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text).map_err(|e| e.to_string())?;
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(60) {
        return Err(format!("{text:?} must be between 1s and 1m"));
    }
    Ok(interval)
}

fn parse_mode(text: &str) -> Result<FanMode, String> {
    FanMode::parse(text)
        .filter(|m| *m != FanMode::Pue)
        .ok_or_else(|| format!("unknown fan mode {text:?}: standard, full, optimal or heavy_io"))
}

impl FanArgs {
    /// The settings these flags give.
    pub fn config(&self) -> FanConfig {
        FanConfig {
            ipmitool: ToolConfig {
                program: self.ipmitool_path.clone(),
                timeout: self.timeout,
            },
            rules: FanRules {
                min_duty: self.min_duty,
                default_mode: self.default_mode,
                settle: self.settle,
                guard_margin: self.guard_margin,
            },
            interval: self.interval,
            policy_file: self.policy_file.clone(),
        }
    }
}

/// `dcmon-exporter fans …`
#[derive(Debug, Clone, Subcommand)]
pub enum FansAction {
    /// Board, mode and zone duties, as JSON.
    Status,
    /// Sets the BMC fan mode.
    Mode {
        /// standard, full, optimal or heavy_io.
        #[arg(value_parser = parse_mode)]
        mode: FanMode,
    },
    /// Sets a zone's duty (switches to full mode first).
    Set {
        /// Zone: 0 (CPU/system) or 1 (peripheral).
        zone: u8,
        /// Duty, percent.
        percent: u8,
    },
    /// Back to the default mode (`--fans.default-mode`).
    Auto,
}

/// Runs one action and prints the resulting status as JSON. A local duty
/// is deliberately left in place when the command exits: `auto` ends it.
pub fn run(controller: &FanController, action: &FansAction) -> anyhow::Result<()> {
    let status = match action {
        FansAction::Status => controller.full_status()?,
        FansAction::Mode { mode } => controller.set_mode(*mode)?,
        FansAction::Set { zone, percent } => controller.set_zone_duty(*zone, *percent, None)?,
        FansAction::Auto => controller.restore_auto()?,
    };
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(())
}
