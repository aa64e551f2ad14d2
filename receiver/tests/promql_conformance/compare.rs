//! Comparing results with expectations, by the rules of Prometheus's own
//! test harness.

use dcmon_receiver::promql::Value;

use super::script::{AnnotationMatch, KindSpec, LabelSet};

/// Prometheus's test comparison: relative error below 1e-6, an expected 0
/// must be exactly 0, NaN equals NaN, stale markers only equal each other.
pub fn floats_equal(expected: f64, actual: f64) -> bool {
    const STALE: u64 = 0x7ff0_0000_0000_0002;
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    if expected.to_bits() == STALE || actual.to_bits() == STALE {
        return expected.to_bits() == actual.to_bits();
    }
    if expected.is_nan() && actual.is_nan() {
        return true;
    }
    if expected == actual {
        return true;
    }
    let diff = (expected - actual).abs();
    let sum = expected.abs() + actual.abs();
    if expected == 0.0 || actual == 0.0 || sum < MIN_NORMAL {
        return diff < 1e-6 * MIN_NORMAL;
    }
    diff / sum.min(f64::MAX) < 1e-6
}

pub fn labels_of(labels: &[(String, String)]) -> LabelSet {
    labels.to_vec()
}

pub fn show(labels: &LabelSet) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Compares an instant vector with the expectation.
pub fn check_vector(
    expected: &[(LabelSet, f64)],
    actual: &[(LabelSet, f64)],
    ordered: bool,
) -> Result<(), String> {
    if expected.len() != actual.len() {
        return Err(format!(
            "expected {} elements, got {}: {}",
            expected.len(),
            actual.len(),
            actual
                .iter()
                .map(|(l, v)| format!("{} {v}", show(l)))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for (pos, (labels, value)) in actual.iter().enumerate() {
        let Some(at) = expected.iter().position(|(l, _)| l == labels) else {
            return Err(format!("unexpected metric {} {value}", show(labels)));
        };
        if !floats_equal(expected[at].1, *value) {
            return Err(format!(
                "{}: expected {}, got {value}",
                show(labels),
                expected[at].1
            ));
        }
        if ordered && at != pos {
            return Err(format!("{} at position {pos}, expected {at}", show(labels)));
        }
    }
    Ok(())
}

pub type MatrixOut = Vec<(LabelSet, Vec<(i64, f64)>)>;

pub fn check_matrix(
    start_ms: i64,
    step_ms: i64,
    expected: &[(LabelSet, Vec<Option<f64>>)],
    actual: &MatrixOut,
) -> Result<(), String> {
    if !actual.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err("matrix not sorted by labels".into());
    }
    if expected.len() != actual.len() {
        return Err(format!(
            "expected {} series, got {}: {}",
            expected.len(),
            actual.len(),
            actual
                .iter()
                .map(|(l, p)| format!("{} {p:?}", show(l)))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    for (labels, points) in actual {
        let Some((_, values)) = expected.iter().find(|(l, _)| l == labels) else {
            return Err(format!("unexpected series {}", show(labels)));
        };
        let wanted: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(k, v)| v.map(|v| (start_ms + k as i64 * step_ms, v)))
            .collect();
        let same = wanted.len() == points.len()
            && wanted
                .iter()
                .zip(points)
                .all(|(w, p)| w.0 == p.0 && floats_equal(w.1, p.1));
        if !same {
            return Err(format!(
                "{}: expected {wanted:?}, got {points:?}",
                show(labels)
            ));
        }
    }
    Ok(())
}

pub fn matrix_of(value: &Value) -> Option<MatrixOut> {
    match value {
        Value::Matrix(series) => Some(
            series
                .iter()
                .map(|s| (labels_of(&s.labels), s.points.clone()))
                .collect(),
        ),
        _ => None,
    }
}

/// Prometheus's annotation rules: every expected annotation must be among
/// those produced, and every produced one must be expected.
pub fn check_annotations(kind: &str, spec: &KindSpec, produced: &[String]) -> Result<(), String> {
    let matches = |m: &AnnotationMatch, text: &str| match m {
        AnnotationMatch::Any => true,
        AnnotationMatch::Exact(want) => want == text,
        AnnotationMatch::Regex(re) => regex::Regex::new(re).is_ok_and(|re| re.is_match(text)),
    };
    if spec.none && !produced.is_empty() {
        return Err(format!("unexpected {kind}s: {produced:?}"));
    }
    if spec.at_least_one && produced.is_empty() {
        return Err(format!("expected a {kind}, got none"));
    }
    if spec.expected.is_empty() {
        return Ok(());
    }
    for m in &spec.expected {
        if !produced.iter().any(|p| matches(m, p)) {
            return Err(format!(
                "expected {kind} {m:?} not produced (got {produced:?})"
            ));
        }
    }
    for p in produced {
        if !spec.expected.iter().any(|m| matches(m, p)) {
            return Err(format!("unexpected {kind} {p:?}"));
        }
    }
    Ok(())
}
