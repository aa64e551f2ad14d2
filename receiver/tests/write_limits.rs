//! What one write may add, and what one sender may add per hour: every
//! limit refuses before anything is stored, says which limit and flag, and
//! is counted by reason; `/api/v1/series` stops at its limit.

use dcmon_protocol::remote_write::{SeriesSamples, Version, compress, encode_v1};

use crate::common::hosts::Host;
use crate::common::{Receiver, Response, client, now_ms, series, write_headers};

/// `count` series of metric `name`, one sample each, `extra` labels added.
fn batch(name: &str, count: usize, extra: &[(&str, &str)]) -> Vec<SeriesSamples> {
    let now = now_ms();
    (0..count)
        .map(|i| {
            let i = i.to_string();
            let mut labels = vec![("__name__", name), ("job", "t"), ("i", i.as_str())];
            labels.extend_from_slice(extra);
            series(&labels, &[(now, 1.0)])
        })
        .collect()
}

fn write_as(receiver: &Receiver, token: &str, series: &[SeriesSamples]) -> Response {
    receiver.write_raw(
        Some(token),
        &write_headers(Version::V1),
        compress(&encode_v1(series)),
    )
}

fn stored_series(receiver: &Receiver) -> u64 {
    let (status, stats) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(status, 200);
    stats["series"].as_u64().unwrap()
}

/// `dcmon_receiver_rejected_requests_total{reason}` from `/metrics`.
fn rejected(receiver: &Receiver, reason: &str) -> f64 {
    let text = receiver.metrics_text();
    let prefix = format!("dcmon_receiver_rejected_requests_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn oversized_labels_and_requests_are_refused_with_the_default_limits() {
    let receiver = Receiver::start(&[]);
    let token = receiver.token.clone();
    let huge_value = "x".repeat(10 << 20);
    let many: Vec<(String, String)> = (0..10_000)
        .map(|i| (format!("l{i:05}"), "v".to_owned()))
        .collect();
    let many_labels: Vec<(&str, &str)> =
        many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let long_name = "n".repeat(300);
    let cases: Vec<(&str, Vec<SeriesSamples>, &str)> = vec![
        (
            "label_value_too_long",
            batch("m", 1, &[("big", &huge_value)]),
            "--write.max-label-value-length",
        ),
        (
            "too_many_labels",
            batch("m", 1, &many_labels),
            "--write.max-labels-per-series",
        ),
        (
            "label_name_too_long",
            batch("m", 1, &[(&long_name, "v")]),
            "--write.max-label-name-length",
        ),
        (
            "too_many_series",
            batch("m", 50_001, &[]),
            "--write.max-series-per-request",
        ),
    ];
    for (reason, series, flag) in cases {
        let response = write_as(&receiver, &token, &series);
        assert_eq!(response.status, 400, "{reason}: {}", response.body);
        assert!(response.body.contains(flag), "{reason}: {}", response.body);
        assert!(
            response.body.len() < 2000,
            "{reason}: the answer quotes {} bytes",
            response.body.len()
        );
        assert_eq!(rejected(&receiver, reason), 1.0, "{reason} counted");
        assert_eq!(stored_series(&receiver), 0, "{reason}: nothing stored");
    }
    assert!(
        receiver.log().len() < 100_000,
        "the log stays small: {} bytes",
        receiver.log().len()
    );
    let fine = write_as(&receiver, &token, &batch("m", 10, &[]));
    assert_eq!(fine.status, 204, "{}", fine.body);
}

#[test]
fn a_host_spends_its_own_new_series_budget_and_keeps_writing_known_series() {
    let receiver = Receiver::start(&["--write.max-new-series-per-host-hour=100"]);
    let first = Host::enrol(&receiver, 0, "gpu-01");
    let second = Host::enrol(&receiver, 1, "gpu-02");
    let ok = write_as(&receiver, &first.token(), &batch("m", 100, &[]));
    assert_eq!(ok.status, 204, "{}", ok.body);

    let refused = write_as(&receiver, &first.token(), &batch("m", 110, &[]));
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("--write.max-new-series-per-host-hour"),
        "{}",
        refused.body
    );
    // 100 per hour: one every 36 s; 10 missing → 360 s.
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((300..=400).contains(&retry_after), "{retry_after}");
    assert_eq!(
        stored_series(&receiver),
        100,
        "nothing of the refused write"
    );
    assert_eq!(rejected(&receiver, "series_budget_spent"), 1.0);

    let known = write_as(&receiver, &first.token(), &batch("m", 100, &[]));
    assert_eq!(
        known.status, 204,
        "known series cost nothing: {}",
        known.body
    );
    let other = write_as(&receiver, &second.token(), &batch("m", 100, &[]));
    assert_eq!(
        other.status, 204,
        "another host has its own budget: {}",
        other.body
    );

    let whole_hour = write_as(&receiver, &second.token(), &batch("big", 101, &[]));
    assert_eq!(whole_hour.status, 400, "{}", whole_hour.body);
    assert_eq!(rejected(&receiver, "series_budget_exceeded"), 1.0);
}

#[test]
fn a_write_token_has_an_hourly_budget_too() {
    let receiver = Receiver::start(&["--write.max-new-series-per-hour=50"]);
    let token = receiver.create_token("prom", "write");
    assert_eq!(
        write_as(&receiver, &token, &batch("m", 50, &[])).status,
        204
    );
    let refused = write_as(&receiver, &token, &batch("n", 1, &[]));
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(stored_series(&receiver), 50);
}

#[test]
fn the_global_series_limit_refuses_new_series_only() {
    let receiver = Receiver::start(&["--storage.max-series=50"]);
    let token = receiver.token.clone();
    assert_eq!(
        write_as(&receiver, &token, &batch("m", 50, &[])).status,
        204
    );
    let refused = write_as(&receiver, &token, &batch("n", 1, &[]));
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(
        refused.body.contains("--storage.max-series"),
        "{}",
        refused.body
    );
    assert_eq!(rejected(&receiver, "series_limit_reached"), 1.0);
    let known = write_as(&receiver, &token, &batch("m", 50, &[]));
    assert_eq!(known.status, 204, "{}", known.body);
    assert_eq!(stored_series(&receiver), 50);
}

#[test]
fn series_api_stops_at_the_limit_or_refuses_past_max_series() {
    let receiver = Receiver::start(&["--query.max-series=5"]);
    assert_eq!(
        write_as(&receiver, &receiver.token.clone(), &batch("m", 10, &[])).status,
        204
    );
    let series = |params: &[(&str, &str)]| -> (u16, serde_json::Value) {
        let response = client()
            .get(receiver.url("/api/v1/series"))
            .query(params)
            .bearer_auth(&receiver.token)
            .send()
            .unwrap();
        (response.status().as_u16(), response.json().unwrap())
    };
    let (status, body) = series(&[("match[]", "m")]);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--query.max-series")
    );

    let (status, body) = series(&[("match[]", "m"), ("limit", "3")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    assert_eq!(body["warnings"][0], "results truncated due to limit");

    let (status, _) = series(&[("match[]", "m"), ("limit", "20")]);
    assert_eq!(status, 422, "a limit above the cap does not lift it");

    let (status, body) = series(&[("match[]", "m{i=~\"[0-4]\"}")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 5, "exactly the cap");
    assert!(body.get("warnings").is_none(), "{body}");
}
