//! The receiver stores its own metrics like a scraped target's: under
//! `job="dcmon-receiver"` and its instance name, every
//! `--self-scrape.interval`, queryable like any host's; `0s` turns it off.

use std::time::Duration;

use dcmon_protocol::remote_write::Version;
use serde_json::Value;

use crate::common::{Receiver, now_ms, series, wait_until};

fn query(receiver: &Receiver, expr: &str) -> Vec<Value> {
    receiver.query_result(&receiver.token, &[("query", expr)])
}

fn write_one(receiver: &Receiver) {
    let response = receiver.write(
        Version::V1,
        &[series(
            &[("__name__", "probe"), ("job", "t")],
            &[(now_ms(), 1.0)],
        )],
    );
    assert_eq!(response.status, 204, "{}", response.body);
}

#[test]
fn own_metrics_are_stored_under_the_receivers_job_and_instance() {
    let receiver = Receiver::start(&[
        "--self-scrape.interval=1s",
        "--self-scrape.instance=central",
    ]);
    write_one(&receiver);
    let written =
        r#"dcmon_receiver_write_requests_total{job="dcmon-receiver", instance="central"}"#;
    wait_until(
        "the receiver's own samples",
        Duration::from_secs(10),
        || {
            query(&receiver, written)
                .first()
                .and_then(|s| s["value"][1].as_str().map(|v| v.parse::<f64>().unwrap()))
                .is_some_and(|v| v >= 1.0)
        },
    );
    // Histograms arrive as their bucket series, as a scrape stores them.
    let buckets = query(
        &receiver,
        r#"dcmon_receiver_request_duration_seconds_bucket{job="dcmon-receiver", handler="/api/v1/write", le="+Inf"}"#,
    );
    assert_eq!(buckets.len(), 1, "{buckets:?}");
    // The storage gauges count the probe series.
    let stored = query(&receiver, r#"dcmon_receiver_series{job="dcmon-receiver"}"#);
    let count: f64 = stored[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(count >= 1.0, "{stored:?}");
}

#[test]
fn zero_interval_stores_nothing_of_its_own() {
    let receiver = Receiver::start(&["--self-scrape.interval=0s"]);
    write_one(&receiver);
    // Two would-be intervals of the other test's setting, and more.
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(query(&receiver, r#"{job="dcmon-receiver"}"#).is_empty());
    assert_eq!(query(&receiver, "probe").len(), 1);
}
