//! The exporter's part of `docs/metrics.md`, generated from the code: every
//! collector is built as the scraper builds it and run on the fixture trees
//! and stand-in tools the other tests use (node_exporter's procfs and sysfs
//! fixtures, a Debian 12 `/proc` snapshot, recorded `ipmitool`, `nvme`,
//! `nvidia-smi` and apt output), and each family it writes becomes one row:
//! name, type, label names, HELP, the collector and flag, and whose names it
//! follows. The exporter's own families (build info, process, scrape
//! bookkeeping, remote-write shipping) follow.
//!
//! A family that only some hardware or some event produces, and that no
//! recording holds (an XID error, an energy counter, a BMC current sensor,
//! fan control on a supported board), is produced by driving its collector
//! with input this file sets, and its row is marked as listed from example
//! values. What no input can produce is named in a closing "Not listed"
//! paragraph rather than left out silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcmon_exporter::collector::gpu::GpuCollector;
use dcmon_exporter::collector::gpu_source::{
    DriverInfo, GpuReading, GpuSource, GpuSourceError, XidCounts,
};
use dcmon_exporter::collector::{ALL, Collector, CollectorInfo, Scraper, Services};
use dcmon_exporter::config::Config;
use dcmon_exporter::fans::control::FanGauges;
use dcmon_exporter::fans::governor::{PolicyGauges, ZoneGauges};
use dcmon_exporter::roots::Roots;
use dcmon_exporter::runtime_config::RuntimeStore;
use dcmon_exporter::shipper::ShipperMetrics;
use dcmon_exporter::shipper::message::{Negotiation, ProtobufMessage};
use dcmon_exporter::shipper::metrics::EndpointMetrics;
use dcmon_exporter::snapshot::{Kind, Snapshot};
use dcmon_protocol::commands::{FanMode, RuntimeConfig};

use crate::common::fixtures;
use crate::common::stand_in::{Reply, StandIn};
use crate::fixture_compare::node_exporter_config;
use crate::gpu::{H100, H200_MIG, RTX4080, fake_gpu_snapshot, reading_from_capture};
use crate::hardware_catalog::{FakeHardware, fake_hardware};

const COMMAND: &str = "cargo test -p dcmon-exporter --test integration metrics_doc";

/// Where the input a family was produced from came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// A recorded capture or fixture tree.
    Recorded,
    /// Values this file sets, where no recording holds the family.
    Example,
}

/// One family as the reference lists it.
struct Row {
    kind: &'static str,
    labels: BTreeSet<String>,
    help: String,
    /// No recorded input produced it, only example values.
    example: bool,
}

/// Families by name, per producer (a collector's name, or a part of the
/// exporter itself).
type Produced = BTreeMap<String, BTreeMap<String, Row>>;

/// Adds the families of `snapshot` that `keep` accepts, by name. A family
/// seen from recorded input anywhere is not marked as an example.
fn add(
    produced: &mut Produced,
    producer: &str,
    snapshot: &Snapshot,
    input: Input,
    keep: impl Fn(&str) -> bool,
) {
    let rows = produced.entry(producer.to_owned()).or_default();
    for family in snapshot.families().iter().filter(|f| keep(&f.name)) {
        let row = rows.entry(family.name.to_string()).or_insert_with(|| Row {
            kind: match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Untyped => "untyped",
            },
            labels: BTreeSet::new(),
            help: family.help.to_string(),
            example: true,
        });
        row.example &= input == Input::Example;
        for sample in &family.samples {
            row.labels
                .extend(sample.labels.iter().map(|(k, _)| k.to_string()));
        }
    }
}

/// Whose names a family follows, from its name: dashboards and rules
/// written for those exporters read dcmon's series unchanged.
fn origin(name: &str) -> &'static str {
    if name == "node_reboot_required" || name.starts_with("apt_") || name.starts_with("nvme_") {
        "textfile scripts"
    } else if name.starts_with("process_") {
        "Prometheus client libraries"
    } else if name.starts_with("node_") {
        "node_exporter"
    } else if name.starts_with("nvidia_smi_") {
        "nvidia_gpu_exporter"
    } else if name.starts_with("ipmi_") {
        "ipmi_exporter"
    } else {
        "dcmon"
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn collector(name: &str) -> &'static CollectorInfo {
    ALL.iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no collector {name}"))
}

/// One run of `info` as the scraper builds it. apt simulates upgrades on a
/// background thread started by the first scrape: it is scraped until its
/// result is there.
fn run_once(info: &CollectorInfo, config: &Config, services: &Services) -> Snapshot {
    let collector = info.build(config, services);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut out = Snapshot::new();
        let _ = collector.update(&mut out);
        if info.name != "apt" || out.get("apt_upgrades_pending").is_some() {
            return out;
        }
        assert!(Instant::now() < deadline, "apt gave no result in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fan gauges with every optional part set.
fn fan_gauges() -> FanGauges {
    let zone = ZoneGauges {
        target: Some(60),
        applied: Some(60),
        winner: Some(("gpu".into(), 70.0)),
        failsafe: Some(("sensor", "no reading".into())),
        reverts: 1,
    };
    FanGauges {
        mode: Some(FanMode::Full),
        duties: BTreeMap::from([(0, 60)]),
        policy: Some(PolicyGauges {
            version: "1".into(),
            hash: "0".into(),
            zones: BTreeMap::from([(0, zone)]),
        }),
        ..FanGauges::default()
    }
}

/// `ipmitool` replaying recorded output: `sensor` from `sensor_file`, and
/// for the Supermicro board its `sdr elist` and `dcmi power reading`.
/// `mc info` and `chassis status` have no recording, so they fail here.
fn recorded_ipmitool(sensor_file: &str, with_sdr_and_dcmi: bool) -> StandIn {
    let dir = fixtures().join("ipmitool");
    let mut cases = vec![("*' sensor'", Reply::Replay(dir.join(sensor_file)))];
    if with_sdr_and_dcmi {
        cases.push((
            "*'sdr elist'",
            Reply::Replay(dir.join("sdr-elist_curated-mixed.txt")),
        ));
        cases.push((
            "*'dcmi power reading'",
            Reply::Replay(dir.join("dcmi-power-reading.txt")),
        ));
    }
    StandIn::new("ipmitool", &cases)
}

/// `ipmitool sensor` rows for a power supply's current and power sensors,
/// in ipmitool's layout: no recorded `sensor` listing has `Amps` or
/// `Watts` rows.
const EXAMPLE_PSU_SENSORS: &str = "\
PS1 Curr Out     | 7.200      | Amps       | ok    | na        | na        | na        | na        | 100.000   | na        \n\
PS1 Input Power  | 840.000    | Watts      | ok    | na        | na        | na        | na        | 1600.000  | na        \n";

/// The lines of section `# <title>` of an nvidia-smi capture bundle.
fn capture_section<'a>(text: &'a str, title: &str) -> Vec<&'a str> {
    let start = text
        .find(&format!("# {title}\n"))
        .unwrap_or_else(|| panic!("no section {title}"));
    text[start..]
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .take_while(|l| !l.starts_with('#'))
        .collect()
}

/// The number in `nvidia-smi -q`'s line `<key> : <number> <unit>`.
fn query_number(lines: &[&str], key: &str) -> Option<f64> {
    lines.iter().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then_some(())?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Whether `--query-gpu`'s CSV reports clock-event reason `reason` active.
fn reason_active(csv: &[&str], reason: &str) -> Option<bool> {
    let column = format!("clocks_event_reasons.{reason}");
    let index = csv.first()?.split(", ").position(|h| h == column)?;
    match csv.get(1)?.split(", ").nth(index)? {
        "Active" => Some(true),
        "Not Active" => Some(false),
        _ => None,
    }
}

/// The text of the first `<tag>` element of an `nvidia-smi -q -x` log.
fn xml_text<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{tag}>")) + open.len();
    let end = start + xml[start..].find('<').expect("a closing tag");
    xml[start..end].trim()
}

/// The GPU readings the captures hold: the H100 and RTX 4080 SUPER under
/// load (the fake source's values, plus PCIe replays and throughput from
/// their `nvidia-smi -q` and the clock-event reasons it leaves out), and a
/// Tesla T4's retired-pages state, which only GPUs before row remapping
/// report, and an H200 in MIG mode with its MIG devices.
fn recorded_gpus() -> (DriverInfo, Vec<GpuReading>) {
    let mut driver = DriverInfo::default();
    let mut gpus = Vec::new();
    for (i, name) in [H100, RTX4080].into_iter().enumerate() {
        let (d, mut reading) = reading_from_capture(name);
        if i == 0 {
            driver = d;
        }
        let text = std::fs::read_to_string(fixtures().join("nvidia").join(name)).unwrap();
        let query = capture_section(&text, "load :: query (-q)");
        let csv = capture_section(&text, "load :: query-gpu (csv, what the exporter parses)");
        reading.index = i as u32;
        reading.uuid = format!("GPU-0000000{i}-AAAA-0000-0000-000000000000");
        reading.pcie_replay_counter = query_number(&query, "Replays Since Reset");
        // nvidia-smi prints NVML's KB/s (1024 bytes), as the source reads it.
        reading.pcie_throughput = [
            query_number(&query, "Rx Throughput").map(|kb| kb * 1024.0),
            query_number(&query, "Tx Throughput").map(|kb| kb * 1024.0),
        ];
        for reason in [
            "applications_clocks_setting",
            "sync_boost",
            "hw_power_brake_slowdown",
        ] {
            if let Some(active) = reason_active(&csv, reason) {
                reading.clock_event_reasons.push((reason, active));
            }
        }
        gpus.push(reading);
    }
    let t4 = std::fs::read_to_string(fixtures().join("nvidia/telegraf_tesla-t4.xml")).unwrap();
    gpus.push(GpuReading {
        index: 2,
        uuid: xml_text(&t4, "uuid").to_owned(),
        name: xml_text(&t4, "product_name").to_owned(),
        retired_pages_pending: match xml_text(&t4, "pending_retirement") {
            "Yes" => Some(1.0),
            "No" => Some(0.0),
            _ => None,
        },
        ..GpuReading::default()
    });
    let (_, mut mig) = reading_from_capture(H200_MIG);
    mig.index = 3;
    mig.uuid = "GPU-00000003-AAAA-0000-0000-000000000000".into();
    gpus.push(mig);
    (driver, gpus)
}

/// An H100 as captured, with what no capture holds: XID errors seen since
/// start and the energy counter.
fn example_gpus() -> (DriverInfo, Vec<GpuReading>) {
    let (driver, mut reading) = reading_from_capture(H100);
    reading.energy_joules = Some(5_400_000.0);
    reading.xid = XidCounts {
        by_code: BTreeMap::from([(79, (1, 1_764_806_400.0))]),
    };
    (driver, vec![reading])
}

/// A GPU source that gives the same readings every time.
#[derive(Debug)]
struct Readings(DriverInfo, Vec<GpuReading>);

impl GpuSource for Readings {
    fn driver(&self) -> Result<DriverInfo, GpuSourceError> {
        Ok(self.0.clone())
    }

    fn read(&self) -> Result<Vec<GpuReading>, GpuSourceError> {
        Ok(self.1.clone())
    }
}

fn gpu_snapshot((driver, gpus): (DriverInfo, Vec<GpuReading>)) -> Snapshot {
    let mut out = Snapshot::new();
    GpuCollector::with_source(Box::new(Readings(driver, gpus)))
        .update(&mut out)
        .expect("the readings are served");
    out
}

/// A `/proc` tree captured on a Debian 12 VM (kernel 6.18): `net/dev`,
/// which node_exporter's tree lacks, and a newer kernel's fields.
fn debian_procfs() -> PathBuf {
    fixtures().join("procfs/local_debian12_kernel6.18_vm/proc")
}

/// Roots with the Debian 12 `/proc` and `sysfs` (empty unless a pass
/// writes into it).
fn debian_config(sysfs: &Path) -> Config {
    Config {
        roots: Roots {
            procfs: debian_procfs(),
            sysfs: sysfs.to_owned(),
            rootfs: debian_procfs().parent().unwrap().to_owned(),
            udev_data: sysfs.join("udev"),
        },
        ..Config::default()
    }
}

/// Collectors that need a tool, a live service or files outside `/proc`
/// and `/sys`: they are not run again on the Debian 12 tree.
const NOT_FROM_PROCFS: [&str; 7] = ["apt", "config", "fan", "gpu", "ipmi", "nvme", "textfile"];

/// Adds what no recording holds, from example values: fan control on a
/// supported board, GPU events and links, BMC sensors and records no
/// capture has, the package lists' age, sysfs packet counters, a text
/// file's mtime and a runtime configuration in force.
fn add_examples(produced: &mut Produced, config: &Config, services: &Services, hw: &FakeHardware) {
    let tmp = tempfile::tempdir().unwrap();
    if produced["fan"].is_empty() {
        // Fan control runs only on a supported board, which no fixture
        // is: the families its gauges write, with a policy in force and a
        // zone failing safe, so each one shows.
        let mut out = Snapshot::new();
        fan_gauges().write_to(&mut out);
        add(produced, "fan", &out, Input::Example, |_| true);
    }
    // XID errors and the energy counter; NVLinks, a GPU lost from NVML
    // and processes owned by users, jobs and containers (the gpu tests'
    // bus, procfs and links).
    add(
        produced,
        "gpu",
        &gpu_snapshot(example_gpus()),
        Input::Example,
        |_| true,
    );
    add(
        produced,
        "gpu",
        &fake_gpu_snapshot(),
        Input::Example,
        |_| true,
    );
    // `mc info` and `chassis status` as the hardware catalog writes them,
    // and current and power sensors.
    let mut bmc = config.clone();
    bmc.ipmi.ipmitool.program = hw.ipmitool.path.clone();
    let out = run_once(collector("ipmi"), &bmc, services);
    add(produced, "ipmi", &out, Input::Example, |_| true);
    let psu_sensors = tmp.path().join("psu-sensors.txt");
    std::fs::write(&psu_sensors, EXAMPLE_PSU_SENSORS).unwrap();
    let psu_ipmitool = StandIn::new("ipmitool", &[("*' sensor'", Reply::Replay(psu_sensors))]);
    let mut psu = config.clone();
    psu.ipmi.ipmitool.program = psu_ipmitool.path.clone();
    let out = run_once(collector("ipmi"), &psu, services);
    add(produced, "ipmi", &out, Input::Example, |_| true);
    // The package lists' age: a rootfs with `/var/lib/apt/lists`.
    let mut apt = config.clone();
    apt.roots.rootfs = hw.rootfs.path().to_owned();
    let out = run_once(collector("apt"), &apt, services);
    add(produced, "apt", &out, Input::Example, |_| true);
    // Packets no protocol took, from sysfs beside the Debian 12 `/proc`.
    let sysfs = tmp.path().join("sys");
    let statistics = sysfs.join("class/net/eth0/statistics");
    std::fs::create_dir_all(&statistics).unwrap();
    std::fs::write(statistics.join("rx_nohandler"), "0\n").unwrap();
    let out = run_once(collector("netdev"), &debian_config(&sysfs), services);
    add(produced, "netdev", &out, Input::Example, |_| true);
    // A text file read, for its mtime.
    let texts = tmp.path().join("textfile");
    std::fs::create_dir(&texts).unwrap();
    std::fs::write(
        texts.join("backup.prom"),
        "# HELP backup_last_success_timestamp_seconds Last successful backup.\n\
         # TYPE backup_last_success_timestamp_seconds gauge\n\
         backup_last_success_timestamp_seconds 1764806400\n",
    )
    .unwrap();
    let mut textfile = config.clone();
    textfile.textfile_directories = vec![texts];
    let out = run_once(collector("textfile"), &textfile, services);
    add(produced, "textfile", &out, Input::Example, |name| {
        name.starts_with("node_textfile_")
    });
    // A runtime configuration in force.
    let configured = Services::for_host(config);
    let store = RuntimeStore::open(
        &tmp.path().join("state"),
        config.fans.rules.min_duty,
        Arc::clone(&configured.fans),
        None,
    )
    .unwrap();
    store
        .apply(
            &RuntimeConfig {
                version: "2026-12-01.1".into(),
                fan_policy: None,
                interval_s: Some(15),
                collectors: None,
            },
            None,
        )
        .unwrap();
    configured.runtime.set(store).unwrap();
    let out = run_once(collector("config"), config, &configured);
    add(produced, "config", &out, Input::Example, |_| true);
}

fn produced() -> Produced {
    let hw = fake_hardware();
    let supermicro = recorded_ipmitool("sensor_supermicro-x9-x10-gpu-board.txt", true);
    let mut config = node_exporter_config();
    config.ipmi.ipmitool.program = supermicro.path.clone();
    config.nvme.program = hw.nvme.path.clone();
    config.apt.apt_get.program = hw.apt_get.path.clone();
    config.apt.apt_mark = hw.apt_mark.path.clone();
    config.apt.apt = hw.apt.path.clone();
    let services = Services::for_host(&config);

    let mut produced = Produced::new();
    let mut written = BTreeSet::new();
    for info in ALL {
        let out = if info.name == "gpu" {
            // NVML cannot be faked in-process here: a source replaying the
            // captured readings gives the families the NVML source writes.
            gpu_snapshot(recorded_gpus())
        } else {
            run_once(info, &config, &services)
        };
        written.extend(out.families().iter().map(|f| f.name.to_string()));
        // The fixture's own text files are not the exporter's families.
        let textfile = info.name == "textfile";
        add(&mut produced, info.name, &out, Input::Recorded, |name| {
            !textfile || name.starts_with("node_textfile_")
        });
    }
    let tmp = tempfile::tempdir().unwrap();

    // The other recorded inputs: an HPE BMC (fans in percent), and the
    // Debian 12 `/proc` for every collector that reads only `/proc`.
    let mut hpe = config.clone();
    let hpe_ipmitool = recorded_ipmitool("sensor_hpe-ilo.txt", false);
    hpe.ipmi.ipmitool.program = hpe_ipmitool.path.clone();
    let out = run_once(collector("ipmi"), &hpe, &services);
    add(&mut produced, "ipmi", &out, Input::Recorded, |_| true);
    let empty_sysfs = tmp.path().join("empty-sys");
    std::fs::create_dir(&empty_sysfs).unwrap();
    let debian = debian_config(&empty_sysfs);
    for info in ALL.iter().filter(|i| !NOT_FROM_PROCFS.contains(&i.name)) {
        let out = run_once(info, &debian, &services);
        add(&mut produced, info.name, &out, Input::Recorded, |_| true);
    }

    add_examples(&mut produced, &config, &services, &hw);

    // The runner's per-collector bookkeeping: what a whole scrape has that
    // no single collector wrote. Only that: on a host with GPUs the whole
    // scrape also has what NVML reports there, and the page must not
    // depend on the host it is generated on.
    let scraper = Scraper::new(&config, &services);
    let whole = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(scraper.scrape());
    add(
        &mut produced,
        "(every scrape)",
        &whole,
        Input::Recorded,
        |name| !written.contains(name) && name.starts_with("node_scrape_collector_"),
    );

    let mut own = Snapshot::new();
    dcmon_exporter::self_metrics::collect(&mut own);
    add(&mut produced, "(exporter)", &own, Input::Recorded, |_| true);

    let endpoint = Arc::new(EndpointMetrics::new(
        "https://receiver.example:8000/api/v1/write",
        Arc::new(Negotiation::new(ProtobufMessage::Auto)),
    ));
    let mut shipping = Snapshot::new();
    ShipperMetrics::new(vec![endpoint]).collect(&mut shipping);
    add(
        &mut produced,
        "(remote write)",
        &shipping,
        Input::Recorded,
        |_| true,
    );
    produced
}

/// Families whose names come from what the host's files hold, and what
/// is not exported at all: no input lists them all.
const NOT_LISTED: &str = "\
### Not listed

- Families named after what the host's files hold: `node_memory_*` (one per
  `/proc/meminfo` field), `node_vmstat_*` (one per `/proc/vmstat` field
  that matches node_exporter's default selection), `node_sockstat_*` (one
  per protocol and field of `/proc/net/sockstat{,6}`) and `node_hwmon_*`
  (one per sensor property). The tables hold those the recorded trees
  have; a host whose kernel or chips have others gets more families by the
  same pattern.
- What the `textfile` collector reads: the families in the operators' own
  files, exported under their own names.
";

fn render(produced: &Produced) -> String {
    let mut page = String::new();
    // The collectors first, then the exporter's own parts.
    let (own, collectors): (Vec<_>, Vec<_>) =
        produced.iter().partition(|(p, _)| p.starts_with('('));
    for (producer, rows) in collectors.into_iter().chain(own) {
        let heading = match producer.as_str() {
            "(every scrape)" => "Every scrape (the collector runner)".to_owned(),
            "(exporter)" => "The exporter itself".to_owned(),
            "(remote write)" => {
                "Remote write (when `--remote-write.url` is set; one `endpoint` per receiver)"
                    .to_owned()
            }
            name => format!(
                "Collector `{name}` (`--collector.{name}`, {})",
                if collector(name).default_enabled {
                    "on by default"
                } else {
                    "off by default"
                }
            ),
        };
        page.push_str(&format!("\n### {heading}\n\n"));
        page.push_str("| name | type | labels | follows | help |\n|---|---|---|---|---|\n");
        for (name, row) in rows {
            let labels: Vec<String> = row.labels.iter().map(|l| format!("`{l}`")).collect();
            page.push_str(&format!(
                "| `{name}`{} | {} | {} | {} | {} |\n",
                if row.example { " †" } else { "" },
                row.kind,
                labels.join(", "),
                origin(name),
                cell(&row.help)
            ));
        }
        if rows.values().any(|r| r.example) {
            page.push_str(
                "\n† Listed from example values: no recorded capture holds this family, so \
                 the generator drives the collector with input it sets.\n",
            );
        }
    }
    page.push('\n');
    page.push_str(NOT_LISTED);
    page.push('\n');
    page
}

#[test]
fn the_metrics_reference_matches_the_collectors() {
    let produced = produced();
    // A collector whose families no input produces would be a silent gap.
    for info in ALL {
        assert!(
            produced.get(info.name).is_some_and(|rows| !rows.is_empty()),
            "no input produces the families of collector {}",
            info.name
        );
    }
    let page = render(&produced);
    dcmon_testkit::docs::check_generated("docs/metrics.md", "exporter", &page, COMMAND);
}
