//! Before evaluation: find the time span each selector is read over during
//! the whole query (through offsets, `@`, subqueries and lookback), and
//! fetch each selector's series once.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as ParserOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};
use rustc_hash::FxHashMap;

use super::QueryError;
use super::eval::Limits;
use crate::storage::Storage;
use crate::storage::index::{MatchOp, Matcher};
use crate::storage::read::SeriesData;

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

/// The series of every selector, keyed by the selector node's address.
#[derive(Debug, Default)]
pub struct SelectorData {
    by_node: FxHashMap<usize, Arc<Vec<SeriesData>>>,
    samples: usize,
}

impl SelectorData {
    /// The series fetched for `selector`.
    pub fn get(&self, selector: &VectorSelector) -> Arc<Vec<SeriesData>> {
        self.by_node
            .get(&node_key(selector))
            .cloned()
            .unwrap_or_default()
    }

    /// How many samples were fetched, over all selectors.
    pub fn samples(&self) -> usize {
        self.samples
    }
}

fn node_key(selector: &VectorSelector) -> usize {
    selector as *const VectorSelector as usize
}

/// Fetches every selector's data for the whole query.
pub fn fetch(
    storage: &Storage,
    expr: &Expr,
    query: &Query,
    limits: &Limits,
) -> Result<SelectorData, QueryError> {
    let max_samples = limits.max_samples;
    let mut spans = Vec::new();
    collect_spans(expr, query, query.start_ms, query.end_ms, &mut spans)?;
    let mut data = SelectorData::default();
    let mut samples = 0usize;
    for (selector, from, to) in spans {
        limits.check()?;
        let matchers = storage_matchers(selector)?;
        let budget = max_samples.saturating_sub(samples);
        let series = storage
            .select_within(&matchers, from, to, budget)?
            .ok_or_else(QueryError::too_many_samples)?;
        samples += series.iter().map(|s| s.samples.len()).sum::<usize>();
        data.by_node.insert(node_key(selector), Arc::new(series));
    }
    data.samples = samples;
    Ok(data)
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
