//! `histogram_quantile` over classic histograms: `_bucket` series with an
//! `le` label holding cumulative counts.

use std::hash::Hasher;

use rustc_hash::{FxHashMap, FxHasher};

use super::value::{METRIC_NAME, Sample, label_value};
use crate::storage::index::Labels;

/// The answer of `histogram_quantile` and what to tell the user about it.
#[derive(Debug, Default)]
pub struct QuantileResult {
    /// One sample per histogram.
    pub samples: Vec<Sample>,
    /// `(metric name, le value)` of series ignored for a missing or
    /// malformed `le`.
    pub malformed: Vec<(String, String)>,
    /// Metric names whose bucket counts had to be made monotonic.
    pub forced_monotonic: Vec<String>,
}

/// The φ-quantile of each bucket group in `buckets` (grouped by all labels
/// but `le`; the metric name is dropped from the result, so two histograms
/// differing only in name collide, as in Prometheus).
///
/// This runs at every step of a range query over every bucket series, so
/// grouping allocates per histogram, not per bucket: a hash of the labels
/// but `le` picks the candidate groups, a comparison confirms, and a
/// group's result labels are built once, from its first bucket.
pub fn histogram_quantile(phi: f64, buckets: Vec<Sample>) -> QuantileResult {
    let mut result = QuantileResult::default();
    let mut by_hash: FxHashMap<u64, Vec<usize>> = FxHashMap::default();
    // A group: the labels of its first bucket, and `(le, count)` pairs.
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    for s in buckets {
        let le_text = label_value(&s.labels, "le").unwrap_or("");
        let Some(le) = parse_le(le_text) else {
            let name = label_value(&s.labels, METRIC_NAME).unwrap_or("");
            result.malformed.push((name.to_owned(), le_text.to_owned()));
            continue;
        };
        let candidates = by_hash.entry(hash_but_le(&s.labels)).or_default();
        let found = candidates
            .iter()
            .copied()
            .find(|&g| same_but_le(&groups[g].0, &s.labels));
        let at = found.unwrap_or_else(|| {
            groups.push((s.labels, Vec::new()));
            candidates.push(groups.len() - 1);
            groups.len() - 1
        });
        groups[at].1.push((le, s.value));
    }
    for (labels, mut bounds) in groups {
        let (value, forced) = bucket_quantile(phi, &mut bounds);
        if forced {
            let name = label_value(&labels, METRIC_NAME).unwrap_or("");
            result.forced_monotonic.push(name.to_owned());
        }
        result.samples.push(Sample {
            labels: labels
                .iter()
                .filter(|(n, _)| n != "le" && n != METRIC_NAME)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            value,
        });
    }
    result
}

/// The labels a bucket shares with the other buckets of its histogram.
fn but_le(labels: &[(String, String)]) -> impl Iterator<Item = &(String, String)> {
    labels.iter().filter(|(n, _)| n != "le")
}

fn hash_but_le(labels: &[(String, String)]) -> u64 {
    let mut hasher = FxHasher::default();
    for (name, value) in but_le(labels) {
        hasher.write(name.as_bytes());
        hasher.write_u8(0xff);
        hasher.write(value.as_bytes());
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

fn same_but_le(a: &[(String, String)], b: &[(String, String)]) -> bool {
    but_le(a).eq(but_le(b))
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
/// pairs: linear interpolation inside the bucket the rank falls in. The
/// flag tells whether counts had to be forced monotonic.
fn bucket_quantile(phi: f64, buckets: &mut Vec<(f64, f64)>) -> (f64, bool) {
    if phi.is_nan() {
        return (f64::NAN, false);
    }
    if phi < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if phi > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return (f64::NAN, false);
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
    // Counts must not decrease. Scrapes at slightly different times, or
    // float error, can make them; Prometheus evens them out, silently when
    // the dip is float noise.
    let mut forced = false;
    for i in 1..buckets.len() {
        let previous = buckets[i - 1].1;
        if buckets[i].1 < previous {
            if (previous - buckets[i].1) > 1e-12 * previous.abs() {
                forced = true;
            }
            buckets[i].1 = previous;
        }
    }
    if buckets.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 || observations.is_nan() {
        return (f64::NAN, forced);
    }
    let mut rank = phi * observations;
    let b = buckets.partition_point(|(_, count)| *count < rank);
    if b == buckets.len() - 1 {
        return (buckets[buckets.len() - 2].0, forced);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return (buckets[0].0, forced);
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The obvious grouping, kept as the reference: a key of the labels but
    /// `le` built for every bucket.
    fn reference(phi: f64, buckets: Vec<Sample>) -> QuantileResult {
        let mut result = QuantileResult::default();
        type Key = Vec<(String, String)>;
        let mut index: FxHashMap<Key, usize> = FxHashMap::default();
        let mut groups: Vec<(Key, Vec<(f64, f64)>)> = Vec::new();
        for s in buckets {
            let le_text = label_value(&s.labels, "le").unwrap_or("");
            let Some(le) = parse_le(le_text) else {
                let name = label_value(&s.labels, METRIC_NAME).unwrap_or("");
                result.malformed.push((name.to_owned(), le_text.to_owned()));
                continue;
            };
            let key: Vec<_> = s
                .labels
                .iter()
                .filter(|(n, _)| n != "le")
                .cloned()
                .collect();
            let at = *index.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[at].1.push((le, s.value));
        }
        for (labels, mut bounds) in groups {
            let (value, forced) = bucket_quantile(phi, &mut bounds);
            if forced {
                let name = label_value(&labels, METRIC_NAME).unwrap_or("");
                result.forced_monotonic.push(name.to_owned());
            }
            let labels: Vec<_> = labels
                .into_iter()
                .filter(|(n, _)| n != METRIC_NAME)
                .collect();
            result.samples.push(Sample {
                labels: labels.into(),
                value,
            });
        }
        result
    }

    /// Bucket samples of a few histograms that differ in name, in one label
    /// or only in the position of `le`, some with a bad or missing `le`.
    fn buckets() -> impl Strategy<Value = Vec<Sample>> {
        let one = (
            0..2usize,
            0..3usize,
            prop::sample::select(vec!["0.1", "0.5", "1", "1.0", "+Inf", "x", ""]),
            0..3usize,
            0u32..50,
        )
            .prop_map(|(name, job, le, position, count)| {
                let mut labels = vec![
                    (
                        METRIC_NAME.to_owned(),
                        ["a_bucket", "b_bucket"][name].to_owned(),
                    ),
                    ("job".to_owned(), format!("j{job}")),
                ];
                if !le.is_empty() {
                    // `le` sorts between the others or after them.
                    labels.insert(position.min(2), ("le".to_owned(), le.to_owned()));
                }
                labels.sort();
                Sample {
                    labels: labels.into(),
                    value: f64::from(count),
                }
            });
        prop::collection::vec(one, 0..40)
    }

    fn flat(result: &QuantileResult) -> (Vec<String>, &[(String, String)], &[String]) {
        let samples = result
            .samples
            .iter()
            .map(|s| format!("{:?} {}", s.labels, s.value.to_bits()))
            .collect();
        (samples, &result.malformed, &result.forced_monotonic)
    }

    proptest! {
        #[test]
        fn grouping_matches_the_reference(phi in prop::sample::select(vec![0.0, 0.5, 0.9, 1.0]), input in buckets()) {
            let fast = histogram_quantile(phi, input.clone());
            let slow = reference(phi, input);
            prop_assert_eq!(flat(&fast), flat(&slow));
        }
    }

    #[test]
    fn median_interpolates_within_a_bucket() {
        let mut b = vec![(1.0, 10.0), (2.0, 30.0), (f64::INFINITY, 40.0)];
        // rank 20 falls in (1, 2] holding 20 observations: 1 + 0.5.
        assert_eq!(bucket_quantile(0.5, &mut b), (1.5, false));
    }

    #[test]
    fn decreasing_counts_are_fixed_and_reported() {
        let mut b = vec![(1.0, 10.0), (2.0, 8.0), (f64::INFINITY, 20.0)];
        assert!(bucket_quantile(0.5, &mut b).1);
    }
}
