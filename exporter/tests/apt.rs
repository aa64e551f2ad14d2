//! The apt collector on real apt output: pending upgrades by origin and
//! arch, security origins, held packages, obsolete packages, the reboot
//! flag, and an apt-get that hangs or prints something else.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use dcmon_exporter::collector::apt_parse::{count_by_origin, count_obsolete, parse_simulation};
use dcmon_exporter::collector::{Collector, apt};
use dcmon_exporter::config::Config;
use dcmon_exporter::snapshot::Snapshot;

use crate::common::fixtures;
use crate::common::process::{Server, get_text};
use crate::common::stand_in::{Reply, StandIn, collector_success, process_gone};
use crate::ipmi::sample;

fn fixture(name: &str) -> PathBuf {
    fixtures().join("apt").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

const DEBIAN12: &str = "local_debian12/apt-get_-s_dist-upgrade.stdout";
const JAMMY: &str = "saltstack_salt/apt-get-just-print_ubuntu-22.04-jammy.stdout.txt";
const BOTH_JAMMY: &str = "Ubuntu:22.04/jammy-updates,Ubuntu:22.04/jammy-security";

#[test]
fn debian12_capture_counts_and_security_origins() {
    let sim = parse_simulation(&read(DEBIAN12)).unwrap();
    assert_eq!(sim.upgrades.len(), 132);
    let counts = count_by_origin(&sim.upgrades);
    let security: usize = counts
        .iter()
        .filter(|((origin, _), _)| origin.contains("-security"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(security, 81);
    let bash = sim.upgrades.iter().find(|u| u.package == "bash").unwrap();
    assert_eq!(
        (bash.origin.as_str(), bash.arch.as_str()),
        ("Debian:12.15/oldstable", "amd64")
    );
}

#[test]
fn quiet_and_non_root_variants_agree() {
    let full = parse_simulation(&read(DEBIAN12)).unwrap();
    for variant in [
        "local_debian12/apt-get_-s_upgrade_nonroot.stdout",
        "local_debian12/apt-get_-s_-qq_upgrade.stdout",
    ] {
        let other = parse_simulation(&read(variant)).unwrap();
        assert_eq!(
            count_by_origin(&other.upgrades),
            count_by_origin(&full.upgrades),
            "{variant}"
        );
    }
}

#[test]
fn ubuntu_new_packages_and_two_origins() {
    let sim = parse_simulation(&read(JAMMY)).unwrap();
    assert_eq!(sim.upgrades.len(), 11);
    let counts = count_by_origin(&sim.upgrades);
    assert_eq!(
        counts.get(&(BOTH_JAMMY.to_owned(), "amd64".to_owned())),
        Some(&10)
    );
    assert_eq!(
        counts.get(&(BOTH_JAMMY.to_owned(), "all".to_owned())),
        Some(&1)
    );
}

#[test]
fn phased_and_removed_packages() {
    let phased = parse_simulation(&read(
        "gpl-2.0_debian_apt_testsuite/apt-get-dist-upgrade-s-q_phased-deferred.txt",
    ))
    .unwrap();
    // Deferred (phased) packages have no Inst line and are not pending.
    assert_eq!(phased.upgrades.len(), 4);
    let security = phased
        .upgrades
        .iter()
        .find(|u| u.package == "phased-security-same")
        .unwrap();
    assert_eq!(security.origin, "unstable-security,unstable-updates");
    let removed = parse_simulation(&read(
        "gpl-2.0_debian_apt_testsuite/apt-get-s-dist-upgrade_removed-new.txt",
    ))
    .unwrap();
    assert_eq!(removed.upgrades.len(), 6);
    assert_eq!(
        count_obsolete(&read("gpl-2.0_debian_apt_testsuite/apt-list-installed.txt")),
        1
    );
}

/// Stand-ins for apt-get, apt-mark and apt, and a rootfs.
struct Host {
    apt_get: StandIn,
    apt_mark: StandIn,
    apt: StandIn,
    rootfs: tempfile::TempDir,
}

fn host(apt_get: &[(&str, Reply)], held: &str) -> Host {
    let rootfs = tempfile::tempdir().unwrap();
    let held_file = rootfs.path().join("held.txt");
    std::fs::write(&held_file, held).unwrap();
    Host {
        apt_get: StandIn::new("apt-get", apt_get),
        apt_mark: StandIn::new("apt-mark", &[("showhold", Reply::Replay(held_file))]),
        apt: StandIn::new(
            "apt",
            &[(
                "'list --installed'",
                Reply::Replay(fixture(
                    "gpl-2.0_debian_apt_testsuite/apt-list-installed.txt",
                )),
            )],
        ),
        rootfs,
    }
}

impl Host {
    fn config(&self) -> Config {
        let mut config = Config::default();
        config.apt.apt_get.program = self.apt_get.path.clone();
        config.apt.apt_mark = self.apt_mark.path.clone();
        config.apt.apt = self.apt.path.clone();
        config.roots.rootfs = self.rootfs.path().to_owned();
        config
    }

    fn touch(&self, path: &str, modified: Option<SystemTime>) {
        let path = self.rootfs.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        if let Some(time) = modified {
            file.set_modified(time).unwrap();
        }
    }

    fn flags(&self) -> Vec<String> {
        let path = |p: &Path| p.to_str().unwrap().to_owned();
        vec![
            "--collector.apt.apt-get-path".into(),
            path(&self.apt_get.path),
            "--collector.apt.apt-mark-path".into(),
            path(&self.apt_mark.path),
            "--collector.apt.apt-path".into(),
            path(&self.apt.path),
            "--path.rootfs".into(),
            path(self.rootfs.path()),
        ]
    }
}

#[test]
fn collector_exports_apt_info_names() {
    let host = host(
        &[
            ("*Ignore-Hold*", Reply::Replay(fixture(JAMMY))),
            ("*dist-upgrade", Reply::Replay(fixture(DEBIAN12))),
        ],
        "linux-generic\nlinux-image-generic\n",
    );
    host.touch("run/reboot-required", None);
    let stamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    host.touch("var/lib/apt/periodic/update-success-stamp", Some(stamp));
    let collector = apt::new(&host.config());
    collector.refresh();
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();

    let bash_origin = [("origin", "Debian:12.15/oldstable"), ("arch", "amd64")];
    let pending = sample(&out, "apt_upgrades_pending", &bash_origin).unwrap();
    assert!(pending >= 1.0);
    let total: f64 = out
        .get("apt_upgrades_pending")
        .unwrap()
        .samples
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 132.0);
    assert_eq!(
        sample(
            &out,
            "apt_upgrades_held",
            &[("origin", BOTH_JAMMY), ("arch", "amd64")]
        ),
        Some(2.0)
    );
    assert_eq!(sample(&out, "apt_autoremove_pending", &[]), Some(0.0));
    assert_eq!(sample(&out, "apt_packages_obsolete", &[]), Some(1.0));
    assert_eq!(sample(&out, "node_reboot_required", &[]), Some(1.0));
    assert_eq!(
        sample(&out, "apt_package_cache_timestamp_seconds", &[]),
        Some(1_700_000_000.0)
    );
    assert!(sample(&out, "dcmon_apt_result_age_seconds", &[]).unwrap() < 60.0);

    // A simulation only, never `apt update`, and without taking apt's lock.
    for call in host.apt_get.calls() {
        assert!(
            call.starts_with("--just-print -o Debug::NoLocking=true"),
            "{call}"
        );
        assert!(!call.contains("update "), "{call}");
    }
}

#[test]
fn no_reboot_flag_is_zero() {
    let host = host(&[("*", Reply::Replay(fixture(JAMMY)))], "");
    let collector = apt::new(&host.config());
    collector.refresh();
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    assert_eq!(sample(&out, "node_reboot_required", &[]), Some(0.0));
    // Nothing held: the series still exists, as apt_info writes it.
    assert_eq!(
        sample(&out, "apt_upgrades_held", &[("origin", "")]),
        Some(0.0)
    );
}

#[test]
fn foreign_output_fails_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let ipmi = dir.path().join("other.txt");
    std::fs::copy(fixtures().join("ipmitool/sensor_hpe-ilo.txt"), &ipmi).unwrap();
    let host = host(&[("*", Reply::Replay(ipmi))], "");
    let collector = apt::new(&host.config());
    collector.refresh();
    let mut out = Snapshot::new();
    let err = collector.update(&mut out).unwrap_err();
    assert!(
        err.to_string().contains("does not look like apt-get"),
        "{err}"
    );
    assert!(out.get("apt_upgrades_pending").is_none());
    // The reboot flag does not depend on apt.
    assert!(out.get("node_reboot_required").is_some());
}

fn scrape_until(server: &Server, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = get_text(&server.url("/metrics"));
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn runs_in_the_background_and_serves_the_result() {
    let host = host(&[("*dist-upgrade", Reply::Replay(fixture(JAMMY)))], "");
    let mut args = vec![
        "--collector.disable-defaults".to_owned(),
        "--collector.apt".to_owned(),
    ];
    args.extend(host.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Server::exporter(&args);
    let text = scrape_until(&exporter, |t| t.contains("apt_upgrades_pending{"));
    assert!(
        text.contains(&format!(
            "apt_upgrades_pending{{arch=\"amd64\",origin=\"{BOTH_JAMMY}\"}} 10"
        )),
        "{text}"
    );
    assert_eq!(collector_success(&text, "apt"), 1.0);
    assert!(text.contains("dcmon_apt_result_age_seconds "), "{text}");
}

#[test]
fn hung_apt_get_is_killed_and_the_scrape_goes_on() {
    let host = host(&[("*", Reply::Hang)], "");
    let mut args = vec![
        "--collector.disable-defaults".to_owned(),
        "--collector.apt".to_owned(),
        "--collector.loadavg".to_owned(),
        "--collector.apt.timeout=300ms".to_owned(),
    ];
    args.extend(host.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Server::exporter(&args);
    let logged = {
        get_text(&exporter.url("/metrics"));
        exporter.log_lines_containing("apt run failed")
    };
    assert!(!logged.is_empty(), "{}", exporter.log_text());
    let text = get_text(&exporter.url("/metrics"));
    assert_eq!(collector_success(&text, "apt"), 0.0);
    assert_eq!(collector_success(&text, "loadavg"), 1.0);
    let pid = host.apt_get.hung_pid().expect("the stand-in ran");
    assert!(process_gone(pid), "hung apt-get {pid} was not killed");
}

#[test]
fn host_without_apt_is_no_data() {
    let host = host(&[], "");
    let mut config = host.config();
    config.apt.apt_get.program = host.rootfs.path().join("no-such-apt-get");
    let collector = apt::new(&config);
    collector.refresh();
    let mut out = Snapshot::new();
    let err = collector.update(&mut out).unwrap_err();
    assert!(
        matches!(err, dcmon_exporter::collector::CollectError::NoData(_)),
        "{err}"
    );
    // The reboot flag is still read.
    assert_eq!(sample(&out, "node_reboot_required", &[]), Some(0.0));
}
