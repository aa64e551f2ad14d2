//! The nvme collector on real nvme-cli JSON: both list layouts, numbers
//! as numbers, strings and floats, `critical_warning` as an object, no
//! devices, and a hung or broken nvme-cli.

use std::path::PathBuf;
use std::time::Duration;

use dcmon_exporter::collector::nvme_parse::{parse_list, parse_smart_log};
use dcmon_exporter::collector::{CollectError, Collector, nvme};
use dcmon_exporter::config::Config;
use dcmon_exporter::snapshot::Snapshot;

use crate::common::fixtures;
use crate::common::process::{Server, get_text};
use crate::common::stand_in::{Reply, StandIn, collector_success, process_gone};
use crate::ipmi::sample;

fn fixture(name: &str) -> PathBuf {
    fixtures().join("nvme").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

#[test]
fn flat_list() {
    let list = parse_list(&read("gpl-3.0_netdata/v2.3/nvme-list.json")).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].device, "nvme1n1");
    assert_eq!(list[1].model, "Seagate FireCuda 530 ZP4000GM30023");
    assert_eq!(list[1].serial, "XXX01YYY");
    assert_eq!(list[1].firmware, "SU6SM001");
    assert_eq!(list[1].physical_size, Some(4000787030016.0));
}

#[test]
fn nested_list_of_nvme_cli_2_11() {
    let list = parse_list(&read("gpl-3.0_netdata/v2.11/nvme-list.json")).unwrap();
    let devices: Vec<_> = list.iter().map(|n| n.device.as_str()).collect();
    assert_eq!(devices, ["nvme0n1", "nvme1n1", "nvme2n1"]);
    assert_eq!(list[0].firmware, "SU6SM005");
    assert_eq!(list[2].serial, "7VS00KNX");
    assert_eq!(list[2].used_bytes, Some(4000787030016.0));
}

#[test]
fn smart_log_numbers_strings_and_floats_agree() {
    let numbers = parse_smart_log(&read("gpl-3.0_netdata/v2.3/nvme-smart-log.json")).unwrap();
    assert_eq!(numbers.temperature_kelvin, Some(310.0));
    assert_eq!(numbers.percent_used, Some(2.0));
    let units_read = numbers
        .counters
        .iter()
        .find(|c| c.0 == "data_units_read")
        .unwrap();
    assert_eq!(units_read.1, 9898518.0);
    assert_eq!(numbers.counters.len(), 10);
    for variant in ["nvme-smart-log-string.json", "nvme-smart-log-float.json"] {
        let other = parse_smart_log(&read(&format!("gpl-3.0_netdata/v2.3/{variant}"))).unwrap();
        assert_eq!(other, numbers, "{variant}");
    }
}

#[test]
fn critical_warning_object_of_nvme_cli_2_11() {
    let log = parse_smart_log(&read("gpl-3.0_netdata/v2.11/nvme-smart-log.json")).unwrap();
    assert_eq!(log.critical_warning, Some(0.0));
    assert_eq!(log.temperature_kelvin, Some(324.0));
    let hours = log
        .counters
        .iter()
        .find(|c| c.0 == "power_on_hours")
        .unwrap();
    assert_eq!(hours.1, 24424.0);
}

fn config_with(tool: &StandIn) -> Config {
    let mut config = Config::default();
    config.nvme.program = tool.path.clone();
    config
}

fn two_drives() -> StandIn {
    StandIn::new(
        "nvme",
        &[
            (
                "'list -o json'",
                Reply::Replay(fixture("gpl-3.0_netdata/v2.3/nvme-list.json")),
            ),
            (
                "'smart-log /dev/nvme0n1 -o json'",
                Reply::Replay(fixture("gpl-3.0_netdata/v2.3/nvme-smart-log.json")),
            ),
            (
                "'smart-log /dev/nvme1n1 -o json'",
                Reply::Replay(fixture("gpl-3.0_netdata/v2.11/nvme-smart-log.json")),
            ),
        ],
    )
}

#[test]
fn collector_exports_textfile_script_names() {
    let tool = two_drives();
    let mut out = Snapshot::new();
    nvme::new(&config_with(&tool)).update(&mut out).unwrap();
    let nvme0 = [("device", "nvme0n1")];
    let nvme1 = [("device", "nvme1n1")];
    assert_eq!(sample(&out, "nvme_temperature_celsius", &nvme0), Some(37.0));
    assert_eq!(sample(&out, "nvme_temperature_celsius", &nvme1), Some(51.0));
    assert_eq!(
        sample(&out, "nvme_available_spare_ratio", &nvme0),
        Some(1.0)
    );
    assert_eq!(
        sample(&out, "nvme_available_spare_threshold_ratio", &nvme0),
        Some(0.05)
    );
    assert_eq!(
        sample(&out, "nvme_percentage_used_ratio", &nvme1),
        Some(0.3)
    );
    assert_eq!(
        sample(&out, "nvme_data_units_written_total", &nvme0),
        Some(136157684.0)
    );
    assert_eq!(
        sample(&out, "nvme_host_write_commands_total", &nvme1),
        Some(24273507789.0)
    );
    assert_eq!(
        sample(&out, "nvme_num_err_log_entries_total", &nvme0),
        Some(110.0)
    );
    assert_eq!(
        sample(&out, "nvme_controller_busy_time_seconds", &nvme0),
        Some(8284.0 * 60.0)
    );
    assert_eq!(sample(&out, "nvme_critical_warning", &nvme1), Some(0.0));
    assert_eq!(
        sample(&out, "nvme_physical_size_bytes", &nvme0),
        Some(4000787030016.0)
    );
    let info = [
        ("device", "nvme1n1"),
        ("serial", "XXX01YYY"),
        ("firmware", "SU6SM001"),
    ];
    assert_eq!(sample(&out, "nvme_device_info", &info), Some(1.0));
    assert_eq!(
        tool.calls(),
        [
            "list -o json",
            "smart-log /dev/nvme0n1 -o json",
            "smart-log /dev/nvme1n1 -o json"
        ]
    );
}

#[test]
fn no_devices_is_no_data() {
    let dir = fixture("local_no-device");
    let tool = StandIn::new(
        "nvme",
        &[(
            "*",
            Reply::ReplayStreams {
                stdout: dir.join("nvme_list_json.stdout"),
                stderr: dir.join("nvme_list_json.stderr"),
                code: 1,
            },
        )],
    );
    let err = nvme::new(&config_with(&tool))
        .update(&mut Snapshot::new())
        .unwrap_err();
    assert!(matches!(err, CollectError::NoData(_)), "{err}");
    assert!(err.to_string().contains("Failed to scan topology"), "{err}");
}

#[test]
fn one_unreadable_drive_keeps_the_others() {
    let dir = fixture("local_no-device");
    let tool = StandIn::new(
        "nvme",
        &[
            (
                "'list -o json'",
                Reply::Replay(fixture("gpl-3.0_netdata/v2.3/nvme-list.json")),
            ),
            (
                "'smart-log /dev/nvme0n1 -o json'",
                Reply::ReplayStreams {
                    stdout: dir.join("nvme_smart-log_nvme0_json.stdout"),
                    stderr: dir.join("nvme_smart-log_nvme0_json.stderr"),
                    code: 1,
                },
            ),
            (
                "'smart-log /dev/nvme1n1 -o json'",
                Reply::Replay(fixture("gpl-3.0_netdata/v2.3/nvme-smart-log.json")),
            ),
        ],
    );
    let mut out = Snapshot::new();
    let err = nvme::new(&config_with(&tool)).update(&mut out).unwrap_err();
    assert!(
        err.to_string().contains("No such file or directory"),
        "{err}"
    );
    assert_eq!(
        sample(&out, "nvme_temperature_celsius", &[("device", "nvme0n1")]),
        None
    );
    assert_eq!(
        sample(&out, "nvme_temperature_celsius", &[("device", "nvme1n1")]),
        Some(37.0)
    );
    assert_eq!(
        sample(&out, "nvme_device_info", &[("device", "nvme0n1")]),
        Some(1.0)
    );
}

#[test]
fn unparsable_json_fails_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("list.json");
    let full = read("gpl-3.0_netdata/v2.3/nvme-list.json");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let tool = StandIn::new("nvme", &[("*", Reply::Replay(truncated))]);
    let err = nvme::new(&config_with(&tool))
        .update(&mut Snapshot::new())
        .unwrap_err();
    assert!(matches!(err, CollectError::Parse { .. }), "{err}");
}

#[test]
fn hung_nvme_cli_is_killed_and_the_scrape_goes_on() {
    let tool = StandIn::new(
        "nvme",
        &[
            (
                "'list -o json'",
                Reply::Replay(fixture("gpl-3.0_netdata/v2.3/nvme-list.json")),
            ),
            ("*", Reply::Hang),
        ],
    );
    let exporter = Server::exporter(&[
        "--collector.disable-defaults",
        "--collector.nvme",
        "--collector.loadavg",
        "--collector.nvme.nvme-path",
        tool.path.to_str().unwrap(),
        "--collector.nvme.timeout=300ms",
    ]);
    let text = get_text(&exporter.url("/metrics"));
    assert_eq!(collector_success(&text, "nvme"), 0.0);
    assert_eq!(collector_success(&text, "loadavg"), 1.0);
    // Info series survive; the hung smart-log was killed.
    assert!(text.contains("nvme_device_info{"), "{text}");
    let pid = tool.hung_pid().expect("the stand-in ran");
    std::thread::sleep(Duration::from_millis(100));
    assert!(process_gone(pid), "hung nvme {pid} was not killed");
}
