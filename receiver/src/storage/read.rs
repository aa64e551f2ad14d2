//! The read path the query engine uses: the series matching label matchers,
//! each with its samples in `[start, end]` in time order, merged from chunks
//! and the head (the head, being newer, wins where both hold a timestamp).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;
use rusqlite::{Connection, params};

use super::chunk::{self, RawSample};
use super::index::{Labels, Matcher, SeriesId};
use super::{Storage, StorageError, chunk_key, read_lock, window_of};

/// One series and its samples in the requested range.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// The series' labels, `__name__` included, sorted by name.
    pub labels: Labels,
    /// `(timestamp ms, value)` in time order; stale markers included.
    pub samples: Vec<(i64, f64)>,
}

/// Oldest and newest timestamps stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// Oldest sample, ms.
    pub oldest_ms: i64,
    /// Newest sample, ms.
    pub newest_ms: i64,
}

impl Storage {
    /// Ids and labels of the series matching all `matchers`.
    fn selected(&self, matchers: &[Matcher]) -> Vec<(SeriesId, Labels)> {
        let index = read_lock(&self.shared.index);
        index
            .select(matchers)
            .into_iter()
            .filter_map(|id| index.labels(id).map(|l| (id, l.clone())))
            .collect()
    }

    /// Series matching all `matchers` (sorted by labels), with their samples
    /// in `[start_ms, end_ms]`. Series with no sample in range are left out.
    pub fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<SeriesData>, StorageError> {
        Ok(self
            .select_within(matchers, start_ms, end_ms, usize::MAX)?
            .unwrap_or_default())
    }

    /// [`Storage::select`] that gives up (`None`) as soon as it has read
    /// more than `max_samples` samples, so a query too big for memory
    /// fails before it is loaded.
    ///
    /// Series are read in parallel on the shared [`rayon`] pool, whose
    /// threads (one per core) every query shares: however many queries run
    /// at once, reads never use more threads than the machine has cores.
    pub fn select_within(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        max_samples: usize,
    ) -> Result<Option<Vec<SeriesData>>, StorageError> {
        let selected = self.selected(matchers);
        // The head first, then the chunks: compaction commits a slice to
        // chunks before it drains that slice from the head, so every sample
        // acknowledged before this read is in this head copy or in the
        // chunks read after it (seen in both is harmless: the merge keeps
        // one). Reading the other way round, a slice compacted in between
        // would be in neither.
        //
        // Series whose chunk samples in the range are all in their recent
        // tail are answered from it with the head, under the same lock, and
        // read no chunk.
        let mut work = Vec::with_capacity(selected.len());
        let mut series = Vec::with_capacity(selected.len());
        // Head samples of every series, then the samples of the series
        // answered here (counted again by the chunk readers' budget).
        let (mut loaded, mut served) = (0usize, 0usize);
        {
            let head = read_lock(&self.shared.head);
            let recent = read_lock(&self.shared.recent);
            for (id, labels) in selected {
                let samples = head.range(id, start_ms, end_ms);
                loaded += samples.len();
                match recent.range(id, start_ms, end_ms) {
                    Some(tail) => {
                        loaded += tail.len();
                        let tail = tail.iter().map(|&(t, bits)| (t, f64::from_bits(bits)));
                        let merged = merge_newer(tail.collect(), &samples);
                        served += merged.len();
                        if !merged.is_empty() {
                            series.push(SeriesData {
                                labels,
                                samples: merged,
                            });
                        }
                    }
                    None => work.push((id, labels, samples)),
                }
                if loaded > max_samples {
                    return Ok(None);
                }
            }
        }
        let window = self.shared.options.chunk_window;
        let range = ChunkRange {
            first_window: window_of(start_ms, window),
            last_window: window_of(end_ms, window),
            start_ms,
            end_ms,
        };
        let budget = Budget {
            max: max_samples,
            loaded: AtomicUsize::new(served),
            over: AtomicBool::new(false),
        };
        let batches: Vec<Result<Option<Vec<SeriesData>>, StorageError>> = work
            .par_chunks(SERIES_PER_TASK)
            .map(|batch| self.with_reader(|conn| read_batch(conn, batch, &range, &budget)))
            .collect();
        for batch in batches {
            match batch? {
                Some(read) => series.extend(read),
                None => return Ok(None),
            }
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Some(series))
    }

    /// Oldest and newest sample timestamps, if any sample is stored.
    pub fn time_bounds(&self) -> Result<Option<TimeBounds>, StorageError> {
        let from_chunks: (Option<i64>, Option<i64>) = self.with_reader(|conn| {
            Ok(
                conn.query_row("SELECT MIN(min_ts), MAX(max_ts) FROM chunks", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?,
            )
        })?;
        let from_head = read_lock(&self.shared.head).time_bounds();
        let oldest = [from_chunks.0, from_head.map(|b| b.0)]
            .into_iter()
            .flatten()
            .min();
        let newest = [from_chunks.1, from_head.map(|b| b.1)]
            .into_iter()
            .flatten()
            .max();
        Ok(oldest.zip(newest).map(|(oldest_ms, newest_ms)| TimeBounds {
            oldest_ms,
            newest_ms,
        }))
    }

    /// Labels of the series matching all `matchers`, from the index alone
    /// (whatever their samples' times), sorted; at most `max` of them (the
    /// walk stops there, so a huge match costs no more than `max`).
    pub fn series_labels(&self, matchers: &[Matcher], max: usize) -> Vec<Labels> {
        let index = read_lock(&self.shared.index);
        let mut labels: Vec<Labels> = index
            .select(matchers)
            .into_iter()
            .filter_map(|id| index.labels(id).cloned())
            .take(max)
            .collect();
        labels.sort();
        labels
    }

    /// Labels of the series matching all `matchers` that have data in
    /// `[start_ms, end_ms]`, sorted. Decides from the head and from chunk
    /// time bounds, without decoding chunks: a series whose chunk spans the
    /// range counts even if its samples straddle it (as Prometheus's
    /// chunk-level answer does).
    /// At most `max` are returned; the walk stops there.
    pub fn series_in_range(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<Vec<Labels>, StorageError> {
        let selected = self.selected(matchers);
        let mut found = Vec::new();
        let mut unsure = Vec::new();
        {
            let head = read_lock(&self.shared.head);
            for (id, labels) in selected {
                if found.len() >= max {
                    break;
                }
                if head.has_samples_in(id, start_ms, end_ms) {
                    found.push(labels);
                } else {
                    unsure.push((id, labels));
                }
            }
        }
        let window = self.shared.options.chunk_window;
        let (first_window, last_window) = (window_of(start_ms, window), window_of(end_ms, window));
        self.with_reader(|conn| {
            let mut overlapping = conn.prepare_cached(
                "SELECT 1 FROM chunks WHERE key >= ?1 AND key <= ?2 AND max_ts >= ?3 AND min_ts <= ?4 LIMIT 1",
            )?;
            for (id, labels) in unsure {
                if found.len() >= max {
                    break;
                }
                let hit = overlapping.exists(params![
                    chunk_key(id, first_window),
                    chunk_key(id, last_window),
                    start_ms,
                    end_ms
                ])?;
                if hit {
                    found.push(labels);
                }
            }
            Ok(())
        })?;
        found.sort();
        Ok(found)
    }

    /// Distinct label names, sorted.
    pub fn label_names(&self) -> Vec<String> {
        read_lock(&self.shared.index).label_names()
    }

    /// Distinct values of a label, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        read_lock(&self.shared.index).label_values(name)
    }
}

/// Series one reader task reads with one connection: enough to pay for
/// taking a connection and a statement, few enough to spread a fleet-wide
/// selector over every core.
const SERIES_PER_TASK: usize = 32;

/// The chunks and samples a selection reads.
struct ChunkRange {
    first_window: i64,
    last_window: i64,
    start_ms: i64,
    end_ms: i64,
}

/// `--query.max-samples` shared by the reader tasks of one selection: the
/// first to take the total past `max` stops them all.
struct Budget {
    max: usize,
    loaded: AtomicUsize,
    over: AtomicBool,
}

impl Budget {
    /// Counts `count` more samples; `false` once the total is past `max`.
    fn take(&self, count: usize) -> bool {
        let total = self
            .loaded
            .fetch_add(count, Ordering::Relaxed)
            .saturating_add(count);
        if total > self.max {
            self.over.store(true, Ordering::Relaxed);
        }
        !self.over.load(Ordering::Relaxed)
    }
}

/// Reads a batch of series (each with its head copy) from the chunks on
/// `conn`; `None` once the budget is spent, here or in another task.
fn read_batch(
    conn: &Connection,
    batch: &[(SeriesId, Labels, Vec<RawSample>)],
    range: &ChunkRange,
    budget: &Budget,
) -> Result<Option<Vec<SeriesData>>, StorageError> {
    // Chunks wholly outside the range are not even fetched.
    let mut load = conn.prepare_cached(
        "SELECT data, count, min_ts, max_ts FROM chunks \
         WHERE key >= ?1 AND key <= ?2 AND max_ts >= ?3 AND min_ts <= ?4 ORDER BY key",
    )?;
    let mut out = Vec::with_capacity(batch.len());
    for (id, labels, newer) in batch {
        if budget.over.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut samples: Vec<(i64, f64)> = Vec::new();
        let mut rows = load.query(params![
            chunk_key(*id, range.first_window),
            chunk_key(*id, range.last_window),
            range.start_ms,
            range.end_ms
        ])?;
        while let Some(row) = rows.next()? {
            let count: i64 = row.get(1)?;
            let (min_ts, max_ts): (i64, i64) = (row.get(2)?, row.get(3)?);
            let corrupt =
                |e: &dyn std::fmt::Display| StorageError::Corrupt(format!("series {id}: {e}"));
            let data = row.get_ref(0)?.as_blob().map_err(|e| corrupt(&e))?;
            let decoded = chunk::decode(data).map_err(|e| corrupt(&e))?;
            // Decoded timestamps are strictly increasing: the range is one
            // slice of them, found by bisection unless it is the whole.
            let inside = if min_ts >= range.start_ms && max_ts <= range.end_ms {
                &decoded[..]
            } else {
                let from = decoded.partition_point(|s| s.0 < range.start_ms);
                let to = decoded.partition_point(|s| s.0 <= range.end_ms);
                &decoded[from..to.max(from)]
            };
            samples.reserve(usize::try_from(count).map_or(inside.len(), |c| c.min(inside.len())));
            samples.extend(inside.iter().map(|&(t, bits)| (t, f64::from_bits(bits))));
        }
        let merged = merge_newer(samples, newer);
        if !budget.take(merged.len()) {
            return Ok(None);
        }
        if !merged.is_empty() {
            out.push(SeriesData {
                labels: labels.clone(),
                samples: merged,
            });
        }
    }
    Ok(Some(out))
}

/// `older` (from chunks) with `newer` (the head's copy: sorted, one sample
/// per timestamp) merged in, `newer` winning where both hold a timestamp.
fn merge_newer(mut older: Vec<(i64, f64)>, newer: &[RawSample]) -> Vec<(i64, f64)> {
    let as_f64 = |&(t, bits): &RawSample| (t, f64::from_bits(bits));
    let Some(&(first_new, _)) = newer.first() else {
        return older;
    };
    // The usual case: the head holds only what follows the chunks.
    let cut = older.partition_point(|s| s.0 < first_new);
    if cut == older.len() {
        older.extend(newer.iter().map(as_f64));
        return older;
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    out.extend_from_slice(&older[..cut]);
    let mut old = older[cut..].iter().copied().peekable();
    for sample in newer {
        while let Some(o) = old.next_if(|o| o.0 < sample.0) {
            out.push(o);
        }
        old.next_if(|o| o.0 == sample.0);
        out.push(as_f64(sample));
    }
    out.extend(old);
    out
}

/// What a sender said about one metric family (remote-write metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyInfo {
    /// Metric family name.
    pub family: String,
    /// `counter`, `gauge`, `histogram`, … as sent.
    pub kind: String,
    /// HELP text.
    pub help: String,
    /// Unit.
    pub unit: String,
}

impl Storage {
    /// Stored metadata of every metric family, sorted by family name.
    pub fn metadata(&self) -> Result<Vec<FamilyInfo>, StorageError> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT family, type, help, unit FROM metadata ORDER BY family")?;
            let rows = stmt.query_map([], |r| {
                Ok(FamilyInfo {
                    family: r.get(0)?,
                    kind: r.get(1)?,
                    help: r.get(2)?,
                    unit: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}
