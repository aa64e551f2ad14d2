//! The exporter's state directory (`--state-dir`): the remote-write spool
//! and the host's key and enrollment live here. Anyone able to write to it
//! could plant batches or swap keys, so a directory that users other than
//! its owner can write to (group or world) is refused.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// Other users could write to it.
    #[error(
        "state directory {path} is writable by other users (mode {mode:o}); refusing to use it (fix with `chmod go-w {path}`)"
    )]
    WritableByOthers {
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
/// only its owner can write to.
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
    if mode & 0o022 != 0 {
        return Err(StateDirError::WritableByOthers {
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
    fn refuses_a_directory_others_can_write_to() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [0o777, 0o770, 0o720, 0o702] {
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).unwrap();
            let err = prepare(tmp.path()).unwrap_err();
            assert!(
                matches!(err, StateDirError::WritableByOthers { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains("writable by other users"), "{text}");
            assert!(text.contains("chmod go-w"), "{text}");
        }
        // Readable by the group is fine: nothing secret lives in the directory itself.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o750)).unwrap();
        prepare(tmp.path()).unwrap();
    }
}
