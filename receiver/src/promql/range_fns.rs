//! Functions of a range vector: `rate` and friends and the `*_over_time`
//! family. Each maps one series' window to at most one value.

use super::value::{KahanSum, mean, quantile, variance};

/// The window a range function sees: its points and its bounds.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// Points in `(start, end]`, in time order.
    pub points: &'a [(i64, f64)],
    /// Left (open) bound, ms.
    pub start_ms: i64,
    /// Right (closed) bound, ms.
    pub end_ms: i64,
}

/// Whether a function keeps the metric name (only the "pick a sample"
/// functions do).
pub fn keeps_name(name: &str) -> bool {
    matches!(name, "last_over_time" | "first_over_time")
}

/// Whether `name` is a range function implemented here.
pub fn is_range_function(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "resets"
            | "changes"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "quantile_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "last_over_time"
            | "first_over_time"
            | "present_over_time"
    )
}

/// Applies range function `name` (with its scalar parameter, if any) at
/// evaluation time `t_ms`.
pub fn apply(name: &str, w: Window<'_>, param: f64, t_ms: i64) -> Option<f64> {
    let values = || w.points.iter().map(|(_, v)| *v);
    let points = w.points;
    match name {
        "rate" => extrapolated_delta(w, true, true),
        "increase" => extrapolated_delta(w, true, false),
        "delta" => extrapolated_delta(w, false, false),
        "irate" => instant_delta(points, true),
        "idelta" => instant_delta(points, false),
        "deriv" => (points.len() >= 2).then(|| linear_regression(points, points[0].0).0),
        "predict_linear" => (points.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(points, t_ms);
            slope * param + intercept
        }),
        "resets" => (!points.is_empty())
            .then(|| points.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64),
        "changes" => (!points.is_empty()).then(|| {
            points
                .windows(2)
                .filter(|p| !(p[1].1 == p[0].1 || (p[1].1.is_nan() && p[0].1.is_nan())))
                .count() as f64
        }),
        _ if points.is_empty() => None,
        "avg_over_time" => Some(mean(values())),
        "sum_over_time" => {
            let mut sum = KahanSum::default();
            values().for_each(|v| sum.add(v));
            Some(sum.value())
        }
        "count_over_time" => Some(points.len() as f64),
        "min_over_time" => Some(extreme(values(), |a, b| a < b)),
        "max_over_time" => Some(extreme(values(), |a, b| a > b)),
        "quantile_over_time" => Some(quantile(param, &mut values().collect::<Vec<_>>())),
        "stddev_over_time" => Some(variance(values()).sqrt()),
        "stdvar_over_time" => Some(variance(values())),
        "last_over_time" => points.last().map(|p| p.1),
        "first_over_time" => points.first().map(|p| p.1),
        "present_over_time" => Some(1.0),
        _ => None,
    }
}

/// The first best value (`better(a, b)`: `a` beats `b`), NaN only when
/// every value is NaN.
fn extreme(mut values: impl Iterator<Item = f64>, better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best = values.next().unwrap_or(f64::NAN);
    for v in values {
        if better(v, best) || best.is_nan() {
            best = v;
        }
    }
    best
}

/// `rate`, `increase` and `delta`: the change over the window, corrected
/// for counter resets and extrapolated towards the window's bounds the way
/// Prometheus does (at most half an average interval beyond the outermost
/// samples, and never below a counter's zero point).
fn extrapolated_delta(w: Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let points = w.points;
    if points.len() < 2 {
        return None;
    }
    let mut delta = points[points.len() - 1].1 - points[0].1;
    if is_counter {
        for pair in points.windows(2) {
            if pair[1].1 < pair[0].1 {
                delta += pair[0].1;
            }
        }
    }
    Some(extrapolate(w, delta, is_counter, is_rate))
}

/// The end of [`extrapolated_delta`] for a window of at least two points
/// whose change, counter resets corrected, is `delta` (the value at the
/// end minus the first, plus in time order the value before each reset).
fn extrapolate(w: Window<'_>, delta: f64, is_counter: bool, is_rate: bool) -> f64 {
    let seconds = is_rate.then(|| w.end_ms.saturating_sub(w.start_ms) as f64 / 1000.0);
    extrapolate_over(w, delta, is_counter, seconds)
}

/// [`extrapolate`] given, for a rate, the window's length in seconds
/// (the same at every step of a range query: worked out once there).
#[inline]
pub fn extrapolate_over(
    w: Window<'_>,
    delta: f64,
    is_counter: bool,
    rate_seconds: Option<f64>,
) -> f64 {
    let points = w.points;
    let (first_t, first_v) = points[0];
    let (last_t, _) = points[points.len() - 1];
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let gap_to_start = first_t.saturating_sub(w.start_ms);
    let gap_to_end = w.end_ms.saturating_sub(last_t);
    let mut to_start = gap_to_start as f64 / 1000.0;
    let mut to_end = gap_to_end as f64 / 1000.0;
    let intervals = points.len() - 1;
    // Both gaps are usually well below the threshold, which integers say
    // without the division that finds it.
    if !below_threshold(gap_to_start.max(gap_to_end), last_t - first_t, intervals) {
        let average_interval = sampled / intervals as f64;
        let threshold = average_interval * 1.1;
        if to_start >= threshold {
            to_start = average_interval / 2.0;
        }
        if to_end >= threshold {
            to_end = average_interval / 2.0;
        }
    }
    // The zero point, `sampled * (first_v / delta)`, is at least `sampled`
    // when `first_v >= delta` (rounding keeps a quotient of at least 1 at
    // least 1): then it is nearer only when `sampled` is, which saves the
    // division for a counter far from zero.
    if is_counter && delta > 0.0 && first_v >= 0.0 && !(first_v >= delta && sampled >= to_start) {
        let to_zero = sampled * (first_v / delta);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if let Some(seconds) = rate_seconds {
        factor /= seconds;
    }
    delta * factor
}

/// Whether a gap of `gap` ms is below Prometheus's threshold for
/// extrapolating, 1.1 times the average of `intervals` intervals over
/// `sampled` ms, by a margin (2^-40 of the threshold) far wider than what
/// rounding moves the float comparison by (a few units in 2^-53), so the
/// comparison in seconds says the same. `false` when unsure, negative or
/// too large to tell.
fn below_threshold(gap: i64, sampled: i64, intervals: usize) -> bool {
    let (Ok(gap), Ok(sampled)) = (u128::try_from(gap), u128::try_from(sampled)) else {
        return false;
    };
    // gap < 1.1 * sampled / intervals, scaled by 10 * intervals.
    let limit = 11 * sampled;
    let margin = (limit >> 40) + 1;
    (10 * gap)
        .checked_mul(intervals as u128)
        .is_some_and(|scaled| scaled < limit.saturating_sub(margin))
}

/// `irate` and `idelta`: from the last two samples only.
fn instant_delta(points: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (prev_t, prev_v) = points[points.len() - 2];
    let (last_t, last_v) = points[points.len() - 1];
    let interval = (last_t - prev_t) as f64 / 1000.0;
    if is_rate && interval == 0.0 {
        return None;
    }
    let change = if is_rate && last_v < prev_v {
        // A counter reset: the counter counted up from zero.
        last_v
    } else {
        last_v - prev_v
    };
    Some(if is_rate { change / interval } else { change })
}

/// Least-squares `(slope per second, value at intercept_ms)`, with
/// compensated sums; a constant series has slope exactly 0.
fn linear_regression(points: &[(i64, f64)], intercept_ms: i64) -> (f64, f64) {
    let first = points[0].1;
    if points.iter().all(|p| p.1 == first) {
        if first.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, first);
    }
    let n = points.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sx2) = (
        KahanSum::default(),
        KahanSum::default(),
        KahanSum::default(),
        KahanSum::default(),
    );
    for &(t, v) in points {
        let x = t.saturating_sub(intercept_ms) as f64 / 1000.0;
        sx.add(x);
        sy.add(v);
        sxy.add(x * v);
        sx2.add(x * x);
    }
    let (sx, sy, sxy, sx2) = (sx.value(), sy.value(), sxy.value(), sx2.value());
    let cov_xy = sxy - sx * sy / n;
    let var_x = sx2 - sx * sx / n;
    let slope = cov_xy / var_x;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Prometheus's extrapolation step by step: every division done, as
    /// the reference for [`extrapolate_over`]'s shortcuts.
    fn extrapolate_over_reference(
        w: Window<'_>,
        delta: f64,
        is_counter: bool,
        rate_seconds: Option<f64>,
    ) -> f64 {
        let points = w.points;
        let (first_t, first_v) = points[0];
        let (last_t, _) = points[points.len() - 1];
        let sampled = (last_t - first_t) as f64 / 1000.0;
        let mut to_start = first_t.saturating_sub(w.start_ms) as f64 / 1000.0;
        let mut to_end = w.end_ms.saturating_sub(last_t) as f64 / 1000.0;
        let average_interval = sampled / (points.len() - 1) as f64;
        let threshold = average_interval * 1.1;
        if to_start >= threshold {
            to_start = average_interval / 2.0;
        }
        if is_counter && delta > 0.0 && first_v >= 0.0 {
            let to_zero = sampled * (first_v / delta);
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        if to_end >= threshold {
            to_end = average_interval / 2.0;
        }
        let mut factor = (sampled + to_start + to_end) / sampled;
        if let Some(seconds) = rate_seconds {
            factor /= seconds;
        }
        delta * factor
    }

    /// A gap in ms: anywhere up to four intervals, or within a few ms of
    /// the threshold (1.1 average intervals), where rounding decides.
    fn gap(sampled: i64, intervals: i64) -> impl Strategy<Value = i64> {
        let threshold = 11 * sampled / (10 * intervals);
        prop_oneof![
            0..=4 * sampled / intervals + 1,
            (-3i64..=3).prop_map(move |d| (threshold + d).max(0)),
        ]
    }

    fn window_case() -> impl Strategy<Value = (Vec<i64>, i64, i64)> {
        (
            prop::collection::vec(1i64..120_000, 1..12),
            0i64..10_000_000_000,
        )
            .prop_flat_map(|(steps, first)| {
                let times: Vec<i64> = steps
                    .iter()
                    .scan(first, |t, d| {
                        *t += d;
                        Some(*t)
                    })
                    .collect();
                let times = [vec![first], times].concat();
                let sampled = times[times.len() - 1] - first;
                let intervals = times.len() as i64 - 1;
                (
                    Just(times),
                    gap(sampled, intervals),
                    gap(sampled, intervals),
                )
            })
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(0.0),
            Just(f64::INFINITY),
            Just(f64::NAN),
            -1e3f64..1e3,
            0.0f64..1e12,
            (0u64..1000).prop_map(|v| v as f64 * 1e-9),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        /// The shortcuts (integer comparison with the threshold, zero point
        /// skipped when it cannot be nearer) give the reference's bits.
        #[test]
        fn extrapolation_shortcuts_give_the_step_by_step_answer(
            (times, before, after) in window_case(),
            (first_v, delta) in (value(), value(), 0.0f64..3.0).prop_flat_map(|(v, delta, ratio)| {
                // Near the zero point's shortcut: a first value a fraction
                // or a few times the change.
                prop_oneof![Just((v, delta)), Just((delta * ratio, delta))]
            }),
            is_counter in any::<bool>(),
            rate_seconds in prop_oneof![Just(None), (1u32..100_000).prop_map(|s| Some(f64::from(s)))],
        ) {
            let points: Vec<(i64, f64)> = times.iter().map(|&t| (t, first_v)).collect();
            let w = Window {
                points: &points,
                start_ms: times[0] - before,
                end_ms: times[times.len() - 1] + after,
            };
            let fast = extrapolate_over(w, delta, is_counter, rate_seconds);
            let reference = extrapolate_over_reference(w, delta, is_counter, rate_seconds);
            prop_assert!(
                fast.to_bits() == reference.to_bits() || (fast.is_nan() && reference.is_nan()),
                "{fast} != {reference}"
            );
        }
    }

    #[test]
    fn increase_extrapolates_to_the_window() {
        // 0..100 by 10 every 5m, window (0, 50m]: samples at 5m..50m.
        let points: Vec<(i64, f64)> = (1..=10).map(|i| (i * 300_000, i as f64 * 10.0)).collect();
        let w = Window {
            points: &points,
            start_ms: 0,
            end_ms: 3_000_000,
        };
        // 90 over 45m, extended by the zero point / half interval: 100.
        assert_eq!(apply("increase", w, 0.0, 3_000_000), Some(100.0));
    }

    #[test]
    fn deriv_of_a_line() {
        let points = [(0, 1.0), (1000, 3.0), (2000, 5.0)];
        let w = Window {
            points: &points,
            start_ms: -1,
            end_ms: 2000,
        };
        assert_eq!(apply("deriv", w, 0.0, 2000), Some(2.0));
    }
}
