//! Range queries evaluated by series instead of by step.
//!
//! The step evaluator ([`Evaluator::eval`]) computes every node again at
//! every step: each series' window is searched again, every aggregation
//! group rebuilt, every sample's labels cloned. For the shapes fleet panels
//! are made of (instant selectors, range functions over a matrix selector,
//! and `sum`/`avg`/`min`/`max`/`count`/`group`/`stddev`/`stdvar` over
//! those) this module computes one series over all steps in one pass,
//! with window edges that only move forward, and adds whole columns into
//! aggregation groups found once per series.
//!
//! The answers are the step evaluator's, bit for bit: the same windows and
//! functions ([`range_fns::apply`], [`aggregate::plain_reducer`]), values
//! combined in the order the step evaluator meets them (an aggregation's
//! output order at each step is kept as a rank, for an aggregation over
//! it), the same errors at the same step (a label set twice in one vector)
//! and the same annotations. A query holding anything else is evaluated
//! step by step, reading its supported sub-expressions' values from here.
//! Whatever would make this path hold more than `--query.max-samples`
//! values is left to the step evaluator, which then fails or answers as it
//! always did.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;

use promql_parser::parser::token::{
    T_BOTTOMK, T_COUNT, T_GROUP, T_MAX, T_MIN, T_SUM, T_TOPK, TokenId,
};
use promql_parser::parser::{AggregateExpr, Call, Expr, MatrixSelector, VectorSelector};
use rustc_hash::FxHashMap;

use super::eval::{Annotations, Evaluator, distinct_by_construction, duplicate_labelset};
use super::functions::NonCounters;
use super::plan::{Query, offset_ms};
use super::range_fns::{self, Window};
use super::value::{self, KahanSum, Sample, Value};
use super::{QueryError, aggregate, duration_ms, selector};
use crate::storage::index::Labels;
use crate::storage::read::SeriesData;

/// One series' values over the query's steps.
struct Column {
    labels: Labels,
    /// `(step index, value)` at the steps where the series has a value.
    points: Vec<(usize, f64)>,
    /// Per point, the series' place in the step evaluator's vector at that
    /// step (any numbers ordered alike). Empty when that place is the
    /// order in which columns are produced, at every step.
    ranks: Vec<usize>,
}

/// Why evaluation by series stopped.
enum Stop {
    /// The query fails, as it would step by step.
    Error(QueryError),
    /// The step evaluator must do it (it would hold too much here).
    Fallback,
}

impl From<QueryError> for Stop {
    fn from(err: QueryError) -> Self {
        Stop::Error(err)
    }
}

/// Where a node's columns go, in the step evaluator's order.
type Sink<'s> = dyn FnMut(Column) -> Result<(), Stop> + 's;

/// A sub-expression's value at every step of the range query, for the
/// step evaluator to read.
#[derive(Debug)]
pub struct Precomputed {
    by_step: Vec<Vec<Sample>>,
    /// Steps at which evaluating the node fails (ascending).
    failing: Vec<usize>,
    /// Annotations evaluating the node gives, handed over when the step
    /// evaluator first reads it.
    annotations: RefCell<Option<Annotations>>,
}

impl Precomputed {
    /// The node's value at step `step`.
    pub fn at(&self, step: usize) -> Result<Vec<Sample>, QueryError> {
        if self.failing.binary_search(&step).is_ok() {
            return Err(duplicate_labelset());
        }
        Ok(self.by_step.get(step).cloned().unwrap_or_default())
    }

    /// The annotations, the first time only.
    pub fn take_annotations(&self) -> Option<Annotations> {
        self.annotations.borrow_mut().take()
    }
}

/// How many steps a range query has (`None` for a span too long to count).
fn step_count(query: &Query) -> Option<usize> {
    let span = query.end_ms.checked_sub(query.start_ms)?;
    if span < 0 || query.step_ms <= 0 {
        return None;
    }
    usize::try_from(span / query.step_ms).ok()?.checked_add(1)
}

/// The index of step time `t` of a range query, if it is one.
pub fn step_index(query: &Query, t: i64) -> Option<usize> {
    let since = t.checked_sub(query.start_ms)?;
    if !query.is_range || query.step_ms <= 0 || since < 0 || t > query.end_ms {
        return None;
    }
    if since % query.step_ms != 0 {
        return None;
    }
    usize::try_from(since / query.step_ms).ok()
}

/// A range query's value computed by series, or `None` when the step
/// evaluator must compute it; in that case the sub-expressions that can be
/// computed by series are, and the step evaluator reads them.
pub fn range(ev: &Evaluator<'_>, expr: &Expr) -> Option<Result<Value, QueryError>> {
    let steps = step_count(ev.query)?;
    let columns = Columns {
        ev,
        steps,
        held: Cell::new(0),
    };
    if supported(expr) {
        match columns.whole(expr) {
            Ok(value) => return Some(Ok(value)),
            Err(Stop::Error(err)) => return Some(Err(err)),
            Err(Stop::Fallback) => return None,
        }
    }
    columns.precompute_parts(expr);
    None
}

/// Whether `expr` is made only of nodes evaluated here.
pub fn supported(expr: &Expr) -> bool {
    match expr {
        Expr::Paren(p) => supported(&p.expr),
        Expr::VectorSelector(_) => true,
        Expr::Call(call) => range_call(call).is_some(),
        Expr::Aggregate(agg) => {
            let plain = agg.param.is_none() && aggregate::plain_reducer(agg.op.id()).is_some();
            (plain || k_literal(agg).is_some()) && supported(&agg.expr)
        }
        _ => false,
    }
}

/// `topk`/`bottomk`'s parameter, where it is a number written in the
/// query (any other is evaluated step by step).
fn k_literal(agg: &AggregateExpr) -> Option<f64> {
    if !matches!(agg.op.id(), T_TOPK | T_BOTTOMK) {
        return None;
    }
    match unwrap_parens(agg.param.as_deref()?) {
        Expr::NumberLiteral(n) if !n.val.is_nan() => Some(n.val),
        _ => None,
    }
}

fn unwrap_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// A range function over a matrix selector, with a literal parameter.
struct RangeCall<'e> {
    /// The range-vector argument as written (annotations point at it).
    arg: &'e Expr,
    selector: &'e MatrixSelector,
    param: Option<&'e Expr>,
}

fn range_call(call: &Call) -> Option<RangeCall<'_>> {
    let name = call.func.name;
    if !range_fns::is_range_function(name) {
        return None;
    }
    let args = &call.args.args;
    let (arg, param) = match name {
        "quantile_over_time" => (args.get(1)?, Some(args.first()?)),
        "predict_linear" => (args.first()?, Some(args.get(1)?)),
        _ => (args.first()?, None),
    };
    let Expr::MatrixSelector(selector) = unwrap_parens(arg) else {
        return None;
    };
    let param = match param {
        Some(p) if !matches!(unwrap_parens(p), Expr::NumberLiteral(_)) => return None,
        Some(p) => Some(&**p),
        None => None,
    };
    Some(RangeCall {
        arg,
        selector,
        param,
    })
}

/// Whether the order of `expr`'s vector changes from step to step (it is
/// an aggregation's: groups in order of their first member present).
fn ordered_by_step(expr: &Expr) -> bool {
    matches!(unwrap_parens(expr), Expr::Aggregate(_))
}

/// Evaluation by series of one range query.
struct Columns<'e, 'q> {
    ev: &'e Evaluator<'q>,
    steps: usize,
    /// Values held here beyond the one column being passed on: dense
    /// aggregation state, gathered members, results.
    held: Cell<usize>,
}

impl Columns<'_, '_> {
    fn time(&self, step: usize) -> i64 {
        // Below `end_ms` by construction (see `step_count`).
        self.ev.query.step_time(step)
    }

    /// Counts `count` more values held; past the query's sample limit the
    /// step evaluator takes over.
    fn hold(&self, count: usize) -> Result<(), Stop> {
        let held = self.held.get().saturating_add(count);
        self.held.set(held);
        if held > self.ev.max_samples() {
            return Err(Stop::Fallback);
        }
        Ok(())
    }

    fn release(&self, count: usize) {
        self.held.set(self.held.get().saturating_sub(count));
    }

    /// The whole query's value.
    fn whole(&self, expr: &Expr) -> Result<Value, Stop> {
        let mut notes = Annotations::default();
        let mut out: Vec<Column> = Vec::new();
        let mut failing = self.stream(expr, &mut notes, &mut |column| {
            self.hold(column.points.len())?;
            out.push(column);
            Ok(())
        })?;
        // The step evaluator checks each step's vector for a label set
        // held twice. It counts the values of the steps before against the
        // sample limit, but all of them together are within it (see
        // `hold`): a step failing either way is where it fails.
        failing.extend(duplicate_steps(&out, self.steps));
        if !failing.is_empty() {
            return Err(Stop::Error(duplicate_labelset()));
        }
        self.ev.check_deadline()?;
        self.ev.add_annotations(notes);
        let mut by_labels: FxHashMap<Labels, Vec<(i64, f64)>> = FxHashMap::default();
        for column in out {
            let points = by_labels.entry(column.labels).or_default();
            // Series of one label set at different steps make one series.
            let merge = !points.is_empty();
            points.extend(column.points.iter().map(|&(i, v)| (self.time(i), v)));
            if merge {
                points.sort_unstable_by_key(|p| p.0);
            }
        }
        Ok(value::matrix(by_labels))
    }

    /// Computes by series the largest supported sub-expressions of `expr`
    /// outside subqueries (whose inner steps are not the query's), for the
    /// step evaluator. A plain selector is left to it: it reads one as
    /// fast.
    fn precompute_parts(&self, expr: &Expr) {
        if supported(expr) {
            if !matches!(unwrap_parens(expr), Expr::VectorSelector(_)) {
                self.precompute(expr);
            }
            return;
        }
        match expr {
            Expr::Paren(p) => self.precompute_parts(&p.expr),
            Expr::Unary(u) => self.precompute_parts(&u.expr),
            Expr::Binary(b) => {
                self.precompute_parts(&b.lhs);
                self.precompute_parts(&b.rhs);
            }
            Expr::Aggregate(agg) => {
                if let Some(param) = &agg.param {
                    self.precompute_parts(param);
                }
                self.precompute_parts(&agg.expr);
            }
            Expr::Call(call) => {
                for arg in &call.args.args {
                    self.precompute_parts(arg);
                }
            }
            Expr::Subquery(_)
            | Expr::MatrixSelector(_)
            | Expr::VectorSelector(_)
            | Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::Extension(_) => {}
        }
    }

    fn precompute(&self, expr: &Expr) {
        let mut notes = Annotations::default();
        let mut out: Vec<Column> = Vec::new();
        let streamed = self.stream(expr, &mut notes, &mut |column| {
            self.hold(column.points.len())?;
            out.push(column);
            Ok(())
        });
        // Any failure here is met again step by step, at its step.
        let Ok(failing) = streamed else {
            for column in &out {
                self.release(column.points.len());
            }
            return;
        };
        let dynamic = ordered_by_step(expr);
        let mut by_step: Vec<Vec<(usize, Sample)>> = vec![Vec::new(); self.steps];
        for (k, column) in out.into_iter().enumerate() {
            for (j, &(i, value)) in column.points.iter().enumerate() {
                let rank = if dynamic { column.ranks[j] } else { k };
                by_step[i].push((
                    rank,
                    Sample {
                        labels: Arc::clone(&column.labels),
                        value,
                    },
                ));
            }
        }
        let by_step = by_step
            .into_iter()
            .map(|mut samples| {
                if dynamic {
                    samples.sort_unstable_by_key(|s| s.0);
                }
                samples.into_iter().map(|s| s.1).collect()
            })
            .collect();
        let mut failing = failing;
        failing.sort_unstable();
        failing.dedup();
        self.ev.set_precomputed(
            expr,
            Precomputed {
                by_step,
                failing,
                annotations: RefCell::new(Some(notes)),
            },
        );
    }

    /// Produces `expr`'s columns into `sink` in the order of the step
    /// evaluator's vector (or with ranks giving it), and returns the steps
    /// at which the step evaluator fails evaluating `expr`.
    fn stream(
        &self,
        expr: &Expr,
        notes: &mut Annotations,
        sink: &mut Sink<'_>,
    ) -> Result<Vec<usize>, Stop> {
        match expr {
            Expr::Paren(p) => self.stream(&p.expr, notes, sink),
            Expr::VectorSelector(vs) => self.selector(vs, sink).map(|()| Vec::new()),
            Expr::Call(call) => match range_call(call) {
                Some(shape) => self.range_function(call, &shape, notes, sink),
                None => Err(Stop::Fallback),
            },
            Expr::Aggregate(agg) => match k_literal(agg) {
                Some(k) => self.select_k(agg, k, notes, sink),
                None => self.aggregate(agg, notes, sink),
            },
            _ => Err(Stop::Fallback),
        }
    }

    /// An instant selector: each series' latest sample within the lookback
    /// at each step, found by a cursor moving forward.
    fn selector(&self, vs: &VectorSelector, sink: &mut Sink<'_>) -> Result<(), Stop> {
        let query = self.ev.query;
        let offset = offset_ms(&vs.offset);
        let pinned = vs.at.as_ref().map(|at| query.at_ms(at));
        let steps = self.steps;
        let points = |series: &SeriesData| {
            let mut points = Vec::new();
            if let Some(at) = pinned {
                let at = at.saturating_sub(offset);
                if let Some((_, value)) = selector::latest(&series.samples, at, query.lookback_ms) {
                    points = (0..steps).map(|i| (i, value)).collect();
                }
            } else {
                let mut cursor = 0;
                for i in 0..steps {
                    let t = query.step_time(i).saturating_sub(offset);
                    if let Some((_, value)) =
                        selector::latest_from(&series.samples, t, query.lookback_ms, &mut cursor)
                    {
                        points.push((i, value));
                    }
                }
            }
            points
        };
        self.ev.selectors().stream(vs, points, |part| {
            self.ev.check_deadline()?;
            for (labels, points) in part {
                if !points.is_empty() {
                    sink(Column {
                        labels,
                        points,
                        ranks: Vec::new(),
                    })?;
                }
            }
            Ok::<(), Stop>(())
        })
    }

    /// A range function over a matrix selector: per series, the window's
    /// edges advance with the steps.
    fn range_function(
        &self,
        call: &Call,
        shape: &RangeCall<'_>,
        notes: &mut Annotations,
        sink: &mut Sink<'_>,
    ) -> Result<Vec<usize>, Stop> {
        let ev = self.ev;
        let query = ev.query;
        let name = call.func.name;
        let param = match shape.param {
            Some(p) => ev.eval_scalar(p, query.start_ms)?,
            None => 0.0,
        };
        if name == "quantile_over_time"
            && let (Some(message), Some(p)) = (aggregate::quantile_warning(param), shape.param)
        {
            notes.warnings.insert(ev.warning_text(&message, p));
        }
        let keep_name = range_fns::keeps_name(name);
        let counter = matches!(name, "rate" | "increase");
        let mut non_counters = NonCounters::new(matches!(name, "rate" | "increase"));
        let vs = &shape.selector.vs;
        let range = duration_ms(shape.selector.range);
        let offset = offset_ms(&vs.offset);
        let pinned = vs.at.as_ref().map(|at| query.at_ms(at));
        // Series of several names lose them here and may then collide:
        // such columns are gathered to find the steps where they do.
        let distinct = distinct_by_construction(call);
        let mut gathered: Vec<Column> = Vec::new();
        let walk = Walk {
            name,
            param,
            counter,
            range,
            offset,
            pinned,
            steps: self.steps,
            query,
        };
        // Series are independent: each is read and walked on any core,
        // then handed on in order.
        self.ev.selectors().stream(
            vs,
            |series| walk.points(&series.samples),
            |part| {
                ev.check_deadline()?;
                for (labels, points) in part {
                    if points.is_empty() {
                        continue;
                    }
                    non_counters.note(&labels);
                    let labels = if keep_name {
                        labels
                    } else {
                        ev.drop_name(&labels)
                    };
                    let column = Column {
                        labels,
                        points,
                        ranks: Vec::new(),
                    };
                    if distinct {
                        sink(column)?;
                    } else {
                        self.hold(column.points.len())?;
                        gathered.push(column);
                    }
                }
                Ok::<(), Stop>(())
            },
        )?;
        for message in non_counters.messages() {
            notes.infos.insert(ev.info_text(&message, shape.arg));
        }
        let failing = duplicate_steps(&gathered, self.steps);
        for column in gathered {
            self.release(column.points.len());
            sink(column)?;
        }
        Ok(failing)
    }

    /// A parameterless aggregation: each input column's group found once.
    /// `sum`, `count`, `group`, `min` and `max` over columns in a fixed
    /// order add each column into per-step group state as it comes; the
    /// others (and any over an aggregation, whose order changes by step)
    /// gather the group's columns and reduce each step's values in the
    /// step evaluator's order.
    fn aggregate(
        &self,
        agg: &AggregateExpr,
        notes: &mut Annotations,
        sink: &mut Sink<'_>,
    ) -> Result<Vec<usize>, Stop> {
        let op = agg.op.id();
        let Some(reduce) = aggregate::plain_reducer(op) else {
            return Err(Stop::Fallback);
        };
        let grouping = agg.modifier.as_ref();
        let dynamic = ordered_by_step(&agg.expr);
        let streaming = !dynamic && matches!(op, T_SUM | T_COUNT | T_GROUP | T_MIN | T_MAX);
        let mut index: FxHashMap<usize, usize> = FxHashMap::default();
        let mut groups: Vec<Group> = Vec::new();
        let mut produced = 0usize;
        let failing = self.stream(&agg.expr, notes, &mut |column| {
            let labels = self
                .ev
                .intern(aggregate::group_labels(&column.labels, grouping));
            let key = Arc::as_ptr(&labels) as *const u8 as usize;
            let at = match index.get(&key) {
                Some(&at) => at,
                None => {
                    if streaming {
                        self.hold(self.steps)?;
                    }
                    groups.push(Group::new(labels, streaming, self.steps));
                    index.insert(key, groups.len() - 1);
                    groups.len() - 1
                }
            };
            let rank = produced;
            produced += 1;
            if streaming {
                groups[at].add(op, rank, &column);
            } else {
                self.hold(column.points.len())?;
                groups[at].members.push((rank, column));
            }
            Ok(())
        })?;
        let mut values = Vec::new();
        for group in groups {
            self.ev.check_deadline()?;
            let column = if streaming {
                self.release(self.steps);
                group.finish(op)
            } else {
                let held = group.members.iter().map(|m| m.1.points.len()).sum();
                self.release(held);
                group.reduce(reduce, dynamic, self.steps, &mut values)
            };
            if !column.points.is_empty() {
                sink(column)?;
            }
        }
        Ok(failing)
    }

    /// `topk` and `bottomk`: at each step, each group's members with a
    /// value there, in the step evaluator's order, go through the same
    /// selection ([`aggregate::best_k`]); a member keeps the steps it was
    /// chosen at, ranked as the step evaluator's output lists them (groups
    /// in order of their first member, each best first).
    fn select_k(
        &self,
        agg: &AggregateExpr,
        k: f64,
        notes: &mut Annotations,
        sink: &mut Sink<'_>,
    ) -> Result<Vec<usize>, Stop> {
        let largest = agg.op.id() == T_TOPK;
        let grouping = agg.modifier.as_ref();
        let dynamic = ordered_by_step(&agg.expr);
        let mut members: Vec<Column> = Vec::new();
        let mut group_of: Vec<usize> = Vec::new();
        let mut index: FxHashMap<usize, usize> = FxHashMap::default();
        let failing = self.stream(&agg.expr, notes, &mut |column| {
            self.hold(column.points.len())?;
            let labels = self
                .ev
                .intern(aggregate::group_labels(&column.labels, grouping));
            let next = index.len();
            let key = Arc::as_ptr(&labels) as *const u8 as usize;
            group_of.push(*index.entry(key).or_insert(next));
            members.push(column);
            Ok(())
        })?;
        let held: usize = members.iter().map(|m| m.points.len()).sum();
        // Per member: the steps it is chosen at, and its ranks there.
        let mut points: Vec<Vec<(usize, f64)>> = vec![Vec::new(); members.len()];
        let mut ranks: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        if let Some(k) = aggregate::k_count(k) {
            let mut cursors = vec![0usize; members.len()];
            // Per step: `(rank, member, value)` of the members present.
            let mut present: Vec<(usize, usize, f64)> = Vec::new();
            // Per group touched at this step: its members and values.
            let mut by_group: Vec<(Vec<usize>, Vec<f64>)> = vec![Default::default(); index.len()];
            let mut touched: Vec<usize> = Vec::new();
            for i in 0..self.steps {
                if i % 1024 == 0 {
                    self.ev.check_deadline()?;
                }
                present.clear();
                for (m, (member, cursor)) in members.iter().zip(cursors.iter_mut()).enumerate() {
                    if let Some(&(step, value)) = member.points.get(*cursor)
                        && step == i
                    {
                        let rank = if dynamic { member.ranks[*cursor] } else { m };
                        present.push((rank, m, value));
                        *cursor += 1;
                    }
                }
                if dynamic {
                    present.sort_unstable_by_key(|p| p.0);
                }
                for &(_, m, value) in &present {
                    let group = &mut by_group[group_of[m]];
                    if group.0.is_empty() {
                        touched.push(group_of[m]);
                    }
                    group.0.push(m);
                    group.1.push(value);
                }
                let mut rank = 0;
                for &g in &touched {
                    let (group_members, values) = &mut by_group[g];
                    for best in aggregate::best_k(values, k, largest) {
                        let member = group_members[best];
                        points[member].push((i, values[best]));
                        ranks[member].push(rank);
                        rank += 1;
                    }
                    group_members.clear();
                    values.clear();
                }
                touched.clear();
            }
        }
        self.release(held);
        for ((member, points), ranks) in members.into_iter().zip(points).zip(ranks) {
            if !points.is_empty() {
                sink(Column {
                    labels: member.labels,
                    points,
                    ranks,
                })?;
            }
        }
        Ok(failing)
    }
}

/// A range function over one series at every step: all it needs, shared
/// by the tasks computing series in parallel.
struct Walk<'n> {
    name: &'n str,
    param: f64,
    counter: bool,
    range: i64,
    offset: i64,
    pinned: Option<i64>,
    steps: usize,
    query: &'n Query,
}

impl Walk<'_> {
    /// `(step index, value)` at the steps where the function has a value
    /// for a series with `samples`.
    fn points(&self, samples: &[(i64, f64)]) -> Vec<(usize, f64)> {
        let name = self.name;
        // Most series have neither stale markers nor a falling value: one
        // pass without branches says so, and only those that do pay for
        // the passes that handle them.
        let (stale, falls) = samples.windows(2).fold(
            (
                samples.first().is_some_and(|(_, v)| selector::is_stale(*v)),
                false,
            ),
            |(stale, falls), pair| {
                (
                    stale | selector::is_stale(pair[1].1),
                    falls | (pair[1].1 < pair[0].1),
                )
            },
        );
        // Stale markers are never part of a window.
        let samples: Cow<'_, [(i64, f64)]> = if stale {
            Cow::Owned(
                samples
                    .iter()
                    .copied()
                    .filter(|(_, v)| !selector::is_stale(*v))
                    .collect(),
            )
        } else {
            Cow::Borrowed(samples)
        };
        // Windows spanning many steps share most of their samples: a
        // queue of candidates visits each sample once instead of once per
        // window. Over few steps the plain walk below costs less than the
        // queue's branches.
        if self.range / self.query.step_ms.max(1) >= QUEUE_FROM_OVERLAP {
            match name {
                "max_over_time" => return self.extremes(&samples, |a, b| a > b),
                "min_over_time" => return self.extremes(&samples, |a, b| a < b),
                _ => {}
            }
        }
        // `rate` and `increase` correct for counter resets: with the
        // resets listed once, a window's change needs no pass over it.
        // Dropping markers makes the samples either side of one neighbours,
        // which may fall: series with markers are checked in full.
        let resets: Vec<usize> = if self.counter && (falls || stale) {
            (1..samples.len())
                .filter(|&j| samples[j].1 < samples[j - 1].1)
                .collect()
        } else {
            Vec::new()
        };
        let mut next_reset = 0;
        let (mut from, mut to) = (0, 0);
        // `rate`'s divisor, the window's length in seconds, worked out once.
        let rate_seconds = (name == "rate").then_some(self.range as f64 / 1000.0);
        // A sample is in the windows of at most range / step + 1 steps.
        let reach = usize::try_from(self.range / self.query.step_ms.max(1)).unwrap_or(usize::MAX);
        let mut points = Vec::with_capacity(
            self.steps
                .min(samples.len().saturating_mul(reach.saturating_add(1))),
        );
        for i in 0..self.steps {
            // Below `end_ms` by construction (see `step_count`).
            let t = self.query.step_time(i);
            let (start_ms, end_ms) = self.window(i);
            from = selector::position_after(&samples, start_ms, from);
            to = selector::position_after(&samples, end_ms, to);
            let window = &samples[from..to.max(from)];
            if window.is_empty() {
                continue;
            }
            let window = Window {
                points: window,
                start_ms,
                end_ms,
            };
            let value = if self.counter {
                if window.points.len() < 2 {
                    continue;
                }
                // Resets inside the window: pairs (j - 1, j) both in it.
                while resets.get(next_reset).is_some_and(|&j| j <= from) {
                    next_reset += 1;
                }
                let last = window.points[window.points.len() - 1].1;
                let mut delta = last - window.points[0].1;
                for &j in resets[next_reset..].iter().take_while(|&&j| j < to) {
                    delta += samples[j - 1].1;
                }
                // A window whose start saturated is shorter than `range`.
                let seconds = match end_ms.checked_sub(self.range) {
                    Some(_) => rate_seconds,
                    None => {
                        (name == "rate").then(|| end_ms.saturating_sub(start_ms) as f64 / 1000.0)
                    }
                };
                Some(range_fns::extrapolate_over(window, delta, true, seconds))
            } else {
                range_fns::apply(name, window, self.param, t)
            };
            if let Some(value) = value {
                points.push((i, value));
            }
        }
        points
    }

    /// `(start, end)` of each step's window, `(start, end]` in ms.
    fn window(&self, i: usize) -> (i64, i64) {
        let end_ms = self
            .pinned
            .unwrap_or(self.query.step_time(i))
            .saturating_sub(self.offset);
        (end_ms.saturating_sub(self.range), end_ms)
    }

    /// `max_over_time` (`better` is `>`) or `min_over_time` (`<`) at every
    /// step, from a queue of the window's candidates: indices of values
    /// each not beaten by any later one, so the best is at its front, and
    /// each sample goes in and out once. Equal values all stay, the earlier
    /// in front, so the best is the window's first best value, as the step
    /// evaluator picks it (`0` and `-0` are equal but written apart); NaN
    /// is never a candidate, and a window of only NaN is NaN.
    fn extremes(
        &self,
        samples: &[(i64, f64)],
        better: impl Fn(f64, f64) -> bool,
    ) -> Vec<(usize, f64)> {
        let mut points = Vec::with_capacity(self.steps.min(samples.len()));
        let mut queue: VecDeque<usize> = VecDeque::new();
        let (mut from, mut to) = (0, 0);
        for i in 0..self.steps {
            // Windows only move forward: their ends rise with the steps.
            let (start_ms, end_ms) = self.window(i);
            from = selector::position_after(samples, start_ms, from);
            let end = selector::position_after(samples, end_ms, to);
            for j in to.max(from)..end {
                let v = samples[j].1;
                if v.is_nan() {
                    continue;
                }
                while queue.back().is_some_and(|&b| better(v, samples[b].1)) {
                    queue.pop_back();
                }
                queue.push_back(j);
            }
            to = end.max(from);
            while queue.front().is_some_and(|&f| f < from) {
                queue.pop_front();
            }
            if from < to {
                let best = queue.front().map_or(f64::NAN, |&f| samples[f].1);
                points.push((i, best));
            }
        }
        points
    }
}

/// Steps a window spans from which `min_over_time` and `max_over_time`
/// keep a queue of candidates rather than walk each window.
const QUEUE_FROM_OVERLAP: i64 = 8;

/// One aggregation group's state.
struct Group {
    labels: Labels,
    /// Per step, the rank of the group's first member with a value there
    /// (the group's place in the output), `usize::MAX` when none has one.
    first: Vec<usize>,
    /// Per step: `sum`'s compensated sums.
    sums: Vec<KahanSum>,
    /// Per step: `count`'s counts, `min`'s and `max`'s best values.
    values: Vec<f64>,
    /// Gathered members with their ranks, in the order they came.
    members: Vec<(usize, Column)>,
}

impl Group {
    fn new(labels: Labels, streaming: bool, steps: usize) -> Self {
        let dense = if streaming { steps } else { 0 };
        Self {
            labels,
            first: vec![usize::MAX; dense],
            sums: vec![KahanSum::default(); dense],
            values: vec![0.0; dense],
            members: Vec::new(),
        }
    }

    /// Adds one member's column, exactly as the step evaluator's reducer
    /// would take its value at each step (members come in its order).
    fn add(&mut self, op: TokenId, rank: usize, column: &Column) {
        for &(i, v) in &column.points {
            let first = self.first[i] == usize::MAX;
            if first {
                self.first[i] = rank;
            }
            match op {
                T_SUM => self.sums[i].add(v),
                T_COUNT => self.values[i] += 1.0,
                T_MIN | T_MAX => {
                    let best = self.values[i];
                    let better = if op == T_MIN { v < best } else { v > best };
                    if first || better || best.is_nan() {
                        self.values[i] = v;
                    }
                }
                _ => {}
            }
        }
    }

    fn finish(self, op: TokenId) -> Column {
        let mut points = Vec::new();
        let mut ranks = Vec::new();
        for (i, &rank) in self.first.iter().enumerate() {
            if rank == usize::MAX {
                continue;
            }
            let value = match op {
                T_SUM => self.sums[i].value(),
                T_GROUP => 1.0,
                _ => self.values[i],
            };
            points.push((i, value));
            ranks.push(rank);
        }
        Column {
            labels: self.labels,
            points,
            ranks,
        }
    }

    /// Reduces the gathered members' values at each step, in the order of
    /// their ranks there.
    fn reduce(
        self,
        reduce: fn(&mut [f64]) -> f64,
        dynamic: bool,
        steps: usize,
        scratch: &mut Vec<(usize, f64)>,
    ) -> Column {
        let mut cursors = vec![0usize; self.members.len()];
        let mut points = Vec::new();
        let mut ranks = Vec::new();
        let mut values = Vec::new();
        for i in 0..steps {
            scratch.clear();
            for ((rank, member), cursor) in self.members.iter().zip(cursors.iter_mut()) {
                if let Some(&(step, value)) = member.points.get(*cursor)
                    && step == i
                {
                    let rank = if dynamic {
                        member.ranks[*cursor]
                    } else {
                        *rank
                    };
                    scratch.push((rank, value));
                    *cursor += 1;
                }
            }
            if scratch.is_empty() {
                continue;
            }
            if dynamic {
                scratch.sort_unstable_by_key(|s| s.0);
            }
            values.clear();
            values.extend(scratch.iter().map(|s| s.1));
            points.push((i, reduce(&mut values)));
            ranks.push(scratch[0].0);
        }
        Column {
            labels: self.labels,
            points,
            ranks,
        }
    }
}

/// The steps at which two of `columns` with the same labels both have a
/// value: where the step evaluator finds one label set twice in a vector.
fn duplicate_steps(columns: &[Column], steps: usize) -> Vec<usize> {
    let mut by_labels: FxHashMap<&Labels, Vec<usize>> = FxHashMap::default();
    for (k, column) in columns.iter().enumerate() {
        by_labels.entry(&column.labels).or_default().push(k);
    }
    let mut failing = Vec::new();
    let mut count = Vec::new();
    for members in by_labels.values().filter(|m| m.len() > 1) {
        count.clear();
        count.resize(steps, 0u32);
        for &k in members {
            for &(i, _) in &columns[k].points {
                count[i] += 1;
                if count[i] == 2 {
                    failing.push(i);
                }
            }
        }
    }
    failing
}
