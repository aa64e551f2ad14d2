//! Truncated or garbage /proc files: the collector that reads them reports
//! `node_scrape_collector_success 0` and logs why; the scrape itself, and
//! every other collector, still succeeds.

use std::path::Path;

use crate::common::fixtures;
use crate::common::process::{Server, get_text};

/// `(file under procfs, collectors that read it)`.
const FILES: &[(&str, &[&str])] = &[
    ("stat", &["cpu", "stat"]),
    ("meminfo", &["meminfo"]),
    ("loadavg", &["loadavg"]),
    ("diskstats", &["diskstats"]),
    ("net/dev", &["netdev"]),
    ("pressure/cpu", &["pressure"]),
    ("sys/fs/file-nr", &["filefd"]),
    ("1/mountinfo", &["filesystem"]),
    ("vmstat", &["vmstat"]),
    ("net/netstat", &["netstat"]),
    ("net/sockstat", &["sockstat"]),
    ("net/softnet_stat", &["softnet"]),
    ("net/arp", &["arp"]),
    ("net/stat/nf_conntrack", &["conntrack"]),
];

/// A copy of the real Linux 6.18 /proc snapshot, plus a mount table,
/// sockstat, softnet, ARP and conntrack files.
fn copy_proc_tree(dest: &Path) {
    let source = fixtures().join("procfs/local_debian12_kernel6.18_vm/proc");
    copy_dir(&source, dest);
    // The VM snapshot lacks these: borrow node_exporter's.
    let node_exporter = fixtures().join("procfs/node_exporter/proc");
    std::fs::create_dir_all(dest.join("1")).unwrap();
    std::fs::copy(node_exporter.join("1/mountinfo"), dest.join("1/mountinfo")).unwrap();
    for file in [
        "net/sockstat",
        "net/softnet_stat",
        "net/arp",
        "net/stat/nf_conntrack",
        "sys/net/netfilter/nf_conntrack_count",
        "sys/net/netfilter/nf_conntrack_max",
    ] {
        std::fs::create_dir_all(dest.join(file).parent().unwrap()).unwrap();
        std::fs::copy(node_exporter.join(file), dest.join(file)).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn success(text: &str, collector: &str) -> f64 {
    let prefix = format!("node_scrape_collector_success{{collector=\"{collector}\"}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no success line for {collector}"));
    line[prefix.len()..].parse().unwrap()
}

/// Corrupts every file with `damage`, scrapes once, checks the outcome.
fn scrape_with_damaged_files(damage: fn(&[u8]) -> Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let proc = tmp.path().join("proc");
    copy_proc_tree(&proc);
    for (file, _) in FILES {
        let path = proc.join(file);
        let original = std::fs::read(&path).unwrap();
        std::fs::write(&path, damage(&original)).unwrap();
    }
    let exporter = Server::exporter(&["--path.procfs", proc.to_str().unwrap()]);
    let text = get_text(&exporter.url("/metrics"));
    for (file, collectors) in FILES {
        for collector in *collectors {
            assert_eq!(
                success(&text, collector),
                0.0,
                "{collector} reading damaged {file}"
            );
            let logged = exporter.log_lines_containing(&format!("collector={collector} "));
            assert!(
                logged
                    .iter()
                    .any(|l| l.contains("collector failed") && l.contains(file)),
                "no log line naming {file} for {collector}:\n{}",
                exporter.log_text()
            );
        }
    }
    for healthy in ["uname", "os", "time"] {
        assert_eq!(
            success(&text, healthy),
            1.0,
            "{healthy} should be unaffected"
        );
    }
}

#[test]
fn garbage_proc_files_fail_only_their_collector() {
    scrape_with_damaged_files(|_| b"\x00\x7f\xfe garbage: not a /proc file {}\n\xff\xff".to_vec());
}

#[test]
fn truncated_proc_files_fail_only_their_collector() {
    // Cut the first line that holds a number in half, as a short read would.
    scrape_with_damaged_files(|original| {
        let text = String::from_utf8_lossy(original);
        let mut kept = 0;
        for line in text.split_inclusive('\n') {
            if line.bytes().any(|b| b.is_ascii_digit()) {
                return original[..kept + line.len() / 2].to_vec();
            }
            kept += line.len();
        }
        original[..original.len() / 2].to_vec()
    });
}

#[test]
fn a_hung_collector_times_out_without_failing_the_scrape() {
    let tmp = tempfile::tempdir().unwrap();
    let proc = tmp.path().join("proc");
    copy_proc_tree(&proc);
    // Opening a FIFO that has no writer blocks forever: a real hang, as a
    // stuck NFS mount or a wedged driver gives.
    std::fs::remove_file(proc.join("loadavg")).unwrap();
    nix::unistd::mkfifo(
        &proc.join("loadavg"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let exporter = Server::exporter(&[
        "--path.procfs",
        proc.to_str().unwrap(),
        "--collector.timeout",
        "1s",
    ]);

    for scrape in 1..=2 {
        let started = std::time::Instant::now();
        let text = get_text(&exporter.url("/metrics"));
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "scrape {scrape} took {took:?}"
        );
        assert_eq!(success(&text, "loadavg"), 0.0, "scrape {scrape}");
        assert_eq!(success(&text, "meminfo"), 1.0, "scrape {scrape}");
        assert!(text.contains("node_memory_MemTotal_bytes "));
    }
    assert!(
        !exporter
            .log_lines_containing("collector timed out")
            .is_empty()
    );
    // The second scrape does not start another reader behind the hung one.
    assert!(
        !exporter
            .log_lines_containing("previous run has not finished")
            .is_empty(),
        "{}",
        exporter.log_text()
    );
}
