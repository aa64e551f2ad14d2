//! The GPU instance id and compute instance id of a MIG device, read from
//! NVML (`nvmlDeviceGetGpuInstanceId`, `nvmlDeviceGetComputeInstanceId`),
//! for dcmon-exporter's `gpu` collector: its per-instance series carry
//! them as `gpu_instance` and `compute_instance`, the ids `nvidia-smi`
//! and MIG-aware schedulers name instances by.
//!
//! Why a crate of its own: `nvml-wrapper` enumerates MIG devices
//! (`Device::mig_device_by_index`) but has no safe call for these two ids,
//! and the dcmon workspace forbids `unsafe`. This crate denies it too and
//! allows it on [`instance_ids`] alone, whose block calls the two NVML
//! functions `nvml-wrapper` already loaded, with the device's own handle
//! and two integers to write to. Nothing else here is unsafe.

use std::os::raw::c_uint;

use nvml_wrapper::Device;
use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};

/// `(gpu_instance, compute_instance)` of a MIG device handle (one from
/// `Device::mig_device_by_index`). A handle of a whole GPU gets NVML's
/// `InvalidArg`; a driver without the functions, `FailedToLoadSymbol`.
#[allow(unsafe_code)]
pub fn instance_ids(device: &Device<'_>) -> Result<(u32, u32), NvmlError> {
    let lib = device.nvml().lib();
    let gpu_instance_of = nvml_sym(lib.nvmlDeviceGetGpuInstanceId.as_ref())?;
    let compute_instance_of = nvml_sym(lib.nvmlDeviceGetComputeInstanceId.as_ref())?;
    let mut gpu_instance: c_uint = 0;
    let mut compute_instance: c_uint = 0;
    // SAFETY: both symbols were resolved from the loaded NVML library with
    // the signature `fn(nvmlDevice_t, *mut c_uint) -> nvmlReturn_t`. The
    // handle comes from a live `Device`, which borrows the initialised
    // `Nvml` for the duration of this call, and each out pointer is a
    // local `c_uint` that outlives the call. NVML writes only through them.
    unsafe {
        nvml_try(gpu_instance_of(device.handle(), &mut gpu_instance))?;
        nvml_try(compute_instance_of(device.handle(), &mut compute_instance))?;
    }
    Ok((gpu_instance, compute_instance))
}
