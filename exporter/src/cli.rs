//! Command-line flags, spelled the Prometheus way (`--web.listen-address`,
//! `--path.procfs`, `--collector.<name>` / `--no-collector.<name>`), plus the
//! optional TOML config file whose keys are the same flag names, and their
//! validation into a [`Config`]. Nothing past this module sees clap.
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
use regex::Regex;

use crate::collector;
use crate::config::{
    AptConfig, Config, DeviceFilter, GpuConfig, IpmiConfig, IpmiRemote, ToolConfig,
};
use crate::fans::cli::{FanArgs, FansAction};
use crate::identity::register::{DEFAULT_STATE_DIR, RegisterArgs};
use crate::roots::Roots;
use crate::shipper::message::UnknownProtobufMessage;
use crate::shipper::{
    self, EndpointAuth, EndpointConfig, ProtobufMessage, ShipperConfig, SpoolLimits, TargetLabels,
};

/// Where the documentation is, shown after the flags in `--help` and in the
/// manual page (help2man builds it from `--help`).
pub const DOCUMENTATION: &str = "Documentation: /usr/share/doc/dcmon-exporter/ where the package is \
installed (README.md; docs/metrics.md lists every metric, its labels and \
its collector), or README.md and docs/ in a checkout of the source.";

/// dcmon-exporter: host, GPU, IPMI, NVMe and apt metrics for Prometheus.
#[derive(Debug, Parser)]
#[command(
    name = "dcmon-exporter",
    version,
    args_override_self = true,
    after_help = DOCUMENTATION
)]
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

    /// exporter-toolkit web configuration (YAML) for TLS, basic auth and
    /// response headers; re-read when it or a file it names changes.
    /// Without one, /metrics is plain HTTP open to anyone.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// CA certificate(s), PEM, that an `https://` receiver's certificate
    /// must chain to (default: the one given at registration, else the
    /// system's roots).
    #[arg(long = "server-ca-file", value_name = "FILE")]
    pub server_ca_file: Option<PathBuf>,

    /// Do not verify the receiver's certificate chain (the certificate
    /// pinned at registration is still required). Logs a warning at
    /// every start.
    #[arg(long = "insecure-skip-verify")]
    pub insecure_skip_verify: bool,

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
    #[arg(long = "state-dir", value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
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

    /// Protobuf message for the --remote-write.url endpoints: v2
    /// (io.prometheus.write.v2.Request, with metadata), v1
    /// (prometheus.WriteRequest), or auto: v2, falling back to v1 for good
    /// once an endpoint shows it takes only that (a 415, a 2xx without the
    /// samples-written header, or a 4xx before any v2 request succeeded).
    #[arg(long = "remote-write.protobuf-message", value_name = "MESSAGE", default_value = "auto", value_parser = parse_protobuf_message)]
    pub remote_write_protobuf_message: ProtobufMessage,

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

    /// How long one NVML read may take before NVML counts as unresponsive
    /// (`dcmon_gpu_nvml_responsive 0`); capped at 80 % of
    /// `--collector.timeout`.
    #[arg(long = "collector.gpu.nvml-deadline", default_value = "5s", value_parser = parse_duration)]
    pub gpu_nvml_deadline: Duration,

    /// Most GPU compute processes exported per scrape (the largest memory
    /// users first); `dcmon_gpu_processes_dropped` counts the rest.
    #[arg(long = "collector.gpu.max-processes", default_value = "100")]
    pub gpu_max_processes: usize,

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
    /// The runtime configuration (`config_update`): show the one in force,
    /// or check a file.
    Config {
        /// What to do.
        #[command(subcommand)]
        action: crate::runtime_config_cli::ConfigCliAction,
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

/// One `[[remote_write]]` table of the config file (url, bearer_token_file
/// or basic_auth, protobuf_message, tls_config), shared with the receiver's
/// forwarding tables.
pub use dcmon_ship::config::{FileBasicAuth, FileEndpoint};

/// The config-file section that holds endpoint tables rather than flags.
const REMOTE_WRITE_SECTION: &str = "remote_write";

fn parse_protobuf_message(input: &str) -> Result<ProtobufMessage, String> {
    input
        .parse()
        .map_err(|e: UnknownProtobufMessage| e.to_string())
}

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

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {msg}")]
pub struct ConfigError {
    flag: &'static str,
    msg: String,
}

fn regex(flag: &'static str, pattern: &str) -> Result<Regex, ConfigError> {
    Regex::new(pattern).map_err(|e| ConfigError {
        flag,
        msg: e.to_string(),
    })
}

fn optional_regex(flag: &'static str, pattern: Option<&str>) -> Result<Option<Regex>, ConfigError> {
    pattern.map(|p| regex(flag, p)).transpose()
}

/// The most of `--collector.timeout` an NVML read may take, leaving the
/// gpu collector time to write its families.
const NVML_SHARE_OF_TIMEOUT: f64 = 0.8;

impl Parsed {
    /// Validates the parsed flags into a configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let remote_write = remote_write(&self)?;
        let Parsed { cli, toggles, .. } = self;
        let fans = cli.fans.config();
        if !cli.telemetry_path.starts_with('/') {
            return Err(ConfigError {
                flag: "web.telemetry-path",
                msg: "must start with '/'".into(),
            });
        }
        if cli.gpu_nvml_deadline.is_zero() {
            return Err(ConfigError {
                flag: "collector.gpu.nvml-deadline",
                msg: "must be above 0".into(),
            });
        }
        // The gpu collector must answer before the runner gives up on it,
        // whatever the two flags say: a short --collector.timeout caps it.
        let nvml_deadline = cli
            .gpu_nvml_deadline
            .min(cli.collector_timeout.mul_f64(NVML_SHARE_OF_TIMEOUT));
        let enabled = collector::ALL
            .iter()
            .filter(|info| {
                let explicit = toggles
                    .iter()
                    .find(|(n, _)| *n == info.name)
                    .and_then(|(_, t)| *t);
                explicit.unwrap_or(info.default_enabled && !cli.disable_defaults)
            })
            .map(|info| info.name)
            .collect();
        Ok(Config {
            listen_address: cli.listen_address,
            telemetry_path: cli.telemetry_path,
            web_config_file: cli.web_config_file,
            server_ca_file: cli.server_ca_file,
            insecure_skip_verify: cli.insecure_skip_verify,
            roots: Roots {
                procfs: cli.procfs,
                sysfs: cli.sysfs,
                rootfs: cli.rootfs,
                udev_data: cli.udev_data,
            },
            enabled,
            collector_timeout: cli.collector_timeout,
            fs_mount_points_exclude: regex(
                "collector.filesystem.mount-points-exclude",
                &cli.fs_mount_points_exclude,
            )?,
            fs_types_exclude: regex(
                "collector.filesystem.fs-types-exclude",
                &cli.fs_types_exclude,
            )?,
            fs_mount_timeout: cli.fs_mount_timeout,
            diskstats_device_exclude: regex(
                "collector.diskstats.device-exclude",
                &cli.diskstats_device_exclude,
            )?,
            netdev_devices: DeviceFilter {
                include: optional_regex(
                    "collector.netdev.device-include",
                    cli.netdev_device_include.as_deref(),
                )?,
                exclude: optional_regex(
                    "collector.netdev.device-exclude",
                    cli.netdev_device_exclude.as_deref(),
                )?,
            },
            netclass_ignored_devices: regex(
                "collector.netclass.ignored-devices",
                &cli.netclass_ignored_devices,
            )?,
            netclass_ignore_invalid_speed: cli.netclass_ignore_invalid_speed,
            arp_devices: DeviceFilter {
                include: optional_regex(
                    "collector.arp.device-include",
                    cli.arp_device_include.as_deref(),
                )?,
                exclude: optional_regex(
                    "collector.arp.device-exclude",
                    cli.arp_device_exclude.as_deref(),
                )?,
            },
            textfile_directories: cli.textfile_directories,
            hwmon_chips: DeviceFilter {
                include: optional_regex(
                    "collector.hwmon.chip-include",
                    cli.hwmon_chip_include.as_deref(),
                )?,
                exclude: optional_regex(
                    "collector.hwmon.chip-exclude",
                    cli.hwmon_chip_exclude.as_deref(),
                )?,
            },
            remote_write,
            fans,
            allow_reboot: cli.allow_reboot,
            ipmi: IpmiConfig {
                ipmitool: ToolConfig {
                    program: cli.ipmi_ipmitool_path,
                    timeout: cli.ipmi_timeout,
                },
                remote: cli.ipmi_host.map(|host| IpmiRemote {
                    host,
                    port: cli.ipmi_port,
                    cipher_suite: cli.ipmi_cipher_suite,
                    user: cli.ipmi_user,
                    password_file: cli.ipmi_password_file,
                }),
                cache_ttl: cli.ipmi_cache_ttl,
            },
            nvme: ToolConfig {
                program: cli.nvme_path,
                timeout: cli.nvme_timeout,
            },
            apt: AptConfig {
                apt_get: ToolConfig {
                    program: cli.apt_get_path,
                    timeout: cli.apt_timeout,
                },
                apt_mark: cli.apt_mark_path,
                apt: cli.apt_path,
                interval: cli.apt_interval,
            },
            gpu: GpuConfig {
                nvml_deadline,
                max_processes: cli.gpu_max_processes,
            },
        })
    }
}

/// Every flag at its default. The defaults are written once, in the flag
/// definitions, and read from there, so tests and library users that start
/// from `Config::default()` run what an exporter without flags runs.
impl Default for Config {
    fn default() -> Self {
        parse_from(vec![OsString::from("dcmon-exporter")])
            .map_err(|err| err.to_string())
            .and_then(|parsed| parsed.into_config().map_err(|err| err.to_string()))
            .expect("the flags' defaults are a valid configuration")
    }
}

/// The shipper's settings: command-line endpoints share the command-line
/// auth flags; each config-file `[[remote_write]]` table has its own.
fn remote_write(parsed: &Parsed) -> Result<ShipperConfig, ConfigError> {
    let cli = &parsed.cli;
    let fail = |flag, msg: &str| ConfigError {
        flag,
        msg: msg.into(),
    };
    let cli_auth = match (
        &cli.remote_write_bearer_token_file,
        &cli.remote_write_basic_auth_username,
        &cli.remote_write_basic_auth_password_file,
    ) {
        (None, None, None) => EndpointAuth::None,
        (Some(file), None, None) => EndpointAuth::Bearer(file.clone()),
        (None, Some(username), Some(password_file)) => EndpointAuth::Basic {
            username: username.clone(),
            password_file: password_file.clone(),
        },
        (Some(_), _, _) => {
            return Err(fail(
                "remote-write.bearer-token-file",
                "cannot be combined with basic auth",
            ));
        }
        (None, Some(_), None) => {
            return Err(fail(
                "remote-write.basic-auth.username",
                "needs --remote-write.basic-auth.password-file",
            ));
        }
        (None, None, Some(_)) => {
            return Err(fail(
                "remote-write.basic-auth.password-file",
                "needs --remote-write.basic-auth.username",
            ));
        }
    };
    if cli.remote_write_urls.is_empty() && !matches!(cli_auth, EndpointAuth::None) {
        return Err(fail(
            "remote-write.url",
            "remote-write credentials are given, but no --remote-write.url to use them",
        ));
    }
    if cli.remote_write_interval < Duration::from_millis(100) {
        return Err(fail("remote-write.interval", "must be at least 100ms"));
    }
    let mut endpoints: Vec<EndpointConfig> = cli
        .remote_write_urls
        .iter()
        .map(|url| {
            EndpointConfig::new(url.clone(), cli_auth.clone())
                .with_protobuf_message(cli.remote_write_protobuf_message)
        })
        .collect();
    for table in &parsed.file_endpoints {
        endpoints.push(
            table
                .endpoint_config(REMOTE_WRITE_SECTION)
                .map_err(|msg| fail("config.file", &msg))?,
        );
    }
    Ok(ShipperConfig {
        interval: cli.remote_write_interval,
        labels: TargetLabels {
            instance: cli
                .remote_write_instance
                .clone()
                .unwrap_or_else(shipper::hostname),
            job: shipper::JOB.into(),
            external: cli.remote_write_external_labels.clone(),
        },
        endpoints,
        state_dir: cli.state_dir.clone(),
        spool: SpoolLimits {
            max_bytes: cli.remote_write_spool_max_bytes,
            max_age: cli.remote_write_spool_max_age,
        },
        timeout: cli.remote_write_timeout,
        min_backoff: shipper::MIN_BACKOFF,
        max_backoff: shipper::MAX_BACKOFF,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

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
    fn help_says_where_the_documentation_is() {
        let help = command().render_help().to_string();
        assert!(help.contains("/usr/share/doc/dcmon-exporter/"), "{help}");
        assert!(help.contains("docs/metrics.md"), "{help}");
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
                    protobuf_message: ProtobufMessage::Auto,
                    tls_config: None,
                },
                FileEndpoint {
                    url: "https://b/push".into(),
                    bearer_token_file: None,
                    basic_auth: Some(FileBasicAuth {
                        username: "u".into(),
                        password_file: "/etc/b".into(),
                    }),
                    protobuf_message: ProtobufMessage::Auto,
                    tls_config: None,
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
    fn protobuf_message_is_set_per_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exporter.toml");
        std::fs::write(
            &file,
            "[[remote_write]]\nurl = \"http://prometheus/api/v1/write\"\nprotobuf_message = \"v1\"\n\n[[remote_write]]\nurl = \"http://mimir/push\"\nprotobuf_message = \"io.prometheus.write.v2.Request\"\n\n[[remote_write]]\nurl = \"http://other/push\"\n",
        )
        .unwrap();
        let cfg = config(&[
            "--config.file",
            file.to_str().unwrap(),
            "--remote-write.url=http://a/api/v1/write",
            "--remote-write.protobuf-message=v2",
        ])
        .unwrap();
        let messages: Vec<_> = cfg
            .remote_write
            .endpoints
            .iter()
            .map(|e| (e.url.as_str(), e.protobuf_message))
            .collect();
        assert_eq!(
            messages,
            [
                ("http://a/api/v1/write", ProtobufMessage::V2),
                ("http://prometheus/api/v1/write", ProtobufMessage::V1),
                ("http://mimir/push", ProtobufMessage::V2),
                ("http://other/push", ProtobufMessage::Auto),
            ]
        );
        let cfg = config(&["--remote-write.url=http://a/api/v1/write"]).unwrap();
        assert_eq!(
            cfg.remote_write.endpoints[0].protobuf_message,
            ProtobufMessage::Auto
        );
    }

    #[test]
    fn a_bad_protobuf_message_is_refused_naming_the_choices() {
        let err = parse_from(args(&["--remote-write.protobuf-message=v3"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown protobuf message \"v3\": expected v1"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exporter.toml");
        std::fs::write(
            &file,
            "[[remote_write]]\nurl = \"http://a\"\nprotobuf_message = \"2.0\"\n",
        )
        .unwrap();
        let err = parse_from(args(&["--config.file", file.to_str().unwrap()])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("[[remote_write]]") && text.contains("unknown protobuf message \"2.0\""),
            "{text}"
        );
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

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let argv = std::iter::once("dcmon-exporter")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        parse_from(argv).unwrap().into_config()
    }

    #[test]
    fn disable_defaults_keeps_only_named_collectors() {
        let cfg = config(&["--collector.disable-defaults", "--collector.meminfo"]).unwrap();
        assert_eq!(cfg.enabled, HashSet::from(["meminfo"]));
    }

    #[test]
    fn the_nvml_deadline_stays_inside_the_collector_timeout() {
        let err = config(&["--collector.gpu.nvml-deadline=0s"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--collector.gpu.nvml-deadline:"), "{err}");
        let ok = config(&["--collector.gpu.nvml-deadline=1500ms"]).unwrap();
        assert_eq!(ok.gpu.nvml_deadline, Duration::from_millis(1500));
        // A short collector timeout (node_exporter setups pass 1s) caps it
        // rather than refusing to start.
        let capped = config(&["--collector.timeout=1s"]).unwrap();
        assert_eq!(capped.gpu.nvml_deadline, Duration::from_millis(800));
        // The library's default (tests, the probe) is the flag's.
        assert_eq!(
            Config::default().gpu.nvml_deadline,
            crate::collector::gpu::DEFAULT_DEADLINE
        );
        assert_eq!(
            Config::default().gpu.max_processes,
            crate::collector::gpu::DEFAULT_MAX_PROCESSES
        );
    }

    #[test]
    fn bad_regexp_names_the_flag() {
        let err = config(&["--collector.hwmon.chip-include=("]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--collector.hwmon.chip-include:"),
            "{err}"
        );
    }

    #[test]
    fn command_line_endpoints_share_the_auth_flags() {
        let cfg = config(&[
            "--remote-write.url=http://a/api/v1/write",
            "--remote-write.url=http://b/api/v1/write",
            "--remote-write.basic-auth.username=fleet",
            "--remote-write.basic-auth.password-file=/etc/pw",
            "--remote-write.instance=gpu-01",
        ])
        .unwrap();
        let rw = &cfg.remote_write;
        assert_eq!(rw.endpoints.len(), 2);
        for endpoint in &rw.endpoints {
            assert!(
                matches!(&endpoint.auth, EndpointAuth::Basic { username, .. } if username == "fleet"),
                "{endpoint:?}"
            );
        }
        assert_eq!(rw.labels.instance, "gpu-01");
        assert_eq!(rw.labels.job, "dcmon");
    }

    #[test]
    fn no_url_means_no_endpoints_and_half_auth_is_refused() {
        assert!(config(&[]).unwrap().remote_write.endpoints.is_empty());
        let err = config(&[
            "--remote-write.url=http://a/api/v1/write",
            "--remote-write.basic-auth.username=fleet",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("password-file"), "{err}");
        let err = config(&["--remote-write.bearer-token-file=/etc/t"]).unwrap_err();
        assert!(err.to_string().starts_with("--remote-write.url:"), "{err}");
    }

    #[test]
    fn hardware_collector_flags() {
        let cfg = config(&[
            "--collector.ipmi.host=10.1.2.3",
            "--collector.ipmi.port=6230",
            "--collector.ipmi.user=ADMIN",
            "--collector.ipmi.password-file=/etc/dcmon/bmc",
            "--collector.ipmi.cache-ttl=2m",
            "--collector.nvme.timeout=2s",
            "--collector.apt.interval=1h",
        ])
        .unwrap();
        let remote = cfg.ipmi.remote.unwrap();
        assert_eq!(remote.host, "10.1.2.3");
        assert_eq!(remote.port, Some(6230));
        assert_eq!(remote.password_file, Some(PathBuf::from("/etc/dcmon/bmc")));
        assert_eq!(cfg.ipmi.cache_ttl, Duration::from_secs(120));
        assert_eq!(cfg.nvme.timeout, Duration::from_secs(2));
        assert_eq!(cfg.apt.interval, Duration::from_secs(3600));
        let local = config(&[]).unwrap();
        assert!(local.ipmi.remote.is_none());
        assert_eq!(local.apt.interval, Config::default().apt.interval);
        assert_eq!(
            local.ipmi.ipmitool.timeout,
            Config::default().ipmi.ipmitool.timeout
        );
    }

    #[test]
    fn remote_ipmi_credentials_need_a_host() {
        let argv = ["dcmon-exporter", "--collector.ipmi.user=ADMIN"]
            .into_iter()
            .map(Into::into)
            .collect();
        assert!(parse_from(argv).is_err());
    }
}
