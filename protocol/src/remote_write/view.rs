//! Write requests decoded as a view into their decompressed body: label
//! names and values, help and unit texts borrow from it, so a request of
//! known series allocates a handful of flat buffers instead of two strings
//! per label.
//!
//! Decoding runs in two passes with the same order of errors as decoding
//! with prost and validating afterwards (which the tests keep as the
//! reference): first the whole message is parsed (any malformed byte is
//! [`DecodeError::Protobuf`]), then native histograms are refused, then
//! each series in order has its symbol references resolved (2.0) and its
//! labels normalised.

use std::ops::Range;

use super::{
    DecodeError, FamilyMetadata, METRIC_NAME_LABEL, SeriesSamples, WriteRequest, sort_and_check,
};
use crate::protowire::{Depth, Reader, WireError};

/// A label: name and value.
pub type Label<'a> = (&'a str, &'a str);

/// Type, help and unit of a metric family, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataView<'a> {
    /// Metric family name (empty where a 2.0 series had no name).
    pub family: &'a str,
    /// `counter`, `gauge`, … as [`FamilyMetadata::kind`].
    pub kind: &'static str,
    /// HELP text.
    pub help: &'a str,
    /// Unit.
    pub unit: &'a str,
}

impl MetadataView<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> FamilyMetadata {
        FamilyMetadata {
            family: self.family.to_owned(),
            kind: self.kind,
            help: self.help.to_owned(),
            unit: self.unit.to_owned(),
        }
    }
}

/// Where one series' labels and samples lie in the view's buffers.
#[derive(Debug, Clone)]
struct Span {
    labels: Range<usize>,
    samples: Range<usize>,
}

/// One series of a [`RequestView`]: labels sorted by name, `__name__`
/// included, no empty values; samples in the order sent.
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'v, 'a> {
    /// `(name, value)` pairs sorted by name.
    pub labels: &'v [Label<'a>],
    /// `(timestamp ms, value)`.
    pub samples: &'v [(i64, f64)],
}

/// A decoded and validated write request borrowing from its body.
#[derive(Debug, Clone, Default)]
pub struct RequestView<'a> {
    spans: Vec<Span>,
    labels: Vec<Label<'a>>,
    samples: Vec<(i64, f64)>,
    metadata: Vec<MetadataView<'a>>,
    exemplars: usize,
}

impl<'a> RequestView<'a> {
    /// The series, in request order.
    pub fn series(&self) -> impl ExactSizeIterator<Item = SeriesView<'_, 'a>> + '_ {
        self.spans.iter().map(|span| SeriesView {
            labels: &self.labels[span.labels.clone()],
            samples: &self.samples[span.samples.clone()],
        })
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.spans.len()
    }

    /// Float samples in the request.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Metadata carried by the request.
    pub fn metadata(&self) -> &[MetadataView<'a>] {
        &self.metadata
    }

    /// Exemplars in the request (dcmon does not store them).
    pub fn exemplars(&self) -> usize {
        self.exemplars
    }

    /// Sets label `name` to `value` on every series that has it, and on
    /// every other series too when `add_where_missing`. `value` must not
    /// be empty (normalised series have no empty values).
    pub fn set_label(&mut self, name: &'a str, value: &'a str, add_where_missing: bool) {
        debug_assert!(!value.is_empty());
        let extra = if add_where_missing {
            self.spans.len()
        } else {
            0
        };
        let mut labels = Vec::with_capacity(self.labels.len() + extra);
        for span in &mut self.spans {
            let old = &self.labels[span.labels.clone()];
            let start = labels.len();
            match old.binary_search_by(|(n, _)| (*n).cmp(name)) {
                Ok(at) => {
                    labels.extend_from_slice(old);
                    labels[start + at].1 = value;
                }
                Err(at) if add_where_missing => {
                    labels.extend_from_slice(&old[..at]);
                    labels.push((name, value));
                    labels.extend_from_slice(&old[at..]);
                }
                Err(_) => labels.extend_from_slice(old),
            }
            span.labels = start..labels.len();
        }
        self.labels = labels;
    }

    /// An owned copy.
    pub fn to_request(&self) -> WriteRequest {
        WriteRequest {
            series: self
                .series()
                .map(|s| SeriesSamples {
                    labels: s
                        .labels
                        .iter()
                        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                        .collect(),
                    samples: s.samples.to_vec(),
                })
                .collect(),
            metadata: self.metadata.iter().map(MetadataView::to_owned).collect(),
            exemplars: self.exemplars,
        }
    }

    /// Appends the labels in `raw` as one more series (its samples already
    /// pushed, at `samples`), normalised: empty values dropped, sorted by
    /// name, names checked.
    fn push_series(
        &mut self,
        raw: impl Iterator<Item = Label<'a>>,
        samples: Range<usize>,
    ) -> Result<(), DecodeError> {
        let start = self.labels.len();
        self.labels
            .extend(raw.filter(|(_, value)| !value.is_empty()));
        sort_and_check(&mut self.labels[start..])?;
        self.spans.push(Span {
            labels: start..self.labels.len(),
            samples,
        });
        Ok(())
    }

    /// The value of `__name__` in the last series pushed.
    fn last_name(&self) -> &'a str {
        let span = &self.spans[self.spans.len() - 1];
        self.labels[span.labels.clone()]
            .iter()
            .find(|(n, _)| *n == METRIC_NAME_LABEL)
            .map_or("", |(_, v)| v)
    }
}

fn protobuf(err: WireError) -> DecodeError {
    DecodeError::Protobuf(err.to_string())
}

/// Metric type names, indexed by their code in both versions' enums.
pub const METRIC_TYPES: [&str; 8] = [
    "unknown",
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
];

/// Metric type code → name (`unknown` for codes past the list).
pub(super) fn metric_type_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| METRIC_TYPES.get(i))
        .copied()
        .unwrap_or("unknown")
}

/// A series as parsed, before validation.
struct RawSeries {
    /// Into the raw labels (1.0) or symbol references (2.0).
    labels: Range<usize>,
    samples: Range<usize>,
    /// 2.0 metadata: type, help and unit references.
    metadata: Option<(i32, u32, u32)>,
}

/// What the first pass collects.
#[derive(Default)]
struct Raw<'a> {
    series: Vec<RawSeries>,
    labels: Vec<Label<'a>>,
    refs: Vec<u32>,
    symbols: Vec<&'a str>,
    histograms: usize,
}

/// Decodes and validates a Remote-Write 1.0 body.
pub fn decode_v1(body: &[u8]) -> Result<RequestView<'_>, DecodeError> {
    let mut view = RequestView::default();
    let mut raw = Raw::default();
    parse_v1(body, &mut raw, &mut view).map_err(protobuf)?;
    if raw.histograms > 0 {
        return Err(DecodeError::NativeHistograms(raw.histograms));
    }
    view.labels.reserve(raw.labels.len());
    view.spans.reserve(raw.series.len());
    for series in &raw.series {
        let labels = raw.labels[series.labels.clone()].iter().copied();
        view.push_series(labels, series.samples.clone())?;
    }
    Ok(view)
}

/// Decodes and validates a Remote-Write 2.0 body.
pub fn decode_v2(body: &[u8]) -> Result<RequestView<'_>, DecodeError> {
    let mut view = RequestView::default();
    let mut raw = Raw::default();
    parse_v2(body, &mut raw, &mut view).map_err(protobuf)?;
    if raw.histograms > 0 {
        return Err(DecodeError::NativeHistograms(raw.histograms));
    }
    let symbols = &raw.symbols;
    let symbol = |index: u32| -> Result<&str, DecodeError> {
        symbols.get(index as usize).copied().ok_or_else(|| {
            DecodeError::BadSymbolRef(format!(
                "index {index} but the table has {} symbols",
                symbols.len()
            ))
        })
    };
    view.labels.reserve(raw.refs.len() / 2);
    view.spans.reserve(raw.series.len());
    let mut pairs = Vec::new();
    for series in &raw.series {
        let refs = &raw.refs[series.labels.clone()];
        if refs.len() % 2 != 0 {
            return Err(DecodeError::BadSymbolRef(format!(
                "labels_refs has odd length {}",
                refs.len()
            )));
        }
        pairs.clear();
        for pair in refs.chunks_exact(2) {
            pairs.push((symbol(pair[0])?, symbol(pair[1])?));
        }
        view.push_series(pairs.iter().copied(), series.samples.clone())?;
        if let Some((kind, help, unit)) = series.metadata
            && (kind != 0 || help != 0 || unit != 0)
        {
            let family = view.last_name();
            view.metadata.push(MetadataView {
                family,
                kind: metric_type_name(kind),
                help: symbol(help)?,
                unit: symbol(unit)?,
            });
        }
    }
    Ok(view)
}

/// `prometheus.WriteRequest`: 1 timeseries, 3 metadata.
fn parse_v1<'a>(
    body: &'a [u8],
    raw: &mut Raw<'a>,
    view: &mut RequestView<'a>,
) -> Result<(), WireError> {
    let mut request = Reader::new(body);
    let depth = Depth::TOP;
    while !request.is_empty() {
        let (tag, wire_type) = request.key()?;
        match tag {
            1 => {
                let (series, depth) = request.message(wire_type, depth)?;
                parse_series_v1(series, depth, raw, view)?;
            }
            3 => {
                let (metadata, depth) = request.message(wire_type, depth)?;
                view.metadata.push(parse_metadata_v1(metadata, depth)?);
            }
            _ => request.skip(wire_type, tag, depth)?,
        }
    }
    Ok(())
}

/// `prometheus.TimeSeries`: 1 labels, 2 samples, 3 exemplars, 4 histograms.
fn parse_series_v1<'a>(
    mut series: Reader<'a>,
    depth: Depth,
    raw: &mut Raw<'a>,
    view: &mut RequestView<'a>,
) -> Result<(), WireError> {
    let labels_start = raw.labels.len();
    let samples_start = view.samples.len();
    while !series.is_empty() {
        let (tag, wire_type) = series.key()?;
        match tag {
            1 => {
                let (label, depth) = series.message(wire_type, depth)?;
                raw.labels.push(parse_label(label, depth)?);
            }
            2 => {
                let (sample, depth) = series.message(wire_type, depth)?;
                view.samples.push(parse_sample(sample, depth)?);
            }
            3 => {
                let (exemplar, depth) = series.message(wire_type, depth)?;
                check_exemplar_v1(exemplar, depth)?;
                view.exemplars += 1;
            }
            4 => {
                series.bytes(wire_type)?;
                raw.histograms += 1;
            }
            _ => series.skip(wire_type, tag, depth)?,
        }
    }
    raw.series.push(RawSeries {
        labels: labels_start..raw.labels.len(),
        samples: samples_start..view.samples.len(),
        metadata: None,
    });
    Ok(())
}

/// `prometheus.Label`: 1 name, 2 value.
fn parse_label<'a>(mut label: Reader<'a>, depth: Depth) -> Result<Label<'a>, WireError> {
    let (mut name, mut value) = ("", "");
    while !label.is_empty() {
        let (tag, wire_type) = label.key()?;
        match tag {
            1 => name = label.str(wire_type)?,
            2 => value = label.str(wire_type)?,
            _ => label.skip(wire_type, tag, depth)?,
        }
    }
    Ok((name, value))
}

/// `Sample` of both versions: 1 value, 2 timestamp.
fn parse_sample(mut sample: Reader<'_>, depth: Depth) -> Result<(i64, f64), WireError> {
    let (mut timestamp, mut value) = (0, 0.0);
    while !sample.is_empty() {
        let (tag, wire_type) = sample.key()?;
        match tag {
            1 => value = sample.double(wire_type)?,
            2 => timestamp = sample.int64(wire_type)?,
            _ => sample.skip(wire_type, tag, depth)?,
        }
    }
    Ok((timestamp, value))
}

/// `prometheus.Exemplar`: 1 labels, 2 value, 3 timestamp; parsed for its
/// validity only.
fn check_exemplar_v1(mut exemplar: Reader<'_>, depth: Depth) -> Result<(), WireError> {
    while !exemplar.is_empty() {
        let (tag, wire_type) = exemplar.key()?;
        match tag {
            1 => {
                let (label, depth) = exemplar.message(wire_type, depth)?;
                parse_label(label, depth)?;
            }
            2 => {
                exemplar.double(wire_type)?;
            }
            3 => {
                exemplar.int64(wire_type)?;
            }
            _ => exemplar.skip(wire_type, tag, depth)?,
        }
    }
    Ok(())
}

/// `prometheus.MetricMetadata`: 1 type, 2 family, 4 help, 5 unit.
fn parse_metadata_v1<'a>(
    mut metadata: Reader<'a>,
    depth: Depth,
) -> Result<MetadataView<'a>, WireError> {
    let mut kind = 0;
    let mut view = MetadataView {
        family: "",
        kind: "",
        help: "",
        unit: "",
    };
    while !metadata.is_empty() {
        let (tag, wire_type) = metadata.key()?;
        match tag {
            1 => kind = metadata.int32(wire_type)?,
            2 => view.family = metadata.str(wire_type)?,
            4 => view.help = metadata.str(wire_type)?,
            5 => view.unit = metadata.str(wire_type)?,
            _ => metadata.skip(wire_type, tag, depth)?,
        }
    }
    view.kind = metric_type_name(kind);
    Ok(view)
}

/// `io.prometheus.write.v2.Request`: 4 symbols, 5 timeseries.
fn parse_v2<'a>(
    body: &'a [u8],
    raw: &mut Raw<'a>,
    view: &mut RequestView<'a>,
) -> Result<(), WireError> {
    let mut request = Reader::new(body);
    let depth = Depth::TOP;
    while !request.is_empty() {
        let (tag, wire_type) = request.key()?;
        match tag {
            4 => raw.symbols.push(request.str(wire_type)?),
            5 => {
                let (series, depth) = request.message(wire_type, depth)?;
                parse_series_v2(series, depth, raw, view)?;
            }
            _ => request.skip(wire_type, tag, depth)?,
        }
    }
    Ok(())
}

/// `io.prometheus.write.v2.TimeSeries`: 1 labels_refs, 2 samples,
/// 3 histograms, 4 exemplars, 5 metadata, 6 created_timestamp.
fn parse_series_v2<'a>(
    mut series: Reader<'a>,
    depth: Depth,
    raw: &mut Raw<'a>,
    view: &mut RequestView<'a>,
) -> Result<(), WireError> {
    let refs_start = raw.refs.len();
    let samples_start = view.samples.len();
    let mut metadata = None;
    while !series.is_empty() {
        let (tag, wire_type) = series.key()?;
        match tag {
            1 => series.uint32s(wire_type, &mut raw.refs)?,
            2 => {
                let (sample, depth) = series.message(wire_type, depth)?;
                view.samples.push(parse_sample(sample, depth)?);
            }
            3 => {
                series.bytes(wire_type)?;
                raw.histograms += 1;
            }
            4 => {
                let (exemplar, depth) = series.message(wire_type, depth)?;
                check_exemplar_v2(exemplar, depth)?;
                view.exemplars += 1;
            }
            5 => {
                // A repeated optional message merges into the first.
                let (fields, depth) = series.message(wire_type, depth)?;
                metadata = Some(parse_metadata_v2(
                    fields,
                    depth,
                    metadata.unwrap_or_default(),
                )?);
            }
            6 => {
                series.int64(wire_type)?;
            }
            _ => series.skip(wire_type, tag, depth)?,
        }
    }
    raw.series.push(RawSeries {
        labels: refs_start..raw.refs.len(),
        samples: samples_start..view.samples.len(),
        metadata,
    });
    Ok(())
}

/// `io.prometheus.write.v2.Exemplar`: 1 labels_refs, 2 value, 3 timestamp;
/// parsed for its validity only.
fn check_exemplar_v2(mut exemplar: Reader<'_>, depth: Depth) -> Result<(), WireError> {
    let mut refs = Vec::new();
    while !exemplar.is_empty() {
        let (tag, wire_type) = exemplar.key()?;
        match tag {
            1 => exemplar.uint32s(wire_type, &mut refs)?,
            2 => {
                exemplar.double(wire_type)?;
            }
            3 => {
                exemplar.int64(wire_type)?;
            }
            _ => exemplar.skip(wire_type, tag, depth)?,
        }
    }
    Ok(())
}

/// `io.prometheus.write.v2.Metadata`: 1 type, 3 help_ref, 4 unit_ref.
fn parse_metadata_v2(
    mut fields: Reader<'_>,
    depth: Depth,
    (mut kind, mut help, mut unit): (i32, u32, u32),
) -> Result<(i32, u32, u32), WireError> {
    while !fields.is_empty() {
        let (tag, wire_type) = fields.key()?;
        match tag {
            1 => kind = fields.int32(wire_type)?,
            3 => help = fields.uint32(wire_type)?,
            4 => unit = fields.uint32(wire_type)?,
            _ => fields.skip(wire_type, tag, depth)?,
        }
    }
    Ok((kind, help, unit))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::super::{Version, decode, reference};
    use super::*;
    use crate::{prompb, prompb_v2};

    /// The two decoders agree: the same series, samples (bit for bit),
    /// metadata and exemplar count, or the same error (any malformed
    /// protobuf counts as the same error; prost words it its own way).
    fn agree(body: &[u8], version: Version) -> Result<(), TestCaseError> {
        type Bits = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;
        let bits = |batch: &WriteRequest| -> Bits {
            batch
                .series
                .iter()
                .map(|s| {
                    let samples = s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
                    (s.labels.clone(), samples)
                })
                .collect()
        };
        match (decode(version, body), reference::decode(version, body)) {
            (Ok(got), Ok(want)) => {
                prop_assert_eq!(bits(&got), bits(&want));
                prop_assert_eq!(got.metadata, want.metadata);
                prop_assert_eq!(got.exemplars, want.exemplars);
            }
            (Err(DecodeError::Protobuf(_)), Err(DecodeError::Protobuf(_))) => {}
            (got, want) => prop_assert_eq!(got.map(|_| ()), want.map(|_| ())),
        }
        Ok(())
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just("__name__".to_owned()),
            2 => Just("job".to_owned()),
            1 => Just(String::new()),
            4 => "[a-z_]{1,6}",
        ]
    }

    fn samples_v1() -> impl Strategy<Value = Vec<prompb::Sample>> {
        prop::collection::vec(
            (any::<i64>(), any::<u64>()).prop_map(|(timestamp, bits)| prompb::Sample {
                value: f64::from_bits(bits),
                timestamp,
            }),
            0..4,
        )
    }

    fn labels_v1() -> impl Strategy<Value = Vec<prompb::Label>> {
        prop::collection::vec(
            (name(), "[a-z0-9]{0,3}").prop_map(|(name, value)| prompb::Label { name, value }),
            0..5,
        )
    }

    fn request_v1() -> impl Strategy<Value = prompb::WriteRequest> {
        let series = (
            labels_v1(),
            samples_v1(),
            prop::collection::vec(
                (labels_v1(), any::<f64>(), any::<i64>()).prop_map(|(labels, value, timestamp)| {
                    prompb::Exemplar {
                        labels,
                        value,
                        timestamp,
                    }
                }),
                0..2,
            ),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3), 0..2),
            0..8u8,
        )
            .prop_map(|(labels, samples, exemplars, histograms, odds)| {
                prompb::TimeSeries {
                    labels,
                    samples,
                    exemplars,
                    // Histograms in one series in eight.
                    histograms: if odds == 0 { histograms } else { vec![] },
                }
            });
        let metadata = (0..9i32, name(), "[a-z ]{0,5}", "[a-z]{0,3}").prop_map(
            |(r#type, metric_family_name, help, unit)| prompb::MetricMetadata {
                r#type,
                metric_family_name,
                help,
                unit,
            },
        );
        (
            prop::collection::vec(series, 0..5),
            prop::collection::vec(metadata, 0..3),
        )
            .prop_map(|(timeseries, metadata)| prompb::WriteRequest {
                timeseries,
                metadata,
            })
    }

    fn request_v2() -> impl Strategy<Value = prompb_v2::Request> {
        let symbols = prop::collection::vec(name(), 1..8).prop_map(|mut symbols| {
            symbols[0] = String::new();
            symbols
        });
        // References run a little past the table, and are odd in number
        // now and then.
        let series = (
            prop::collection::vec(0..10u32, 0..9),
            prop::collection::vec(
                (any::<i64>(), any::<u64>()).prop_map(|(timestamp, bits)| prompb_v2::Sample {
                    value: f64::from_bits(bits),
                    timestamp,
                }),
                0..4,
            ),
            prop::option::of((0..9i32, 0..10u32, 0..10u32)),
            prop::collection::vec(
                (
                    prop::collection::vec(0..10u32, 0..4),
                    any::<f64>(),
                    any::<i64>(),
                ),
                0..2,
            ),
            any::<i64>(),
            0..8u8,
        )
            .prop_map(
                |(labels_refs, samples, metadata, exemplars, created_timestamp, odds)| {
                    prompb_v2::TimeSeries {
                        labels_refs,
                        samples,
                        histograms: if odds == 0 { vec![vec![1]] } else { vec![] },
                        exemplars: exemplars
                            .into_iter()
                            .map(|(labels_refs, value, timestamp)| prompb_v2::Exemplar {
                                labels_refs,
                                value,
                                timestamp,
                            })
                            .collect(),
                        metadata: metadata.map(|(r#type, help_ref, unit_ref)| {
                            prompb_v2::Metadata {
                                r#type,
                                help_ref,
                                unit_ref,
                            }
                        }),
                        created_timestamp,
                    }
                },
            );
        (symbols, prop::collection::vec(series, 0..5)).prop_map(|(symbols, timeseries)| {
            prompb_v2::Request {
                symbols,
                timeseries,
            }
        })
    }

    fn flip(mut body: Vec<u8>, flips: &[(prop::sample::Index, u8)]) -> Vec<u8> {
        if !body.is_empty() {
            for (at, byte) in flips {
                let i = at.index(body.len());
                body[i] ^= byte;
            }
        }
        body
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn valid_v1_requests_decode_as_with_prost(request in request_v1()) {
            agree(&request.encode_to_vec(), Version::V1)?;
        }

        #[test]
        fn valid_v2_requests_decode_as_with_prost(request in request_v2()) {
            agree(&request.encode_to_vec(), Version::V2)?;
        }

        #[test]
        fn corrupted_requests_are_refused_as_with_prost(
            v1 in request_v1(),
            v2 in request_v2(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            for body in [v1.encode_to_vec(), v2.encode_to_vec()] {
                let flipped = flip(body.clone(), &flips);
                let truncated = &body[..cut.index(body.len() + 1)];
                for version in [Version::V1, Version::V2] {
                    agree(&flipped, version)?;
                    agree(truncated, version)?;
                }
            }
        }

        #[test]
        fn arbitrary_bytes_are_refused_as_with_prost(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            agree(&bytes, Version::V1)?;
            agree(&bytes, Version::V2)?;
        }
    }

    #[test]
    fn set_label_replaces_or_inserts_in_order() {
        let request = prompb::WriteRequest {
            timeseries: vec![
                prompb::TimeSeries {
                    labels: vec![
                        prompb::Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        prompb::Label {
                            name: "instance".into(),
                            value: "other".into(),
                        },
                    ],
                    ..Default::default()
                },
                prompb::TimeSeries {
                    labels: vec![prompb::Label {
                        name: "__name__".into(),
                        value: "a".into(),
                    }],
                    ..Default::default()
                },
            ],
            metadata: vec![],
        };
        let body = request.encode_to_vec();
        let mut view = decode_v1(&body).unwrap();
        view.set_label("host", "h1", false);
        view.set_label("instance", "h1", true);
        let labels: Vec<Vec<Label>> = view.series().map(|s| s.labels.to_vec()).collect();
        assert_eq!(
            labels,
            [
                vec![("__name__", "up"), ("instance", "h1")],
                vec![("__name__", "a"), ("instance", "h1")],
            ]
        );
    }
}
