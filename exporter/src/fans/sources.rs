//! Where a fan policy's temperatures come from, read once per control
//! interval: the GPUs through the [`GpuSource`] seam (NVML on a host, a
//! fake in tests), the BMC's sensor table, and hwmon under sysfs (NVMe
//! drives appear there as `nvme` chips). Each source of the policy gets a
//! [`Reading`]: the hottest matching temperature, missing, or failed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use regex::Regex;

use super::policy::{SourceKind, SourcePolicy};
use super::regulator::Reading;
use crate::collector::gpu_nvml::NvmlSource;
use crate::collector::gpu_source::{DriverInfo, GpuReading, GpuSource, GpuSourceError};
use crate::collector::hwmon::clean_name;
use crate::collector::ipmi_parse::SensorRow;

/// NVML, loaded on first use: a host whose policy reads no GPU never
/// loads the driver library for fan control.
#[derive(Debug, Default)]
pub struct LazyNvml(OnceLock<NvmlSource>);

impl GpuSource for LazyNvml {
    fn driver(&self) -> Result<DriverInfo, GpuSourceError> {
        self.0.get_or_init(NvmlSource::new).driver()
    }

    fn read(&self) -> Result<Vec<GpuReading>, GpuSourceError> {
        self.0.get_or_init(NvmlSource::new).read()
    }
}

/// One hwmon temperature: `chip/label` (label, else `tempN`) and °C.
#[derive(Debug, Clone, PartialEq)]
pub struct HwmonTemperature {
    /// The hwmon chip's cleaned `name` (`k10temp`, `nvme`).
    pub chip: String,
    /// The sensor's label file, else `tempN`.
    pub label: String,
    /// Reading, °C.
    pub celsius: f64,
}

/// Every `temp*_input` under `<sysfs>/class/hwmon`, unreadable ones skipped.
pub fn read_hwmon(sysfs: &Path) -> Vec<HwmonTemperature> {
    let class = sysfs.join("class/hwmon");
    let Ok(entries) = std::fs::read_dir(&class) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let chip = std::fs::read_to_string(dir.join("name"))
            .map(|name| clean_name(&name))
            .unwrap_or_default();
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = files
            .filter_map(|f| f.ok()?.file_name().into_string().ok())
            .filter(|f| f.starts_with("temp") && f.ends_with("_input"))
            .collect();
        names.sort();
        for file in names {
            let sensor = file.trim_end_matches("_input");
            let Some(millis) = std::fs::read_to_string(dir.join(&file))
                .ok()
                .and_then(|t| t.trim().parse::<f64>().ok())
            else {
                continue;
            };
            let label = std::fs::read_to_string(dir.join(format!("{sensor}_label")))
                .map(|l| l.trim().to_owned())
                .unwrap_or_else(|_| sensor.to_owned());
            out.push(HwmonTemperature {
                chip: chip.clone(),
                label,
                celsius: millis / 1000.0,
            });
        }
    }
    out
}

/// What one control interval read, shared by every source of the policy.
#[derive(Debug)]
pub struct Inputs {
    /// The GPUs, or why NVML failed (`None`: not read, no source needs them).
    pub gpus: Option<Result<Vec<GpuReading>, GpuSourceError>>,
    /// The BMC's sensor rows, or why `ipmitool sensor` failed.
    pub sensors: Option<Result<Vec<SensorRow>, String>>,
    /// hwmon temperatures.
    pub hwmon: Option<Vec<HwmonTemperature>>,
}

/// The hottest of `values`, or `Missing(why)`.
fn hottest(values: impl Iterator<Item = f64>, why: impl FnOnce() -> String) -> Reading {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        })
        .map_or_else(|| Reading::Missing(why()), Reading::Celsius)
}

/// The reading of `source` (with its compiled `regex`) from `inputs`.
pub fn reading(source: &SourcePolicy, regex: Option<&Regex>, inputs: &Inputs) -> Reading {
    match source.kind {
        SourceKind::Gpu | SourceKind::GpuMemory => {
            let gpus = match &inputs.gpus {
                None => return Reading::Failed("GPUs were not read".into()),
                Some(Err(err)) => return Reading::Failed(err.to_string()),
                Some(Ok(gpus)) => gpus,
            };
            let field = |gpu: &GpuReading| match source.kind {
                SourceKind::GpuMemory => gpu.temperature_memory,
                _ => gpu.temperature_gpu,
            };
            if let Some(wanted) = &source.gpus {
                // Every listed GPU must answer: one fallen off the bus is
                // exactly the GPU nobody is cooling.
                let mut values = Vec::new();
                for index in wanted {
                    match gpus.iter().find(|g| g.index == *index).and_then(field) {
                        Some(v) => values.push(v),
                        None => {
                            return Reading::Missing(format!("GPU {index} reports no temperature"));
                        }
                    }
                }
                hottest(values.into_iter(), String::new)
            } else {
                hottest(gpus.iter().filter_map(field), || {
                    format!("no GPU reports a {} temperature", source.kind.name())
                })
            }
        }
        SourceKind::Ipmi => {
            let rows = match &inputs.sensors {
                None => return Reading::Failed("the BMC's sensors were not read".into()),
                Some(Err(err)) => return Reading::Failed(err.clone()),
                Some(Ok(rows)) => rows,
            };
            let matches = |name: &str| match (&source.sensor, regex) {
                (Some(exact), _) => name == exact,
                (None, Some(re)) => re.is_match(name),
                (None, None) => false,
            };
            hottest(
                rows.iter()
                    .filter(|r| r.unit == "degrees C" && matches(&r.name))
                    .filter_map(|r| r.value),
                || "no matching BMC sensor has a reading".into(),
            )
        }
        SourceKind::Hwmon | SourceKind::Nvme => {
            let Some(temps) = &inputs.hwmon else {
                return Reading::Failed("hwmon was not read".into());
            };
            let nvme = source.kind == SourceKind::Nvme;
            hottest(
                temps
                    .iter()
                    .filter(|t| {
                        if nvme {
                            t.chip == "nvme"
                        } else {
                            regex.is_some_and(|re| re.is_match(&format!("{}/{}", t.chip, t.label)))
                        }
                    })
                    .map(|t| t.celsius),
                || {
                    if nvme {
                        "no nvme hwmon chip has a temperature".into()
                    } else {
                        "no matching hwmon temperature".into()
                    }
                },
            )
        }
    }
}

/// A GPU source shared between the controller and whoever drives it.
pub type SharedGpuSource = Arc<dyn GpuSource>;

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, core: Option<f64>, memory: Option<f64>) -> GpuReading {
        GpuReading {
            index,
            temperature_gpu: core,
            temperature_memory: memory,
            ..GpuReading::default()
        }
    }

    fn source(kind: SourceKind) -> SourcePolicy {
        SourcePolicy {
            kind,
            gpus: None,
            sensor: None,
            sensor_regex: None,
            timeout_s: 30,
            curve: vec![[40.0, 30.0]],
        }
    }

    #[test]
    fn gpu_sources_take_the_hottest_and_miss_a_listed_gpu() {
        let inputs = Inputs {
            gpus: Some(Ok(vec![
                gpu(0, Some(60.0), None),
                gpu(1, Some(71.0), Some(80.0)),
            ])),
            sensors: None,
            hwmon: None,
        };
        assert_eq!(
            reading(&source(SourceKind::Gpu), None, &inputs),
            Reading::Celsius(71.0)
        );
        assert_eq!(
            reading(&source(SourceKind::GpuMemory), None, &inputs),
            Reading::Celsius(80.0)
        );
        let mut listed = source(SourceKind::Gpu);
        listed.gpus = Some(vec![0, 2]);
        assert!(
            matches!(reading(&listed, None, &inputs), Reading::Missing(why) if why.contains("GPU 2"))
        );
        let failed = Inputs {
            gpus: Some(Err(GpuSourceError::Failed("GPU is lost".into()))),
            sensors: None,
            hwmon: None,
        };
        assert!(matches!(
            reading(&source(SourceKind::Gpu), None, &failed),
            Reading::Failed(_)
        ));
    }

    #[test]
    fn hwmon_and_nvme_read_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        for (n, name, files) in [
            (
                "hwmon0",
                "k10temp",
                &[("temp1_input", "55125"), ("temp1_label", "Tctl")][..],
            ),
            (
                "hwmon1",
                "nvme",
                &[("temp1_input", "41850"), ("temp2_input", "47850")][..],
            ),
        ] {
            let chip = dir.path().join("class/hwmon").join(n);
            std::fs::create_dir_all(&chip).unwrap();
            std::fs::write(chip.join("name"), format!("{name}\n")).unwrap();
            for (file, value) in files {
                std::fs::write(chip.join(file), format!("{value}\n")).unwrap();
            }
        }
        let inputs = Inputs {
            gpus: None,
            sensors: None,
            hwmon: Some(read_hwmon(dir.path())),
        };
        let mut cpu = source(SourceKind::Hwmon);
        let re = Regex::new("^k10temp/Tctl$").unwrap();
        cpu.sensor_regex = Some(re.to_string());
        assert_eq!(reading(&cpu, Some(&re), &inputs), Reading::Celsius(55.125));
        assert_eq!(
            reading(&source(SourceKind::Nvme), None, &inputs),
            Reading::Celsius(47.85)
        );
    }
}
