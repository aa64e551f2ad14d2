//! The validated configuration every part of the exporter runs from: plain
//! data, no live services and no I/O. `cli` builds it from the flags (and
//! config file) before anything starts, so a bad regexp or address is
//! reported at start-up, not at the first scrape; the defaults are the
//! flags' defaults, written once in their definitions.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use dcmon_protocol::commands::FanMode;
use regex::Regex;

use crate::roots::Roots;
use crate::shipper::ShipperConfig;

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
    /// `--web.config.file`: TLS, basic auth and headers of the server.
    pub web_config_file: Option<PathBuf>,
    /// `--server-ca-file`: what the receiver's chain must lead to.
    pub server_ca_file: Option<PathBuf>,
    /// `--insecure-skip-verify`: no chain check of the receiver.
    pub insecure_skip_verify: bool,
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
    /// The gpu collector's settings.
    pub gpu: GpuConfig,
}

/// The gpu collector's settings.
#[derive(Debug, Clone)]
pub struct GpuConfig {
    /// How long one NVML read is waited for before NVML counts as
    /// unresponsive; at most 80 % of the collector timeout.
    pub nvml_deadline: Duration,
    /// Most compute processes exported per scrape.
    pub max_processes: usize,
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
    pub rules: FanRules,
    /// How often fan safety and the fan policy run.
    pub interval: Duration,
    /// `--fans.policy-file`: the fan policy to run from start-up.
    pub policy_file: Option<PathBuf>,
}

/// The host's fan rules. Plain settings, so they live here with the rest
/// of the configuration; `fans` enforces them (and re-exports the type).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FanRules {
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

impl Config {
    /// Whether the named collector runs.
    pub fn collector_enabled(&self, name: &str) -> bool {
        self.enabled.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
