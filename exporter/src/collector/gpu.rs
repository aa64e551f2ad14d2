//! `gpu`: NVIDIA GPUs with utkuozdemir/nvidia_gpu_exporter's names
//! (`nvidia_smi_*`, so its Grafana dashboard 14574 works), read from NVML
//! rather than by running nvidia-smi, plus dcmon's own health series
//! (`dcmon_gpu_*`): GPUs on the PCI bus against GPUs NVML enumerates,
//! whether NVML answers at all, a verdict per GPU (`gpu_health`), and
//! the owner of each compute process (`gpu_procs`), bounded in number.
//!
//! The collector only turns [`GpuReading`]s into families; where readings
//! come from is a [`GpuSource`]: NVML (`gpu_nvml`) on a host, a fake in
//! tests. The source is only ever called on its worker thread
//! (`gpu_worker`), so a hung driver costs one deadline, not the scrape. A
//! host without the NVIDIA driver logs one line at start-up and then
//! reports `success 0` quietly on every scrape.
//!
//! Under MIG the parent GPU keeps its series and each MIG device adds its
//! own (`write_mig`). Not exported yet: `nvidia_smi_gpu_recovery_action`
//! and `nvidia_smi_fabric_state`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::gpu_pci::{self, PciGpu};
use super::gpu_procs;
use super::gpu_source::{DriverInfo, GpuProcess, GpuReading, GpuSource, GpuSourceError};
use super::gpu_worker::{Call, NvmlWorker};
use super::{CollectError, Collector, Services};
use crate::config::Config;
use crate::fans::{SharedTemperatures, Temperature};
use crate::snapshot::{Kind, SampleLabels, Snapshot};

/// Flag and label name.
pub const NAME: &str = "gpu";

/// How long an NVML read is waited for when no flag says otherwise
/// (`--collector.gpu.nvml-deadline`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// Most compute processes exported per scrape when no flag says otherwise
/// (`--collector.gpu.max-processes`).
pub const DEFAULT_MAX_PROCESSES: usize = 100;

/// The `gpu` collector.
#[derive(Debug)]
pub struct GpuCollector {
    worker: NvmlWorker,
    /// Where NVIDIA functions on the PCI bus are counted; `None` skips it.
    sysfs: Option<PathBuf>,
    /// The procfs root and passwd file compute processes are attributed
    /// from; `None` exports no `dcmon_gpu_process_info`.
    procfs: Option<(PathBuf, PathBuf)>,
    /// Most compute processes exported per scrape (the largest memory
    /// users first).
    max_processes: usize,
    failed_scrapes: AtomicU64,
    /// Where each collection leaves the GPU temperatures for fan control's
    /// thermal guard.
    temperatures: Option<SharedTemperatures>,
    /// Every GPU seen on the bus or in NVML since start, by bus id, with
    /// the index and UUID NVML last gave it: a GPU NVML loses keeps its
    /// series (`dcmon_gpu_present 0`, health `lost`) under the same labels.
    known: Mutex<BTreeMap<String, Known>>,
}

/// The labels of a GPU as NVML last named it (empty when only the PCI bus
/// has seen it).
#[derive(Debug, Clone, Default)]
struct Known {
    gpu: String,
    uuid: String,
}

/// Builds the collector on NVML, counting GPUs on the PCI bus of the
/// configured sysfs; it shares its temperatures with fan control.
pub fn new(config: &Config, services: &Services) -> GpuCollector {
    GpuCollector::on_worker(
        || Box::new(super::gpu_nvml::NvmlSource::new()),
        config.gpu.nvml_deadline,
    )
    .reading_pci(config.roots.sysfs.clone())
    .attributing_processes(
        config.roots.procfs.clone(),
        config.roots.root("/etc/passwd"),
    )
    .bounding_processes(config.gpu.max_processes)
    .sharing_temperatures(services.gpu_temperatures.clone())
}

impl GpuCollector {
    /// A collector reading from `source` (tests pass a fake), waiting
    /// [`DEFAULT_DEADLINE`] for it.
    pub fn with_source(source: Box<dyn GpuSource>) -> Self {
        Self::on_worker(move || source, DEFAULT_DEADLINE)
    }

    /// A collector whose source `make` builds on the worker thread, each
    /// read waited for up to `deadline`.
    pub fn on_worker<F>(make: F, deadline: Duration) -> Self
    where
        F: FnOnce() -> Box<dyn GpuSource> + Send + 'static,
    {
        Self {
            worker: NvmlWorker::spawn(make, deadline),
            sysfs: None,
            procfs: None,
            max_processes: DEFAULT_MAX_PROCESSES,
            failed_scrapes: AtomicU64::new(0),
            temperatures: None,
            known: Mutex::default(),
        }
    }

    /// Counts NVIDIA GPUs on the PCI bus under `sysfs` and fills link
    /// maxima NVML does not give from it.
    pub fn reading_pci(mut self, sysfs: PathBuf) -> Self {
        self.sysfs = Some(sysfs);
        self
    }

    /// Attributes compute processes to users, Slurm jobs and containers
    /// from `procfs`, naming users from the `passwd` file.
    pub fn attributing_processes(mut self, procfs: PathBuf, passwd: PathBuf) -> Self {
        self.procfs = Some((procfs, passwd));
        self
    }

    /// Exports at most `max` compute processes per scrape.
    pub fn bounding_processes(mut self, max: usize) -> Self {
        self.max_processes = max;
        self
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
        "nvidia_smi_pcie_link_gen_max",
        "The maximum PCI-E link generation possible with this GPU and system configuration.",
        |r| r.pcie_link_gen_max,
    ),
    (
        "nvidia_smi_pcie_link_width_max",
        "The maximum PCI-E link width possible with this GPU and system configuration.",
        |r| r.pcie_link_width_max,
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

/// Writes every family of one GPU but its compute processes (bounded
/// across GPUs by the collector).
pub fn write_gpu(out: &mut Snapshot, driver: &DriverInfo, gpu: &GpuReading) {
    let uuid = uuid_label(&gpu.uuid);
    let by_uuid = || -> SampleLabels { vec![("uuid", uuid.clone())] };
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
    for link in &gpu.nvlinks {
        let labels = || vec![("uuid", uuid.clone()), ("link", link.link.to_string())];
        out.gauge(
            "dcmon_gpu_nvlink_active",
            "Whether the NVLink is up (1) or not (0).",
            labels(),
            if link.active { 1.0 } else { 0.0 },
        );
        let kinds = ["replay", "recovery", "crc_flit", "crc_data"];
        for (kind, count) in kinds.into_iter().zip(link.errors) {
            if let Some(count) = count {
                let mut labels = labels();
                labels.push(("error", kind.to_owned()));
                out.counter(
                    "dcmon_gpu_nvlink_errors_total",
                    "NVLink data-link errors since the driver loaded, by kind (replay, recovery, crc_flit, crc_data).",
                    labels,
                    count,
                );
            }
        }
    }
    write_mig(out, &uuid, gpu);
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
}

/// MIG mode, and under it one set of series per MIG device, labelled with
/// its GPU and compute instance ids as `nvidia-smi` prints them. The
/// parent GPU keeps every series above (temperature, power, ECC, …);
/// NVML reports no utilisation per MIG device, so none is exported.
fn write_mig(out: &mut Snapshot, uuid: &str, gpu: &GpuReading) {
    if let Some((current, pending)) = gpu.mig_mode {
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        out.gauge(
            "nvidia_smi_mig_mode_current",
            "Whether MIG mode is enabled (1) or not (0).",
            vec![("uuid", uuid.to_owned())],
            flag(current),
        );
        out.gauge(
            "nvidia_smi_mig_mode_pending",
            "Whether MIG mode will be enabled (1) or not (0) after the next GPU reset.",
            vec![("uuid", uuid.to_owned())],
            flag(pending),
        );
    }
    for mig in &gpu.mig_devices {
        let id = |pick: fn((u32, u32)) -> u32| mig.instance.map(pick).map(|v| v.to_string());
        let labels = || {
            vec![
                ("uuid", uuid.to_owned()),
                ("mig_device", mig.index.to_string()),
                ("gpu_instance", id(|(g, _)| g).unwrap_or_default()),
                ("compute_instance", id(|(_, c)| c).unwrap_or_default()),
            ]
        };
        out.gauge(
            "dcmon_gpu_mig_info",
            "A MIG device of the GPU: its index, GPU instance id and compute instance id (empty when the driver cannot tell); always 1.",
            labels(),
            1.0,
        );
        if let Some(count) = mig.multiprocessors {
            out.gauge(
                "dcmon_gpu_mig_multiprocessors",
                "Streaming multiprocessors of the MIG device's compute instance.",
                labels(),
                count,
            );
        }
        let memory = [
            (
                "dcmon_gpu_mig_memory_total_bytes",
                "Memory of the MIG device's GPU instance (shared by its compute instances), in bytes.",
            ),
            (
                "dcmon_gpu_mig_memory_used_bytes",
                "Memory in use in the MIG device's GPU instance (shared by its compute instances), in bytes.",
            ),
            (
                "dcmon_gpu_mig_memory_free_bytes",
                "Free memory in the MIG device's GPU instance (shared by its compute instances), in bytes.",
            ),
        ];
        for ((name, help), value) in memory.into_iter().zip(mig.memory) {
            if let Some(value) = value {
                out.gauge(name, help, labels(), value);
            }
        }
    }
}

/// The compute processes of every GPU, the largest memory users first,
/// at most `max` of them; with `procfs`, each attributed to its owner.
fn write_processes(
    out: &mut Snapshot,
    gpus: &[GpuReading],
    max: usize,
    procfs: Option<&(PathBuf, PathBuf)>,
) {
    let mut all: Vec<(String, &GpuProcess)> = gpus
        .iter()
        .flat_map(|gpu| {
            let uuid = uuid_label(&gpu.uuid);
            gpu.processes.iter().map(move |p| (uuid.clone(), p))
        })
        .collect();
    out.gauge(
        "dcmon_gpu_processes",
        "Compute processes on the host's GPUs, before --collector.gpu.max-processes.",
        vec![],
        all.len() as f64,
    );
    // Stable: equal users keep NVML's order.
    all.sort_by(|a, b| {
        let memory = |p: &GpuProcess| p.used_memory_bytes.unwrap_or(-1.0);
        memory(b.1).total_cmp(&memory(a.1))
    });
    let dropped = all.len().saturating_sub(max);
    all.truncate(max);
    out.gauge(
        "dcmon_gpu_processes_dropped",
        "Compute processes left out of this scrape's per-process series by --collector.gpu.max-processes (the smallest memory users).",
        vec![],
        dropped as f64,
    );
    let users = procfs
        .map(|(_, passwd)| std::fs::read_to_string(passwd).unwrap_or_default())
        .map(|text| gpu_procs::users(&text))
        .unwrap_or_default();
    for (uuid, process) in all {
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
                labels.clone(),
                bytes,
            );
        }
        if let Some((root, _)) = procfs {
            let owner = gpu_procs::owner(root, &users, process.pid);
            let mut labels = labels;
            let instance = |pick: fn((u32, u32)) -> u32| {
                process
                    .mig_instance
                    .map(|i| pick(i).to_string())
                    .unwrap_or_default()
            };
            labels.extend([
                ("user", owner.user),
                ("slurm_job_id", owner.slurm_job_id),
                ("container_id", owner.container_id),
                ("gpu_instance", instance(|(g, _)| g)),
                ("compute_instance", instance(|(_, c)| c)),
            ]);
            out.gauge(
                "dcmon_gpu_process_info",
                "A compute process's owner: user, Slurm job id and container id, and the MIG GPU and compute instance it runs in (each empty when none or unreadable).",
                labels,
                1.0,
            );
        }
    }
}

/// Fills the link fields NVML left empty from the GPU's PCI function.
fn fill_link(gpu: &mut GpuReading, pci: &[PciGpu]) {
    let Some(bus) = gpu.pci_bus_id.as_deref().map(gpu_pci::bus_id) else {
        return;
    };
    let Some(function) = pci.iter().find(|p| p.bus_id == bus) else {
        return;
    };
    gpu.pcie_link_gen = gpu.pcie_link_gen.or(function.link_gen);
    gpu.pcie_link_width = gpu.pcie_link_width.or(function.link_width);
    gpu.pcie_link_gen_max = gpu.pcie_link_gen_max.or(function.link_gen_max);
    gpu.pcie_link_width_max = gpu.pcie_link_width_max.or(function.link_width_max);
}

/// One GPU's verdict: 1 when `reason` is `ok`, 0 otherwise.
fn write_health(out: &mut Snapshot, known: &Known, bus: &str, reason: &str) {
    out.gauge(
        "dcmon_gpu_health",
        "Whether the GPU is healthy (1, reason ok) or not (0; reason: lost, unresponsive, ecc_uncorrectable, remap_pending, xid_hardware, link_degraded, thermal_idle).",
        vec![
            ("gpu", known.gpu.clone()),
            ("uuid", known.uuid.clone()),
            ("pci_bus_id", bus.to_owned()),
            ("reason", reason.to_owned()),
        ],
        if reason == "ok" { 1.0 } else { 0.0 },
    );
}

fn write_present(out: &mut Snapshot, bus: &str, present: bool) {
    out.gauge(
        "dcmon_gpu_present",
        "Whether NVML enumerates the GPU at this PCI address (1) or not (0) although the PCI bus shows it or NVML did earlier.",
        vec![("pci_bus_id", bus.to_owned())],
        if present { 1.0 } else { 0.0 },
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Collector for GpuCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let (pci, pci_error) = match self.sysfs.as_deref().map(gpu_pci::scan) {
            None | Some(Ok(None)) => (None, None),
            Some(Ok(Some(pci))) => (Some(pci), None),
            Some(Err(err)) => (None, Some(err)),
        };
        let call = self.worker.call();
        out.gauge(
            "dcmon_gpu_nvml_responsive",
            "Whether NVML answered the last read within the deadline (1) or a call is still running past it (0).",
            vec![],
            if matches!(call, Call::Answered(_)) { 1.0 } else { 0.0 },
        );
        if let Some(pci) = &pci {
            out.gauge(
                "dcmon_gpu_pci_devices",
                "NVIDIA display and 3D controllers on the PCI bus (vendor 0x10de, class 0x03), from sysfs.",
                vec![],
                pci.len() as f64,
            );
        }
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for function in pci.iter().flatten() {
            known.entry(function.bus_id.clone()).or_default();
        }
        let result = match call {
            Call::Unresponsive { since } => {
                for (bus, gpu) in known.iter() {
                    write_health(out, gpu, bus, "unresponsive");
                }
                // Logged once by the worker; no line per scrape.
                Err(CollectError::NoData(format!(
                    "NVML has not answered for {:?} (deadline {:?})",
                    since.elapsed(),
                    self.worker.deadline()
                )))
            }
            Call::Answered(Ok((driver, mut gpus))) => {
                out.gauge(
                    "dcmon_gpu_nvml_devices",
                    "GPUs NVML enumerates and can read (0 without the NVIDIA driver).",
                    vec![],
                    gpus.len() as f64,
                );
                let now = unix_now();
                let mut seen = BTreeSet::new();
                for gpu in &mut gpus {
                    fill_link(gpu, pci.as_deref().unwrap_or_default());
                    write_gpu(out, &driver, gpu);
                    let labels = Known {
                        gpu: gpu.index.to_string(),
                        uuid: uuid_label(&gpu.uuid),
                    };
                    let bus = gpu.pci_bus_id.as_deref().map(gpu_pci::bus_id);
                    write_health(
                        out,
                        &labels,
                        bus.as_deref().unwrap_or_default(),
                        super::gpu_health::verdict(gpu, now),
                    );
                    if let Some(bus) = bus {
                        seen.insert(bus.clone());
                        known.insert(bus, labels);
                    }
                }
                for (bus, gpu) in known.iter() {
                    let present = seen.contains(bus);
                    write_present(out, bus, present);
                    if !present {
                        write_health(out, gpu, bus, "lost");
                    }
                }
                write_processes(out, &gpus, self.max_processes, self.procfs.as_ref());
                self.share_temperatures(&gpus);
                Ok(())
            }
            Call::Answered(Err(err)) => {
                if let GpuSourceError::Unavailable(_) = err {
                    // No driver: NVML sees no GPU, and any on the bus is lost.
                    out.gauge(
                        "dcmon_gpu_nvml_devices",
                        "GPUs NVML enumerates and can read (0 without the NVIDIA driver).",
                        vec![],
                        0.0,
                    );
                    for (bus, gpu) in known.iter() {
                        write_present(out, bus, false);
                        write_health(out, gpu, bus, "lost");
                    }
                }
                Err(match err {
                    // Already logged once at start-up by the source.
                    GpuSourceError::Unavailable(why) => CollectError::NoData(why),
                    GpuSourceError::Failed(why) => CollectError::parse(Path::new("NVML"), why),
                })
            }
        };
        drop(known);
        if result.is_err() {
            self.failed_scrapes.fetch_add(1, Ordering::Relaxed);
        }
        out.gauge(
            "nvidia_smi_last_collect_success",
            "Whether the last collection of GPU metrics succeeded (1) or not (0).",
            vec![],
            if result.is_ok() { 1.0 } else { 0.0 },
        );
        out.family(
            "nvidia_smi_failed_scrapes_total",
            "Number of failed collections of GPU metrics.",
            Kind::Counter,
        )
        .push(vec![], self.failed_scrapes.load(Ordering::Relaxed) as f64);
        result?;
        match pci_error {
            Some(err) => Err(err.into()),
            None => Ok(()),
        }
    }
}
