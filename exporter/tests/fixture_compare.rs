//! Runs every OS collector against node_exporter's own fixture trees and
//! compares each overlapping metric family with node_exporter's expected
//! output for the same trees: same names, types, HELP, label sets and values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dcmon_exporter::collector::{Scraper, Services};
use dcmon_exporter::config::{Config, DeviceFilter};
use dcmon_exporter::exposition::encode;
use dcmon_exporter::roots::Roots;
use dcmon_protocol::exposition::Format;
use regex::Regex;

use crate::common::{ParsedFamily, fixtures, parse_exposition, unpack_ttar};

/// Families both exporters emit whose differences are deliberate; each one
/// is explained in the README's compatibility section.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    (
        "node_scrape_collector_success",
        "each exporter lists its own collectors",
    ),
    (
        "node_scrape_collector_duration_seconds",
        "timings differ run to run",
    ),
    (
        "node_time_seconds",
        "the clock: node_exporter's test drops it from the expected output",
    ),
];

/// The node_exporter fixture trees, with `sys.ttar` and `udev.ttar`
/// unpacked once per test run (unpacking 2,000 files takes seconds), and
/// the flags node_exporter's end-to-end test used.
pub fn node_exporter_config() -> Config {
    static UNPACKED: OnceLock<PathBuf> = OnceLock::new();
    let base = fixtures().join("procfs/node_exporter");
    let tree = UNPACKED.get_or_init(|| {
        let dest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node_exporter_fixture");
        let _ = std::fs::remove_dir_all(&dest);
        unpack_ttar(&base.join("sys.ttar"), &dest);
        unpack_ttar(&base.join("udev.ttar"), &dest);
        dest
    });
    Config {
        roots: Roots {
            procfs: base.join("proc"),
            sysfs: tree.join("sys"),
            rootfs: base.clone(),
            udev_data: tree.join("udev/data"),
        },
        netdev_devices: DeviceFilter {
            include: Some(Regex::new("lo").unwrap()),
            exclude: None,
        },
        netclass_ignored_devices: Regex::new("(dmz|int)").unwrap(),
        netclass_ignore_invalid_speed: true,
        arp_devices: DeviceFilter {
            include: None,
            exclude: Some(Regex::new("nope").unwrap()),
        },
        hwmon_chips: DeviceFilter {
            include: Some(
                Regex::new("(applesmc|asus_nb_wmi|coretemp|hwmon4|ieee80211|nct6779)").unwrap(),
            ),
            exclude: None,
        },
        ..Config::default()
    }
}

/// One scrape of `config`, encoded as text 0.0.4 and parsed back.
pub fn scrape_families(config: &Config) -> BTreeMap<String, ParsedFamily> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut snapshot = runtime.block_on(Scraper::new(config, &Services::for_host(config)).scrape());
    snapshot.sort();
    parse_exposition(&encode(snapshot, Format::Text))
}

#[test]
fn os_collectors_match_node_exporter_expected_output() {
    let ours = scrape_families(&node_exporter_config());
    let expected_text =
        std::fs::read_to_string(fixtures().join("procfs/node_exporter/e2e-output.txt")).unwrap();
    let expected = parse_exposition(&expected_text);

    let mut compared = Vec::new();
    let mut problems = Vec::new();
    for (name, family) in &ours {
        let Some(theirs) = expected.get(name) else {
            continue;
        };
        if DELIBERATE_DIFFERENCES.iter().any(|(n, _)| n == name) {
            continue;
        }
        compared.push(name.clone());
        if family.kind != theirs.kind {
            problems.push(format!(
                "{name}: type {} vs node_exporter {}",
                family.kind, theirs.kind
            ));
        }
        if family.help != theirs.help {
            problems.push(format!(
                "{name}: help {:?} vs node_exporter {:?}",
                family.help, theirs.help
            ));
        }
        for (labels, value) in &family.series {
            match theirs.series.get(labels) {
                None => problems.push(format!("{name}{{{labels}}}: not in node_exporter's output")),
                Some(v) if v.to_bits() != value.to_bits() => {
                    problems.push(format!("{name}{{{labels}}}: {value} vs node_exporter {v}"))
                }
                Some(_) => {}
            }
        }
        for labels in theirs
            .series
            .keys()
            .filter(|l| !family.series.contains_key(*l))
        {
            problems.push(format!(
                "{name}{{{labels}}}: missing (node_exporter has it)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Guard against a vacuous pass: every collector with a fixture is compared.
    for must in [
        "node_cpu_seconds_total",
        "node_cpu_guest_seconds_total",
        "node_memory_MemTotal_bytes",
        "node_load1",
        "node_disk_read_bytes_total",
        "node_disk_info",
        "node_network_up",
        "node_network_info",
        "node_hwmon_temp_celsius",
        "node_hwmon_chip_names",
        "node_pressure_io_stalled_seconds_total",
        "node_boot_time_seconds",
        "node_intr_total",
        "node_filefd_allocated",
        "node_edac_correctable_errors_total",
        "node_os_info",
        "node_time_clocksource_current_info",
        "node_vmstat_pgfault",
        "node_sockstat_TCP_mem_bytes",
        "node_sockstat_sockets_used",
        "node_netstat_Tcp_InErrs",
        "node_netstat_Ip6_InOctets",
        "node_netstat_TcpExt_ListenDrops",
        "node_nf_conntrack_entries",
        "node_nf_conntrack_entries_limit",
        "node_nf_conntrack_stat_ignore",
        "node_nf_conntrack_stat_search_restart",
        "node_entropy_available_bits",
        "node_entropy_pool_size_bits",
        "node_softnet_processed_total",
        "node_softnet_dropped_total",
        "node_softnet_times_squeezed_total",
        "node_softnet_cpu_collision_total",
        "node_softnet_received_rps_total",
        "node_softnet_flow_limit_count_total",
        "node_softnet_backlog_len",
        "node_arp_entries",
        "node_udp_queues",
        "node_network_speed_bytes",
    ] {
        assert!(
            compared.iter().any(|n| n == must),
            "{must} was not compared"
        );
    }
}

#[test]
fn every_collector_succeeds_on_the_fixture_tree() {
    let ours = scrape_families(&node_exporter_config());
    let success = &ours["node_scrape_collector_success"].series;
    for (labels, value) in success {
        // The hardware collectors read tools and drivers, not this tree;
        // tests/{apt,gpu,ipmi,nvme}.rs cover them with stand-ins.
        if ["apt", "gpu", "ipmi", "nvme"]
            .iter()
            .any(|c| labels.contains(&format!("\"{c}\"")))
        {
            continue;
        }
        // This tree has no /proc/net/dev: netdev fails there, and only there.
        let expected = if labels.contains("\"netdev\"") {
            0.0
        } else {
            1.0
        };
        assert_eq!(
            *value, expected,
            "node_scrape_collector_success{{{labels}}}"
        );
    }
    assert_eq!(success.len(), dcmon_exporter::collector::ALL.len());
}

#[test]
fn filesystem_skips_pseudo_filesystems_like_node_exporter() {
    let tmp = tempfile::tempdir().unwrap();
    let config = node_exporter_config();
    let collector = dcmon_exporter::collector::filesystem::new(&config);
    let points: Vec<String> = collector
        .mounts()
        .unwrap()
        .into_iter()
        .map(|m| m.mountpoint)
        .collect();
    let kubelet = "/var/lib/kubelet/plugins/kubernetes.io/vsphere-volume/mounts/[vsanDatastore]";
    let vmdk = "bafb9e5a-8856-7e6c-699c-801844e77a4a/kubernetes-dynamic-pvc-3eba5bba-48a3-11e8-89ab-005056b92113.vmdk";
    assert_eq!(
        points,
        vec![
            "/run".to_owned(),
            "/".to_owned(),
            "/run/lock".to_owned(),
            "/boot".to_owned(),
            "/run/user/1000".to_owned(),
            "/run/user/1000/gvfs".to_owned(),
            format!("{kubelet} {vmdk}"),
            format!("{kubelet}\t{vmdk}"),
        ]
    );
    // Under an empty root only `/` exists: statvfs fails for every other
    // mount, which is reported with device_error 1 and no size.
    let empty_root = tmp.path().join("empty-root");
    std::fs::create_dir(&empty_root).unwrap();
    let mut config = config;
    config.roots.rootfs = empty_root;
    config.enabled = ["filesystem"].into();
    let families = scrape_families(&config);
    let errors = &families["node_filesystem_device_error"].series;
    assert_eq!(errors.len(), 8);
    for (labels, value) in errors {
        let expected = if labels.contains("mountpoint=\"/\"") {
            0.0
        } else {
            1.0
        };
        assert_eq!(*value, expected, "{labels}");
    }
    let sizes = &families["node_filesystem_size_bytes"].series;
    assert_eq!(
        sizes.keys().collect::<Vec<_>>(),
        ["device=\"/dev/dm-2\",fstype=\"ext4\",mountpoint=\"/\""]
    );
}

#[test]
fn netdev_reports_every_proc_net_dev_column() {
    let proc = fixtures().join("procfs/local_debian12_kernel6.18_vm/proc");
    let families = scrape_families(&Config {
        roots: Roots {
            procfs: proc.clone(),
            ..Config::default().roots
        },
        enabled: ["netdev"].into(),
        ..Config::default()
    });
    let text = std::fs::read_to_string(proc.join("net/dev")).unwrap();
    let columns = [
        "receive_bytes",
        "receive_packets",
        "receive_errs",
        "receive_drop",
        "receive_fifo",
        "receive_frame",
        "receive_compressed",
        "receive_multicast",
        "transmit_bytes",
        "transmit_packets",
        "transmit_errs",
        "transmit_drop",
        "transmit_fifo",
        "transmit_colls",
        "transmit_carrier",
        "transmit_compressed",
    ];
    let mut checked = 0;
    for line in text.lines().skip(2) {
        let (device, values) = line.split_once(':').unwrap();
        let device = device.trim();
        for (column, raw) in columns.iter().zip(values.split_ascii_whitespace()) {
            let series = &families[&format!("node_network_{column}_total")].series;
            assert_eq!(
                series[&format!("device={device:?}")],
                raw.parse::<f64>().unwrap(),
                "{device} {column}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * 16);
}

#[test]
fn netclass_exports_unknown_speed_as_node_exporter_1x_does() {
    // bond0 in the fixture tree reports speed -1 (unknown).
    let default = scrape_families(&Config {
        enabled: ["netclass"].into(),
        netclass_ignore_invalid_speed: false,
        ..node_exporter_config()
    });
    let speeds = &default["node_network_speed_bytes"].series;
    assert_eq!(speeds[r#"device="bond0""#], -125000.0);
    assert_eq!(speeds[r#"device="eth0""#], 125000000.0);
    let ignoring = scrape_families(&Config {
        enabled: ["netclass"].into(),
        ..node_exporter_config()
    });
    assert!(
        !ignoring["node_network_speed_bytes"]
            .series
            .contains_key(r#"device="bond0""#)
    );
}

#[test]
fn netdev_reads_nohandler_from_sysfs() {
    let proc = fixtures().join("procfs/local_debian12_kernel6.18_vm/proc");
    let sys = tempfile::tempdir().unwrap();
    // The kernel's statistics files: one decimal number and a newline; lo
    // has none here, as a device without the attribute.
    for (device, value) in [("eth0", "17\n"), ("ifb0", "0\n"), ("ifb1", "0\n")] {
        let dir = sys.path().join("class/net").join(device).join("statistics");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rx_nohandler"), value).unwrap();
    }
    let families = scrape_families(&Config {
        roots: Roots {
            procfs: proc,
            sysfs: sys.path().to_owned(),
            ..Config::default().roots
        },
        enabled: ["netdev"].into(),
        netdev_devices: DeviceFilter {
            include: None,
            exclude: Some(Regex::new("^ifb1$").unwrap()),
        },
        ..Config::default()
    });
    let family = &families["node_network_receive_nohandler_total"];
    assert_eq!(family.kind, "counter");
    assert_eq!(family.help, "Network device statistic receive_nohandler.");
    assert_eq!(
        family.series,
        BTreeMap::from([
            (r#"device="eth0""#.to_owned(), 17.0),
            (r#"device="ifb0""#.to_owned(), 0.0),
        ])
    );
}

#[test]
fn conntrack_without_the_module_reports_no_data() {
    // The local capture has no /proc/sys/net/netfilter: conntrack is not
    // loaded there, which is success 0 and no families, not an error.
    let families = scrape_families(&Config {
        roots: Roots {
            procfs: fixtures().join("procfs/local_debian12_kernel6.18_vm/proc"),
            ..Config::default().roots
        },
        enabled: ["conntrack", "softnet"].into(),
        ..Config::default()
    });
    assert!(!families.contains_key("node_nf_conntrack_entries"));
    let success = &families["node_scrape_collector_success"].series;
    assert_eq!(success[r#"collector="conntrack""#], 0.0);
}

#[test]
fn timex_reads_the_running_kernel() {
    let families = scrape_families(&Config {
        enabled: ["timex"].into(),
        ..Config::default()
    });
    let sync = families["node_timex_sync_status"].series[""];
    assert!(sync == 0.0 || sync == 1.0, "{sync}");
    let tick = families["node_timex_tick_seconds"].series[""];
    assert!((0.001..=0.01).contains(&tick), "{tick}");
    assert_eq!(families["node_timex_pps_error_total"].kind, "counter");
    assert!(families["node_timex_maxerror_seconds"].series[""] >= 0.0);
}
