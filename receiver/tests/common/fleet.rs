//! A small fleet's worth of series with the names the exporter
//! and the receiver use, as the exporters, the receiver's heartbeat and a Prometheus
//! scraping the receiver's `/metrics` would write them: two GPU hosts
//! (`gpu01` healthy, `gpu02` with a BMC warning, a failing collector, a
//! recent XID and a pending reboot) and the receiver's self-metrics.

use std::path::PathBuf;

use dcmon_protocol::remote_write::SeriesSamples;

/// The workspace root (rules/, grafana/, systemd/ live there).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Sample spacing: the exporters' default push interval.
pub const STEP_MS: i64 = 30_000;
/// Samples per series.
pub const SAMPLES: i64 = 80;

/// Builds the series, sampled every 30 s up to `end_ms`.
struct Fleet {
    end_ms: i64,
    out: Vec<SeriesSamples>,
}

impl Fleet {
    fn times(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (0..SAMPLES).map(move |i| (i, self.end_ms - (SAMPLES - 1 - i) * STEP_MS))
    }

    /// A series whose value at step `i` is `value(i)`.
    fn series(&mut self, name: &str, labels: &[(&str, &str)], value: impl Fn(i64) -> f64) {
        let mut all: Vec<(String, String)> = vec![("__name__".into(), name.into())];
        all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all.sort();
        let samples = self.times().map(|(i, t)| (t, value(i))).collect();
        self.out.push(SeriesSamples {
            labels: all,
            samples,
        });
    }

    fn gauge(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series(name, labels, move |_| value);
    }

    /// A counter starting at `start` and growing by `per_step` each sample.
    fn counter(&mut self, name: &str, labels: &[(&str, &str)], start: f64, per_step: f64) {
        self.series(name, labels, move |i| start + per_step * i as f64);
    }
}

/// Series for two hosts and a receiver, ending at `end_ms`.
pub fn fleet_series(end_ms: i64) -> Vec<SeriesSamples> {
    let mut f = Fleet {
        end_ms,
        out: Vec::new(),
    };
    let end_s = end_ms as f64 / 1000.0;
    for (n, host) in ["gpu01", "gpu02"].into_iter().enumerate() {
        let troubled = n == 1;
        let h = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
            let mut l = vec![("job", "dcmon"), ("instance", host)];
            l.extend_from_slice(extra);
            l
        };
        let on = |flag: bool| if flag { 1.0 } else { 0.0 };

        // Written by the receiver's heartbeat.
        f.gauge("up", &h(&[]), 1.0);
        let seen_base = f.end_ms;
        f.series(
            "dcmon_client_last_seen_timestamp_seconds",
            &[("instance", host)],
            move |i| (seen_base - (SAMPLES - 1 - i) * STEP_MS) as f64 / 1000.0,
        );

        // OS.
        f.gauge(
            "dcmon_exporter_build_info",
            &h(&[("version", "0.1.0"), ("revision", "670a4f7")]),
            1.0,
        );
        for cpu in ["0", "1", "2", "3"] {
            f.counter(
                "node_cpu_seconds_total",
                &h(&[("cpu", cpu), ("mode", "idle")]),
                1e5,
                21.0,
            );
            f.counter(
                "node_cpu_seconds_total",
                &h(&[("cpu", cpu), ("mode", "user")]),
                4e4,
                7.5,
            );
            f.counter(
                "node_cpu_seconds_total",
                &h(&[("cpu", cpu), ("mode", "system")]),
                1e4,
                1.2,
            );
            f.counter(
                "node_cpu_seconds_total",
                &h(&[("cpu", cpu), ("mode", "iowait")]),
                500.0,
                0.3,
            );
        }
        f.series("node_load1", &h(&[]), |i| 3.0 + (i % 7) as f64 * 0.1);
        f.gauge("node_load5", &h(&[]), 3.2);
        f.gauge("node_load15", &h(&[]), 3.1);
        f.gauge("node_memory_MemTotal_bytes", &h(&[]), 512e9);
        f.series("node_memory_MemAvailable_bytes", &h(&[]), |i| {
            300e9 - i as f64 * 1e8
        });
        f.gauge("node_memory_MemFree_bytes", &h(&[]), 120e9);
        f.gauge("node_memory_Cached_bytes", &h(&[]), 170e9);
        f.gauge("node_memory_Buffers_bytes", &h(&[]), 2e9);
        for (name, per_step) in [
            ("node_pressure_cpu_waiting_seconds_total", 0.6),
            ("node_pressure_memory_waiting_seconds_total", 0.03),
            ("node_pressure_memory_stalled_seconds_total", 0.01),
            ("node_pressure_io_waiting_seconds_total", 0.2),
        ] {
            f.counter(name, &h(&[]), 100.0, per_step);
        }
        f.gauge("node_boot_time_seconds", &h(&[]), end_s - 86400.0 * 12.0);
        f.gauge("node_reboot_required", &h(&[]), on(troubled));
        for (device, fstype, mountpoint, size, avail) in [
            ("/dev/nvme0n1p2", "ext4", "/", 480e9, 200e9),
            ("/dev/md0", "xfs", "/data", 15e12, 4e12),
            ("tmpfs", "tmpfs", "/run", 50e9, 49e9),
        ] {
            let l = h(&[
                ("device", device),
                ("fstype", fstype),
                ("mountpoint", mountpoint),
            ]);
            f.gauge("node_filesystem_size_bytes", &l, size);
            f.series("node_filesystem_avail_bytes", &l, move |i| {
                avail - i as f64 * 1e6
            });
            f.gauge("node_filesystem_free_bytes", &l, avail + 1e9);
            f.gauge("node_filesystem_readonly", &l, 0.0);
        }
        for device in ["nvme0n1", "nvme1n1"] {
            let l = h(&[("device", device)]);
            f.counter("node_disk_read_bytes_total", &l, 1e12, 3e8);
            f.counter("node_disk_written_bytes_total", &l, 2e12, 9e8);
            f.counter("node_disk_io_time_seconds_total", &l, 5e4, 6.0);
            f.counter("node_disk_reads_completed_total", &l, 1e8, 9000.0);
            f.counter("node_disk_writes_completed_total", &l, 2e8, 15000.0);
        }
        for device in ["eno1", "ib0", "lo"] {
            let l = h(&[("device", device)]);
            f.counter("node_network_receive_bytes_total", &l, 1e13, 3.75e9);
            f.counter("node_network_transmit_bytes_total", &l, 8e12, 1.5e9);
            f.counter("node_network_receive_errs_total", &l, 0.0, 0.0);
            f.counter("node_network_transmit_errs_total", &l, 0.0, 0.0);
            f.counter("node_network_receive_drop_total", &l, 12.0, 0.1);
        }
        f.series(
            "node_hwmon_temp_celsius",
            &h(&[("chip", "platform_coretemp_0"), ("sensor", "temp1")]),
            |i| 55.0 + (i % 5) as f64,
        );
        for collector in ["cpu", "meminfo", "gpu", "ipmi", "nvme", "apt"] {
            let failing = troubled && collector == "nvme";
            f.gauge(
                "node_scrape_collector_success",
                &h(&[("collector", collector)]),
                on(!failing),
            );
            f.gauge(
                "node_scrape_collector_duration_seconds",
                &h(&[("collector", collector)]),
                if collector == "ipmi" { 1.8 } else { 0.004 },
            );
        }

        // GPUs: both on the PCI bus, both seen by NVML.
        f.gauge("dcmon_gpu_pci_devices", &h(&[]), 2.0);
        f.gauge("dcmon_gpu_nvml_devices", &h(&[]), 2.0);
        f.gauge("dcmon_gpu_nvml_responsive", &h(&[]), 1.0);
        for (k, (uuid, index)) in [("0", "0"), ("1", "1")].into_iter().enumerate() {
            let uuid: &'static str = match (n, uuid) {
                (0, "0") => "8f2a61c4-5d1e-4b7a-9c3e-0a1b2c3d4e50",
                (0, _) => "8f2a61c4-5d1e-4b7a-9c3e-0a1b2c3d4e51",
                (_, "0") => "3c9d0e7f-1a2b-4c5d-8e9f-a0b1c2d3e460",
                _ => "3c9d0e7f-1a2b-4c5d-8e9f-a0b1c2d3e461",
            };
            let g = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
                let mut l = vec![("job", "dcmon"), ("instance", host), ("uuid", uuid)];
                l.extend_from_slice(extra);
                l
            };
            f.gauge(
                "nvidia_smi_gpu_info",
                &g(&[
                    ("name", "NVIDIA H100 80GB HBM3"),
                    ("index", index),
                    ("driver_version", "550.127.05"),
                    ("vbios_version", "96.00.99.00.01"),
                    ("serial", "1650923012345"),
                    ("pci_bus_id", "00000000:18:00.0"),
                    ("compute_cap", "9.0"),
                    ("cuda_version", "12.4"),
                ]),
                1.0,
            );
            f.gauge("nvidia_smi_index", &g(&[]), k as f64);
            let warm = 8.0 * k as f64;
            f.series("nvidia_smi_temperature_gpu", &g(&[]), move |i| {
                62.0 + warm + (i % 6) as f64
            });
            f.gauge("nvidia_smi_temperature_memory", &g(&[]), 70.0 + warm);
            f.series("nvidia_smi_utilization_gpu_ratio", &g(&[]), move |i| {
                0.55 + 0.05 * (i % 8) as f64
            });
            f.gauge("nvidia_smi_utilization_memory_ratio", &g(&[]), 0.4);
            f.gauge("nvidia_smi_memory_total_bytes", &g(&[]), 85_899_345_920.0);
            f.gauge("nvidia_smi_memory_used_bytes", &g(&[]), 61e9);
            f.series("nvidia_smi_power_draw_watts", &g(&[]), |i| {
                520.0 + (i % 9) as f64 * 10.0
            });
            f.gauge("nvidia_smi_enforced_power_limit_watts", &g(&[]), 700.0);
            f.gauge("nvidia_smi_power_limit_watts", &g(&[]), 700.0);
            f.counter("nvidia_smi_energy_joules_total", &g(&[]), 9e9, 16500.0);
            f.gauge("nvidia_smi_clocks_current_sm_clock_hz", &g(&[]), 1.755e9);
            f.gauge("nvidia_smi_clocks_max_sm_clock_hz", &g(&[]), 1.98e9);
            f.gauge(
                "nvidia_smi_pcie_throughput_rx_bytes_per_second",
                &g(&[]),
                2.1e9,
            );
            f.gauge(
                "nvidia_smi_pcie_throughput_tx_bytes_per_second",
                &g(&[]),
                0.9e9,
            );
            f.gauge("nvidia_smi_pcie_link_gen_current", &g(&[]), 5.0);
            f.gauge("nvidia_smi_pcie_link_width_current", &g(&[]), 16.0);
            f.gauge("nvidia_smi_pcie_link_gen_max", &g(&[]), 5.0);
            f.gauge("nvidia_smi_pcie_link_width_max", &g(&[]), 16.0);
            let bus = if k == 0 {
                "00000000:18:00.0"
            } else {
                "00000000:2A:00.0"
            };
            f.gauge("dcmon_gpu_present", &h(&[("pci_bus_id", bus)]), 1.0);
            f.gauge(
                "dcmon_gpu_health",
                &g(&[("gpu", index), ("pci_bus_id", bus), ("reason", "ok")]),
                1.0,
            );
            f.gauge("nvidia_smi_fan_speed_ratio", &g(&[]), 0.0);
            f.counter(
                "nvidia_smi_ecc_errors_uncorrected_volatile_total",
                &g(&[]),
                0.0,
                0.0,
            );
            f.counter(
                "nvidia_smi_ecc_errors_corrected_volatile_total",
                &g(&[]),
                3.0,
                0.05,
            );
            f.gauge("nvidia_smi_remapped_rows_pending", &g(&[]), 0.0);
            f.gauge("nvidia_smi_remapped_rows_failure", &g(&[]), 0.0);
            f.gauge(
                "nvidia_smi_clocks_event_reasons_sw_power_cap",
                &g(&[]),
                on(k == 0),
            );
            f.gauge(
                "nvidia_smi_clocks_event_reasons_hw_thermal_slowdown",
                &g(&[]),
                0.0,
            );
            f.gauge("nvidia_smi_clocks_event_reasons_gpu_idle", &g(&[]), 0.0);
            f.gauge(
                "nvidia_smi_compute_app_used_memory_bytes",
                &g(&[("pid", "41822"), ("process_name", "python3")]),
                58e9,
            );
            if troubled && k == 1 {
                f.series("nvidia_smi_xid_errors_total", &g(&[("xid", "13")]), |i| {
                    1.0 + (i / 40) as f64
                });
                f.gauge(
                    "nvidia_smi_xid_last_timestamp_seconds",
                    &g(&[("xid", "13")]),
                    end_s - 600.0,
                );
            }
        }

        // BMC.
        for (id, name, kind, value, state, thresholds) in [
            (
                "1",
                "CPU1 Temp",
                "temperature",
                58.0,
                0.0,
                [("unc", 90.0), ("ucr", 95.0)],
            ),
            (
                "2",
                "System Temp",
                "temperature",
                41.0,
                on(troubled),
                [("unc", 40.0), ("ucr", 85.0)],
            ),
            (
                "41",
                "FAN1",
                "fan",
                5200.0,
                0.0,
                [("lcr", 420.0), ("lnc", 700.0)],
            ),
            (
                "42",
                "FAN2",
                "fan",
                5100.0,
                0.0,
                [("lcr", 420.0), ("lnc", 700.0)],
            ),
            (
                "60",
                "12V",
                "voltage",
                12.1,
                0.0,
                [("lcr", 10.8), ("ucr", 13.2)],
            ),
        ] {
            let l = h(&[("id", id), ("name", name)]);
            let (value_name, state_name) = match kind {
                "temperature" => ("ipmi_temperature_celsius", "ipmi_temperature_state"),
                "fan" => ("ipmi_fan_speed_rpm", "ipmi_fan_speed_state"),
                _ => ("ipmi_voltage_volts", "ipmi_voltage_state"),
            };
            f.series(value_name, &l, move |i| value + (i % 3) as f64 * 0.5);
            f.gauge(state_name, &l, state);
            for (threshold, limit) in thresholds {
                f.gauge(
                    "dcmon_ipmi_sensor_threshold",
                    &h(&[
                        ("id", id),
                        ("name", name),
                        ("type", kind),
                        ("threshold", threshold),
                    ]),
                    limit,
                );
            }
        }
        f.gauge(
            "ipmi_power_watts",
            &h(&[("id", "70"), ("name", "PW Consumption")]),
            2950.0,
        );
        f.gauge(
            "ipmi_power_state",
            &h(&[("id", "70"), ("name", "PW Consumption")]),
            0.0,
        );
        f.gauge(
            "ipmi_sensor_state",
            &h(&[("id", "80"), ("name", "PS1 Status"), ("type", "discrete")]),
            0.0,
        );
        f.series("ipmi_dcmi_power_consumption_current_watts", &h(&[]), |i| {
            2900.0 + (i % 4) as f64 * 25.0
        });
        f.gauge("ipmi_up", &h(&[("collector", "ipmi")]), 1.0);

        // NVMe.
        for (device, serial, used) in [
            ("nvme0n1", "S64FNE0R812345", 0.03),
            ("nvme1n1", "S64FNE0R812346", 0.91),
        ] {
            let l = h(&[("device", device)]);
            f.gauge(
                "nvme_device_info",
                &h(&[
                    ("device", device),
                    ("model", "SAMSUNG MZQL23T8HCLS-00A07"),
                    ("firmware", "GDC5902Q"),
                    ("serial", serial),
                ]),
                1.0,
            );
            f.gauge("nvme_critical_warning", &l, 0.0);
            f.gauge("nvme_temperature_celsius", &l, 41.0);
            f.gauge("nvme_available_spare_ratio", &l, 1.0);
            f.gauge("nvme_available_spare_threshold_ratio", &l, 0.1);
            f.gauge("nvme_percentage_used_ratio", &l, used);
            f.counter("nvme_data_units_read_total", &l, 4e9, 6000.0);
            f.counter("nvme_data_units_written_total", &l, 9e9, 18000.0);
            f.counter("nvme_host_read_commands_total", &l, 5e10, 90000.0);
            f.counter("nvme_host_write_commands_total", &l, 8e10, 150000.0);
            f.gauge("nvme_power_on_hours_total", &l, 14_020.0);
            f.gauge("nvme_unsafe_shutdowns_total", &l, 17.0);
            f.gauge("nvme_media_errors_total", &l, 0.0);
            f.gauge("nvme_num_err_log_entries_total", &l, 2.0);
            f.counter("nvme_controller_busy_time_seconds", &l, 6e5, 4.0);
            f.gauge("nvme_physical_size_bytes", &l, 3.84e12);
            f.gauge("nvme_used_bytes", &l, 1.2e12);
        }

        // apt.
        f.gauge(
            "apt_upgrades_pending",
            &h(&[("origin", "Debian:12.12/stable"), ("arch", "amd64")]),
            7.0,
        );
        f.gauge(
            "apt_upgrades_pending",
            &h(&[("origin", "Debian:12/stable-security"), ("arch", "amd64")]),
            if troubled { 3.0 } else { 0.0 },
        );
        f.gauge(
            "apt_upgrades_held",
            &h(&[("origin", "Debian:12.12/stable"), ("arch", "amd64")]),
            1.0,
        );
        f.gauge("apt_autoremove_pending", &h(&[]), 4.0);
        f.gauge("apt_packages_obsolete", &h(&[]), 0.0);
        f.gauge(
            "apt_package_cache_timestamp_seconds",
            &h(&[]),
            end_s - 5.0 * 3600.0,
        );

        // Fan control.
        f.gauge("dcmon_fan_mode", &h(&[]), if troubled { 1.0 } else { 2.0 });
        f.gauge("dcmon_fan_manual_override", &h(&[]), on(troubled));
        for zone in ["0", "1"] {
            f.gauge(
                "dcmon_fan_zone_duty_ratio",
                &h(&[("zone", zone)]),
                if troubled { 0.6 } else { 0.35 },
            );
        }
        f.counter("dcmon_fan_thermal_guard_trips_total", &h(&[]), 0.0, 0.0);
        f.gauge("dcmon_fan_near_lower_critical", &h(&[]), 0.0);
        f.counter("dcmon_fan_mode_reasserts_total", &h(&[]), 2.0, 0.0);

        // Shipper.
        let endpoint = ("endpoint", "receiver");
        f.counter(
            "dcmon_remote_write_samples_total",
            &h(&[endpoint, ("result", "sent")]),
            1e7,
            1450.0,
        );
        f.counter(
            "dcmon_remote_write_samples_total",
            &h(&[endpoint, ("result", "failed")]),
            300.0,
            0.0,
        );
        f.counter(
            "dcmon_remote_write_samples_total",
            &h(&[endpoint, ("result", "dropped")]),
            0.0,
            0.0,
        );
        f.gauge("dcmon_remote_write_spool_bytes", &h(&[endpoint]), 0.0);
        let base = f.end_ms;
        f.series(
            "dcmon_remote_write_last_success_timestamp_seconds",
            &h(&[endpoint]),
            move |i| (base - (SAMPLES - 1 - i) * STEP_MS) as f64 / 1000.0,
        );
    }

    // The receiver's /metrics, scraped by a Prometheus and written back.
    let r = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut l = vec![("job", "dcmon-receiver"), ("instance", "receiver:8000")];
        l.extend_from_slice(extra);
        l
    };
    f.counter(
        "dcmon_receiver_ingested_samples_total",
        &r(&[]),
        5e8,
        2900.0,
    );
    f.counter("dcmon_receiver_write_requests_total", &r(&[]), 2e6, 2.0);
    f.counter(
        "dcmon_receiver_rejected_requests_total",
        &r(&[("reason", "unauthorized")]),
        4.0,
        0.02,
    );
    f.gauge("dcmon_receiver_series", &r(&[]), 5800.0);
    f.gauge("dcmon_receiver_samples", &r(&[]), 9.1e7);
    f.gauge("dcmon_receiver_db_bytes", &r(&[]), 1.4e8);
    f.counter("dcmon_receiver_compactions_total", &r(&[]), 900.0, 0.5);
    f.counter("dcmon_receiver_retention_runs_total", &r(&[]), 90.0, 0.05);
    for (handler, per_step, share_fast) in [
        ("/api/v1/write", 2.0, 0.9),
        ("/api/v1/query_range", 0.5, 0.6),
    ] {
        let mut cumulative = 0.0;
        for (le, share) in [
            ("0.005", share_fast),
            ("0.05", (1.0 - share_fast) * 0.8),
            ("0.5", (1.0 - share_fast) * 0.2),
            ("+Inf", 0.0),
        ] {
            cumulative += share;
            f.counter(
                "dcmon_receiver_request_duration_seconds_bucket",
                &r(&[("handler", handler), ("le", le)]),
                1000.0 * cumulative,
                per_step * cumulative,
            );
        }
        f.counter(
            "dcmon_receiver_request_duration_seconds_count",
            &r(&[("handler", handler)]),
            1000.0,
            per_step,
        );
        f.counter(
            "dcmon_receiver_request_duration_seconds_sum",
            &r(&[("handler", handler)]),
            12.0,
            per_step * 0.01,
        );
    }
    f.out
}
