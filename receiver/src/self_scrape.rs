//! The receiver's own metrics, stored like any host's: every interval the
//! registry served at `/metrics` is encoded, read back into samples and
//! appended under `job="dcmon-receiver"` and this machine's name, so the
//! internals dashboard and alerts on the receiver work without a Prometheus
//! scraping it (as VictoriaMetrics' `-selfScrapeInterval` does).

use std::sync::Arc;
use std::time::Duration;

use dcmon_protocol::exposition::parse::{self, SyntaxError};
use dcmon_protocol::exposition::{self, Format};
use dcmon_protocol::remote_write::{FamilyMetadata, SeriesSamples, metric_kind};

use crate::app::AppState;

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
            let text = exposition::encode(
                state
                    .metrics
                    .refreshed(&state.storage, &state.query.cache_stats()),
                Format::Text,
            );
            std::future::ready(parse(&text, tick, &target))
        },
    )
}

/// Reads text exposition format 0.0.4 (as our encoder writes it) into one
/// sample per series at `timestamp_ms`, labelled with `target`, and the
/// families' metadata.
///
/// The registry is read back from its text: prometheus-client gives its
/// metrics out only through its encoders (the structured one needs `protoc`
/// at build time), and the exposition parser is the one the textfile
/// collector uses, so there is a single reader of the format.
pub fn parse(
    text: &str,
    timestamp_ms: i64,
    target: &Target,
) -> Result<(Vec<SeriesSamples>, Vec<FamilyMetadata>), SyntaxError> {
    let mut series = Vec::new();
    let mut metadata = Vec::new();
    for family in parse::parse(text)? {
        for sample in family.samples {
            let mut labels = sample.labels;
            labels.push(("__name__".to_owned(), sample.name));
            labels.push(("job".to_owned(), target.job.clone()));
            labels.push(("instance".to_owned(), target.instance.clone()));
            labels.sort();
            series.push(SeriesSamples {
                labels,
                samples: vec![(timestamp_ms, sample.value)],
            });
        }
        metadata.push(FamilyMetadata {
            kind: metric_kind(family.kind.as_str()),
            help: family.help.unwrap_or_default(),
            family: family.name,
            unit: String::new(),
        });
    }
    Ok((series, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn target() -> Target {
        Target {
            job: "dcmon-receiver".into(),
            instance: "central".into(),
        }
    }

    #[test]
    fn reads_what_the_registry_encodes() {
        let metrics = Metrics::default();
        metrics.ingested_samples.inc_by(41);
        metrics.reject("bad \"snappy\"\\frame\n");
        metrics
            .request_duration
            .get_or_create(&crate::metrics::HandlerLabels {
                handler: "/api/v1/write".into(),
            })
            .observe(0.01);
        let text = exposition::encode(metrics.registry(), Format::Text);
        let (series, metadata) = parse(&text, 7_000, &target()).unwrap();

        let find = |name: &str| {
            series
                .iter()
                .find(|s| s.labels.iter().any(|(k, v)| k == "__name__" && v == name))
                .unwrap_or_else(|| panic!("{name} missing from {series:#?}"))
        };
        let ingested = find("dcmon_receiver_ingested_samples_total");
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
        let rejected = find("dcmon_receiver_rejected_requests_total");
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
        let count = find("dcmon_receiver_request_duration_seconds_count");
        assert_eq!(count.samples, vec![(7_000, 1.0)]);
    }

    #[test]
    fn histogram_buckets_keep_their_le() {
        let text = "# TYPE h histogram\nh_bucket{handler=\"/q\",le=\"+Inf\"} 3\nh_sum{handler=\"/q\"} 0.5\n";
        let (series, _) = parse(text, 1, &target()).unwrap();
        assert_eq!(series.len(), 2);
        assert!(series[0].labels.contains(&("le".into(), "+Inf".into())));
        assert_eq!(series[0].samples, vec![(1, 3.0)]);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["name", "name{le=\"1} 2", "name{le=1} 2", "name 1x"] {
            assert!(parse(bad, 1, &target()).is_err(), "{bad:?}");
        }
    }
}
