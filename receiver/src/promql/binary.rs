//! Binary operators: arithmetic, comparison (filtering or `bool`) and set
//! operators, between scalars and vectors, with `on`/`ignoring` and
//! `group_left`/`group_right` vector matching.

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use rustc_hash::{FxHashMap, FxHashSet};

use super::QueryError;
use super::eval::Evaluator;
use super::value::{METRIC_NAME, Sample, Value, label_value, with_label};
use crate::storage::index::Labels;

/// Evaluates `b` at `t`.
pub fn eval(ev: &Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Value, QueryError> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (value, keep) = apply(op, l, r)?;
            Ok(Value::Scalar(if is_comparison(op) {
                f64::from(u8::from(keep))
            } else {
                value
            }))
        }
        (Value::Vector(l), Value::Scalar(r)) => vector_scalar(ev, op, l, r, false, return_bool),
        (Value::Scalar(l), Value::Vector(r)) => vector_scalar(ev, op, r, l, true, return_bool),
        (Value::Vector(l), Value::Vector(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
            let card = b
                .modifier
                .as_ref()
                .map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
            match op {
                T_LAND | T_LOR | T_LUNLESS => Ok(Value::Vector(set_op(op, l, r, matching))),
                _ => vector_vector(op, l, r, matching, &card, return_bool).map(Value::Vector),
            }
        }
        (l, r) => Err(QueryError::bad_data(format!(
            "binary operator not defined between {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic drops the metric name; comparisons (filtering) keep it.
fn drops_name(op: TokenId, return_bool: bool) -> bool {
    return_bool || !is_comparison(op)
}

/// `(value, keep)`: arithmetic yields its result; a comparison yields the
/// left value and whether the comparison holds.
fn apply(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        other => {
            return Err(QueryError::unsupported(format!(
                "binary operator {}",
                promql_parser::parser::token::TokenType::new(other)
            )));
        }
    })
}

fn vector_scalar(
    ev: &Evaluator<'_>,
    op: TokenId,
    vector: Vec<Sample>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
) -> Result<Value, QueryError> {
    let drop_name = drops_name(op, return_bool);
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if scalar_on_left {
            (scalar, s.value)
        } else {
            (s.value, scalar)
        };
        let (mut value, mut keep) = apply(op, l, r)?;
        if is_comparison(op) {
            // The vector's own value is what a filter passes through.
            value = s.value;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            out.push(Sample {
                labels: if drop_name {
                    ev.drop_name(&s.labels)
                } else {
                    s.labels
                },
                value,
            });
        }
    }
    Ok(Value::Vector(out))
}

/// The key a sample matches on: its labels restricted per `on`/`ignoring`
/// (without either: all but the metric name).
fn signature(labels: &[(String, String)], matching: Option<&LabelModifier>) -> String {
    let include = |name: &str| match matching {
        Some(LabelModifier::Include(on)) => on.labels.iter().any(|l| l == name),
        Some(LabelModifier::Exclude(ignoring)) => {
            name != METRIC_NAME && !ignoring.labels.iter().any(|l| l == name)
        }
        None => name != METRIC_NAME,
    };
    let mut key = String::new();
    for (name, value) in labels.iter().filter(|(n, _)| include(n)) {
        key.push_str(name);
        key.push('\u{0}');
        key.push_str(value);
        key.push('\u{0}');
    }
    key
}

fn set_op(
    op: TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    matching: Option<&LabelModifier>,
) -> Vec<Sample> {
    match op {
        T_LAND => {
            let right: FxHashSet<String> =
                rhs.iter().map(|s| signature(&s.labels, matching)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&signature(&s.labels, matching)))
                .collect()
        }
        T_LUNLESS => {
            let right: FxHashSet<String> =
                rhs.iter().map(|s| signature(&s.labels, matching)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&signature(&s.labels, matching)))
                .collect()
        }
        _ => {
            let left: FxHashSet<String> =
                lhs.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

fn labels_text(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn vector_vector(
    op: TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    matching: Option<&LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<Sample>, QueryError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    // group_right is group_left with the sides swapped; values keep their
    // original order when the operator is applied.
    let (swapped, include) = match card {
        VectorMatchCardinality::OneToMany(include) => (true, Some(include)),
        VectorMatchCardinality::ManyToOne(include) => (false, Some(include)),
        _ => (false, None),
    };
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_side: FxHashMap<String, &Sample> =
        FxHashMap::with_capacity_and_hasher(one.len(), Default::default());
    for s in &one {
        let sig = signature(&s.labels, matching);
        if let Some(previous) = one_side.insert(sig, s) {
            return Err(QueryError::execution(format!(
                "found duplicate series for the match group on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                if swapped { "left" } else { "right" },
                labels_text(&s.labels),
                labels_text(&previous.labels),
            )));
        }
    }
    let drop_name = drops_name(op, return_bool);
    let mut matched: FxHashSet<String> = FxHashSet::default();
    let mut produced: FxHashSet<Labels> = FxHashSet::default();
    let mut out = Vec::new();
    for s in &many {
        let sig = signature(&s.labels, matching);
        let Some(other) = one_side.get(&sig) else {
            continue;
        };
        if include.is_none() && !matched.insert(sig) {
            return Err(QueryError::execution(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            ));
        }
        let (l, r) = if swapped {
            (other.value, s.value)
        } else {
            (s.value, other.value)
        };
        let (mut value, mut keep) = apply(op, l, r)?;
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if !keep {
            continue;
        }
        let labels = result_labels(&s.labels, &other.labels, drop_name, matching, include);
        if include.is_some() && !produced.insert(labels.clone()) {
            return Err(QueryError::execution(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// The labels of a result element, built from the "many" side's labels.
fn result_labels(
    many: &Labels,
    one: &[(String, String)],
    drop_name: bool,
    matching: Option<&LabelModifier>,
    include: Option<&promql_parser::label::Labels>,
) -> Labels {
    let mut labels: Vec<(String, String)> = many
        .iter()
        .filter(|(n, _)| !(drop_name && n == METRIC_NAME))
        .cloned()
        .collect();
    if include.is_none() {
        match matching {
            Some(LabelModifier::Include(on)) => {
                labels.retain(|(n, _)| on.labels.iter().any(|l| l == n));
            }
            Some(LabelModifier::Exclude(ignoring)) => {
                labels.retain(|(n, _)| !ignoring.labels.iter().any(|l| l == n));
            }
            None => {}
        }
    }
    let mut labels: Labels = labels.into();
    if let Some(include) = include {
        for name in &include.labels {
            labels = with_label(&labels, name, label_value(one, name).unwrap_or(""));
        }
    }
    labels
}
