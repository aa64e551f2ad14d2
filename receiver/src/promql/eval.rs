//! The evaluator: computes an expression's value at one time from the data
//! [`super::plan`] fetched; a range query repeats that at every step and
//! gathers the points into series.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use promql_parser::parser::{Expr, SubqueryExpr};
use rustc_hash::{FxHashMap, FxHashSet};

use super::duration_ms;
use super::plan::{Query, SelectorData, offset_ms};
use super::value::{self, Sample, Series, Value, drop_metric_name, empty_labels};
use super::{QueryError, aggregate, binary, columns, functions, selector};
use crate::storage::index::Labels;

/// Warnings and infos collected while evaluating, deduplicated.
#[derive(Debug, Default, Clone)]
pub struct Annotations {
    /// `PromQL warning: …`
    pub warnings: BTreeSet<String>,
    /// `PromQL info: …`
    pub infos: BTreeSet<String>,
}

impl Annotations {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }

    /// Adds `more`'s (each text once).
    pub fn extend(&mut self, more: Annotations) {
        self.warnings.extend(more.warnings);
        self.infos.extend(more.infos);
    }
}

/// What stops a query early.
#[derive(Debug, Clone)]
pub struct Limits {
    /// When the query times out.
    pub deadline: Instant,
    /// Most samples the result may hold.
    pub max_samples: usize,
    /// Any of them set cancels the query.
    pub cancel: Vec<Arc<AtomicBool>>,
}

impl Limits {
    /// Fails once the deadline has passed or the query was cancelled.
    pub fn check(&self) -> Result<(), QueryError> {
        if self.cancel.iter().any(|c| c.load(Ordering::Relaxed)) {
            Err(QueryError::canceled())
        } else if Instant::now() > self.deadline {
            Err(QueryError::timeout())
        } else {
            Ok(())
        }
    }
}

/// Evaluates one query over the data its selectors read.
#[derive(Debug)]
pub struct Evaluator<'q> {
    /// The query's time span and settings.
    pub query: &'q Query,
    data: &'q SelectorData,
    limits: Limits,
    annotations: RefCell<Annotations>,
    label_cache: RefCell<LabelCache>,
    subquery_steps: RefCell<SubqueryCache>,
    interned: RefCell<FxHashSet<Labels>>,
    cursors: RefCell<Cursors>,
    /// Samples subqueries hold: their cached inner results and the points
    /// of the ranges being built. Counted with the fetched samples against
    /// [`Limits::max_samples`].
    subquery_samples: Cell<usize>,
    /// Values of sub-expressions computed by series for every step of a
    /// range query ([`columns`]), by node address.
    precomputed: RefCell<FxHashMap<usize, columns::Precomputed>>,
}

/// Per selector node and purpose, each series' sample index found at the
/// previous evaluation: where the next step's search starts
/// ([`selector::position_after`]).
type Cursors = FxHashMap<(usize, u8), Vec<usize>>;

/// Cursor purposes.
pub const CURSOR_INSTANT: u8 = 0;
/// Start of a range window.
pub const CURSOR_WINDOW_START: u8 = 1;
/// End of a range window.
pub const CURSOR_WINDOW_END: u8 = 2;

/// Inner results of subqueries by (subquery node, inner step time).
type SubqueryCache = FxHashMap<(usize, i64), Rc<Vec<Sample>>>;

/// Derived label sets (name dropped, aggregation group, …) by transform
/// and input. Series keep the same `Arc` from step to step, so a range
/// query derives each label set once instead of once per step. The input
/// `Arc` is held as part of the entry, so its address cannot be reused by
/// another label set while the entry exists.
type LabelCache = FxHashMap<(usize, usize), (Labels, Labels)>;

/// Transform key of [`Evaluator::drop_name`] (never a node address).
const DROP_NAME: usize = 0;

impl<'q> Evaluator<'q> {
    /// An evaluator over `data`.
    pub fn new(query: &'q Query, data: &'q SelectorData, limits: Limits) -> Self {
        Self {
            query,
            data,
            limits,
            annotations: RefCell::default(),
            label_cache: RefCell::default(),
            subquery_steps: RefCell::default(),
            interned: RefCell::default(),
            cursors: RefCell::default(),
            subquery_samples: Cell::new(0),
            precomputed: RefCell::default(),
        }
    }

    /// `transform(input)`, computed once per distinct input `Arc` and
    /// `transform_key` (use the address of the syntax node doing it).
    pub fn derived_labels(
        &self,
        transform_key: usize,
        input: &Labels,
        transform: impl FnOnce(&Labels) -> Labels,
    ) -> Labels {
        let key = (transform_key, Arc::as_ptr(input) as *const u8 as usize);
        if let Some((_, derived)) = self.label_cache.borrow().get(&key) {
            return Arc::clone(derived);
        }
        let derived = transform(input);
        self.label_cache
            .borrow_mut()
            .insert(key, (Arc::clone(input), Arc::clone(&derived)));
        derived
    }

    /// The one shared `Arc` holding these labels in this query: equal label
    /// sets interned here are pointer-equal.
    pub fn intern(&self, labels: Labels) -> Labels {
        if let Some(existing) = self.interned.borrow().get(&labels) {
            return Arc::clone(existing);
        }
        self.interned.borrow_mut().insert(Arc::clone(&labels));
        labels
    }

    /// `labels` without the metric name, shared across steps.
    pub fn drop_name(&self, labels: &Labels) -> Labels {
        if !labels.iter().any(|(n, _)| n == super::value::METRIC_NAME) {
            return Arc::clone(labels);
        }
        self.derived_labels(DROP_NAME, labels, drop_metric_name)
    }

    /// Runs `f` with the search cursors of `selector` for `purpose` (one
    /// per series, `series` of them). `f` must not evaluate expressions.
    pub fn with_cursors<T>(
        &self,
        selector: &promql_parser::parser::VectorSelector,
        purpose: u8,
        series: usize,
        f: impl FnOnce(&mut [usize]) -> T,
    ) -> T {
        let key = (selector as *const _ as usize, purpose);
        let mut cursors = self.cursors.borrow_mut();
        let cursors = cursors.entry(key).or_default();
        cursors.resize(series, 0);
        f(cursors)
    }

    /// The annotations collected so far.
    pub fn into_annotations(self) -> Annotations {
        self.annotations.into_inner()
    }

    /// Records a warning about `expr` (its position is appended).
    pub fn warn(&self, message: &str, expr: &Expr) {
        let text = self.warning_text(message, expr);
        self.annotations.borrow_mut().warnings.insert(text);
    }

    /// Records an info note about `expr`.
    pub fn info(&self, message: &str, expr: &Expr) {
        let text = self.info_text(message, expr);
        self.annotations.borrow_mut().infos.insert(text);
    }

    /// The text [`Evaluator::warn`] records.
    pub fn warning_text(&self, message: &str, expr: &Expr) -> String {
        format!("PromQL warning: {message} ({})", self.position(expr))
    }

    /// The text [`Evaluator::info`] records.
    pub fn info_text(&self, message: &str, expr: &Expr) -> String {
        format!("PromQL info: {message} ({})", self.position(expr))
    }

    /// Records annotations gathered aside.
    pub fn add_annotations(&self, more: Annotations) {
        self.annotations.borrow_mut().extend(more);
    }

    /// Most samples the query may hold ([`Limits::max_samples`]).
    pub fn max_samples(&self) -> usize {
        self.limits.max_samples
    }

    /// Makes the step evaluator read `node`'s value from `value` at the
    /// query's steps.
    pub fn set_precomputed(&self, node: &Expr, value: columns::Precomputed) {
        self.precomputed
            .borrow_mut()
            .insert(node as *const Expr as usize, value);
    }

    /// How many sub-expressions were computed by series.
    #[cfg(test)]
    pub fn precomputed_count(&self) -> usize {
        self.precomputed.borrow().len()
    }

    /// `line:column` of `expr` in the query text. The parser keeps no
    /// positions, so this finds the expression's printed form in the text
    /// (its first occurrence), falling back to the start.
    fn position(&self, expr: &Expr) -> String {
        let printed = expr.to_string();
        let offset = self.query.source.find(&printed).unwrap_or(0);
        let before = &self.query.source[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{line}:{column}")
    }

    /// An instant query's value.
    pub fn instant(&self, expr: &Expr, t: i64) -> Result<Value, QueryError> {
        let value = self.eval(expr, t)?;
        if let Value::Vector(samples) = &value {
            check_unique(samples)?;
        }
        Ok(value)
    }

    /// A range query's value: a matrix sorted by labels. Computed by
    /// series where the expression allows ([`columns`]), else step by step
    /// with whatever sub-expressions could be computed by series.
    pub fn range(&self, expr: &Expr) -> Result<Value, QueryError> {
        match columns::range(self, expr) {
            Some(value) => value,
            None => self.range_by_step(expr),
        }
    }

    /// A range query's value computed step by step: [`Evaluator::range`]'s
    /// reference.
    pub fn range_by_step(&self, expr: &Expr) -> Result<Value, QueryError> {
        let mut by_labels: FxHashMap<Labels, Vec<(i64, f64)>> = FxHashMap::default();
        let mut total = 0usize;
        let mut t = self.query.start_ms;
        while t <= self.query.end_ms {
            self.check_deadline()?;
            match self.eval(expr, t)? {
                Value::Scalar(v) => {
                    by_labels.entry(empty_labels()).or_default().push((t, v));
                    total += 1;
                }
                Value::Vector(samples) => {
                    check_unique(&samples)?;
                    total += samples.len();
                    for s in samples {
                        by_labels.entry(s.labels).or_default().push((t, s.value));
                    }
                }
                other => {
                    return Err(QueryError::bad_data(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        other.type_name()
                    )));
                }
            }
            if total > self.limits.max_samples {
                return Err(QueryError::too_many_samples());
            }
            match t.checked_add(self.query.step_ms) {
                Some(next) => t = next,
                None => break,
            }
        }
        Ok(value::matrix(by_labels))
    }

    /// Fails once the query's deadline has passed or it was cancelled.
    pub fn check_deadline(&self) -> Result<(), QueryError> {
        self.limits.check()
    }

    /// The value of `expr` at time `t` (ms).
    pub fn eval(&self, expr: &Expr, t: i64) -> Result<Value, QueryError> {
        if let Some(value) = self.precomputed_at(expr, t) {
            return value;
        }
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(samples) => {
                    let negated: Vec<Sample> = samples
                        .into_iter()
                        .map(|s| Sample {
                            labels: self.drop_name(&s.labels),
                            value: -s.value,
                        })
                        .collect();
                    check_unique(&negated)?;
                    Ok(Value::Vector(negated))
                }
                other => Err(QueryError::bad_data(format!(
                    "unary minus is not defined on {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => {
                let at = vs.at.as_ref().map_or(t, |at| self.query.at_ms(at));
                let series = self.data.get(vs)?;
                let samples = self.with_cursors(vs, CURSOR_INSTANT, series.len(), |cursors| {
                    selector::instant_from(
                        &series,
                        at.saturating_sub(offset_ms(&vs.offset)),
                        self.query.lookback_ms,
                        cursors,
                    )
                });
                Ok(Value::Vector(samples))
            }
            Expr::MatrixSelector(ms) => {
                let at = ms.vs.at.as_ref().map_or(t, |at| self.query.at_ms(at));
                let series = self.data.get(&ms.vs)?;
                Ok(Value::Matrix(selector::range(
                    &series,
                    at.saturating_sub(offset_ms(&ms.vs.offset)),
                    duration_ms(ms.range),
                )))
            }
            Expr::Subquery(sq) => self.subquery(sq, t),
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Call(call) => {
                let value = functions::eval(self, call, t)?;
                if let Value::Vector(samples) = &value
                    && !distinct_by_construction(call)
                {
                    check_unique(samples)?;
                }
                Ok(value)
            }
            Expr::Extension(_) => Err(QueryError::unsupported("extension expressions")),
        }
    }

    /// `expr`'s value at `t` if it was computed by series for the query's
    /// steps and `t` is one of them.
    fn precomputed_at(&self, expr: &Expr, t: i64) -> Option<Result<Value, QueryError>> {
        let precomputed = self.precomputed.borrow();
        if precomputed.is_empty() {
            return None;
        }
        let node = precomputed.get(&(expr as *const Expr as usize))?;
        let step = columns::step_index(self.query, t)?;
        if let Some(notes) = node.take_annotations() {
            self.add_annotations(notes);
        }
        Some(node.at(step).map(Value::Vector))
    }

    /// A subquery: the inner expression at every multiple of its step in
    /// the left-open window `(t - range, t]`.
    fn subquery(&self, sq: &SubqueryExpr, t: i64) -> Result<Value, QueryError> {
        let base = sq.at.as_ref().map_or(t, |at| self.query.at_ms(at));
        // Times and durations come from the query: saturate, never wrap.
        let end = base.saturating_sub(offset_ms(&sq.offset));
        let start = end.saturating_sub(duration_ms(sq.range));
        let step = sq
            .step
            .map_or(self.query.default_subquery_step_ms, duration_ms)
            .max(1);
        let mut ts = start.div_euclid(step).saturating_mul(step);
        if ts <= start {
            ts = ts.saturating_add(step);
        }
        let mut by_labels: FxHashMap<Labels, Vec<(i64, f64)>> = FxHashMap::default();
        let mut order: Vec<Labels> = Vec::new();
        let mut points = 0usize;
        while ts <= end {
            self.check_deadline()?;
            let samples = self.subquery_step(sq, ts)?;
            self.hold_subquery_samples(samples.len())?;
            points += samples.len();
            for s in samples.iter() {
                by_labels
                    .entry(s.labels.clone())
                    .or_insert_with(|| {
                        order.push(s.labels.clone());
                        Vec::new()
                    })
                    .push((ts, s.value));
            }
            match ts.checked_add(step) {
                Some(next) => ts = next,
                None => break,
            }
        }
        // Handed to the caller, which reduces it to one value per series.
        self.subquery_samples
            .set(self.subquery_samples.get().saturating_sub(points));
        let mut series: Vec<Series> = order
            .into_iter()
            .map(|labels| {
                let points = by_labels.remove(&labels).unwrap_or_default();
                Series { labels, points }
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(series))
    }

    /// Counts `count` more samples held by subqueries; fails once they and
    /// the fetched samples pass the query's sample limit.
    fn hold_subquery_samples(&self, count: usize) -> Result<(), QueryError> {
        let held = self.subquery_samples.get().saturating_add(count);
        self.subquery_samples.set(held);
        if held.saturating_add(self.data.samples()) > self.limits.max_samples {
            return Err(QueryError::too_many_samples());
        }
        Ok(())
    }

    /// The inner expression of `sq` at `ts`. Inner steps sit on multiples
    /// of the subquery's step whatever the outer time, so in a range query
    /// consecutive outer steps share most of them: each is evaluated once.
    fn subquery_step(&self, sq: &SubqueryExpr, ts: i64) -> Result<Rc<Vec<Sample>>, QueryError> {
        let key = (sq as *const SubqueryExpr as usize, ts);
        if let Some(cached) = self.subquery_steps.borrow().get(&key) {
            return Ok(Rc::clone(cached));
        }
        let samples = Rc::new(match self.eval(&sq.expr, ts)? {
            Value::Scalar(v) => vec![Sample {
                labels: empty_labels(),
                value: v,
            }],
            Value::Vector(samples) => samples,
            other => {
                return Err(QueryError::bad_data(format!(
                    "subquery is only allowed on instant vector or scalar, got {}",
                    other.type_name()
                )));
            }
        });
        if self.query.is_range {
            // Kept for the whole query.
            self.hold_subquery_samples(samples.len())?;
            self.subquery_steps
                .borrow_mut()
                .insert(key, Rc::clone(&samples));
        }
        Ok(samples)
    }

    /// The window `(start, end]` a range-vector argument covers at `t`, in
    /// ms, looking through parentheses.
    pub fn window_of(&self, expr: &Expr, t: i64) -> Option<(i64, i64)> {
        match expr {
            Expr::Paren(p) => self.window_of(&p.expr, t),
            Expr::MatrixSelector(ms) => {
                let end = ms
                    .vs
                    .at
                    .as_ref()
                    .map_or(t, |at| self.query.at_ms(at))
                    .saturating_sub(offset_ms(&ms.vs.offset));
                Some((end.saturating_sub(duration_ms(ms.range)), end))
            }
            Expr::Subquery(sq) => {
                let end = sq
                    .at
                    .as_ref()
                    .map_or(t, |at| self.query.at_ms(at))
                    .saturating_sub(offset_ms(&sq.offset));
                Some((end.saturating_sub(duration_ms(sq.range)), end))
            }
            _ => None,
        }
    }

    /// Evaluates `expr` expecting a scalar.
    pub fn eval_scalar(&self, expr: &Expr, t: i64) -> Result<f64, QueryError> {
        match self.eval(expr, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(QueryError::bad_data(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates `expr` expecting an instant vector.
    pub fn eval_vector(&self, expr: &Expr, t: i64) -> Result<Vec<Sample>, QueryError> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(QueryError::bad_data(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates `expr` expecting a range vector.
    pub fn eval_matrix(&self, expr: &Expr, t: i64) -> Result<Vec<Series>, QueryError> {
        match self.eval(expr, t)? {
            Value::Matrix(m) => Ok(m),
            other => Err(QueryError::bad_data(format!(
                "expected range vector, got {}",
                other.type_name()
            ))),
        }
    }
}

/// Prometheus refuses a vector holding one label set twice (typically after
/// a function dropped the metric name of two series).
pub fn check_unique(samples: &[Sample]) -> Result<(), QueryError> {
    if samples.len() < 2 {
        return Ok(());
    }
    let mut seen = FxHashSet::default();
    for s in samples {
        if !seen.insert(&s.labels) {
            return Err(duplicate_labelset());
        }
    }
    Ok(())
}

/// The error of a vector holding one label set twice.
pub fn duplicate_labelset() -> QueryError {
    QueryError::execution("vector cannot contain metrics with the same labelset")
}

/// Whether `call` is a range function straight over a selector of one
/// metric name: its output series are the selected series (distinct label
/// sets), at most without their shared name, so they cannot collide and
/// the per-step [`check_unique`] (a hash of every label set) can be skipped.
pub fn distinct_by_construction(call: &promql_parser::parser::Call) -> bool {
    if !super::range_fns::is_range_function(call.func.name) {
        return false;
    }
    call.args.args.iter().any(|arg| {
        let mut arg: &Expr = arg;
        while let Expr::Paren(p) = arg {
            arg = &p.expr;
        }
        matches!(arg, Expr::MatrixSelector(ms) if ms.vs.name.is_some())
    })
}

impl<'q> Evaluator<'q> {
    /// The series of every selector of the query.
    pub fn selectors(&self) -> &'q SelectorData {
        self.data
    }

    /// The series of `selector`, read whole.
    pub fn selector_data(
        &self,
        selector: &promql_parser::parser::VectorSelector,
    ) -> Result<Arc<Vec<crate::storage::read::SeriesData>>, QueryError> {
        self.data.get(selector)
    }
}
