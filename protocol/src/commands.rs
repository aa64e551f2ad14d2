//! The command schema: what an admin may ask a host to do. Typed, so an
//! unknown type, action or field is refused when the command is created
//! (and again on the host before it runs); no command carries free text
//! that could reach a shell.

use serde::{Deserialize, Serialize};

use crate::fan_policy::{FanPolicyDoc, PolicyError};

/// Lowest duty the receiver accepts by default, percent.
pub const DEFAULT_MIN_DUTY: u8 = 25;
/// Fan zones of the supported Supermicro boards (0: CPU/system, 1: peripheral).
pub const ZONES: [u8; 2] = [0, 1];
/// Longest wait a command may ask for (`revert_after_s`, `delay_s`): a day.
pub const MAX_DELAY_S: u32 = 86_400;

/// A command, as created: `{"type": "fan_control", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    tag = "type",
    content = "params",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Command {
    /// Fan control through the BMC.
    FanControl(FanAction),
    /// Reboot the host (refused unless the host's config allows it).
    Reboot(RebootParams),
    /// Change the host's runtime configuration (fan policy, interval,
    /// collectors) without a restart.
    ConfigUpdate(ConfigAction),
}

/// Shortest collection/remote-write interval a `config_update` may set, seconds.
pub const MIN_INTERVAL_S: u32 = 1;
/// Longest collection/remote-write interval a `config_update` may set, seconds.
pub const MAX_INTERVAL_S: u32 = 300;

/// The exporter's collectors, the only names `collectors` may hold.
pub const COLLECTORS: &[&str] = &[
    "apt",
    "arp",
    "config",
    "conntrack",
    "cpu",
    "diskstats",
    "edac",
    "entropy",
    "fan",
    "filefd",
    "filesystem",
    "gpu",
    "hwmon",
    "ipmi",
    "loadavg",
    "meminfo",
    "netclass",
    "netdev",
    "netstat",
    "nvme",
    "os",
    "pressure",
    "sockstat",
    "softnet",
    "stat",
    "textfile",
    "time",
    "timex",
    "udp_queues",
    "uname",
    "vmstat",
];

/// `config_update` actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConfigAction {
    /// Apply `config`; with `revert_after_s`, roll back to the previous
    /// configuration unless a `confirm` arrives in time.
    Apply {
        /// The configuration.
        config: RuntimeConfig,
        /// Seconds before an unconfirmed configuration is rolled back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(
            feature = "openapi",
            schema(nullable = false, minimum = 1, maximum = 86400)
        )]
        revert_after_s: Option<u32>,
    },
    /// Keep the configuration applied with `revert_after_s`.
    Confirm {
        /// Its version.
        #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
        version: String,
    },
}

/// What a host may be told at run time: nothing else. No paths, no
/// commands, no free text; unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// A label for this revision (letters, digits, `.`, `_`, `-`; up to 64).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
    pub version: String,
    /// The fan policy; none hands the fans to the BMC's own mode. In the
    /// shape of the TOML document (README, 'Fan policy').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, nullable = false))]
    pub fan_policy: Option<FanPolicyDoc>,
    /// Collection and remote-write interval, seconds; the host's flag when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1, maximum = 300)
    )]
    pub interval_s: Option<u32>,
    /// The enabled collectors (`COLLECTORS`); the host's flags when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, min_items = 1))]
    pub collectors: Option<Vec<String>>,
}

impl RuntimeConfig {
    /// Checks every value against the duty floor in force; errors name the field.
    pub fn validate(&self, min_duty: u8) -> Result<(), InvalidCommand> {
        let config = |field: &str, message: String| InvalidCommand::Config {
            field: format!("config.{field}"),
            message,
        };
        if !valid_version(&self.version) {
            return Err(config(
                "version",
                format!(
                    "{:?} must be 1-64 letters, digits, '.', '_' or '-'",
                    self.version
                ),
            ));
        }
        if let Some(policy) = &self.fan_policy {
            policy.validate(min_duty).map_err(|err| match err {
                PolicyError::Invalid { field, message } => {
                    config(&format!("fan_policy.{field}"), message)
                }
                PolicyError::Syntax(message) => config("fan_policy", message),
            })?;
        }
        if let Some(interval) = self.interval_s
            && !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&interval)
        {
            return Err(config(
                "interval_s",
                format!("{interval} must be {MIN_INTERVAL_S}..={MAX_INTERVAL_S} seconds"),
            ));
        }
        if let Some(collectors) = &self.collectors {
            if collectors.is_empty() {
                return Err(config(
                    "collectors",
                    "at least one collector is required".into(),
                ));
            }
            for (i, name) in collectors.iter().enumerate() {
                if !COLLECTORS.contains(&name.as_str()) {
                    return Err(config(
                        &format!("collectors[{i}]"),
                        format!("unknown collector {name:?}"),
                    ));
                }
                if collectors[..i].contains(name) {
                    return Err(config(
                        &format!("collectors[{i}]"),
                        format!("{name:?} appears twice"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A version label: 1-64 letters, digits, `.`, `_` or `-`.
pub fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 64
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `fan_control` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum FanAction {
    /// Board, mode, zone duties and fan sensors; the result's `output` is
    /// JSON.
    // Braces: serde checks unknown fields only on struct variants.
    GetStatus {},
    /// Set the BMC fan mode.
    SetMode {
        /// The mode.
        mode: FanMode,
    },
    /// Set a zone's duty (switches to full mode first).
    SetZoneDuty {
        /// Zone number (0: CPU/system, 1: peripheral).
        #[cfg_attr(feature = "openapi", schema(maximum = 1))]
        zone: u8,
        /// Percent; below the receiver's `--commands.min-duty` (default 25)
        /// is refused.
        #[cfg_attr(feature = "openapi", schema(maximum = 100))]
        duty: u8,
        /// Return to the previous mode after this many seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(
            feature = "openapi",
            schema(nullable = false, minimum = 1, maximum = 86400)
        )]
        revert_after_s: Option<u32>,
    },
    /// Back to the host's configured default mode.
    RestoreAuto {},
}

/// `reboot` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RebootParams {
    /// Seconds to wait before rebooting.
    #[serde(default)]
    pub delay_s: u32,
}

/// Supermicro BMC fan modes (`ipmitool raw 0x30 0x45 0x01 <code>`). `pue`
/// is only ever read back: a command setting it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// 0: standard.
    Standard,
    /// 1: full speed.
    Full,
    /// 2: optimal.
    Optimal,
    /// 3: PUE (read back only; not settable through dcmon).
    Pue,
    /// 4: heavy I/O.
    HeavyIo,
}

impl FanMode {
    /// Every mode.
    pub const ALL: [FanMode; 5] = [
        FanMode::Standard,
        FanMode::Full,
        FanMode::Optimal,
        FanMode::Pue,
        FanMode::HeavyIo,
    ];

    /// The BMC's code for this mode.
    pub fn code(self) -> u8 {
        match self {
            FanMode::Standard => 0,
            FanMode::Full => 1,
            FanMode::Optimal => 2,
            FanMode::Pue => 3,
            FanMode::HeavyIo => 4,
        }
    }

    /// The mode for a BMC code.
    pub fn from_code(code: u8) -> Option<FanMode> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Lower-case name, as in the API.
    pub fn name(self) -> &'static str {
        match self {
            FanMode::Standard => "standard",
            FanMode::Full => "full",
            FanMode::Optimal => "optimal",
            FanMode::Pue => "pue",
            FanMode::HeavyIo => "heavy_io",
        }
    }

    /// Parses a mode name.
    pub fn parse(name: &str) -> Option<FanMode> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    /// Zone outside [`ZONES`].
    #[error("zone {0} does not exist (zones: 0, 1)")]
    Zone(u8),
    /// Duty outside `[min, 100]`.
    #[error("duty {duty}% is outside the allowed {min}..=100%")]
    Duty {
        /// Requested duty.
        duty: u8,
        /// The floor in force.
        min: u8,
    },
    /// PUE mode cannot be set.
    #[error("mode pue cannot be set; use standard, full, optimal or heavy_io")]
    Mode,
    /// A revert longer than a day.
    #[error("revert_after_s must be 1..=86400")]
    Revert,
    /// A reboot delay longer than a day.
    #[error("delay_s must be 0..=86400")]
    Delay,
    /// A `config_update` value out of range; names the field.
    #[error("{field}: {message}")]
    Config {
        /// Path of the field, e.g. `config.fan_policy.zone[0].floor`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl Command {
    /// Checks values the types cannot express, with the duty floor in force.
    pub fn validate(&self, min_duty: u8) -> Result<(), InvalidCommand> {
        match *self {
            Command::FanControl(FanAction::SetZoneDuty {
                zone,
                duty,
                revert_after_s,
            }) => {
                if !ZONES.contains(&zone) {
                    return Err(InvalidCommand::Zone(zone));
                }
                if duty < min_duty || duty > 100 {
                    return Err(InvalidCommand::Duty {
                        duty,
                        min: min_duty,
                    });
                }
                if revert_after_s.is_some_and(|s| s == 0 || s > MAX_DELAY_S) {
                    return Err(InvalidCommand::Revert);
                }
                Ok(())
            }
            Command::Reboot(RebootParams { delay_s }) if delay_s > MAX_DELAY_S => {
                Err(InvalidCommand::Delay)
            }
            Command::FanControl(FanAction::SetMode { mode: FanMode::Pue }) => {
                Err(InvalidCommand::Mode)
            }
            Command::ConfigUpdate(ConfigAction::Apply {
                ref config,
                revert_after_s,
            }) => {
                if revert_after_s.is_some_and(|s| s == 0 || s > MAX_DELAY_S) {
                    return Err(InvalidCommand::Revert);
                }
                config.validate(min_duty)
            }
            Command::ConfigUpdate(ConfigAction::Confirm { ref version })
                if !valid_version(version) =>
            {
                Err(InvalidCommand::Config {
                    field: "version".into(),
                    message: format!("{version:?} is not a version label"),
                })
            }
            _ => Ok(()),
        }
    }

    /// The `type` field's value.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::FanControl(_) => "fan_control",
            Command::Reboot(_) => "reboot",
            Command::ConfigUpdate(_) => "config_update",
        }
    }
}

/// Lifecycle of a command: pending → delivered → succeeded | failed;
/// pending → expired | cancelled. A delivered command without a result by
/// its deadline becomes failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    /// Waiting for the host to poll.
    Pending,
    /// Handed to the host (at most once).
    Delivered,
    /// The host reported success.
    Succeeded,
    /// The host reported failure, or no result came in time.
    Failed,
    /// Not delivered before it expired.
    Expired,
    /// Cancelled by an admin before delivery.
    Cancelled,
}

impl CommandStatus {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            CommandStatus::Pending => "pending",
            CommandStatus::Delivered => "delivered",
            CommandStatus::Succeeded => "succeeded",
            CommandStatus::Failed => "failed",
            CommandStatus::Expired => "expired",
            CommandStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a status name.
    pub fn parse(name: &str) -> Option<CommandStatus> {
        [
            CommandStatus::Pending,
            CommandStatus::Delivered,
            CommandStatus::Succeeded,
            CommandStatus::Failed,
            CommandStatus::Expired,
            CommandStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// What a host hands to `GET /api/dcmon/commands/next`'s caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveredCommand {
    /// Command id.
    pub id: i64,
    /// The command.
    pub command: Command,
    /// Unix seconds by which the result must arrive.
    pub deadline: i64,
}

/// `POST /api/dcmon/commands/{id}/result` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    /// `succeeded` or `failed`.
    pub status: CommandStatus,
    /// Exit code of the tool run, if one ran.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// What the command printed or returned (JSON for `get_status`).
    #[serde(default)]
    pub output: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// Largest `output` the receiver keeps, bytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_shape_parses() {
        let command: Command = serde_json::from_str(
            r#"{"type": "fan_control", "params": {"action": "set_zone_duty", "zone": 0, "duty": 60}}"#,
        )
        .unwrap();
        assert_eq!(
            command,
            Command::FanControl(FanAction::SetZoneDuty {
                zone: 0,
                duty: 60,
                revert_after_s: None
            })
        );
        assert_eq!(command.validate(25), Ok(()));
        let mode: Command = serde_json::from_str(
            r#"{"type": "fan_control", "params": {"action": "set_mode", "mode": "heavy_io"}}"#,
        )
        .unwrap();
        assert_eq!(
            mode,
            Command::FanControl(FanAction::SetMode {
                mode: FanMode::HeavyIo
            })
        );
        let reboot: Command =
            serde_json::from_str(r#"{"type": "reboot", "params": {"delay_s": 30}}"#).unwrap();
        assert_eq!(reboot, Command::Reboot(RebootParams { delay_s: 30 }));
    }

    #[test]
    fn unknown_types_actions_fields_and_modes_are_refused() {
        for bad in [
            r#"{"type": "shell", "params": {"cmd": "rm -rf /"}}"#,
            r#"{"type": "fan_control", "params": {"action": "spin"}}"#,
            r#"{"type": "fan_control", "params": {"action": "set_mode", "mode": "turbo"}}"#,
            r#"{"type": "fan_control", "params": {"action": "set_zone_duty", "zone": 0, "duty": 60, "x": 1}}"#,
            r#"{"type": "fan_control", "params": {"action": "set_zone_duty", "zone": 0, "duty": 300}}"#,
            r#"{"type": "reboot", "params": {"delay_s": 1, "force": true}}"#,
            r#"{"type": "fan_control", "params": {"action": "get_status", "x": 1}}"#,
            r#"{"type": "fan_control", "params": {"action": "restore_auto", "mode": "full"}}"#,
        ] {
            assert!(serde_json::from_str::<Command>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_checked_against_the_floor() {
        let duty = |zone, duty| {
            Command::FanControl(FanAction::SetZoneDuty {
                zone,
                duty,
                revert_after_s: None,
            })
        };
        assert_eq!(duty(7, 50).validate(25), Err(InvalidCommand::Zone(7)));
        assert_eq!(
            duty(1, 20).validate(25),
            Err(InvalidCommand::Duty { duty: 20, min: 25 })
        );
        assert!(duty(1, 101).validate(25).is_err());
        assert!(duty(1, 100).validate(25).is_ok());
        assert!(duty(1, 25).validate(25).is_ok());
        assert_eq!(
            Command::FanControl(FanAction::SetMode { mode: FanMode::Pue }).validate(25),
            Err(InvalidCommand::Mode)
        );
    }

    #[test]
    fn mode_codes_round_trip() {
        for code in 0..=4 {
            assert_eq!(FanMode::from_code(code).unwrap().code(), code);
        }
        assert_eq!(FanMode::from_code(9), None);
        assert_eq!(FanMode::parse("heavy_io"), Some(FanMode::HeavyIo));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Every numeric field over its whole range: accepted exactly
            /// inside the documented bounds, never a panic.
            #[test]
            fn numeric_fields_are_checked_over_their_whole_range(
                zone in any::<u8>(),
                duty in any::<u8>(),
                revert in proptest::option::of(any::<u32>()),
                delay in any::<u32>(),
                min_duty in any::<u8>(),
            ) {
                let set = Command::FanControl(FanAction::SetZoneDuty {
                    zone,
                    duty,
                    revert_after_s: revert,
                });
                let in_range = ZONES.contains(&zone)
                    && (min_duty..=100).contains(&duty)
                    && revert.is_none_or(|s| (1..=MAX_DELAY_S).contains(&s));
                prop_assert_eq!(set.validate(min_duty).is_ok(), in_range);
                let reboot = Command::Reboot(RebootParams { delay_s: delay });
                prop_assert_eq!(reboot.validate(min_duty).is_ok(), delay <= MAX_DELAY_S);
            }

            /// Any JSON number in a numeric field, however large, negative
            /// or fractional: refused by the parser or by `validate`.
            #[test]
            fn any_json_number_is_parsed_or_refused(
                integer in any::<i128>(),
                float in any::<f64>(),
                field in prop::sample::select(vec!["zone", "duty", "revert_after_s"]),
            ) {
                for number in [integer.to_string(), format!("{float:e}")] {
                    let mut params = serde_json::json!({"action": "set_zone_duty", "zone": 0, "duty": 50});
                    params[field] = serde_json::from_str(&number).unwrap_or(serde_json::Value::Null);
                    let text = format!(r#"{{"type": "fan_control", "params": {params}}}"#);
                    if let Ok(command) = serde_json::from_str::<Command>(&text) {
                        let _ = command.validate(DEFAULT_MIN_DUTY);
                    }
                    let reboot = format!(r#"{{"type": "reboot", "params": {{"delay_s": {number}}}}}"#);
                    if let Ok(command) = serde_json::from_str::<Command>(&reboot) {
                        let Command::Reboot(RebootParams { delay_s }) = command else {
                            unreachable!()
                        };
                        prop_assert_eq!(command.validate(DEFAULT_MIN_DUTY).is_ok(), delay_s <= MAX_DELAY_S);
                    }
                }
            }
        }
    }

    fn config_update(config: serde_json::Value) -> Result<Command, String> {
        let text = serde_json::json!({"type": "config_update", "params": {"action": "apply", "config": config}});
        let command: Command = serde_json::from_value(text).map_err(|e| e.to_string())?;
        command.validate(25).map_err(|e| e.to_string())?;
        Ok(command)
    }

    fn policy() -> serde_json::Value {
        serde_json::json!({"version": "p1", "zone": [{"id": 1, "floor": 30,
            "source": [{"type": "gpu", "curve": [[40, 30], [80, 100]]}]}]})
    }

    #[test]
    fn config_updates_carry_only_typed_allow_listed_values() {
        let good = config_update(serde_json::json!({"version": "v1", "fan_policy": policy(),
            "interval_s": 15, "collectors": ["cpu", "gpu", "fan"]}))
        .unwrap();
        assert_eq!(good.kind(), "config_update");
        let mut below_floor = policy();
        below_floor["zone"][0]["floor"] = 10.into();
        let mut path = policy();
        path["zone"][0]["source"][0]["path"] = "/etc/shadow".into();
        for (config, names) in [
            (
                serde_json::json!({"version": "v1", "shell": "id"}),
                "unknown field `shell`",
            ),
            (
                serde_json::json!({"version": "v1", "state_dir": "/tmp"}),
                "unknown field `state_dir`",
            ),
            (
                serde_json::json!({"version": "v1", "fan_policy": path}),
                "unknown field `path`",
            ),
            (
                serde_json::json!({"version": "v1", "fan_policy": below_floor}),
                "config.fan_policy.zone[0].floor",
            ),
            (
                serde_json::json!({"version": "v1", "interval_s": 0}),
                "config.interval_s",
            ),
            (
                serde_json::json!({"version": "v1", "interval_s": 301}),
                "config.interval_s",
            ),
            (
                serde_json::json!({"version": "v1", "collectors": ["cpu", "/bin/sh"]}),
                "config.collectors[1]",
            ),
            (
                serde_json::json!({"version": "v1", "collectors": []}),
                "config.collectors",
            ),
            (serde_json::json!({"version": "../x"}), "config.version"),
        ] {
            let err = config_update(config.clone()).unwrap_err();
            assert!(err.contains(names), "{config}: {err}");
        }
        let revert: Command = serde_json::from_str(
            r#"{"type": "config_update", "params": {"action": "apply", "config": {"version": "v"}, "revert_after_s": 0}}"#,
        )
        .unwrap();
        assert_eq!(revert.validate(25), Err(InvalidCommand::Revert));
        let confirm: Command = serde_json::from_str(
            r#"{"type": "config_update", "params": {"action": "confirm", "version": "v"}}"#,
        )
        .unwrap();
        assert_eq!(confirm.validate(25), Ok(()));
    }

    #[test]
    fn a_reboot_waits_at_most_a_day() {
        let reboot = |delay_s| Command::Reboot(RebootParams { delay_s });
        assert_eq!(reboot(0).validate(25), Ok(()));
        assert_eq!(reboot(MAX_DELAY_S).validate(25), Ok(()));
        assert_eq!(
            reboot(MAX_DELAY_S + 1).validate(25),
            Err(InvalidCommand::Delay)
        );
        assert_eq!(reboot(u32::MAX).validate(25), Err(InvalidCommand::Delay));
    }
}
