//! Function calls: dispatch to the range functions, plus the instant-vector
//! functions (math, labels, `absent`, `timestamp`, sorting, …).

use std::cmp::Ordering;

use promql_parser::parser::{Call, Expr};

use super::QueryError;
use super::aggregate::warn_quantile;
use super::date_fns;
use super::eval::{CURSOR_WINDOW_END, CURSOR_WINDOW_START, Evaluator};
use super::histogram::histogram_quantile;
use super::label_fns::{absent_labels, label_join, label_replace};
use super::range_fns::{self, Window};
use super::selector;
use super::value::{METRIC_NAME, Sample, Value, empty_labels, label_value};
use crate::storage::index::Labels;

/// Evaluates `call` at `t`.
pub fn eval(ev: &Evaluator<'_>, call: &Call, t: i64) -> Result<Value, QueryError> {
    let name = call.func.name;
    let args: Vec<&Expr> = call.args.args.iter().map(|a| a.as_ref()).collect();
    if range_fns::is_range_function(name) {
        return range_function(ev, name, &args, t);
    }
    let vector = |i: usize| ev.eval_vector(args[i], t);
    let scalar = |i: usize| ev.eval_scalar(args[i], t);
    let string = |i: usize| match ev.eval(args[i], t)? {
        Value::String(s) => Ok(s),
        other => Err(QueryError::bad_data(format!(
            "expected string, got {}",
            other.type_name()
        ))),
    };
    let out = match name {
        "time" => return Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => vec![Sample {
            labels: empty_labels(),
            value: scalar(0)?,
        }],
        "scalar" => {
            let v = vector(0)?;
            return Ok(Value::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }));
        }
        "absent" => {
            if vector(0)?.is_empty() {
                vec![Sample {
                    labels: absent_labels(args[0]),
                    value: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        "absent_over_time" => {
            if ev.eval_matrix(args[0], t)?.is_empty() {
                vec![Sample {
                    labels: absent_labels(args[0]),
                    value: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        "timestamp" => timestamp(ev, args[0], t)?,
        "round" => {
            let to_nearest = if args.len() > 1 { scalar(1)? } else { 1.0 };
            let inverse = 1.0 / to_nearest;
            map_values(ev, vector(0)?, |v| (v * inverse + 0.5).floor() / inverse)
        }
        "clamp" => {
            let (min, max) = (scalar(1)?, scalar(2)?);
            if max < min {
                Vec::new()
            } else {
                map_values(ev, vector(0)?, |v| go_max(min, go_min(max, v)))
            }
        }
        "clamp_min" => {
            let min = scalar(1)?;
            map_values(ev, vector(0)?, |v| go_max(min, v))
        }
        "clamp_max" => {
            let max = scalar(1)?;
            map_values(ev, vector(0)?, |v| go_min(max, v))
        }
        "label_replace" => label_replace(
            vector(0)?,
            &string(1)?,
            &string(2)?,
            &string(3)?,
            &string(4)?,
        )?,
        "label_join" => {
            let mut sources = Vec::new();
            for i in 3..args.len() {
                sources.push(string(i)?);
            }
            label_join(vector(0)?, &string(1)?, &string(2)?, &sources)?
        }
        "sort" | "sort_desc" => {
            if ev.query.is_range {
                ev.warn(
                    "sort is ineffective for range queries since results are always ordered by labels",
                    &Expr::Call(call.clone()),
                );
            }
            sort_by_value(vector(0)?, name == "sort_desc")
        }
        "histogram_quantile" => {
            let phi = scalar(0)?;
            warn_quantile(ev, phi, args[0]);
            let result = histogram_quantile(phi, vector(1)?);
            for (metric, le) in &result.malformed {
                ev.warn(
                    &format!(
                        "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {metric:?}"
                    ),
                    args[1],
                );
            }
            for metric in &result.forced_monotonic {
                ev.info(
                    &format!(
                        "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {metric:?}"
                    ),
                    args[1],
                );
            }
            result.samples
        }
        _ if date_fns::is_date_function(name) => {
            let input = if args.is_empty() {
                vec![Sample {
                    labels: empty_labels(),
                    value: t as f64 / 1000.0,
                }]
            } else {
                vector(0)?
            };
            // NaN and infinities have no date: Prometheus drops them.
            input
                .into_iter()
                .filter(|s| s.value.is_finite())
                .filter_map(|s| {
                    date_fns::field(name, s.value.trunc() as i64).map(|value| Sample {
                        labels: ev.drop_name(&s.labels),
                        value,
                    })
                })
                .collect()
        }
        _ => match math_function(name) {
            Some(f) => map_values(ev, vector(0)?, f),
            None => return Err(QueryError::unsupported(format!("function {name}()"))),
        },
    };
    Ok(Value::Vector(out))
}

fn range_function(
    ev: &Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    t: i64,
) -> Result<Value, QueryError> {
    let (matrix_arg, param) = match name {
        "quantile_over_time" => {
            let phi = ev.eval_scalar(args[0], t)?;
            warn_quantile(ev, phi, args[0]);
            (args[1], phi)
        }
        "predict_linear" => (args[0], ev.eval_scalar(args[1], t)?),
        _ => (args[0], 0.0),
    };
    let (start_ms, end_ms) = ev
        .window_of(matrix_arg, t)
        .ok_or_else(|| QueryError::bad_data(format!("{name}() needs a range vector")))?;
    let keep_name = range_fns::keeps_name(name);
    let mut non_counters = NonCounters::new(matches!(name, "rate" | "increase"));
    let labels_of = |labels: &Labels| {
        if keep_name {
            labels.clone()
        } else {
            ev.drop_name(labels)
        }
    };
    if let Expr::MatrixSelector(ms) = unwrap_parens(matrix_arg) {
        // Straight from the fetched samples: no copy of the window unless
        // it holds a stale marker to skip.
        let data = ev.selector_data(&ms.vs)?;
        let mut out = Vec::new();
        let mut starts = ev.with_cursors(&ms.vs, CURSOR_WINDOW_START, data.len(), |c| c.to_vec());
        let mut ends = ev.with_cursors(&ms.vs, CURSOR_WINDOW_END, data.len(), |c| c.to_vec());
        for ((s, from), to) in data.iter().zip(&mut starts).zip(&mut ends) {
            let window =
                selector::window_slice_from(&s.samples, end_ms, end_ms - start_ms, (from, to));
            let filtered;
            let points = if window.iter().any(|(_, v)| selector::is_stale(*v)) {
                filtered = selector::window(&s.samples, end_ms, end_ms - start_ms);
                &filtered[..]
            } else {
                window
            };
            if points.is_empty() {
                continue;
            }
            let w = Window {
                points,
                start_ms,
                end_ms,
            };
            if let Some(value) = range_fns::apply(name, w, param, t) {
                non_counters.note(&s.labels);
                out.push(Sample {
                    labels: labels_of(&s.labels),
                    value,
                });
            }
        }
        ev.with_cursors(&ms.vs, CURSOR_WINDOW_START, data.len(), |c| {
            c.copy_from_slice(&starts)
        });
        ev.with_cursors(&ms.vs, CURSOR_WINDOW_END, data.len(), |c| {
            c.copy_from_slice(&ends)
        });
        non_counters.report(ev, matrix_arg);
        return Ok(Value::Vector(out));
    }
    let out = ev
        .eval_matrix(matrix_arg, t)?
        .into_iter()
        .filter_map(|s| {
            let window = Window {
                points: &s.points,
                start_ms,
                end_ms,
            };
            let value = range_fns::apply(name, window, param, t)?;
            non_counters.note(&s.labels);
            Some(Sample {
                labels: labels_of(&s.labels),
                value,
            })
        })
        .collect();
    non_counters.report(ev, matrix_arg);
    Ok(Value::Vector(out))
}

/// Metric names `rate`/`increase` were applied to that do not look like
/// counters, for Prometheus's "might not be a counter" info.
pub struct NonCounters {
    enabled: bool,
    names: Vec<String>,
}

impl NonCounters {
    /// Notes names only when `enabled` (the function is `rate` or `increase`).
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            names: Vec::new(),
        }
    }

    /// Notes the name of a series the function gave a value for.
    pub fn note(&mut self, labels: &[(String, String)]) {
        if !self.enabled {
            return;
        }
        let Some(name) = label_value(labels, METRIC_NAME) else {
            return;
        };
        let counter_like = ["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|suffix| name.ends_with(suffix));
        if !counter_like && !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_owned());
        }
    }

    fn report(&self, ev: &Evaluator<'_>, arg: &Expr) {
        for message in self.messages() {
            ev.info(&message, arg);
        }
    }

    /// The infos to give, one per name noted.
    pub fn messages(&self) -> impl Iterator<Item = String> + '_ {
        self.names.iter().map(|name| {
            format!(
                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
            )
        })
    }
}

/// Go's math.Max: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's math.Min: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn math_function(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => f64::to_degrees,
        "rad" => f64::to_radians,
        _ => return None,
    })
}

/// Applies `f` to every value, dropping the metric name.
fn map_values(ev: &Evaluator<'_>, samples: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    samples
        .into_iter()
        .map(|s| Sample {
            labels: ev.drop_name(&s.labels),
            value: f(s.value),
        })
        .collect()
}

fn unwrap_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// `timestamp()`: of a plain selector, the timestamp of each sample found
/// (Prometheus 3); of anything else, the evaluation time.
fn timestamp(ev: &Evaluator<'_>, arg: &Expr, t: i64) -> Result<Vec<Sample>, QueryError> {
    if let Expr::VectorSelector(vs) = unwrap_parens(arg) {
        let at = vs
            .at
            .as_ref()
            .map_or(t, |at| ev.query.at_ms(at))
            .saturating_sub(super::plan::offset_ms(&vs.offset));
        let data = ev.selector_data(vs)?;
        return Ok(data
            .iter()
            .filter_map(|s| {
                selector::latest(&s.samples, at, ev.query.lookback_ms).map(|(ts, _)| Sample {
                    labels: ev.drop_name(&s.labels),
                    value: ts as f64 / 1000.0,
                })
            })
            .collect());
    }
    Ok(map_values(ev, ev.eval_vector(arg, t)?, |_| {
        t as f64 / 1000.0
    }))
}

/// `sort`/`sort_desc`: by value, NaN last.
fn sort_by_value(mut samples: Vec<Sample>, descending: bool) -> Vec<Sample> {
    samples.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if descending => b.value.partial_cmp(&a.value).unwrap_or(Ordering::Equal),
        _ => a.value.partial_cmp(&b.value).unwrap_or(Ordering::Equal),
    });
    samples
}
