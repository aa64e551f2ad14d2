//! Before evaluation: find the time span each selector is read over during
//! the whole query (through offsets, `@`, subqueries and lookback), and
//! read each selector's series when the evaluation asks for them.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as ParserOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::QueryError;
use super::eval::Limits;
use crate::storage::Storage;
use crate::storage::index::{Labels, MatchOp, Matcher};
use crate::storage::read::{ReadBudget, SeriesData};

/// The query being evaluated: its time span and settings.
#[derive(Debug, Clone)]
pub struct Query {
    /// The query text (for annotation positions).
    pub source: String,
    /// Whether this is a range query.
    pub is_range: bool,
    /// First evaluation time, ms.
    pub start_ms: i64,
    /// Last evaluation time, ms.
    pub end_ms: i64,
    /// Step, ms (1 for instant queries).
    pub step_ms: i64,
    /// Instant-selector lookback, ms.
    pub lookback_ms: i64,
    /// Subquery step when none is given, ms.
    pub default_subquery_step_ms: i64,
}

impl Query {
    /// The evaluation time of step `step` of a range query, ms
    /// (saturating: a step index past the query's end is never asked for).
    pub fn step_time(&self, step: usize) -> i64 {
        let offset = (step as i64).saturating_mul(self.step_ms);
        self.start_ms.saturating_add(offset)
    }

    /// The time an `@` modifier pins evaluation to, ms.
    pub fn at_ms(&self, at: &AtModifier) -> i64 {
        match at {
            AtModifier::Start => self.start_ms,
            AtModifier::End => self.end_ms,
            AtModifier::At(time) => system_time_ms(*time),
        }
    }
}

/// Milliseconds since the epoch (negative before it).
pub fn system_time_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => super::duration_ms(after),
        Err(before) => super::duration_ms(before.duration()).saturating_neg(),
    }
}

/// An offset in ms (negative offsets look into the future).
pub fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => super::duration_ms(*d),
        Some(Offset::Neg(d)) => super::duration_ms(*d).saturating_neg(),
    }
}

/// The series of every selector of one query, keyed by the selector
/// node's address: read from storage when first asked for, either whole
/// ([`SelectorData::get`], then kept for the rest of the query) or a part
/// at a time ([`SelectorData::stream`], which keeps nothing).
///
/// Every read counts against the query's `--query.max-samples` (one
/// [`ReadBudget`]); a streamed part stops counting once it is consumed,
/// so what the limit bounds is the samples held at once.
#[derive(Debug)]
pub struct SelectorData {
    storage: Storage,
    spans: FxHashMap<usize, Span>,
    loaded: RefCell<FxHashMap<usize, Arc<Vec<SeriesData>>>>,
    budget: ReadBudget,
}

/// What one selector reads: its matchers and the span of timestamps it
/// can look at during the whole query.
#[derive(Debug)]
struct Span {
    matchers: Vec<Matcher>,
    from: i64,
    to: i64,
}

/// Series in one streamed part. Each part is read on every core while the
/// query's thread hands on the part before: parts this large keep the
/// hand-overs few, and still hold little (a few MiB of results at
/// Grafana's ~1,400 steps).
const STREAM_PART_SERIES: usize = 256;

impl SelectorData {
    /// The series read for `selector` (none for a node this query does not
    /// hold), sorted by labels.
    pub fn get(&self, selector: &VectorSelector) -> Result<Arc<Vec<SeriesData>>, QueryError> {
        let key = node_key(selector);
        if let Some(series) = self.loaded.borrow().get(&key) {
            return Ok(Arc::clone(series));
        }
        let Some(span) = self.spans.get(&key) else {
            return Ok(Arc::default());
        };
        let series = self
            .storage
            .select_within(&span.matchers, span.from, span.to, &self.budget)?
            .ok_or_else(QueryError::too_many_samples)?;
        let series = Arc::new(series);
        self.loaded.borrow_mut().insert(key, Arc::clone(&series));
        Ok(series)
    }

    /// `map` of every series of `selector` that has samples, in label
    /// order, handed to `each` a part at a time with the series' labels.
    /// Series are read and mapped on every core; a part's samples are
    /// dropped once mapped, so what is held is the parts' results.
    pub fn stream<R: Send, E: From<QueryError>>(
        &self,
        selector: &VectorSelector,
        map: impl Fn(&SeriesData) -> R + Sync,
        mut each: impl FnMut(Vec<(Labels, R)>) -> Result<(), E>,
    ) -> Result<(), E> {
        let key = node_key(selector);
        let part = STREAM_PART_SERIES;
        let loaded = self.loaded.borrow().get(&key).cloned();
        if let Some(series) = loaded {
            for chunk in series.chunks(part) {
                let mapped = chunk
                    .par_iter()
                    .map(|s| (Arc::clone(&s.labels), map(s)))
                    .collect();
                each(mapped)?;
            }
            return Ok(());
        }
        let Some(span) = self.spans.get(&key) else {
            return Ok(());
        };
        let selection = self
            .storage
            .selection(&span.matchers, span.from, span.to, &self.budget)
            .map_err(QueryError::from)?
            .ok_or_else(QueryError::too_many_samples)?;
        // Part after part: while this thread hands one on, the cores read
        // the next.
        let (storage, budget, selection) = (&self.storage, &self.budget, &selection);
        let read = |range: Range<usize>| {
            storage
                .read_selected(selection, range, budget, |s| {
                    (s.samples.len(), (Arc::clone(&s.labels), map(&s)))
                })
                .map_err(QueryError::from)?
                .ok_or_else(QueryError::too_many_samples)
        };
        let parts: Vec<Range<usize>> = (0..selection.len())
            .step_by(part)
            .map(|first| first..(first + part).min(selection.len()))
            .collect();
        let Some(first) = parts.first() else {
            return Ok(());
        };
        let mut current = read(first.clone())?;
        for next_part in parts.into_iter().skip(1).map(Some).chain([None]) {
            let mut next = None;
            rayon::in_place_scope(|scope| {
                if let Some(range) = next_part {
                    scope.spawn(|_| next = Some(read(range)));
                }
                let held: usize = current.iter().map(|(n, _)| n).sum();
                let handed = each(current.into_iter().map(|(_, m)| m).collect());
                budget.give_back(held);
                handed
            })?;
            match next {
                Some(read) => current = read?,
                None => break,
            }
        }
        Ok(())
    }

    /// Samples read and still held, over all selectors.
    pub fn samples(&self) -> usize {
        self.budget.loaded()
    }
}

fn node_key(selector: &VectorSelector) -> usize {
    selector as *const VectorSelector as usize
}

/// Finds what every selector of the query reads; the reads happen as the
/// evaluation asks for them.
pub fn fetch(
    storage: &Storage,
    expr: &Expr,
    query: &Query,
    limits: &Limits,
) -> Result<SelectorData, QueryError> {
    let mut found = Vec::new();
    collect_spans(expr, query, query.start_ms, query.end_ms, &mut found)?;
    let mut spans = FxHashMap::default();
    for (selector, from, to) in found {
        let matchers = storage_matchers(selector)?;
        spans.insert(node_key(selector), Span { matchers, from, to });
    }
    Ok(SelectorData {
        storage: storage.clone(),
        spans,
        loaded: RefCell::default(),
        budget: ReadBudget::new(limits.max_samples),
    })
}

/// How far before an evaluation time `t` the samples `expr` reads at `t`
/// may lie, in ms (lookback, ranges, subquery ranges and offsets added up
/// along each path; at least 0). Meaningful only for an expression without
/// `@` modifiers, whose reads move with `t`.
pub fn reach(expr: &Expr, query: &Query) -> Result<i64, QueryError> {
    let mut spans = Vec::new();
    collect_spans(expr, query, 0, 0, &mut spans)?;
    Ok(spans
        .iter()
        .map(|(_, from, _)| from.saturating_neg())
        .max()
        .unwrap_or(0)
        .max(0))
}

/// Walks `expr`, evaluated at times in `[lo, hi]`, recording for each
/// selector the span of sample timestamps it can look at.
fn collect_spans<'e>(
    expr: &'e Expr,
    query: &Query,
    lo: i64,
    hi: i64,
    spans: &mut Vec<(&'e VectorSelector, i64, i64)>,
) -> Result<(), QueryError> {
    let shifted = |at: &Option<AtModifier>, offset: &Option<Offset>| {
        let (lo, hi) = match at {
            Some(at) => (query.at_ms(at), query.at_ms(at)),
            None => (lo, hi),
        };
        // Times and durations come from the query: saturate, never wrap.
        let off = offset_ms(offset);
        (lo.saturating_sub(off), hi.saturating_sub(off))
    };
    match expr {
        Expr::VectorSelector(vs) => {
            let (lo, hi) = shifted(&vs.at, &vs.offset);
            spans.push((vs, lo.saturating_sub(query.lookback_ms), hi));
        }
        Expr::MatrixSelector(ms) => {
            let (lo, hi) = shifted(&ms.vs.at, &ms.vs.offset);
            spans.push((&ms.vs, lo.saturating_sub(super::duration_ms(ms.range)), hi));
        }
        Expr::Subquery(sq) => {
            let (lo, hi) = shifted(&sq.at, &sq.offset);
            let from = lo.saturating_sub(super::duration_ms(sq.range));
            collect_spans(&sq.expr, query, from, hi, spans)?;
        }
        Expr::Aggregate(agg) => {
            if let Some(param) = &agg.param {
                collect_spans(param, query, lo, hi, spans)?;
            }
            collect_spans(&agg.expr, query, lo, hi, spans)?;
        }
        Expr::Unary(u) => collect_spans(&u.expr, query, lo, hi, spans)?,
        Expr::Binary(b) => {
            collect_spans(&b.lhs, query, lo, hi, spans)?;
            collect_spans(&b.rhs, query, lo, hi, spans)?;
        }
        Expr::Paren(p) => collect_spans(&p.expr, query, lo, hi, spans)?,
        Expr::Call(call) => {
            for arg in &call.args.args {
                collect_spans(arg, query, lo, hi, spans)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::Extension(_) => return Err(QueryError::unsupported("extension expressions")),
    }
    Ok(())
}

/// The parser's matchers (plus the metric name) as storage matchers.
pub fn storage_matchers(selector: &VectorSelector) -> Result<Vec<Matcher>, QueryError> {
    if !selector.matchers.or_matchers.is_empty() {
        return Err(QueryError::unsupported("`or` inside label matchers"));
    }
    let mut out = Vec::with_capacity(selector.matchers.matchers.len() + 1);
    if let Some(name) = &selector.name {
        out.push(
            Matcher::new("__name__", MatchOp::Equal, name.as_str())
                .map_err(|e| QueryError::bad_data(e.to_string()))?,
        );
    }
    for m in &selector.matchers.matchers {
        let op = match m.op {
            ParserOp::Equal => MatchOp::Equal,
            ParserOp::NotEqual => MatchOp::NotEqual,
            ParserOp::Re(_) => MatchOp::Regex,
            ParserOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(
            Matcher::new(m.name.as_str(), op, m.value.as_str())
                .map_err(|e| QueryError::bad_data(format!("invalid regular expression: {e}")))?,
        );
    }
    Ok(out)
}
