//! The writer thread: the only code that writes samples (series, head log,
//! chunks, metadata) to the database. It groups queued appends into one
//! transaction, runs compaction in slices between appends, and runs
//! retention. The clients, tokens and command stores write their own
//! tables in the same file through connections of their own: their writes
//! are small and rare, SQLite's write lock orders them with this thread's
//! (`busy_timeout` waits for it), and none of them touches the sample
//! tables (the shared `settings` table holds each one's own keys).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::{FamilyMetadata, metric_kind};
use rusqlite::{Connection, OptionalExtension, params};
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use super::chunk::{self, RawSample};
use super::chunk_rows::{self, Table};
use super::head::{self, LogEntry};
use super::index::{Labels, SeriesId, hash_labels};
use super::{
    AppendOutcome, CompactionOutcome, Job, PreparedAppend, RetentionOutcome, Shared, StorageError,
    now_ms, read_lock, window_of, window_span, write_lock,
};

/// A window compaction rewrote, for the series' recent tail: the new
/// chunk's samples at or after the tail's keep point.
struct TailUpdate {
    id: SeriesId,
    span: (i64, i64),
    samples: Vec<RawSample>,
    start_from: Option<i64>,
    /// `samples` are only the window's new ones, all after the rest of
    /// it: the series' tail gains them (`Recent::insert`).
    inserted: bool,
}

/// The `settings` row holding the latest retention cutoff (ms).
const RETENTION_CUTOFF_SETTING: &str = "storage_retention_cutoff_ms";

/// Most appends merged into one transaction.
const GROUP_JOBS: usize = 512;
/// Most series compacted per transaction, so appends are not held up long.
const COMPACTION_SLICE: usize = 250;

/// Rebuilds the in-memory index and head from the database; returns each
/// series' open window, for the writer.
pub(super) fn load(
    conn: &Connection,
    shared: &Shared,
) -> Result<FxHashMap<SeriesId, i64>, StorageError> {
    let mut index = write_lock(&shared.index);
    let mut statement = conn.prepare("SELECT id, labels FROM series")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (id, json) = row?;
        let labels: Vec<(String, String)> = serde_json::from_str(&json)
            .map_err(|e| StorageError::Corrupt(format!("series {id} labels: {e}")))?;
        index.insert(id as SeriesId, labels.into());
    }
    drop(index);
    let mut metadata = write_lock(&shared.metadata);
    let mut statement = conn.prepare("SELECT family, type, help, unit FROM metadata")?;
    let rows = statement.query_map([], |row| {
        Ok(FamilyMetadata {
            family: row.get(0)?,
            kind: metric_kind(&row.get::<_, String>(1)?),
            help: row.get(2)?,
            unit: row.get(3)?,
        })
    })?;
    for row in rows {
        let meta = row?;
        metadata.insert(meta.family.clone(), meta);
    }
    drop(metadata);
    let cutoff: i64 = conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM settings WHERE name = ?1",
            params![RETENTION_CUTOFF_SETTING],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(i64::MIN);
    let mut head = write_lock(&shared.head);
    let mut statement = conn.prepare("SELECT data FROM head_log ORDER BY id")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let blob: Vec<u8> = row.get(0)?;
        for (id, ts, bits) in head::decode_log(&blob).map_err(StorageError::Corrupt)? {
            if ts >= cutoff {
                head.append(id, [(ts, bits)]);
            }
        }
    }
    let chunk_samples = chunk_rows::sample_count(conn)?;
    shared
        .counters
        .chunk_samples
        .store(chunk_samples as u64, Ordering::Relaxed);
    tracing::info!(
        series = read_lock(&shared.index).len(),
        head_samples = head.len(),
        chunk_samples,
        "storage opened"
    );
    chunk_rows::open_windows(conn)
}

pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    /// Jobs taken off the queue while grouping appends, to run next.
    deferred: VecDeque<Job>,
    stopping: bool,
    /// Each series' open window (see `chunk_rows`), as committed.
    open_windows: FxHashMap<SeriesId, i64>,
}

type AppendJob = (
    PreparedAppend,
    tokio::sync::oneshot::Sender<Result<AppendOutcome, StorageError>>,
);

impl Writer {
    pub(super) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        open_windows: FxHashMap<SeriesId, i64>,
    ) -> Self {
        Self {
            conn,
            shared,
            deferred: VecDeque::new(),
            stopping: false,
            open_windows,
        }
    }

    pub(super) fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while !self.stopping {
            let job = match self.deferred.pop_front() {
                Some(job) => job,
                None => match jobs.blocking_recv() {
                    Some(job) => job,
                    None => break,
                },
            };
            self.handle(job, &mut jobs);
        }
        // Checkpoint so the main file holds everything and the WAL is small.
        if let Err(err) = self.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
            tracing::warn!(error = %err, "final WAL checkpoint failed");
        }
        tracing::info!("storage writer stopped");
    }

    fn handle(&mut self, job: Job, jobs: &mut mpsc::Receiver<Job>) {
        match job {
            Job::Append { prepared, reply } => {
                let mut group = vec![(prepared, reply)];
                self.gather_appends(jobs, &mut group);
                self.append_group(group);
                // Bound the head's memory under heavy ingest, whatever the schedule.
                if self.head_full() {
                    let _ = self.compact_logged(jobs);
                }
            }
            Job::Compact { reply } => {
                let result = self.compact_logged(jobs);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Job::Retention { now_ms, reply } => {
                let result = self.retention(now_ms);
                match &result {
                    Ok(_) => self.shared.record_success("retention"),
                    Err(err) => {
                        tracing::error!(error = %err, "retention failed");
                        self.shared.record_failure("retention", err);
                    }
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            Job::Shutdown => self.stopping = true,
        }
    }

    /// Whether the head holds its bound of samples or more: compaction is
    /// due, and appends wait for it.
    fn head_full(&self) -> bool {
        read_lock(&self.shared.head).len() >= self.shared.options.head_max_samples
    }

    /// Takes further queued appends (up to the group size) without waiting;
    /// other jobs are kept, in order, for later.
    fn gather_appends(&mut self, jobs: &mut mpsc::Receiver<Job>, group: &mut Vec<AppendJob>) {
        while group.len() < GROUP_JOBS {
            match jobs.try_recv() {
                Ok(Job::Append { prepared, reply }) => group.push((prepared, reply)),
                Ok(other) => {
                    self.deferred.push_back(other);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    /// Commits a group of appends in one transaction, then publishes the
    /// samples to the in-memory index and head, then answers each request.
    fn append_group(&mut self, group: Vec<AppendJob>) {
        let mut outcomes: Vec<AppendOutcome> = group
            .iter()
            .map(|(prepared, _)| AppendOutcome {
                samples: prepared.known.len(),
                new_series: 0,
            })
            .collect();
        let result = self.commit_group(&group, &mut outcomes);
        match result {
            Ok((new_series, new_entries)) => {
                {
                    let mut index = write_lock(&self.shared.index);
                    for (id, labels) in new_series {
                        index.insert(id, labels);
                    }
                }
                {
                    let mut metadata = write_lock(&self.shared.metadata);
                    for meta in group.iter().flat_map(|(p, _)| &p.metadata) {
                        metadata.insert(meta.family.clone(), meta.clone());
                    }
                }
                let mut appended = new_entries.len();
                {
                    let mut head = write_lock(&self.shared.head);
                    for (prepared, _) in &group {
                        head.append_entries(&prepared.known);
                        appended += prepared.known.len();
                    }
                    head.append_entries(&new_entries);
                }
                // Only now that readers see the samples: a cache that read
                // the epoch before this line either saw them or learns of
                // them here.
                if let Some(earliest) = group.iter().filter_map(|(p, _)| p.earliest_ms).min() {
                    self.shared.changes.record_write(earliest);
                }
                let counters = &self.shared.counters;
                counters
                    .samples_appended
                    .fetch_add(appended as u64, Ordering::Relaxed);
                counters.commits.fetch_add(1, Ordering::Relaxed);
                self.shared.record_success("write");
                for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, requests = group.len(), "write transaction failed");
                self.shared.record_failure("write", &err);
                for (_, reply) in group {
                    let _ = reply.send(Err(err.duplicate()));
                }
            }
        }
    }

    /// Writes a group in one transaction: each request's pre-encoded log
    /// blob of known series as is; series new to the index are inserted
    /// (unless an earlier request created them meanwhile) and their samples
    /// logged in one more blob. Returns the new series and their entries.
    #[allow(clippy::type_complexity)]
    fn commit_group(
        &mut self,
        group: &[AppendJob],
        outcomes: &mut [AppendOutcome],
    ) -> Result<(Vec<(SeriesId, Labels)>, Vec<LogEntry>), StorageError> {
        let tx = self.conn.transaction()?;
        let mut new_series: Vec<(SeriesId, Labels)> = Vec::new();
        let mut created: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut new_entries: Vec<LogEntry> = Vec::new();
        {
            let index = read_lock(&self.shared.index);
            let mut insert_log = tx.prepare_cached("INSERT INTO head_log (data) VALUES (?1)")?;
            let mut insert_series = tx.prepare_cached("INSERT INTO series (labels) VALUES (?1)")?;
            let mut upsert_metadata = tx.prepare_cached(
                "INSERT INTO metadata (family, type, help, unit) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (family) DO UPDATE SET type = excluded.type, help = excluded.help, unit = excluded.unit",
            )?;
            for ((prepared, _), outcome) in group.iter().zip(outcomes.iter_mut()) {
                if !prepared.known_blob.is_empty() {
                    insert_log.execute(params![prepared.known_blob])?;
                }
                for series in &prepared.unknown {
                    let hash = hash_labels(&series.labels);
                    let existing = index.lookup(hash, &series.labels).or_else(|| {
                        created
                            .get(&hash)?
                            .iter()
                            .map(|&i| &new_series[i])
                            .find(|(_, labels)| labels[..] == series.labels[..])
                            .map(|(id, _)| *id)
                    });
                    let id = match existing {
                        Some(id) => id,
                        None => {
                            let json =
                                serde_json::to_string(&series.labels).expect("labels serialise");
                            insert_series.execute(params![json])?;
                            let id = tx.last_insert_rowid() as SeriesId;
                            created.entry(hash).or_default().push(new_series.len());
                            new_series.push((id, series.labels.clone().into()));
                            outcome.new_series += 1;
                            id
                        }
                    };
                    new_entries.extend(series.samples.iter().map(|(ts, v)| (id, *ts, v.to_bits())));
                    outcome.samples += series.samples.len();
                }
                for meta in &prepared.metadata {
                    upsert_metadata.execute(params![
                        meta.family,
                        meta.kind,
                        meta.help,
                        meta.unit
                    ])?;
                }
            }
            if !new_entries.is_empty() {
                insert_log.execute(params![head::encode_log(&new_entries)])?;
            }
        }
        tx.commit()?;
        Ok((new_series, new_entries))
    }

    fn compact_logged(
        &mut self,
        jobs: &mut mpsc::Receiver<Job>,
    ) -> Result<CompactionOutcome, StorageError> {
        let result = self.compact(jobs);
        if let Ok(outcome) = &result {
            self.shared
                .counters
                .compacted_samples
                .fetch_add(outcome.samples as u64, Ordering::Relaxed);
        }
        match &result {
            Ok(_) => self.shared.record_success("compaction"),
            Err(err) => {
                tracing::error!(error = %err, "compaction failed");
                self.shared.record_failure("compaction", err);
            }
        }
        result
    }

    /// Packs every head sample present now into chunks, a slice of series
    /// per transaction, serving queued appends between slices. The head log
    /// is trimmed only when the whole pass is done; if the process dies
    /// mid-pass, replaying the log merges the same samples again, which
    /// changes nothing.
    fn compact(
        &mut self,
        jobs: &mut mpsc::Receiver<Job>,
    ) -> Result<CompactionOutcome, StorageError> {
        // Time spent compacting, not on the appends served in between.
        let mut busy = Instant::now();
        let mut spent = Duration::ZERO;
        let cut = read_lock(&self.shared.head).cut();
        let log_cut: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM head_log", [], |r| {
                    r.get(0)
                })?;
        let mut outcome = CompactionOutcome::default();
        // Recent tails keep what is at or after `keep_from`; trimmed first
        // so no tail starts before it while this pass updates them.
        let recent_window = self.shared.options.recent_window;
        let keep_from = (!recent_window.is_zero())
            .then(|| now_ms().saturating_sub(recent_window.as_millis() as i64));
        if let Some(keep_from) = keep_from {
            write_lock(&self.shared.recent).trim(keep_from);
        }
        for slice in cut.chunks(COMPACTION_SLICE) {
            let (moved, tails) = self.compact_slice(slice, keep_from)?;
            {
                let mut head = write_lock(&self.shared.head);
                let mut recent = write_lock(&self.shared.recent);
                for tail in tails {
                    if tail.inserted {
                        recent.insert(tail.id, &tail.samples);
                    } else {
                        recent.replace_window(tail.id, tail.span, &tail.samples, tail.start_from);
                    }
                }
                for (id, count) in slice {
                    head.drain_prefix(*id, *count);
                }
            }
            outcome.series += slice.len();
            outcome.samples += moved;
            // Let waiting writers in between slices while the head is
            // under its bound; past it they wait until the pass has drained
            // it below, so ingest faster than compaction cannot grow the
            // head (and the memory it holds) without limit.
            if self.head_full() {
                continue;
            }
            let mut group = Vec::new();
            self.gather_appends(jobs, &mut group);
            if !group.is_empty() {
                spent += busy.elapsed();
                self.append_group(group);
                busy = Instant::now();
            }
        }
        self.conn
            .execute("DELETE FROM head_log WHERE id <= ?1", params![log_cut])?;
        self.shrink_files()?;
        spent += busy.elapsed();
        let counters = &self.shared.counters;
        counters.compactions.fetch_add(1, Ordering::Relaxed);
        counters
            .compaction_micros
            .fetch_add(spent.as_micros() as u64, Ordering::Relaxed);
        tracing::debug!(
            series = outcome.series,
            samples = outcome.samples,
            "compaction pass done"
        );
        Ok(outcome)
    }

    /// Packs one slice of series into chunks in one transaction; returns
    /// the samples moved and, when recent tails are kept (from
    /// `keep_from`), the new content of each rewritten window for them.
    ///
    /// A window's row stays in the table it is in. A new one is open when
    /// it is the series' newest (the series' open window before it then
    /// closes), closed otherwise (a window behind the series' open one, or
    /// an older window of a backlog written in one pass).
    fn compact_slice(
        &mut self,
        slice: &[(SeriesId, usize)],
        keep_from: Option<i64>,
    ) -> Result<(usize, Vec<TailUpdate>), StorageError> {
        let window = self.shared.options.chunk_window;
        let tx = self.conn.transaction()?;
        let mut moved = 0;
        let mut chunk_delta: i64 = 0;
        let mut tails = Vec::new();
        // Open windows this slice moves; applied once it has committed.
        let mut opened = Vec::new();
        // Closed rows this slice writes, for the chunk cache.
        let mut closed_keys = Vec::new();
        {
            let head = read_lock(&self.shared.head);
            let recent = read_lock(&self.shared.recent);
            for (id, count) in slice {
                let samples = head.prefix(*id, *count);
                moved += samples.len();
                // Oldest window first: a series' tail may start only at its
                // open window.
                let mut by_window: BTreeMap<i64, Vec<RawSample>> = BTreeMap::new();
                for sample in samples {
                    by_window
                        .entry(window_of(sample.0, window))
                        .or_default()
                        .push(sample);
                }
                let newest = by_window.keys().next_back().copied();
                let mut open_window = self.open_windows.get(id).copied();
                for (window_number, newer) in by_window {
                    // Sorted, one sample per timestamp, the last sent winning.
                    let newer = head::merge(Vec::new(), newer);
                    let key = chunk_rows::key(*id, window_number);
                    let existing = chunk_rows::load(&tx, key)?;
                    let table = match &existing {
                        Some((table, _)) => *table,
                        None if Some(window_number) == newest
                            && open_window.is_none_or(|open| open < window_number) =>
                        {
                            Table::Open
                        }
                        None => Table::Closed,
                    };
                    let corrupt =
                        |e: chunk::ChunkError| StorageError::Corrupt(format!("chunk {key}: {e}"));
                    let span = window_span(window_number, window);
                    let tail_from = keep_from.filter(|k| span.1 > *k);
                    // The window's samples after this pass: decoded only
                    // where they are needed (a merge, or a recent tail).
                    let (old_count, row, merged) = match existing {
                        Some((Table::Open, old))
                            if newer[0].0 > old.max_ts
                                && chunk::segments(&old.data).map_err(corrupt)?
                                    < chunk::MAX_SEGMENTS =>
                        {
                            // In order: the new samples become one more
                            // segment; the older ones are not encoded again,
                            // nor decoded where the series' tail holds them.
                            let merged = match tail_from {
                                Some(_) if recent.has(*id) => {
                                    tails.push(TailUpdate {
                                        id: *id,
                                        span,
                                        samples: newer.clone(),
                                        start_from: None,
                                        inserted: true,
                                    });
                                    None
                                }
                                Some(_) => {
                                    let mut all = chunk::decode(&old.data).map_err(corrupt)?;
                                    all.extend_from_slice(&newer);
                                    Some(all)
                                }
                                None => None,
                            };
                            let row = chunk_rows::Row {
                                count: old.count + newer.len() as i64,
                                min_ts: old.min_ts,
                                max_ts: newer[newer.len() - 1].0,
                                data: chunk::append(&old.data, &newer),
                            };
                            (old.count, row, merged)
                        }
                        Some((_, old)) => {
                            let merged =
                                head::merge(chunk::decode(&old.data).map_err(corrupt)?, newer);
                            (old.count, whole_row(&merged), Some(merged))
                        }
                        None => {
                            if table == Table::Open {
                                // The series' first samples in a newer
                                // window: the window before closes.
                                if let Some(open) = open_window {
                                    let closing = chunk_rows::key(*id, open);
                                    chunk_rows::close(&tx, closing)?;
                                    closed_keys.push(closing);
                                }
                                open_window = Some(window_number);
                                opened.push((*id, window_number));
                            }
                            (0, whole_row(&newer), Some(newer))
                        }
                    };
                    chunk_rows::store(&tx, table, key, &row)?;
                    if table == Table::Closed {
                        closed_keys.push(key);
                    }
                    chunk_delta += row.count - old_count;
                    if let (Some(keep_from), Some(merged)) = (tail_from, merged) {
                        // An open window is the series' newest chunk: a tail
                        // may start there.
                        let start_from = (table == Table::Open
                            && Some(window_number) == newest
                            && !recent.has(*id))
                        .then_some(keep_from);
                        let kept = merged.partition_point(|s| s.0 < keep_from);
                        tails.push(TailUpdate {
                            id: *id,
                            span,
                            samples: merged[kept..].to_vec(),
                            start_from,
                            inserted: false,
                        });
                    }
                }
            }
        }
        // Before the commit: readers must not trust cached rows from here
        // until the keys are forgotten, when `change` ends.
        let change = (!closed_keys.is_empty()).then(|| {
            let mut change = self.shared.chunk_cache.begin_change();
            closed_keys.iter().for_each(|key| change.touch(*key));
            change
        });
        tx.commit()?;
        drop(change);
        self.open_windows.extend(opened);
        let counters = &self.shared.counters;
        if chunk_delta >= 0 {
            counters
                .chunk_samples
                .fetch_add(chunk_delta as u64, Ordering::Relaxed);
        } else {
            counters
                .chunk_samples
                .fetch_sub(chunk_delta.unsigned_abs(), Ordering::Relaxed);
        }
        Ok((moved, tails))
    }

    /// Hands the pages freed by compaction or retention back to the
    /// filesystem and empties the WAL, so the files on disk track the data
    /// rather than their high-water mark. A busy reader only postpones the
    /// WAL truncation to the next pass.
    fn shrink_files(&self) -> Result<(), StorageError> {
        // The pragma frees one page per step; it must be run to completion.
        let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = vacuum.query([])?;
        while rows.next()?.is_some() {}
        drop(rows);
        let _busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(())
    }

    /// Drops samples older than the retention window (whole chunks, and the
    /// older part of the chunk holding the cutoff), then series with no
    /// sample left, then hands free pages back to the filesystem.
    fn retention(&mut self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let cutoff = now_ms - self.shared.options.retention.as_millis() as i64;
        // Announced before anything goes: a cache filling meanwhile then
        // knows not to trust what it read before the cutoff. If the pass
        // fails, caches only distrust a little more than needed.
        self.shared.changes.record_deletion(cutoff);
        // Windows before the cutoff's window end before the cutoff; the
        // cutoff's own window is trimmed sample by sample.
        let first_kept_window = window_of(cutoff, self.shared.options.chunk_window);
        let ids: Vec<SeriesId> = read_lock(&self.shared.index).ids().collect();
        let mut outcome = RetentionOutcome::default();
        let mut dropped_samples: i64 = 0;
        let mut empty = Vec::new();
        let tx = self.conn.transaction()?;
        // Head samples past the cutoff go from memory below, but their
        // head-log rows stay until compaction: the cutoff is kept so a
        // restart does not replay them back.
        tx.execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE
             SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            params![RETENTION_CUTOFF_SETTING, cutoff],
        )?;
        // Windows before the cutoff's go whole, in one key range.
        let (samples, rows) = chunk_rows::before(&tx, first_kept_window)?;
        chunk_rows::delete_before(&tx, first_kept_window)?;
        dropped_samples += samples;
        outcome.chunks += rows as usize;
        // Open rows the cutoff's window trims to nothing; the open windows
        // before it went with the range above.
        let mut emptied_open = Vec::new();
        {
            let mut delete_series = tx.prepare_cached("DELETE FROM series WHERE id = ?1")?;
            let head = read_lock(&self.shared.head);
            for id in ids {
                // The window holding the cutoff keeps only its newer samples.
                let cut = chunk_rows::key(id, first_kept_window);
                let edge = chunk_rows::load(&tx, cut)?;
                let mut open_left = self
                    .open_windows
                    .get(&id)
                    .is_some_and(|open| *open >= first_kept_window);
                if let Some((table, row)) = edge.filter(|(_, row)| row.min_ts < cutoff) {
                    let mut kept = chunk::decode(&row.data)
                        .map_err(|e| StorageError::Corrupt(format!("chunk {cut}: {e}")))?;
                    kept.retain(|(t, _)| *t >= cutoff);
                    dropped_samples += row.count - kept.len() as i64;
                    if kept.is_empty() {
                        chunk_rows::delete(&tx, table, cut)?;
                        if table == Table::Open {
                            emptied_open.push(id);
                            open_left = false;
                        }
                        outcome.chunks += 1;
                    } else {
                        chunk_rows::store(&tx, table, cut, &whole_row(&kept))?;
                    }
                }
                let has_chunks = open_left || chunk_rows::has_closed(&tx, id, first_kept_window)?;
                if !has_chunks && !head.has_samples_since(id, cutoff) {
                    delete_series.execute(params![id as i64])?;
                    empty.push(id);
                }
            }
        }
        // Every window up to the cutoff's may have lost rows or samples.
        let mut change = self.shared.chunk_cache.begin_change();
        change.touch_through(first_kept_window);
        tx.commit()?;
        drop(change);
        self.open_windows
            .retain(|_, open| *open >= first_kept_window);
        for id in emptied_open {
            self.open_windows.remove(&id);
        }
        {
            let mut head = write_lock(&self.shared.head);
            head.drop_before(cutoff);
            let mut recent = write_lock(&self.shared.recent);
            recent.trim(cutoff);
            let mut index = write_lock(&self.shared.index);
            for id in &empty {
                recent.remove(*id);
                index.remove(*id);
            }
        }
        outcome.series = empty.len();
        self.shrink_files()?;
        let counters = &self.shared.counters;
        counters
            .chunk_samples
            .fetch_sub(dropped_samples as u64, Ordering::Relaxed);
        counters.retention_runs.fetch_add(1, Ordering::Relaxed);
        counters
            .chunks_dropped
            .fetch_add(outcome.chunks as u64, Ordering::Relaxed);
        counters
            .series_dropped
            .fetch_add(outcome.series as u64, Ordering::Relaxed);
        tracing::debug!(
            chunks = outcome.chunks,
            series = outcome.series,
            "retention pass done"
        );
        Ok(outcome)
    }
}

/// A chunk row holding `samples` (sorted, not empty) encoded whole.
fn whole_row(samples: &[RawSample]) -> chunk_rows::Row {
    chunk_rows::Row {
        count: samples.len() as i64,
        min_ts: samples[0].0,
        max_ts: samples[samples.len() - 1].0,
        data: chunk::encode(samples),
    }
}
