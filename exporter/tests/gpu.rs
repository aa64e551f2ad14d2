//! The gpu collector driven by a fake [`GpuSource`] whose values come from
//! real nvidia-smi captures (H100, GeForce RTX 4080 SUPER and an H200 in
//! MIG mode, under load),
//! plus the no-driver path and the real NVML source on this machine; and
//! the health series against sysfs PCI trees written by the tests: a GPU
//! lost from NVML, an NVML call that hangs, a PCIe link below its maximum.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dcmon_exporter::collector::gpu::GpuCollector;
use dcmon_exporter::collector::gpu_health::verdict;
use dcmon_exporter::collector::gpu_nvml::NvmlSource;
use dcmon_exporter::collector::gpu_source::{
    DriverInfo, GpuProcess, GpuReading, GpuSource, GpuSourceError, MigReading, NvLinkReading,
    XidCounts,
};
use dcmon_exporter::collector::{CollectError, Collector};
use dcmon_exporter::snapshot::Snapshot;

use crate::common::fixtures;
use crate::ipmi::sample;

pub const H100: &str = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt";
pub const RTX4080: &str = "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt";
pub const H200_MIG: &str = "linux-x86_64__nvidia-h200-mig__590.48.01.txt";

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

/// The `key : value` lines of the capture's load-phase `nvidia-smi -q`
/// text, trimmed, in order (section headings have an empty value).
fn query_lines(text: &str) -> Vec<(String, String)> {
    let start = text.find("# load :: query (-q)").expect("a -q section");
    text[start..]
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .take_while(|l| !l.starts_with("####"))
        .map(|l| match l.split_once(" : ") {
            Some((key, value)) => (key.trim().to_owned(), value.trim().to_owned()),
            None => (l.trim().to_owned(), String::new()),
        })
        .collect()
}

/// The MIG devices of the `-q` text's `MIG Device` blocks, as NVML
/// delivers them (memory in bytes).
fn mig_devices(lines: &[(String, String)]) -> Vec<MigReading> {
    let mut devices: Vec<MigReading> = Vec::new();
    let mut gpu_instance = None;
    let mut in_memory = false;
    for (key, value) in lines {
        let number = || value.split(' ').next().and_then(|v| v.parse::<f64>().ok());
        match key.as_str() {
            "MIG Device" => devices.push(MigReading::default()),
            // The process blocks after the devices reuse these keys.
            "Processes" => break,
            _ if devices.is_empty() => {}
            "Index" => devices.last_mut().unwrap().index = value.parse().unwrap(),
            "GPU Instance ID" => gpu_instance = value.parse::<u32>().ok(),
            "Compute Instance ID" => {
                let compute = value.parse::<u32>().ok();
                devices.last_mut().unwrap().instance = gpu_instance.zip(compute);
            }
            "Multiprocessor count" => devices.last_mut().unwrap().multiprocessors = number(),
            "Shared FB Memory Usage" => in_memory = true,
            "Shared BAR1 Memory" => in_memory = false,
            "Total" | "Used" | "Free" if in_memory => {
                let slot = ["Total", "Used", "Free"].iter().position(|k| k == key);
                devices.last_mut().unwrap().memory[slot.unwrap()] =
                    number().map(|mib| mib * 1024.0 * 1024.0);
            }
            _ => {}
        }
    }
    devices
}

/// Process id → (GPU instance, compute instance) from the `-q` text's
/// `Processes` block (MIG only: elsewhere it has no instance ids).
fn process_instances(lines: &[(String, String)]) -> BTreeMap<u32, (u32, u32)> {
    let start = lines.iter().position(|(k, _)| k == "Processes");
    let mut instances = BTreeMap::new();
    let (mut gpu_instance, mut compute_instance) = (None, None);
    for (key, value) in start.map_or(&[][..], |s| &lines[s..]) {
        match key.as_str() {
            "GPU instance ID" => gpu_instance = value.parse::<u32>().ok(),
            "Compute instance ID" => compute_instance = value.parse::<u32>().ok(),
            "Process ID" => {
                if let Some(ids) = gpu_instance.zip(compute_instance) {
                    instances.insert(value.parse().unwrap(), ids);
                }
            }
            _ => {}
        }
    }
    instances
}

/// A reading built from the capture's load-phase CSV, converted to the
/// units NVML delivers after the source's conversion; MIG devices and the
/// instance of each process from its `-q` text.
pub fn reading_from_capture(name: &str) -> (DriverInfo, GpuReading) {
    let text = capture(name);
    let gpu = &csv_section(&text, "load :: query-gpu")[0];
    let get = |key: &str| number(gpu.get(key).unwrap_or_else(|| panic!("no column {key}")));
    let text_of = |key: &str| Some(gpu[key].clone()).filter(|v| !v.starts_with('['));
    let mib = |key: &str| get(key).map(|m| m * 1024.0 * 1024.0);
    let ratio = |key: &str| get(key).map(|p| p / 100.0);
    let hz = |key: &str| get(key).map(|m| m * 1e6);
    let query = query_lines(&text);
    let instances = process_instances(&query);
    let processes = csv_section(&text, "load :: query-compute-apps")
        .into_iter()
        .map(|app| {
            let pid = app["pid"].parse().unwrap();
            GpuProcess {
                pid,
                name: app["process_name"].clone(),
                used_memory_bytes: number(&app["used_gpu_memory"]).map(|m| m * 1024.0 * 1024.0),
                mig_instance: instances.get(&pid).copied(),
            }
        })
        .collect();
    let enabled = |key: &str| match gpu.get(key).map(String::as_str) {
        Some("Enabled") => Some(true),
        Some("Disabled") => Some(false),
        _ => None,
    };
    let mig_mode = enabled("mig.mode.current").zip(enabled("mig.mode.pending"));
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
        pcie_link_gen_max: get("pcie.link.gen.max"),
        pcie_link_width_max: get("pcie.link.width.max"),
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
        mig_mode,
        mig_devices: if mig_mode.is_some_and(|(current, _)| current) {
            mig_devices(&query)
        } else {
            Vec::new()
        },
        nvlinks: Vec::new(),
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

/// One PCI function in a sysfs fixture tree.
pub struct PciFunction {
    /// sysfs name (`0000:3b:00.0`).
    pub address: &'static str,
    pub vendor: &'static str,
    pub class: &'static str,
    /// `max_link_speed`, when the function has one.
    pub max_speed: Option<&'static str>,
    pub max_width: Option<&'static str>,
}

/// An NVIDIA 3D controller at `address` with a Gen5 x16 link.
pub const fn nvidia_gpu(address: &'static str) -> PciFunction {
    PciFunction {
        address,
        vendor: "0x10de",
        class: "0x030200",
        max_speed: Some("32.0 GT/s PCIe"),
        max_width: Some("16"),
    }
}

/// Writes `<sysfs>/bus/pci/devices/<address>/…` for each function.
pub fn write_pci(sysfs: &Path, functions: &[PciFunction]) {
    let devices = sysfs.join("bus/pci/devices");
    std::fs::create_dir_all(&devices).unwrap();
    for f in functions {
        let dir = devices.join(f.address);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vendor"), format!("{}\n", f.vendor)).unwrap();
        std::fs::write(dir.join("class"), format!("{}\n", f.class)).unwrap();
        if let Some(speed) = f.max_speed {
            std::fs::write(dir.join("max_link_speed"), format!("{speed}\n")).unwrap();
        }
        if let Some(width) = f.max_width {
            std::fs::write(dir.join("max_link_width"), format!("{width}\n")).unwrap();
        }
    }
}

/// The bus of a host with the two captured GPUs, a third GPU NVML does not
/// see, a fourth handed to a virtual machine, the GPUs' audio function, an
/// NVSwitch and an Intel VGA controller.
fn host_bus(sysfs: &Path) {
    let vfio = sysfs.join("bus/pci/drivers/vfio-pci");
    std::fs::create_dir_all(&vfio).unwrap();
    write_pci(sysfs, &[nvidia_gpu("0000:af:00.0")]);
    std::os::unix::fs::symlink(&vfio, sysfs.join("bus/pci/devices/0000:af:00.0/driver")).unwrap();
    write_pci(
        sysfs,
        &[
            nvidia_gpu("0000:00:09.0"),
            nvidia_gpu("0000:01:00.0"),
            nvidia_gpu("0000:3b:00.0"),
            PciFunction {
                class: "0x040300",
                ..nvidia_gpu("0000:01:00.1")
            },
            PciFunction {
                class: "0x068000",
                ..nvidia_gpu("0000:05:00.0")
            },
            PciFunction {
                vendor: "0x8086",
                class: "0x030000",
                ..nvidia_gpu("0000:00:02.0")
            },
        ],
    );
}

const CONTAINER: &str = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";
const POD_CONTAINER: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// `<root>/proc/<pid>/{status,cgroup,environ}` for the captures' compute
/// processes and `<root>/passwd`: a Slurm step (cgroup v2), a root shell
/// with the job only in its environment, a user without a passwd entry
/// and no cgroup file, a Docker and a Kubernetes container; pid 2165 has
/// exited.
fn host_procfs(root: &Path) -> (PathBuf, PathBuf) {
    let procfs = root.join("proc");
    let process = |pid: u32, uid: u32, cgroup: Option<String>, environ: &[u8]| {
        let dir = procfs.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let status = format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n");
        std::fs::write(dir.join("status"), status).unwrap();
        if let Some(cgroup) = cgroup {
            std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        }
        std::fs::write(dir.join("environ"), environ).unwrap();
    };
    process(
        11345,
        1000,
        Some("0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n".into()),
        b"SLURM_JOB_ID=1\0",
    );
    process(
        11327,
        0,
        Some("0::/user.slice/user-0.slice/session-3.scope\n".into()),
        b"HOME=/root\0SLURM_JOB_ID=777\0",
    );
    process(11328, 2001, None, b"");
    process(
        5022,
        0,
        Some(format!("0::/system.slice/docker-{CONTAINER}.scope\n")),
        b"",
    );
    process(
        5021,
        1000,
        Some(format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7f3e.slice/cri-containerd-{POD_CONTAINER}.scope\n"
        )),
        b"",
    );
    let passwd = root.join("passwd");
    std::fs::write(
        &passwd,
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
    )
    .unwrap();
    (procfs, passwd)
}

/// The collector's output for an H100 and an RTX 4080 SUPER, on a bus
/// with a third GPU NVML has lost, with their processes attributed.
pub fn fake_gpu_snapshot() -> Snapshot {
    let root = tempfile::tempdir().unwrap();
    let sysfs = root.path().join("sys");
    host_bus(&sysfs);
    let (procfs, passwd) = host_procfs(root.path());
    let source = FakeSource::from_captures(&[H100, RTX4080]);
    // The captured H100 (PCIe, in a VM) has no NVLink: two links, one
    // down, show those series.
    source.gpus.lock().unwrap().as_mut().unwrap()[0].nvlinks = vec![
        NvLinkReading {
            link: 0,
            active: true,
            errors: [Some(0.0), Some(0.0), Some(3.0), Some(0.0)],
        },
        NvLinkReading {
            link: 1,
            active: false,
            errors: [Some(0.0); 4],
        },
    ];
    let collector = GpuCollector::with_source(Box::new(source))
        .reading_pci(sysfs)
        .attributing_processes(procfs, passwd);
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

/// The third GPU on the bus is missing from NVML: counted on PCI, kept as
/// `present 0` and `lost`, while the two NVML reads are `ok`.
#[test]
fn a_gpu_on_the_bus_but_not_in_nvml_is_lost() {
    let out = fake_gpu_snapshot();
    assert_eq!(sample(&out, "dcmon_gpu_pci_devices", &[]), Some(3.0));
    assert_eq!(sample(&out, "dcmon_gpu_nvml_devices", &[]), Some(2.0));
    assert_eq!(sample(&out, "dcmon_gpu_nvml_responsive", &[]), Some(1.0));
    let present = |bus| sample(&out, "dcmon_gpu_present", &[("pci_bus_id", bus)]);
    assert_eq!(present("00000000:00:09.0"), Some(1.0));
    assert_eq!(present("00000000:01:00.0"), Some(1.0));
    assert_eq!(present("00000000:3B:00.0"), Some(0.0));
    let lost = [
        ("pci_bus_id", "00000000:3B:00.0"),
        ("reason", "lost"),
        ("uuid", ""),
    ];
    assert_eq!(sample(&out, "dcmon_gpu_health", &lost), Some(0.0));
    let h100 = [("gpu", "0"), ("uuid", H100_UUID), ("reason", "ok")];
    assert_eq!(sample(&out, "dcmon_gpu_health", &h100), Some(1.0));
    assert_eq!(
        out.get("dcmon_gpu_health").unwrap().samples.len(),
        3,
        "{:?}",
        out.get("dcmon_gpu_health")
    );
}

/// A GPU NVML read once and then lost keeps its series under the labels
/// NVML last gave it, even once its PCI function is gone as well.
#[test]
fn a_gpu_nvml_loses_keeps_its_series_and_labels() {
    let sysfs = tempfile::tempdir().unwrap();
    write_pci(
        sysfs.path(),
        &[nvidia_gpu("0000:00:09.0"), nvidia_gpu("0000:01:00.0")],
    );
    let source = Arc::new(FakeSource::from_captures(&[H100, RTX4080]));
    let collector = GpuCollector::with_source(Box::new(Shared(Arc::clone(&source))))
        .reading_pci(sysfs.path().to_owned());
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    assert_eq!(sample(&out, "dcmon_gpu_nvml_devices", &[]), Some(2.0));

    // The RTX falls off the bus: NVML stops listing it, then the kernel
    // removes its function.
    source.gpus.lock().unwrap().as_mut().unwrap().truncate(1);
    std::fs::remove_dir_all(sysfs.path().join("bus/pci/devices/0000:01:00.0")).unwrap();
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    assert_eq!(sample(&out, "dcmon_gpu_pci_devices", &[]), Some(1.0));
    assert_eq!(sample(&out, "dcmon_gpu_nvml_devices", &[]), Some(1.0));
    assert_eq!(
        sample(
            &out,
            "dcmon_gpu_present",
            &[("pci_bus_id", "00000000:01:00.0")]
        ),
        Some(0.0)
    );
    let lost = [("gpu", "1"), ("uuid", RTX_UUID), ("reason", "lost")];
    assert_eq!(sample(&out, "dcmon_gpu_health", &lost), Some(0.0));
}

/// One fake shared by the test and the collector.
#[derive(Debug)]
struct Shared(Arc<FakeSource>);

impl GpuSource for Shared {
    fn driver(&self) -> Result<DriverInfo, GpuSourceError> {
        self.0.driver()
    }
    fn read(&self) -> Result<Vec<GpuReading>, GpuSourceError> {
        self.0.read()
    }
}

/// A source whose reads block while the test holds its gate closed, as an
/// NVML call stuck in a sick driver does.
#[derive(Debug)]
struct HangingSource {
    inner: FakeSource,
    /// `true` while reads must block.
    gate: Arc<(Mutex<bool>, Condvar)>,
    reads: Arc<AtomicUsize>,
}

impl GpuSource for HangingSource {
    fn driver(&self) -> Result<DriverInfo, GpuSourceError> {
        self.inner.driver()
    }

    fn read(&self) -> Result<Vec<GpuReading>, GpuSourceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let (closed, opened) = &*self.gate;
        let mut closed = closed.lock().unwrap();
        // Bounded, so a collector that waits for the read instead of its
        // deadline fails the assertions below rather than hanging the run.
        let give_up = Instant::now() + Duration::from_secs(30);
        while *closed && Instant::now() < give_up {
            closed = opened
                .wait_timeout(closed, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        drop(closed);
        self.inner.read()
    }
}

/// The log lines written on this thread while `f` runs.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (result, text)
}

#[test]
fn a_hung_nvml_call_answers_unresponsive_and_recovers() {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let reads = Arc::new(AtomicUsize::new(0));
    let source = HangingSource {
        inner: FakeSource::from_captures(&[H100]),
        gate: Arc::clone(&gate),
        reads: Arc::clone(&reads),
    };
    let collector = GpuCollector::on_worker(move || Box::new(source), Duration::from_millis(200));
    let scrape = || {
        let mut out = Snapshot::new();
        let result = collector.update(&mut out);
        (out, result)
    };
    let (out, result) = scrape();
    result.unwrap();
    assert_eq!(sample(&out, "dcmon_gpu_nvml_responsive", &[]), Some(1.0));

    *gate.0.lock().unwrap() = true;
    let ((hung, again), log) = logged(|| (scrape(), scrape()));
    for (out, result) in [&hung, &again] {
        assert!(matches!(result, Err(CollectError::NoData(_))), "{result:?}");
        assert_eq!(sample(out, "dcmon_gpu_nvml_responsive", &[]), Some(0.0));
        assert_eq!(
            sample(out, "nvidia_smi_last_collect_success", &[]),
            Some(0.0)
        );
        let unresponsive = [("uuid", H100_UUID), ("reason", "unresponsive")];
        assert_eq!(sample(out, "dcmon_gpu_health", &unresponsive), Some(0.0));
        assert!(out.get("nvidia_smi_temperature_gpu").is_none());
    }
    // The second scrape queued nothing behind the stuck call.
    assert_eq!(reads.load(Ordering::SeqCst), 2);
    assert_eq!(
        log.matches("has not returned within the deadline").count(),
        1,
        "{log}"
    );

    // The call returns: the next scrapes read again.
    *gate.0.lock().unwrap() = false;
    gate.1.notify_all();
    let give_up = Instant::now() + Duration::from_secs(10);
    let (out, result) = loop {
        let (out, result) = scrape();
        if result.is_ok() || Instant::now() > give_up {
            break (out, result);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    result.unwrap();
    assert_eq!(sample(&out, "dcmon_gpu_nvml_responsive", &[]), Some(1.0));
    assert_eq!(
        sample(
            &out,
            "dcmon_gpu_health",
            &[("uuid", H100_UUID), ("reason", "ok")]
        ),
        Some(1.0)
    );
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A PCIe link at Gen2 on a Gen5 bus: degraded under load, fine at idle
/// (an idle link steps down on purpose). The maximum comes from sysfs when
/// NVML does not give it.
#[test]
fn a_link_below_its_maximum_under_load_is_degraded() {
    let sysfs = tempfile::tempdir().unwrap();
    write_pci(sysfs.path(), &[nvidia_gpu("0000:00:09.0")]);
    let (driver, mut reading) = reading_from_capture(H100);
    reading.pcie_link_gen = Some(2.0);
    reading.pcie_link_gen_max = None;
    reading.pcie_link_width_max = None;
    let health = |utilization: f64| {
        let mut reading = reading.clone();
        reading.utilization_gpu = Some(utilization);
        let source = FakeSource {
            driver: driver.clone(),
            gpus: Mutex::new(Ok(vec![reading])),
        };
        let mut out = Snapshot::new();
        GpuCollector::with_source(Box::new(source))
            .reading_pci(sysfs.path().to_owned())
            .update(&mut out)
            .unwrap();
        out
    };
    let uuid = [("uuid", "00000000-0000-0000-0000-000000000000")];
    let busy = health(1.0);
    assert_eq!(
        sample(&busy, "nvidia_smi_pcie_link_gen_max", &uuid),
        Some(5.0)
    );
    assert_eq!(
        sample(&busy, "nvidia_smi_pcie_link_width_max", &uuid),
        Some(16.0)
    );
    assert_eq!(
        sample(&busy, "nvidia_smi_pcie_link_gen_current", &uuid),
        Some(2.0)
    );
    let with = |reason| [uuid[0], ("reason", reason)];
    assert_eq!(
        sample(&busy, "dcmon_gpu_health", &with("link_degraded")),
        Some(0.0)
    );
    let idle = health(0.0);
    assert_eq!(sample(&idle, "dcmon_gpu_health", &with("ok")), Some(1.0));
}

/// The verdict names the first reason that applies, in the documented
/// order.
#[test]
fn the_verdict_is_the_first_reason_in_order() {
    let (_, healthy) = reading_from_capture(H100);
    assert_eq!(verdict(&healthy, now()), "ok");
    let with = |change: &dyn Fn(&mut GpuReading)| {
        let mut gpu = healthy.clone();
        change(&mut gpu);
        verdict(&gpu, now())
    };
    let degraded = |g: &mut GpuReading| g.pcie_link_width = Some(8.0);
    let thermal = |g: &mut GpuReading| {
        g.utilization_gpu = Some(0.0);
        g.clock_event_reasons = vec![("hw_thermal_slowdown", true)];
    };
    let xid = |code: u64, age: f64| {
        move |g: &mut GpuReading| {
            g.xid.by_code.insert(code, (1, now() - age));
        }
    };
    assert_eq!(with(&degraded), "link_degraded");
    assert_eq!(with(&thermal), "thermal_idle");
    assert_eq!(with(&xid(79, 60.0)), "xid_hardware");
    // An application XID, or a hardware one over an hour ago, is not.
    assert_eq!(with(&xid(13, 60.0)), "ok");
    assert_eq!(with(&xid(79, 7200.0)), "ok");
    assert_eq!(
        with(&|g| {
            xid(79, 60.0)(g);
            g.remapped_rows[2] = Some(1.0);
        }),
        "remap_pending"
    );
    assert_eq!(
        with(&|g| {
            g.remapped_rows[2] = Some(1.0);
            g.ecc_errors[2] = Some(3.0);
            degraded(g);
        }),
        "ecc_uncorrectable"
    );
}

#[test]
fn a_bad_pci_attribute_is_an_error_naming_the_file() {
    let sysfs = tempfile::tempdir().unwrap();
    write_pci(
        sysfs.path(),
        &[PciFunction {
            vendor: "nvidia",
            ..nvidia_gpu("0000:00:09.0")
        }],
    );
    let collector = GpuCollector::with_source(Box::new(FakeSource::from_captures(&[H100])))
        .reading_pci(sysfs.path().to_owned());
    let mut out = Snapshot::new();
    let err = collector.update(&mut out).unwrap_err().to_string();
    assert!(err.contains("0000:00:09.0/vendor"), "{err}");
    assert!(err.contains("\"nvidia\""), "{err}");
    // NVML's readings are still there.
    assert_eq!(sample(&out, "dcmon_gpu_nvml_devices", &[]), Some(1.0));
    assert!(out.get("dcmon_gpu_pci_devices").is_none());
}

#[test]
fn the_full_gpu_output_passes_promtool() {
    let mut out = fake_gpu_snapshot();
    out.sort();
    let text = dcmon_exporter::exposition::encode(out, dcmon_protocol::exposition::Format::Text);
    assert!(text.contains("dcmon_gpu_health{"), "{text}");
    crate::common::process::promtool_check_metrics(&text);
}

#[test]
fn processes_are_attributed_to_users_slurm_jobs_and_containers() {
    let out = fake_gpu_snapshot();
    let owner = |uuid: &str, pid: &str| {
        let family = out.get("dcmon_gpu_process_info").unwrap();
        let sample = family
            .samples
            .iter()
            .find(|s| s.labels.contains(&("pid", pid.to_owned())))
            .unwrap_or_else(|| panic!("no process {pid}: {family:?}"));
        assert!(sample.labels.contains(&("uuid", uuid.to_owned())));
        let get = |name: &str| {
            sample
                .labels
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        (get("user"), get("slurm_job_id"), get("container_id"))
    };
    let own = |u: &str, j: &str, c: &str| (u.to_owned(), j.to_owned(), c.to_owned());
    // The cgroup's job wins over the environment's.
    assert_eq!(owner(H100_UUID, "11345"), own("alice", "4242", ""));
    assert_eq!(owner(H100_UUID, "11327"), own("root", "777", ""));
    assert_eq!(owner(H100_UUID, "11328"), own("2001", "", ""));
    assert_eq!(owner(RTX_UUID, "5022"), own("root", "", CONTAINER));
    assert_eq!(owner(RTX_UUID, "5021"), own("alice", "", POD_CONTAINER));
    // Exited between NVML's list and the read: still listed, no owner.
    assert_eq!(owner(RTX_UUID, "2165"), own("", "", ""));
    assert_eq!(sample(&out, "dcmon_gpu_processes", &[]), Some(6.0));
    assert_eq!(sample(&out, "dcmon_gpu_processes_dropped", &[]), Some(0.0));
}

#[test]
fn the_process_bound_keeps_the_largest_memory_users() {
    let collector =
        GpuCollector::with_source(Box::new(FakeSource::from_captures(&[H100, RTX4080])))
            .bounding_processes(2);
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    assert_eq!(sample(&out, "dcmon_gpu_processes", &[]), Some(6.0));
    assert_eq!(sample(&out, "dcmon_gpu_processes_dropped", &[]), Some(4.0));
    let pids: BTreeSet<String> = out
        .get("nvidia_smi_compute_app_info")
        .unwrap()
        .samples
        .iter()
        .flat_map(|s| s.labels.iter())
        .filter(|(name, _)| *name == "pid")
        .map(|(_, pid)| pid.clone())
        .collect();
    // gpu_burn (15690 MiB) and the larger memhog (2566 MiB).
    assert_eq!(pids, BTreeSet::from(["11345".into(), "11327".into()]));
    assert_eq!(
        out.get("nvidia_smi_compute_app_used_memory_bytes")
            .unwrap()
            .samples
            .len(),
        2
    );
    // Without a procfs root, no owner series.
    assert!(out.get("dcmon_gpu_process_info").is_none());
}

#[test]
fn nvlinks_report_their_state_and_errors() {
    let (driver, mut reading) = reading_from_capture(H100);
    reading.nvlinks = vec![
        NvLinkReading {
            link: 0,
            active: true,
            errors: [Some(0.0), Some(0.0), Some(12.0), Some(0.0)],
        },
        // Down, and the driver keeps no counters for it.
        NvLinkReading {
            link: 7,
            active: false,
            errors: [None; 4],
        },
    ];
    let source = FakeSource {
        driver,
        gpus: Mutex::new(Ok(vec![reading])),
    };
    let mut out = Snapshot::new();
    GpuCollector::with_source(Box::new(source))
        .update(&mut out)
        .unwrap();
    let uuid = ("uuid", "00000000-0000-0000-0000-000000000000");
    let active = |link| sample(&out, "dcmon_gpu_nvlink_active", &[uuid, ("link", link)]);
    assert_eq!(active("0"), Some(1.0));
    assert_eq!(active("7"), Some(0.0));
    let errors = out.get("dcmon_gpu_nvlink_errors_total").unwrap();
    assert_eq!(errors.samples.len(), 4, "{errors:?}");
    assert_eq!(
        sample(
            &out,
            "dcmon_gpu_nvlink_errors_total",
            &[uuid, ("link", "0"), ("error", "crc_flit")]
        ),
        Some(12.0)
    );
}

/// An H200 in MIG mode (five MIG devices in four GPU instances, from a
/// real capture): the parent GPU keeps its series, each MIG device adds
/// its own under its GPU and compute instance ids, processes say which
/// instance they run in, utilisation (which NVML does not give under MIG)
/// is absent rather than zero, and the output passes promtool.
#[test]
fn a_mig_gpu_keeps_its_series_and_adds_one_set_per_instance() {
    let procfs = tempfile::tempdir().unwrap();
    let collector = GpuCollector::with_source(Box::new(FakeSource::from_captures(&[H200_MIG])))
        .attributing_processes(procfs.path().into(), procfs.path().join("passwd"));
    let mut out = Snapshot::new();
    collector.update(&mut out).unwrap();
    // The fake names its first GPU this way, whatever the capture.
    const MIG_UUID: &str = H100_UUID;
    let parent = [("uuid", MIG_UUID)];
    assert_eq!(
        sample(&out, "nvidia_smi_temperature_gpu", &parent),
        Some(36.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_power_draw_watts", &parent),
        Some(295.01)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_memory_used_bytes", &parent),
        Some(16959.0 * 1048576.0)
    );
    assert!(
        sample(
            &out,
            "nvidia_smi_ecc_errors_uncorrected_volatile_total",
            &parent
        )
        .is_some(),
        "ECC stays on the parent"
    );
    assert_eq!(
        sample(&out, "nvidia_smi_utilization_gpu_ratio", &parent),
        None
    );
    assert_eq!(
        sample(&out, "nvidia_smi_mig_mode_current", &parent),
        Some(1.0)
    );
    assert_eq!(
        sample(&out, "nvidia_smi_mig_mode_pending", &parent),
        Some(1.0)
    );

    let instances: BTreeSet<(String, String, String)> = out
        .get("dcmon_gpu_mig_info")
        .expect("MIG devices listed")
        .samples
        .iter()
        .map(|s| {
            let get = |name: &str| {
                let label = s.labels.iter().find(|(n, _)| *n == name);
                label.map(|(_, v)| v.clone()).unwrap()
            };
            (
                get("mig_device"),
                get("gpu_instance"),
                get("compute_instance"),
            )
        })
        .collect();
    let want = [
        ("0", "2", "0"),
        ("1", "2", "1"),
        ("2", "3", "0"),
        ("3", "9", "0"),
        ("4", "10", "0"),
    ];
    let want: BTreeSet<_> = want
        .iter()
        .map(|(d, g, c)| (d.to_string(), g.to_string(), c.to_string()))
        .collect();
    assert_eq!(instances, want);
    let instance = |gi: &'static str, ci: &'static str| {
        [
            ("uuid", MIG_UUID),
            ("gpu_instance", gi),
            ("compute_instance", ci),
        ]
    };
    // Compute instances of one GPU instance share its memory.
    for ci in ["0", "1"] {
        assert_eq!(
            sample(&out, "dcmon_gpu_mig_memory_used_bytes", &instance("2", ci)),
            Some(16925.0 * 1048576.0)
        );
    }
    assert_eq!(
        sample(
            &out,
            "dcmon_gpu_mig_memory_total_bytes",
            &instance("3", "0")
        ),
        Some(33280.0 * 1048576.0)
    );
    assert_eq!(
        sample(&out, "dcmon_gpu_mig_memory_free_bytes", &instance("9", "0")),
        Some(16376.0 * 1048576.0)
    );
    assert_eq!(
        sample(&out, "dcmon_gpu_mig_multiprocessors", &instance("2", "1")),
        Some(32.0)
    );
    // gpu_burn runs in GPU instance 2, compute instance 1.
    let burn = [
        ("pid", "12267"),
        ("gpu_instance", "2"),
        ("compute_instance", "1"),
    ];
    assert_eq!(sample(&out, "dcmon_gpu_process_info", &burn), Some(1.0));
    assert_eq!(
        sample(&out, "dcmon_gpu_health", &[("reason", "ok")]),
        Some(1.0),
        "{:?}",
        out.get("dcmon_gpu_health")
    );

    out.sort();
    let text = dcmon_exporter::exposition::encode(out, dcmon_protocol::exposition::Format::Text);
    crate::common::process::promtool_check_metrics(&text);
}

/// Outside MIG mode nothing of MIG is exported but the mode itself.
#[test]
fn a_gpu_outside_mig_mode_has_no_instance_series() {
    let out = fake_gpu_snapshot();
    assert_eq!(
        sample(&out, "nvidia_smi_mig_mode_current", &[("uuid", H100_UUID)]),
        Some(0.0)
    );
    assert!(out.get("dcmon_gpu_mig_info").is_none());
    let family = out.get("dcmon_gpu_process_info").unwrap();
    for s in &family.samples {
        assert!(s.labels.contains(&("gpu_instance", String::new())), "{s:?}");
    }
}
