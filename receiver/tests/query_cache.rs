//! The range-query cache over HTTP: a refreshed dashboard is answered
//! partly from the cache and exactly as a fresh evaluation (`nocache=1`)
//! answers, and a late sample written into a cached window changes the
//! next answer.

use dcmon_protocol::remote_write::Version;
use serde_json::Value;

use crate::common::{Receiver, client, now_ms, series};

const STEP_MS: i64 = 60_000;

/// The parameters of a range query over `[start, end]` (ms).
fn range_params(query: &str, start: i64, end: i64, step_ms: i64) -> Vec<(&'static str, String)> {
    vec![
        ("query", query.to_owned()),
        ("start", format!("{}", start as f64 / 1000.0)),
        ("end", format!("{}", end as f64 / 1000.0)),
        ("step", format!("{}", step_ms as f64 / 1000.0)),
    ]
}

/// `/api/v1/query_range`'s whole body; panics unless it answers 200.
fn range(receiver: &Receiver, query: &str, start: i64, end: i64, nocache: bool) -> Value {
    let mut params = range_params(query, start, end, STEP_MS);
    if nocache {
        params.push(("nocache", "1".to_owned()));
    }
    let response = client()
        .get(receiver.url("/api/v1/query_range"))
        .query(&params)
        .bearer_auth(&receiver.token)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body
}

/// A counter of the receiver's `/metrics` (0 when absent).
fn counter(receiver: &Receiver, name: &str) -> f64 {
    receiver
        .metrics_text()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// `probe_total` on each `(instance, slope)`: `count` samples every 15 s
/// from `first`, rising by `slope` each.
fn write_counters<const N: usize>(
    receiver: &Receiver,
    first: i64,
    count: i64,
    instances: [(&str, f64); N],
) {
    for (instance, slope) in instances {
        let samples: Vec<(i64, f64)> = (0..count)
            .map(|k| (first + k * 15_000, (k as f64) * slope))
            .collect();
        let sent = series(
            &[("__name__", "probe_total"), ("instance", instance)],
            &samples,
        );
        assert_eq!(receiver.write(Version::V1, &[sent]).status, 204);
    }
}

#[test]
fn a_refreshed_dashboard_is_served_from_the_cache_and_sees_late_samples() {
    let receiver = Receiver::start(&[]);
    // Two hours of a counter on two hosts every 15 s, ending 5 minutes ago.
    let now = now_ms();
    let first = (now - 2 * 3_600_000).div_euclid(STEP_MS) * STEP_MS;
    write_counters(&receiver, first, 460, [("a", 3.0), ("b", 5.0)]);
    let query = "sum by (instance) (rate(probe_total[2m]))";
    let start = first + 10 * STEP_MS;
    let end = first + 90 * STEP_MS;

    let cold = range(&receiver, query, start, end, false);
    assert_eq!(cold, range(&receiver, query, start, end, true));
    assert_eq!(
        counter(&receiver, "dcmon_receiver_query_cache_misses_total"),
        1.0
    );
    assert_eq!(
        counter(&receiver, "dcmon_receiver_query_cache_hits_total"),
        0.0
    );
    assert!(counter(&receiver, "dcmon_receiver_query_cache_bytes") > 0.0);
    assert_eq!(
        counter(&receiver, "dcmon_receiver_query_cache_entries"),
        1.0
    );

    // The refresh a minute later: its start and end move by one step.
    let warm = range(&receiver, query, start + STEP_MS, end + STEP_MS, false);
    assert_eq!(
        counter(&receiver, "dcmon_receiver_query_cache_hits_total"),
        1.0
    );
    assert_eq!(
        warm,
        range(&receiver, query, start + STEP_MS, end + STEP_MS, true)
    );

    // A host flushes its spool: a sample from 50 minutes into the data,
    // long after the cache stored that step.
    let late = first + 50 * STEP_MS + 7_000;
    let sent = series(
        &[("__name__", "probe_total"), ("instance", "a")],
        &[(late, 1e9)],
    );
    assert_eq!(receiver.write(Version::V1, &[sent]).status, 204);
    let after = range(&receiver, query, start + STEP_MS, end + STEP_MS, false);
    assert_ne!(after, warm, "the late sample is not seen");
    assert_eq!(
        after,
        range(&receiver, query, start + STEP_MS, end + STEP_MS, true)
    );
    // The steps before the late sample still came from the cache; the
    // `nocache=1` requests counted neither as hits nor as misses.
    assert_eq!(
        counter(&receiver, "dcmon_receiver_query_cache_hits_total"),
        2.0
    );
    assert_eq!(
        counter(&receiver, "dcmon_receiver_query_cache_misses_total"),
        1.0
    );
}

#[test]
fn a_cache_size_of_zero_turns_the_cache_off() {
    let receiver = Receiver::start(&["--query.cache-size=0"]);
    let now = now_ms();
    let samples: Vec<(i64, f64)> = (0..40)
        .map(|k| (now - 3_600_000 + k * 15_000, 1.0))
        .collect();
    let sent = series(&[("__name__", "probe"), ("instance", "a")], &samples);
    assert_eq!(receiver.write(Version::V1, &[sent]).status, 204);
    for _ in 0..2 {
        range(&receiver, "probe", now - 3_600_000, now - 1_800_000, false);
    }
    assert_eq!(
        counter(&receiver, "dcmon_receiver_query_cache_misses_total"),
        0.0
    );
    assert_eq!(
        counter(&receiver, "dcmon_receiver_query_cache_entries"),
        0.0
    );
}

/// `/api/v1/query_range`'s body over `[start, end]` at a 15 s step as
/// sent, with its Content-Encoding, for a client that does or does not
/// accept gzip.
fn raw_range(
    receiver: &Receiver,
    query: &str,
    (start, end): (i64, i64),
    gzip: bool,
) -> (Option<String>, Vec<u8>) {
    let params = range_params(query, start, end, 15_000);
    dcmon_web::install_crypto_provider();
    let plain = reqwest::blocking::Client::builder()
        .no_gzip()
        .build()
        .unwrap();
    let response = plain
        .get(receiver.url("/api/v1/query_range"))
        .query(&params)
        .header("accept-encoding", if gzip { "gzip" } else { "identity" })
        .bearer_auth(&receiver.token)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers();
    assert_eq!(headers["vary"], "Accept-Encoding");
    let encoding = headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_owned());
    // Sent in pieces (the cache's text is not copied into one buffer),
    // but with its length, as one buffer would be.
    let length: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    let body = response.bytes().unwrap().to_vec();
    assert_eq!(length, body.len());
    (encoding, body)
}

#[test]
fn gzip_answers_unzip_to_the_plain_answer_cached_or_not() {
    use std::io::Read;
    let receiver = Receiver::start(&[]);
    // Six hours of two counters every 15 s, ending an hour ago: long
    // enough for whole blocks of the cache's compressed text (256 steps,
    // 64 minutes at this step).
    let now = now_ms();
    let first = (now - 7 * 3_600_000).div_euclid(STEP_MS) * STEP_MS;
    write_counters(&receiver, first, 1_440, [("a", 3.25), ("b", 5.5)]);
    let query = "rate(probe_total[2m])";
    let gunzip = |body: &[u8]| {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut text)
            .expect("a valid gzip member");
        text
    };
    // A miss (stored), then hits with the start moved by steps, so the
    // served points start at several places in a compressed block; the
    // end moves with it.
    let end = first + 6 * 3_600_000;
    for moved in [0, 1, 7, 256, 300] {
        let range = (first + 600_000 + moved * 15_000, end + moved * 15_000);
        let (encoding, zipped) = raw_range(&receiver, query, range, true);
        assert_eq!(encoding.as_deref(), Some("gzip"));
        let (encoding, plain) = raw_range(&receiver, query, range, false);
        assert_eq!(encoding, None);
        assert!(plain.len() > 10_000, "{}", plain.len());
        assert!(
            zipped.len() < plain.len() / 2,
            "{} of {}",
            zipped.len(),
            plain.len()
        );
        assert_eq!(
            String::from_utf8(gunzip(&zipped)).unwrap(),
            String::from_utf8(plain).unwrap(),
            "moved {moved} steps"
        );
    }
    assert!(counter(&receiver, "dcmon_receiver_query_cache_hits_total") >= 8.0);
}
