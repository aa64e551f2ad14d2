//! The database file: connection settings and versioned migrations.
//!
//! Layout (version 1):
//! - `series(id, labels)`: every series once; `labels` is a JSON array of
//!   `[name, value]` pairs sorted by name.
//! - `head_log(id, data)`: the write-ahead record of acknowledged samples not
//!   yet packed into chunks; one snappy-compressed blob per write
//!   transaction (see `head::encode_log`).
//! - `chunks(key, min_ts, max_ts, count, data)`: compressed samples of one
//!   series in one time window. `key = series_id << 24 | window number`, so a
//!   series' chunks are adjacent and in time order in the rowid b-tree, and
//!   no separate index is needed (until version 6).
//! - `metadata(family, type, help, unit)`: what senders say about metric
//!   families.
//!
//! Version 2 adds `tokens(name, scope, hash, created_ms, revoked_ms)`: the
//! scoped API tokens, by SHA-256 hash.
//!
//! Version 3 adds the host identities: `clients` (one row per host name,
//! its public key and activity), `registration_nonces` (nonces of accepted
//! registrations, so a captured request cannot be replayed) and `settings`
//! (receiver-wide values such as the JWT audience).
//!
//! Version 4 adds `commands`: the command queue, one row per command with
//! the time of every transition and the host's result.
//!
//! Version 5 adds `command_batches` and `command_batch_members`: commands
//! created together for many hosts, a command in at most one batch.
//!
//! Version 6 keys chunks window first, `key = window << 39 | series_id`,
//! and keeps each series' newest, growing window apart in `open_chunks`
//! (same columns; see `chunk_rows` for why). Every version-5 chunk moves
//! to `chunks` under its new key.
//!
//! Samples are stored as `f64::to_bits()` (inside chunks and log blobs),
//! never as REAL: SQLite turns NaN into NULL, which would lose stale markers.

use std::path::Path;

use rusqlite::Connection;

/// Schema version this build writes.
pub const CURRENT_VERSION: i64 = 6;

/// Migration `n` (1-based) brings a database from version `n-1` to `n`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE series (
        id     INTEGER PRIMARY KEY,
        labels TEXT NOT NULL
    );
    CREATE TABLE head_log (
        id   INTEGER PRIMARY KEY,
        data BLOB NOT NULL
    );
    CREATE TABLE chunks (
        key    INTEGER PRIMARY KEY,
        min_ts INTEGER NOT NULL,
        max_ts INTEGER NOT NULL,
        count  INTEGER NOT NULL,
        data   BLOB NOT NULL
    );
    CREATE TABLE metadata (
        family TEXT PRIMARY KEY,
        type   TEXT NOT NULL,
        help   TEXT NOT NULL,
        unit   TEXT NOT NULL
    );
",
    "
    CREATE TABLE tokens (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        scope      TEXT NOT NULL,
        hash       BLOB NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
",
    "
    CREATE TABLE clients (
        id               TEXT PRIMARY KEY,
        hostname         TEXT NOT NULL UNIQUE,
        machine_id       TEXT NOT NULL,
        public_key       TEXT NOT NULL,
        fingerprint      TEXT NOT NULL,
        exporter_version TEXT NOT NULL,
        registered_ms    INTEGER NOT NULL,
        last_seen_ms     INTEGER,
        last_address     TEXT,
        revoked_ms       INTEGER
    );
    CREATE TABLE registration_nonces (
        nonce   TEXT PRIMARY KEY,
        seen_ms INTEGER NOT NULL
    );
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
",
    "
    CREATE TABLE commands (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id    TEXT NOT NULL,
        command      TEXT NOT NULL,
        status       TEXT NOT NULL,
        created_by   TEXT NOT NULL,
        created_ms   INTEGER NOT NULL,
        expires_ms   INTEGER NOT NULL,
        delivered_ms INTEGER,
        deadline_ms  INTEGER,
        finished_ms  INTEGER,
        exit_code    INTEGER,
        output       TEXT,
        error        TEXT
    );
    CREATE INDEX commands_by_client ON commands (client_id, status, id);
",
    "
    CREATE TABLE command_batches (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        created_by TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE command_batch_members (
        command_id INTEGER PRIMARY KEY,
        batch_id   INTEGER NOT NULL
    );
    CREATE INDEX command_batch_members_by_batch ON command_batch_members (batch_id, command_id);
",
    "
    CREATE TABLE chunks_by_window (
        key    INTEGER PRIMARY KEY,
        min_ts INTEGER NOT NULL,
        max_ts INTEGER NOT NULL,
        count  INTEGER NOT NULL,
        data   BLOB NOT NULL
    );
    INSERT INTO chunks_by_window (key, min_ts, max_ts, count, data)
        SELECT ((key & 16777215) << 39) | (key >> 24), min_ts, max_ts, count, data
        FROM chunks ORDER BY 1;
    DROP TABLE chunks;
    ALTER TABLE chunks_by_window RENAME TO chunks;
    CREATE TABLE open_chunks (
        key    INTEGER PRIMARY KEY,
        min_ts INTEGER NOT NULL,
        max_ts INTEGER NOT NULL,
        count  INTEGER NOT NULL,
        data   BLOB NOT NULL
    );
",
];

/// Page size of a new database file. Chunk rows are a few hundred bytes
/// and arrive out of key order, so 4 KiB pages end up a fifth empty;
/// measured on the ingest bench (100 hosts x 300 series x 6 h), 16 KiB
/// pages take 1.12 bytes per sample where 4 KiB take 1.20 (64 KiB: 1.15).
pub const PAGE_SIZE: i64 = 16384;

/// Opens (creating if needed) the database for writing and migrates it.
pub fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Must precede the first table: lets retention hand pages back with
    // `PRAGMA incremental_vacuum` instead of the file only ever growing.
    // Must precede the first table, and `auto_vacuum`: a new file gets
    // PAGE_SIZE pages (a file that exists keeps its own).
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before the write is acknowledged.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    migrate(&conn)?;
    Ok(conn)
}

/// Opens a read connection (the writer must have created the file).
pub fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > CURRENT_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "database schema version {version} is newer than this dcmon-receiver understands ({CURRENT_VERSION})"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let target = index as i64 + 1;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
        tracing::info!(version = target, "database schema migrated");
    }
    Ok(())
}

/// Creates the tables of schema `version` (an older release's database),
/// for migration tests.
#[cfg(test)]
pub(super) fn create_at_version(conn: &Connection, version: i64) {
    for sql in &MIGRATIONS[..version as usize] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", version).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, CURRENT_VERSION);
        let vacuum: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(vacuum, 2, "incremental auto-vacuum");
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        assert_eq!(page_size, PAGE_SIZE);
        drop(conn);
        open_writer(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(open_writer(&path).is_err());
    }

    /// A database left at each older version by an earlier release opens
    /// under this one, reaches the current version and keeps its rows. The
    /// old databases are built from today's migration list, so this cannot
    /// notice a released migration edited after the fact.
    #[test]
    fn every_older_version_migrates_and_keeps_its_rows() {
        for from in 1..CURRENT_VERSION {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("old.db");
            let conn = Connection::open(&path).unwrap();
            create_at_version(&conn, from);
            conn.execute(
                "INSERT INTO series (id, labels) VALUES (7, '[[\"__name__\",\"up\"]]')",
                [],
            )
            .unwrap();
            // Series 7's chunks in windows 83,000 and 83,001, keyed series
            // first as versions 1 to 5 key them.
            for window in [83_001i64, 83_000] {
                conn.execute(
                    "INSERT INTO chunks (key, min_ts, max_ts, count, data) VALUES (?1, ?2, ?2, 1, x'01')",
                    rusqlite::params![7 << 24 | window, window],
                )
                .unwrap();
            }
            if from >= 2 {
                conn.execute(
                    "INSERT INTO tokens (name, scope, hash, created_ms) VALUES ('grafana', 'read', x'00', 1)",
                    [],
                )
                .unwrap();
            }
            drop(conn);

            let conn = open_writer(&path).unwrap();
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, CURRENT_VERSION, "from version {from}");
            let page_size: i64 = conn
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap();
            assert_eq!(page_size, 4096, "an existing file keeps its pages");
            let labels: String = conn
                .query_row("SELECT labels FROM series WHERE id = 7", [], |r| r.get(0))
                .unwrap();
            assert_eq!(labels, r#"[["__name__","up"]]"#, "from version {from}");
            let tokens: i64 = conn
                .query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))
                .unwrap();
            assert_eq!(tokens, i64::from(from >= 2), "from version {from}");
            let chunks: Vec<(i64, i64)> = conn
                .prepare("SELECT key, min_ts FROM chunks ORDER BY key")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(
                chunks,
                [(83_000 << 39 | 7, 83_000), (83_001 << 39 | 7, 83_001)],
                "chunks keyed window first, from version {from}"
            );
            // The newest tables exist and are empty.
            for table in [
                "commands",
                "command_batches",
                "command_batch_members",
                "open_chunks",
            ] {
                let rows: i64 = conn
                    .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                    .unwrap();
                assert_eq!(rows, 0, "{table}");
            }
        }
    }
}
