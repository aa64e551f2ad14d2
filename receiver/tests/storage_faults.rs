//! Storage that fails underneath the receiver: a full disk and a read-only
//! file system, on a small tmpfs of the test's own (mounting needs root,
//! which CI has). Each failure is named for what it is, `/health` says
//! degraded with the cause while it lasts, and nothing acknowledged is
//! lost once it passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use dcmon_protocol::remote_write::{SeriesSamples, Version};

use crate::common::{Receiver, now_ms, series};

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size` of tmpfs, or says why it cannot (not root).
    fn mount(size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", path.display());
        Some(Tmpfs { path, _dir: dir })
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn batch(name: &str, count: usize) -> Vec<SeriesSamples> {
    let now = now_ms();
    (0..count)
        .map(|i| {
            let i = i.to_string();
            series(
                &[("__name__", name), ("job", "t"), ("i", &i)],
                &[(now - 1000, 1.0), (now, 2.0)],
            )
        })
        .collect()
}

/// Fills the file system holding `dir` until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 64 << 10];
    while file.write_all(&block).and_then(|_| file.sync_all()).is_ok() {}
    path
}

fn health(receiver: &Receiver) -> (u16, serde_json::Value) {
    receiver.get_json("/health")
}

#[test]
fn a_full_disk_is_named_health_degrades_and_writes_resume_when_space_returns() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let receiver = Receiver::start_in(&fs.path, &[]);
    let first = receiver.write(Version::V1, &batch("before", 100));
    assert_eq!(first.status, 204, "{}", first.body);
    assert_eq!(health(&receiver).0, 200);

    let filler = fill(&fs.path);
    let refused = receiver.write(Version::V1, &batch("during", 5000));
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert!(refused.body.contains("disk full"), "{}", refused.body);
    assert!(!refused.body.contains("corrupt"), "{}", refused.body);
    let (status, body) = health(&receiver);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["failing"][0]["operation"], "write", "{body}");
    assert_eq!(body["failing"][0]["cause"], "disk_full", "{body}");
    assert!(
        receiver
            .metrics_text()
            .contains("dcmon_receiver_storage_failing{operation=\"write\"} 1"),
        "failing gauge"
    );

    std::fs::remove_file(filler).unwrap();
    let resumed = receiver.write(Version::V1, &batch("during", 5000));
    assert_eq!(resumed.status, 204, "{}", resumed.body);
    let (status, body) = health(&receiver);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let (_, stats) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(stats["series"], 5100, "every acknowledged series: {stats}");
    assert_eq!(
        stats["samples"], 10200,
        "every acknowledged sample: {stats}"
    );
}

#[test]
fn a_read_only_file_system_is_named_at_start() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    // (Linux refuses to remount a file system read-only while a file on
    // it is open for writing, so this is the start, not a running receiver.)
    let mut receiver = Receiver::start_in(&fs.path, &[]);
    assert_eq!(receiver.write(Version::V1, &batch("a", 10)).status, 204);
    assert!(receiver.terminate().success());

    // Starting on a read-only file system fails at once, saying so: on
    // the database there, and when its directory cannot be created.
    fs.remount("ro");
    let elsewhere = tempfile::tempdir().unwrap();
    for database in [fs.path.join("dcmon.db"), fs.path.join("new/dcmon.db")] {
        let output = Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--storage.path")
            .arg(&database)
            .arg("--admin-token-file")
            .arg(elsewhere.path().join("admin-token"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("read-only") || stderr.contains("readonly"),
            "{}: {stderr}",
            database.display()
        );
        assert!(!stderr.contains("corrupt"), "{stderr}");
    }
}
