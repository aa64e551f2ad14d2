//! A cache of range-query answers for the steps that can no longer change,
//! so that a dashboard refreshed every 30 s recomputes only its newest
//! steps.
//!
//! A range query is a set of independent evaluations at `start`,
//! `start + step`, …, `end`: an answer over steps `[a, c]` is the answer
//! over `[a, b]` merged by label set with the answer over `(b, c]`. An
//! entry is keyed by what decides each step's value (the query text, the
//! step, the start modulo the step, and the
//! engine settings that change answers), so the next refresh finds it
//! even though its start and end moved.
//!
//! Only queries whose step `t` reads nothing newer than `t` are cached:
//! no `@` modifier, no negative offset ([`cacheable`]). Such a step reads
//! samples in `[t - reach, t]` ([`plan::reach`]), so:
//!
//! - a write of a sample at time `w` changes steps `>= w` only. The
//!   receiver accepts late samples of any age, so correctness comes from
//!   invalidation, not from age: an entry remembers the storage's change
//!   epoch it is valid at, and a lookup keeps only its steps before the
//!   earliest timestamp written since ([`Storage::changes_since`]);
//! - retention deleting samples before `D` changes steps `< D + reach`,
//!   which are never served from the cache.
//!
//! Annotations (warnings and infos) are reported per query, but each is
//! earned by evaluating some step: the steps to store and the fresh ones
//! are evaluated apart, so a stored part keeps exactly the annotations of
//! its own steps, and an answer has those and its fresh steps'. Which of
//! its steps earned them a part does not know, so one with annotations
//! serves only requests that start where it starts (a refresh that moves
//! the end; Grafana moves the start by whole steps, so only when it
//! crosses one).
//!
//! What this module does not do: cache instant queries (each is one step),
//! or decide who may bypass it (the API's `nocache=1`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, Offset};
use rayon::prelude::*;

use super::eval::{Annotations, Limits};
use super::text::{BLOCK_STEPS, PointsText, WrittenPoints};
use super::value::{Series, Value};
use super::{Engine, QueryError, QueryResult, duration_ms, plan};
use crate::storage::changes::Changes;
use crate::storage::index::Labels;
use crate::storage::search::{partition_point_from_end, partition_point_from_start};

/// Steps newer than this before now are evaluated afresh and not stored.
/// Not needed for correctness (writes invalidate), but the newest steps
/// are still filling: samples of the current scrape interval arrive over
/// the next seconds (remote-write batching, exporters' phases), and each
/// such write would cut the entry back anyway.
pub const FRESH_HORIZON_MS: i64 = 60_000;

/// An entry is stored again once more than this many of a request's
/// storable steps are not in it.
const RESTORE_AFTER_STEPS: i64 = 2;

/// Why a query is not cached. Each refers to a step whose value may
/// depend on something other than samples at or before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `@` (including `@ start()` and `@ end()`) pins reads to a time that
    /// may lie after the step, or moves with the request's range.
    AtModifier,
    /// A negative offset reads samples after the step.
    NegativeOffset,
    /// Only instant vectors and scalars are range queries.
    NotRangeType,
    /// An expression kind the engine does not evaluate.
    Unsupported,
}

/// Whether the answers of `expr` may be cached; decided from the syntax
/// tree alone. Recursive: call it on a query thread.
pub fn cacheable(expr: &Expr) -> Result<(), Refusal> {
    if !matches!(expr.value_type(), ValueType::Vector | ValueType::Scalar) {
        return Err(Refusal::NotRangeType);
    }
    check_tree(expr)
}

fn check_modifiers(at: &Option<AtModifier>, offset: &Option<Offset>) -> Result<(), Refusal> {
    if at.is_some() {
        return Err(Refusal::AtModifier);
    }
    if matches!(offset, Some(Offset::Neg(_))) {
        return Err(Refusal::NegativeOffset);
    }
    Ok(())
}

fn check_tree(expr: &Expr) -> Result<(), Refusal> {
    match expr {
        Expr::VectorSelector(vs) => check_modifiers(&vs.at, &vs.offset),
        Expr::MatrixSelector(ms) => check_modifiers(&ms.vs.at, &ms.vs.offset),
        Expr::Subquery(sq) => {
            check_modifiers(&sq.at, &sq.offset)?;
            check_tree(&sq.expr)
        }
        Expr::Aggregate(agg) => {
            if let Some(param) = &agg.param {
                check_tree(param)?;
            }
            check_tree(&agg.expr)
        }
        Expr::Unary(u) => check_tree(&u.expr),
        Expr::Binary(b) => {
            check_tree(&b.lhs)?;
            check_tree(&b.rhs)
        }
        Expr::Paren(p) => check_tree(&p.expr),
        Expr::Call(call) => call.args.args.iter().try_for_each(|a| check_tree(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Extension(_) => Err(Refusal::Unsupported),
    }
}

/// The steps a range query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First step, ms.
    pub start_ms: i64,
    /// No step after this, ms.
    pub end_ms: i64,
    /// Step, ms (positive).
    pub step_ms: i64,
}

impl Range {
    /// The last step at or before `t` (`None` before the first step).
    fn step_at_or_before(&self, t: i64) -> Option<i64> {
        let t = t.min(self.end_ms);
        if t < self.start_ms {
            return None;
        }
        let since = t - self.start_ms;
        Some(self.start_ms + since - since % self.step_ms)
    }
}

/// What decides the value of each step: two requests with equal keys
/// have equal values at every step they share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The query text as sent. Not the parsed tree printed back: the
    /// positions in annotations (`(1:6)`) are taken from the text, so two
    /// spellings of one query may annotate differently. A dashboard sends
    /// the same text on every refresh.
    query: String,
    step_ms: i64,
    /// `start` modulo `step`: which grid of times the steps lie on.
    phase_ms: i64,
    lookback_ms: i64,
    default_subquery_step_ms: i64,
}

/// The cached answer over steps `first_ms..=last_ms` of one key.
#[derive(Debug)]
struct Part {
    first_ms: i64,
    last_ms: i64,
    /// Each series' labels, sorted as the engine answers.
    labels: Vec<Labels>,
    /// Each series' points within the steps, and the same as the answer
    /// writes them: a refresh lends both instead of copying the points
    /// and writing them again (for a light panel, either takes longer
    /// than evaluating its new steps).
    text: Vec<Arc<PointsText>>,
    /// The warnings and infos evaluating these steps gave.
    notes: Annotations,
}

#[derive(Debug)]
struct Slot {
    part: Arc<Part>,
    /// The storage's change epoch the part is valid at.
    epoch: u64,
    bytes: usize,
    /// Position in [`Inner::recency`].
    used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<Key, Slot>,
    /// Least recently used first.
    recency: BTreeMap<u64, Key>,
    clock: u64,
    bytes: usize,
}

impl Inner {
    fn touch(&mut self, key: &Key) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(slot) = self.slots.get_mut(key) {
            self.recency.remove(&slot.used);
            slot.used = clock;
            self.recency.insert(clock, key.clone());
        }
    }

    fn remove(&mut self, key: &Key) -> Option<Slot> {
        let slot = self.slots.remove(key)?;
        self.recency.remove(&slot.used);
        self.bytes -= slot.bytes;
        Some(slot)
    }
}

/// Cache figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Range queries answered partly or wholly from the cache.
    pub hits: u64,
    /// Cacheable range queries the cache had nothing usable for.
    pub misses: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
    /// Approximate bytes held.
    pub bytes: u64,
    /// Entries held.
    pub entries: u64,
}

/// The cache, bounded by an approximate byte size with least recently
/// used eviction. Shared by every query thread.
#[derive(Debug)]
pub struct QueryCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl QueryCache {
    /// A cache holding at most about `max_bytes` (0: off).
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Whether it may hold anything.
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The figures now.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: inner.bytes as u64,
            entries: inner.slots.len() as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers a range query of a [`cacheable`] `expr` (whose text is
    /// `source`): the leading steps from the cache where it holds them
    /// unchanged, the rest evaluated; then stores the steps older than
    /// `now_ms` minus [`FRESH_HORIZON_MS`].
    pub(super) fn range_query(
        &self,
        engine: &Engine,
        source: &str,
        expr: &Expr,
        range: Range,
        limits: Limits,
        now_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        let options = engine.options();
        let key = Key {
            query: source.to_owned(),
            step_ms: range.step_ms,
            phase_ms: range.start_ms.rem_euclid(range.step_ms),
            lookback_ms: duration_ms(options.lookback_delta),
            default_subquery_step_ms: duration_ms(options.default_subquery_step),
        };
        let reach = plan::reach(
            expr,
            &plan::Query {
                source: source.to_owned(),
                is_range: true,
                start_ms: 0,
                end_ms: 0,
                step_ms: range.step_ms,
                lookback_ms: key.lookback_ms,
                default_subquery_step_ms: key.default_subquery_step_ms,
            },
        )?;
        let found = {
            let mut inner = self.lock();
            inner.touch(&key);
            inner
                .slots
                .get(&key)
                .map(|slot| (Arc::clone(&slot.part), slot.epoch))
        };
        // Read after the entry and before any evaluation: whatever is
        // written from here on has a later epoch than the one stored below.
        let changes = engine
            .storage()
            .changes_since(found.as_ref().map_or(u64::MAX, |(_, epoch)| *epoch));
        // A part's annotations belong to all its steps together: one that
        // has any serves only requests starting where it starts.
        let hit = found.as_ref().and_then(|(part, _)| {
            if !part.notes.is_empty() && part.first_ms != range.start_ms {
                return None;
            }
            usable_steps(part, range, reach, &changes).map(|last_ms| (part, last_ms))
        });
        if hit.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        // The steps to evaluate are split where storable steps end: what
        // is stored then carries exactly the annotations its own steps
        // earned (an annotation comes from evaluating some step, so a
        // range's are the union of its pieces'), and an answer's are its
        // stored part's and its fresh piece's.
        let storable = range.step_at_or_before(now_ms.saturating_sub(FRESH_HORIZON_MS));
        let first_new = hit.map_or(range.start_ms, |(_, last_ms)| last_ms + range.step_ms);
        let evaluate = |from: i64, to: i64| -> Result<(Vec<Series>, Annotations), QueryError> {
            if from > to {
                return Ok((Vec::new(), Annotations::default()));
            }
            let (value, notes) =
                engine.run(source, expr, from, to, Some(range.step_ms), limits.clone())?;
            Ok((into_matrix(value)?, notes))
        };
        let split = storable.map_or(first_new - range.step_ms, |last| {
            last.max(first_new - range.step_ms)
        });
        let (stored_new, stored_notes) = evaluate(first_new, split)?;
        let (fresh, fresh_notes) = evaluate(split + range.step_ms, range.end_ms)?;
        let (older, mut notes) = match hit {
            Some((part, last_ms)) => (
                part.steps(
                    range.start_ms,
                    last_ms,
                    usize::try_from(range.end_ms.saturating_sub(last_ms) / range.step_ms)
                        .unwrap_or(0),
                ),
                part.notes.clone(),
            ),
            None => (Vec::new(), Annotations::default()),
        };
        let mut stored = merge(older, stored_new);
        notes.extend(stored_notes);
        if let Some(last_ms) = storable {
            // An entry that still holds every storable step, none of them
            // changed, is only confirmed valid at the newer epoch: no copy.
            let intact = hit.filter(|(part, _)| {
                part.last_ms >= last_ms
                    && changes
                        .earliest_written
                        .is_none_or(|written| written > part.last_ms)
            });
            // An entry that serves all but a few of them is kept as it is:
            // storing again copies every point and its text, which costs
            // more than evaluating those few steps again on the next
            // refresh. (It keeps its epoch, so the writes that cut it
            // still cut it.)
            let nearly = hit.filter(|(_, usable_ms)| {
                (last_ms - usable_ms) / range.step_ms <= RESTORE_AFTER_STEPS
            });
            match (intact, nearly) {
                (Some((part, _)), _) => self.confirm(&key, part, changes.epoch),
                (None, Some(_)) => {}
                (None, None) => {
                    let part = Part::new(
                        &mut stored,
                        range.start_ms,
                        last_ms,
                        range.step_ms,
                        notes.clone(),
                    );
                    self.store(key, part, changes.epoch);
                }
            }
        }
        let (series, written) = merge(stored, fresh)
            .into_iter()
            .map(|piece| (piece.series, piece.written))
            .unzip();
        notes.extend(fresh_notes);
        let (warnings, infos) = (
            notes.warnings.into_iter().collect(),
            notes.infos.into_iter().collect(),
        );
        Ok(QueryResult {
            value: Value::Matrix(series),
            time_ms: range.start_ms,
            warnings,
            infos,
            written,
        })
    }

    fn confirm(&self, key: &Key, part: &Arc<Part>, epoch: u64) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(key)
            && Arc::ptr_eq(&slot.part, part)
        {
            slot.epoch = slot.epoch.max(epoch);
        }
    }

    fn store(&self, key: Key, part: Part, epoch: u64) {
        let bytes = part_bytes(&key, &part);
        let mut inner = self.lock();
        inner.remove(&key);
        // One answer may not take more than a quarter of the cache, so a
        // single huge query cannot flush every dashboard's entries.
        if bytes > self.max_bytes / 4 {
            return;
        }
        while inner.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = inner.recency.pop_first() else {
                break;
            };
            if let Some(slot) = inner.slots.remove(&oldest) {
                inner.bytes -= slot.bytes;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        inner.clock += 1;
        let used = inner.clock;
        inner.recency.insert(used, key.clone());
        inner.bytes += bytes;
        inner.slots.insert(
            key,
            Slot {
                part: Arc::new(part),
                epoch,
                bytes,
                used,
            },
        );
    }
}

/// The last step of `range` the cached `part` answers unchanged, if it
/// answers `range`'s first step: the part must start at or before it,
/// nothing may have been written at or before a served step since the
/// part's epoch, and retention must not have deleted what a served step
/// read.
fn usable_steps(part: &Part, range: Range, reach: i64, changes: &Changes) -> Option<i64> {
    if part.first_ms > range.start_ms
        || range.start_ms.saturating_sub(reach) < changes.deleted_before
    {
        return None;
    }
    let mut last = part.last_ms;
    if let Some(written) = changes.earliest_written {
        // A sample at `written` changes every step at or after it.
        last = last.min(written.saturating_sub(1));
    }
    range.step_at_or_before(last)
}

/// A series of an answer being put together: its leading points (with
/// their answer text) lent by a cached part, then its own points.
#[derive(Debug)]
struct Piece {
    /// Its labels, and the points after `written`'s.
    series: Series,
    written: Option<WrittenPoints>,
}

impl Part {
    /// The part of `pieces` (an answer's series, all starting at
    /// `first_ms`) at steps `first_ms..=last_ms`, with its points written
    /// (series in parallel: compressing the text's blocks is most of it).
    /// Each piece then lends the stored points instead of holding them.
    fn new(
        pieces: &mut [Piece],
        first_ms: i64,
        last_ms: i64,
        step_ms: i64,
        notes: Annotations,
    ) -> Self {
        let span_ms = step_ms.saturating_mul(BLOCK_STEPS);
        let kept: Vec<Option<(Labels, Arc<PointsText>)>> = pieces
            .par_iter_mut()
            .map(|piece| {
                let own = &mut piece.series.points;
                let written = piece.written.as_ref().filter(|w| w.count() > 0);
                // The lent points at or before the last step. All of them,
                // but for a part stored beyond a step now storable (the
                // clock went back): the answer then keeps lending its own.
                let lent =
                    written.map_or(0, |w| w.points().partition_point(|(t, _)| *t <= last_ms));
                let whole = written.is_none_or(|w| lent == w.count());
                let to = if whole {
                    own.partition_point(|(t, _)| *t <= last_ms)
                } else {
                    0
                };
                if lent + to == 0 {
                    return None;
                }
                let kept = written.map(|w| w.within(0..lent));
                let text = Arc::new(PointsText::extended(kept.as_ref(), &own[..to], span_ms));
                if whole {
                    own.drain(..to);
                    piece.written = Some(WrittenPoints::new(Arc::clone(&text), 0..text.len()));
                }
                Some((Arc::clone(&piece.series.labels), text))
            })
            .collect();
        let (labels, text) = kept.into_iter().flatten().unzip();
        Self {
            first_ms,
            last_ms,
            labels,
            text,
            notes,
        }
    }

    /// Its series at steps `first_ms..=last_ms`, lent, with room for
    /// `room` more points of their own (the steps an answer adds after
    /// them: growing a vector copies it); series left with none are
    /// dropped, as the engine drops series without points.
    fn steps(&self, first_ms: i64, last_ms: i64, room: usize) -> Vec<Piece> {
        self.labels
            .iter()
            .zip(&self.text)
            .filter_map(|(labels, text)| {
                // A refresh starts a few steps into the part and ends
                // near its end.
                let points = text.points();
                let from = partition_point_from_start(points, |(t, _)| *t < first_ms);
                let to = partition_point_from_end(points, |(t, _)| *t <= last_ms);
                (from < to).then(|| Piece {
                    series: Series {
                        labels: Arc::clone(labels),
                        points: Vec::with_capacity(room),
                    },
                    written: Some(WrittenPoints::new(Arc::clone(text), from..to)),
                })
            })
            .collect()
    }
}

fn into_matrix(value: Value) -> Result<Vec<Series>, QueryError> {
    match value {
        Value::Matrix(series) => Ok(series),
        other => Err(QueryError {
            kind: super::QueryErrorKind::Internal,
            message: format!("a range query evaluated to a {}", other.type_name()),
        }),
    }
}

/// Both answers' series by label set, in label order; `older`'s steps all
/// precede `newer`'s.
fn merge(older: Vec<Piece>, newer: Vec<Series>) -> Vec<Piece> {
    let mut out = Vec::with_capacity(older.len().max(newer.len()));
    let mut older = older.into_iter().peekable();
    let mut newer = newer.into_iter().peekable();
    loop {
        let order = match (older.peek(), newer.peek()) {
            (Some(a), Some(b)) => a.series.labels.cmp(&b.labels),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match order {
            std::cmp::Ordering::Less => out.extend(older.next()),
            std::cmp::Ordering::Greater => out.extend(newer.next().map(|series| Piece {
                series,
                written: None,
            })),
            std::cmp::Ordering::Equal => {
                if let (Some(mut a), Some(b)) = (older.next(), newer.next()) {
                    a.series.points.extend(b.points);
                    out.push(a);
                }
            }
        }
    }
    out
}

/// Approximate memory of an entry: label strings, points, and the
/// bookkeeping around them.
fn part_bytes(key: &Key, part: &Part) -> usize {
    const SERIES_OVERHEAD: usize = 64;
    const LABEL_OVERHEAD: usize = 48;
    const ENTRY_OVERHEAD: usize = 256;
    let series: usize = part
        .labels
        .iter()
        .map(|labels| {
            SERIES_OVERHEAD
                + labels
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + LABEL_OVERHEAD)
                    .sum::<usize>()
        })
        .sum::<usize>()
        + part.text.iter().map(|t| t.heap_bytes()).sum::<usize>();
    let notes: usize = (part.notes.warnings.iter())
        .chain(&part.notes.infos)
        .map(|text| text.len() + SERIES_OVERHEAD)
        .sum();
    ENTRY_OVERHEAD + key.query.len() * 2 + series + notes
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
