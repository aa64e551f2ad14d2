//! The receiver's own metrics, stored like any host's: every interval the
//! registry served at `/metrics` is read as structured metric families
//! (prometheus-client's Prometheus protobuf data model, in memory) and its
//! samples appended under `job="dcmon-receiver"` and this machine's name,
//! so the internals dashboard and alerts on the receiver work without a
//! Prometheus scraping it (as VictoriaMetrics' `-selfScrapeInterval` does).
//! The series are those a scrape of `/metrics` in text format gives.

use std::sync::Arc;
use std::time::Duration;

use dcmon_protocol::remote_write::{FamilyMetadata, SeriesSamples};
use prometheus_client::encoding::prometheus_protobuf::{self, prometheus_data_model as model};
use prometheus_client::registry::Registry;

use crate::app::AppState;
use crate::rules::template::go_float;

/// Whose samples these are: the `job` and `instance` labels added to each.
#[derive(Debug, Clone)]
pub struct Target {
    /// `job` label.
    pub job: String,
    /// `instance` label.
    pub instance: String,
}

/// This machine's host name, the default `instance`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Every `interval`, on multiples of it, stores the receiver's metrics.
pub fn spawn(
    state: Arc<AppState>,
    interval: Duration,
    target: Target,
) -> tokio::task::JoinHandle<()> {
    let storage = state.storage.clone();
    crate::tick::store_every(
        storage,
        interval,
        "the receiver's own metrics",
        move |tick| {
            let registry = state
                .metrics
                .refreshed(&state.storage, &state.query.cache_stats());
            std::future::ready(collect(registry, tick, &target))
        },
    )
}

/// Why the registry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the metrics registry: {0}")]
pub struct ReadError(#[from] std::fmt::Error);

/// One sample per series of `registry` at `timestamp_ms`, labelled with
/// `target`, and the families' metadata.
pub fn collect(
    registry: &Registry,
    timestamp_ms: i64,
    target: &Target,
) -> Result<(Vec<SeriesSamples>, Vec<FamilyMetadata>), ReadError> {
    let mut series = Vec::new();
    let mut metadata = Vec::new();
    for family in prometheus_protobuf::encode(registry)? {
        let kind = match family.r#type() {
            model::MetricType::Counter => "counter",
            model::MetricType::Gauge => "gauge",
            model::MetricType::Histogram | model::MetricType::GaugeHistogram => "histogram",
            model::MetricType::Summary => "summary",
            model::MetricType::Untyped => "unknown",
        };
        let mut add = |name: String,
                       extra: Option<(&str, String)>,
                       labels: &[model::LabelPair],
                       value: f64| {
            let mut pairs: Vec<(String, String)> = labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            pairs.extend(extra.map(|(k, v)| (k.to_owned(), v)));
            pairs.push(("__name__".to_owned(), name));
            pairs.push(("job".to_owned(), target.job.clone()));
            pairs.push(("instance".to_owned(), target.instance.clone()));
            pairs.sort();
            series.push(SeriesSamples {
                labels: pairs,
                samples: vec![(timestamp_ms, value)],
            });
        };
        for metric in &family.metric {
            let labels = &metric.label;
            if let Some(counter) = &metric.counter {
                add(family.name.clone(), None, labels, counter.value);
            } else if let Some(gauge) = &metric.gauge {
                add(family.name.clone(), None, labels, gauge.value);
            } else if let Some(untyped) = &metric.untyped {
                add(family.name.clone(), None, labels, untyped.value);
            } else if let Some(histogram) = &metric.histogram {
                let bucket = format!("{}_bucket", family.name);
                let mut inf_seen = false;
                for b in &histogram.bucket {
                    inf_seen |= b.upper_bound == f64::INFINITY;
                    let le = go_float(b.upper_bound, 'g', None);
                    add(
                        bucket.clone(),
                        Some(("le", le)),
                        labels,
                        b.cumulative_count as f64,
                    );
                }
                // The text format always has the `+Inf` bucket: it is the count.
                if !inf_seen {
                    let le = ("le", "+Inf".to_owned());
                    add(bucket, Some(le), labels, histogram.sample_count as f64);
                }
                add(
                    format!("{}_sum", family.name),
                    None,
                    labels,
                    histogram.sample_sum,
                );
                add(
                    format!("{}_count", family.name),
                    None,
                    labels,
                    histogram.sample_count as f64,
                );
            }
        }
        metadata.push(FamilyMetadata {
            kind,
            help: family.help,
            family: family.name,
            unit: family.unit,
        });
    }
    Ok((series, metadata))
}

#[cfg(test)]
mod tests {
    use dcmon_protocol::exposition::{self, Format, parse};
    use dcmon_protocol::remote_write::metric_kind;

    use super::*;
    use crate::metrics::{HandlerLabels, Metrics};

    fn target() -> Target {
        Target {
            job: "dcmon-receiver".into(),
            instance: "central".into(),
        }
    }

    /// What a scrape of `/metrics` in text format gives, read with the
    /// exposition parser: [`collect`]'s reference.
    fn scraped(registry: &Registry, timestamp_ms: i64) -> Vec<SeriesSamples> {
        let text = exposition::encode(registry, Format::Text);
        let mut series = Vec::new();
        for family in parse::parse(&text).unwrap() {
            for sample in family.samples {
                let mut labels = sample.labels;
                labels.push(("__name__".to_owned(), sample.name));
                labels.push(("job".to_owned(), "dcmon-receiver".to_owned()));
                labels.push(("instance".to_owned(), "central".to_owned()));
                labels.sort();
                series.push(SeriesSamples {
                    labels,
                    samples: vec![(timestamp_ms, sample.value)],
                });
            }
        }
        series
    }

    fn busy_metrics() -> Metrics {
        let metrics = Metrics::default();
        metrics.ingested_samples.inc_by(41);
        metrics.reject("bad \"snappy\"\\frame\n");
        for (handler, seconds) in [
            ("/api/v1/write", 0.01),
            ("/api/v1/query", 7.5),
            ("/api/v1/query", 1e9),
        ] {
            metrics
                .request_duration
                .get_or_create(&HandlerLabels {
                    handler: handler.into(),
                })
                .observe(seconds);
        }
        metrics
    }

    #[test]
    fn the_series_are_those_a_text_scrape_gives() {
        for metrics in [Metrics::default(), busy_metrics()] {
            let (mut got, metadata) = collect(metrics.registry(), 7_000, &target()).unwrap();
            let mut want = scraped(metrics.registry(), 7_000);
            got.sort_by(|a, b| a.labels.cmp(&b.labels));
            want.sort_by(|a, b| a.labels.cmp(&b.labels));
            assert!(!want.is_empty());
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.labels, w.labels);
                assert_eq!(g.samples.len(), 1);
                let (gv, wv) = (g.samples[0].1, w.samples[0].1);
                assert!(
                    gv.to_bits() == wv.to_bits() || (gv.is_nan() && wv.is_nan()),
                    "{:?}: {gv} vs {wv}",
                    g.labels
                );
            }
            // Metadata as the text format's `# TYPE` and `# HELP` lines say.
            let text = exposition::encode(metrics.registry(), Format::Text);
            let families = parse::parse(&text).unwrap();
            assert_eq!(metadata.len(), families.len());
            for family in families {
                let meta = metadata
                    .iter()
                    .find(|m| m.family == family.name)
                    .unwrap_or_else(|| panic!("{} has no metadata", family.name));
                assert_eq!(
                    meta.kind,
                    metric_kind(family.kind.as_str()),
                    "{}",
                    family.name
                );
                assert_eq!(
                    Some(meta.help.as_str()),
                    family.help.as_deref(),
                    "{}",
                    family.name
                );
            }
        }
    }

    #[test]
    fn values_and_labels_arrive_as_recorded() {
        let metrics = busy_metrics();
        let (series, metadata) = collect(metrics.registry(), 7_000, &target()).unwrap();
        let find = |name: &str, label: Option<(&str, &str)>| {
            series
                .iter()
                .find(|s| {
                    s.labels.iter().any(|(k, v)| k == "__name__" && v == name)
                        && label.is_none_or(|(k, v)| s.labels.iter().any(|l| l.0 == k && l.1 == v))
                })
                .unwrap_or_else(|| panic!("{name} {label:?} missing from {series:#?}"))
        };
        let ingested = find("dcmon_receiver_ingested_samples_total", None);
        assert_eq!(ingested.samples, vec![(7_000, 41.0)]);
        assert_eq!(
            ingested.labels,
            vec![
                (
                    "__name__".into(),
                    "dcmon_receiver_ingested_samples_total".into()
                ),
                ("instance".into(), "central".into()),
                ("job".into(), "dcmon-receiver".into()),
            ]
        );
        let rejected = find("dcmon_receiver_rejected_requests_total", None);
        assert!(
            rejected
                .labels
                .contains(&("reason".into(), "bad \"snappy\"\\frame\n".into())),
            "{rejected:?}"
        );
        let kind = |family: &str| metadata.iter().find(|m| m.family == family).map(|m| m.kind);
        assert_eq!(
            kind("dcmon_receiver_ingested_samples_total"),
            Some("counter")
        );
        assert_eq!(
            kind("dcmon_receiver_request_duration_seconds"),
            Some("histogram")
        );
        let query = ("handler", "/api/v1/query");
        let count = find("dcmon_receiver_request_duration_seconds_count", Some(query));
        assert_eq!(count.samples, vec![(7_000, 2.0)]);
        let sum = find("dcmon_receiver_request_duration_seconds_sum", Some(query));
        assert_eq!(sum.samples, vec![(7_000, 7.5 + 1e9)]);
        // The 1e9 s request is counted only by the `+Inf` bucket.
        let buckets: Vec<(&str, f64)> = series
            .iter()
            .filter(|s| {
                s.labels.iter().any(|(k, v)| {
                    k == "__name__" && v == "dcmon_receiver_request_duration_seconds_bucket"
                }) && s
                    .labels
                    .contains(&("handler".into(), "/api/v1/query".into()))
            })
            .map(|s| {
                (
                    s.labels.iter().find(|l| l.0 == "le").unwrap().1.as_str(),
                    s.samples[0].1,
                )
            })
            .collect();
        assert!(buckets.contains(&("+Inf", 2.0)), "{buckets:?}");
        assert!(
            buckets.iter().filter(|b| b.1 == 1.0).count() >= 1,
            "{buckets:?}"
        );
    }
}
