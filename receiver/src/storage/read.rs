//! The read path the query engine uses: the series matching label matchers,
//! each with its samples in `[start, end]` in time order, merged from chunks
//! and the head (the head, being newer, wins where both hold a timestamp).

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dcmon_protocol::remote_write::{FamilyMetadata, metric_kind};
use rayon::prelude::*;
use rusqlite::Connection;

use super::chunk::{self, RawSample};
use super::chunk_cache::{self, Admission, ChunkCache, RunRow};
use super::head::{self, Head};
use super::index::{Labels, Matcher, SeriesId};
use super::packed::Packed;
use super::recent::{Recent, Tail};
use super::{Storage, StorageError, chunk_rows, read_lock, window_of};

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
        let budget = ReadBudget::new(usize::MAX);
        Ok(self
            .select_within(matchers, start_ms, end_ms, &budget)?
            .unwrap_or_default())
    }

    /// [`Storage::select`] that gives up (`None`) as soon as `budget` is
    /// spent, so a query too big for memory fails before it is loaded.
    pub fn select_within(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        budget: &ReadBudget,
    ) -> Result<Option<Vec<SeriesData>>, StorageError> {
        let Some(selection) = self.selection(matchers, start_ms, end_ms, budget)? else {
            return Ok(None);
        };
        self.read_selected(&selection, 0..selection.len(), budget, |s| s.into_owned())
    }

    /// The series matching all `matchers`, in label order, for reading
    /// their samples in `[start_ms, end_ms]` a part at a time
    /// ([`Storage::read_selected`]); `None` when the head's samples alone
    /// spend `budget`.
    ///
    /// The head is read here, the chunks later: compaction commits a slice
    /// to chunks before it drains that slice from the head, so every sample
    /// acknowledged before this call is in this head copy or in the chunks
    /// read after it (seen in both is harmless: the merge keeps one).
    /// Reading the other way round, a slice compacted in between would be
    /// in neither. Series whose chunk samples in the range are all in their
    /// recent tail are answered here from it with the head, under the same
    /// lock, and read no chunk.
    pub fn selection(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        budget: &ReadBudget,
    ) -> Result<Option<Selection>, StorageError> {
        let mut selected = self.selected(matchers);
        selected.sort_by(|a, b| a.1.cmp(&b.1));
        let mut series = Vec::with_capacity(selected.len());
        // Head samples of every series: a first check only, as they are
        // counted again when read out with the chunks.
        let mut loaded = 0usize;
        let mut served = 0usize;
        {
            let head = read_lock(&self.shared.head);
            let recent = read_lock(&self.shared.recent);
            let found = find_all(&head, &recent, &selected);
            for ((id, labels), (list, tail)) in selected.into_iter().zip(found) {
                let samples = list
                    .map(|list| head::sorted_range(list, start_ms, end_ms))
                    .unwrap_or_default();
                loaded += samples.len();
                match tail.and_then(|tail| tail.range(start_ms, end_ms)) {
                    Some(tail) => {
                        loaded += tail.len();
                        let tail = tail.iter().map(|&(t, bits)| (t, f64::from_bits(bits)));
                        let merged = merge_newer(tail.collect(), &samples);
                        served += merged.len();
                        series.push(Pending::Read(SeriesData {
                            labels,
                            samples: merged,
                        }));
                    }
                    None => series.push(Pending::Chunks(id, labels, samples)),
                }
                if budget.loaded().saturating_add(loaded) > budget.max {
                    return Ok(None);
                }
            }
        }
        if !budget.take(served) {
            return Ok(None);
        }
        let window = self.shared.options.chunk_window;
        Ok(Some(Selection {
            series,
            admission: self.shared.chunk_cache.admission(),
            range: ChunkRange {
                first_window: window_of(start_ms, window),
                last_window: window_of(end_ms, window),
                start_ms,
                end_ms,
            },
        }))
    }

    /// `map` of each series of `selection[part]` that has samples in the
    /// range (lent where the selection holds it already), in order; `None`
    /// once `budget` is spent. The samples read are counted against
    /// `budget` (see [`ReadBudget::give_back`]).
    ///
    /// Series are read and mapped in parallel on the shared [`rayon`]
    /// pool, whose threads (one per core) every query shares: however many
    /// queries run at once, reads never use more threads than the machine
    /// has cores. Each series is mapped on the thread that decoded it,
    /// while its samples are still in that core's cache.
    pub fn read_selected<R: Send>(
        &self,
        selection: &Selection,
        part: Range<usize>,
        budget: &ReadBudget,
        map: impl Fn(Cow<'_, SeriesData>) -> R + Sync,
    ) -> Result<Option<Vec<R>>, StorageError> {
        let series = &selection.series[part];
        if let Some(held) = in_memory(series)
            && held <= SAMPLES_MAPPED_HERE
        {
            // Nothing to read, and little to map: on this thread, as
            // waking the pool's threads would cost more than the work.
            if budget.is_spent() {
                return Ok(None);
            }
            let mapped = series.iter().filter_map(|pending| match pending {
                Pending::Read(s) if !s.samples.is_empty() => Some(map(Cow::Borrowed(s))),
                _ => None,
            });
            return Ok(Some(mapped.collect()));
        }
        // Read in series id order: series whose ids are close together
        // have their chunks side by side in each window, where one search
        // finds them all.
        let mut order: Vec<usize> = (0..series.len()).collect();
        order.sort_by_key(|&i| series[i].chunk_id());
        let tasks: Vec<Result<Option<Positioned<R>>, StorageError>> = order
            .par_chunks(SERIES_PER_TASK)
            .map(|batch| {
                self.with_reader(|conn| {
                    let source = (conn, (&self.shared.chunk_cache, &selection.admission));
                    read_batch(source, series, batch, &selection.range, budget, &map)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(series.len());
        for task in tasks {
            match task? {
                Some(read) => out.extend(read),
                None => return Ok(None),
            }
        }
        out.sort_unstable_by_key(|(position, _)| *position);
        Ok(Some(out.into_iter().map(|(_, mapped)| mapped).collect()))
    }

    /// Oldest and newest sample timestamps, if any sample is stored.
    pub fn time_bounds(&self) -> Result<Option<TimeBounds>, StorageError> {
        let from_chunks = self.with_reader(chunk_rows::time_bounds)?;
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
            for (id, labels) in unsure {
                if found.len() >= max {
                    break;
                }
                let hit =
                    chunk_rows::any_in(conn, id, (first_window, last_window), (start_ms, end_ms))?;
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
/// taking a connection and a statement, few enough to spread a part of a
/// selection over every core.
const SERIES_PER_TASK: usize = 8;

/// Most samples of a part answered from memory that its reader maps on
/// its own thread (a refresh's newest steps: a few samples per series).
const SAMPLES_MAPPED_HERE: usize = 1 << 14;

/// The samples `series` hold, if all are answered from memory already.
fn in_memory(series: &[Pending]) -> Option<usize> {
    series
        .iter()
        .try_fold(0usize, |held, pending| match pending {
            Pending::Read(s) => Some(held + s.samples.len()),
            Pending::Chunks(..) => None,
        })
}

/// The series a selector matches, in label order, with what the head held
/// for them when it was taken; their chunks are read on demand.
#[derive(Debug)]
pub struct Selection {
    series: Vec<Pending>,
    range: ChunkRange,
    /// What its reads may add to the chunk cache.
    admission: Admission,
}

impl Selection {
    /// How many series matched (some may have no sample in the range).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series matched.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// One selected series.
#[derive(Debug)]
enum Pending {
    /// Answered from memory (recent tail and head) already.
    Read(SeriesData),
    /// To merge from its chunks and this copy of its head samples.
    Chunks(SeriesId, Labels, Vec<RawSample>),
}

impl Pending {
    /// The series whose chunks are to be read (none when answered).
    fn chunk_id(&self) -> Option<SeriesId> {
        match self {
            Pending::Chunks(id, _, _) => Some(*id),
            Pending::Read(_) => None,
        }
    }
}

/// The chunks and samples a selection reads.
#[derive(Debug)]
struct ChunkRange {
    first_window: i64,
    last_window: i64,
    start_ms: i64,
    end_ms: i64,
}

/// `--query.max-samples` for one query, shared by its reads (and their
/// reader tasks): the first read to take the total past `max` stops them
/// all.
#[derive(Debug)]
pub struct ReadBudget {
    max: usize,
    loaded: AtomicUsize,
    over: AtomicBool,
}

impl ReadBudget {
    /// A budget of `max` samples.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            loaded: AtomicUsize::new(0),
            over: AtomicBool::new(false),
        }
    }

    /// Samples read and not given back.
    pub fn loaded(&self) -> usize {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Whether a read has gone past the budget.
    pub fn is_spent(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Counts `count` more samples; `false` once the total is past `max`.
    fn take(&self, count: usize) -> bool {
        let total = self
            .loaded
            .fetch_add(count, Ordering::Relaxed)
            .saturating_add(count);
        if total > self.max {
            self.over.store(true, Ordering::Relaxed);
        }
        !self.is_spent()
    }

    /// Uncounts `count` samples read earlier and no longer held (a part of
    /// a selection consumed as it streams).
    pub fn give_back(&self, count: usize) {
        let _ = self
            .loaded
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(count))
            });
    }
}

/// Mapped series, each with its position in the part of a selection read.
type Positioned<R> = Vec<(usize, R)>;

/// Reads the series at `batch` (positions in `series`, in id order) from
/// the chunks on `conn` and maps each with samples, with its position;
/// `None` once the budget is spent, here or in another task.
fn read_batch<R>(
    source: (&Connection, (&ChunkCache, &Admission)),
    series: &[Pending],
    batch: &[usize],
    range: &ChunkRange,
    budget: &ReadBudget,
    map: &impl Fn(Cow<'_, SeriesData>) -> R,
) -> Result<Option<Positioned<R>>, StorageError> {
    if budget.is_spent() {
        return Ok(None);
    }
    let wanted: Vec<(SeriesId, usize)> = batch
        .iter()
        .filter_map(|&i| match &series[i] {
            Pending::Chunks(id, _, newer) => Some((*id, newer.len())),
            Pending::Read(_) => None,
        })
        .collect();
    let mut from_chunks = read_chunks(source, &wanted, range)?.into_iter();
    let mut out = Vec::with_capacity(batch.len());
    for &position in batch {
        if budget.is_spent() {
            return Ok(None);
        }
        // Series answered from memory are lent, not copied.
        let series = match &series[position] {
            Pending::Read(series) => Cow::Borrowed(series),
            Pending::Chunks(_, labels, newer) => {
                let older = from_chunks.next().unwrap_or_default();
                let samples = merge_newer(older, newer);
                if !budget.take(samples.len()) {
                    return Ok(None);
                }
                Cow::Owned(SeriesData {
                    labels: labels.clone(),
                    samples,
                })
            }
        };
        if !series.samples.is_empty() {
            out.push((position, map(series)));
        }
    }
    Ok(Some(out))
}

/// Most samples reserved ahead on a chunk's word (a corrupt count must
/// not allocate much).
const MAX_RESERVE: usize = 1 << 16;

/// Ids further apart than this are read by separate searches: a search
/// over a run of ids also passes the rows of the ids in between.
const RUN_GAP: SeriesId = 4;

/// The chunk samples in the range of each `(series, room)` of `wanted`
/// (sorted by id), in time order, each with room for `room` samples
/// after them.
///
/// Every row is found before any is decoded, so that each series'
/// samples are allocated once for all its chunks (as the rows say) rather
/// than grown window by window, copying what was decoded at each growth;
/// the rows' bytes, compressed, are a small part of that.
fn read_chunks(
    (conn, cache): (&Connection, (&ChunkCache, &Admission)),
    wanted: &[(SeriesId, usize)],
    range: &ChunkRange,
) -> Result<Vec<Vec<(i64, f64)>>, StorageError> {
    let mut rows = Vec::new();
    let ids: Vec<SeriesId> = wanted.iter().map(|(id, _)| *id).collect();
    let mut start = 0;
    while start < ids.len() {
        let mut end = start + 1;
        while end < ids.len() && ids[end] - ids[end - 1] <= RUN_GAP {
            end += 1;
        }
        let found = chunk_cache::read_run(
            conn,
            cache,
            &ids[start..end],
            (range.first_window, range.last_window),
            (range.start_ms, range.end_ms),
        )?;
        rows.extend(found.into_iter().map(|mut row| {
            row.position += start;
            row
        }));
        start = end;
    }
    // The stored counts are a hint only: each chunk says what it holds.
    let mut sizes: Vec<usize> = wanted.iter().map(|(_, room)| *room).collect();
    for row in &rows {
        let hint = usize::try_from(row.count).unwrap_or(0).min(MAX_RESERVE);
        sizes[row.position] = sizes[row.position].saturating_add(hint);
    }
    let mut raws: Vec<Vec<RawSample>> = sizes.into_iter().map(Vec::with_capacity).collect();
    let mut last_keys = vec![i64::MIN; wanted.len()];
    let mut in_order = vec![true; wanted.len()];
    // Decoded window by window, whatever runs the ids fell into: in each
    // window the series of one target share their timestamps, which the
    // memo then decodes once. A series' own rows stay in window order.
    rows.sort_by_key(|row| (chunk_rows::window_of_key(row.key), row.position));
    let mut memo = chunk::TimesMemo::new();
    for row in &rows {
        let k = row.position;
        in_order[k] &= row.key > last_keys[k];
        last_keys[k] = row.key;
        decode_in_range(&mut raws[k], row, range, &mut memo)
            .map_err(|e| StorageError::Corrupt(format!("series {}: {e}", ids[k])))?;
    }
    Ok(raws
        .into_iter()
        .zip(in_order)
        .map(|(mut raw, in_order)| {
            if !in_order {
                // Windows do not overlap in time: ordering by time puts
                // the chunks back in window order.
                raw.sort_unstable_by_key(|s| s.0);
            }
            raw.into_iter()
                .map(|(t, bits)| (t, f64::from_bits(bits)))
                .collect()
        })
        .collect())
}

/// Appends the samples of `row` in the range to `raw`; only a chunk
/// straddling an end of the range is cut.
fn decode_in_range(
    raw: &mut Vec<RawSample>,
    row: &RunRow,
    range: &ChunkRange,
    memo: &mut chunk::TimesMemo,
) -> Result<(), chunk::ChunkError> {
    let first = raw.len();
    chunk::decode_into_with(&row.data, raw, memo)?;
    if row.min_ts < range.start_ms || row.max_ts > range.end_ms {
        // Decoded timestamps are strictly increasing: the range is one
        // slice of them.
        let decoded = &raw[first..];
        let from = decoded.partition_point(|s| s.0 < range.start_ms);
        let to = decoded.partition_point(|s| s.0 <= range.end_ms).max(from);
        raw.truncate(first + to);
        raw.drain(first..first + from);
    }
    Ok(())
}

/// Each selected series' head and tail, found all before any is read.
///
/// A dashboard's refresh reads a few minutes of each of many series whose
/// head and tail the writes since its last run pushed out of the CPU's
/// caches: found and read one series after another, every series waits
/// out three or four misses in turn (half of a 50-series refresh's
/// evaluation, measured). Found in a loop whose rounds do not depend on
/// each other, and then touched where reads will start, the misses of
/// many series are waited out at once.
fn find_all<'a>(
    head: &'a Head,
    recent: &'a Recent,
    selected: &[(SeriesId, Labels)],
) -> Vec<(Option<&'a Packed>, Option<&'a Tail>)> {
    let found: Vec<_> = selected
        .iter()
        .map(|&(id, _)| (head.series(id), recent.tail(id)))
        .collect();
    let touched = found.iter().fold(0i64, |acc, (list, tail)| {
        acc ^ i64::from(list.map_or(0, Packed::first_byte)) ^ tail.map_or(0, Tail::newest_ms)
    });
    std::hint::black_box(touched);
    found
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

impl Storage {
    /// Stored metadata of every metric family, sorted by family name.
    pub fn metadata(&self) -> Result<Vec<FamilyMetadata>, StorageError> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT family, type, help, unit FROM metadata ORDER BY family")?;
            let rows = stmt.query_map([], |r| {
                Ok(FamilyMetadata {
                    family: r.get(0)?,
                    kind: metric_kind(&r.get::<_, String>(1)?),
                    help: r.get(2)?,
                    unit: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}
