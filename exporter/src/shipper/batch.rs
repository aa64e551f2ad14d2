//! One round of collection turned into a remote-write request body: every
//! sample stamped with the round's tick, the target labels (`instance`,
//! `job`) and the external labels added, encoded as Remote-Write 1.0 and
//! snappy-compressed once, then shared by every endpoint.

use std::collections::BTreeMap;

use dcmon_protocol::remote_write::{self, METRIC_NAME_LABEL, SeriesSamples};

use crate::snapshot::Snapshot;

/// The labels the shipper adds to every series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLabels {
    /// `instance`: the host name unless overridden.
    pub instance: String,
    /// `job`: always `dcmon` for the exporter's own samples.
    pub job: String,
    /// `--remote-write.external-label`s, added where a series lacks them.
    pub external: Vec<(String, String)>,
}

/// A compressed Remote-Write 1.0 request of one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The tick every sample is stamped with, ms since the epoch.
    pub tick_ms: i64,
    /// Samples in the request, for the shipper's counters.
    pub samples: u64,
    /// Snappy-compressed `prometheus.WriteRequest`.
    pub body: Vec<u8>,
}

impl Batch {
    /// Encodes `snapshot` as the batch of `tick_ms`.
    pub fn from_snapshot(snapshot: &Snapshot, tick_ms: i64, labels: &TargetLabels) -> Self {
        let series = series_of(snapshot, tick_ms, labels);
        let samples = series.len() as u64;
        Self {
            tick_ms,
            samples,
            body: remote_write::compress(&remote_write::encode_v1(&series)),
        }
    }
}

/// Every sample of `snapshot` as a normalised series (labels sorted, empty
/// values dropped) holding one sample at `tick_ms`.
///
/// Precedence follows Prometheus: the target labels `instance` and `job`
/// replace whatever a sample carries, and external labels never override a
/// label the series already has.
pub fn series_of(snapshot: &Snapshot, tick_ms: i64, labels: &TargetLabels) -> Vec<SeriesSamples> {
    let mut out = Vec::with_capacity(snapshot.sample_count());
    for family in snapshot.families() {
        for sample in &family.samples {
            let mut set: BTreeMap<String, String> = sample
                .labels
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect();
            set.insert(METRIC_NAME_LABEL.to_owned(), family.name.to_string());
            set.insert("instance".to_owned(), labels.instance.clone());
            set.insert("job".to_owned(), labels.job.clone());
            for (name, value) in &labels.external {
                set.entry(name.clone()).or_insert_with(|| value.clone());
            }
            set.retain(|_, value| !value.is_empty());
            out.push(SeriesSamples {
                labels: set.into_iter().collect(),
                samples: vec![(tick_ms, sample.value)],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> TargetLabels {
        TargetLabels {
            instance: "gpu-07".into(),
            job: "dcmon".into(),
            external: vec![("dc".into(), "fra1".into()), ("device".into(), "x".into())],
        }
    }

    #[test]
    fn every_sample_gets_the_tick_and_the_target_labels() {
        let mut snapshot = Snapshot::new();
        snapshot.gauge("node_load1", "1m load average.", vec![], 0.5);
        snapshot.counter(
            "node_network_receive_bytes_total",
            "Received bytes.",
            vec![("device", "eth0".into()), ("empty", String::new())],
            42.0,
        );
        let series = series_of(&snapshot, 1_700_000_010_000, &labels());
        let pairs = |s: &SeriesSamples| {
            s.labels
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            pairs(&series[0]),
            "__name__=node_load1,dc=fra1,device=x,instance=gpu-07,job=dcmon"
        );
        // The series' own `device` wins over the external label; empty
        // values are dropped.
        assert_eq!(
            pairs(&series[1]),
            "__name__=node_network_receive_bytes_total,dc=fra1,device=eth0,instance=gpu-07,job=dcmon"
        );
        assert_eq!(series[0].samples, vec![(1_700_000_010_000, 0.5)]);
        assert_eq!(series[1].samples, vec![(1_700_000_010_000, 42.0)]);
    }

    #[test]
    fn batch_body_decodes_back_to_the_same_series() {
        let mut snapshot = Snapshot::new();
        snapshot.gauge("node_load1", "1m load average.", vec![], 0.5);
        let batch = Batch::from_snapshot(&snapshot, 30_000, &labels());
        assert_eq!(batch.samples, 1);
        let raw = remote_write::decompress(&batch.body, 1 << 20).unwrap();
        let decoded = remote_write::decode(remote_write::Version::V1, &raw).unwrap();
        assert_eq!(decoded.series, series_of(&snapshot, 30_000, &labels()));
    }
}
