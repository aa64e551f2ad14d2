//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, …) with
//! `by`/`without` grouping.

use std::cmp::Ordering;
use std::sync::Arc;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK, TokenId, TokenType,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};
use rustc_hash::FxHashMap;

use super::QueryError;
use super::eval::Evaluator;
use super::text::format_float;
use super::value::{KahanSum, METRIC_NAME, Sample, Value, mean, quantile, variance, with_label};
use crate::storage::index::Labels;

/// Evaluates `agg` at `t`.
pub fn eval(ev: &Evaluator<'_>, agg: &AggregateExpr, t: i64) -> Result<Value, QueryError> {
    let op = agg.op.id();
    let param = match &agg.param {
        Some(p) => Some(ev.eval(p, t)?),
        None => None,
    };
    let input = ev.eval_vector(&agg.expr, t)?;
    let grouping = &Grouper {
        ev,
        node: agg as *const AggregateExpr as usize,
        grouping: agg.modifier.as_ref(),
    };
    let out = match op {
        T_TOPK | T_BOTTOMK => {
            let k = scalar_param(param, "k")?;
            if k.is_nan() {
                return Err(QueryError::bad_data("Parameter value is NaN"));
            }
            select_k(input, grouping, k, op == T_TOPK)
        }
        T_COUNT_VALUES => {
            let Some(Value::String(label)) = param else {
                return Err(QueryError::bad_data(
                    "count_values needs a string parameter",
                ));
            };
            if !valid_label_name(&label) {
                return Err(QueryError::execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            count_values(input, grouping, &label)
        }
        T_QUANTILE => {
            let phi = scalar_param(param, "quantile")?;
            if let Some(p) = &agg.param {
                warn_quantile(ev, phi, p);
            }
            reduce(input, grouping, |values| quantile(phi, values))
        }
        other => match plain_reducer(other) {
            Some(f) => reduce(input, grouping, f),
            None => {
                return Err(QueryError::unsupported(format!(
                    "aggregation {}",
                    TokenType::new(other)
                )));
            }
        },
    };
    Ok(Value::Vector(out))
}

/// Warns when a quantile parameter is outside [0, 1] (or NaN).
pub fn warn_quantile(ev: &Evaluator<'_>, phi: f64, param: &promql_parser::parser::Expr) {
    if let Some(message) = quantile_warning(phi) {
        ev.warn(&message, param);
    }
}

/// The warning a quantile parameter outside [0, 1] (or NaN) earns.
pub fn quantile_warning(phi: f64) -> Option<String> {
    (!(0.0..=1.0).contains(&phi)).then(|| {
        format!(
            "quantile value should be between 0 and 1, got {}",
            format_float(phi)
        )
    })
}

/// The reduction of a parameterless aggregation over one group's values
/// (in the order the group's members appear), shared by the step
/// evaluator and the by-series one so both compute bit for bit alike.
pub fn plain_reducer(op: TokenId) -> Option<fn(&mut [f64]) -> f64> {
    Some(match op {
        T_SUM => |values| {
            let mut sum = KahanSum::default();
            values.iter().for_each(|v| sum.add(*v));
            sum.value()
        },
        T_AVG => |values| mean(values.iter().copied()),
        T_COUNT => |values| values.len() as f64,
        T_GROUP => |_| 1.0,
        T_MIN => |values| extreme(values, |a, b| a < b),
        T_MAX => |values| extreme(values, |a, b| a > b),
        T_STDVAR => |values| variance(values.iter().copied()),
        T_STDDEV => |values| variance(values.iter().copied()).sqrt(),
        _ => return None,
    })
}

fn scalar_param(param: Option<Value>, what: &str) -> Result<f64, QueryError> {
    match param {
        Some(Value::Scalar(v)) => Ok(v),
        _ => Err(QueryError::bad_data(format!(
            "expected a scalar {what} parameter"
        ))),
    }
}

/// The label set of the group a series belongs to.
pub fn group_labels(labels: &[(String, String)], grouping: Option<&LabelModifier>) -> Labels {
    match grouping {
        None => Vec::new().into(),
        Some(LabelModifier::Include(by)) => labels
            .iter()
            .filter(|(n, _)| by.labels.iter().any(|l| l == n))
            .cloned()
            .collect::<Vec<_>>()
            .into(),
        Some(LabelModifier::Exclude(without)) => labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME && !without.labels.iter().any(|l| l == n))
            .cloned()
            .collect::<Vec<_>>()
            .into(),
    }
}

/// How to find a sample's group: the grouping, and (through the
/// evaluator's cache) each series' group labels computed once per query.
struct Grouper<'a, 'q> {
    ev: &'a Evaluator<'q>,
    node: usize,
    grouping: Option<&'a LabelModifier>,
}

impl Grouper<'_, '_> {
    /// The group labels of a series; interned, so two series of one group
    /// get the very same `Arc`.
    fn labels(&self, labels: &Labels) -> Labels {
        self.ev.derived_labels(self.node, labels, |l| {
            self.ev.intern(group_labels(l, self.grouping))
        })
    }
}

/// Splits `input` into groups, keeping the order of first appearance.
/// Group labels are interned, so groups are found by pointer, not by
/// hashing label contents for every sample at every step.
fn groups(input: Vec<Sample>, grouper: &Grouper<'_, '_>) -> Vec<(Labels, Vec<Sample>)> {
    let mut index: FxHashMap<usize, usize> = FxHashMap::default();
    let mut out: Vec<(Labels, Vec<Sample>)> = Vec::new();
    for s in input {
        let key = grouper.labels(&s.labels);
        let at = *index
            .entry(Arc::as_ptr(&key) as *const u8 as usize)
            .or_insert_with(|| {
                out.push((key, Vec::new()));
                out.len() - 1
            });
        out[at].1.push(s);
    }
    out
}

fn reduce(
    input: Vec<Sample>,
    grouping: &Grouper<'_, '_>,
    f: impl Fn(&mut [f64]) -> f64,
) -> Vec<Sample> {
    groups(input, grouping)
        .into_iter()
        .map(|(labels, members)| {
            let mut values: Vec<f64> = members.iter().map(|s| s.value).collect();
            Sample {
                labels,
                value: f(&mut values),
            }
        })
        .collect()
}

/// `min`/`max`: NaN only when every value is NaN.
pub fn extreme(values: &[f64], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best = values[0];
    for &v in &values[1..] {
        if better(v, best) || best.is_nan() {
            best = v;
        }
    }
    best
}

/// `topk`/`bottomk`: the k best samples of each group, best first, NaN
/// never preferred over a number.
///
/// Which of several equal values are kept is Prometheus's choice: each
/// group keeps a binary heap with its worst sample on top; a sample joins
/// while the heap holds fewer than k, and later replaces the top only when
/// strictly better (or the top is NaN and it is not). The heap moves as Go's
/// `container/heap` moves it, so ties resolve as they do there.
fn select_k(input: Vec<Sample>, grouping: &Grouper<'_, '_>, k: f64, largest: bool) -> Vec<Sample> {
    let Some(k) = k_count(k) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut values = Vec::new();
    for (_, members) in groups(input, grouping) {
        values.clear();
        values.extend(members.iter().map(|s| s.value));
        let chosen = best_k(&values, k, largest);
        let mut members: Vec<Option<Sample>> = members.into_iter().map(Some).collect();
        out.extend(chosen.into_iter().filter_map(|i| members[i].take()));
    }
    out
}

/// `topk`/`bottomk`'s parameter as a count (`None`: below 1, none kept);
/// the caller has refused NaN.
pub fn k_count(k: f64) -> Option<usize> {
    if k < 1.0 {
        return None;
    }
    Some(if k >= usize::MAX as f64 {
        usize::MAX
    } else {
        k as usize
    })
}

/// Which of one group's `values` (in the order its members come) `topk`
/// (`largest`) or `bottomk` keeps, as positions in `values`, best first:
/// Prometheus's heap, which decides among equal values, and its stable
/// sort of the heap. Shared by the step evaluator and the by-series one.
pub fn best_k(values: &[f64], k: usize, largest: bool) -> Vec<usize> {
    // Prometheus's heap order: a NaN is below everything.
    let worse = |a: f64, b: f64| a.is_nan() || if largest { a < b } else { a > b };
    let below = |a: &usize, b: &usize| worse(values[*a], values[*b]);
    let mut heap: Vec<usize> = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        if heap.len() < k {
            heap.push(i);
            let last = heap.len() - 1;
            sift_up(&mut heap, last, &below);
        } else if worse(values[heap[0]], v) && !v.is_nan() {
            heap[0] = i;
            sift_down(&mut heap, 0, &below);
        }
    }
    // Best first; equal values keep their heap order.
    heap.sort_by(|&a, &b| {
        let (a, b) = (values[a], values[b]);
        match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            _ if worse(b, a) => Ordering::Less,
            _ if worse(a, b) => Ordering::Greater,
            _ => Ordering::Equal,
        }
    });
    heap
}

/// Moves `heap[at]` up while it is below its parent (`below(a, b)`: `a`
/// belongs nearer the top than `b`).
fn sift_up<T>(heap: &mut [T], mut at: usize, below: &dyn Fn(&T, &T) -> bool) {
    while at > 0 {
        let parent = (at - 1) / 2;
        if !below(&heap[at], &heap[parent]) {
            break;
        }
        heap.swap(at, parent);
        at = parent;
    }
}

/// Moves `heap[at]` down below any child nearer the top than it, or, if it
/// did not move, up (Go's `heap.Fix`).
fn sift_down<T>(heap: &mut [T], from: usize, below: &dyn Fn(&T, &T) -> bool) {
    let mut at = from;
    loop {
        let left = 2 * at + 1;
        if left >= heap.len() {
            break;
        }
        let mut child = left;
        if left + 1 < heap.len() && below(&heap[left + 1], &heap[left]) {
            child = left + 1;
        }
        if !below(&heap[child], &heap[at]) {
            break;
        }
        heap.swap(at, child);
        at = child;
    }
    if at == from {
        sift_up(heap, from, below);
    }
}

fn count_values(input: Vec<Sample>, grouping: &Grouper<'_, '_>, label: &str) -> Vec<Sample> {
    let mut index: FxHashMap<Labels, usize> = FxHashMap::default();
    let mut out: Vec<Sample> = Vec::new();
    for s in input {
        let base = grouping.labels(&s.labels);
        let key = with_label(&base, label, &format_float(s.value));
        let at = *index.entry(key.clone()).or_insert_with(|| {
            out.push(Sample {
                labels: key,
                value: 0.0,
            });
            out.len() - 1
        });
        out[at].value += 1.0;
    }
    out
}

/// Whether `name` is a valid (legacy) label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
