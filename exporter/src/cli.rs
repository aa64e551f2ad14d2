//! Command-line flags, spelled the Prometheus way (`--web.listen-address`,
//! `--path.procfs`, `--collector.<name>` / `--no-collector.<name>`), plus the
//! optional TOML config file whose keys are the same flag names.
//!
//! Precedence: built-in defaults < config file < command line (see
//! `dcmon_protocol::config_file`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{
    Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser, Subcommand,
};
use dcmon_protocol::duration::parse_duration;
use dcmon_protocol::logging::{LogFormat, parse_level};

use crate::collector;
use crate::identity::register::RegisterArgs;

/// dcmon-exporter: host, GPU, IPMI, NVMe and apt metrics for Prometheus.
#[derive(Debug, Parser)]
#[command(name = "dcmon-exporter", version, args_override_self = true)]
pub struct Cli {
    /// TOML file whose keys are flag names (`"web.listen-address" = ":9870"`,
    /// or nested: `[collector]` `cpu = false`). Flags given here win.
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Address to listen on for the web interface and telemetry.
    #[arg(long = "web.listen-address", default_value = ":9870")]
    pub listen_address: String,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    pub telemetry_path: String,

    /// procfs mountpoint.
    #[arg(long = "path.procfs", default_value = "/proc")]
    pub procfs: PathBuf,

    /// sysfs mountpoint.
    #[arg(long = "path.sysfs", default_value = "/sys")]
    pub sysfs: PathBuf,

    /// rootfs mountpoint (for os-release and filesystem mount points).
    #[arg(long = "path.rootfs", default_value = "/")]
    pub rootfs: PathBuf,

    /// udev data path (disk model, serial and path labels).
    #[arg(long = "path.udev.data", default_value = "/run/udev/data")]
    pub udev_data: PathBuf,

    /// Turn off every collector not explicitly enabled with --collector.<name>.
    #[arg(long = "collector.disable-defaults")]
    pub disable_defaults: bool,

    /// Longest a collector may run in one scrape before it reports failure.
    #[arg(long = "collector.timeout", default_value = "8s", value_parser = parse_duration)]
    pub collector_timeout: Duration,

    /// Regexp of mount points to ignore in the filesystem collector.
    #[arg(long = "collector.filesystem.mount-points-exclude", default_value = DEFAULT_MOUNT_POINTS_EXCLUDE)]
    pub fs_mount_points_exclude: String,

    /// Regexp of filesystem types to ignore in the filesystem collector.
    #[arg(long = "collector.filesystem.fs-types-exclude", default_value = DEFAULT_FS_TYPES_EXCLUDE)]
    pub fs_types_exclude: String,

    /// How long to wait for statfs on a mount before marking it stale.
    #[arg(long = "collector.filesystem.mount-timeout", default_value = "5s", value_parser = parse_duration)]
    pub fs_mount_timeout: Duration,

    /// Regexp of block devices to ignore in the diskstats collector.
    #[arg(long = "collector.diskstats.device-exclude", default_value = DEFAULT_DISKSTATS_EXCLUDE)]
    pub diskstats_device_exclude: String,

    /// Regexp of network devices to include in netdev (unanchored, as node_exporter).
    #[arg(long = "collector.netdev.device-include")]
    pub netdev_device_include: Option<String>,

    /// Regexp of network devices to exclude from netdev.
    #[arg(long = "collector.netdev.device-exclude")]
    pub netdev_device_exclude: Option<String>,

    /// Regexp of network devices to ignore in the netclass collector.
    #[arg(long = "collector.netclass.ignored-devices", default_value = "^$")]
    pub netclass_ignored_devices: String,

    /// Regexp of hwmon chips to include.
    #[arg(long = "collector.hwmon.chip-include")]
    pub hwmon_chip_include: Option<String>,

    /// Regexp of hwmon chips to exclude.
    #[arg(long = "collector.hwmon.chip-exclude")]
    pub hwmon_chip_exclude: Option<String>,

    /// The ipmitool program (a name looked up on PATH, or a path).
    #[arg(long = "collector.ipmi.ipmitool-path", default_value = "ipmitool")]
    pub ipmi_ipmitool_path: PathBuf,

    /// Remote BMC to read over the network (`-I lanplus -H`); unset: the
    /// local BMC through `/dev/ipmi0` (`-I open`).
    #[arg(long = "collector.ipmi.host")]
    pub ipmi_host: Option<String>,

    /// UDP port of the remote BMC (`-p`; ipmitool's default is 623).
    #[arg(long = "collector.ipmi.port", requires = "ipmi_host")]
    pub ipmi_port: Option<u16>,

    /// RMCP+ cipher suite for the remote BMC (`-C`; by default ipmitool
    /// asks the BMC, which some BMCs answer only after a 10 s timeout).
    #[arg(long = "collector.ipmi.cipher-suite", requires = "ipmi_host")]
    pub ipmi_cipher_suite: Option<u8>,

    /// User name for the remote BMC (`-U`).
    #[arg(long = "collector.ipmi.user", requires = "ipmi_host")]
    pub ipmi_user: Option<String>,

    /// File holding the remote BMC's password (`-f`; never on the command line).
    #[arg(long = "collector.ipmi.password-file", requires = "ipmi_host")]
    pub ipmi_password_file: Option<PathBuf>,

    /// Longest one ipmitool run may take before it is killed.
    #[arg(long = "collector.ipmi.timeout", default_value = "20s", value_parser = parse_duration)]
    pub ipmi_timeout: Duration,

    /// How long IPMI readings are reused before the BMC is asked again
    /// (BMCs answer slowly; 0s asks on every scrape).
    #[arg(long = "collector.ipmi.cache-ttl", default_value = "30s", value_parser = parse_duration)]
    pub ipmi_cache_ttl: Duration,

    /// The nvme-cli program.
    #[arg(long = "collector.nvme.nvme-path", default_value = "nvme")]
    pub nvme_path: PathBuf,

    /// Longest one nvme-cli run may take before it is killed.
    #[arg(long = "collector.nvme.timeout", default_value = "5s", value_parser = parse_duration)]
    pub nvme_timeout: Duration,

    /// The apt-get program.
    #[arg(long = "collector.apt.apt-get-path", default_value = "apt-get")]
    pub apt_get_path: PathBuf,

    /// The apt-mark program (lists held packages).
    #[arg(long = "collector.apt.apt-mark-path", default_value = "apt-mark")]
    pub apt_mark_path: PathBuf,

    /// The apt program (`apt list --installed` finds obsolete packages).
    #[arg(long = "collector.apt.apt-path", default_value = "apt")]
    pub apt_path: PathBuf,

    /// How often pending upgrades are recomputed in the background
    /// (`apt update` itself is never run).
    #[arg(long = "collector.apt.interval", default_value = "15m", value_parser = parse_duration)]
    pub apt_interval: Duration,

    /// Longest one apt-get simulation may take before it is killed.
    #[arg(long = "collector.apt.timeout", default_value = "2m", value_parser = parse_duration)]
    pub apt_timeout: Duration,

    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info", value_parser = parse_level)]
    pub log_level: String,

    /// Output format of log messages: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    pub log_format: LogFormat,

    /// Without a subcommand the exporter serves `/metrics` (and ships to
    /// its receiver once registered).
    #[command(subcommand)]
    pub command: Option<ExporterCommand>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum ExporterCommand {
    /// Enrols this host with a dcmon receiver (needs the admin token once).
    Register(RegisterArgs),
}

/// node_exporter's defaults, so the same mounts and devices are skipped.
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's default pseudo-filesystem list.
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";
/// node_exporter's default: partitions, ram, loop and floppy devices.
pub const DEFAULT_DISKSTATS_EXCLUDE: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

/// Parsed command line: the fixed flags plus the collector toggles.
#[derive(Debug)]
pub struct Parsed {
    /// The fixed flags.
    pub cli: Cli,
    /// `(name, Some(true|false))` for collectors switched explicitly.
    pub toggles: Vec<(&'static str, Option<bool>)>,
}

/// The full clap command, with one `--collector.X` / `--no-collector.X` pair
/// per registered collector.
pub fn command() -> Command {
    let mut cmd = Cli::command();
    for info in collector::ALL {
        let on = format!("collector.{}", info.name);
        let off = format!("no-collector.{}", info.name);
        let default = if info.default_enabled {
            "enabled"
        } else {
            "disabled"
        };
        cmd = cmd
            .arg(
                Arg::new(on.clone())
                    .long(on.clone())
                    .action(ArgAction::SetTrue)
                    .overrides_with(off.clone())
                    .help(format!(
                        "Enable the {} collector (default: {default}).",
                        info.name
                    )),
            )
            .arg(
                Arg::new(off.clone())
                    .long(off)
                    .action(ArgAction::SetTrue)
                    .overrides_with(on)
                    .hide(true),
            );
    }
    cmd
}

/// Parses `args` (program name first), folding in the config file if one is named.
pub fn parse_from(args: Vec<OsString>) -> Result<Parsed, clap::Error> {
    let mut cmd = command();
    let args = dcmon_protocol::config_file::merge_into_args(&cmd, args)?;
    let matches = cmd.try_get_matches_from_mut(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let toggles = collector::ALL
        .iter()
        .map(|info| (info.name, toggle(&matches, info.name)))
        .collect();
    Ok(Parsed { cli, toggles })
}

fn toggle(matches: &ArgMatches, name: &str) -> Option<bool> {
    if matches.get_flag(&format!("collector.{name}")) {
        Some(true)
    } else if matches.get_flag(&format!("no-collector.{name}")) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("dcmon-exporter")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn verify_cli() {
        command().debug_assert();
    }

    #[test]
    fn collector_toggles_last_one_wins() {
        let parsed = parse_from(args(&[
            "--no-collector.cpu",
            "--collector.cpu",
            "--no-collector.hwmon",
        ]))
        .unwrap();
        let get = |n| {
            parsed
                .toggles
                .iter()
                .find(|(name, _)| *name == n)
                .unwrap()
                .1
        };
        assert_eq!(get("cpu"), Some(true));
        assert_eq!(get("hwmon"), Some(false));
        assert_eq!(get("meminfo"), None);
    }

    #[test]
    fn flags_win_over_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exporter.toml");
        std::fs::write(
            &file,
            "\"web.listen-address\" = \"127.0.0.1:1\"\n[path]\nprocfs = \"/fixture/proc\"\n[collector]\ncpu = false\ntimeout = \"3s\"\n",
        )
        .unwrap();
        let parsed = parse_from(args(&[
            "--config.file",
            file.to_str().unwrap(),
            "--web.listen-address=127.0.0.1:2",
        ]))
        .unwrap();
        assert_eq!(parsed.cli.listen_address, "127.0.0.1:2");
        assert_eq!(parsed.cli.procfs, PathBuf::from("/fixture/proc"));
        assert_eq!(parsed.cli.collector_timeout, Duration::from_secs(3));
        assert!(parsed.toggles.contains(&("cpu", Some(false))));
    }

    #[test]
    fn unknown_config_setting_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exporter.toml");
        std::fs::write(&file, "[web]\nlisten = \":1\"\n").unwrap();
        let err = parse_from(args(&["--config.file", file.to_str().unwrap()])).unwrap_err();
        assert!(
            err.to_string().contains("unknown setting \"web.listen\""),
            "{err}"
        );
    }
}
