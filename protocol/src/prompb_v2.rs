//! Remote-Write 2.0 messages (`io.prometheus.write.v2.Request`), derived by
//! hand with prost (field numbers from Prometheus's
//! `prompb/io/prometheus/write/v2/types.proto`). Strings are interned in the
//! request's `symbols` table and referenced by index.

/// `io.prometheus.write.v2.Request`. Fields 1–3 are reserved so that a v1
/// body decoded as v2 comes out empty rather than wrong.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// Interned strings; index 0 must be the empty string.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    /// The series.
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Pairs of symbol indices: name, value, name, value, …
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Float samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histogram samples, undecoded.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub histograms: Vec<Vec<u8>>,
    /// Exemplars (not stored by dcmon).
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    /// Type, help and unit of the metric.
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// When a counter started counting, in ms (0 = unset).
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// `io.prometheus.write.v2.Sample`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value; NaN payloads (stale markers) travel bit-exactly.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `io.prometheus.write.v2.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// Pairs of symbol indices.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Observed value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Metadata {
    /// Metric type (0 unspecified, 1 counter, 2 gauge, …).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Symbol index of the HELP text.
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    /// Symbol index of the unit.
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}
