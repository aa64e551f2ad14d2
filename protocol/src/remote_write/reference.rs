//! The straightforward decoder: prost's generated types, then validation
//! on owned strings. The borrowing decoder ([`super::decode_view`]) must
//! give exactly what this gives, errors included; the property tests
//! compare the two.

use prost::Message;

use super::view::metric_type_name;
use super::{DecodeError, FamilyMetadata, METRIC_NAME_LABEL, SeriesSamples, Version, WriteRequest};
use crate::{prompb, prompb_v2};

/// Decodes and validates a decompressed body of the given version.
pub(super) fn decode(version: Version, body: &[u8]) -> Result<WriteRequest, DecodeError> {
    match version {
        Version::V1 => decode_v1(body),
        Version::V2 => decode_v2(body),
    }
}

fn decode_v1(body: &[u8]) -> Result<WriteRequest, DecodeError> {
    let request =
        prompb::WriteRequest::decode(body).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let histograms: usize = request.timeseries.iter().map(|t| t.histograms.len()).sum();
    if histograms > 0 {
        return Err(DecodeError::NativeHistograms(histograms));
    }
    let mut batch = WriteRequest {
        exemplars: request.timeseries.iter().map(|t| t.exemplars.len()).sum(),
        ..WriteRequest::default()
    };
    for ts in request.timeseries {
        let labels = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        let samples = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        batch.series.push(normalise(labels, samples)?);
    }
    batch.metadata = request
        .metadata
        .into_iter()
        .map(|m| FamilyMetadata {
            family: m.metric_family_name,
            kind: metric_type_name(m.r#type),
            help: m.help,
            unit: m.unit,
        })
        .collect();
    Ok(batch)
}

fn decode_v2(body: &[u8]) -> Result<WriteRequest, DecodeError> {
    let request =
        prompb_v2::Request::decode(body).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let histograms: usize = request.timeseries.iter().map(|t| t.histograms.len()).sum();
    if histograms > 0 {
        return Err(DecodeError::NativeHistograms(histograms));
    }
    let symbols = &request.symbols;
    let symbol = |index: u32| -> Result<&String, DecodeError> {
        symbols.get(index as usize).ok_or_else(|| {
            DecodeError::BadSymbolRef(format!(
                "index {index} but the table has {} symbols",
                symbols.len()
            ))
        })
    };
    let mut batch = WriteRequest {
        exemplars: request.timeseries.iter().map(|t| t.exemplars.len()).sum(),
        ..WriteRequest::default()
    };
    for ts in &request.timeseries {
        if ts.labels_refs.len() % 2 != 0 {
            return Err(DecodeError::BadSymbolRef(format!(
                "labels_refs has odd length {}",
                ts.labels_refs.len()
            )));
        }
        let mut labels = Vec::with_capacity(ts.labels_refs.len() / 2);
        for pair in ts.labels_refs.chunks_exact(2) {
            labels.push((symbol(pair[0])?.clone(), symbol(pair[1])?.clone()));
        }
        let samples = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        let series = normalise(labels, samples)?;
        if let Some(meta) = ts
            .metadata
            .filter(|m| m.r#type != 0 || m.help_ref != 0 || m.unit_ref != 0)
        {
            let family = series
                .labels
                .iter()
                .find(|(n, _)| n == METRIC_NAME_LABEL)
                .map(|(_, v)| v.clone());
            batch.metadata.push(FamilyMetadata {
                family: family.unwrap_or_default(),
                kind: metric_type_name(meta.r#type),
                help: symbol(meta.help_ref)?.clone(),
                unit: symbol(meta.unit_ref)?.clone(),
            });
        }
        batch.series.push(series);
    }
    Ok(batch)
}

/// Sorts labels, drops empty values and checks names.
fn normalise(
    mut labels: Vec<(String, String)>,
    samples: Vec<(i64, f64)>,
) -> Result<SeriesSamples, DecodeError> {
    super::normalise(&mut labels)?;
    Ok(SeriesSamples { labels, samples })
}
