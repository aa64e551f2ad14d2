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
    (ts > t.saturating_sub(lookback_ms) && !is_stale(value)).then_some((ts, value))
}

/// Samples [`search_after`] walks one by one before galloping.
const NEAR: usize = 16;

/// `samples.partition_point(|(ts, _)| *ts <= t)`, searched outward from
/// `hint` first. A range query asks each series at steadily increasing
/// times; starting next to the previous step's answer touches a few
/// neighbouring samples instead of a binary search's cache misses across
/// the whole series. Any `hint` gives the same answer.
#[inline]
pub fn position_after(samples: &[(i64, f64)], t: i64, hint: usize) -> usize {
    // A walk's next answer is most often the hint or a sample or two on:
    // looked at here, inlined into the walk, before the search below.
    let n = samples.len();
    let mut lo = hint.min(n);
    if lo == 0 || samples[lo - 1].0 <= t {
        for _ in 0..NEAR_INLINE {
            if lo == n || samples[lo].0 > t {
                return lo;
            }
            lo += 1;
        }
    }
    search_after(samples, t, lo)
}

/// Samples [`position_after`] looks at before calling the search.
const NEAR_INLINE: usize = 3;

/// [`position_after`] beyond its first few samples.
#[inline(never)]
fn search_after(samples: &[(i64, f64)], t: i64, hint: usize) -> usize {
    let after = |(ts, _): &(i64, f64)| *ts <= t;
    let n = samples.len();
    let mut lo = hint.min(n);
    if lo > 0 && samples[lo - 1].0 > t {
        // The answer lies before the hint: gallop backwards.
        let mut hi = lo - 1;
        let mut step = 1;
        loop {
            let probe = hi.saturating_sub(step);
            if samples[probe].0 <= t {
                return probe + 1 + samples[probe + 1..hi].partition_point(after);
            }
            if probe == 0 {
                return 0;
            }
            hi = probe;
            step *= 2;
        }
    }
    // Every sample before `lo` is at or before `t`. The next step's
    // answer is usually a few samples on: walk there one by one (a loop
    // whose branch is predicted until it ends, where galloping guesses
    // wrong at about every probe), then gallop if it is further.
    let near = n.min(lo + NEAR);
    while lo < near && samples[lo].0 <= t {
        lo += 1;
    }
    if lo < near {
        return lo;
    }
    let mut step = 1;
    loop {
        let probe = lo + step - 1;
        if probe >= n {
            return lo + samples[lo..].partition_point(after);
        }
        if samples[probe].0 > t {
            return lo + samples[lo..probe].partition_point(after);
        }
        lo = probe + 1;
        step *= 2;
    }
}

/// [`latest`] that starts its search at `*cursor` and leaves the
/// position found there for the next step.
pub fn latest_from(
    samples: &[(i64, f64)],
    t: i64,
    lookback_ms: i64,
    cursor: &mut usize,
) -> Option<(i64, f64)> {
    let end = position_after(samples, t, *cursor);
    *cursor = end;
    let &(ts, value) = samples[..end].last()?;
    (ts > t.saturating_sub(lookback_ms) && !is_stale(value)).then_some((ts, value))
}

/// The samples in `(t - range, t]` as stored (stale markers included),
/// searched from the cursors (window start, window end), which are left at
/// the positions found for the next step.
pub fn window_slice_from<'a>(
    samples: &'a [(i64, f64)],
    t: i64,
    range_ms: i64,
    cursors: (&mut usize, &mut usize),
) -> &'a [(i64, f64)] {
    let from = position_after(samples, t.saturating_sub(range_ms), *cursors.0);
    let to = position_after(samples, t, *cursors.1);
    *cursors.0 = from;
    *cursors.1 = to;
    &samples[from..to.max(from)]
}

/// An instant vector: each series' latest sample at `t`, with one search
/// cursor per series (see [`latest_from`]).
pub fn instant_from(
    series: &[SeriesData],
    t: i64,
    lookback_ms: i64,
    cursors: &mut [usize],
) -> Vec<Sample> {
    series
        .iter()
        .zip(cursors.iter_mut())
        .filter_map(|(s, cursor)| {
            latest_from(&s.samples, t, lookback_ms, cursor).map(|(_, value)| Sample {
                labels: s.labels.clone(),
                value,
            })
        })
        .collect()
}

/// The samples in `(t - range, t]` as stored (stale markers included); the
/// reference [`window_slice_from`] is tested against.
#[cfg(test)]
pub fn window_slice(samples: &[(i64, f64)], t: i64, range_ms: i64) -> &[(i64, f64)] {
    let from = samples.partition_point(|(ts, _)| *ts <= t.saturating_sub(range_ms));
    let to = samples.partition_point(|(ts, _)| *ts <= t);
    &samples[from..to.max(from)]
}

/// The samples in `(t - range, t]`, stale markers dropped.
pub fn window(samples: &[(i64, f64)], t: i64, range_ms: i64) -> Vec<(i64, f64)> {
    let from = samples.partition_point(|(ts, _)| *ts <= t.saturating_sub(range_ms));
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
    fn position_after_is_partition_point_from_any_hint() {
        let samples: Vec<(i64, f64)> = (0..40).map(|i| (i * 10 + (i % 3), 0.0)).collect();
        for len in [0, 1, 2, 5, 40] {
            let s = &samples[..len];
            for t in -5..420 {
                let expected = s.partition_point(|(ts, _)| *ts <= t);
                for hint in 0..=len + 3 {
                    assert_eq!(
                        position_after(s, t, hint),
                        expected,
                        "len {len} t {t} hint {hint}"
                    );
                }
            }
        }
    }

    #[test]
    fn cursors_follow_steps_and_jumps() {
        let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 15_000 + 7, i as f64)).collect();
        let (mut from, mut to) = (0, 0);
        for t in [60_000, 120_000, 1_000_000, 30_000, 1_500_000, 0, 2_000_000] {
            let hinted = window_slice_from(&samples, t, 60_000, (&mut from, &mut to));
            assert_eq!(hinted, window_slice(&samples, t, 60_000), "t {t}");
            let mut cursor = to / 2;
            assert_eq!(
                latest_from(&samples, t, 300_000, &mut cursor),
                latest(&samples, t, 300_000),
                "t {t}"
            );
        }
    }

    #[test]
    fn stale_marker_ends_the_series() {
        let samples = [(0, 1.0), (10, f64::from_bits(STALE_NAN_BITS))];
        assert_eq!(latest(&samples, 20, 300_000), None);
        assert_eq!(window(&samples, 20, 100), vec![(0, 1.0)]);
    }
}
