//! `histogram_quantile` over classic histograms: `_bucket` series with an
//! `le` label holding cumulative counts.

use std::collections::HashMap;

use super::value::{Sample, drop_metric_name, label_value};
use crate::storage::index::Labels;

/// The φ-quantile of each bucket group in `buckets` (grouped by all labels
/// but `le`; the metric name is dropped from the result, so two histograms
/// differing only in name collide, as in Prometheus). Series without a
/// parsable `le` are ignored.
pub fn histogram_quantile(phi: f64, buckets: Vec<Sample>) -> Vec<Sample> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for s in buckets {
        let Some(le) = label_value(&s.labels, "le").and_then(parse_le) else {
            continue;
        };
        let key: Labels = s
            .labels
            .iter()
            .filter(|(n, _)| n != "le")
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let at = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push((le, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, mut bounds)| Sample {
            labels: drop_metric_name(&labels),
            value: bucket_quantile(phi, &mut bounds),
        })
        .collect()
}

/// Parses an `le` value like Go's ParseFloat (`+Inf`, `1e3`, …).
fn parse_le(text: &str) -> Option<f64> {
    match text.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// The quantile of one histogram given `(upper bound, cumulative count)`
/// pairs: linear interpolation inside the bucket the rank falls in.
fn bucket_quantile(phi: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Merge buckets with the same bound (e.g. `le="1"` and `le="1.0"`).
    buckets.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 += later.1;
            true
        } else {
            false
        }
    });
    // Counts must not decrease; scrapes at slightly different times can
    // make them, and Prometheus evens them out.
    for i in 1..buckets.len() {
        if buckets[i].1 < buckets[i - 1].1 {
            buckets[i].1 = buckets[i - 1].1;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 || observations.is_nan() {
        return f64::NAN;
    }
    let mut rank = phi * observations;
    let b = buckets.partition_point(|(_, count)| *count < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_interpolates_within_a_bucket() {
        let mut b = vec![(1.0, 10.0), (2.0, 30.0), (f64::INFINITY, 40.0)];
        // rank 20 falls in (1, 2] holding 20 observations: 1 + 0.5.
        assert_eq!(bucket_quantile(0.5, &mut b), 1.5);
    }
}
