//! One round of collection turned into a remote-write request body: every
//! sample stamped with the round's tick, the target labels (`instance`,
//! `job`) and the external labels added, encoded in the protobuf message
//! its endpoints take (Remote-Write 2.0 with each family's type and help,
//! or 1.0) and snappy-compressed once per message, then shared by every
//! endpoint that takes that message.
//!
//! Metadata is not sent with every batch: help texts are most of a
//! request's strings and change only with the exporter's version or the
//! hardware present, so [`MetadataSchedule`] sends it with the first batch,
//! whenever the families change, and every [`METADATA_RESEND`] besides (for
//! a receiver that lost it).
//!
//! The batch itself, and its re-encoding in the other message, belong to
//! [`dcmon_ship::batch`], which the receiver's forwarding shares.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use dcmon_protocol::remote_write::{
    self, FamilyMetadata, METRIC_NAME_LABEL, SeriesSamples, Version,
};
pub use dcmon_ship::batch::{Batch, TranscodeError};

use crate::snapshot::{Kind, Snapshot};

/// How often unchanged metadata is sent again.
pub const METADATA_RESEND: Duration = Duration::from_secs(600);

/// Decides which batches carry the families' metadata.
#[derive(Debug, Clone)]
pub struct MetadataSchedule {
    every: Duration,
    /// Digest of the metadata last sent, and the tick it went with.
    last: Option<(u64, i64)>,
}

impl MetadataSchedule {
    /// Nothing sent yet; unchanged metadata is resent every `every`.
    pub fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Whether the batch of `tick_ms` should carry `metadata`; when it
    /// should, it is taken as sent.
    pub fn due(&mut self, metadata: &[FamilyMetadata], tick_ms: i64) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for meta in metadata {
            (&meta.family, meta.kind, &meta.help, &meta.unit).hash(&mut hasher);
        }
        let digest = hasher.finish();
        let due = match self.last {
            None => true,
            Some((last, at)) => {
                last != digest || tick_ms.saturating_sub(at) >= self.every.as_millis() as i64
            }
        };
        if due {
            self.last = Some((digest, tick_ms));
        }
        due
    }
}

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

/// Encodes `snapshot` as the batch of `tick_ms` in `version`.
pub fn from_snapshot(
    snapshot: &Snapshot,
    tick_ms: i64,
    labels: &TargetLabels,
    version: Version,
) -> Batch {
    Batch::encode(
        &series_of(snapshot, tick_ms, labels),
        &metadata_of(snapshot),
        tick_ms,
        version,
    )
}

/// Type and help of every family of `snapshot`, for the 2.0 message
/// (dcmon's families declare no unit).
pub fn metadata_of(snapshot: &Snapshot) -> Vec<FamilyMetadata> {
    snapshot
        .families()
        .iter()
        .map(|family| FamilyMetadata {
            family: family.name.to_string(),
            kind: match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Untyped => "unknown",
            },
            help: family.help.to_string(),
            unit: String::new(),
        })
        .collect()
}

/// Every sample of `snapshot` as a series normalised as the receiver
/// stores it ([`remote_write::normalise`]: empty values dropped, sorted,
/// checked) holding one sample at `tick_ms`.
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
            let mut labels: Vec<(String, String)> = set.into_iter().collect();
            // The receiver refuses a request over one bad series; leave it
            // out here instead, and say which.
            if let Err(err) = remote_write::normalise(&mut labels) {
                tracing::error!(error = %err, "series left out of the batch");
                continue;
            }
            out.push(SeriesSamples {
                labels,
                samples: vec![(tick_ms, sample.value)],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_protocol::prompb_v2;
    use dcmon_protocol::remote_write;
    use prost::Message;

    /// A series' labels and its samples' bits, compared exactly.
    type Bits = (Vec<(String, String)>, Vec<(i64, u64)>);

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
    fn batch_body_decodes_back_to_the_same_series_in_either_message() {
        let mut snapshot = Snapshot::new();
        snapshot.gauge("node_load1", "1m load average.", vec![], 0.5);
        snapshot.counter(
            "node_forks_total",
            "Total number of forks.",
            vec![],
            f64::from_bits(0x7ff0_0000_0000_0002),
        );
        let expected = series_of(&snapshot, 30_000, &labels());
        let bits = |series: &[SeriesSamples]| -> Vec<Bits> {
            series
                .iter()
                .map(|s| {
                    (
                        s.labels.clone(),
                        s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                    )
                })
                .collect()
        };
        for version in [Version::V1, Version::V2] {
            let batch = from_snapshot(&snapshot, 30_000, &labels(), version);
            assert_eq!((batch.samples, batch.version), (2, version));
            let raw = remote_write::decompress(&batch.body, 1 << 20).unwrap();
            let decoded = remote_write::decode(version, &raw).unwrap();
            assert_eq!(bits(&decoded.series), bits(&expected));
            let kinds: Vec<_> = decoded
                .metadata
                .iter()
                .map(|m| (m.family.as_str(), m.kind, m.help.as_str()))
                .collect();
            match version {
                Version::V1 => assert!(kinds.is_empty()),
                Version::V2 => assert_eq!(
                    kinds,
                    [
                        ("node_load1", "gauge", "1m load average."),
                        ("node_forks_total", "counter", "Total number of forks.")
                    ]
                ),
            }
        }
    }

    #[test]
    fn metadata_goes_first_then_on_change_and_every_resend_interval() {
        let mut snapshot = Snapshot::new();
        snapshot.gauge("node_load1", "1m load average.", vec![], 0.5);
        let mut schedule = MetadataSchedule::new(Duration::from_secs(600));
        let first = metadata_of(&snapshot);
        assert!(schedule.due(&first, 0));
        assert!(!schedule.due(&first, 30_000));
        assert!(!schedule.due(&first, 599_999));
        snapshot.gauge("node_load5", "5m load average.", vec![], 0.5);
        let grown = metadata_of(&snapshot);
        assert!(schedule.due(&grown, 600_000), "a new family");
        assert!(!schedule.due(&grown, 630_000));
        assert!(schedule.due(&grown, 1_200_000), "ten minutes on");
    }

    #[test]
    fn batches_re_encode_both_ways_keeping_every_sample() {
        let mut snapshot = Snapshot::new();
        snapshot.gauge("node_load1", "1m load average.", vec![], 0.5);
        snapshot.gauge("node_load5", "5m load average.", vec![], 0.25);
        let v2 = from_snapshot(&snapshot, 30_000, &labels(), Version::V2);
        let v1 = v2.to_version(Version::V1).unwrap();
        assert_eq!(
            (v1.tick_ms, v1.samples, v1.version),
            (30_000, 2, Version::V1)
        );
        let decode = |batch: &Batch| {
            let raw = remote_write::decompress(&batch.body, 1 << 20).unwrap();
            remote_write::decode(batch.version, &raw).unwrap()
        };
        assert_eq!(decode(&v1).series, series_of(&snapshot, 30_000, &labels()));
        // 1.0 as encoded directly, byte for byte.
        assert_eq!(v1, from_snapshot(&snapshot, 30_000, &labels(), Version::V1));
        let back = v1.to_version(Version::V2).unwrap();
        assert_eq!(back.version, Version::V2);
        assert_eq!(decode(&back).series, decode(&v2).series);
        assert_eq!(v2.to_version(Version::V2).unwrap(), v2);
    }

    #[test]
    fn a_damaged_body_is_refused_not_panicked_on() {
        let mut snapshot = Snapshot::new();
        snapshot.gauge("node_load1", "1m load average.", vec![], 0.5);
        let mut batch = from_snapshot(&snapshot, 30_000, &labels(), Version::V2);
        let dangling = prompb_v2::Request {
            symbols: vec![String::new()],
            timeseries: vec![prompb_v2::TimeSeries {
                labels_refs: vec![1, 9],
                ..Default::default()
            }],
        };
        batch.body = remote_write::compress(&dangling.encode_to_vec());
        let err = batch.to_version(Version::V1).unwrap_err();
        assert!(err.to_string().contains("cannot re-encode"), "{err}");
        batch.body = b"not snappy".to_vec();
        assert!(batch.to_version(Version::V1).is_err());
    }
}
