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
