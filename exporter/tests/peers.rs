//! Checks against the real Prometheus tools on this machine: `promtool check
//! metrics` on the exporter's live output, and Debian's node_exporter run
//! side by side, whose stable series must agree with ours.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::parse_exposition;
use crate::common::process::{Server, get_text, promtool_check_metrics};

/// Remarks promtool makes on node_exporter's own output for names dcmon
/// keeps for compatibility: `/proc/meminfo` and `/proc/net/{netstat,snmp}`
/// field names are CamelCase; the entropy pool is counted in bits.
#[test]
fn live_output_passes_promtool_check_metrics() {
    let exporter = Server::exporter(&[]);
    let text = get_text(&exporter.url("/metrics"));
    let remarks = promtool_check_metrics(&text);
    // The accepted exceptions really are exercised, so the list stays honest.
    assert!(remarks.contains("node_memory_MemTotal_bytes"), "{remarks}");
    assert!(remarks.contains("node_netstat_Tcp_InErrs"), "{remarks}");
    assert!(remarks.contains("node_entropy_available_bits"), "{remarks}");
}

fn series(text: &str, name: &str) -> BTreeMap<String, f64> {
    parse_exposition(text)
        .remove(name)
        .map(|f| f.series)
        .unwrap_or_default()
}

#[test]
fn stable_series_agree_with_node_exporter() {
    // Debian's node_exporter 1.5 has other defaults than current upstream,
    // which dcmon follows (more excluded mount points, `lo` out of netdev,
    // zram kept in diskstats): give both the same settings.
    let settings = [
        "--collector.filesystem.mount-points-exclude=^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
        "--collector.netdev.device-exclude=^lo$",
        r"--collector.diskstats.device-exclude=^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$",
    ];
    let ours_server = Server::exporter(&settings);
    let theirs_server = Server::node_exporter(&settings);
    let ours = get_text(&ours_server.url("/metrics"));
    let theirs = get_text(&theirs_server.url("/metrics"));

    assert_eq!(
        series(&ours, "node_memory_MemTotal_bytes"),
        series(&theirs, "node_memory_MemTotal_bytes")
    );
    assert_eq!(
        series(&ours, "node_memory_SwapTotal_bytes"),
        series(&theirs, "node_memory_SwapTotal_bytes")
    );
    assert_eq!(
        series(&ours, "node_uname_info"),
        series(&theirs, "node_uname_info")
    );
    assert_eq!(
        series(&ours, "node_boot_time_seconds"),
        series(&theirs, "node_boot_time_seconds")
    );
    assert_eq!(
        series(&ours, "node_filefd_maximum"),
        series(&theirs, "node_filefd_maximum")
    );
    assert_eq!(
        series(&ours, "node_os_info"),
        series(&theirs, "node_os_info")
    );

    let cpus = |text: &str| -> BTreeSet<String> {
        series(text, "node_cpu_seconds_total")
            .keys()
            .map(|labels| labels.split(',').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(cpus(&ours), cpus(&theirs));
    assert!(!cpus(&ours).is_empty());

    // Same mounts, same sizes (free space moves; size and inode totals do not).
    for name in [
        "node_filesystem_size_bytes",
        "node_filesystem_files",
        "node_filesystem_readonly",
    ] {
        let a = series(&ours, name);
        let b = series(&theirs, name);
        assert!(!a.is_empty(), "{name} missing");
        assert_eq!(a, b, "{name}");
    }
    // Same interfaces and block devices.
    for name in [
        "node_network_receive_bytes_total",
        "node_network_up",
        "node_disk_reads_completed_total",
    ] {
        let a: BTreeSet<_> = series(&ours, name).into_keys().collect();
        let b: BTreeSet<_> = series(&theirs, name).into_keys().collect();
        assert_eq!(a, b, "{name} series");
    }
}

/// Referenced names dcmon exposes here and Debian's node_exporter 1.5 does
/// not: its defaults gained them later (current upstream's expected output
/// in `fixtures/procfs/node_exporter/e2e-output.txt` has every one).
const NEWER_THAN_DEBIAN: &[&str] = &[
    "node_netstat_TcpExt_TCPOFOQueue",
    "node_netstat_TcpExt_TCPRcvQDrop",
    "node_softnet_flow_limit_count_total",
    "node_softnet_received_rps_total",
];

#[test]
fn referenced_names_match_node_exporter() {
    let list =
        std::fs::read_to_string(crate::common::fixtures().join("peers/node_names.txt")).unwrap();
    let referenced: BTreeSet<&str> = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(referenced.len(), 234);
    let ours_server = Server::exporter(&[]);
    let theirs_server = Server::node_exporter(&[]);
    let exposed = |text: &str| -> BTreeSet<String> {
        parse_exposition(text)
            .into_iter()
            .filter(|(_, f)| !f.series.is_empty())
            .map(|(name, _)| name)
            .filter(|name| referenced.contains(name.as_str()))
            .collect()
    };
    let ours = exposed(&get_text(&ours_server.url("/metrics")));
    let mut theirs = exposed(&get_text(&theirs_server.url("/metrics")));
    theirs.remove("node_exporter_build_info");
    let missing: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        missing.is_empty(),
        "node_exporter has, dcmon lacks: {missing:?}"
    );
    let extra: Vec<_> = ours
        .difference(&theirs)
        .filter(|n| !NEWER_THAN_DEBIAN.contains(&n.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "dcmon has, node_exporter lacks: {extra:?}"
    );
    // The clock and conntrack alerts' inputs are among them.
    for name in [
        "node_timex_sync_status",
        "node_timex_offset_seconds",
        "node_timex_maxerror_seconds",
        "node_nf_conntrack_entries",
        "node_nf_conntrack_entries_limit",
        "node_textfile_scrape_error",
    ] {
        assert!(ours.contains(name), "{name}");
    }
}
