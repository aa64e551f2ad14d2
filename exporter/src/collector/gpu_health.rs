//! The health verdict of one GPU (`dcmon_gpu_health{reason}`): `ok`, or
//! the first of the reasons below, in this order, so the most serious
//! thing wrong with a GPU is the one that names it. The README holds the
//! same table for operators.
//!
//! | reason | when |
//! |---|---|
//! | `lost` | on the PCI bus (or seen earlier) but not enumerated by NVML |
//! | `unresponsive` | an NVML call has not returned within the deadline |
//! | `ecc_uncorrectable` | uncorrectable ECC errors since the driver loaded |
//! | `remap_pending` | a row remap or page retirement pending, or a remap failed |
//! | `xid_hardware` | an XID of a hardware class in the last hour |
//! | `link_degraded` | PCIe link below its maximum generation or width while busy |
//! | `thermal_idle` | thermal slowdown while nearly idle (a cooling fault) |

use super::gpu_source::GpuReading;

/// XID codes that mean the GPU or its memory needs a reset, a drain or a
/// replacement (NVIDIA's XID catalog: 48 DBE, 63/64 row remapping, 74
/// NVLink, 79 fallen off the bus, 92 high single-bit ECC rate, 94/95
/// contained/uncontained ECC, 119/120 GSP). The `GpuXidCritical` alert
/// uses the same list.
pub const HARDWARE_XIDS: &[u64] = &[48, 63, 64, 74, 79, 92, 94, 95, 119, 120];

/// How long a hardware XID keeps a GPU unhealthy.
pub const XID_WINDOW_SECONDS: f64 = 3600.0;

/// Utilisation above which a GPU is busy: its link should be at full
/// speed (an idle link steps down its generation to save power).
pub const BUSY_RATIO: f64 = 0.5;

/// Utilisation below which thermal slowdown points at cooling, not load.
pub const IDLE_RATIO: f64 = 0.1;

/// The verdict on a GPU NVML read, at Unix time `now`.
pub fn verdict(gpu: &GpuReading, now: f64) -> &'static str {
    let positive = |v: Option<f64>| v.is_some_and(|v| v > 0.0);
    if positive(gpu.ecc_errors[2]) {
        return "ecc_uncorrectable";
    }
    if positive(gpu.remapped_rows[2])
        || positive(gpu.remapped_rows[3])
        || positive(gpu.retired_pages_pending)
    {
        return "remap_pending";
    }
    let recent_hardware_xid = gpu.xid.by_code.iter().any(|(code, (count, last))| {
        HARDWARE_XIDS.contains(code) && *count > 0 && now - last < XID_WINDOW_SECONDS
    });
    if recent_hardware_xid {
        return "xid_hardware";
    }
    let utilization = gpu.utilization_gpu;
    let below = |current: Option<f64>, max: Option<f64>| match (current, max) {
        (Some(current), Some(max)) => current < max,
        _ => false,
    };
    let degraded = below(gpu.pcie_link_gen, gpu.pcie_link_gen_max)
        || below(gpu.pcie_link_width, gpu.pcie_link_width_max);
    if degraded && utilization.is_some_and(|u| u > BUSY_RATIO) {
        return "link_degraded";
    }
    let thermal = gpu.clock_event_reasons.iter().any(|(reason, active)| {
        *active && matches!(*reason, "hw_thermal_slowdown" | "sw_thermal_slowdown")
    });
    if thermal && utilization.is_some_and(|u| u < IDLE_RATIO) {
        return "thermal_idle";
    }
    "ok"
}
