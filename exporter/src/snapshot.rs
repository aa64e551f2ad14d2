//! The neutral, encoder-independent result of one scrape.
//!
//! Collectors write metric families into a [`Snapshot`]; the `/metrics`
//! handler hands the merged snapshot to `prometheus-client`'s text and
//! OpenMetrics encoders, and the remote-write shipper reads the same samples.
//! Nothing here knows about a wire format.

use std::borrow::Cow;
use std::collections::HashMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Where a consumer of whole scrapes (the remote-write shipper) gets them,
/// so that it depends on this module rather than on the collectors.
pub trait SnapshotSource: Send + Sync + 'static {
    /// One complete scrape.
    fn scrape(&self) -> impl Future<Output = Snapshot> + Send;
}

/// The Prometheus metric types dcmon emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter; its name must end in `_total`.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// No declared type (node_exporter uses it for some compatibility names).
    Untyped,
}

/// Label pairs of one sample. Names are fixed by the catalog, so `'static`.
pub type SampleLabels = Vec<(&'static str, String)>;

/// One sample of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label pairs, without the metric name.
    pub labels: SampleLabels,
    /// The value.
    pub value: f64,
}

/// A metric family: name, help, type and samples.
#[derive(Debug, Clone)]
pub struct Family {
    /// Full metric name as exposed (counters include `_total`).
    pub name: Cow<'static, str>,
    /// HELP text, written verbatim.
    pub help: Cow<'static, str>,
    /// Declared type.
    pub kind: Kind,
    /// Samples in emission order (sorted by [`Snapshot::sort`]).
    pub samples: Vec<Sample>,
}

/// Metric families collected by one or more collectors.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    families: Vec<Family>,
    index: HashMap<Cow<'static, str>, usize>,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// The family called `name`, created with `help` and `kind` on first use.
    pub fn family(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
        kind: Kind,
    ) -> &mut Family {
        let name = name.into();
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        let next = self.families.len();
        let slot = *self.index.entry(name.clone()).or_insert(next);
        if slot == next {
            self.families.push(Family {
                name,
                help: help.into(),
                kind,
                samples: Vec::new(),
            });
        }
        &mut self.families[slot]
    }

    /// Adds one gauge sample.
    pub fn gauge(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
        labels: SampleLabels,
        value: f64,
    ) {
        self.family(name, help, Kind::Gauge).push(labels, value);
    }

    /// Adds one counter sample.
    pub fn counter(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
        labels: SampleLabels,
        value: f64,
    ) {
        self.family(name, help, Kind::Counter).push(labels, value);
    }

    /// Moves every family of `other` into `self`, merging families by name.
    pub fn absorb(&mut self, other: Snapshot) {
        for family in other.families {
            let Family {
                name,
                help,
                kind,
                samples,
            } = family;
            self.family(name, help, kind).samples.extend(samples);
        }
    }

    /// Sorts families by name and samples by label values, as node_exporter
    /// (client_golang) orders its output, so scrapes are stable and diffable.
    pub fn sort(&mut self) {
        self.families.sort_by(|a, b| a.name.cmp(&b.name));
        for family in &mut self.families {
            family.samples.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        self.index = self
            .families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
    }

    /// All families.
    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The family called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Family> {
        self.index.get(name).map(|&i| &self.families[i])
    }

    /// Number of samples across all families.
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }
}

impl Family {
    /// Appends a sample.
    pub fn push(&mut self, labels: SampleLabels, value: f64) -> &mut Self {
        self.samples.push(Sample { labels, value });
        self
    }
}

/// Lets `prometheus-client` encode a snapshot, in either text format.
///
/// Help text is passed straight to the encoder, so it is written verbatim
/// (the crate adds its trailing period only to metrics registered through
/// `Registry::register`). Its encoders append `_total` to counter names
/// themselves, so the suffix is stripped here.
impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let (name, metric_type) = match family.kind {
                Kind::Counter => (
                    family.name.strip_suffix("_total").unwrap_or(&family.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (&*family.name, MetricType::Gauge),
                Kind::Untyped => (&*family.name, MetricType::Unknown),
            };
            let mut metric_encoder =
                encoder.encode_descriptor(name, &family.help, None, metric_type)?;
            for sample in &family.samples {
                let mut sample_encoder = metric_encoder.encode_family(&sample.labels)?;
                // Whole numbers are written without a fraction (`26442`, not
                // `26442.0`), as node_exporter writes them.
                match (family.kind, exact_integer(sample.value)) {
                    (Kind::Counter, Some(int)) if int >= 0 => sample_encoder
                        .encode_counter::<NoLabelSet, u64, f64>(&(int as u64), None)?,
                    (Kind::Counter, _) => sample_encoder
                        .encode_counter::<NoLabelSet, f64, f64>(&sample.value, None)?,
                    (_, Some(int)) => sample_encoder.encode_gauge(&int)?,
                    (_, None) => sample_encoder.encode_gauge(&sample.value)?,
                }
            }
        }
        Ok(())
    }
}

/// `value` as an integer when it is one exactly (and within the range where
/// every integer is representable, 2^53).
fn exact_integer(value: f64) -> Option<i64> {
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    (value.fract() == 0.0 && value.abs() <= LIMIT).then_some(value as i64)
}
