//! Retention: samples older than the window disappear, then their series;
//! under steady load the database file stops growing.

use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::Version;

use crate::common::{Receiver, now_ms, series};

fn stats(receiver: &Receiver) -> serde_json::Value {
    receiver.get_json("/api/dcmon/stats").1
}

#[test]
fn old_samples_then_empty_series_are_dropped() {
    let receiver = Receiver::start(&[
        "--storage.retention=3s",
        "--storage.retention-interval=500ms",
        "--storage.compaction-interval=300ms",
    ]);
    let now = now_ms();
    let gone = series(
        &[("__name__", "short_lived"), ("instance", "a")],
        &[(now - 2000, 1.0), (now - 1000, 2.0)],
    );
    assert_eq!(receiver.write(Version::V1, &[gone]).status, 204);
    assert_eq!(stats(&receiver)["series"], 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut kept_writing = 0;
    loop {
        // A second series keeps receiving fresh samples and must stay.
        let fresh = series(
            &[("__name__", "long_lived"), ("instance", "b")],
            &[(now_ms(), 1.0)],
        );
        assert_eq!(receiver.write(Version::V1, &[fresh]).status, 204);
        kept_writing += 1;
        let s = stats(&receiver);
        if s["series"] == 1 && s["series_dropped"].as_u64().unwrap_or(0) >= 1 {
            let oldest = s["oldest_timestamp_ms"].as_i64().unwrap();
            assert!(oldest > now - 1000, "old samples remain: {s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not drop the old series: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(kept_writing > 1);
}

#[test]
fn file_stops_growing_under_steady_load() {
    let receiver = Receiver::start(&[
        "--storage.retention=4s",
        "--storage.retention-interval=500ms",
        "--storage.compaction-interval=300ms",
    ]);
    let hosts: Vec<String> = (0..20).map(|i| format!("host{i:02}")).collect();
    let write_tick = |step: i64| {
        let now = now_ms();
        let batch: Vec<_> = hosts
            .iter()
            .flat_map(|h| {
                (0..20).map(move |m| {
                    series(
                        &[("__name__", &format!("metric_{m}")), ("instance", h)],
                        &[(now, (step * m) as f64)],
                    )
                })
            })
            .collect();
        assert_eq!(receiver.write(Version::V1, &batch).status, 204);
    };
    let run_for = |seconds: u64, start_step: i64| {
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut step = start_step;
        while Instant::now() < until {
            write_tick(step);
            step += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        step
    };
    // Fill well past one retention window, then measure over two more.
    let step = run_for(8, 0);
    let size_after_warmup = stats(&receiver)["db_bytes"].as_u64().unwrap();
    run_for(8, step);
    let size_later = stats(&receiver)["db_bytes"].as_u64().unwrap();
    let s = stats(&receiver);
    assert!(s["retention_runs"].as_u64().unwrap() > 5, "{s}");
    assert!(
        size_later <= size_after_warmup + size_after_warmup / 2,
        "database grew from {size_after_warmup} to {size_later} bytes under steady load: {s}"
    );
}
