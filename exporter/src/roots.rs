//! Where the collectors read the host from: the `--path.procfs`,
//! `--path.sysfs`, `--path.rootfs` and `--path.udev.data` roots, so tests point them at
//! recorded fixture trees. Every host file a collector reads goes through here.

use std::io;
use std::path::{Path, PathBuf};

/// Why a host file could not be read. Collectors wrap it in their
/// `CollectError`; this module knows nothing of collectors, so paths and
/// readers stay usable (and testable) on their own.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file was read, but its content is not what the parser expects.
    #[error("{path}: {msg}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
}

impl ReadError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The three filesystem roots, as node_exporter names them.
#[derive(Debug, Clone)]
pub struct Roots {
    /// `/proc`, or a fixture tree standing in for it.
    pub procfs: PathBuf,
    /// `/sys`, or a fixture tree standing in for it.
    pub sysfs: PathBuf,
    /// `/`, for files such as `/etc/os-release` and for mount points.
    pub rootfs: PathBuf,
    /// The udev database (`/run/udev/data`), for disk model and serial labels.
    pub udev_data: PathBuf,
}

impl Roots {
    /// A path under the procfs root (`rel` has no leading slash).
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }

    /// A path under the sysfs root.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }

    /// `path` as seen from the host, re-rooted under `--path.rootfs`
    /// (node_exporter's `rootfsFilePath`).
    pub fn root(&self, path: &str) -> PathBuf {
        self.rootfs.join(path.trim_start_matches('/'))
    }

    /// Strips the rootfs prefix from a mount point, so an exporter that reads
    /// its own mount table in a container reports `/home`, not `/host/home`
    /// (node_exporter's `rootfsStripPrefix`). Paths outside the prefix, as
    /// the host's `/proc/1/mountinfo` lists them, are already host paths.
    pub fn strip_rootfs<'a>(&self, mount_point: &'a str) -> &'a str {
        let Some(prefix) = self.rootfs.to_str().map(|p| p.trim_end_matches('/')) else {
            return mount_point;
        };
        if prefix.is_empty() {
            return mount_point;
        }
        match mount_point.strip_prefix(prefix) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => mount_point,
        }
    }
}

/// Reads a whole file, naming the path in the error.
pub fn read_string(path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path).map_err(|source| ReadError::io(path, source))
}

/// Reads `path` and parses it with a `procfs-core` type. The crate's parse
/// errors describe themselves as internal bugs; they are reported as what
/// they are here, a file with unexpected content.
pub fn read_procfs<T: procfs_core::FromRead>(path: &Path) -> Result<T, ReadError> {
    let bytes = std::fs::read(path).map_err(|source| ReadError::io(path, source))?;
    T::from_read(&bytes[..]).map_err(|err| {
        let detail = match err {
            procfs_core::ProcError::InternalError(_) => {
                "a line has missing or non-numeric fields".to_owned()
            }
            other => other.to_string(),
        };
        ReadError::Content {
            path: path.to_owned(),
            msg: format!("unexpected content: {detail}"),
        }
    })
}

/// Reads a whole file that may legitimately be missing (a kernel without
/// PSI, IPv6 or a protocol): `Ok(None)` then.
pub fn read_optional(path: &Path) -> Result<Option<String>, ReadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if is_absent(&err) => Ok(None),
        Err(source) => Err(ReadError::io(path, source)),
    }
}

/// Reads a one-value sysfs attribute, trimmed. `Ok(None)` when the file does
/// not exist or the kernel refuses to read it (many attributes return EINVAL
/// or EOPNOTSUPP for devices that lack the feature).
pub fn read_attribute(path: &Path) -> Result<Option<String>, ReadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(err) if is_absent(&err) => Ok(None),
        Err(source) => Err(ReadError::io(path, source)),
    }
}

/// Whether an I/O error means "this attribute is not there for this device".
pub fn is_absent(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    ) || matches!(
        err.raw_os_error(),
        Some(22 | 95 | 61 | 5 | 19 | 16 | 11 | 524)
    )
}

/// Names of the entries of a directory, sorted. Missing directory → empty.
pub fn list_dir(path: &Path) -> Result<Vec<String>, ReadError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ReadError::io(path, source)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn under(rootfs: &str) -> Roots {
        Roots {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            rootfs: rootfs.into(),
            udev_data: "/run/udev/data".into(),
        }
    }

    #[test]
    fn strips_rootfs_prefix_from_mount_points() {
        let roots = under("/host");
        assert_eq!(roots.strip_rootfs("/host/home"), "/home");
        assert_eq!(roots.strip_rootfs("/host"), "/");
        assert_eq!(roots.strip_rootfs("/hostile"), "/hostile");
        assert_eq!(roots.strip_rootfs("/proc"), "/proc");
        assert_eq!(under("/").strip_rootfs("/proc"), "/proc");
    }

    #[test]
    fn root_rejoins_absolute_paths() {
        let roots = under("/tmp/fx");
        assert_eq!(
            roots.root("/etc/os-release"),
            PathBuf::from("/tmp/fx/etc/os-release")
        );
    }
}
