//! `dcmon-receiver backup`: taken from a receiver while it ingests, the
//! copy restores into a receiver that answers with every sample written
//! before the backup and accepts the tokens made before it; an existing
//! output is never overwritten, and a failed backup leaves nothing behind.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcmon_protocol::remote_write::Version;

use crate::common::{Receiver, now_ms, series, wait_until};

/// Most samples the writer sends: at one second apart from twenty minutes
/// back, the last is at most five minutes ahead (ten are accepted).
const MAX_STEPS: i64 = 1500;

/// Sample `step` of the test series sits at `base + step` seconds.
fn write_step(receiver: &Receiver, base: i64, step: i64) -> bool {
    let batch = [series(
        &[("__name__", "backup_test"), ("instance", "gpu-01")],
        &[((base + step) * 1000, step as f64)],
    )];
    receiver.write(Version::V1, &batch).status == 204
}

/// The steps `token` reads back from `receiver`.
fn stored_steps(receiver: &Receiver, token: &str, base: i64) -> BTreeSet<i64> {
    let time = (base + MAX_STEPS).to_string();
    let result = receiver.query_result(token, &[("query", "backup_test[2h]"), ("time", &time)]);
    assert_eq!(result.len(), 1, "{result:?}");
    result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[1].as_str().unwrap().parse::<f64>().unwrap() as i64)
        .collect()
}

fn backup(receiver: &Receiver, output: &Path) -> (bool, String, String) {
    receiver.admin_command(&["backup", output.to_str().unwrap()])
}

#[test]
fn a_backup_taken_during_ingest_restores_everything_written_before_it() {
    let receiver = Arc::new(Receiver::start(&[]));
    let grafana = receiver.create_token("grafana", "read");
    // Twenty minutes back, one second per step: never ahead of the clock.
    let base = now_ms() / 1000 - 1200;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (receiver, acknowledged, stop) = (
            Arc::clone(&receiver),
            Arc::clone(&acknowledged),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let mut step = 0;
            while !stop.load(Ordering::Relaxed) && step < MAX_STEPS {
                if write_step(&receiver, base, step) {
                    acknowledged.lock().unwrap().push(step);
                }
                step += 1;
            }
        })
    };
    wait_until("writes are acknowledged", Duration::from_secs(30), || {
        acknowledged.lock().unwrap().len() >= 20
    });

    let before: BTreeSet<i64> = acknowledged.lock().unwrap().iter().copied().collect();
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("dcmon-backup.db");
    let (ok, stdout, stderr) = backup(&receiver, &copy);
    let during = acknowledged.lock().unwrap().len();
    wait_until(
        "writes go on after the backup",
        Duration::from_secs(30),
        || acknowledged.lock().unwrap().len() > during,
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(ok, "backup failed: {stderr}");
    let size = std::fs::metadata(&copy).unwrap().len();
    assert!(
        stdout.contains(copy.to_str().unwrap()) && stdout.contains(&format!("{size} bytes")),
        "{stdout}"
    );
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["dcmon-backup.db"], "one file, no -wal or -journal");

    let conn = rusqlite::Connection::open(&copy).unwrap();
    let check: String = conn
        .pragma_query_value(None, "integrity_check", |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let auto_vacuum: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .unwrap();
    assert_eq!(auto_vacuum, 2, "the copy still returns freed pages");
    drop(conn);

    // Restored: the token made before the backup reads every sample
    // acknowledged before it.
    let restored = Receiver::start_with_database(&copy, &[]);
    let steps = stored_steps(&restored, &grafana, base);
    let lost: Vec<_> = before.difference(&steps).collect();
    assert!(lost.is_empty(), "samples lost in the backup: {lost:?}");
}

#[test]
fn an_existing_output_is_never_overwritten() {
    let receiver = Receiver::start(&[]);
    assert!(write_step(&receiver, now_ms() / 1000 - 60, 0));
    let out = tempfile::tempdir().unwrap();
    let existing = out.path().join("dcmon.db");
    std::fs::write(&existing, "an older backup").unwrap();
    let (ok, _, stderr) = backup(&receiver, &existing);
    assert!(!ok);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "an older backup"
    );
    // An empty file too: VACUUM INTO would accept it, the backup does not.
    let empty = out.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let (ok, _, stderr) = backup(&receiver, &empty);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
}

/// A directory the backup cannot write into. A read-only mode stops
/// everyone but root; sysfs refuses new files even to root.
fn unwritable_dir(tmp: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp.join("read-only");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = dir.join("probe");
    if std::fs::write(&probe, "").is_ok() {
        std::fs::remove_file(&probe).unwrap();
        return "/sys".into();
    }
    dir
}

#[test]
fn a_failed_backup_says_why_and_creates_nothing() {
    let receiver = Receiver::start(&[]);
    assert!(write_step(&receiver, now_ms() / 1000 - 60, 0));
    let tmp = tempfile::tempdir().unwrap();
    let dir = unwritable_dir(tmp.path());
    for output in [
        dir.join("dcmon-backup.db"),
        tmp.path().join("no-such-dir").join("dcmon-backup.db"),
    ] {
        let (ok, stdout, stderr) = backup(&receiver, &output);
        assert!(!ok, "{stdout}");
        assert!(
            stderr.contains("cannot create") && stderr.contains(output.to_str().unwrap()),
            "{stderr}"
        );
        assert!(!output.exists());
    }
    let dir_entries = std::fs::read_dir(tmp.path().join("read-only"))
        .unwrap()
        .count();
    assert_eq!(dir_entries, 0);
}
