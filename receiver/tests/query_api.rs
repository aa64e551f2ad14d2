//! The Prometheus query API over loopback against the real binary: every
//! endpoint by GET and form POST, both time formats, Prometheus's response
//! and error shapes, the query limits, Grafana's health query, and access
//! by token scope.

use dcmon_protocol::remote_write::Version;
use serde_json::{Value, json};

use crate::common::{Receiver, client, now_ms, series};

/// Percent-encodes form pairs (`application/x-www-form-urlencoded`).
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// GET `path` with `pairs` as the query string; (status, JSON).
fn get(receiver: &Receiver, token: &str, path: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let url = format!("{}?{}", receiver.url(path), form(pairs));
    let response = client().get(url).bearer_auth(token).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// POST `path` with `pairs` as a form body; (status, JSON).
fn post(receiver: &Receiver, token: &str, path: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let response = client()
        .post(receiver.url(path))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Both methods must give the same answer; returns it.
fn both(receiver: &Receiver, path: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let by_get = get(receiver, &receiver.token, path, pairs);
    let by_post = post(receiver, &receiver.token, path, pairs);
    assert_eq!(by_get, by_post, "GET and POST of {path} {pairs:?} differ");
    by_get
}

/// A receiver holding two `up` series and one counter, sampled every 15 s
/// over the last 30 minutes; returns it and the time of the last sample.
fn receiver_with_data(flags: &[&str]) -> (Receiver, i64) {
    let receiver = Receiver::start(flags);
    let last = now_ms() / 60_000 * 60_000;
    let times: Vec<i64> = (0..=120).map(|k| last - 1_800_000 + k * 15_000).collect();
    let up_a: Vec<(i64, f64)> = times.iter().map(|t| (*t, 1.0)).collect();
    let up_b: Vec<(i64, f64)> = times.iter().map(|t| (*t, 0.0)).collect();
    let counter: Vec<(i64, f64)> = times
        .iter()
        .enumerate()
        .map(|(k, t)| (*t, k as f64 * 30.0))
        .collect();
    let response = receiver.write(
        Version::V1,
        &[
            series(
                &[("__name__", "up"), ("job", "node"), ("instance", "b")],
                &up_b,
            ),
            series(
                &[("__name__", "up"), ("job", "node"), ("instance", "a")],
                &up_a,
            ),
            series(
                &[("__name__", "cpu_seconds_total"), ("instance", "a")],
                &counter,
            ),
        ],
    );
    assert_eq!(response.status, 204, "{}", response.body);
    (receiver, last)
}

fn secs(ms: i64) -> String {
    (ms / 1000).to_string()
}

#[test]
fn grafana_health_query_returns_scalar_two_at_time_four() {
    let receiver = Receiver::start(&[]);
    let (status, body) = both(
        &receiver,
        "/api/v1/query",
        &[("query", "1+1"), ("time", "4")],
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}})
    );
}

#[test]
fn post_with_parameters_in_the_url_only() {
    let (receiver, last) = receiver_with_data(&[]);
    let url = format!(
        "{}?{}",
        receiver.url("/api/v1/query"),
        form(&[("query", "up"), ("time", &secs(last))])
    );
    // As vmalert sends its rule queries: POST, empty body, no Content-Type.
    let response = client()
        .post(&url)
        .bearer_auth(&receiver.token)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(
        body["data"]["result"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    // A body that is not a form is refused, not silently ignored.
    let response = client()
        .post(&url)
        .bearer_auth(&receiver.token)
        .header("content-type", "application/json")
        .body(r#"{"query": "up"}"#)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().unwrap();
    assert_eq!(body["errorType"], "bad_data");
    assert!(
        body["error"].as_str().unwrap().contains("must be a form"),
        "{body}"
    );
}

#[test]
fn instant_queries_accept_unix_and_rfc3339_times() {
    let (receiver, last) = receiver_with_data(&[]);
    let rfc3339 = chrono_free_rfc3339(last);
    for time in [secs(last), format!("{}.000", secs(last)), rfc3339] {
        let (status, body) = both(
            &receiver,
            "/api/v1/query",
            &[("query", "up"), ("time", &time)],
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["resultType"], "vector");
        let mut result = body["data"]["result"].as_array().unwrap().clone();
        result.sort_by_key(|s| s["metric"]["instance"].as_str().unwrap().to_owned());
        assert_eq!(
            result,
            vec![
                json!({"metric": {"__name__": "up", "instance": "a", "job": "node"}, "value": [last / 1000, "1"]}),
                json!({"metric": {"__name__": "up", "instance": "b", "job": "node"}, "value": [last / 1000, "0"]}),
            ],
            "time={time}"
        );
    }
}

/// `ms` as RFC 3339 in UTC, computed by hand so the test does not share
/// the receiver's parser.
fn chrono_free_rfc3339(ms: i64) -> String {
    let secs = ms / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn special_values_are_strings() {
    let receiver = Receiver::start(&[]);
    for (query, want) in [
        ("0/0", "NaN"),
        ("1/0", "+Inf"),
        ("-1/0", "-Inf"),
        ("0.1", "0.1"),
    ] {
        let (status, body) = both(
            &receiver,
            "/api/v1/query",
            &[("query", query), ("time", "10.5")],
        );
        assert_eq!(status, 200);
        assert_eq!(body["data"]["result"], json!([10.5, want]), "{query}");
    }
    let (_, body) = both(
        &receiver,
        "/api/v1/query",
        &[("query", "\"text\""), ("time", "1")],
    );
    assert_eq!(
        body["data"],
        json!({"resultType": "string", "result": [1, "text"]})
    );
}

#[test]
fn range_queries_return_sorted_matrices() {
    let (receiver, last) = receiver_with_data(&[]);
    let start = secs(last - 120_000);
    let end = secs(last);
    for step in ["60", "1m", "60.0"] {
        let (status, body) = both(
            &receiver,
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", &start),
                ("end", &end),
                ("step", step),
            ],
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["resultType"], "matrix");
        let result = body["data"]["result"].as_array().unwrap();
        let instances: Vec<&str> = result
            .iter()
            .map(|s| s["metric"]["instance"].as_str().unwrap())
            .collect();
        assert_eq!(instances, ["a", "b"], "sorted by labels");
        let t0 = (last - 120_000) / 1000;
        assert_eq!(
            result[0]["values"],
            json!([[t0, "1"], [t0 + 60, "1"], [t0 + 120, "1"]])
        );
    }
    // A counter's rate: 30 per 15 s (up to float rounding, as in Prometheus).
    let (_, body) = both(
        &receiver,
        "/api/v1/query_range",
        &[
            ("query", "rate(cpu_seconds_total[5m])"),
            ("start", &end),
            ("end", &end),
            ("step", "15s"),
        ],
    );
    let rate: f64 = body["data"]["result"][0]["values"][0][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((rate - 2.0).abs() < 1e-9, "{rate}");
    assert_eq!(
        body["data"]["result"][0]["metric"],
        json!({"instance": "a"})
    );
    assert!(body.get("infos").is_none() && body.get("warnings").is_none());
    // Annotations come back as Prometheus's `infos` / `warnings`.
    let (_, body) = both(
        &receiver,
        "/api/v1/query",
        &[("query", "rate(up[5m])"), ("time", &end)],
    );
    assert_eq!(
        body["infos"],
        json!([
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\" (1:6)"
        ])
    );
    let (_, body) = both(
        &receiver,
        "/api/v1/query_range",
        &[
            ("query", "sort(up)"),
            ("start", &start),
            ("end", &end),
            ("step", "60"),
        ],
    );
    assert_eq!(
        body["warnings"],
        json!([
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)"
        ])
    );
}

fn assert_error(reply: (u16, Value), status: u16, error_type: &str, text: &str) {
    let (got_status, body) = reply;
    assert_eq!(got_status, status, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["errorType"], error_type, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains(text),
        "{message:?} should contain {text:?}"
    );
}

#[test]
fn errors_have_prometheus_types_and_statuses() {
    let (receiver, last) = receiver_with_data(&[]);
    let t = secs(last);
    let q = "/api/v1/query";
    assert_error(
        both(&receiver, q, &[("query", "sum(")]),
        400,
        "bad_data",
        "",
    );
    assert_error(both(&receiver, q, &[]), 400, "bad_data", "query");
    assert_error(
        both(&receiver, q, &[("query", "up"), ("time", "yesterday")]),
        400,
        "bad_data",
        "time",
    );
    // Not implemented: named, and never a wrong answer.
    assert_error(
        both(
            &receiver,
            q,
            &[("query", "mad_over_time(up[5m])"), ("time", &t)],
        ),
        400,
        "bad_data",
        "mad_over_time",
    );
    // Two series on each side match on nothing but the empty label set.
    assert_error(
        both(&receiver, q, &[("query", "up + on() up"), ("time", &t)]),
        422,
        "execution",
        "many-to-many",
    );
    let huge = "x".repeat(5 << 20);
    assert_error(
        post(&receiver, &receiver.token, q, &[("query", &huge)]),
        400,
        "bad_data",
        "form",
    );
    let r = "/api/v1/query_range";
    assert_error(
        both(
            &receiver,
            r,
            &[
                ("query", "up"),
                ("start", "100"),
                ("end", "10"),
                ("step", "1"),
            ],
        ),
        400,
        "bad_data",
        "end timestamp must not be before start time",
    );
    assert_error(
        both(
            &receiver,
            r,
            &[
                ("query", "up"),
                ("start", "0"),
                ("end", "11000"),
                ("step", "1"),
            ],
        ),
        400,
        "bad_data",
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
    );
    assert_error(
        both(
            &receiver,
            r,
            &[("query", "up"), ("start", "0"), ("end", "10")],
        ),
        400,
        "bad_data",
        "step",
    );
    assert_error(
        both(
            &receiver,
            r,
            &[
                ("query", "up[5m]"),
                ("start", "0"),
                ("end", "10"),
                ("step", "1"),
            ],
        ),
        400,
        "bad_data",
        "range query",
    );
}

#[test]
fn sample_limit_gives_execution_error() {
    let (receiver, last) = receiver_with_data(&["--query.max-samples", "10"]);
    let t = secs(last);
    assert_error(
        both(
            &receiver,
            "/api/v1/query",
            &[("query", "sum_over_time(up[30m])"), ("time", &t)],
        ),
        422,
        "execution",
        "too many samples",
    );
    // Small queries still run.
    let (status, _) = both(&receiver, "/api/v1/query", &[("query", "1"), ("time", &t)]);
    assert_eq!(status, 200);
}

#[test]
fn timeout_gives_timeout_error() {
    let (receiver, last) = receiver_with_data(&["--query.timeout", "1ms"]);
    let t = secs(last);
    // Millions of subquery steps: far beyond one millisecond.
    assert_error(
        both(
            &receiver,
            "/api/v1/query",
            &[
                ("query", "count_over_time(vector(1)[1d:1ms])"),
                ("time", &t),
            ],
        ),
        503,
        "timeout",
        "timed out",
    );
}

#[test]
fn series_labels_and_values() {
    let (receiver, last) = receiver_with_data(&[]);
    let (status, body) = both(&receiver, "/api/v1/series", &[("match[]", "up")]);
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!([
            {"__name__": "up", "instance": "a", "job": "node"},
            {"__name__": "up", "instance": "b", "job": "node"},
        ])
    );
    // Two selectors, a time range, and a limit.
    let (start, end) = (secs(last - 60_000), secs(last));
    let (_, body) = both(
        &receiver,
        "/api/v1/series",
        &[
            ("match[]", "up{instance=\"a\"}"),
            ("match[]", "cpu_seconds_total"),
            ("start", &start),
            ("end", &end),
        ],
    );
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = both(
        &receiver,
        "/api/v1/series",
        &[("match[]", "up"), ("limit", "1")],
    );
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
    // A time range with no samples finds nothing.
    let (_, body) = both(
        &receiver,
        "/api/v1/series",
        &[("match[]", "up"), ("start", "0"), ("end", "100")],
    );
    assert_eq!(body["data"], json!([]));
    assert_error(
        both(&receiver, "/api/v1/series", &[]),
        400,
        "bad_data",
        "match[]",
    );

    let (_, body) = both(&receiver, "/api/v1/labels", &[]);
    assert_eq!(body["data"], json!(["__name__", "instance", "job"]));
    let (_, body) = both(
        &receiver,
        "/api/v1/labels",
        &[("match[]", "cpu_seconds_total")],
    );
    assert_eq!(body["data"], json!(["__name__", "instance"]));

    let (_, body) = both(&receiver, "/api/v1/label/__name__/values", &[]);
    assert_eq!(body["data"], json!(["cpu_seconds_total", "up"]));
    let (_, body) = both(
        &receiver,
        "/api/v1/label/instance/values",
        &[("match[]", "up")],
    );
    assert_eq!(body["data"], json!(["a", "b"]));
    let (_, body) = both(
        &receiver,
        "/api/v1/label/job/values",
        &[("match[]", "cpu_seconds_total")],
    );
    assert_eq!(body["data"], json!([]));
}

#[test]
fn metadata_exemplars_buildinfo_and_format_query() {
    let receiver = Receiver::start(&[]);
    let (status, body) = both(&receiver, "/api/v1/metadata", &[]);
    assert_eq!((status, &body["data"]), (200, &json!({})));
    let (status, body) = both(&receiver, "/api/v1/query_exemplars", &[("query", "up")]);
    assert_eq!((status, &body["data"]), (200, &json!([])));
    let (status, body) = both(&receiver, "/api/v1/status/buildinfo", &[]);
    assert_eq!(status, 200);
    let version = body["data"]["version"].as_str().unwrap();
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    assert!(major >= 3, "{version}");
    assert!(body["data"].get("features").is_none());
    let (status, body) = both(
        &receiver,
        "/api/v1/format_query",
        &[("query", "sum(rate(x{a=\"b\"}[5m]))by(c)")],
    );
    assert_eq!(status, 200);
    assert_eq!(body["data"], "sum by (c) (rate(x{a=\"b\"}[5m]))");
    assert_error(
        both(&receiver, "/api/v1/format_query", &[("query", "sum(")]),
        400,
        "bad_data",
        "",
    );
}

#[test]
fn read_token_queries_and_write_token_is_refused() {
    let (receiver, last) = receiver_with_data(&[]);
    let read = receiver.create_token("grafana", "read");
    let write = receiver.create_token("prometheus", "write");
    let t = secs(last);
    let pairs = [("query", "count(up)"), ("time", t.as_str())];
    for path in [
        "/api/v1/query",
        "/api/v1/labels",
        "/api/v1/status/buildinfo",
    ] {
        let (status, body) = get(&receiver, &read, path, &pairs);
        assert_eq!(status, 200, "{path}: {body}");
        let (status, _) = post(&receiver, &read, path, &pairs);
        assert_eq!(status, 200, "{path}");
        let (status, _) = get(&receiver, &write, path, &pairs);
        assert_eq!(status, 403, "{path}");
        let (status, _) = post(&receiver, &write, path, &pairs);
        assert_eq!(status, 403, "{path}");
    }
    let (_, body) = get(&receiver, &read, "/api/v1/query", &pairs);
    assert_eq!(body["data"]["result"][0]["value"][1], "2");
    let response = client()
        .get(receiver.url("/api/v1/query?query=1"))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[test]
fn abandoned_query_frees_its_slot() {
    let (receiver, last) = receiver_with_data(&["--query.max-concurrency", "1"]);
    let t = secs(last);
    // Far more subquery steps than the client waits for.
    dcmon_web::install_crypto_provider();
    let impatient = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!(
        "{}?{}",
        receiver.url("/api/v1/query"),
        form(&[
            ("query", "count_over_time(vector(1)[7d:1ms])"),
            ("time", &t)
        ])
    );
    assert!(
        impatient
            .get(url)
            .bearer_auth(&receiver.token)
            .send()
            .is_err()
    );
    // The only slot is free again well before the abandoned query could
    // have finished.
    let started = std::time::Instant::now();
    let (status, body) = get(
        &receiver,
        &receiver.token,
        "/api/v1/query",
        &[("query", "1+1")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
