//! Durability: every sample that got a 2xx survives `kill -9` of the
//! receiver in the middle of a stream of writes, and the database stays
//! consistent; a SIGTERM mid-stream finishes in-flight writes and exits 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcmon_protocol::remote_write::Version;
use dcmon_receiver::storage::index::{MatchOp, Matcher};

use crate::common::{Receiver, now_ms, open_storage, series};

#[test]
fn acknowledged_samples_survive_kill_9() {
    stream_then_stop(Receiver::kill);
}

#[test]
fn sigterm_mid_stream_exits_cleanly_and_keeps_acknowledged_samples() {
    stream_then_stop(|receiver| {
        assert!(receiver.terminate().success(), "exit status after SIGTERM")
    });
}

/// Four senders stream writes; `end_receiver` ends the receiver mid-stream; every
/// acknowledged sample must be found after a restart.
fn stream_then_stop(end_receiver: fn(&mut Receiver)) {
    let mut receiver = Receiver::start(&["--storage.compaction-interval", "300ms"]);
    let base = now_ms() - 600_000;
    let acknowledged: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Four senders, each writing its own series, one sample per request.
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (addr, token) = (receiver.addr.clone(), receiver.token.clone());
            let acknowledged = Arc::clone(&acknowledged);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let client = crate::common::client();
                let instance = format!("host{sender}");
                let mut step = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let ts = base + step * 10;
                    let batch = [series(
                        &[("__name__", "durability_test"), ("instance", &instance)],
                        &[(ts, step as f64)],
                    )];
                    let body = dcmon_protocol::remote_write::compress(
                        &dcmon_protocol::remote_write::encode_v1(&batch),
                    );
                    let mut request = client
                        .post(format!("http://{addr}/api/v1/write"))
                        .bearer_auth(&token);
                    for (name, value) in crate::common::write_headers(Version::V1) {
                        request = request.header(name, value);
                    }
                    match request.body(body).send() {
                        Ok(response) if response.status().is_success() => {
                            acknowledged
                                .lock()
                                .unwrap()
                                .push(sender * 1_000_000_000 + step);
                        }
                        _ => break,
                    }
                    step += 1;
                }
            })
        })
        .collect();
    // Mid-stream: once plenty of writes are acknowledged (a loaded machine
    // acknowledges fewer per second, so wait for a count, not a time).
    let streaming = std::time::Instant::now();
    while acknowledged.lock().unwrap().len() <= 100 && streaming.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    end_receiver(&mut receiver);
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 50,
        "only {} writes were acknowledged",
        acknowledged.len()
    );

    // The database must be usable by a fresh receiver after the crash...
    receiver.kill_and_restart();
    let (status, stats) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(status, 200);
    assert!(
        stats["samples"].as_u64().unwrap() >= acknowledged.len() as u64,
        "{stats}"
    );
    assert!(receiver.terminate().success());

    // ...and hold every acknowledged sample.
    let storage = open_storage(&receiver.db_path());
    assert_eq!(storage.integrity_check().unwrap(), "ok");
    let stored = storage
        .select(
            &[Matcher::new("__name__", MatchOp::Equal, "durability_test").unwrap()],
            0,
            i64::MAX,
        )
        .unwrap();
    for ack in acknowledged {
        let (sender, step) = (ack / 1_000_000_000, ack % 1_000_000_000);
        let instance = format!("host{sender}");
        let series = stored
            .iter()
            .find(|s| {
                s.labels
                    .iter()
                    .any(|(n, v)| n == "instance" && *v == instance)
            })
            .unwrap_or_else(|| panic!("series of {instance} missing"));
        assert!(
            series.samples.contains(&(base + step * 10, step as f64)),
            "acknowledged sample {step} of {instance} lost"
        );
    }
}
