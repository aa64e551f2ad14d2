//! The receiver's own metrics, stored like any host's: every interval the
//! registry served at `/metrics` is encoded, read back into samples and
//! appended under `job="dcmon-receiver"` and this machine's name, so the
//! internals dashboard and alerts on the receiver work without a Prometheus
//! scraping it (as VictoriaMetrics' `-selfScrapeInterval` does).

use std::sync::Arc;
use std::time::Duration;

use dcmon_protocol::exposition::{self, Format};
use dcmon_protocol::remote_write::{FamilyMetadata, SeriesSamples};

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
    tokio::spawn(async move {
        loop {
            let tick = crate::tick::next(interval).await;
            let text = exposition::encode(
                state
                    .metrics
                    .refreshed(&state.storage, &state.query.cache_stats()),
                Format::Text,
            );
            let (series, metadata) = match parse(&text, tick, &target) {
                Ok(parsed) => parsed,
                Err(err) => {
                    tracing::warn!(error = %err, "reading the receiver's own metrics failed");
                    continue;
                }
            };
            if let Err(err) = state.storage.append(series, metadata).await {
                tracing::warn!(error = %err, "storing the receiver's own metrics failed");
            }
        }
    })
}

/// Reads text exposition format 0.0.4 (as our encoder writes it) into one
/// sample per series at `timestamp_ms`, labelled with `target`, and the
/// families' metadata.
pub fn parse(
    text: &str,
    timestamp_ms: i64,
    target: &Target,
) -> Result<(Vec<SeriesSamples>, Vec<FamilyMetadata>), String> {
    let mut series = Vec::new();
    let mut metadata: Vec<FamilyMetadata> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            read_comment(comment, &mut metadata);
            continue;
        }
        let (mut labels, value) = read_sample(line).map_err(|why| format!("{why}: {line:?}"))?;
        labels.push(("job".to_owned(), target.job.clone()));
        labels.push(("instance".to_owned(), target.instance.clone()));
        labels.sort();
        series.push(SeriesSamples {
            labels,
            samples: vec![(timestamp_ms, value)],
        });
    }
    Ok((series, metadata))
}

/// `# HELP name text` and `# TYPE name kind` fill in `metadata`.
fn read_comment(comment: &str, metadata: &mut Vec<FamilyMetadata>) {
    let mut words = comment.trim_start().splitn(3, ' ');
    let (Some(keyword), Some(family)) = (words.next(), words.next()) else {
        return;
    };
    let rest = words.next().unwrap_or("");
    let index = match metadata.iter().position(|m| m.family == family) {
        Some(index) => index,
        None => {
            metadata.push(FamilyMetadata {
                family: family.to_owned(),
                kind: "unknown",
                help: String::new(),
                unit: String::new(),
            });
            metadata.len() - 1
        }
    };
    let entry = &mut metadata[index];
    match keyword {
        "HELP" => entry.help = rest.replace("\\n", "\n").replace("\\\\", "\\"),
        "TYPE" => {
            entry.kind = match rest {
                "counter" => "counter",
                "gauge" => "gauge",
                "histogram" => "histogram",
                "summary" => "summary",
                _ => "unknown",
            }
        }
        _ => {}
    }
}

/// A series' labels, `__name__` included.
type Labels = Vec<(String, String)>;

/// `name{label="value",…} value` → labels with `__name__`, and the value.
fn read_sample(line: &str) -> Result<(Labels, f64), &'static str> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let mut labels = vec![("__name__".to_owned(), line[..name_end].to_owned())];
    let mut rest = &line[name_end..];
    if let Some(inside) = rest.strip_prefix('{') {
        rest = read_labels(inside, &mut labels)?;
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or("no value")?
        .parse::<f64>()
        .map_err(|_| "bad value")?;
    Ok((labels, value))
}

/// Reads `label="value",…}` into `labels`; returns what follows the `}`.
fn read_labels<'a>(mut text: &'a str, labels: &mut Labels) -> Result<&'a str, &'static str> {
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Ok(rest);
        }
        let (name, after) = text.split_once("=\"").ok_or("bad label")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("bad escape")?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim().to_owned(), value));
        text = &after[end + 1..];
    }
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
