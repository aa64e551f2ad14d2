//! `gpu`: NVIDIA GPUs with utkuozdemir/nvidia_gpu_exporter's names
//! (`nvidia_smi_*`, so its Grafana dashboard 14574 works), read from NVML
//! rather than by running nvidia-smi.
//!
//! The collector only turns [`GpuReading`]s into families; where readings
//! come from is a [`GpuSource`]: NVML (`gpu_nvml`) on a host, a fake in
//! tests. A host without the NVIDIA driver logs one line at start-up and
//! then reports `success 0` quietly on every scrape.
//!
//! Not exported yet: MIG instances (`nvidia_smi_mig_*`),
//! `nvidia_smi_gpu_recovery_action` and `nvidia_smi_fabric_state`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::gpu_source::{DriverInfo, GpuReading, GpuSource, GpuSourceError};
use super::{CollectError, Collector, Services};
use crate::fans::{SharedTemperatures, Temperature};
use crate::snapshot::{Kind, Labels, Snapshot};

/// Flag and label name.
pub const NAME: &str = "gpu";

/// The `gpu` collector.
#[derive(Debug)]
pub struct GpuCollector {
    source: Box<dyn GpuSource>,
    failed_scrapes: AtomicU64,
    /// Where each collection leaves the GPU temperatures for fan control's
    /// thermal guard.
    temperatures: Option<SharedTemperatures>,
}

/// Builds the collector on NVML; it shares its temperatures with fan control.
pub fn new(services: &Services) -> GpuCollector {
    GpuCollector::with_source(Box::new(super::gpu_nvml::NvmlSource::new()))
        .sharing_temperatures(services.gpu_temperatures.clone())
}

impl GpuCollector {
    /// A collector reading from `source` (tests pass a fake).
    pub fn with_source(source: Box<dyn GpuSource>) -> Self {
        Self {
            source,
            failed_scrapes: AtomicU64::new(0),
            temperatures: None,
        }
    }

    /// Leaves each collection's GPU temperatures and slowdown thresholds in
    /// `board`.
    pub fn sharing_temperatures(mut self, board: SharedTemperatures) -> Self {
        self.temperatures = Some(board);
        self
    }

    fn share_temperatures(&self, gpus: &[GpuReading]) {
        let Some(board) = &self.temperatures else {
            return;
        };
        let readings = gpus
            .iter()
            .filter_map(|gpu| {
                Some(Temperature {
                    name: format!("GPU {} ({})", gpu.index, uuid_label(&gpu.uuid)),
                    celsius: gpu.temperature_gpu?,
                    critical: gpu.temperature_slowdown?,
                })
            })
            .collect();
        *board.lock().unwrap_or_else(|e| e.into_inner()) = readings;
    }
}

/// The exporter's `uuid` label: lower case, without the `GPU-` prefix.
pub fn uuid_label(uuid: &str) -> String {
    let uuid = uuid.strip_prefix("GPU-").unwrap_or(uuid);
    uuid.to_ascii_lowercase()
}

/// One per-GPU gauge or counter: name, help, and how to read it.
type Field = (&'static str, &'static str, fn(&GpuReading) -> Option<f64>);

const GAUGES: &[Field] = &[
    (
        "nvidia_smi_temperature_gpu",
        "Core GPU temperature, in degrees C.",
        |r| r.temperature_gpu,
    ),
    (
        "nvidia_smi_temperature_memory",
        "HBM memory temperature, in degrees C.",
        |r| r.temperature_memory,
    ),
    (
        "nvidia_smi_utilization_gpu_ratio",
        "Percent of time over the past sample period during which one or more kernels was executing on the GPU, as a ratio.",
        |r| r.utilization_gpu,
    ),
    (
        "nvidia_smi_utilization_memory_ratio",
        "Percent of time over the past sample period during which global (device) memory was being read or written, as a ratio.",
        |r| r.utilization_memory,
    ),
    (
        "nvidia_smi_utilization_encoder_ratio",
        "Encoder utilization, as a ratio.",
        |r| r.utilization_encoder,
    ),
    (
        "nvidia_smi_utilization_decoder_ratio",
        "Decoder utilization, as a ratio.",
        |r| r.utilization_decoder,
    ),
    (
        "nvidia_smi_memory_total_bytes",
        "Total installed GPU memory, in bytes.",
        |r| r.memory_total,
    ),
    (
        "nvidia_smi_memory_used_bytes",
        "Total memory allocated by active contexts, in bytes.",
        |r| r.memory_used,
    ),
    (
        "nvidia_smi_memory_free_bytes",
        "Total free memory, in bytes.",
        |r| r.memory_free,
    ),
    (
        "nvidia_smi_memory_reserved_bytes",
        "Total memory reserved by the NVIDIA driver and firmware, in bytes.",
        |r| r.memory_reserved,
    ),
    (
        "nvidia_smi_power_draw_watts",
        "The last measured power draw for the entire board, in watts.",
        |r| r.power_draw,
    ),
    (
        "nvidia_smi_power_limit_watts",
        "The software power limit, in watts.",
        |r| r.power_limit,
    ),
    (
        "nvidia_smi_enforced_power_limit_watts",
        "The power management algorithm's power ceiling, in watts.",
        |r| r.enforced_power_limit,
    ),
    (
        "nvidia_smi_power_default_limit_watts",
        "The default power management algorithm's power ceiling, in watts.",
        |r| r.power_default_limit,
    ),
    (
        "nvidia_smi_fan_speed_ratio",
        "The fan speed value is the percent of the product's maximum noise tolerance fan speed that the device's fan is currently intended to run at, as a ratio.",
        |r| r.fan_speed,
    ),
    (
        "nvidia_smi_clocks_current_graphics_clock_hz",
        "Current frequency of graphics (shader) clock, in Hz.",
        |r| r.clocks_current[0],
    ),
    (
        "nvidia_smi_clocks_current_sm_clock_hz",
        "Current frequency of SM (Streaming Multiprocessor) clock, in Hz.",
        |r| r.clocks_current[1],
    ),
    (
        "nvidia_smi_clocks_current_memory_clock_hz",
        "Current frequency of memory clock, in Hz.",
        |r| r.clocks_current[2],
    ),
    (
        "nvidia_smi_clocks_current_video_clock_hz",
        "Current frequency of video encoder/decoder clock, in Hz.",
        |r| r.clocks_current[3],
    ),
    (
        "nvidia_smi_clocks_max_graphics_clock_hz",
        "Maximum frequency of graphics (shader) clock, in Hz.",
        |r| r.clocks_max[0],
    ),
    (
        "nvidia_smi_clocks_max_sm_clock_hz",
        "Maximum frequency of SM (Streaming Multiprocessor) clock, in Hz.",
        |r| r.clocks_max[1],
    ),
    (
        "nvidia_smi_clocks_max_memory_clock_hz",
        "Maximum frequency of memory clock, in Hz.",
        |r| r.clocks_max[2],
    ),
    (
        "nvidia_smi_compute_mode",
        "The compute mode flag (0 default, 2 prohibited, 3 exclusive process).",
        |r| r.compute_mode,
    ),
    (
        "nvidia_smi_pstate",
        "The current performance state for the GPU (0 = P0, maximum performance, to 15 = P15).",
        |r| r.pstate,
    ),
    (
        "nvidia_smi_pcie_link_gen_current",
        "The current PCI-E link generation.",
        |r| r.pcie_link_gen,
    ),
    (
        "nvidia_smi_pcie_link_width_current",
        "The current PCI-E link width.",
        |r| r.pcie_link_width,
    ),
    (
        "nvidia_smi_pcie_throughput_rx_bytes_per_second",
        "PCIe receive throughput over the last 20 ms, in bytes per second.",
        |r| r.pcie_throughput[0],
    ),
    (
        "nvidia_smi_pcie_throughput_tx_bytes_per_second",
        "PCIe transmit throughput over the last 20 ms, in bytes per second.",
        |r| r.pcie_throughput[1],
    ),
    (
        "nvidia_smi_remapped_rows_correctable",
        "Number of rows remapped due to correctable errors.",
        |r| r.remapped_rows[0],
    ),
    (
        "nvidia_smi_remapped_rows_uncorrectable",
        "Number of rows remapped due to uncorrectable errors.",
        |r| r.remapped_rows[1],
    ),
    (
        "nvidia_smi_remapped_rows_pending",
        "Whether a row remapping is pending (1) or not (0).",
        |r| r.remapped_rows[2],
    ),
    (
        "nvidia_smi_remapped_rows_failure",
        "Whether a row remapping has failed (1) or not (0).",
        |r| r.remapped_rows[3],
    ),
    (
        "nvidia_smi_retired_pages_pending",
        "Whether pages are pending retirement (1) or not (0).",
        |r| r.retired_pages_pending,
    ),
];

const COUNTERS: &[Field] = &[
    (
        "nvidia_smi_energy_joules_total",
        "Total energy consumed by the GPU since the driver was last reloaded, in joules.",
        |r| r.energy_joules,
    ),
    (
        "nvidia_smi_pcie_replay_counter_total",
        "PCIe replay counter.",
        |r| r.pcie_replay_counter,
    ),
    (
        "nvidia_smi_ecc_errors_corrected_volatile_total",
        "Corrected ECC errors since the last driver reload.",
        |r| r.ecc_errors[0],
    ),
    (
        "nvidia_smi_ecc_errors_corrected_aggregate_total",
        "Corrected ECC errors over the GPU's lifetime.",
        |r| r.ecc_errors[1],
    ),
    (
        "nvidia_smi_ecc_errors_uncorrected_volatile_total",
        "Uncorrected ECC errors since the last driver reload.",
        |r| r.ecc_errors[2],
    ),
    (
        "nvidia_smi_ecc_errors_uncorrected_aggregate_total",
        "Uncorrected ECC errors over the GPU's lifetime.",
        |r| r.ecc_errors[3],
    ),
];

/// Writes every family of one GPU.
pub fn write_gpu(out: &mut Snapshot, driver: &DriverInfo, gpu: &GpuReading) {
    let uuid = uuid_label(&gpu.uuid);
    let by_uuid = || -> Labels { vec![("uuid", uuid.clone())] };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    out.gauge(
        "nvidia_smi_gpu_info",
        "A metric with a constant '1' value labeled by gpu uuid, name, driver_version.",
        vec![
            ("uuid", uuid.clone()),
            ("name", gpu.name.clone()),
            ("index", gpu.index.to_string()),
            ("driver_version", driver.driver_version.clone()),
            ("vbios_version", text(&gpu.vbios_version)),
            ("serial", text(&gpu.serial)),
            ("pci_bus_id", text(&gpu.pci_bus_id)),
            ("compute_cap", text(&gpu.compute_cap)),
            ("cuda_version", driver.cuda_version.clone()),
        ],
        1.0,
    );
    out.gauge(
        "nvidia_smi_index",
        "Zero based index of the GPU.",
        by_uuid(),
        gpu.index as f64,
    );
    for (name, help, read) in GAUGES {
        if let Some(value) = read(gpu) {
            out.gauge(*name, *help, by_uuid(), value);
        }
    }
    for (name, help, read) in COUNTERS {
        if let Some(value) = read(gpu) {
            out.counter(*name, *help, by_uuid(), value);
        }
    }
    for (reason, active) in &gpu.clock_event_reasons {
        out.gauge(
            format!("nvidia_smi_clocks_event_reasons_{reason}"),
            format!("Whether the {reason} clock event reason is active (1) or not (0)."),
            by_uuid(),
            if *active { 1.0 } else { 0.0 },
        );
    }
    for (xid, (count, last)) in &gpu.xid.by_code {
        let labels = vec![("uuid", uuid.clone()), ("xid", xid.to_string())];
        out.counter(
            "nvidia_smi_xid_errors_total",
            "XID errors reported by the driver since the exporter started, by XID code.",
            labels.clone(),
            *count as f64,
        );
        out.gauge(
            "nvidia_smi_xid_last_timestamp_seconds",
            "Unix time of the latest XID error of this code.",
            labels,
            *last,
        );
    }
    for process in &gpu.processes {
        let labels = vec![
            ("uuid", uuid.clone()),
            ("pid", process.pid.to_string()),
            ("process_name", process.name.clone()),
        ];
        out.gauge(
            "nvidia_smi_compute_app_info",
            "A metric with a constant '1' value per running compute process.",
            labels.clone(),
            1.0,
        );
        if let Some(bytes) = process.used_memory_bytes {
            out.gauge(
                "nvidia_smi_compute_app_used_memory_bytes",
                "GPU memory used by the compute process, in bytes.",
                labels,
                bytes,
            );
        }
    }
}

impl Collector for GpuCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let result = self
            .source
            .driver()
            .and_then(|driver| Ok((driver, self.source.read()?)));
        let ok = result.is_ok();
        if !ok {
            self.failed_scrapes.fetch_add(1, Ordering::Relaxed);
        }
        out.gauge(
            "nvidia_smi_last_collect_success",
            "Whether the last collection of GPU metrics succeeded (1) or not (0).",
            vec![],
            if ok { 1.0 } else { 0.0 },
        );
        out.family(
            "nvidia_smi_failed_scrapes_total",
            "Number of failed collections of GPU metrics.",
            Kind::Counter,
        )
        .push(vec![], self.failed_scrapes.load(Ordering::Relaxed) as f64);
        match result {
            Ok((driver, gpus)) => {
                for gpu in &gpus {
                    write_gpu(out, &driver, gpu);
                }
                self.share_temperatures(&gpus);
                Ok(())
            }
            // Already logged once at start-up by the source.
            Err(GpuSourceError::Unavailable(why)) => Err(CollectError::NoData(why)),
            Err(GpuSourceError::Failed(why)) => {
                Err(CollectError::parse(std::path::Path::new("NVML"), why))
            }
        }
    }
}
