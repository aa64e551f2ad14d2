//! Label functions: `label_replace`, `label_join`, and the labels
//! `absent()` invents.

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use regex::Regex;

use super::QueryError;
use super::aggregate::valid_label_name;
use super::value::{METRIC_NAME, Sample, empty_labels, label_value, with_label};
use crate::storage::index::Labels;

/// The labels `absent()` reports: the selector's equality matchers (other
/// than the name), unless a label is matched more than once.
pub fn absent_labels(arg: &Expr) -> Labels {
    let selector: Option<&VectorSelector> = match arg {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let Some(vs) = selector else {
        return empty_labels();
    };
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut ambiguous: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME || !matches!(m.op, MatchOp::Equal) {
            if m.name != METRIC_NAME {
                ambiguous.push(m.name.clone());
            }
            continue;
        }
        if labels.iter().any(|(n, _)| *n == m.name) {
            ambiguous.push(m.name.clone());
        }
        labels.push((m.name.clone(), m.value.clone()));
    }
    labels.retain(|(n, _)| !ambiguous.contains(n));
    labels.sort();
    labels.dedup();
    labels.into()
}

/// `label_replace(v, dst, replacement, src, regex)`.
pub fn label_replace(
    samples: Vec<Sample>,
    dst: &str,
    replacement: &str,
    src: &str,
    pattern: &str,
) -> Result<Vec<Sample>, QueryError> {
    let regex = Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
        QueryError::bad_data(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    if !valid_label_name(dst) {
        return Err(QueryError::bad_data(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    Ok(samples
        .into_iter()
        .map(|s| {
            let source = label_value(&s.labels, src).unwrap_or("");
            match regex.captures(source) {
                Some(caps) => {
                    let mut value = String::new();
                    caps.expand(replacement, &mut value);
                    Sample {
                        labels: with_label(&s.labels, dst, &value),
                        value: s.value,
                    }
                }
                None => s,
            }
        })
        .collect())
}

/// `label_join(v, dst, separator, src…)`.
pub fn label_join(
    samples: Vec<Sample>,
    dst: &str,
    separator: &str,
    sources: &[String],
) -> Result<Vec<Sample>, QueryError> {
    if !valid_label_name(dst) {
        return Err(QueryError::bad_data(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(samples
        .into_iter()
        .map(|s| {
            let joined: Vec<&str> = sources
                .iter()
                .map(|src| label_value(&s.labels, src).unwrap_or(""))
                .collect();
            Sample {
                labels: with_label(&s.labels, dst, &joined.join(separator)),
                value: s.value,
            }
        })
        .collect())
}
