//! The exporter's part of `docs/metrics.md`, generated from the code: every
//! collector is built as the scraper builds it and run once on the fixture
//! trees and stand-in tools the other tests use (node_exporter's procfs and
//! sysfs fixtures, recorded `ipmitool`, `nvme` and apt output, the fake GPU
//! source), and each family it writes becomes one row: name, type, label
//! names, HELP, the collector and flag, and whose names it follows. The
//! exporter's own families (build info, process, scrape bookkeeping,
//! remote-write shipping) follow.
//!
//! A family only some hardware produces appears if a fixture holds it; a
//! name no fixture produces is missing here rather than guessed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcmon_exporter::collector::{ALL, Scraper, Services};
use dcmon_exporter::fans::control::FanGauges;
use dcmon_exporter::fans::governor::{PolicyGauges, ZoneGauges};
use dcmon_exporter::shipper::ShipperMetrics;
use dcmon_exporter::shipper::message::{Negotiation, ProtobufMessage};
use dcmon_exporter::shipper::metrics::EndpointMetrics;
use dcmon_exporter::snapshot::{Kind, Snapshot};
use dcmon_protocol::commands::FanMode;

use crate::fixture_compare::node_exporter_config;
use crate::gpu::fake_gpu_snapshot;
use crate::hardware_catalog::fake_hardware;

const COMMAND: &str = "cargo test -p dcmon-exporter --test integration metrics_doc";

/// One family as the reference lists it.
struct Row {
    kind: &'static str,
    labels: BTreeSet<String>,
    help: String,
}

/// Families by name, per producer (a collector's name, or a part of the
/// exporter itself).
type Produced = BTreeMap<String, BTreeMap<String, Row>>;

/// Adds the families of `snapshot` that `keep` accepts, by name.
fn add(produced: &mut Produced, producer: &str, snapshot: &Snapshot, keep: impl Fn(&str) -> bool) {
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
        });
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

fn produced() -> Produced {
    let hw = fake_hardware();
    let mut config = node_exporter_config();
    config.ipmi.ipmitool.program = hw.ipmitool.path.clone();
    config.nvme.program = hw.nvme.path.clone();
    config.apt.apt_get.program = hw.apt_get.path.clone();
    config.apt.apt_mark = hw.apt_mark.path.clone();
    config.apt.apt = hw.apt.path.clone();
    let services = Services::for_host(&config);

    let mut produced = Produced::new();
    let mut written = BTreeSet::new();
    for info in ALL {
        let collector = info.build(&config, &services);
        let mut out;
        // apt simulates upgrades on a background thread started by the
        // first scrape: scrape until its result is there.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            out = Snapshot::new();
            let _ = collector.update(&mut out);
            if info.name != "apt" || out.get("apt_upgrades_pending").is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "apt gave no result in time");
            std::thread::sleep(Duration::from_millis(100));
        }
        if info.name == "fan" && out.families().is_empty() {
            // Fan control runs only on a supported board, which no
            // fixture is: the families its gauges write, with a policy in
            // force and a zone failing safe, so each one shows.
            out = Snapshot::new();
            fan_gauges().write_to(&mut out);
        }
        if info.name == "gpu" {
            // NVML cannot be faked in-process here; the fake GPU source
            // gives the families the NVML source writes.
            out = fake_gpu_snapshot();
        }
        written.extend(out.families().iter().map(|f| f.name.to_string()));
        // The fixture's own text files are not the exporter's families.
        let textfile = info.name == "textfile";
        add(&mut produced, info.name, &out, |name| {
            !textfile || name.starts_with("node_textfile_")
        });
    }

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
    add(&mut produced, "(every scrape)", &whole, |name| {
        !written.contains(name) && name.starts_with("node_scrape_collector_")
    });

    let mut own = Snapshot::new();
    dcmon_exporter::self_metrics::collect(&mut own);
    add(&mut produced, "(exporter)", &own, |_| true);

    let endpoint = Arc::new(EndpointMetrics::new(
        "https://receiver.example:8000/api/v1/write",
        Arc::new(Negotiation::new(ProtobufMessage::Auto)),
    ));
    let mut shipping = Snapshot::new();
    ShipperMetrics::new(vec![endpoint]).collect(&mut shipping);
    add(&mut produced, "(remote write)", &shipping, |_| true);
    produced
}

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
            name => {
                let default = ALL
                    .iter()
                    .find(|i| i.name == name)
                    .is_some_and(|i| i.default_enabled);
                format!(
                    "Collector `{name}` (`--collector.{name}`, {})",
                    if default {
                        "on by default"
                    } else {
                        "off by default"
                    }
                )
            }
        };
        page.push_str(&format!("\n### {heading}\n\n"));
        if rows.is_empty() {
            page.push_str("No fixture produces this collector's families yet.\n");
            continue;
        }
        page.push_str("| name | type | labels | follows | help |\n|---|---|---|---|---|\n");
        for (name, row) in rows {
            let labels: Vec<String> = row.labels.iter().map(|l| format!("`{l}`")).collect();
            page.push_str(&format!(
                "| `{name}` | {} | {} | {} | {} |\n",
                row.kind,
                labels.join(", "),
                origin(name),
                cell(&row.help)
            ));
        }
    }
    page.push('\n');
    page
}

#[test]
fn the_metrics_reference_matches_the_collectors() {
    let page = render(&produced());
    dcmon_testkit::docs::check_generated("docs/metrics.md", "exporter", &page, COMMAND);
}
