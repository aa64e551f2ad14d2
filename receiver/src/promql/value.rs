//! Query values: scalars, strings, instant vectors and range vectors, with
//! label sets shared through `Arc` so stepping through a range query clones
//! pointers, not strings.

use std::sync::Arc;

use crate::storage::index::Labels;

/// The metric-name label.
pub const METRIC_NAME: &str = "__name__";

/// One element of an instant vector.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The series' labels, sorted by name.
    pub labels: Labels,
    /// Its value at the evaluation time.
    pub value: f64,
}

/// One series of a range vector (or of a range query's result).
#[derive(Debug, Clone)]
pub struct Series {
    /// The series' labels, sorted by name.
    pub labels: Labels,
    /// `(timestamp ms, value)` in time order, stale markers removed.
    pub points: Vec<(i64, f64)>,
}

/// A range query's answer from its points per label set: one series each,
/// in label order, as Prometheus orders a matrix.
pub fn matrix(by_labels: impl IntoIterator<Item = (Labels, Vec<(i64, f64)>)>) -> Value {
    let mut series: Vec<Series> = by_labels
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Value::Matrix(series)
}

/// What an expression evaluates to at one point in time.
#[derive(Debug, Clone)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector.
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus's name for the value type, as the API reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// The empty label set, shared.
pub fn empty_labels() -> Labels {
    Arc::from(Vec::new())
}

/// The value of label `name`, if present.
pub fn label_value<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `labels` without `__name__` (the same `Arc` when it has none).
pub fn drop_metric_name(labels: &Labels) -> Labels {
    if labels.iter().any(|(n, _)| n == METRIC_NAME) {
        labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME)
            .cloned()
            .collect::<Vec<_>>()
            .into()
    } else {
        Arc::clone(labels)
    }
}

/// `labels` with `name` set to `value`, or removed when `value` is empty
/// (an empty label value means "no such label" in Prometheus).
pub fn with_label(labels: &[(String, String)], name: &str, value: &str) -> Labels {
    let mut out: Vec<(String, String)> =
        labels.iter().filter(|(n, _)| n != name).cloned().collect();
    if !value.is_empty() {
        let at = out.partition_point(|(n, _)| n.as_str() < name);
        out.insert(at, (name.to_owned(), value.to_owned()));
    }
    out.into()
}

/// Neumaier-compensated running sum: Prometheus sums this way so that
/// `sum` and `avg` do not lose small terms next to large ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct KahanSum {
    sum: f64,
    compensation: f64,
}

impl KahanSum {
    /// Adds one term.
    pub fn add(&mut self, term: f64) {
        let total = self.sum + term;
        if total.is_infinite() {
            self.compensation = 0.0;
        } else if self.sum.abs() >= term.abs() {
            self.compensation += (self.sum - total) + term;
        } else {
            self.compensation += (term - total) + self.sum;
        }
        self.sum = total;
    }

    /// The compensated total.
    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Mean of `values` as Prometheus 3 computes it: a compensated sum divided
/// by the count, switching to an incremental mean if the sum overflows.
pub fn mean(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let mut sum = KahanSum::default();
    let mut count = 0.0;
    for v in values.clone() {
        sum.add(v);
        count += 1.0;
    }
    let total = sum.value();
    if !total.is_infinite() || values.clone().any(f64::is_infinite) {
        return total / count;
    }
    let mut running = KahanSum::default();
    let mut n = 0.0;
    for v in values {
        n += 1.0;
        let current = running.value();
        running.add(v / n - current / n);
    }
    running.value()
}

/// Population variance by Welford's method (NaN when any input is NaN or
/// infinite, as in Prometheus 3).
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, KahanSum::default(), KahanSum::default());
    for v in values {
        count += 1.0;
        let delta = v - mean.value();
        mean.add(delta / count);
        m2.add(delta * (v - mean.value()));
    }
    m2.value() / count
}

/// The φ-quantile of `values` with linear interpolation between ranks
/// (Prometheus's `quantile`): -Inf below 0, +Inf above 1.
pub fn quantile(phi: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as Go's sort.Float64s puts it.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = phi * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kahan_keeps_small_terms() {
        let mut sum = KahanSum::default();
        for v in [1e100, 1.0, -1e100, 1.0] {
            sum.add(v);
        }
        assert_eq!(sum.value(), 2.0);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, &mut [1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
    }
}
