//! Checks against the real Prometheus tools on this machine: `promtool check
//! metrics` on the exporter's live output, and Debian's node_exporter run
//! side by side, whose stable series must agree with ours.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::parse_exposition;
use crate::common::process::{Server, get_text, which};

/// Remarks promtool makes on node_exporter's own output for names dcmon
/// keeps for compatibility: `/proc/meminfo` and `/proc/net/{netstat,snmp}`
/// field names are CamelCase.
const ACCEPTED_REMARKS: &[&str] = &[
    r"^node_memory_[A-Za-z0-9_]+ metric names should be written in 'snake_case' not 'camelCase'$",
    r"^node_netstat_[A-Za-z0-9_]+ metric names should be written in 'snake_case' not 'camelCase'$",
];

#[test]
fn live_output_passes_promtool_check_metrics() {
    let promtool =
        which("promtool").expect("promtool is not installed (apt-get install prometheus)");
    let exporter = Server::exporter(&[]);
    let text = get_text(&exporter.url("/metrics"));
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let remarks = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let accepted: Vec<regex::Regex> = ACCEPTED_REMARKS
        .iter()
        .map(|r| regex::Regex::new(r).unwrap())
        .collect();
    let unexpected: Vec<&str> = remarks
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !accepted.iter().any(|re| re.is_match(l)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool remarks:\n{}",
        unexpected.join("\n")
    );
    // The accepted exceptions really are exercised, so the list stays honest.
    assert!(remarks.contains("node_memory_MemTotal_bytes"), "{remarks}");
    assert!(remarks.contains("node_netstat_Tcp_InErrs"), "{remarks}");
    assert!(remarks.contains("node_netstat_Tcp_InErrs"), "{remarks}");
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
