//! The exporter's state directory (`--state-dir`): the remote-write spool
//! and the host's key and enrollment live here. Anyone able to write to it
//! could plant batches or swap keys, so a world-writable directory is
//! refused.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// Other users could write to it.
    #[error(
        "state directory {path} is world-writable (mode {mode:o}); refusing to use it (fix with `chmod o-w {path}`)"
    )]
    WorldWritable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It could not be created or inspected.
    #[error("state directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Creates `path` (mode 0700) if missing, and checks it is a directory that
/// only its owner and group can write to.
pub fn prepare(path: &Path) -> Result<(), StateDirError> {
    let io_err = |source| StateDirError::Io {
        path: path.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err)?;
    let meta = fs::metadata(path).map_err(io_err)?;
    if !meta.is_dir() {
        return Err(io_err(io::Error::other("not a directory")));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(StateDirError::WorldWritable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/nested");
        prepare(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn refuses_a_world_writable_directory() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare(tmp.path()).unwrap_err();
        assert!(
            matches!(err, StateDirError::WorldWritable { mode: 0o777, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("world-writable"), "{err}");
    }
}
