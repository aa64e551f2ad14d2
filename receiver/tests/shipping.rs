//! The exporter's shipper against the real receiver: an outage of the
//! receiver, with an exporter restart in the middle of it, loses no tick
//! and duplicates none.

use std::time::Duration;

use dcmon_receiver::storage::index::{MatchOp, Matcher};

use crate::common::exporter::{Exporter, ReceiverOnAddr};
use crate::common::{Receiver, now_ms, open_storage, wait_until};

const INSTANCE: &str = "shipping-e2e";
const TICK_MS: i64 = 1000;

/// Sleeps until `offset_ms` past the next whole tick, so that a restart
/// happens well clear of a collection.
fn sleep_to_tick_offset(offset_ms: i64) {
    let now = now_ms();
    let target = (now / TICK_MS + 1) * TICK_MS + offset_ms;
    std::thread::sleep(Duration::from_millis((target - now) as u64));
}

#[test]
fn every_tick_arrives_once_after_an_outage_and_an_exporter_restart() {
    let mut receiver = Receiver::start(&[]);
    let addr = receiver.addr.clone();
    let token_file = receiver.write_token_file("shipping-e2e");

    let url = format!("http://{addr}/api/v1/write");
    let mut exporter = Exporter::start(&[
        "--remote-write.url",
        &url,
        "--remote-write.bearer-token-file",
        token_file.to_str().unwrap(),
        "--remote-write.interval",
        "1s",
        "--remote-write.instance",
        INSTANCE,
        // Fast collectors only: `stat` gives node_boot_time_seconds.
        "--collector.disable-defaults",
        "--collector.stat",
        "--collector.loadavg",
    ]);
    let sent = format!("dcmon_remote_write_samples_total{{endpoint=\"{url}\",result=\"sent\"");
    wait_until(
        "the first interval is shipped",
        Duration::from_secs(15),
        || exporter.metric(&sent) > 0.0,
    );
    std::thread::sleep(Duration::from_millis(3000));

    // Outage: the receiver goes away for several intervals, and the
    // exporter is restarted in the middle of it.
    receiver.kill();
    let outage_start = now_ms();
    std::thread::sleep(Duration::from_millis(2500));
    sleep_to_tick_offset(400);
    let stopped_at = now_ms();
    exporter.restart();
    let started_at = now_ms();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        exporter.metric("dcmon_remote_write_spool_bytes") > 0.0,
        "nothing spooled during the outage:\n{}",
        exporter.log()
    );

    // The receiver comes back on the same address and database.
    let mut back = ReceiverOnAddr::start(&addr, &receiver.dir);
    let back_at = now_ms();
    wait_until("the spool drains", Duration::from_secs(15), || {
        exporter.metric("dcmon_remote_write_spool_bytes") == 0.0
            && exporter.metric("dcmon_remote_write_last_success_timestamp_seconds")
                > (back_at / 1000 + 1) as f64
    });
    exporter.terminate();
    back.terminate();

    let storage = open_storage(&receiver.db_path());
    let stored = storage
        .select(
            &[
                Matcher::new("__name__", MatchOp::Equal, "node_boot_time_seconds").unwrap(),
                Matcher::new("instance", MatchOp::Equal, INSTANCE).unwrap(),
                Matcher::new("job", MatchOp::Equal, "dcmon").unwrap(),
            ],
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(stored.len(), 1, "one series expected: {stored:?}");
    let ticks: Vec<i64> = stored[0].samples.iter().map(|(t, _)| *t).collect();
    let (first, last) = (ticks[0], *ticks.last().unwrap());
    assert!(
        first < outage_start && last > back_at,
        "the samples do not span the outage: {first}..{last}, outage {outage_start}..{back_at}"
    );
    for t in &ticks {
        assert_eq!(t % TICK_MS, 0, "sample off the tick grid at {t}");
    }
    let distinct: std::collections::BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "repeated ticks: {ticks:?}");
    // Only a tick that fell while no exporter was running (or whose
    // collection the SIGTERM cut short) may be missing; the restart is timed
    // 400 ms after a tick so that normally none is.
    let excused = |t: i64| t > stopped_at - TICK_MS && t < started_at;
    let missing: Vec<i64> = (first..=last)
        .step_by(TICK_MS as usize)
        .filter(|t| !distinct.contains(t))
        .collect();
    assert!(
        missing.iter().all(|t| excused(*t)),
        "ticks missing between {first} and {last}: {missing:?} (exporter down {stopped_at}..{started_at}):\n{}",
        exporter.log()
    );
    assert!(ticks.len() >= 10, "too few ticks: {ticks:?}");
}
