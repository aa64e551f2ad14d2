//! The validated configuration every part of the exporter runs from.
//! Built from the parsed flags (and config file) before anything starts, so
//! a bad regexp or address is reported at start-up, not at the first scrape.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use dcmon_protocol::commands::FanMode;
use regex::Regex;

use crate::cli::Parsed;
use crate::collector;
use crate::roots::Roots;
use crate::shipper::{EndpointAuth, EndpointConfig, ShipperConfig, SpoolLimits, TargetLabels};

/// A device or chip filter with node_exporter's semantics: a name is skipped
/// when it matches `exclude`, or when `include` is set and it does not match.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// Only names matching this are kept, when set.
    pub include: Option<Regex>,
    /// Names matching this are skipped.
    pub exclude: Option<Regex>,
}

impl DeviceFilter {
    /// Whether `name` is filtered out.
    pub fn ignored(&self, name: &str) -> bool {
        self.exclude.as_ref().is_some_and(|re| re.is_match(name))
            || self.include.as_ref().is_some_and(|re| !re.is_match(name))
    }
}

/// Everything the exporter runs from.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port`; an empty host listens on every address.
    pub listen_address: String,
    /// Path of the metrics endpoint.
    pub telemetry_path: String,
    /// Where host files are read from.
    pub roots: Roots,
    /// Names of the enabled collectors.
    pub enabled: HashSet<&'static str>,
    /// Per-collector time limit within one scrape.
    pub collector_timeout: Duration,
    /// Mount points the filesystem collector skips.
    pub fs_mount_points_exclude: Regex,
    /// Filesystem types the filesystem collector skips.
    pub fs_types_exclude: Regex,
    /// How long a statfs may take before the mount is treated as stuck.
    pub fs_mount_timeout: Duration,
    /// Block devices the diskstats collector skips.
    pub diskstats_device_exclude: Regex,
    /// Network devices for netdev.
    pub netdev_devices: DeviceFilter,
    /// Network devices netclass skips.
    pub netclass_ignored_devices: Regex,
    /// Leave out `node_network_speed_bytes` where the kernel reports no
    /// speed (-1), instead of exporting -125000 as node_exporter 1.x does.
    pub netclass_ignore_invalid_speed: bool,
    /// Devices whose ARP entries are counted.
    pub arp_devices: DeviceFilter,
    /// Directories whose `*.prom` files the textfile collector reads.
    pub textfile_directories: Vec<PathBuf>,
    /// hwmon chips to read.
    pub hwmon_chips: DeviceFilter,
    /// The remote-write shipper; it runs only when it has endpoints.
    pub remote_write: ShipperConfig,
    /// This host's fan control: its ipmitool and its rules.
    pub fans: FanConfig,
    /// Whether `reboot` commands from the receiver may run.
    pub allow_reboot: bool,
    /// How the ipmi collector reaches its BMC.
    pub ipmi: IpmiConfig,
    /// nvme-cli program and time limit.
    pub nvme: ToolConfig,
    /// apt programs, interval and time limit.
    pub apt: AptConfig,
}

/// An external program and how long one run of it may take.
#[derive(Debug, Clone)]
pub struct ToolConfig {
    /// Program name (looked up on PATH) or path.
    pub program: PathBuf,
    /// Hard limit per run; the tool is killed after it.
    pub timeout: Duration,
}

/// Fan control's settings.
#[derive(Debug, Clone)]
pub struct FanConfig {
    /// ipmitool and its per-run limit.
    pub ipmitool: ToolConfig,
    /// The host's rules.
    pub policy: FanPolicy,
}

/// The host's fan rules. Plain settings, so they live here with the rest
/// of the configuration; `fans` enforces them (and re-exports the type).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FanPolicy {
    /// Lowest duty accepted, percent.
    pub min_duty: u8,
    /// Mode `restore_auto` and shutdown return to.
    pub default_mode: FanMode,
    /// Wait after a mode change before the BMC takes duty commands.
    pub settle: Duration,
    /// The thermal guard trips this many °C below a sensor's critical
    /// threshold (0: at the threshold).
    pub guard_margin: f64,
}

/// The ipmi collector's settings.
#[derive(Debug, Clone)]
pub struct IpmiConfig {
    /// ipmitool and its per-run limit.
    pub ipmitool: ToolConfig,
    /// A remote BMC (lanplus); `None` for the local one.
    pub remote: Option<IpmiRemote>,
    /// How long readings are reused.
    pub cache_ttl: Duration,
}

/// A BMC reached over the network with `-I lanplus`.
#[derive(Debug, Clone)]
pub struct IpmiRemote {
    /// Host name or address (`-H`).
    pub host: String,
    /// UDP port (`-p`), when not 623.
    pub port: Option<u16>,
    /// RMCP+ cipher suite (`-C`), when not negotiated.
    pub cipher_suite: Option<u8>,
    /// User (`-U`).
    pub user: Option<String>,
    /// Password file (`-f`).
    pub password_file: Option<PathBuf>,
}

/// The apt collector's settings.
#[derive(Debug, Clone)]
pub struct AptConfig {
    /// apt-get and its per-run limit.
    pub apt_get: ToolConfig,
    /// apt-mark (held packages); shares apt-get's limit.
    pub apt_mark: PathBuf,
    /// apt (`apt list --installed`, for obsolete packages); same limit.
    pub apt: PathBuf,
    /// How often the background run repeats.
    pub interval: Duration,
}

impl Default for Config {
    /// node_exporter's defaults with every default collector enabled.
    fn default() -> Self {
        Self {
            listen_address: ":9870".into(),
            telemetry_path: "/metrics".into(),
            roots: Roots::default(),
            enabled: collector::ALL
                .iter()
                .filter(|c| c.default_enabled)
                .map(|c| c.name)
                .collect(),
            collector_timeout: Duration::from_secs(8),
            fs_mount_points_exclude: Regex::new(
                collector::filesystem::DEFAULT_MOUNT_POINTS_EXCLUDE,
            )
            .expect("valid default"),
            fs_types_exclude: Regex::new(collector::filesystem::DEFAULT_FS_TYPES_EXCLUDE)
                .expect("valid default"),
            fs_mount_timeout: Duration::from_secs(5),
            diskstats_device_exclude: Regex::new(collector::diskstats::DEFAULT_DEVICE_EXCLUDE)
                .expect("valid default"),
            netdev_devices: DeviceFilter::default(),
            netclass_ignored_devices: Regex::new("^$").expect("valid default"),
            netclass_ignore_invalid_speed: false,
            arp_devices: DeviceFilter::default(),
            textfile_directories: Vec::new(),
            hwmon_chips: DeviceFilter::default(),
            remote_write: ShipperConfig::default(),
            fans: FanConfig {
                ipmitool: ToolConfig {
                    program: "ipmitool".into(),
                    timeout: Duration::from_secs(10),
                },
                policy: FanPolicy {
                    min_duty: 25,
                    default_mode: FanMode::Optimal,
                    settle: Duration::from_secs(3),
                    guard_margin: 0.0,
                },
            },
            allow_reboot: false,
            ipmi: IpmiConfig {
                ipmitool: ToolConfig {
                    program: "ipmitool".into(),
                    timeout: Duration::from_secs(20),
                },
                remote: None,
                cache_ttl: Duration::from_secs(30),
            },
            nvme: ToolConfig {
                program: "nvme".into(),
                timeout: Duration::from_secs(5),
            },
            apt: AptConfig {
                apt_get: ToolConfig {
                    program: "apt-get".into(),
                    timeout: Duration::from_secs(120),
                },
                apt_mark: "apt-mark".into(),
                apt: "apt".into(),
                interval: Duration::from_secs(15 * 60),
            },
        }
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

impl Config {
    /// Validates parsed flags into a configuration.
    pub fn from_parsed(parsed: Parsed) -> Result<Self, ConfigError> {
        let remote_write = remote_write(&parsed)?;
        let Parsed { cli, toggles, .. } = parsed;
        let fans = cli.fans.config();
        if !cli.telemetry_path.starts_with('/') {
            return Err(ConfigError {
                flag: "web.telemetry-path",
                msg: "must start with '/'".into(),
            });
        }
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
        Ok(Self {
            listen_address: cli.listen_address,
            telemetry_path: cli.telemetry_path,
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
        })
    }

    /// Whether the named collector runs.
    pub fn collector_enabled(&self, name: &str) -> bool {
        self.enabled.contains(name)
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
        .map(|url| EndpointConfig::new(url.clone(), cli_auth.clone()))
        .collect();
    for table in &parsed.file_endpoints {
        let auth = match (&table.bearer_token_file, &table.basic_auth) {
            (None, None) => EndpointAuth::None,
            (Some(file), None) => EndpointAuth::Bearer(file.clone()),
            (None, Some(basic)) => EndpointAuth::Basic {
                username: basic.username.clone(),
                password_file: basic.password_file.clone(),
            },
            (Some(_), Some(_)) => {
                return Err(fail(
                    "config.file",
                    &format!(
                        "[[remote_write]] {}: bearer_token_file and basic_auth exclude each other",
                        table.url
                    ),
                ));
            }
        };
        endpoints.push(EndpointConfig::new(table.url.clone(), auth));
    }
    let defaults = ShipperConfig::default();
    Ok(ShipperConfig {
        interval: cli.remote_write_interval,
        labels: TargetLabels {
            instance: cli
                .remote_write_instance
                .clone()
                .unwrap_or(defaults.labels.instance),
            job: defaults.labels.job,
            external: cli.remote_write_external_labels.clone(),
        },
        endpoints,
        state_dir: cli.state_dir.clone(),
        spool: SpoolLimits {
            max_bytes: cli.remote_write_spool_max_bytes,
            max_age: cli.remote_write_spool_max_age,
        },
        timeout: cli.remote_write_timeout,
        ..defaults
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let argv = std::iter::once("dcmon-exporter")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        Config::from_parsed(cli::parse_from(argv).unwrap())
    }

    #[test]
    fn disable_defaults_keeps_only_named_collectors() {
        let cfg = config(&["--collector.disable-defaults", "--collector.meminfo"]).unwrap();
        assert_eq!(cfg.enabled, HashSet::from(["meminfo"]));
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
        assert!(cli::parse_from(argv).is_err());
    }

    #[test]
    fn device_filter_follows_node_exporter() {
        let filter = DeviceFilter {
            include: Some(Regex::new("^eth").unwrap()),
            exclude: Some(Regex::new("eth1").unwrap()),
        };
        assert!(!filter.ignored("eth0"));
        assert!(filter.ignored("eth1"));
        assert!(filter.ignored("lo"));
    }
}
