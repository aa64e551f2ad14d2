//! The hardware collectors as a whole: with every collector on and the
//! hardware faked (stand-in ipmitool, nvme and apt programs replaying
//! captures, a GPU source fed from nvidia-smi captures), the exporter's
//! output passes `promtool check metrics`, and every name the catalog
//! below fixes for IPMI, NVMe, apt and GPUs appears with its labels and type.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dcmon_exporter::collector::Collector;
use dcmon_exporter::collector::ipmi::{self, write_sensors};
use dcmon_exporter::collector::ipmi_parse::SensorRow;
use dcmon_exporter::exposition::encode;
use dcmon_exporter::snapshot::Snapshot;
use dcmon_protocol::exposition::Format;

use crate::common::process::{Server, get_text, promtool_check_metrics};
use crate::common::stand_in::{Reply, StandIn};
use crate::common::{ParsedFamily, fixtures, parse_exposition};
use crate::gpu::fake_gpu_snapshot;

/// `(name, type, label names)` of the IPMI, NVMe, apt and GPU series dcmon
/// keeps from the exporters and scripts it replaces, plus dcmon's own additions for these collectors.
const CATALOG: &[(&str, &str, &[&str])] = &[
    ("ipmi_up", "gauge", &["collector"]),
    ("ipmi_scrape_duration_seconds", "gauge", &[]),
    ("ipmi_temperature_celsius", "gauge", &["id", "name"]),
    ("ipmi_temperature_state", "gauge", &["id", "name"]),
    ("ipmi_fan_speed_rpm", "gauge", &["id", "name"]),
    ("ipmi_fan_speed_ratio", "gauge", &["id", "name"]),
    ("ipmi_fan_speed_state", "gauge", &["id", "name"]),
    ("ipmi_voltage_volts", "gauge", &["id", "name"]),
    ("ipmi_voltage_state", "gauge", &["id", "name"]),
    ("ipmi_current_amperes", "gauge", &["id", "name"]),
    ("ipmi_current_state", "gauge", &["id", "name"]),
    ("ipmi_power_watts", "gauge", &["id", "name"]),
    ("ipmi_power_state", "gauge", &["id", "name"]),
    ("ipmi_sensor_value", "gauge", &["id", "name", "type"]),
    ("ipmi_sensor_state", "gauge", &["id", "name", "type"]),
    ("ipmi_dcmi_power_consumption_current_watts", "gauge", &[]),
    (
        "ipmi_bmc_info",
        "gauge",
        &[
            "firmware_revision",
            "manufacturer_id",
            "system_firmware_version",
        ],
    ),
    ("ipmi_chassis_power_state", "gauge", &[]),
    (
        "dcmon_ipmi_sensor_threshold",
        "gauge",
        &["id", "name", "threshold", "type"],
    ),
    (
        "nvme_device_info",
        "gauge",
        &["device", "firmware", "model", "serial"],
    ),
    ("nvme_critical_warning", "gauge", &["device"]),
    ("nvme_temperature_celsius", "gauge", &["device"]),
    ("nvme_available_spare_ratio", "gauge", &["device"]),
    ("nvme_available_spare_threshold_ratio", "gauge", &["device"]),
    ("nvme_percentage_used_ratio", "gauge", &["device"]),
    ("nvme_data_units_read_total", "counter", &["device"]),
    ("nvme_data_units_written_total", "counter", &["device"]),
    ("nvme_host_read_commands_total", "counter", &["device"]),
    ("nvme_host_write_commands_total", "counter", &["device"]),
    ("nvme_power_cycles_total", "counter", &["device"]),
    ("nvme_power_on_hours_total", "counter", &["device"]),
    ("nvme_unsafe_shutdowns_total", "counter", &["device"]),
    ("nvme_media_errors_total", "counter", &["device"]),
    ("nvme_num_err_log_entries_total", "counter", &["device"]),
    ("nvme_controller_busy_time_seconds", "gauge", &["device"]),
    ("nvme_physical_size_bytes", "gauge", &["device"]),
    ("nvme_used_bytes", "gauge", &["device"]),
    ("apt_upgrades_pending", "gauge", &["arch", "origin"]),
    ("apt_upgrades_held", "gauge", &["arch", "origin"]),
    ("apt_autoremove_pending", "gauge", &[]),
    ("apt_packages_obsolete", "gauge", &[]),
    ("apt_package_cache_timestamp_seconds", "gauge", &[]),
    ("node_reboot_required", "gauge", &[]),
    ("dcmon_apt_result_age_seconds", "gauge", &[]),
    (
        "nvidia_smi_gpu_info",
        "gauge",
        &[
            "compute_cap",
            "cuda_version",
            "driver_version",
            "index",
            "name",
            "pci_bus_id",
            "serial",
            "uuid",
            "vbios_version",
        ],
    ),
    ("nvidia_smi_index", "gauge", &["uuid"]),
    ("nvidia_smi_last_collect_success", "gauge", &[]),
    ("nvidia_smi_failed_scrapes_total", "counter", &[]),
    ("nvidia_smi_temperature_gpu", "gauge", &["uuid"]),
    ("nvidia_smi_temperature_memory", "gauge", &["uuid"]),
    ("nvidia_smi_utilization_gpu_ratio", "gauge", &["uuid"]),
    ("nvidia_smi_utilization_memory_ratio", "gauge", &["uuid"]),
    ("nvidia_smi_utilization_encoder_ratio", "gauge", &["uuid"]),
    ("nvidia_smi_utilization_decoder_ratio", "gauge", &["uuid"]),
    ("nvidia_smi_memory_total_bytes", "gauge", &["uuid"]),
    ("nvidia_smi_memory_used_bytes", "gauge", &["uuid"]),
    ("nvidia_smi_memory_free_bytes", "gauge", &["uuid"]),
    ("nvidia_smi_memory_reserved_bytes", "gauge", &["uuid"]),
    ("nvidia_smi_power_draw_watts", "gauge", &["uuid"]),
    ("nvidia_smi_power_limit_watts", "gauge", &["uuid"]),
    ("nvidia_smi_enforced_power_limit_watts", "gauge", &["uuid"]),
    ("nvidia_smi_power_default_limit_watts", "gauge", &["uuid"]),
    ("nvidia_smi_fan_speed_ratio", "gauge", &["uuid"]),
    (
        "nvidia_smi_clocks_current_graphics_clock_hz",
        "gauge",
        &["uuid"],
    ),
    ("nvidia_smi_clocks_current_sm_clock_hz", "gauge", &["uuid"]),
    (
        "nvidia_smi_clocks_current_memory_clock_hz",
        "gauge",
        &["uuid"],
    ),
    (
        "nvidia_smi_clocks_current_video_clock_hz",
        "gauge",
        &["uuid"],
    ),
    (
        "nvidia_smi_clocks_max_graphics_clock_hz",
        "gauge",
        &["uuid"],
    ),
    ("nvidia_smi_clocks_max_sm_clock_hz", "gauge", &["uuid"]),
    ("nvidia_smi_clocks_max_memory_clock_hz", "gauge", &["uuid"]),
    ("nvidia_smi_compute_mode", "gauge", &["uuid"]),
    ("nvidia_smi_pstate", "gauge", &["uuid"]),
    ("nvidia_smi_pcie_link_gen_current", "gauge", &["uuid"]),
    ("nvidia_smi_pcie_link_width_current", "gauge", &["uuid"]),
    (
        "nvidia_smi_ecc_errors_corrected_volatile_total",
        "counter",
        &["uuid"],
    ),
    (
        "nvidia_smi_ecc_errors_corrected_aggregate_total",
        "counter",
        &["uuid"],
    ),
    (
        "nvidia_smi_ecc_errors_uncorrected_volatile_total",
        "counter",
        &["uuid"],
    ),
    (
        "nvidia_smi_ecc_errors_uncorrected_aggregate_total",
        "counter",
        &["uuid"],
    ),
    ("nvidia_smi_remapped_rows_correctable", "gauge", &["uuid"]),
    ("nvidia_smi_remapped_rows_uncorrectable", "gauge", &["uuid"]),
    ("nvidia_smi_remapped_rows_pending", "gauge", &["uuid"]),
    ("nvidia_smi_remapped_rows_failure", "gauge", &["uuid"]),
    (
        "nvidia_smi_clocks_event_reasons_sw_power_cap",
        "gauge",
        &["uuid"],
    ),
    (
        "nvidia_smi_clocks_event_reasons_hw_slowdown",
        "gauge",
        &["uuid"],
    ),
    (
        "nvidia_smi_clocks_event_reasons_gpu_idle",
        "gauge",
        &["uuid"],
    ),
    (
        "nvidia_smi_compute_app_info",
        "gauge",
        &["pid", "process_name", "uuid"],
    ),
    (
        "nvidia_smi_compute_app_used_memory_bytes",
        "gauge",
        &["pid", "process_name", "uuid"],
    ),
];

/// Names this catalog's fake GPUs do not produce: the fake source reads
/// the captures' CSV, which has no XID or energy values, and leaves the
/// PCIe replay, throughput and retired-pages fields empty. Their shape is
/// checked elsewhere: XID by `xid_errors_are_counted_per_code`, every one of
/// them by the metrics reference (`metrics_doc.rs`, which also reads the
/// captures' `nvidia-smi -q` text and a Tesla T4's retired pages). MIG
/// families come from the MIG capture in the gpu tests; recovery and
/// fabric state are not exported.
const NOT_FROM_CAPTURES: &[&str] = &[
    "nvidia_smi_xid_errors_total",
    "nvidia_smi_xid_last_timestamp_seconds",
    "nvidia_smi_energy_joules_total",
    "nvidia_smi_pcie_replay_counter_total",
    "nvidia_smi_pcie_throughput_rx_bytes_per_second",
    "nvidia_smi_pcie_throughput_tx_bytes_per_second",
    "nvidia_smi_retired_pages_pending",
];

/// promtool's remarks on compatibility names: node_exporter's own CamelCase
/// names (as in peers.rs), and the nvme textfile script's
/// `nvme_power_on_hours_total`, which its dashboards read under that name.
/// `ipmitool mc info` / `chassis status` lines written for this test in
/// ipmitool's `Key : value` layout: no capture of either exists.
const SYNTHETIC_MC_INFO: &str = "Device ID                 : 32\nFirmware Revision         : 3.88\nManufacturer ID           : 10876\n";
const SYNTHETIC_CHASSIS: &str = "System Power         : on\nPower Overload       : false\n";

pub(crate) struct FakeHardware {
    pub(crate) ipmitool: StandIn,
    pub(crate) nvme: StandIn,
    pub(crate) apt_get: StandIn,
    pub(crate) apt_mark: StandIn,
    pub(crate) apt: StandIn,
    pub(crate) rootfs: tempfile::TempDir,
}

pub(crate) fn fake_hardware() -> FakeHardware {
    let f = fixtures();
    let rootfs = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = rootfs.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mc_info = write("mc-info.txt", SYNTHETIC_MC_INFO);
    let chassis = write("chassis.txt", SYNTHETIC_CHASSIS);
    let held = write("held.txt", "linux-generic\n");
    std::fs::create_dir_all(rootfs.path().join("run")).unwrap();
    std::fs::write(rootfs.path().join("run/reboot-required"), "").unwrap();
    std::fs::create_dir_all(rootfs.path().join("var/lib/apt/lists")).unwrap();
    let jammy = f.join("apt/saltstack_salt/apt-get-just-print_ubuntu-22.04-jammy.stdout.txt");
    FakeHardware {
        ipmitool: StandIn::new(
            "ipmitool",
            &[
                (
                    "*' sensor'",
                    Reply::Replay(f.join("ipmitool/sensor_supermicro-x9-x10-gpu-board.txt")),
                ),
                (
                    "*'sdr elist'",
                    Reply::Replay(f.join("ipmitool/sdr-elist_curated-mixed.txt")),
                ),
                (
                    "*'dcmi power reading'",
                    Reply::Replay(f.join("ipmitool/dcmi-power-reading.txt")),
                ),
                ("*'mc info'", Reply::Replay(mc_info)),
                ("*'chassis status'", Reply::Replay(chassis)),
            ],
        ),
        nvme: StandIn::new(
            "nvme",
            &[
                (
                    "'list -o json'",
                    Reply::Replay(f.join("nvme/gpl-3.0_netdata/v2.11/nvme-list.json")),
                ),
                (
                    "smart-log*",
                    Reply::Replay(f.join("nvme/gpl-3.0_netdata/v2.11/nvme-smart-log.json")),
                ),
            ],
        ),
        apt_get: StandIn::new(
            "apt-get",
            &[
                ("*Ignore-Hold*", Reply::Replay(jammy.clone())),
                (
                    "*",
                    Reply::Replay(f.join("apt/local_debian12/apt-get_-s_dist-upgrade.stdout")),
                ),
            ],
        ),
        apt_mark: StandIn::new("apt-mark", &[("showhold", Reply::Replay(held))]),
        apt: StandIn::new(
            "apt",
            &[(
                "*",
                Reply::Replay(f.join("apt/gpl-2.0_debian_apt_testsuite/apt-list-installed.txt")),
            )],
        ),
        rootfs,
    }
}

/// The exporter's output with every default collector on, GPUs excluded
/// (NVML is not fakeable across a process boundary), then the fake GPU
/// source's output appended.
fn full_output(hw: &FakeHardware) -> String {
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let args = [
        "--no-collector.gpu".to_owned(),
        format!("--collector.ipmi.ipmitool-path={}", path(&hw.ipmitool.path)),
        format!("--collector.nvme.nvme-path={}", path(&hw.nvme.path)),
        format!("--collector.apt.apt-get-path={}", path(&hw.apt_get.path)),
        format!("--collector.apt.apt-mark-path={}", path(&hw.apt_mark.path)),
        format!("--collector.apt.apt-path={}", path(&hw.apt.path)),
        format!("--path.rootfs={}", path(hw.rootfs.path())),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Server::exporter(&args);
    // apt runs in the background: wait for its first result.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut text = get_text(&exporter.url("/metrics"));
    while !text.contains("apt_upgrades_held{") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        text = get_text(&exporter.url("/metrics"));
    }
    let mut gpu = fake_gpu_snapshot();
    gpu.sort();
    text + &encode(gpu, Format::Text)
}

#[test]
fn full_output_with_fake_hardware_passes_promtool() {
    let hw = fake_hardware();
    let text = full_output(&hw);
    for collector in ["ipmi", "nvme", "apt"] {
        assert!(
            text.contains(&format!(
                "node_scrape_collector_success{{collector=\"{collector}\"}} 1"
            )),
            "{collector} did not succeed:\n{text}"
        );
    }
    let remarks = promtool_check_metrics(&text);
    // The exception is really exercised, so the list stays honest.
    assert!(remarks.contains("nvme_power_on_hours_total"), "{remarks}");
}

fn label_names(family: &ParsedFamily) -> BTreeSet<String> {
    let first = family.series.keys().next().expect("a series");
    first
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split('=').next().unwrap().to_owned())
        .collect()
}

#[test]
fn catalog_names_appear_with_labels_and_types() {
    let hw = fake_hardware();
    let mut families: BTreeMap<String, ParsedFamily> = parse_exposition(&full_output(&hw));

    // Fans in percent only occur in the HPE capture.
    let hpe = StandIn::new(
        "ipmitool",
        &[(
            "*' sensor'",
            Reply::Replay(fixtures().join("ipmitool/sensor_hpe-ilo.txt")),
        )],
    );
    let mut config = dcmon_exporter::config::Config::default();
    config.ipmi.ipmitool.program = hpe.path.clone();
    let mut out = Snapshot::new();
    ipmi::new(&config).update(&mut out).unwrap();
    // No `ipmitool sensor` capture has current or power sensors: one row
    // of each, in the shape ipmitool prints them, shows where they go.
    let row = |name: &str, unit: &str| SensorRow {
        name: name.into(),
        value: Some(1.0),
        unit: unit.into(),
        status: "ok".into(),
        thresholds: [None; 6],
    };
    write_sensors(
        &mut out,
        &[row("PS1 Curr", "Amps"), row("PS1 Power", "Watts")],
        &[],
    );
    out.sort();
    for (name, family) in parse_exposition(&encode(out, Format::Text)) {
        families.entry(name).or_insert(family);
    }

    let mut problems = Vec::new();
    for (name, kind, labels) in CATALOG {
        let Some(family) = families.get(*name) else {
            problems.push(format!("{name}: missing"));
            continue;
        };
        if family.kind != *kind {
            problems.push(format!("{name}: type {} (want {kind})", family.kind));
        }
        let want: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        let got = label_names(family);
        if got != want {
            problems.push(format!("{name}: labels {got:?} (want {want:?})"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for name in NOT_FROM_CAPTURES {
        assert!(!CATALOG.iter().any(|c| c.0 == *name), "{name} listed twice");
    }
}
