//! A compressed Remote-Write request ready to send: its body in one of
//! the two protobuf messages, the time it is ordered and aged by, and its
//! sample count for the counters.
//!
//! A batch can be re-encoded in the other message ([`Batch::to_version`]),
//! for a batch spooled as 2.0 that must reach an endpoint which turned out
//! to take only 1.0, or one spooled as 1.0 for an endpoint set to 2.0.
//! 1.0 carries no metadata here, so a batch re-encoded to 1.0 loses its
//! families' help texts, not a sample.

use std::collections::HashMap;

use dcmon_protocol::remote_write::{self, FamilyMetadata, SeriesSamples, Version};
use dcmon_protocol::{prompb, prompb_v2};
use prost::Message;

/// Largest decompressed body [`Batch::to_version`] accepts: far above any
/// batch of one host's scrape, low enough that a damaged length cannot
/// exhaust memory.
const MAX_DECOMPRESSED: usize = 256 << 20;

/// A compressed remote-write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// When the batch is ordered and aged from, ms since the epoch: the
    /// exporter's tick (every sample is stamped with it), or when the
    /// receiver accepted a write it forwards.
    pub tick_ms: i64,
    /// Samples in the request, for the shipper's counters.
    pub samples: u64,
    /// The protobuf message `body` holds.
    pub version: Version,
    /// The snappy-compressed message.
    pub body: Vec<u8>,
}

/// A batch body that cannot be re-encoded (damaged in a way the spool's
/// checksum did not catch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot re-encode a spooled {from:?} batch: {reason}")]
pub struct TranscodeError {
    /// The message the body was said to hold.
    pub from: Version,
    /// What was wrong.
    pub reason: String,
}

impl Batch {
    /// Encodes series (and, in 2.0, their families' metadata) as the batch
    /// of `tick_ms`.
    pub fn encode(
        series: &[SeriesSamples],
        metadata: &[FamilyMetadata],
        tick_ms: i64,
        version: Version,
    ) -> Self {
        let message = match version {
            Version::V1 => remote_write::encode_v1(series),
            Version::V2 => remote_write::encode_v2_with_metadata(series, metadata),
        };
        Self {
            tick_ms,
            samples: series.iter().map(|s| s.samples.len() as u64).sum(),
            version,
            body: remote_write::compress(&message),
        }
    }

    /// The same batch in `version`: itself when it already is, otherwise
    /// decompressed, converted message to message (labels, samples bit for
    /// bit, metadata where the target carries it) and compressed again.
    pub fn to_version(&self, version: Version) -> Result<Batch, TranscodeError> {
        if self.version == version {
            return Ok(self.clone());
        }
        let fail = |reason: String| TranscodeError {
            from: self.version,
            reason,
        };
        let raw = remote_write::decompress(&self.body, MAX_DECOMPRESSED)
            .map_err(|e| fail(e.to_string()))?;
        let message = match self.version {
            Version::V2 => {
                let request =
                    prompb_v2::Request::decode(raw.as_slice()).map_err(|e| fail(e.to_string()))?;
                v2_to_v1(request).map_err(fail)?.encode_to_vec()
            }
            Version::V1 => {
                let request = prompb::WriteRequest::decode(raw.as_slice())
                    .map_err(|e| fail(e.to_string()))?;
                v1_to_v2(request).encode_to_vec()
            }
        };
        Ok(Batch {
            tick_ms: self.tick_ms,
            samples: self.samples,
            version,
            body: remote_write::compress(&message),
        })
    }
}

/// A 2.0 request as 1.0: symbols resolved into labels; metadata, which 1.0
/// sends apart from the series, is left out.
fn v2_to_v1(request: prompb_v2::Request) -> Result<prompb::WriteRequest, String> {
    let symbol =
        |index: u32| -> Result<String, String> {
            request.symbols.get(index as usize).cloned().ok_or_else(|| {
                format!("symbol {index} out of a table of {}", request.symbols.len())
            })
        };
    let mut timeseries = Vec::with_capacity(request.timeseries.len());
    for series in &request.timeseries {
        if series.labels_refs.len() % 2 != 0 {
            return Err("unpaired label reference".into());
        }
        let labels = series
            .labels_refs
            .chunks_exact(2)
            .map(|pair| {
                Ok(prompb::Label {
                    name: symbol(pair[0])?,
                    value: symbol(pair[1])?,
                })
            })
            .collect::<Result<_, String>>()?;
        timeseries.push(prompb::TimeSeries {
            labels,
            samples: series
                .samples
                .iter()
                .map(|s| prompb::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            ..Default::default()
        });
    }
    Ok(prompb::WriteRequest {
        timeseries,
        metadata: Vec::new(),
    })
}

/// A 1.0 request as 2.0, every string interned once.
fn v1_to_v2(request: prompb::WriteRequest) -> prompb_v2::Request {
    let mut symbols = vec![String::new()];
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut intern = |s: String| -> u32 {
        if s.is_empty() {
            return 0;
        }
        *index.entry(s).or_insert_with_key(|s| {
            symbols.push(s.clone());
            (symbols.len() - 1) as u32
        })
    };
    let timeseries = request
        .timeseries
        .into_iter()
        .map(|series| prompb_v2::TimeSeries {
            labels_refs: series
                .labels
                .into_iter()
                .flat_map(|l| [intern(l.name), intern(l.value)])
                .collect(),
            samples: series
                .samples
                .iter()
                .map(|s| prompb_v2::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    prompb_v2::Request {
        symbols,
        timeseries,
    }
}
