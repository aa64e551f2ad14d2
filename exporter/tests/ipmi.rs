//! The ipmi collector on real `ipmitool` captures: parser results for each
//! fixture (odd cases included), the collector driven through a stand-in
//! `ipmitool`, and a hung or absent BMC that must not hold up the scrape.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dcmon_exporter::collector::Collector;
use dcmon_exporter::collector::ipmi;
use dcmon_exporter::collector::ipmi_parse::{parse_dcmi_power, parse_sdr_numbers, parse_sensor};
use dcmon_exporter::config::Config;
use dcmon_exporter::snapshot::Snapshot;

use crate::common::fixtures;
use crate::common::process::{Server, get_text};
use crate::common::stand_in::{Reply, StandIn, collector_success, process_gone};

fn fixture(name: &str) -> PathBuf {
    fixtures().join("ipmitool").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

/// The value of the sample of `family` whose labels include all of `want`.
pub fn sample(snapshot: &Snapshot, family: &str, want: &[(&str, &str)]) -> Option<f64> {
    snapshot.get(family)?.samples.iter().find_map(|s| {
        want.iter()
            .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            .then_some(s.value)
    })
}

#[test]
fn supermicro_sensor_listing() {
    let rows = parse_sensor(&read("sensor_supermicro-x9-x10-gpu-board.txt")).unwrap();
    assert_eq!(rows.len(), 66);
    let cpu = &rows[0];
    assert_eq!(cpu.name, "CPU1 Temp");
    assert_eq!(cpu.value, Some(33.0));
    assert_eq!(
        cpu.thresholds,
        [
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(79.0),
            Some(82.0),
            Some(84.0)
        ]
    );
    // Negative lower thresholds.
    let system = rows.iter().find(|r| r.name == "System Temp").unwrap();
    assert_eq!(system.thresholds[0], Some(-9.0));
    // `na` reading: no value, empty unit, no thresholds.
    let dimm = rows.iter().find(|r| r.name == "P1-DIMMA3 TEMP").unwrap();
    assert_eq!((dimm.value, dimm.unit.as_str()), (None, ""));
    assert!(dimm.state().is_nan());
    assert_eq!(dimm.thresholds, [None; 6]);
    // Discrete sensors: hex reading, state word in the status column.
    let ps = rows.iter().find(|r| r.name == "PS1 Status").unwrap();
    assert!(ps.is_discrete());
    assert_eq!((ps.value, ps.status.as_str()), (Some(1.0), "0x0100"));
    // A name that appears twice.
    assert_eq!(rows.iter().filter(|r| r.name == "HDD Status").count(), 2);
    assert!(rows.iter().any(|r| r.name == "I/O Board VRD"));
    assert!(rows.iter().any(|r| r.name == "+3.3VSB"));
}

#[test]
fn hpe_sensor_listing_with_padding_and_partial_thresholds() {
    let rows = parse_sensor(&read("sensor_hpe-ilo.txt")).unwrap();
    assert_eq!(rows.len(), 18);
    let inlet = rows.iter().find(|r| r.name == "01-Inlet Ambient").unwrap();
    assert_eq!(inlet.value, Some(24.0));
    assert_eq!(
        inlet.thresholds,
        [None, None, None, None, Some(42.0), Some(46.0)]
    );
    // Reading `na` while the UCR threshold is still set.
    let hd = rows.iter().find(|r| r.name == "04-HD Max").unwrap();
    assert_eq!((hd.value, hd.thresholds[4]), (None, Some(60.0)));
    let fan = rows.iter().find(|r| r.name == "Fan 1").unwrap();
    assert_eq!((fan.value, fan.unit.as_str()), (Some(27.44), "percent"));
}

#[test]
fn sdr_elist_numbers_survive_interleaved_stderr() {
    let clean = parse_sdr_numbers(&read("sdr-elist_curated-mixed.txt"));
    assert_eq!(clean.len(), 7);
    assert_eq!(clean[2], ("Fan1".to_owned(), 0x30));
    assert_eq!(clean[5], ("Current 1".to_owned(), 0x6a));
    // Merged streams: the `Unable to send command` lines are skipped.
    let mixed = parse_sdr_numbers(&read("sdr-elist_with-stderr-interleaved.txt"));
    assert_eq!(mixed, clean);
}

#[test]
fn dcmi_power_reading_without_indentation() {
    let power = parse_dcmi_power(&read("dcmi-power-reading.txt")).unwrap();
    assert_eq!(power.current_watts, 167.0);
    assert!(power.active);
}

#[test]
fn garbage_is_a_parse_error_not_a_panic() {
    assert!(parse_sensor("").is_err());
    assert!(parse_sensor("Could not open device at /dev/ipmi0\n").is_err());
    assert!(parse_sensor("CPU | 1.0 | degrees C | ok\n").is_err());
    assert!(parse_dcmi_power("Invalid command").is_none());
}

fn config_with(ipmitool: &StandIn) -> Config {
    let mut config = Config::default();
    config.ipmi.ipmitool.program = ipmitool.path.clone();
    config.ipmi.ipmitool.timeout = Duration::from_secs(5);
    config
}

/// A Supermicro-like BMC: sensor listing, SDR numbers and DCMI from the
/// captures; `mc info` and `chassis status` unsupported.
fn supermicro_bmc() -> StandIn {
    StandIn::new(
        "ipmitool",
        &[
            (
                "*' sensor'",
                Reply::Replay(fixture("sensor_supermicro-x9-x10-gpu-board.txt")),
            ),
            (
                "*'sdr elist'",
                Reply::Replay(fixture("sdr-elist_curated-mixed.txt")),
            ),
            (
                "*'dcmi power reading'",
                Reply::Replay(fixture("dcmi-power-reading.txt")),
            ),
            ("*", Reply::Fail("Invalid command", 1)),
        ],
    )
}

#[test]
fn collector_exports_ipmi_exporter_families() {
    let bmc = supermicro_bmc();
    let collector = ipmi::new(&config_with(&bmc));
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();

    let cpu = [("name", "CPU1 Temp")];
    assert_eq!(sample(&out, "ipmi_temperature_celsius", &cpu), Some(33.0));
    assert_eq!(sample(&out, "ipmi_temperature_state", &cpu), Some(0.0));
    let ucr = [
        ("name", "CPU1 Temp"),
        ("type", "temperature"),
        ("threshold", "ucr"),
    ];
    assert_eq!(
        sample(&out, "dcmon_ipmi_sensor_threshold", &ucr),
        Some(82.0)
    );
    assert_eq!(
        sample(&out, "ipmi_fan_speed_rpm", &[("name", "FAN3")]),
        Some(3150.0)
    );
    assert_eq!(
        sample(&out, "ipmi_voltage_volts", &[("name", "12V")]),
        Some(12.084)
    );
    // `na`: no value series, state NaN.
    let dimm = [("name", "P1-DIMMA3 TEMP")];
    assert_eq!(sample(&out, "ipmi_sensor_value", &dimm), None);
    assert!(sample(&out, "ipmi_sensor_state", &dimm).unwrap().is_nan());
    // Discrete: generic family with type=discrete.
    let ps = [("name", "PS1 Status"), ("type", "discrete")];
    assert_eq!(sample(&out, "ipmi_sensor_value", &ps), Some(1.0));
    // The repeated name gets two series, told apart by position.
    let hdd: Vec<_> = out
        .get("ipmi_sensor_state")
        .unwrap()
        .samples
        .iter()
        .filter(|s| s.labels.iter().any(|(_, v)| v == "HDD Status"))
        .map(|s| s.labels[0].1.clone())
        .collect();
    assert_eq!(hdd, ["38", "62"]);

    assert_eq!(
        sample(&out, "ipmi_dcmi_power_consumption_current_watts", &[]),
        Some(167.0)
    );
    assert_eq!(sample(&out, "ipmi_up", &[("collector", "ipmi")]), Some(1.0));
    assert_eq!(sample(&out, "ipmi_up", &[("collector", "dcmi")]), Some(1.0));
    assert_eq!(sample(&out, "ipmi_up", &[("collector", "bmc")]), Some(0.0));
    assert!(out.get("ipmi_bmc_info").is_none());

    // Local interface, fixed argv.
    let calls = bmc.calls();
    assert_eq!(calls[0], "-I open sensor");
    assert!(calls.contains(&"-I open sdr elist".to_owned()), "{calls:?}");
}

#[test]
fn sensor_numbers_come_from_the_sdr() {
    let bmc = StandIn::new(
        "ipmitool",
        &[
            ("*' sensor'", Reply::Replay(fixture("sensor_hpe-ilo.txt"))),
            ("*", Reply::Fail("Invalid command", 1)),
        ],
    );
    let mut out = Snapshot::new();
    ipmi::new(&config_with(&bmc)).update(&mut out).unwrap();
    // No SDR listing: positions stand in for sensor numbers.
    let ratio = sample(
        &out,
        "ipmi_fan_speed_ratio",
        &[("name", "Fan 1"), ("id", "16")],
    )
    .unwrap();
    assert!((ratio - 0.2744).abs() < 1e-12, "{ratio}");
}

#[test]
fn remote_bmc_uses_lanplus_and_a_password_file() {
    let bmc = supermicro_bmc();
    let mut config = config_with(&bmc);
    config.ipmi.remote = Some(dcmon_exporter::config::IpmiRemote {
        host: "10.0.0.9".into(),
        port: None,
        cipher_suite: None,
        user: Some("ADMIN".into()),
        password_file: Some("/etc/dcmon/bmc-password".into()),
    });
    ipmi::new(&config).update(&mut Snapshot::new()).unwrap();
    assert_eq!(
        bmc.calls()[0],
        "-I lanplus -H 10.0.0.9 -U ADMIN -f /etc/dcmon/bmc-password sensor"
    );
}

#[test]
fn results_are_cached_for_the_ttl() {
    let bmc = supermicro_bmc();
    let mut config = config_with(&bmc);
    config.ipmi.cache_ttl = Duration::from_secs(3600);
    let collector = ipmi::new(&config);
    for _ in 0..3 {
        let mut out = Snapshot::new();
        collector.update(&mut out).unwrap();
        assert!(out.get("ipmi_temperature_celsius").is_some());
    }
    let sensor_runs = bmc
        .calls()
        .iter()
        .filter(|c| c.ends_with(" sensor"))
        .count();
    assert_eq!(sensor_runs, 1);
}

/// An ipmitool that answers everything as on a machine without a BMC
/// (the real capture: no `/dev/ipmi0`, exit 1).
fn no_bmc() -> StandIn {
    let dir = fixtures().join("ipmitool/local_no-bmc");
    StandIn::new(
        "ipmitool",
        &[(
            "*",
            Reply::ReplayStreams {
                stdout: dir.join("ipmitool_sensor.stdout"),
                stderr: dir.join("ipmitool_sensor.stderr"),
                code: 1,
            },
        )],
    )
}

#[test]
fn no_bmc_is_no_data() {
    let bmc = no_bmc();
    let mut out = Snapshot::new();
    let err = ipmi::new(&config_with(&bmc)).update(&mut out).unwrap_err();
    assert!(err.to_string().contains("Could not open device"), "{err}");
    assert!(matches!(
        err,
        dcmon_exporter::collector::CollectError::NoData(_)
    ));
    assert_eq!(sample(&out, "ipmi_up", &[("collector", "ipmi")]), Some(0.0));
    // Nothing else is tried against a BMC that is not there.
    assert_eq!(bmc.calls().len(), 1);
}

#[test]
fn unparsable_listing_fails_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let garbled = dir.path().join("sensor.txt");
    std::fs::write(
        &garbled,
        "CPU Temp | 49,000 | degrees C | ok | na | na | na | na | na | na\n",
    )
    .unwrap();
    let bmc = StandIn::new("ipmitool", &[("*", Reply::Replay(garbled))]);
    let err = ipmi::new(&config_with(&bmc))
        .update(&mut Snapshot::new())
        .unwrap_err();
    assert!(err.to_string().contains("49,000"), "{err}");
}

#[test]
fn hung_ipmitool_is_killed_and_the_scrape_goes_on() {
    let bmc = StandIn::new("ipmitool", &[("*", Reply::Hang)]);
    let exporter = Server::exporter(&[
        "--collector.disable-defaults",
        "--collector.ipmi",
        "--collector.loadavg",
        "--collector.ipmi.ipmitool-path",
        bmc.path.to_str().unwrap(),
        "--collector.ipmi.timeout=500ms",
        "--collector.ipmi.cache-ttl=0s",
    ]);
    let started = Instant::now();
    let text = get_text(&exporter.url("/metrics"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "scrape took {:?}",
        started.elapsed()
    );
    assert_eq!(collector_success(&text, "ipmi"), 0.0);
    assert_eq!(collector_success(&text, "loadavg"), 1.0);
    assert!(text.contains("ipmi_up{collector=\"ipmi\"} 0"), "{text}");
    let pid = bmc.hung_pid().expect("the stand-in ran");
    assert!(process_gone(pid), "hung ipmitool {pid} was not killed");
    let logged = exporter.log_lines_containing("killed");
    assert!(!logged.is_empty(), "{}", exporter.log_text());
}

#[test]
fn absent_hardware_is_logged_once_not_per_scrape() {
    let bmc = no_bmc();
    let exporter = Server::exporter(&[
        "--collector.disable-defaults",
        "--collector.ipmi",
        "--collector.gpu",
        "--collector.nvme",
        "--collector.nvme.nvme-path=/nonexistent/nvme",
        "--collector.ipmi.ipmitool-path",
        bmc.path.to_str().unwrap(),
        "--collector.ipmi.cache-ttl=0s",
    ]);
    for _ in 0..3 {
        let text = get_text(&exporter.url("/metrics"));
        assert_eq!(collector_success(&text, "ipmi"), 0.0);
    }
    assert_eq!(
        bmc.calls().len(),
        3,
        "asked on every scrape with a zero TTL"
    );
    assert_eq!(exporter.log_lines_containing("no BMC readable").len(), 1);
    assert_eq!(
        exporter
            .log_lines_containing("no NVMe devices readable")
            .len(),
        1
    );
    // Hosts without the NVIDIA driver: one line at start-up (none on a GPU host).
    let gpu_lines = exporter.log_lines_containing("NVIDIA driver not available");
    assert!(gpu_lines.len() <= 1, "{gpu_lines:?}");
    let text = exporter.log_text();
    assert!(!text.contains("collector failed"), "{text}");
}

#[test]
fn sensor_that_stops_reading_keeps_its_family() {
    // Two listings built from real rows of the Supermicro capture: FAN2
    // reading 3000 RPM, then FAN2 as that board prints a fan without a
    // reading (`na`, no unit), as after a fan failure.
    let capture = read("sensor_supermicro-x9-x10-gpu-board.txt");
    let line = |name: &str| {
        capture
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_owned()
    };
    let reading = line("FAN2 ");
    let dead = line("FAN1 ").replacen("FAN1", "FAN2", 1);
    let dir = tempfile::tempdir().unwrap();
    let listing = dir.path().join("sensor.txt");
    let bmc = StandIn::new(
        "ipmitool",
        &[
            ("*' sensor'", Reply::Replay(listing.clone())),
            ("*", Reply::Fail("Invalid command", 1)),
        ],
    );
    let mut config = config_with(&bmc);
    config.ipmi.cache_ttl = Duration::ZERO;
    let collector = ipmi::new(&config);

    std::fs::write(&listing, format!("{reading}\n")).unwrap();
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    assert_eq!(
        sample(&out, "ipmi_fan_speed_state", &[("name", "FAN2")]),
        Some(0.0)
    );

    std::fs::write(&listing, format!("{dead}\n")).unwrap();
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    assert!(
        sample(&out, "ipmi_fan_speed_state", &[("name", "FAN2")])
            .unwrap()
            .is_nan()
    );
    assert_eq!(
        sample(&out, "ipmi_fan_speed_rpm", &[("name", "FAN2")]),
        None
    );
    assert!(out.get("ipmi_sensor_state").is_none());
}

#[test]
fn stale_readings_are_served_while_a_slow_bmc_refreshes() {
    let dir = tempfile::tempdir().unwrap();
    let listing = dir.path().join("sensor.txt");
    std::fs::copy(fixture("sensor_supermicro-x9-x10-gpu-board.txt"), &listing).unwrap();
    let bmc = StandIn::new(
        "ipmitool",
        &[
            ("*' sensor'", Reply::Delayed(listing.clone(), 1.0)),
            ("*", Reply::Fail("Invalid command", 1)),
        ],
    );
    let mut config = config_with(&bmc);
    config.ipmi.cache_ttl = Duration::from_millis(300);
    let collector = ipmi::new(&config);
    let cpu = [("name", "CPU1 Temp")];

    // First scrape: nothing cached, the BMC is read while it waits.
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    assert_eq!(sample(&out, "ipmi_temperature_celsius", &cpu), Some(33.0));

    // The board now reports the HPE listing; the cache goes stale.
    std::fs::copy(fixture("sensor_hpe-ilo.txt"), &listing).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let started = Instant::now();
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sample(&out, "ipmi_temperature_celsius", &cpu),
        Some(33.0),
        "served stale"
    );

    // The background refresh lands within the slow BMC's second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut out = Snapshot::new();
        collector.update(&mut out).unwrap();
        if sample(
            &out,
            "ipmi_temperature_celsius",
            &[("name", "01-Inlet Ambient")],
        ) == Some(24.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no background refresh");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sensor_runs = bmc
        .calls()
        .iter()
        .filter(|c| c.ends_with(" sensor"))
        .count();
    assert!((2..=3).contains(&sensor_runs), "{sensor_runs}");
}
