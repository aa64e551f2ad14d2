//! The gpu collector driven by a fake [`GpuSource`] whose values come from
//! real nvidia-smi captures (H100 and GeForce RTX 4080 SUPER under load),
//! plus the no-driver path and the real NVML source on this machine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use dcmon_exporter::collector::gpu::GpuCollector;
use dcmon_exporter::collector::gpu_nvml::NvmlSource;
use dcmon_exporter::collector::gpu_source::{
    DriverInfo, GpuProcess, GpuReading, GpuSource, GpuSourceError, XidCounts,
};
use dcmon_exporter::collector::{CollectError, Collector};
use dcmon_exporter::snapshot::Snapshot;

use crate::common::fixtures;
use crate::ipmi::sample;

pub const H100: &str = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt";
pub const RTX4080: &str = "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt";

fn capture(name: &str) -> String {
    let path: PathBuf = fixtures().join("nvidia").join(name);
    std::fs::read_to_string(path).unwrap()
}

/// The header and first row of the CSV under a `# <title>` section heading.
fn csv_section(text: &str, title: &str) -> Vec<BTreeMap<String, String>> {
    let start = text
        .find(&format!("# {title}"))
        .unwrap_or_else(|| panic!("no section {title}"));
    let mut lines = text[start..].lines().skip_while(|l| l.starts_with('#'));
    // Columns are `name [unit]`; the unit stays in each cell as well.
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(", ")
        .map(|h| h.split(" [").next().unwrap().to_owned())
        .collect();
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|row| {
            let cells: Vec<&str> = row.split(", ").collect();
            assert_eq!(cells.len(), header.len(), "{row}");
            header
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect()
        })
        .collect()
}

/// A cell as a number in its unit (`81559 MiB` → 81559), `None` for the
/// not-available markers.
fn number(cell: &str) -> Option<f64> {
    let value = cell.split(' ').next()?;
    match cell {
        "Yes" | "Active" => Some(1.0),
        "No" | "Not Active" => Some(0.0),
        _ => value.parse().ok(),
    }
}

/// A reading built from the capture's load-phase CSV, converted to the
/// units NVML delivers after the source's conversion.
pub fn reading_from_capture(name: &str) -> (DriverInfo, GpuReading) {
    let text = capture(name);
    let gpu = &csv_section(&text, "load :: query-gpu")[0];
    let get = |key: &str| number(gpu.get(key).unwrap_or_else(|| panic!("no column {key}")));
    let text_of = |key: &str| Some(gpu[key].clone()).filter(|v| !v.starts_with('['));
    let mib = |key: &str| get(key).map(|m| m * 1024.0 * 1024.0);
    let ratio = |key: &str| get(key).map(|p| p / 100.0);
    let hz = |key: &str| get(key).map(|m| m * 1e6);
    let processes = csv_section(&text, "load :: query-compute-apps")
        .into_iter()
        .map(|app| GpuProcess {
            pid: app["pid"].parse().unwrap(),
            name: app["process_name"].clone(),
            used_memory_bytes: number(&app["used_gpu_memory"]).map(|m| m * 1024.0 * 1024.0),
        })
        .collect();
    let reasons = [
        "gpu_idle",
        "sw_power_cap",
        "hw_slowdown",
        "hw_thermal_slowdown",
        "sw_thermal_slowdown",
    ]
    .into_iter()
    .filter_map(|r| Some((r, get(&format!("clocks_event_reasons.{r}"))? == 1.0)))
    .collect();
    let reading = GpuReading {
        index: get("index").unwrap() as u32,
        uuid: gpu["uuid"].clone(),
        name: gpu["name"].clone(),
        serial: text_of("serial"),
        vbios_version: text_of("vbios_version"),
        pci_bus_id: text_of("pci.bus_id"),
        compute_cap: text_of("compute_cap"),
        temperature_gpu: get("temperature.gpu"),
        temperature_memory: get("temperature.memory"),
        // `nvidia-smi -q` prints it as "GPU Slowdown Temp : 96 C" (GeForce);
        // data-center cards print T.Limit offsets instead, which NVML turns
        // into an absolute threshold the capture does not show.
        temperature_slowdown: text
            .lines()
            .find_map(|l| l.trim().strip_prefix("GPU Slowdown Temp"))
            .and_then(|rest| rest.trim_start_matches([' ', ':']).strip_suffix(" C"))
            .and_then(|v| v.trim().parse().ok()),
        utilization_gpu: ratio("utilization.gpu"),
        utilization_memory: ratio("utilization.memory"),
        utilization_encoder: ratio("utilization.encoder"),
        utilization_decoder: ratio("utilization.decoder"),
        memory_total: mib("memory.total"),
        memory_used: mib("memory.used"),
        memory_free: mib("memory.free"),
        memory_reserved: mib("memory.reserved"),
        power_draw: get("power.draw"),
        power_limit: get("power.limit"),
        enforced_power_limit: get("enforced.power.limit"),
        power_default_limit: get("power.default_limit"),
        energy_joules: None,
        fan_speed: ratio("fan.speed"),
        clocks_current: [
            hz("clocks.current.graphics"),
            hz("clocks.current.sm"),
            hz("clocks.current.memory"),
            hz("clocks.current.video"),
        ],
        clocks_max: [
            hz("clocks.max.graphics"),
            hz("clocks.max.sm"),
            hz("clocks.max.memory"),
        ],
        compute_mode: (gpu["compute_mode"] == "Default").then_some(0.0),
        pstate: gpu["pstate"].strip_prefix('P').and_then(|p| p.parse().ok()),
        pcie_link_gen: get("pcie.link.gen.current"),
        pcie_link_width: get("pcie.link.width.current"),
        pcie_replay_counter: None,
        pcie_throughput: [None, None],
        ecc_errors: [
            get("ecc.errors.corrected.volatile.total"),
            get("ecc.errors.corrected.aggregate.total"),
            get("ecc.errors.uncorrected.volatile.total"),
            get("ecc.errors.uncorrected.aggregate.total"),
        ],
        remapped_rows: [
            get("remapped_rows.correctable"),
            get("remapped_rows.uncorrectable"),
            get("remapped_rows.pending"),
            get("remapped_rows.failure"),
        ],
        retired_pages_pending: get("retired_pages.pending"),
        clock_event_reasons: reasons,
        processes,
        xid: XidCounts::default(),
    };
    let driver = DriverInfo {
        driver_version: gpu["driver_version"].clone(),
        cuda_version: "13.1".into(),
    };
    (driver, reading)
}

/// A GPU source that replays fixed readings, or fails.
#[derive(Debug)]
pub struct FakeSource {
    driver: DriverInfo,
    gpus: Mutex<Result<Vec<GpuReading>, GpuSourceError>>,
}

impl FakeSource {
    /// GPUs from the named captures, indexed in order.
    pub fn from_captures(names: &[&str]) -> Self {
        let mut driver = DriverInfo::default();
        let gpus = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (d, mut reading) = reading_from_capture(name);
                // One driver per host: the first capture's.
                if i == 0 {
                    driver = d;
                }
                reading.index = i as u32;
                // The captures mask every UUID to zeros; keep them apart.
                reading.uuid = format!("GPU-0000000{i}-AAAA-0000-0000-000000000000");
                reading
            })
            .collect();
        Self {
            driver,
            gpus: Mutex::new(Ok(gpus)),
        }
    }

    fn failing(error: GpuSourceError) -> Self {
        Self {
            driver: DriverInfo::default(),
            gpus: Mutex::new(Err(error)),
        }
    }
}

impl GpuSource for FakeSource {
    fn driver(&self) -> Result<DriverInfo, GpuSourceError> {
        self.gpus.lock().unwrap().as_ref().map_err(Clone::clone)?;
        Ok(self.driver.clone())
    }

    fn read(&self) -> Result<Vec<GpuReading>, GpuSourceError> {
        self.gpus.lock().unwrap().clone()
    }
}

/// The collector's output for an H100 and an RTX 4080 SUPER.
pub fn fake_gpu_snapshot() -> Snapshot {
    let collector =
        GpuCollector::with_source(Box::new(FakeSource::from_captures(&[H100, RTX4080])));
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    out
}

const H100_UUID: &str = "00000000-aaaa-0000-0000-000000000000";
const RTX_UUID: &str = "00000001-aaaa-0000-0000-000000000000";

#[test]
fn h100_values_under_nvidia_gpu_exporter_names() {
    let out = fake_gpu_snapshot();
    let h100 = [("uuid", H100_UUID)];
    let info = [
        ("uuid", H100_UUID),
        ("name", "NVIDIA H100 80GB HBM3"),
        ("index", "0"),
        ("driver_version", "590.48.01"),
        ("compute_cap", "9.0"),
        ("pci_bus_id", "00000000:00:09.0"),
        ("vbios_version", "96.00.A5.00.01"),
    ];
    assert_eq!(
        sample(&out, "nvidia_smi_gpu_info", &info),
        Some(1.0),
        "{:?}",
        out.get("nvidia_smi_gpu_info")
    );
    assert_eq!(
        sample(&out, "nvidia_smi_index", &[("uuid", RTX_UUID)]),
        Some(1.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_memory_total_bytes", &h100),
        Some(81559.0 * 1048576.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_power_limit_watts", &h100),
        Some(700.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_clocks_max_sm_clock_hz", &h100),
        Some(1980e6)
    );
    assert_eq!(sample(&out, "nvidia_smi_pstate", &h100), Some(0.0));
    assert_eq!(
        sample(
            &out,
            "nvidia_smi_ecc_errors_uncorrected_aggregate_total",
            &h100
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_remapped_rows_pending", &h100),
        Some(0.0)
    );
    let burn = [
        ("uuid", H100_UUID),
        ("pid", "11345"),
        ("process_name", "./gpu_burn"),
    ];
    assert_eq!(
        sample(&out, "nvidia_smi_compute_app_info", &burn),
        Some(1.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_compute_app_used_memory_bytes", &burn),
        Some(15690.0 * 1048576.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_last_collect_success", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_failed_scrapes_total", &[]),
        Some(0.0)
    );
}

#[test]
fn geforce_leaves_out_what_it_does_not_report() {
    let out = fake_gpu_snapshot();
    let rtx = [("uuid", RTX_UUID)];
    assert_eq!(
        sample(&out, "nvidia_smi_power_limit_watts", &rtx),
        Some(320.0)
    );
    assert_eq!(sample(&out, "nvidia_smi_pstate", &rtx), Some(2.0));
    assert_eq!(
        sample(&out, "nvidia_smi_utilization_encoder_ratio", &rtx),
        Some(0.72)
    );
    // [N/A] on GeForce: no series rather than a made-up zero.
    for absent in [
        "nvidia_smi_ecc_errors_corrected_volatile_total",
        "nvidia_smi_remapped_rows_correctable",
        "nvidia_smi_temperature_memory",
        "nvidia_smi_retired_pages_pending",
    ] {
        assert_eq!(sample(&out, absent, &rtx), None, "{absent}");
    }
    // The serial is [N/A]: an empty label value, not the marker.
    assert_eq!(
        sample(
            &out,
            "nvidia_smi_gpu_info",
            &[("uuid", RTX_UUID), ("serial", "")]
        ),
        Some(1.0)
    );
}

#[test]
fn xid_errors_are_counted_per_code() {
    let (driver, mut reading) = reading_from_capture(H100);
    reading.xid.by_code.insert(79, (2, 1_764_000_000.0));
    let source = FakeSource {
        driver,
        gpus: Mutex::new(Ok(vec![reading])),
    };
    let mut out = Snapshot::new();
    GpuCollector::with_source(Box::new(source))
        .update(&mut out)
        .unwrap();
    let xid = [
        ("uuid", "00000000-0000-0000-0000-000000000000"),
        ("xid", "79"),
    ];
    assert_eq!(sample(&out, "nvidia_smi_xid_errors_total", &xid), Some(2.0));
    assert_eq!(
        sample(&out, "nvidia_smi_xid_last_timestamp_seconds", &xid),
        Some(1_764_000_000.0)
    );
}

#[test]
fn no_driver_is_no_data_and_counts_failed_scrapes() {
    let collector = GpuCollector::with_source(Box::new(FakeSource::failing(
        GpuSourceError::Unavailable("libnvidia-ml.so.1: cannot open shared object file".into()),
    )));
    for expected_failures in [1.0, 2.0] {
        let mut out = Snapshot::new();
        let err = collector.update(&mut out).unwrap_err();
        assert!(matches!(err, CollectError::NoData(_)), "{err}");
        assert_eq!(
            sample(&out, "nvidia_smi_last_collect_success", &[]),
            Some(0.0)
        );
        assert_eq!(
            sample(&out, "nvidia_smi_failed_scrapes_total", &[]),
            Some(expected_failures)
        );
        assert!(out.get("nvidia_smi_gpu_info").is_none());
    }
}

#[test]
fn real_nvml_source_on_this_machine() {
    // Without a driver (the CI machines), NVML fails to load cleanly; on a
    // GPU host it returns at least one GPU. Either way, no panic.
    let source = NvmlSource::new();
    match source.read() {
        Ok(gpus) => {
            assert!(!gpus.is_empty());
            assert!(gpus[0].uuid.starts_with("GPU-"), "{:?}", gpus[0].uuid);
        }
        Err(err) => assert!(matches!(err, GpuSourceError::Unavailable(_)), "{err}"),
    }
}
