//! `filesystem`: size, free and available bytes, inode counts and read-only
//! state of every real mount, from the host's mount table (`/proc/1/mountinfo`,
//! parsed by `procfs-core`) and statvfs(2), skipping pseudo filesystems and
//! system mount points with node_exporter's default patterns.
//!
//! statvfs on a dead NFS server blocks forever, so each call runs on its own
//! thread with `--collector.filesystem.mount-timeout`. A mount that times out
//! is reported with `node_filesystem_device_error 1` and not asked again until
//! its stuck call returns, as node_exporter does; threads never pile up.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use procfs_core::process::MountInfos;
use regex::Regex;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_procfs};
use crate::snapshot::{SampleLabels, Snapshot};

/// Flag and label name.
pub const NAME: &str = "filesystem";

/// node_exporter's default mount-point exclusions, so the same system
/// mounts are skipped (the `--collector.filesystem.mount-points-exclude`
/// default).
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's default pseudo-filesystem list (the
/// `--collector.filesystem.fs-types-exclude` default).
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";

/// One mount to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// Mount source (`/dev/sda1`, `tmpfs`, `server:/export`).
    pub device: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount point as the host sees it (rootfs prefix stripped).
    pub mountpoint: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Decodes the octal escapes the kernel writes in mountinfo fields
/// (`\040` space, `\011` tab, `\012` newline, `\134` backslash), which
/// `procfs-core` leaves as they are.
pub fn unescape_mount_field(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// statvfs figures of one mount.
#[derive(Debug, Clone, Copy)]
struct Usage {
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
    read_only: bool,
}

/// The `filesystem` collector.
#[derive(Debug)]
pub struct FilesystemCollector {
    roots: Roots,
    mount_points_exclude: Regex,
    fs_types_exclude: Regex,
    mount_timeout: Duration,
    /// Mount points whose statvfs has not returned yet.
    stuck: Arc<Mutex<HashSet<String>>>,
}

/// Builds the collector.
pub fn new(config: &Config) -> FilesystemCollector {
    FilesystemCollector {
        roots: config.roots.clone(),
        mount_points_exclude: config.fs_mount_points_exclude.clone(),
        fs_types_exclude: config.fs_types_exclude.clone(),
        mount_timeout: config.fs_mount_timeout,
        stuck: Arc::default(),
    }
}

impl FilesystemCollector {
    /// The mounts to report, deduplicated by mount point (the last mount on
    /// a mount point is the visible one).
    pub fn mounts(&self) -> Result<Vec<Mount>, CollectError> {
        let path = ["1/mountinfo", "self/mountinfo"]
            .iter()
            .map(|rel| self.roots.proc(rel))
            .find(|p| p.exists())
            .ok_or_else(|| CollectError::NoData("no mountinfo under procfs".into()))?;
        let infos: MountInfos = read_procfs(&path)?;
        let mut mounts: Vec<Mount> = Vec::new();
        for info in infos {
            let Some(host_point) = info.mount_point.to_str() else {
                continue;
            };
            let host_point = unescape_mount_field(host_point);
            let mountpoint = self.roots.strip_rootfs(&host_point);
            if self.mount_points_exclude.is_match(mountpoint)
                || self.fs_types_exclude.is_match(&info.fs_type)
            {
                continue;
            }
            let mount = Mount {
                device: info
                    .mount_source
                    .as_deref()
                    .map_or_else(|| "none".into(), unescape_mount_field),
                fstype: info.fs_type.clone(),
                mountpoint: mountpoint.to_owned(),
                read_only: info.mount_options.contains_key("ro"),
            };
            mounts.retain(|m| m.mountpoint != mount.mountpoint);
            mounts.push(mount);
        }
        Ok(mounts)
    }

    /// statvfs under a deadline; `None` when the mount is (still) stuck.
    fn usage(&self, mount: &Mount) -> Result<Option<Usage>, CollectError> {
        let mut stuck = self.stuck.lock().unwrap_or_else(|e| e.into_inner());
        if stuck.contains(&mount.mountpoint) {
            return Ok(None);
        }
        let path: PathBuf = self.roots.root(&mount.mountpoint);
        let (tx, rx) = mpsc::channel();
        let registry = Arc::clone(&self.stuck);
        let key = mount.mountpoint.clone();
        std::thread::Builder::new()
            .name("statvfs".into())
            .spawn(move || {
                let result = nix::sys::statvfs::statvfs(&path);
                if tx.send(result).is_err() {
                    // The collector gave up on us: the mount may be asked again.
                    registry
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                }
            })
            .map_err(|e| CollectError::io(&self.roots.root(&mount.mountpoint), e))?;
        drop(stuck);
        match rx.recv_timeout(self.mount_timeout) {
            Ok(Ok(st)) => {
                let frsize = st.fragment_size() as f64;
                Ok(Some(Usage {
                    size: st.blocks() as f64 * frsize,
                    free: st.blocks_free() as f64 * frsize,
                    avail: st.blocks_available() as f64 * frsize,
                    files: st.files() as f64,
                    files_free: st.files_free() as f64,
                    read_only: st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
                }))
            }
            Ok(Err(errno)) => {
                tracing::debug!(mountpoint = %mount.mountpoint, error = %errno, "statvfs failed");
                Ok(None)
            }
            Err(_) => {
                tracing::warn!(mountpoint = %mount.mountpoint, "statvfs timed out; mount marked stale");
                // Under the lock, so the thread either sees `rx` gone and
                // clears the mark itself, or has already answered here.
                stuck = self.stuck.lock().unwrap_or_else(|e| e.into_inner());
                stuck.insert(mount.mountpoint.clone());
                if rx.try_recv().is_ok() {
                    stuck.remove(&mount.mountpoint);
                }
                drop(rx);
                Ok(None)
            }
        }
    }
}

impl Collector for FilesystemCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        for mount in self.mounts()? {
            let labels = || -> SampleLabels {
                vec![
                    ("device", mount.device.clone()),
                    ("fstype", mount.fstype.clone()),
                    ("mountpoint", mount.mountpoint.clone()),
                ]
            };
            let usage = self.usage(&mount)?;
            out.gauge(
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
                labels(),
                if usage.is_some() { 0.0 } else { 1.0 },
            );
            let Some(u) = usage else { continue };
            let series = [
                (
                    "node_filesystem_size_bytes",
                    "Filesystem size in bytes.",
                    u.size,
                ),
                (
                    "node_filesystem_free_bytes",
                    "Filesystem free space in bytes.",
                    u.free,
                ),
                (
                    "node_filesystem_avail_bytes",
                    "Filesystem space available to non-root users in bytes.",
                    u.avail,
                ),
                (
                    "node_filesystem_files",
                    "Filesystem total file nodes.",
                    u.files,
                ),
                (
                    "node_filesystem_files_free",
                    "Filesystem total free file nodes.",
                    u.files_free,
                ),
                (
                    "node_filesystem_readonly",
                    "Filesystem read-only status.",
                    if u.read_only || mount.read_only {
                        1.0
                    } else {
                        0.0
                    },
                ),
            ];
            for (name, help, value) in series {
                out.gauge(name, help, labels(), value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_mountinfo_escapes() {
        assert_eq!(
            unescape_mount_field(r"/mnt/a\040b\011c\134d"),
            "/mnt/a b\tc\\d"
        );
        assert_eq!(unescape_mount_field(r"/plain\09x"), r"/plain\09x");
    }
}
