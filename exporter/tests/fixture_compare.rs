//! Runs every OS collector against node_exporter's own fixture trees and
//! compares each overlapping metric family with node_exporter's expected
//! output for the same trees: same names, types, HELP, label sets and values.

use std::collections::BTreeMap;
use std::path::Path;

use dcmon_exporter::collector::Scraper;
use dcmon_exporter::config::{Config, DeviceFilter};
use dcmon_exporter::exposition::{Format, encode};
use dcmon_exporter::roots::Roots;
use regex::Regex;

use crate::common::{ParsedFamily, fixtures, parse_exposition, unpack_ttar};

/// Families both exporters emit whose differences are deliberate; each one
/// is explained in the README's compatibility section.
const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    ("node_scrape_collector_success", "each exporter lists its own collectors"),
    ("node_scrape_collector_duration_seconds", "timings differ run to run"),
    ("node_time_seconds", "the clock: node_exporter's test drops it from the expected output"),
];

/// The node_exporter fixture trees, unpacked, with the flags node_exporter's
/// end-to-end test used.
pub fn node_exporter_config(tmp: &Path) -> Config {
    let base = fixtures().join("procfs/node_exporter");
    unpack_ttar(&base.join("sys.ttar"), tmp);
    unpack_ttar(&base.join("udev.ttar"), tmp);
    Config {
        roots: Roots {
            procfs: base.join("proc"),
            sysfs: tmp.join("sys"),
            rootfs: base.clone(),
            udev_data: tmp.join("udev/data"),
        },
        netdev_devices: DeviceFilter {
            include: Some(Regex::new("lo").unwrap()),
            exclude: None,
        },
        netclass_ignored_devices: Regex::new("(dmz|int)").unwrap(),
        hwmon_chips: DeviceFilter {
            include: Some(Regex::new("(applesmc|asus_nb_wmi|coretemp|hwmon4|ieee80211|nct6779)").unwrap()),
            exclude: None,
        },
        ..Config::default()
    }
}

/// One scrape of `config`, encoded as text 0.0.4 and parsed back.
pub fn scrape_families(config: &Config) -> BTreeMap<String, ParsedFamily> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut snapshot = runtime.block_on(Scraper::new(config).scrape());
    snapshot.sort();
    parse_exposition(&encode(snapshot, Format::Text))
}

#[test]
fn os_collectors_match_node_exporter_expected_output() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = scrape_families(&node_exporter_config(tmp.path()));
    let expected_text = std::fs::read_to_string(fixtures().join("procfs/node_exporter/e2e-output.txt")).unwrap();
    let expected = parse_exposition(&expected_text);

    let mut compared = Vec::new();
    let mut problems = Vec::new();
    for (name, family) in &ours {
        let Some(theirs) = expected.get(name) else { continue };
        if DELIBERATE_DIFFERENCES.iter().any(|(n, _)| n == name) {
            continue;
        }
        compared.push(name.clone());
        if family.kind != theirs.kind {
            problems.push(format!("{name}: type {} vs node_exporter {}", family.kind, theirs.kind));
        }
        if family.help != theirs.help {
            problems.push(format!("{name}: help {:?} vs node_exporter {:?}", family.help, theirs.help));
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
        for labels in theirs.series.keys().filter(|l| !family.series.contains_key(*l)) {
            problems.push(format!("{name}{{{labels}}}: missing (node_exporter has it)"));
        }
    }
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems.join("\n"));
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
    ] {
        assert!(compared.iter().any(|n| n == must), "{must} was not compared");
    }
}
