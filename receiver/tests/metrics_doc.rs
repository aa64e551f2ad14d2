//! The receiver's part of `docs/metrics.md`, generated from the code: the
//! registry the receiver serves at `/metrics` (and stores under
//! `job="dcmon-receiver"`), encoded as a scrape encodes it, one row per
//! family; then the presence series the heartbeat writes for every
//! enrolled host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dcmon_receiver::forward::metrics::ForwardMetrics;
use dcmon_ship::message::{Negotiation, ProtobufMessage};
use dcmon_ship::metrics::EndpointMetrics;

use dcmon_receiver::metrics::{HandlerLabels, Metrics};
use dcmon_receiver::promql::cache::CacheStats;
use dcmon_receiver::serve::TimeoutLabels;

use crate::common::open_storage;

const COMMAND: &str = "cargo test -p dcmon-receiver --test integration metrics_doc";

/// HELP, TYPE and label names of each family in `text` (text format).
fn families(text: &str) -> BTreeMap<String, (String, String, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (String, String, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_owned()).or_default().0 = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_owned()).or_default().1 = kind.to_owned();
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.split(' ').next().unwrap_or("");
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            // Counter and histogram samples carry suffixes of the family.
            let family = out
                .keys()
                .filter(|f| name.starts_with(f.as_str()))
                .max_by_key(|f| f.len())
                .cloned()
                .unwrap_or_else(|| name.to_owned());
            let names = labels
                .trim_end_matches('}')
                .split("\",")
                .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.to_owned()))
                .filter(|k| k != "le");
            out.entry(family).or_default().2.extend(names);
        }
    }
    out
}

fn render(text: &str) -> String {
    let mut page = String::from(
        "\n### The receiver's own metrics (`/metrics`, stored under `job=\"dcmon-receiver\"`)\n\n\
         | name | type | labels | follows | help |\n|---|---|---|---|---|\n",
    );
    for (name, (help, kind, labels)) in families(text) {
        let labels: Vec<String> = labels.iter().map(|l| format!("`{l}`")).collect();
        let help = help.replace('|', "\\|");
        // The series of a counter family end in `_total`.
        let name = if kind == "counter" {
            format!("{name}_total")
        } else {
            name
        };
        // The rule evaluator's families keep Prometheus's own names.
        let follows = if name.starts_with("prometheus_") {
            "Prometheus"
        } else {
            "dcmon"
        };
        page.push_str(&format!(
            "| `{name}` | {kind} | {} | {follows} | {help} |\n",
            labels.join(", ")
        ));
    }
    page.push('\n');
    page
}

#[test]
fn the_metrics_reference_matches_the_receiver_registry() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_storage(&dir.path().join("doc.db"));
    let mut metrics = Metrics::default();
    // Forwarding's families exist with an upstream configured.
    let negotiation = Arc::new(Negotiation::new(ProtobufMessage::Auto));
    metrics.register_collector(ForwardMetrics::new(vec![Arc::new(EndpointMetrics::new(
        "http://vminsert:8480/insert/0/prometheus/api/v1/write",
        negotiation,
    ))]));
    // One series of each labelled family, so its label names show.
    metrics.reject("example");
    metrics
        .request_duration
        .get_or_create(&HandlerLabels {
            handler: "/api/v1/query".into(),
        })
        .observe(0.001);
    metrics
        .connections
        .timed_out
        .get_or_create(&TimeoutLabels {
            phase: "idle".into(),
        })
        .inc();
    metrics
        .rules
        .init_group(&dcmon_receiver::rules::metrics::GroupLabels {
            rule_group: "rules.yml;group".into(),
        });
    let alertmanager = dcmon_receiver::rules::notify::AlertmanagerLabels {
        alertmanager: "http://alertmanager:9093/api/v2/alerts".into(),
    };
    let notifications = &metrics.rules.notifications;
    let _ = notifications.sent.get_or_create(&alertmanager);
    let _ = notifications.errors.get_or_create(&alertmanager);
    let registry = metrics.refreshed(&storage, &CacheStats::default());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    dcmon_testkit::docs::check_generated("docs/metrics.md", "receiver", &render(&text), COMMAND);
}
