//! `dcmon-receiver backup`: a consistent copy of the database, taken while
//! the receiver runs.
//!
//! `VACUUM INTO` copies the database inside one read transaction. The
//! database is in WAL mode (`storage::schema::open_writer`), where a reader
//! neither blocks the writer nor sees its uncommitted work, so the copy is
//! one point in time while ingest goes on. The copy is a complete, compact
//! database file (samples, series, tokens, clients, commands) with no
//! `-wal` beside it: restoring is replacing the file.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// Why a backup failed. Nothing is left at the output path. Messages leave
/// the cause to the `#[source]`, which the caller prints after them.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The output exists; a backup never overwrites.
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// The output cannot be created (missing or unwritable directory).
    #[error("cannot create {0}")]
    Create(PathBuf, #[source] io::Error),
    /// SQLite takes file names as UTF-8 text.
    #[error("{0} is not valid UTF-8")]
    NonUtf8(PathBuf),
    /// The database cannot be opened or read.
    #[error("reading {0}")]
    Database(PathBuf, #[source] rusqlite::Error),
    /// The file is a SQLite database, but not one dcmon-receiver created.
    #[error("{0} is not a dcmon-receiver database (schema version 0)")]
    NotDcmon(PathBuf),
    /// Writing the copy failed.
    #[error("writing {0}")]
    Write(PathBuf, #[source] io::Error),
    /// `VACUUM INTO` failed.
    #[error("copying into {0}")]
    Copy(PathBuf, #[source] rusqlite::Error),
}

/// Copies `database` into the new file `output`; returns its size in bytes.
pub fn backup(database: &Path, output: &Path) -> Result<u64, BackupError> {
    let target = output
        .to_str()
        .ok_or_else(|| BackupError::NonUtf8(output.to_owned()))?;
    // Read-only and never created: a wrong path is an error, not an empty
    // database, and the live file is never written by the backup.
    let conn = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError::Database(database.to_owned(), e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| BackupError::Database(database.to_owned(), e))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| BackupError::Database(database.to_owned(), e))?;
    if version == 0 {
        return Err(BackupError::NotDcmon(database.to_owned()));
    }
    reserve(output)?;
    let copied = conn
        .execute("VACUUM INTO ?1", [target])
        .map_err(|e| BackupError::Copy(output.to_owned(), e))
        .and_then(|_| sync(output));
    match copied {
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            // The file is ours (created above); a partial copy must not
            // pass for a backup.
            let _ = std::fs::remove_file(output);
            Err(err)
        }
    }
}

/// Creates `output` empty (which `VACUUM INTO` accepts), atomically refusing
/// an existing file. Mode 0600: the copy holds token hashes and host keys.
fn reserve(output: &Path) -> Result<(), BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .map(drop)
        .map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => BackupError::Exists(output.to_owned()),
            _ => BackupError::Create(output.to_owned(), err),
        })
}

/// `VACUUM INTO` does not fsync its output; a backup should survive a
/// crash right after it is reported written.
fn sync(output: &Path) -> Result<u64, BackupError> {
    let write = |e| BackupError::Write(output.to_owned(), e);
    let file = std::fs::File::open(output).map_err(write)?;
    file.sync_all().map_err(write)?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Best effort: the entry itself is durable once its directory is.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(file.metadata().map_err(write)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_sqlite_file_is_not_backed_up() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("other.db");
        Connection::open(&database)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let output = dir.path().join("copy.db");
        assert!(matches!(
            backup(&database, &output),
            Err(BackupError::NotDcmon(_))
        ));
        assert!(!output.exists());
    }

    #[test]
    fn a_missing_database_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("missing.db");
        let output = dir.path().join("copy.db");
        assert!(matches!(
            backup(&database, &output),
            Err(BackupError::Database(..))
        ));
        assert!(!database.exists() && !output.exists());
    }
}
