//! Where chunk rows live: the two chunk tables, their keys, and the
//! statements the writer and the readers run on them.
//!
//! Samples arrive a time window at a time for every series at once, and a
//! window's chunk grows while the window is open. Rows kept in series order
//! would take each window's new rows in the middle of the b-tree, page
//! after page, and grow there, so pages split and stay part empty (15 % of
//! the chunk pages on the ingest bench). Instead:
//!
//! - `chunks` holds closed windows, keyed window first
//!   (`window << 39 | series`): a window's rows are written once, when the
//!   series moves on to the next window, in series order, at the end of the
//!   b-tree, which fills its pages; retention drops a leading key range.
//! - `open_chunks`, keyed the same way, holds each series' newest window
//!   while it grows, at most one row per series. A new window's rows go to
//!   its end and the previous window's leave it whole, so its pages empty
//!   together instead of holding shrunken rows.
//!
//! A window's row is in one of the two tables, never both, and a series'
//! open window is never older than its closed ones. Readers look a window
//! up in both, in one statement (one snapshot), so a row moving between
//! them is seen once.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use rustc_hash::FxHashMap;

use super::chunk;
use super::index::SeriesId;
use super::{LAST_WINDOW, StorageError};

/// The table a chunk row is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    /// `chunks`: closed windows.
    Closed,
    /// `open_chunks`: each series' newest window, growing.
    Open,
}

/// Bits of a key that hold the series: with the window's 24 bits above
/// them, every key is a positive `i64`. Series ids are rowids handed out
/// one after another; 2^39 of them is out of reach.
const SERIES_BITS: u32 = 39;

/// `window << 39 | series`: the chunk's rowid in either table.
pub(super) fn key(series: SeriesId, window: i64) -> i64 {
    debug_assert!(series < 1 << SERIES_BITS && (0..=LAST_WINDOW).contains(&window));
    (window << SERIES_BITS) | series as i64
}

/// The key of the same series' row in the next window.
const NEXT_WINDOW: i64 = 1 << SERIES_BITS;

/// The window of a key.
pub(super) fn window_of_key(key: i64) -> i64 {
    key >> SERIES_BITS
}

/// The series of a key.
pub(super) fn series_of_key(key: i64) -> SeriesId {
    (key & (NEXT_WINDOW - 1)) as SeriesId
}

/// One chunk row.
#[derive(Debug)]
pub(super) struct Row {
    pub count: i64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub data: Vec<u8>,
}

/// A window's row, looked up where it is (open first).
pub(super) fn load(tx: &Transaction<'_>, key: i64) -> Result<Option<(Table, Row)>, StorageError> {
    for table in [Table::Open, Table::Closed] {
        if let Some(row) = load_from(tx, table, key)? {
            return Ok(Some((table, row)));
        }
    }
    Ok(None)
}

/// A window's row in `table`, if it is there.
fn load_from(tx: &Transaction<'_>, table: Table, key: i64) -> Result<Option<Row>, StorageError> {
    let sql = match table {
        Table::Open => "SELECT count, min_ts, max_ts, data FROM open_chunks WHERE key = ?1",
        Table::Closed => "SELECT count, min_ts, max_ts, data FROM chunks WHERE key = ?1",
    };
    Ok(tx
        .prepare_cached(sql)?
        .query_row(params![key], |r| {
            Ok(Row {
                count: r.get(0)?,
                min_ts: r.get(1)?,
                max_ts: r.get(2)?,
                data: r.get(3)?,
            })
        })
        .optional()?)
}

/// Writes a window's row into `table` (replacing the one there).
pub(super) fn store(
    tx: &Transaction<'_>,
    table: Table,
    key: i64,
    row: &Row,
) -> Result<(), StorageError> {
    let sql = match table {
        Table::Open => {
            "INSERT OR REPLACE INTO open_chunks (key, min_ts, max_ts, count, data) VALUES (?1, ?2, ?3, ?4, ?5)"
        }
        Table::Closed => {
            "INSERT OR REPLACE INTO chunks (key, min_ts, max_ts, count, data) VALUES (?1, ?2, ?3, ?4, ?5)"
        }
    };
    tx.prepare_cached(sql)?
        .execute(params![key, row.min_ts, row.max_ts, row.count, row.data])?;
    Ok(())
}

/// Deletes a window's row from `table`.
pub(super) fn delete(tx: &Transaction<'_>, table: Table, key: i64) -> Result<(), StorageError> {
    let sql = match table {
        Table::Open => "DELETE FROM open_chunks WHERE key = ?1",
        Table::Closed => "DELETE FROM chunks WHERE key = ?1",
    };
    tx.prepare_cached(sql)?.execute(params![key])?;
    Ok(())
}

/// Moves a series' open window to the closed table, written whole if it
/// was written in segments.
pub(super) fn close(tx: &Transaction<'_>, key: i64) -> Result<(), StorageError> {
    let Some(mut row) = load_from(tx, Table::Open, key)? else {
        return Ok(());
    };
    let corrupt = |e: chunk::ChunkError| StorageError::Corrupt(format!("chunk {key}: {e}"));
    if chunk::segments(&row.data).map_err(corrupt)? > 1 {
        row.data = chunk::encode(&chunk::decode(&row.data).map_err(corrupt)?);
    }
    // A plain insert: a closed row for the same window would break the
    // one-table rule, and is refused rather than overwritten.
    tx.prepare_cached(
        "INSERT INTO chunks (key, min_ts, max_ts, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![key, row.min_ts, row.max_ts, row.count, row.data])?;
    delete(tx, Table::Open, key)
}

/// Every series' open window, as the writer tracks it.
pub(super) fn open_windows(conn: &Connection) -> Result<FxHashMap<SeriesId, i64>, StorageError> {
    let mut statement = conn.prepare("SELECT key FROM open_chunks")?;
    let rows = statement.query_map([], |r| r.get::<_, i64>(0))?;
    let mut open = FxHashMap::default();
    for key in rows {
        let key = key?;
        open.insert(series_of_key(key), window_of_key(key));
    }
    Ok(open)
}

/// Samples and rows in both tables' windows before `window` (what
/// retention drops whole).
pub(super) fn before(tx: &Transaction<'_>, window: i64) -> Result<(i64, i64), StorageError> {
    let end = key(0, window);
    let mut samples = 0;
    let mut rows = 0;
    for sql in [
        "SELECT COALESCE(SUM(count), 0), COUNT(*) FROM chunks WHERE key < ?1",
        "SELECT COALESCE(SUM(count), 0), COUNT(*) FROM open_chunks WHERE key < ?1",
    ] {
        let (s, r): (i64, i64) = tx
            .prepare_cached(sql)?
            .query_row(params![end], |r| Ok((r.get(0)?, r.get(1)?)))?;
        samples += s;
        rows += r;
    }
    Ok((samples, rows))
}

/// Deletes both tables' windows before `window`.
pub(super) fn delete_before(tx: &Transaction<'_>, window: i64) -> Result<(), StorageError> {
    let end = key(0, window);
    tx.prepare_cached("DELETE FROM chunks WHERE key < ?1")?
        .execute(params![end])?;
    tx.prepare_cached("DELETE FROM open_chunks WHERE key < ?1")?
        .execute(params![end])?;
    Ok(())
}

/// Whether the series has a closed row in window `first` or later. Each
/// search lands on the next row that exists, so windows without rows are
/// skipped however far apart the rows are.
pub(super) fn has_closed(
    tx: &Transaction<'_>,
    series: SeriesId,
    first: i64,
) -> Result<bool, StorageError> {
    let mut next =
        tx.prepare_cached("SELECT key FROM chunks WHERE key >= ?1 ORDER BY key LIMIT 1")?;
    let mut window = first;
    while window <= LAST_WINDOW {
        let found: Option<i64> = next
            .query_row(params![key(series, window)], |r| r.get(0))
            .optional()?;
        let Some(found) = found else {
            return Ok(false);
        };
        let (at, other) = (window_of_key(found), series_of_key(found));
        if other == series {
            return Ok(true);
        }
        // A later window: the series may be further on in it, unless the
        // row found is already past the series.
        window = if at > window && other < series {
            at
        } else {
            at + 1
        };
    }
    Ok(false)
}

/// The rows of the series `lo..=lo + span` in windows `first..=last`
/// overlapping `[start_ms, end_ms]`, from both tables in one statement:
/// the windows' key ranges are generated in the statement and each is
/// searched in both. Rows come closed first, then open, each part in
/// window order and by series within a window.
const RUN_ROWS: &str = "
    WITH RECURSIVE windows(lo) AS (
        SELECT ?1 UNION ALL SELECT lo + ?5 FROM windows WHERE lo < ?2
    )
    SELECT c.key, c.data, c.min_ts, c.max_ts, c.count
        FROM windows JOIN chunks AS c ON c.key BETWEEN windows.lo AND windows.lo + ?6
        WHERE c.max_ts >= ?3 AND c.min_ts <= ?4
    UNION ALL
    SELECT o.key, o.data, o.min_ts, o.max_ts, o.count
        FROM windows JOIN open_chunks AS o ON o.key BETWEEN windows.lo AND windows.lo + ?6
        WHERE o.max_ts >= ?3 AND o.min_ts <= ?4";

/// A chunk row as a read sees it.
pub(super) struct Found<'a> {
    pub key: i64,
    pub data: &'a [u8],
    pub min_ts: i64,
    pub max_ts: i64,
    pub count: i64,
}

/// The rows of the series `lo..=lo + span`: closed ones in windows
/// `closed` (none when empty), open ones in windows `open`, whatever
/// their times, from both tables in one statement (one snapshot). Each
/// window's key range is generated in the statement and searched. Rows
/// come closed first, then open, each part in window order and by series
/// within a window; the last column says which table a row is from.
const PART_ROWS: &str = "
    WITH RECURSIVE closed_windows(lo) AS (
        SELECT ?1 WHERE ?1 <= ?2 UNION ALL SELECT lo + ?3 FROM closed_windows WHERE lo < ?2
    ), open_windows(lo) AS (
        SELECT ?4 UNION ALL SELECT lo + ?3 FROM open_windows WHERE lo < ?5
    )
    SELECT c.key, c.data, c.min_ts, c.max_ts, c.count, 0
        FROM closed_windows JOIN chunks AS c
        ON c.key BETWEEN closed_windows.lo AND closed_windows.lo + ?6
    UNION ALL
    SELECT o.key, o.data, o.min_ts, o.max_ts, o.count, 1
        FROM open_windows JOIN open_chunks AS o
        ON o.key BETWEEN open_windows.lo AND open_windows.lo + ?6";

/// Calls `each(position in run, table, row)` for the closed rows of the
/// series in `run` (sorted ids) in windows `closed.0..=closed.1` (none if
/// `None`) and their open rows in windows `open.0..=open.1`, whatever the
/// rows' times. Every series between the run's first and last id is
/// searched, those not in the run skipped: a run is worth it where its
/// ids are close together.
pub(super) fn for_each_in(
    conn: &Connection,
    run: &[SeriesId],
    closed: Option<(i64, i64)>,
    open: (i64, i64),
    mut each: impl FnMut(usize, Table, Found<'_>) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let (Some(&first), Some(&last)) = (run.first(), run.last()) else {
        return Ok(());
    };
    // An empty window range for the closed part: its first key past its last.
    let closed = closed.map_or((1, 0), |(a, b)| (key(first, a), key(first, b)));
    let mut statement = conn.prepare_cached(PART_ROWS)?;
    let mut rows = statement.query(params![
        closed.0,
        closed.1,
        NEXT_WINDOW,
        key(first, open.0),
        key(first, open.1),
        (last - first) as i64,
    ])?;
    while let Some(row) = rows.next()? {
        let key: i64 = row.get(0)?;
        let Ok(position) = run.binary_search(&series_of_key(key)) else {
            continue;
        };
        let data = row
            .get_ref(1)?
            .as_blob()
            .map_err(|e| StorageError::Corrupt(format!("chunk {key}: {e}")))?;
        let table = if row.get::<_, i64>(5)? == 0 {
            Table::Closed
        } else {
            Table::Open
        };
        each(
            position,
            table,
            Found {
                key,
                data,
                min_ts: row.get(2)?,
                max_ts: row.get(3)?,
                count: row.get(4)?,
            },
        )?;
    }
    Ok(())
}

/// Whether the series has a row in windows `first..=last` overlapping
/// `[start_ms, end_ms]` (by the rows' time bounds).
pub(super) fn any_in(
    conn: &Connection,
    series: SeriesId,
    windows: (i64, i64),
    range: (i64, i64),
) -> Result<bool, StorageError> {
    // `exists` stops at the first row: the statement goes no further.
    let mut statement = conn.prepare_cached(RUN_ROWS)?;
    Ok(statement.exists(run_params((series, series), windows, range))?)
}

/// [`RUN_ROWS`]'s parameters for the series `ids.0..=ids.1`.
fn run_params(ids: (SeriesId, SeriesId), windows: (i64, i64), range: (i64, i64)) -> [i64; 6] {
    [
        key(ids.0, windows.0),
        key(ids.0, windows.1),
        range.0,
        range.1,
        NEXT_WINDOW,
        (ids.1 - ids.0) as i64,
    ]
}

/// Oldest and newest timestamps in both tables.
pub(super) fn time_bounds(conn: &Connection) -> Result<(Option<i64>, Option<i64>), StorageError> {
    Ok(conn.query_row(
        "SELECT MIN(oldest), MAX(newest) FROM (
             SELECT MIN(min_ts) AS oldest, MAX(max_ts) AS newest FROM chunks
             UNION ALL SELECT MIN(min_ts), MAX(max_ts) FROM open_chunks)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Samples in both tables.
pub(super) fn sample_count(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn.query_row(
        "SELECT (SELECT COALESCE(SUM(count), 0) FROM chunks)
              + (SELECT COALESCE(SUM(count), 0) FROM open_chunks)",
        [],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_put_windows_first_and_give_back_their_parts() {
        let a = key(7, 100);
        assert_eq!((window_of_key(a), series_of_key(a)), (100, 7));
        assert!(key((1 << SERIES_BITS) - 1, 99) < key(0, 100));
        assert_eq!(key(7, 101) - a, NEXT_WINDOW);
        let last = key((1 << SERIES_BITS) - 1, LAST_WINDOW);
        assert!(last > 0, "the largest key is a positive i64");
        assert_eq!(window_of_key(last), LAST_WINDOW);
    }

    #[test]
    fn a_closed_row_is_found_however_far_apart_the_windows_are() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::create_at_version(&conn, super::super::schema::CURRENT_VERSION);
        let tx = conn.transaction().unwrap();
        for (series, window) in [(9, 50), (5, 100), (3, 1 << 20)] {
            tx.execute(
                "INSERT INTO chunks (key, min_ts, max_ts, count, data) VALUES (?1, 0, 0, 1, x'00')",
                params![key(series, window)],
            )
            .unwrap();
        }
        let has = |series, first| has_closed(&tx, series, first).unwrap();
        assert!(has(5, 0) && has(5, 100) && !has(5, 101));
        assert!(has(9, 0) && !has(9, 51));
        // Found past two earlier rows of other series, a million windows on.
        assert!(has(3, 0) && has(3, 1 << 20) && !has(3, (1 << 20) + 1));
        assert!(!has(7, 0) && !has(4, 0));
    }
}
