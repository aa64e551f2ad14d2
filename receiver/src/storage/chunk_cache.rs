//! Closed windows' chunk rows kept in memory between reads.
//!
//! A row of `chunks` is written once, when its window closes, and seldom
//! again (a late sample, retention); reads come back to the same rows
//! dashboard after dashboard. Read from SQLite, each row costs a b-tree
//! search and a copy of the whole 16 KiB page it sits on, most of it other
//! series' rows. This cache keeps each row read (and each row found
//! missing) by key, bounded by bytes (`--storage.chunk-cache-size`), so a
//! read that finds its rows here asks SQLite only for the open windows.
//! One selection adds at most a quarter of the cache ([`Admission`]).
//!
//! Staying true to the file without locking readers out: every change to
//! `chunks` is bracketed by [`ChunkCache::begin_change`] before its commit
//! and the change's end after it, which removes the keys it touched. The
//! epoch counts brackets, odd while one is open. A read takes the epoch
//! first ([`Ticket`]), uses what the cache holds, reads the rest in one
//! statement, and trusts the mix only if the epoch has not moved since:
//! then no commit touched `chunks` between the ticket and the statement's
//! snapshot, so cached and read rows are of one state. What it read goes
//! into the cache only under the same condition, checked under the lock
//! the change's end takes, so a change always removes its keys after any
//! insert that saw the old epoch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quick_cache::Weighter;
use rusqlite::Connection;
use rustc_hash::FxBuildHasher;

use super::StorageError;
use super::chunk_rows::{self, Table};
use super::index::SeriesId;

/// A closed row as the cache keeps it.
#[derive(Debug, Clone)]
pub(super) struct ClosedRow {
    pub min_ts: i64,
    pub max_ts: i64,
    pub count: i64,
    pub data: Arc<[u8]>,
}

/// What the cache knows of a key: its closed row, or that there is none.
type Entry = Option<ClosedRow>;

/// Bytes an entry costs besides its data (key, table slot, `Arc` header):
/// a rough figure, so that entries for missing rows count too.
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Debug, Clone)]
struct ByBytes;

impl Weighter<i64, Entry> for ByBytes {
    fn weight(&self, _key: &i64, entry: &Entry) -> u64 {
        ENTRY_OVERHEAD + entry.as_ref().map_or(0, |row| row.data.len() as u64)
    }
}

type Rows = quick_cache::sync::Cache<i64, Entry, ByBytes, FxBuildHasher>;

/// The cache of closed chunk rows, shared by the writer and the readers.
#[derive(Debug)]
pub(super) struct ChunkCache {
    /// `None` when turned off (a size of 0).
    rows: Option<Rows>,
    /// Changes to `chunks` begun and ended; odd while one is under way.
    epoch: AtomicU64,
    /// Orders inserts against the end of a change (see the module notes).
    gate: Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What one selection may still add to the cache, in bytes: a quarter of
/// it. A read bigger than the cache (a fleet-wide panel over a week) would
/// otherwise push out everything else only to miss its own rows on its
/// next run, as a scan through an LRU does; bounded, its first quarter is
/// kept and the other panels' rows stay.
#[derive(Debug)]
pub(super) struct Admission(AtomicU64);

impl Admission {
    /// Takes `bytes` of the allowance; `false` (taking nothing) when less
    /// is left.
    fn take(&self, bytes: u64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }
}

/// The epoch a read started at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket(u64);

/// Counters of the cache, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCacheStats {
    /// Keys answered by the cache.
    pub hits: u64,
    /// Keys read from the file.
    pub misses: u64,
    /// Bytes the entries weigh now.
    pub bytes: u64,
    /// Entries held now.
    pub entries: u64,
}

/// Rough size of an average entry, for the table's first sizing.
const TYPICAL_ENTRY: u64 = 1024;

impl ChunkCache {
    /// A cache of at most `bytes` (0: off).
    pub(super) fn new(bytes: u64) -> Self {
        let rows = (bytes > 0).then(|| {
            let items = (bytes / TYPICAL_ENTRY).max(16) as usize;
            Rows::with(items, bytes, ByBytes, FxBuildHasher, Default::default())
        });
        Self {
            rows,
            epoch: AtomicU64::new(0),
            gate: Mutex::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A new selection's allowance.
    pub(super) fn admission(&self) -> Admission {
        Admission(AtomicU64::new(
            self.rows.as_ref().map_or(0, |rows| rows.capacity() / 4),
        ))
    }

    /// The counters now.
    pub(super) fn stats(&self) -> ChunkCacheStats {
        ChunkCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.rows.as_ref().map_or(0, Rows::weight),
            entries: self.rows.as_ref().map_or(0, |r| r.len() as u64),
        }
    }

    /// A ticket for a read, unless the cache is off or a change is under
    /// way (the read then goes to the file alone).
    fn ticket(&self) -> Option<(Ticket, &Rows)> {
        let rows = self.rows.as_ref()?;
        let epoch = self.epoch.load(Ordering::Acquire);
        epoch.is_multiple_of(2).then_some((Ticket(epoch), rows))
    }

    /// Whether nothing has changed `chunks` since `ticket` was taken.
    fn still(&self, ticket: Ticket) -> bool {
        self.epoch.load(Ordering::Acquire) == ticket.0
    }

    /// Keeps `entries` read under `ticket`, if nothing changed since.
    fn keep(&self, ticket: Ticket, rows: &Rows, entries: Vec<(i64, Entry)>) {
        let _gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if self.still(ticket) {
            for (key, entry) in entries {
                rows.insert(key, entry);
            }
        }
    }

    /// Opens a change to `chunks`; call before its commit. The change ends
    /// when the returned value is ended or dropped (a failed commit too:
    /// the keys then go all the same).
    pub(super) fn begin_change(&self) -> Change<'_> {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Change {
            cache: self,
            keys: Vec::new(),
            windows_through: None,
        }
    }
}

/// A change to `chunks` under way: what it touched is forgotten when it
/// ends.
#[derive(Debug)]
pub(super) struct Change<'a> {
    cache: &'a ChunkCache,
    keys: Vec<i64>,
    /// Every key of this window and those before it.
    windows_through: Option<i64>,
}

impl Change<'_> {
    /// The change writes or deletes the row of `key`.
    pub(super) fn touch(&mut self, key: i64) {
        self.keys.push(key);
    }

    /// The change may write or delete any row of windows up to `window`.
    pub(super) fn touch_through(&mut self, window: i64) {
        self.windows_through = Some(self.windows_through.map_or(window, |w| w.max(window)));
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        let cache = self.cache;
        let _gate = cache.gate.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rows) = &cache.rows {
            for key in &self.keys {
                rows.remove(key);
            }
            if let Some(last) = self.windows_through {
                rows.retain(|key, _| chunk_rows::window_of_key(*key) > last);
            }
        }
        cache.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Most windows a read looks up key by key; a read over more (a range
/// of years, say, most of it empty) goes to the file, whose search skips
/// empty windows cheaply. Ninety days of six-hour windows is 360.
const MAX_WINDOWS_LOOKED_UP: i64 = 1024;

/// A chunk row a read found, with the position of its series in the run.
#[derive(Debug)]
pub(super) struct RunRow {
    pub position: usize,
    pub key: i64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub count: i64,
    pub data: Arc<[u8]>,
}

/// The rows of the series `run` (sorted ids, close together) in windows
/// `windows.0..=windows.1` overlapping `[range.0, range.1]`, from `cache`
/// where it holds them and from the file otherwise; rows come in no
/// particular order.
pub(super) fn read_run(
    conn: &Connection,
    (cache, admission): (&ChunkCache, &Admission),
    run: &[SeriesId],
    windows: (i64, i64),
    range: (i64, i64),
) -> Result<Vec<RunRow>, StorageError> {
    if let Some((ticket, rows)) = cache.ticket()
        && windows.1 - windows.0 < MAX_WINDOWS_LOOKED_UP
        && let Some(found) = read_run_cached(
            conn,
            (cache, admission),
            (ticket, rows),
            run,
            windows,
            range,
        )?
    {
        return Ok(found);
    }
    let mut found = Vec::new();
    chunk_rows::for_each_in(conn, run, Some(windows), windows, |position, _, row| {
        if overlaps(row.min_ts, row.max_ts, range) {
            found.push(run_row(position, &row, Arc::from(row.data)));
        }
        Ok(())
    })?;
    Ok(found)
}

/// [`read_run`] through the cache; `None` when a change to `chunks` began
/// meanwhile (the caller then reads the file alone).
fn read_run_cached(
    conn: &Connection,
    (cache, admission): (&ChunkCache, &Admission),
    (ticket, rows): (Ticket, &Rows),
    run: &[SeriesId],
    windows: (i64, i64),
    range: (i64, i64),
) -> Result<Option<Vec<RunRow>>, StorageError> {
    let mut found = Vec::new();
    // Keys the cache does not know, in key order (window, then series).
    let mut unknown = Vec::new();
    for window in windows.0..=windows.1 {
        for (position, &id) in run.iter().enumerate() {
            let key = chunk_rows::key(id, window);
            match rows.get(&key) {
                Some(Some(row)) => {
                    if overlaps(row.min_ts, row.max_ts, range) {
                        found.push(RunRow {
                            position,
                            key,
                            min_ts: row.min_ts,
                            max_ts: row.max_ts,
                            count: row.count,
                            data: row.data,
                        });
                    }
                }
                Some(None) => {}
                None => unknown.push(key),
            }
        }
    }
    let known = (run.len() * (windows.1 - windows.0 + 1) as usize - unknown.len()) as u64;
    cache.hits.fetch_add(known, Ordering::Relaxed);
    cache
        .misses
        .fetch_add(unknown.len() as u64, Ordering::Relaxed);
    // Closed rows are read whole over the windows of the unknown keys
    // (the cache keeps them whatever the range), open rows as before.
    let closed = unknown
        .first()
        .zip(unknown.last())
        .map(|(a, b)| (chunk_rows::window_of_key(*a), chunk_rows::window_of_key(*b)));
    let mut read: Vec<(i64, Entry)> = Vec::new();
    chunk_rows::for_each_in(conn, run, closed, windows, |position, table, row| {
        if table == Table::Closed && unknown.binary_search(&row.key).is_err() {
            // Cached already (a window with unknown keys of other series).
            return Ok(());
        }
        let data: Arc<[u8]> = Arc::from(row.data);
        if table == Table::Closed {
            read.push((
                row.key,
                Some(ClosedRow {
                    min_ts: row.min_ts,
                    max_ts: row.max_ts,
                    count: row.count,
                    data: Arc::clone(&data),
                }),
            ));
        }
        if overlaps(row.min_ts, row.max_ts, range) {
            found.push(run_row(position, &row, data));
        }
        Ok(())
    })?;
    if !cache.still(ticket) {
        return Ok(None);
    }
    // Unknown keys with no closed row: known missing from now on.
    read.sort_unstable_by_key(|(key, _)| *key);
    let missing: Vec<(i64, Entry)> = unknown
        .iter()
        .filter(|key| read.binary_search_by_key(key, |(k, _)| k).is_err())
        .map(|&key| (key, None))
        .collect();
    read.extend(missing);
    let weight = read
        .iter()
        .map(|(key, entry)| ByBytes.weight(key, entry))
        .sum();
    if admission.take(weight) {
        cache.keep(ticket, rows, read);
    }
    Ok(Some(found))
}

fn overlaps(min_ts: i64, max_ts: i64, range: (i64, i64)) -> bool {
    max_ts >= range.0 && min_ts <= range.1
}

fn run_row(position: usize, row: &chunk_rows::Found<'_>, data: Arc<[u8]>) -> RunRow {
    RunRow {
        position,
        key: row.key,
        min_ts: row.min_ts,
        max_ts: row.max_ts,
        count: row.count,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(bytes: usize) -> Entry {
        Some(ClosedRow {
            min_ts: 0,
            max_ts: 1,
            count: 1,
            data: vec![7u8; bytes].into(),
        })
    }

    fn held(cache: &ChunkCache, key: i64) -> bool {
        cache.rows.as_ref().unwrap().get(&key).is_some()
    }

    #[test]
    fn what_a_read_saw_is_kept_only_if_no_change_began_since_its_ticket() {
        let cache = ChunkCache::new(1 << 20);
        let (ticket, rows) = cache.ticket().unwrap();
        cache.keep(ticket, rows, vec![(1, row(10)), (2, None)]);
        assert!(held(&cache, 1) && held(&cache, 2));

        // A change began and ended after the ticket: the read may have
        // seen the file before it, so what it saw is not kept.
        let (stale, rows) = cache.ticket().unwrap();
        let mut change = cache.begin_change();
        change.touch(1);
        assert!(cache.ticket().is_none(), "no ticket while a change is open");
        drop(change);
        assert!(!held(&cache, 1), "a change forgets the keys it touched");
        assert!(held(&cache, 2));
        assert!(!cache.still(stale));
        cache.keep(stale, rows, vec![(3, row(10))]);
        assert!(!held(&cache, 3));
        // A read after the change keeps what it saw.
        let (fresh, rows) = cache.ticket().unwrap();
        cache.keep(fresh, rows, vec![(3, row(10))]);
        assert!(held(&cache, 3));
    }

    #[test]
    fn a_change_through_a_window_forgets_every_key_up_to_it() {
        let cache = ChunkCache::new(1 << 20);
        let (ticket, rows) = cache.ticket().unwrap();
        let keys: Vec<i64> = (0..6).map(|w| chunk_rows::key(3, w)).collect();
        cache.keep(ticket, rows, keys.iter().map(|k| (*k, row(5))).collect());
        let mut change = cache.begin_change();
        change.touch_through(3);
        drop(change);
        let left: Vec<bool> = keys.iter().map(|k| held(&cache, *k)).collect();
        assert_eq!(left, [false, false, false, false, true, true]);
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = ChunkCache::new(64 << 10);
        for key in 0..2_000 {
            let (ticket, rows) = cache.ticket().unwrap();
            cache.keep(ticket, rows, vec![(key, row(700))]);
        }
        let stats = cache.stats();
        assert!(stats.bytes <= 64 << 10, "{stats:?}");
        assert!(stats.entries > 10, "{stats:?}");
        // One selection may add a quarter of it.
        let admission = cache.admission();
        assert!(admission.take(10 << 10) && admission.take(6 << 10));
        assert!(!admission.take(1), "the quarter is spent");
        assert!(cache.admission().take(16 << 10), "the next selection's own");
        // Turned off, it holds nothing and hands out no ticket.
        let off = ChunkCache::new(0);
        assert!(off.ticket().is_none());
        assert_eq!(off.stats(), ChunkCacheStats::default());
    }
}
