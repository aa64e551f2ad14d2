//! Hostile queries over loopback against the real binary: deep operator
//! chains, over-long queries and sample-hungry subqueries get a 4xx JSON
//! error while the receiver stays up, and a long query does not hold up
//! shutdown.

use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::Version;
use serde_json::Value;

use crate::common::{Receiver, client, now_ms, series};

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let pairs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    pairs.join("&")
}

/// POSTs `query` (form-encoded, as large as it may be) to `path`; returns
/// (status, JSON).
fn post_query(
    receiver: &Receiver,
    path: &str,
    query: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut pairs = vec![("query", query)];
    pairs.extend_from_slice(extra);
    let response = client()
        .post(receiver.url(path))
        .bearer_auth(&receiver.token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&pairs))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The receiver still answers a plain query.
fn assert_alive(receiver: &Receiver) {
    let (status, body) = post_query(receiver, "/api/v1/query", "1 + 1", &[("time", "4")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][1], "2");
}

fn assert_bad_data(status: u16, body: &Value, says: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["errorType"], "bad_data", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{message}");
}

#[test]
fn deep_operator_chains_get_400_and_the_receiver_stays_up() {
    // Length allowed, so that depth alone refuses them.
    let receiver = Receiver::start(&["--query.max-length=1000000"]);
    let chains = [
        vec!["1"; 4_000].join("+"),
        vec!["up"; 4_000].join(" and "),
        vec!["1"; 4_000].join("^"),
        // Past the check on the text, refused on the parsed tree.
        vec!["up"; 1_500].join(" and "),
        format!("{}1{}", "-(".repeat(600), ")".repeat(600)),
    ];
    for chain in &chains {
        for path in [
            "/api/v1/query",
            "/api/v1/format_query",
            "/api/v1/query_exemplars",
        ] {
            let (status, body) = post_query(&receiver, path, chain, &[]);
            assert_bad_data(status, &body, "nests too deeply");
            assert_alive(&receiver);
        }
        let range = [("start", "0"), ("end", "60"), ("step", "15")];
        let (status, body) = post_query(&receiver, "/api/v1/query_range", chain, &range);
        assert_bad_data(status, &body, "nests too deeply");
    }
    // Just inside the limit, a chain is evaluated and printed.
    let chain = vec!["1"; 1_000].join("+");
    let (status, body) = post_query(&receiver, "/api/v1/query", &chain, &[("time", "4")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][1], "1000");
    let (status, body) = post_query(&receiver, "/api/v1/format_query", &chain, &[]);
    assert_eq!(status, 200, "{body}");
    let pretty = body["data"].as_str().unwrap();
    assert_eq!(pretty.matches('+').count(), 999, "{}", &pretty[..100]);
    assert_alive(&receiver);
}

#[test]
fn queries_over_the_max_length_get_400_naming_the_flag() {
    let receiver = Receiver::start(&[]);
    let padded = |len: usize| format!("{}1", " ".repeat(len - 1));
    let (status, body) = post_query(&receiver, "/api/v1/query", &padded(16_384), &[]);
    assert_eq!(status, 200, "{body}");
    for path in ["/api/v1/query", "/api/v1/format_query"] {
        let (status, body) = post_query(&receiver, path, &padded(16_385), &[]);
        assert_bad_data(status, &body, "--query.max-length");
    }
    // Selectors of the series and label endpoints are queries too.
    let selector = format!("{}up", " ".repeat(16_383));
    for path in [
        "/api/v1/series",
        "/api/v1/labels",
        "/api/v1/label/job/values",
    ] {
        let response = client()
            .post(receiver.url(path))
            .bearer_auth(&receiver.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("match[]", selector.as_str())]))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        assert_bad_data(status, &response.json().unwrap(), "--query.max-length");
    }
    // 400,000 terms: refused by length before any parsing.
    let (status, body) = post_query(
        &receiver,
        "/api/v1/query",
        &vec!["1"; 400_000].join("+"),
        &[],
    );
    assert_bad_data(status, &body, "16384 bytes");
    assert_alive(&receiver);
}

#[test]
fn a_sample_hungry_subquery_gets_422() {
    let receiver = Receiver::start(&["--query.max-samples=100000"]);
    let last = now_ms() / 1000 * 1000;
    let samples: Vec<(i64, f64)> = (0..120).map(|k| (last - k * 15_000, k as f64)).collect();
    let response = receiver.write(Version::V1, &[series(&[("__name__", "x")], &samples)]);
    assert_eq!(response.status, 204, "{}", response.body);
    let time = (last / 1000).to_string();
    // 3.6 million steps: stopped at the limit, not evaluated whole.
    let (status, body) = post_query(
        &receiver,
        "/api/v1/query",
        "max_over_time(x[1h:1ms])",
        &[("time", &time)],
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution", "{body}");
    assert_eq!(
        body["error"],
        "query processing would load too many samples into memory in query execution"
    );
    // A subquery within the limit still answers.
    let (status, body) = post_query(
        &receiver,
        "/api/v1/query",
        "max_over_time(x[10m:1m])",
        &[("time", &time)],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["result"].as_array().unwrap().len(),
        1,
        "{body}"
    );
}

/// `--query.max-samples` bounds the samples a query holds at once: a fleet
/// aggregation reads its series a part at a time and answers over more
/// samples than that in all, while a query holding them all fails.
#[test]
fn a_fleet_aggregation_holds_a_part_of_its_series_at_a_time() {
    let receiver = Receiver::start(&[
        "--query.max-samples=20000",
        "--storage.compaction-interval=1s",
        "--storage.recent-window=0s",
    ]);
    let last = now_ms() / 1000 * 1000;
    // 2,000 series x 30 samples: three times the limit; a part holds at
    // most 256 series (7,680 samples).
    let samples: Vec<(i64, f64)> = (0..30).map(|k| (last - k * 15_000, k as f64)).collect();
    for first in (0..2000).step_by(500) {
        let batch: Vec<_> = (first..first + 500)
            .map(|i| {
                series(
                    &[("__name__", "x"), ("instance", &format!("h{i}"))],
                    &samples,
                )
            })
            .collect();
        let response = receiver.write(Version::V1, &batch);
        assert_eq!(response.status, 204, "{}", response.body);
    }
    // Compacted: read from chunks, not from the head (whose copy a read
    // takes whole, before its parts).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, stats) = receiver.get_json("/api/dcmon/stats");
        assert_eq!(status, 200, "{stats}");
        if stats["head_samples"] == 0 && stats["samples"] == 60_000 {
            break;
        }
        assert!(Instant::now() < deadline, "not compacted: {stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (start, end) = ((last - 300_000) / 1000, last / 1000);
    let range = [
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("step", "60".to_owned()),
    ];
    let range: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = post_query(&receiver, "/api/v1/query_range", "count(x)", &range);
    assert_eq!(status, 200, "{body}");
    let points = body["data"]["result"][0]["values"].as_array().unwrap();
    assert!(points.iter().all(|p| p[1] == "2000"), "{body}");
    let (status, body) = post_query(
        &receiver,
        "/api/v1/query_range",
        "sum(max_over_time(x[10m]))",
        &range,
    );
    assert_eq!(status, 200, "{body}");
    // `x * 2` is evaluated step by step, over all of `x` at once.
    let (status, body) = post_query(&receiver, "/api/v1/query_range", "x * 2", &range);
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"],
        "query processing would load too many samples into memory in query execution"
    );
}

#[test]
fn shutdown_cancels_a_running_query() {
    let mut receiver = Receiver::start(&[]);
    // 43 million inner steps, under the sample limit: runs for a minute
    // in a debug build.
    let url = receiver.url("/api/v1/query");
    let token = receiver.token.clone();
    let running = std::thread::spawn(move || {
        client()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("query", "count_over_time(vector(1)[12h:1ms])")]))
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!running.is_finished(), "the query should still run");
    let started = Instant::now();
    let status = receiver.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    // The query was answered (canceled) or its connection closed.
    if let Ok(code) = running.join().unwrap() {
        assert_eq!(code, 499);
    }
}
