//! NVIDIA GPUs as the PCI bus sees them, from sysfs: the count NVML is
//! checked against (a GPU that fell off the bus vanishes from NVML but its
//! PCI function stays), and the link's maximum speed and width for GPUs
//! whose NVML does not report them.
//!
//! A GPU is a function of vendor 0x10de whose class is a display
//! controller (0x03xxxx: VGA or 3D). NVSwitches (bridges) and the GPUs'
//! own audio and USB functions are not counted, nor are GPUs handed to
//! virtual machines (bound to `vfio-pci` or `pci-stub`): NVML on the host
//! is not meant to see those. A GPU bound to no driver is counted: a
//! driver that failed to load is what the comparison should catch.

use std::path::Path;

use crate::roots::{ReadError, list_dir, read_attribute};

/// PCI vendor id of NVIDIA.
const NVIDIA: u32 = 0x10de;
/// PCI base class of display controllers.
const DISPLAY_CLASS: u32 = 0x03;

/// One NVIDIA display controller on the PCI bus.
#[derive(Debug, Clone, PartialEq)]
pub struct PciGpu {
    /// Bus id in NVML's form (`00000000:18:00.0`), see [`bus_id`].
    pub bus_id: String,
    /// Link generation the function trained at, from `current_link_speed`.
    pub link_gen: Option<f64>,
    /// Lanes the link trained at, from `current_link_width`.
    pub link_width: Option<f64>,
    /// Highest generation, from `max_link_speed`.
    pub link_gen_max: Option<f64>,
    /// Most lanes, from `max_link_width`.
    pub link_width_max: Option<f64>,
}

/// A PCI address in NVML's form: an eight-digit domain and upper-case hex
/// (`0000:3b:00.0` in sysfs is `00000000:3B:00.0` in NVML), so the two
/// sides compare equal. An address without a domain gets domain 0.
pub fn bus_id(address: &str) -> String {
    let (domain, rest) = match address.split_once(':') {
        Some((domain, rest)) if rest.contains(':') => (domain, rest),
        _ => ("0", address),
    };
    let domain = u32::from_str_radix(domain, 16).unwrap_or(0);
    format!("{domain:08X}:{}", rest.to_ascii_uppercase())
}

/// PCIe generation of a sysfs link speed (`16.0 GT/s PCIe`, `8 GT/s`).
/// `None` for `Unknown` and speeds no generation has.
pub fn link_gen(speed: &str) -> Option<f64> {
    let gts: f64 = speed.split_whitespace().next()?.parse().ok()?;
    // Transfer rates of PCIe 1.0 to 6.0.
    let generation = [2.5, 5.0, 8.0, 16.0, 32.0, 64.0]
        .iter()
        .position(|rate| (gts - rate).abs() < 0.01)?;
    Some(generation as f64 + 1.0)
}

/// A hex attribute (`0x10de`), or an error naming the file.
fn hex(dir: &Path, name: &str) -> Result<Option<u32>, ReadError> {
    let path = dir.join(name);
    let Some(text) = read_attribute(&path)? else {
        return Ok(None);
    };
    let digits = text.strip_prefix("0x").unwrap_or(&text);
    u32::from_str_radix(digits, 16)
        .map(Some)
        .map_err(|_| ReadError::Content {
            path,
            msg: format!("not a hex number: {text:?}"),
        })
}

fn number(dir: &Path, name: &str) -> Result<Option<f64>, ReadError> {
    Ok(read_attribute(&dir.join(name))?.and_then(|v| v.parse().ok()))
}

/// Whether the function is bound to a driver that hands it to a virtual
/// machine.
fn passed_through(dir: &Path) -> bool {
    std::fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|driver| matches!(driver.as_str(), "vfio-pci" | "pci-stub"))
}

/// The NVIDIA display controllers under `<sysfs>/bus/pci/devices`, sorted
/// by address. `Ok(None)` when sysfs has no PCI bus (a container without
/// /sys, a fixture tree without one): nothing to compare against.
pub fn scan(sysfs: &Path) -> Result<Option<Vec<PciGpu>>, ReadError> {
    let devices = sysfs.join("bus/pci/devices");
    if !devices.is_dir() {
        return Ok(None);
    }
    let mut gpus = Vec::new();
    for name in list_dir(&devices)? {
        let dir = devices.join(&name);
        if hex(&dir, "vendor")? != Some(NVIDIA) {
            continue;
        }
        if hex(&dir, "class")?.map(|class| class >> 16) != Some(DISPLAY_CLASS) {
            continue;
        }
        if passed_through(&dir) {
            continue;
        }
        let speed = |attribute: &str| -> Result<Option<f64>, ReadError> {
            Ok(read_attribute(&dir.join(attribute))?.and_then(|s| link_gen(&s)))
        };
        gpus.push(PciGpu {
            bus_id: bus_id(&name),
            link_gen: speed("current_link_speed")?,
            link_width: number(&dir, "current_link_width")?,
            link_gen_max: speed("max_link_speed")?,
            link_width_max: number(&dir, "max_link_width")?,
        });
    }
    Ok(Some(gpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_of_sysfs_and_nvml_compare_equal() {
        assert_eq!(bus_id("0000:3b:00.0"), "00000000:3B:00.0");
        assert_eq!(bus_id("00000000:3B:00.0"), "00000000:3B:00.0");
        assert_eq!(bus_id("3b:00.0"), "00000000:3B:00.0");
    }

    #[test]
    fn link_speeds_map_to_generations() {
        assert_eq!(link_gen("2.5 GT/s PCIe"), Some(1.0));
        assert_eq!(link_gen("16.0 GT/s PCIe"), Some(4.0));
        assert_eq!(link_gen("32 GT/s"), Some(5.0));
        assert_eq!(link_gen("Unknown"), None);
        assert_eq!(link_gen("3.0 GT/s"), None);
    }
}
