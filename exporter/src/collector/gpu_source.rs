//! The seam between the gpu collector and NVML: a [`GpuSource`] hands out
//! plain readings, so the collector (names, units, labels) is tested with a
//! fake source and NVML itself stays in `gpu_nvml`.
//!
//! Every reading is an `Option`: NVML answers `NOT_SUPPORTED` for many
//! fields on GeForce cards and under MIG, and a missing field must drop one
//! series, not the GPU.

use std::collections::BTreeMap;

/// Driver-wide facts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriverInfo {
    /// `595.71.05`.
    pub driver_version: String,
    /// CUDA driver API version as `major.minor` (`13.1`).
    pub cuda_version: String,
}

/// One running compute process.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcess {
    /// Process id (in the host's pid namespace).
    pub pid: u32,
    /// Process name; empty when it cannot be read.
    pub name: String,
    /// GPU memory it uses, bytes; `None` when NVML cannot tell (WDDM, MIG).
    pub used_memory_bytes: Option<f64>,
    /// The MIG GPU instance and compute instance it runs in; `None` when
    /// the GPU is not in MIG mode.
    pub mig_instance: Option<(u32, u32)>,
}

/// One MIG device (a compute instance inside a GPU instance) of a GPU in
/// MIG mode. Compute instances of one GPU instance share its memory, so
/// they report the same memory figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigReading {
    /// NVML's MIG device index under its parent GPU.
    pub index: u32,
    /// GPU instance id and compute instance id (`nvidia-smi`'s GI and CI
    /// ids); `None` when the driver cannot tell.
    pub instance: Option<(u32, u32)>,
    /// Streaming multiprocessors of the compute instance.
    pub multiprocessors: Option<f64>,
    /// Memory of its GPU instance, bytes: total, used, free.
    pub memory: [Option<f64>; 3],
}

/// One NVLink of a GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct NvLinkReading {
    /// Link number, from 0.
    pub link: u32,
    /// Whether the link is up.
    pub active: bool,
    /// Error counters since the driver loaded: data-link replays,
    /// recoveries, flit CRC errors, data CRC errors.
    pub errors: [Option<f64>; 4],
}

/// XID errors seen on one GPU since the exporter started, by XID code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct XidCounts {
    /// XID code → (count, Unix time of the latest occurrence).
    pub by_code: BTreeMap<u64, (u64, f64)>,
}

/// Everything read from one GPU in one scrape, in NVML's units converted
/// to Prometheus base units (bytes, hertz, watts, joules, ratios 0–1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    /// NVML index.
    pub index: u32,
    /// UUID as NVML prints it (`GPU-…`).
    pub uuid: String,
    /// Product name (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// Board serial number.
    pub serial: Option<String>,
    /// VBIOS version.
    pub vbios_version: Option<String>,
    /// PCI bus id (`00000000:18:00.0`).
    pub pci_bus_id: Option<String>,
    /// CUDA compute capability (`9.0`).
    pub compute_cap: Option<String>,
    /// GPU core temperature, °C.
    pub temperature_gpu: Option<f64>,
    /// HBM temperature, °C.
    pub temperature_memory: Option<f64>,
    /// Temperature at which the GPU starts hardware slowdown, °C: the
    /// critical threshold fan control's thermal guard watches.
    pub temperature_slowdown: Option<f64>,
    /// Utilisation ratios.
    pub utilization_gpu: Option<f64>,
    /// Memory-controller utilisation ratio.
    pub utilization_memory: Option<f64>,
    /// Encoder utilisation ratio.
    pub utilization_encoder: Option<f64>,
    /// Decoder utilisation ratio.
    pub utilization_decoder: Option<f64>,
    /// Framebuffer memory, bytes.
    pub memory_total: Option<f64>,
    /// Used framebuffer memory, bytes.
    pub memory_used: Option<f64>,
    /// Free framebuffer memory, bytes.
    pub memory_free: Option<f64>,
    /// Memory reserved by the driver, bytes.
    pub memory_reserved: Option<f64>,
    /// Power draw, watts.
    pub power_draw: Option<f64>,
    /// Power management limit, watts.
    pub power_limit: Option<f64>,
    /// Enforced power limit, watts.
    pub enforced_power_limit: Option<f64>,
    /// Default power limit, watts.
    pub power_default_limit: Option<f64>,
    /// Energy since the driver loaded, joules.
    pub energy_joules: Option<f64>,
    /// Fan speed ratio (intended speed of fan 0).
    pub fan_speed: Option<f64>,
    /// Current clocks, hertz: graphics, SM, memory, video.
    pub clocks_current: [Option<f64>; 4],
    /// Maximum clocks, hertz: graphics, SM, memory.
    pub clocks_max: [Option<f64>; 3],
    /// Compute mode (NVML enum value: 0 default, 2 prohibited, 3 exclusive process).
    pub compute_mode: Option<f64>,
    /// Performance state, 0 (P0) to 15.
    pub pstate: Option<f64>,
    /// PCIe link generation and width.
    pub pcie_link_gen: Option<f64>,
    /// PCIe link width (lanes).
    pub pcie_link_width: Option<f64>,
    /// Highest PCIe generation the link can train at (GPU and host
    /// together); sysfs `max_link_speed` fills it where NVML does not.
    pub pcie_link_gen_max: Option<f64>,
    /// Widest the PCIe link can train at, lanes; sysfs `max_link_width`
    /// fills it where NVML does not.
    pub pcie_link_width_max: Option<f64>,
    /// PCIe replay counter.
    pub pcie_replay_counter: Option<f64>,
    /// PCIe throughput, bytes per second (rx, tx).
    pub pcie_throughput: [Option<f64>; 2],
    /// ECC errors: [corrected volatile, corrected aggregate, uncorrected volatile, uncorrected aggregate].
    pub ecc_errors: [Option<f64>; 4],
    /// Remapped rows: correctable, uncorrectable, pending, failure.
    pub remapped_rows: [Option<f64>; 4],
    /// Pages pending retirement (pre-Ampere), 0/1.
    pub retired_pages_pending: Option<f64>,
    /// Active clock-event (throttle) reasons as `(reason name, active)`.
    pub clock_event_reasons: Vec<(&'static str, bool)>,
    /// MIG mode: (current, pending), `None` where the GPU has no MIG.
    pub mig_mode: Option<(bool, bool)>,
    /// MIG devices, when the GPU is in MIG mode.
    pub mig_devices: Vec<MigReading>,
    /// NVLinks NVML reports a state for; empty on GPUs without NVLink.
    pub nvlinks: Vec<NvLinkReading>,
    /// Running compute processes.
    pub processes: Vec<GpuProcess>,
    /// XID errors since start.
    pub xid: XidCounts,
}

/// Why GPU readings could not be taken at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GpuSourceError {
    /// No NVIDIA driver (libnvidia-ml not loadable, or no kernel module).
    #[error("NVML unavailable: {0}")]
    Unavailable(String),
    /// NVML loaded but failed.
    #[error("NVML: {0}")]
    Failed(String),
}

/// Where GPU readings come from: NVML on a real host, a fake in tests.
///
/// Calls may block for as long as the driver does: the collector makes
/// them on a worker thread of its own (`gpu_worker`) and stops waiting at
/// its deadline. `read` skips a GPU whose handle or identity NVML cannot
/// give (a GPU that fell off the bus), so the others are still reported
/// and the missing one shows up against the PCI bus.
pub trait GpuSource: Send + Sync + std::fmt::Debug {
    /// Driver-wide information.
    fn driver(&self) -> Result<DriverInfo, GpuSourceError>;
    /// One reading per GPU.
    fn read(&self) -> Result<Vec<GpuReading>, GpuSourceError>;
}
