//! The Prometheus Remote-Write protocol, both versions: header names,
//! content-type negotiation, the snappy block codec with a size cap, and
//! decoding a request body into validated, normalised series.
//!
//! Decoding is strict about what would corrupt storage (missing `__name__`,
//! empty or duplicate label names, symbol references out of range) and
//! tolerant about the rest (unsorted labels are sorted; empty label values
//! are dropped, as Prometheus treats them as absent).

use crate::excerpt::excerpt;
use std::fmt::Write as _;

use prost::Message;

use crate::{prompb, prompb_v2};

#[cfg(test)]
mod reference;
mod view;

pub use view::{Label, METRIC_TYPES, MetadataView, RequestView, SeriesView};

/// Header names and fixed values, in one place.
pub mod headers {
    /// `Content-Encoding`; the only encoding is `snappy` (block format).
    pub const CONTENT_ENCODING: &str = "content-encoding";
    /// The one encoding both versions use.
    pub const SNAPPY: &str = "snappy";
    /// Protocol version header sent by senders.
    pub const VERSION: &str = "x-prometheus-remote-write-version";
    /// Version value for Remote-Write 1.0.
    pub const VERSION_1: &str = "0.1.0";
    /// Version value for Remote-Write 2.0.
    pub const VERSION_2: &str = "2.0.0";
    /// Response header: float samples written (Remote-Write 2.0).
    pub const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
    /// Response header: native histogram samples written (Remote-Write 2.0).
    pub const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";
    /// Response header: exemplars written (Remote-Write 2.0).
    pub const EXEMPLARS_WRITTEN: &str = "x-prometheus-remote-write-exemplars-written";
}

/// The media type of both versions.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/x-protobuf";
/// `proto=` parameter naming the 1.0 message.
pub const PROTO_V1: &str = "prometheus.WriteRequest";
/// `proto=` parameter naming the 2.0 message.
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";
/// The label holding the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Which message a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

impl Version {
    /// The `Content-Type` a sender of this version uses.
    pub fn content_type(self) -> String {
        match self {
            Version::V1 => PROTOBUF_MEDIA_TYPE.to_owned(),
            Version::V2 => format!("{PROTOBUF_MEDIA_TYPE};proto={PROTO_V2}"),
        }
    }

    /// The message's protobuf name, as Prometheus's `protobuf_message`
    /// setting spells it.
    pub fn proto(self) -> &'static str {
        match self {
            Version::V1 => PROTO_V1,
            Version::V2 => PROTO_V2,
        }
    }

    /// The `X-Prometheus-Remote-Write-Version` a sender of this version sends.
    pub fn version_header(self) -> &'static str {
        match self {
            Version::V1 => headers::VERSION_1,
            Version::V2 => headers::VERSION_2,
        }
    }
}

/// A `Content-Type` this receiver does not speak (answered with 415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported content type {0:?}: expected application/x-protobuf with proto=prometheus.WriteRequest or proto=io.prometheus.write.v2.Request"
)]
pub struct UnsupportedContentType(pub String);

/// Picks the message version from `Content-Type`. A missing header means
/// 1.0, as 1.x receivers have always assumed.
pub fn version_from_content_type(
    content_type: Option<&str>,
) -> Result<Version, UnsupportedContentType> {
    let Some(raw) = content_type else {
        return Ok(Version::V1);
    };
    let mut parts = raw.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if !media.eq_ignore_ascii_case(PROTOBUF_MEDIA_TYPE) {
        return Err(UnsupportedContentType(raw.to_owned()));
    }
    let mut version = Version::V1;
    for param in parts {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case("proto") {
            version = match value.trim().trim_matches('"') {
                PROTO_V1 => Version::V1,
                PROTO_V2 => Version::V2,
                _ => return Err(UnsupportedContentType(raw.to_owned())),
            };
        }
    }
    Ok(version)
}

/// Why a request body could not be used. Every variant is the sender's
/// fault and will not succeed on retry (HTTP 400, or 413 for `TooLarge`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not a valid snappy block.
    #[error("could not decode snappy block: {0}")]
    Snappy(String),
    /// The decompressed body would exceed the limit.
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size the snappy header announces.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The protobuf message is malformed.
    #[error("could not decode protobuf message: {0}")]
    Protobuf(String),
    /// A series has no `__name__` label.
    #[error("series {series} has no __name__ label")]
    MissingName {
        /// The series' labels.
        series: String,
    },
    /// A label name is empty.
    #[error("series {series} has a label with an empty name")]
    EmptyLabelName {
        /// The series' labels.
        series: String,
    },
    /// The same label name appears twice in one series.
    #[error("series {series} has duplicate label name {name:?}")]
    DuplicateLabel {
        /// The series' labels.
        series: String,
        /// The repeated name.
        name: String,
    },
    /// A Remote-Write 2.0 symbol reference is out of range or unpaired.
    #[error("invalid symbol reference: {0}")]
    BadSymbolRef(String),
    /// Native histograms, which dcmon does not store.
    #[error(
        "{0} native histogram samples in the request; dcmon stores float samples only (disable native histograms for this remote_write, or convert them to classic buckets)"
    )]
    NativeHistograms(usize),
}

/// Decompresses a snappy block, refusing (before allocating) anything that
/// would decode to more than `limit` bytes.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > limit {
        return Err(DecodeError::TooLarge { size, limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))
}

/// Compresses a serialised message as a snappy block.
pub fn compress(message: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(message)
        .expect("snappy compression of an in-memory buffer")
}

/// One series of a request, normalised: labels sorted by name, `__name__`
/// included, no empty values.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// `(name, value)` pairs sorted by name.
    pub labels: Vec<(String, String)>,
    /// `(timestamp ms, value)` in the order sent.
    pub samples: Vec<(i64, f64)>,
}

/// Type, help and unit of a metric family, as senders report them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyMetadata {
    /// Metric family name.
    pub family: String,
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`,
    /// `stateset` or `unknown`.
    pub kind: &'static str,
    /// HELP text.
    pub help: String,
    /// Unit.
    pub unit: String,
}

/// A decoded and validated write request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteRequest {
    /// The series with their samples.
    pub series: Vec<SeriesSamples>,
    /// Metadata carried by the request.
    pub metadata: Vec<FamilyMetadata>,
    /// Exemplars in the request (dcmon does not store them).
    pub exemplars: usize,
}

impl WriteRequest {
    /// Float samples in the batch.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// Decodes and validates a decompressed body of the given version, label
/// names and values borrowed from it.
pub fn decode_view(version: Version, body: &[u8]) -> Result<RequestView<'_>, DecodeError> {
    match version {
        Version::V1 => view::decode_v1(body),
        Version::V2 => view::decode_v2(body),
    }
}

/// Decodes and validates a decompressed body of the given version into
/// owned series.
pub fn decode(version: Version, body: &[u8]) -> Result<WriteRequest, DecodeError> {
    decode_view(version, body).map(|view| view.to_request())
}

/// Puts a series' labels in the one form every dcmon program stores and
/// sends them in: labels with an empty value dropped (an empty value means
/// the label is absent), the rest sorted by name; and checks them: no empty
/// name, no name twice, a metric name. The shipper normalises what it
/// sends with this; the receiver's decoders, what they accept.
pub fn normalise<N: AsRef<str>, V: AsRef<str>>(
    labels: &mut Vec<(N, V)>,
) -> Result<(), DecodeError> {
    labels.retain(|(_, value)| !value.as_ref().is_empty());
    sort_and_check(labels)
}

/// [`normalise`] for labels whose empty values are already dropped (a
/// decoder filters them while it copies): sorts them by name and checks
/// them.
pub fn sort_and_check<N: AsRef<str>, V: AsRef<str>>(
    labels: &mut [(N, V)],
) -> Result<(), DecodeError> {
    labels.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    if labels.iter().any(|(name, _)| name.as_ref().is_empty()) {
        return Err(DecodeError::EmptyLabelName {
            series: describe(labels),
        });
    }
    if let Some(pair) = labels
        .windows(2)
        .find(|w| w[0].0.as_ref() == w[1].0.as_ref())
    {
        return Err(DecodeError::DuplicateLabel {
            series: describe(labels),
            name: pair[0].0.as_ref().to_owned(),
        });
    }
    if !labels
        .iter()
        .any(|(name, _)| name.as_ref() == METRIC_NAME_LABEL)
    {
        return Err(DecodeError::MissingName {
            series: describe(labels),
        });
    }
    Ok(())
}

/// `{a="x", b="y"}`, shortened for error messages: each name and value
/// to an [`excerpt`] and the whole to about 200 bytes, so a sender's
/// megabyte label never reaches a log line or an answer whole.
pub fn describe<N: AsRef<str>, V: AsRef<str>>(labels: &[(N, V)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "{}={:?}",
            excerpt(name.as_ref()),
            excerpt(value.as_ref())
        );
        if out.len() > 200 {
            out.push('…');
            break;
        }
    }
    out.push('}');
    out
}

/// Builds a Remote-Write 1.0 body (uncompressed) from normalised series.
pub fn encode_v1(series: &[SeriesSamples]) -> Vec<u8> {
    let request = prompb::WriteRequest {
        timeseries: series
            .iter()
            .map(|s| prompb::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|(name, value)| prompb::Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|&(timestamp, value)| prompb::Sample { value, timestamp })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: Vec::new(),
    };
    request.encode_to_vec()
}

/// Builds a Remote-Write 2.0 body (uncompressed) from normalised series,
/// interning every string once.
pub fn encode_v2(series: &[SeriesSamples]) -> Vec<u8> {
    encode_v2_with_metadata(series, &[])
}

/// Builds a Remote-Write 2.0 body (uncompressed) from normalised series,
/// each series carrying the type, help and unit of its family: the entry of
/// `metadata` whose `family` is the series' `__name__`. Series without an
/// entry carry none. Every string (label names and values, help texts,
/// units) is interned once in the symbol table.
pub fn encode_v2_with_metadata(series: &[SeriesSamples], metadata: &[FamilyMetadata]) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut index: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut intern = |s: &str| -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&at) = index.get(s) {
            return at;
        }
        symbols.push(s.to_owned());
        let at = (symbols.len() - 1) as u32;
        index.insert(s.to_owned(), at);
        at
    };
    let families: std::collections::HashMap<&str, &FamilyMetadata> =
        metadata.iter().map(|m| (m.family.as_str(), m)).collect();
    let timeseries = series
        .iter()
        .map(|s| {
            let labels_refs = s
                .labels
                .iter()
                .flat_map(|(n, v)| [intern(n), intern(v)])
                .collect();
            let metadata = s
                .labels
                .iter()
                .find(|(name, _)| name == METRIC_NAME_LABEL)
                .and_then(|(_, family)| families.get(family.as_str()))
                .map(|meta| prompb_v2::Metadata {
                    r#type: metric_type_code(meta.kind),
                    help_ref: intern(&meta.help),
                    unit_ref: intern(&meta.unit),
                });
            prompb_v2::TimeSeries {
                labels_refs,
                samples: s
                    .samples
                    .iter()
                    .map(|&(timestamp, value)| prompb_v2::Sample { value, timestamp })
                    .collect(),
                metadata,
                ..Default::default()
            }
        })
        .collect();
    prompb_v2::Request {
        symbols,
        timeseries,
    }
    .encode_to_vec()
}

/// The type name as [`FamilyMetadata::kind`] holds it: one of
/// [`METRIC_TYPES`], `unknown` for anything else (a stored or sent name
/// this version does not know).
pub fn metric_kind(name: &str) -> &'static str {
    METRIC_TYPES
        .into_iter()
        .find(|kind| *kind == name)
        .unwrap_or("unknown")
}

/// The protobuf `MetricType` code of a type name (the inverse of the names
/// [`FamilyMetadata::kind`] holds); unknown names are 0, unspecified.
pub fn metric_type_code(kind: &str) -> i32 {
    METRIC_TYPES
        .iter()
        .position(|known| *known == kind)
        .map_or(0, |code| code as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> SeriesSamples {
        SeriesSamples {
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            samples: samples.to_vec(),
        }
    }

    fn sample_series() -> Vec<SeriesSamples> {
        vec![
            series(
                &[
                    ("__name__", "node_load1"),
                    ("instance", "gpu01"),
                    ("job", "dcmon"),
                ],
                &[
                    (1_700_000_000_000, 0.21),
                    (1_700_000_030_000, f64::from_bits(STALE_NAN)),
                ],
            ),
            series(
                &[("__name__", "up"), ("instance", "gpu02")],
                &[(1_700_000_000_000, 1.0)],
            ),
        ]
    }

    fn bits(batch: &WriteRequest) -> Vec<Vec<(i64, u64)>> {
        batch
            .series
            .iter()
            .map(|s| s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect())
            .collect()
    }

    #[test]
    fn round_trips_both_versions_bit_exactly() {
        let input = sample_series();
        for version in [Version::V1, Version::V2] {
            let body = match version {
                Version::V1 => encode_v1(&input),
                Version::V2 => encode_v2(&input),
            };
            let decoded = decode(version, &decompress(&compress(&body), 1 << 20).unwrap()).unwrap();
            assert_eq!(decoded.series.len(), 2);
            assert_eq!(decoded.series[0].labels, input[0].labels);
            assert_eq!(
                bits(&decoded)[0],
                vec![
                    (1_700_000_000_000, 0.21f64.to_bits()),
                    (1_700_000_030_000, STALE_NAN)
                ]
            );
        }
    }

    #[test]
    fn v2_carries_each_series_family_metadata_once_interned() {
        let input = vec![
            series(&[("__name__", "node_load1"), ("job", "a")], &[(1, 0.5)]),
            series(&[("__name__", "node_load1"), ("job", "b")], &[(1, 0.7)]),
            series(&[("__name__", "up"), ("job", "a")], &[(1, 1.0)]),
        ];
        let metadata = vec![FamilyMetadata {
            family: "node_load1".into(),
            kind: "gauge",
            help: "1m load average.".into(),
            unit: String::new(),
        }];
        let body = encode_v2_with_metadata(&input, &metadata);
        let request = prompb_v2::Request::decode(body.as_slice()).unwrap();
        let help_refs: Vec<_> = request
            .timeseries
            .iter()
            .map(|t| t.metadata.map(|m| (m.r#type, m.help_ref, m.unit_ref)))
            .collect();
        let help = request
            .symbols
            .iter()
            .position(|s| s == "1m load average.")
            .unwrap() as u32;
        assert_eq!(
            help_refs,
            vec![Some((2, help, 0)), Some((2, help, 0)), None],
            "{request:?}"
        );
        let batch = decode(Version::V2, &body).unwrap();
        assert_eq!(
            batch.metadata,
            vec![metadata[0].clone(), metadata[0].clone()]
        );
        assert_eq!(batch.series.len(), 3);
        // Without metadata the body is what it always was.
        assert_eq!(encode_v2_with_metadata(&input, &[]), encode_v2(&input));
    }

    #[test]
    fn type_codes_invert_type_names() {
        for code in 0..8 {
            assert_eq!(metric_type_code(view::metric_type_name(code)), code);
        }
        assert_eq!(metric_type_code("untyped"), 0);
    }

    #[test]
    fn negotiates_content_type() {
        assert_eq!(version_from_content_type(None), Ok(Version::V1));
        assert_eq!(
            version_from_content_type(Some("application/x-protobuf")),
            Ok(Version::V1)
        );
        assert_eq!(
            version_from_content_type(Some("application/x-protobuf;proto=prometheus.WriteRequest")),
            Ok(Version::V1)
        );
        assert_eq!(
            version_from_content_type(Some(
                "application/x-protobuf; proto=io.prometheus.write.v2.Request"
            )),
            Ok(Version::V2)
        );
        assert!(version_from_content_type(Some("application/json")).is_err());
        assert!(
            version_from_content_type(Some(
                "application/x-protobuf;proto=io.prometheus.write.v3.Request"
            ))
            .is_err()
        );
    }

    #[test]
    fn sorts_labels_and_drops_empty_values() {
        let input = vec![series(
            &[("job", "x"), ("__name__", "up"), ("empty", "")],
            &[(1, 1.0)],
        )];
        let batch = decode(Version::V1, &encode_v1(&input)).unwrap();
        assert_eq!(
            batch.series[0].labels,
            vec![
                ("__name__".to_owned(), "up".to_owned()),
                ("job".to_owned(), "x".to_owned())
            ]
        );
    }

    #[test]
    fn rejects_invalid_series() {
        let missing_name = vec![series(&[("job", "x")], &[(1, 1.0)])];
        assert!(matches!(
            decode(Version::V1, &encode_v1(&missing_name)),
            Err(DecodeError::MissingName { .. })
        ));
        let duplicate = vec![series(
            &[("__name__", "up"), ("job", "x"), ("job", "y")],
            &[(1, 1.0)],
        )];
        assert!(matches!(
            decode(Version::V2, &encode_v2(&duplicate)),
            Err(DecodeError::DuplicateLabel { .. })
        ));
        let empty_name = vec![series(&[("__name__", "up"), ("", "y")], &[(1, 1.0)])];
        assert!(matches!(
            decode(Version::V1, &encode_v1(&empty_name)),
            Err(DecodeError::EmptyLabelName { .. })
        ));
    }

    #[test]
    fn rejects_bad_symbol_refs_and_histograms() {
        let request = prompb_v2::Request {
            symbols: vec![String::new(), "__name__".into()],
            timeseries: vec![prompb_v2::TimeSeries {
                labels_refs: vec![1, 7],
                ..Default::default()
            }],
        };
        assert!(matches!(
            decode(Version::V2, &request.encode_to_vec()),
            Err(DecodeError::BadSymbolRef(_))
        ));
        let odd = prompb_v2::Request {
            symbols: vec![String::new(), "__name__".into()],
            timeseries: vec![prompb_v2::TimeSeries {
                labels_refs: vec![1],
                ..Default::default()
            }],
        };
        assert!(matches!(
            decode(Version::V2, &odd.encode_to_vec()),
            Err(DecodeError::BadSymbolRef(_))
        ));
        let histogram = prompb::WriteRequest {
            timeseries: vec![prompb::TimeSeries {
                labels: vec![prompb::Label {
                    name: "__name__".into(),
                    value: "h".into(),
                }],
                histograms: vec![vec![8, 1]],
                ..Default::default()
            }],
            metadata: vec![],
        };
        assert_eq!(
            decode(Version::V1, &histogram.encode_to_vec()),
            Err(DecodeError::NativeHistograms(1))
        );
    }

    #[test]
    fn refuses_oversized_and_corrupt_snappy() {
        let big = compress(&vec![0u8; 10_000]);
        assert_eq!(
            decompress(&big, 1000),
            Err(DecodeError::TooLarge {
                size: 10_000,
                limit: 1000
            })
        );
        assert!(matches!(
            decompress(b"\xff\xff\xff\xff\x0fgarbage", 1 << 20),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress(b"\x0a\xff\xff\xff\xff\xff", 1 << 20),
            Err(DecodeError::Snappy(_))
        ));
        assert!(matches!(
            decompress(b"", 1 << 20),
            Err(DecodeError::Snappy(_))
        ));
        assert!(matches!(
            decode(Version::V1, b"\x0a\xff\xff"),
            Err(DecodeError::Protobuf(_))
        ));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn label() -> impl Strategy<Value = (String, String)> {
            // Names include the empty string and __name__, values the empty string.
            (
                prop_oneof!["__name__", "job", "instance", "", "[a-z_]{1,8}"],
                "[a-z0-9]{0,4}",
            )
        }

        fn series() -> impl Strategy<Value = SeriesSamples> {
            (
                prop::collection::vec(label(), 0..6),
                prop::collection::vec((any::<i64>(), any::<u64>().prop_map(f64::from_bits)), 0..5),
            )
                .prop_map(|(labels, samples)| SeriesSamples { labels, samples })
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = decompress(&bytes, 1 << 16);
                let _ = decode(Version::V1, &bytes);
                let _ = decode(Version::V2, &bytes);
            }

            #[test]
            fn arbitrary_requests_decode_or_are_refused(input in prop::collection::vec(series(), 0..6), v2 in any::<bool>()) {
                let version = if v2 { Version::V2 } else { Version::V1 };
                let body = match version { Version::V1 => encode_v1(&input), Version::V2 => encode_v2(&input) };
                match decode(version, &decompress(&compress(&body), 1 << 20).unwrap()) {
                    Ok(batch) => {
                        prop_assert_eq!(batch.series.len(), input.len());
                        for (got, sent) in batch.series.iter().zip(&input) {
                            // Valid: sorted, named, unique, no empty values, samples bit-exact.
                            prop_assert!(got.labels.windows(2).all(|w| w[0].0 < w[1].0));
                            prop_assert!(got.labels.iter().any(|(n, _)| n == METRIC_NAME_LABEL));
                            prop_assert!(got.labels.iter().all(|(n, v)| !n.is_empty() && !v.is_empty()));
                            let bits = |s: &[(i64, f64)]| s.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>();
                            prop_assert_eq!(bits(&got.samples), bits(&sent.samples));
                        }
                    }
                    Err(err) => {
                        // Refused only for what is really wrong with a series.
                        let invalid = input.iter().any(|s| {
                            let named: Vec<_> = s.labels.iter().filter(|(_, v)| !v.is_empty()).collect();
                            let mut names: Vec<_> = named.iter().map(|(n, _)| n.as_str()).collect();
                            names.sort_unstable();
                            names.is_empty()
                                || names.contains(&"")
                                || names.windows(2).any(|w| w[0] == w[1])
                                || !names.contains(&METRIC_NAME_LABEL)
                        });
                        prop_assert!(invalid, "valid input refused: {}", err);
                    }
                }
            }

            #[test]
            fn mutated_requests_never_panic(input in prop::collection::vec(series(), 1..4), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
                let mut body = encode_v2(&input);
                for (at, byte) in flips {
                    let i = at.index(body.len());
                    body[i] ^= byte;
                }
                let _ = decode(Version::V2, &body);
                let _ = decode(Version::V1, &body);
            }
        }
    }
}
