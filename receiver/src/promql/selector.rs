//! Reading fetched series at one evaluation time: instant lookups with
//! lookback and staleness, and left-open range windows.

use super::value::{Sample, Series};
use crate::storage::read::SeriesData;

/// Prometheus's stale marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether a value is the stale marker (not just any NaN).
pub fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// The newest sample of `samples` in `(t - lookback, t]`, unless it is a
/// stale marker (which ends the series until its next sample).
pub fn latest(samples: &[(i64, f64)], t: i64, lookback_ms: i64) -> Option<(i64, f64)> {
    let end = samples.partition_point(|(ts, _)| *ts <= t);
    let &(ts, value) = samples[..end].last()?;
    (ts > t - lookback_ms && !is_stale(value)).then_some((ts, value))
}

/// An instant vector: each series' latest sample at `t`.
pub fn instant(series: &[SeriesData], t: i64, lookback_ms: i64) -> Vec<Sample> {
    series
        .iter()
        .filter_map(|s| {
            latest(&s.samples, t, lookback_ms).map(|(_, value)| Sample {
                labels: s.labels.clone(),
                value,
            })
        })
        .collect()
}

/// The samples in `(t - range, t]` as stored (stale markers included).
pub fn window_slice(samples: &[(i64, f64)], t: i64, range_ms: i64) -> &[(i64, f64)] {
    let from = samples.partition_point(|(ts, _)| *ts <= t - range_ms);
    let to = samples.partition_point(|(ts, _)| *ts <= t);
    &samples[from..to.max(from)]
}

/// The samples in `(t - range, t]`, stale markers dropped.
pub fn window(samples: &[(i64, f64)], t: i64, range_ms: i64) -> Vec<(i64, f64)> {
    let from = samples.partition_point(|(ts, _)| *ts <= t - range_ms);
    let to = samples.partition_point(|(ts, _)| *ts <= t);
    samples[from..to.max(from)]
        .iter()
        .copied()
        .filter(|(_, v)| !is_stale(*v))
        .collect()
}

/// A range vector: each series' window at `t`; series with an empty window
/// are left out.
pub fn range(series: &[SeriesData], t: i64, range_ms: i64) -> Vec<Series> {
    series
        .iter()
        .filter_map(|s| {
            let points = window(&s.samples, t, range_ms);
            (!points.is_empty()).then(|| Series {
                labels: s.labels.clone(),
                points,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookback_is_left_open() {
        let samples = [(0, 1.0), (60_000, 2.0)];
        assert_eq!(latest(&samples, 300_000, 300_000), Some((60_000, 2.0)));
        assert_eq!(latest(&samples, 360_000, 300_000), None);
    }

    #[test]
    fn stale_marker_ends_the_series() {
        let samples = [(0, 1.0), (10, f64::from_bits(STALE_NAN_BITS))];
        assert_eq!(latest(&samples, 20, 300_000), None);
        assert_eq!(window(&samples, 20, 100), vec![(0, 1.0)]);
    }
}
