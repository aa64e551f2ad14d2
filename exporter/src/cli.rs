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
use dcmon_protocol::config_file;
use dcmon_protocol::duration::parse_duration;
use dcmon_protocol::logging::{LogFormat, parse_level};
use dcmon_protocol::size::parse_bytes;

use crate::collector;
use crate::fans::cli::{FanArgs, FansAction};
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
    #[arg(long = "collector.filesystem.mount-points-exclude", default_value = collector::filesystem::DEFAULT_MOUNT_POINTS_EXCLUDE)]
    pub fs_mount_points_exclude: String,

    /// Regexp of filesystem types to ignore in the filesystem collector.
    #[arg(long = "collector.filesystem.fs-types-exclude", default_value = collector::filesystem::DEFAULT_FS_TYPES_EXCLUDE)]
    pub fs_types_exclude: String,

    /// How long to wait for statfs on a mount before marking it stale.
    #[arg(long = "collector.filesystem.mount-timeout", default_value = "5s", value_parser = parse_duration)]
    pub fs_mount_timeout: Duration,

    /// Regexp of block devices to ignore in the diskstats collector.
    #[arg(long = "collector.diskstats.device-exclude", default_value = collector::diskstats::DEFAULT_DEVICE_EXCLUDE)]
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

    /// Leave out node_network_speed_bytes where the kernel reports no
    /// speed (-1) instead of exporting it as -125000.
    #[arg(long = "collector.netclass.ignore-invalid-speed")]
    pub netclass_ignore_invalid_speed: bool,

    /// Regexp of devices to include in the arp collector.
    #[arg(long = "collector.arp.device-include")]
    pub arp_device_include: Option<String>,

    /// Regexp of devices to exclude from the arp collector.
    #[arg(long = "collector.arp.device-exclude")]
    pub arp_device_exclude: Option<String>,

    /// Directory to read *.prom text files from (repeatable); their metrics
    /// are exported and shipped like any collector's.
    #[arg(long = "collector.textfile.directory", value_name = "DIR")]
    pub textfile_directories: Vec<PathBuf>,

    /// Regexp of hwmon chips to include.
    #[arg(long = "collector.hwmon.chip-include")]
    pub hwmon_chip_include: Option<String>,

    /// Regexp of hwmon chips to exclude.
    #[arg(long = "collector.hwmon.chip-exclude")]
    pub hwmon_chip_exclude: Option<String>,

    /// Directory for the exporter's state: the remote-write spool lives in
    /// its `spool/` subdirectory. Created mode 0700; one that group or
    /// others can write to is refused.
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        default_value = "/var/lib/dcmon-exporter"
    )]
    pub state_dir: PathBuf,

    /// Remote-write endpoint to push to (repeatable). Without one, the
    /// exporter only serves /metrics.
    #[arg(long = "remote-write.url", value_name = "URL")]
    pub remote_write_urls: Vec<String>,

    /// File holding a bearer token for the --remote-write.url endpoints
    /// (re-read on every request).
    #[arg(long = "remote-write.bearer-token-file", value_name = "FILE")]
    pub remote_write_bearer_token_file: Option<PathBuf>,

    /// Basic-auth user name for the --remote-write.url endpoints.
    #[arg(long = "remote-write.basic-auth.username", value_name = "NAME")]
    pub remote_write_basic_auth_username: Option<String>,

    /// File holding the basic-auth password (re-read on every request).
    #[arg(long = "remote-write.basic-auth.password-file", value_name = "FILE")]
    pub remote_write_basic_auth_password_file: Option<PathBuf>,

    /// How often to collect and push; samples are stamped with ticks on
    /// multiples of it since the Unix epoch.
    #[arg(long = "remote-write.interval", default_value = "30s", value_parser = parse_duration)]
    pub remote_write_interval: Duration,

    /// Longest one remote-write request may take.
    #[arg(long = "remote-write.timeout", default_value = "30s", value_parser = parse_duration)]
    pub remote_write_timeout: Duration,

    /// The `instance` label of pushed samples (default: the host name).
    #[arg(long = "remote-write.instance", value_name = "NAME")]
    pub remote_write_instance: Option<String>,

    /// Label added to every pushed series that lacks it (repeatable).
    #[arg(long = "remote-write.external-label", value_name = "NAME=VALUE", value_parser = parse_label)]
    pub remote_write_external_labels: Vec<(String, String)>,

    /// Most disk space each endpoint's spool may use (bytes, or with a
    /// KiB/MiB/GiB or KB/MB/GB suffix); the oldest batches are dropped first.
    #[arg(long = "remote-write.spool.max-bytes", default_value = "256MiB", value_parser = parse_bytes)]
    pub remote_write_spool_max_bytes: u64,

    /// Spooled batches older than this are dropped.
    #[arg(long = "remote-write.spool.max-age", default_value = "7d", value_parser = parse_duration)]
    pub remote_write_spool_max_age: Duration,

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

    /// Fan control settings.
    #[command(flatten)]
    pub fans: FanArgs,

    /// Let the receiver's `reboot` commands run on this host.
    #[arg(long = "commands.allow-reboot")]
    pub allow_reboot: bool,

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
    /// Local Supermicro fan control (needs root and /dev/ipmi0).
    Fans {
        /// What to do.
        #[command(subcommand)]
        action: FansAction,
    },
}

/// Parsed command line: the fixed flags plus the collector toggles.
#[derive(Debug)]
pub struct Parsed {
    /// The fixed flags.
    pub cli: Cli,
    /// `(name, Some(true|false))` for collectors switched explicitly.
    pub toggles: Vec<(&'static str, Option<bool>)>,
    /// The config file's `[[remote_write]]` endpoints.
    pub file_endpoints: Vec<FileEndpoint>,
}

/// One `[[remote_write]]` table of the config file, named as in
/// Prometheus's `remote_write` configuration:
///
/// ```toml
/// [[remote_write]]
/// url = "https://mimir.example/api/v1/push"
/// basic_auth = { username = "fleet", password_file = "/etc/dcmon/mimir-password" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEndpoint {
    /// The remote-write URL.
    pub url: String,
    /// File holding a bearer token.
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth.
    pub basic_auth: Option<FileBasicAuth>,
}

/// `basic_auth` of a `[[remote_write]]` table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBasicAuth {
    /// User name.
    pub username: String,
    /// File holding the password.
    pub password_file: PathBuf,
}

/// The config-file section that holds endpoint tables rather than flags.
const REMOTE_WRITE_SECTION: &str = "remote_write";

/// `name=value`, with a valid Prometheus label name that is not reserved.
fn parse_label(input: &str) -> Result<(String, String), String> {
    let (name, value) = input
        .split_once('=')
        .ok_or_else(|| format!("{input:?} is not NAME=VALUE"))?;
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || name.starts_with("__") {
        return Err(format!("{name:?} is not a valid label name"));
    }
    if value.is_empty() {
        return Err(format!("label {name:?} has an empty value"));
    }
    Ok((name.to_owned(), value.to_owned()))
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
    let file = config_file::config_file_path(&args);
    let (args, mut sections) =
        config_file::merge_into_args_with_sections(&cmd, args, &[REMOTE_WRITE_SECTION])?;
    let file_endpoints = match (sections.remove(REMOTE_WRITE_SECTION), file) {
        (Some(value), Some(file)) => value.try_into().map_err(|e: toml::de::Error| {
            config_file::config_file_error(
                &file,
                format!("[[{REMOTE_WRITE_SECTION}]]: {}", e.message()),
            )
        })?,
        _ => Vec::new(),
    };
    let matches = cmd.try_get_matches_from_mut(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let toggles = collector::ALL
        .iter()
        .map(|info| (info.name, toggle(&matches, info.name)))
        .collect();
    Ok(Parsed {
        cli,
        toggles,
        file_endpoints,
    })
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
    fn remote_write_urls_and_labels_repeat() {
        let parsed = parse_from(args(&[
            "--remote-write.url=http://a/api/v1/write",
            "--remote-write.url",
            "http://b/api/v1/write",
            "--remote-write.external-label=dc=fra1",
            "--remote-write.external-label=rack=r7",
        ]))
        .unwrap();
        assert_eq!(
            parsed.cli.remote_write_urls,
            ["http://a/api/v1/write", "http://b/api/v1/write"]
        );
        assert_eq!(
            parsed.cli.remote_write_external_labels,
            [("dc".into(), "fra1".into()), ("rack".into(), "r7".into())]
        );
        assert_eq!(parsed.cli.remote_write_interval, Duration::from_secs(30));
        assert_eq!(parsed.cli.remote_write_spool_max_bytes, 256 << 20);
    }

    #[test]
    fn bad_external_labels_are_refused() {
        for bad in ["dc", "1dc=x", "__name__=x", "dc="] {
            let flag = format!("--remote-write.external-label={bad}");
            assert!(parse_from(args(&[&flag])).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn config_file_declares_endpoints_as_tables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exporter.toml");
        std::fs::write(
            &file,
            "[remote-write]\ninterval = \"15s\"\n\n[[remote_write]]\nurl = \"http://a/api/v1/write\"\nbearer_token_file = \"/etc/a\"\n\n[[remote_write]]\nurl = \"https://b/push\"\nbasic_auth = { username = \"u\", password_file = \"/etc/b\" }\n",
        )
        .unwrap();
        let parsed = parse_from(args(&["--config.file", file.to_str().unwrap()])).unwrap();
        assert_eq!(parsed.cli.remote_write_interval, Duration::from_secs(15));
        assert_eq!(
            parsed.file_endpoints,
            [
                FileEndpoint {
                    url: "http://a/api/v1/write".into(),
                    bearer_token_file: Some("/etc/a".into()),
                    basic_auth: None,
                },
                FileEndpoint {
                    url: "https://b/push".into(),
                    bearer_token_file: None,
                    basic_auth: Some(FileBasicAuth {
                        username: "u".into(),
                        password_file: "/etc/b".into(),
                    }),
                },
            ]
        );

        std::fs::write(
            &file,
            "[[remote_write]]\nurl = \"http://a\"\ntoken = \"x\"\n",
        )
        .unwrap();
        let err = parse_from(args(&["--config.file", file.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("unknown field `token`"), "{err}");
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
