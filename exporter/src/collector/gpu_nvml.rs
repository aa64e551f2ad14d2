//! The real [`GpuSource`]: NVML through `nvml-wrapper`, which loads
//! `libnvidia-ml.so.1` at run time, so the exporter builds and starts on
//! hosts without the NVIDIA driver.
//!
//! NVML is initialised once per process and kept for its lifetime (it is
//! `Send + Sync`; the XID event thread borrows it for as long as the
//! process runs). Without a driver, one line is logged when the collector
//! is built; later attempts to load NVML (at most once a minute, for a
//! driver that loads after the exporter) are quiet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::enum_wrappers::nv_link::ErrorCounter;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id;
use nvml_wrapper::{Device, Nvml};

use super::gpu_source::{
    DriverInfo, GpuProcess, GpuReading, GpuSource, GpuSourceError, MigReading, NvLinkReading,
    XidCounts,
};

/// How often a failed NVML load is retried.
const RETRY_EVERY: Duration = Duration::from_secs(60);

/// NVML's clock-event (throttle) reasons under nvidia_gpu_exporter's names.
const REASONS: [(ThrottleReasons, &str); 8] = [
    (ThrottleReasons::GPU_IDLE, "gpu_idle"),
    (
        ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
        "applications_clocks_setting",
    ),
    (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
    (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
    (ThrottleReasons::SYNC_BOOST, "sync_boost"),
    (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
    (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
    (
        ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN,
        "hw_power_brake_slowdown",
    ),
];

/// XID counts per GPU UUID, filled by the event thread.
type XidTable = Arc<Mutex<HashMap<String, XidCounts>>>;

enum State {
    Ready(&'static Nvml, XidTable),
    Unavailable { why: String, tried: Instant },
}

/// NVML-backed GPU readings.
pub struct NvmlSource {
    state: Mutex<State>,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = matches!(
            *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            State::Ready(..)
        );
        f.debug_struct("NvmlSource").field("ready", &ready).finish()
    }
}

impl Default for NvmlSource {
    fn default() -> Self {
        Self::new()
    }
}

impl NvmlSource {
    /// Loads NVML now; logs once if it cannot.
    pub fn new() -> Self {
        let state = match load() {
            Ok(state) => state,
            Err(why) => {
                tracing::info!(
                    collector = super::gpu::NAME,
                    reason = %why,
                    "NVIDIA driver not available; the gpu collector will report success 0"
                );
                State::Unavailable {
                    why,
                    tried: Instant::now(),
                }
            }
        };
        Self {
            state: Mutex::new(state),
        }
    }

    /// NVML and the XID table, loading NVML again if it failed a while ago.
    fn nvml(&self) -> Result<(&'static Nvml, XidTable), GpuSourceError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let State::Unavailable { tried, .. } = &*state
            && tried.elapsed() >= RETRY_EVERY
        {
            *state = load().unwrap_or_else(|why| State::Unavailable {
                why,
                tried: Instant::now(),
            });
            if matches!(*state, State::Ready(..)) {
                tracing::info!(collector = super::gpu::NAME, "NVML loaded");
            }
        }
        match &*state {
            State::Ready(nvml, xids) => Ok((nvml, Arc::clone(xids))),
            State::Unavailable { why, .. } => Err(GpuSourceError::Unavailable(why.clone())),
        }
    }
}

fn load() -> Result<State, String> {
    let nvml = Nvml::init().map_err(|e| e.to_string())?;
    // One NVML handle for the life of the process: the event thread and
    // every Device borrow it.
    let nvml: &'static Nvml = Box::leak(Box::new(nvml));
    let xids = XidTable::default();
    start_xid_thread(nvml, Arc::clone(&xids));
    Ok(State::Ready(nvml, xids))
}

/// Counts XID errors from NVML's event API on a thread of its own.
fn start_xid_thread(nvml: &'static Nvml, xids: XidTable) {
    let spawned = std::thread::Builder::new()
        .name("dcmon-nvml-xid".into())
        .spawn(move || {
            if let Err(why) = watch_xids(nvml, &xids) {
                tracing::warn!(collector = super::gpu::NAME, error = %why, "XID events unavailable");
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(collector = super::gpu::NAME, error = %err, "cannot start the XID thread");
    }
}

fn watch_xids(nvml: &'static Nvml, xids: &XidTable) -> Result<(), String> {
    let text = |e: NvmlError| e.to_string();
    let mut set = nvml.create_event_set().map_err(text)?;
    let mut registered = 0;
    for index in 0..nvml.device_count().map_err(text)? {
        let device = nvml.device_by_index(index).map_err(text)?;
        let supported = device
            .supported_event_types()
            .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR));
        if !supported {
            continue;
        }
        // A failed registration releases the set, so stop at the first one.
        set = device
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .map_err(|e| e.error.to_string())?;
        registered += 1;
    }
    if registered == 0 {
        return Err("no GPU supports XID events".into());
    }
    loop {
        match set.wait(10_000) {
            Ok(event) => {
                let (Some(XidError::Value(xid)), Ok(uuid)) =
                    (event.event_data, event.device.uuid())
                else {
                    continue;
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                let mut table = xids.lock().unwrap_or_else(|e| e.into_inner());
                let entry = table
                    .entry(uuid)
                    .or_default()
                    .by_code
                    .entry(xid)
                    .or_default();
                entry.0 += 1;
                entry.1 = now;
            }
            Err(NvmlError::Timeout) => {}
            Err(other) => return Err(other.to_string()),
        }
    }
}

impl GpuSource for NvmlSource {
    fn driver(&self) -> Result<DriverInfo, GpuSourceError> {
        let (nvml, _) = self.nvml()?;
        let failed = |e: NvmlError| GpuSourceError::Failed(e.to_string());
        let cuda = nvml.sys_cuda_driver_version().map_err(failed)?;
        Ok(DriverInfo {
            driver_version: nvml.sys_driver_version().map_err(failed)?,
            // NVML encodes 12.4 as 12040.
            cuda_version: format!("{}.{}", cuda / 1000, (cuda % 1000) / 10),
        })
    }

    fn read(&self) -> Result<Vec<GpuReading>, GpuSourceError> {
        let (nvml, xids) = self.nvml()?;
        let failed = |e: NvmlError| GpuSourceError::Failed(e.to_string());
        let count = nvml.device_count().map_err(failed)?;
        let mut readings = Vec::new();
        for index in 0..count {
            // A GPU that fell off the bus answers GPU_IS_LOST (or nothing
            // usable) here: leave it out, so the others are still read and
            // the collector reports it missing against the PCI bus.
            let Ok(device) = nvml.device_by_index(index) else {
                continue;
            };
            let Ok(mut reading) = read_device(nvml, &device, index) else {
                continue;
            };
            if let Some(counts) = xids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&reading.uuid)
            {
                reading.xid = counts.clone();
            }
            readings.push(reading);
        }
        Ok(readings)
    }
}

fn ratio(percent: u32) -> f64 {
    f64::from(percent) / 100.0
}

fn mhz(clock: Result<u32, NvmlError>) -> Option<f64> {
    clock.ok().map(|mhz| f64::from(mhz) * 1e6)
}

fn watts(milliwatts: Result<u32, NvmlError>) -> Option<f64> {
    milliwatts.ok().map(|mw| f64::from(mw) / 1000.0)
}

/// Field values NVML only offers through `nvmlDeviceGetFieldValues`.
fn field_values(device: &Device, ids: &[u32]) -> Vec<Option<f64>> {
    use nvml_wrapper::enums::device::SampleValue;
    let fields: Vec<FieldId> = ids.iter().map(|id| FieldId(*id)).collect();
    let Ok(samples) = device.field_values_for(&fields) else {
        return vec![None; ids.len()];
    };
    samples
        .into_iter()
        .map(|sample| match sample.ok()?.value.ok()? {
            SampleValue::F64(v) => Some(v),
            SampleValue::U32(v) => Some(f64::from(v)),
            SampleValue::U64(v) => Some(v as f64),
            SampleValue::I64(v) => Some(v as f64),
        })
        .collect()
}

/// Most NVLinks a GPU has (NVML_NVLINK_MAX_LINKS).
const MAX_NVLINKS: u32 = 18;

/// The state and error counters of each NVLink NVML knows on `device`.
fn nvlinks(device: &Device) -> Vec<NvLinkReading> {
    let mut links = Vec::new();
    for link in 0..MAX_NVLINKS {
        let wrapper = device.link_wrapper_for(link);
        let active = match wrapper.is_active() {
            Ok(active) => active,
            // No NVLink at all: spare the other links' calls.
            Err(NvmlError::NotSupported) if link == 0 => break,
            Err(_) => continue,
        };
        let count = |counter| wrapper.error_counter(counter).ok().map(|n| n as f64);
        links.push(NvLinkReading {
            link,
            active,
            errors: [
                count(ErrorCounter::DlReplay),
                count(ErrorCounter::DlRecovery),
                count(ErrorCounter::DlCrcFlit),
                count(ErrorCounter::DlCrcData),
            ],
        });
    }
    links
}

/// NVML's `NVML_DEVICE_MIG_ENABLE`.
const MIG_ENABLED: u32 = 1;

/// The MIG devices of a GPU in MIG mode. NVML's indexes run up to the
/// most the GPU can hold; an index with no device behind it answers
/// `NotFound` and is skipped.
fn mig_devices(device: &Device) -> Vec<MigReading> {
    let slots = device.mig_device_count().unwrap_or(0);
    (0..slots)
        .filter_map(|index| {
            let mig = device.mig_device_by_index(index).ok()?;
            let memory = mig.memory_info().ok();
            Some(MigReading {
                index,
                instance: dcmon_nvml_mig::instance_ids(&mig).ok(),
                multiprocessors: mig
                    .attributes()
                    .ok()
                    .map(|a| f64::from(a.multiprocessor_count)),
                memory: [
                    memory.as_ref().map(|m| m.total as f64),
                    memory.as_ref().map(|m| m.used as f64),
                    memory.as_ref().map(|m| m.free as f64),
                ],
            })
        })
        .collect()
}

/// Reads one GPU; only the identity (UUID, name) is required, every other
/// field is dropped when NVML does not support it on this GPU.
fn read_device(nvml: &Nvml, device: &Device, index: u32) -> Result<GpuReading, NvmlError> {
    let utilization = device.utilization_rates().ok();
    let memory = device.memory_info().ok();
    let ecc = |error, counter| {
        device
            .total_ecc_errors(error, counter)
            .ok()
            .map(|n| n as f64)
    };
    let fields = field_values(
        device,
        &[
            field_id::NVML_FI_DEV_MEMORY_TEMP,
            field_id::NVML_FI_DEV_REMAPPED_COR,
            field_id::NVML_FI_DEV_REMAPPED_UNC,
            field_id::NVML_FI_DEV_REMAPPED_PENDING,
            field_id::NVML_FI_DEV_REMAPPED_FAILURE,
        ],
    );
    let reasons = device.current_throttle_reasons().ok();
    let mig_mode = device
        .mig_mode()
        .ok()
        .map(|m| (m.current == MIG_ENABLED, m.pending == MIG_ENABLED));
    let mig_devices = match mig_mode {
        Some((true, _)) => mig_devices(device),
        _ => Vec::new(),
    };
    Ok(GpuReading {
        index,
        uuid: device.uuid()?,
        name: device.name()?,
        serial: device.serial().ok(),
        vbios_version: device.vbios_version().ok(),
        pci_bus_id: device.pci_info().ok().map(|p| p.bus_id),
        compute_cap: device
            .cuda_compute_capability()
            .ok()
            .map(|c| format!("{}.{}", c.major, c.minor)),
        temperature_gpu: device
            .temperature(TemperatureSensor::Gpu)
            .ok()
            .map(f64::from),
        // NVML reports 0 where the GPU has no HBM sensor.
        temperature_memory: fields[0].filter(|t| *t > 0.0),
        temperature_slowdown: device
            .temperature_threshold(TemperatureThreshold::Slowdown)
            .ok()
            .map(f64::from),
        utilization_gpu: utilization.as_ref().map(|u| ratio(u.gpu)),
        utilization_memory: utilization.as_ref().map(|u| ratio(u.memory)),
        utilization_encoder: device
            .encoder_utilization()
            .ok()
            .map(|u| ratio(u.utilization)),
        utilization_decoder: device
            .decoder_utilization()
            .ok()
            .map(|u| ratio(u.utilization)),
        memory_total: memory.as_ref().map(|m| m.total as f64),
        memory_used: memory.as_ref().map(|m| m.used as f64),
        memory_free: memory.as_ref().map(|m| m.free as f64),
        memory_reserved: memory.as_ref().map(|m| m.reserved as f64),
        power_draw: watts(device.power_usage()),
        power_limit: watts(device.power_management_limit()),
        enforced_power_limit: watts(device.enforced_power_limit()),
        power_default_limit: watts(device.power_management_limit_default()),
        energy_joules: device
            .total_energy_consumption()
            .ok()
            .map(|mj| mj as f64 / 1000.0),
        fan_speed: device.fan_speed(0).ok().map(ratio),
        clocks_current: [
            mhz(device.clock_info(Clock::Graphics)),
            mhz(device.clock_info(Clock::SM)),
            mhz(device.clock_info(Clock::Memory)),
            mhz(device.clock_info(Clock::Video)),
        ],
        clocks_max: [
            mhz(device.max_clock_info(Clock::Graphics)),
            mhz(device.max_clock_info(Clock::SM)),
            mhz(device.max_clock_info(Clock::Memory)),
        ],
        compute_mode: device.compute_mode().ok().map(|m| f64::from(m.as_c())),
        // NVML_PSTATE_UNKNOWN is 32.
        pstate: device
            .performance_state()
            .ok()
            .map(|p| f64::from(p.as_c()))
            .filter(|p| *p <= 15.0),
        pcie_link_gen: device.current_pcie_link_gen().ok().map(f64::from),
        pcie_link_width: device.current_pcie_link_width().ok().map(f64::from),
        pcie_link_gen_max: device.max_pcie_link_gen().ok().map(f64::from),
        pcie_link_width_max: device.max_pcie_link_width().ok().map(f64::from),
        pcie_replay_counter: device.pcie_replay_counter().ok().map(f64::from),
        // NVML reports KB/s (1024 bytes).
        pcie_throughput: [
            device
                .pcie_throughput(PcieUtilCounter::Receive)
                .ok()
                .map(|kb| f64::from(kb) * 1024.0),
            device
                .pcie_throughput(PcieUtilCounter::Send)
                .ok()
                .map(|kb| f64::from(kb) * 1024.0),
        ],
        ecc_errors: [
            ecc(MemoryError::Corrected, EccCounter::Volatile),
            ecc(MemoryError::Corrected, EccCounter::Aggregate),
            ecc(MemoryError::Uncorrected, EccCounter::Volatile),
            ecc(MemoryError::Uncorrected, EccCounter::Aggregate),
        ],
        remapped_rows: [fields[1], fields[2], fields[3], fields[4]],
        retired_pages_pending: device
            .are_pages_pending_retired()
            .ok()
            .map(|p| if p { 1.0 } else { 0.0 }),
        clock_event_reasons: reasons
            .map(|active| {
                REASONS
                    .iter()
                    .map(|(flag, name)| (*name, active.contains(*flag)))
                    .collect()
            })
            .unwrap_or_default(),
        mig_mode,
        mig_devices,
        nvlinks: nvlinks(device),
        processes: device
            .running_compute_processes()
            .unwrap_or_default()
            .into_iter()
            .map(|p| GpuProcess {
                pid: p.pid,
                name: nvml.sys_process_name(p.pid, 256).unwrap_or_default(),
                used_memory_bytes: match p.used_gpu_memory {
                    UsedGpuMemory::Used(bytes) => Some(bytes as f64),
                    UsedGpuMemory::Unavailable => None,
                },
                mig_instance: p.gpu_instance_id.zip(p.compute_instance_id),
            })
            .collect(),
        xid: XidCounts::default(),
    })
}
