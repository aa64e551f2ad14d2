//! The receiver's rule evaluation side by side with Debian's Prometheus
//! 2.42 evaluating the same rule file on the same data (remote-written to
//! both): the recording rules' outputs and `ALERTS` are equal at the same
//! evaluation times (both align a group's schedule by the hash of its file
//! and name), `/api/v1/alerts` lists the same alerts with the same labels,
//! annotations, states and values, and `/api/v1/rules` has the same
//! groups and rules. Timestamps of the evaluations themselves (wall clock)
//! and each rule's `query` (Prometheus prints the parsed expression, the
//! receiver the text as written) are left out.

use std::collections::BTreeMap;
use std::time::Duration;

use dcmon_protocol::remote_write::{self, Version};
use dcmon_testkit::start_prometheus_with;
use serde_json::{Value, json};

use crate::common::peer::{free_port, wait_for};
use crate::common::{Receiver, client, now_ms, series, wait_until, write_headers};

const RULES: &str = r#"groups:
  - name: side
    interval: 1s
    rules:
      - record: job:temp:avg
        expr: avg by (job) (temp)
      - record: job:temp:max
        expr: max by (job) (temp)
        labels:
          tier: hot
      - record: instance:temp:excess
        expr: temp - on (job) group_left job:temp:avg
      - alert: TempHigh
        expr: temp > 60
        for: 2s
        labels:
          severity: warning
          where: "{{ $labels.instance | toUpper }}"
        annotations:
          summary: "{{ $labels.instance }} at {{ $value }} ({{ $value | humanize }})"
          ratio: "{{ $value | humanizePercentage }}"
          bytes: "{{ $value | humanize1024 }}"
          took: "{{ $value | humanizeDuration }}"
          fixed: '{{ printf "%.3f|%5.1f|%s" $value $value $labels.job }}'
          title: "{{ title \"hot gpu\" }} {{ reReplaceAll \"(.)\" \"$1-\" $labels.instance }}"
      - alert: TempExcess
        expr: instance:temp:excess > 0
        annotations:
          summary: "{{ $labels.instance }} above its job's mean by {{ $value }}"
      - alert: Never
        expr: temp > 1000
"#;

/// GET `url` with `params`: the JSON body's `data`.
fn data(url: &str, token: Option<&str>, params: &[(&str, &str)]) -> Value {
    let mut request = client().get(url).query(params);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body: Value = request.send().unwrap().json().unwrap();
    assert_eq!(body["status"], "success", "{url}: {body}");
    body["data"].clone()
}

/// An instant query's vector as labels → (value, timestamp).
fn vector(result: &Value) -> BTreeMap<String, String> {
    result["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"].to_string(), s["value"][1].as_str().unwrap().to_owned()))
        .collect()
}

/// Alerts without their `activeAt` (wall-clock dependent), sorted.
fn alerts(data: &Value) -> Vec<Value> {
    let mut alerts: Vec<Value> = data["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            json!({"labels": a["labels"], "annotations": a["annotations"],
                   "state": a["state"], "value": a["value"]})
        })
        .collect();
    alerts.sort_by_key(|a| a["labels"].to_string());
    alerts
}

/// The rules API's structure: groups and rules with their settings,
/// health, state and alerts, without times or the printed query.
fn structure(data: &Value) -> Value {
    let groups: Vec<Value> = data["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let rules: Vec<Value> = g["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    let object = r.as_object_mut().unwrap();
                    for volatile in ["evaluationTime", "lastEvaluation", "query"] {
                        object.remove(volatile);
                    }
                    if let Some(list) = object.get("alerts").cloned() {
                        object.insert("alerts".into(), json!(alerts(&json!({"alerts": list}))));
                    }
                    r
                })
                .collect();
            json!({"name": g["name"], "file": g["file"], "interval": g["interval"],
                   "limit": g["limit"], "rules": rules})
        })
        .collect();
    json!(groups)
}

#[test]
fn rule_evaluation_matches_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let rule_file = dir.path().join("side.yml");
    std::fs::write(&rule_file, RULES).unwrap();
    let receiver = Receiver::start(&["--rules.file", &rule_file.display().to_string()]);
    let read = receiver.create_token("grafana", "read");

    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - {}\n",
            rule_file.display()
        ),
    )
    .unwrap();
    let _prometheus = start_prometheus_with(
        &config,
        dir.path(),
        port,
        &["--web.enable-remote-write-receiver"],
    );
    let api = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{api}/-/ready"), "prometheus");

    // The same samples into both. The values keep every average exact:
    // 2.42 averages by running mean, the receiver (as Prometheus 3) by
    // sum over count, which can differ in the last bits.
    let now = now_ms();
    let fleet = [
        series(&[("__name__", "temp"), ("job", "gpu"), ("instance", "a")], &[(now, 75.5)]),
        series(&[("__name__", "temp"), ("job", "gpu"), ("instance", "b")], &[(now, 40.0)]),
        series(&[("__name__", "temp"), ("job", "gpu"), ("instance", "c")], &[(now, 64.5)]),
        series(&[("__name__", "temp"), ("job", "cpu"), ("instance", "d")], &[(now, 50.0)]),
    ];
    let written = receiver.write(Version::V1, &fleet);
    assert_eq!(written.status, 204, "{}", written.body);
    let mut request = client().post(format!("{api}/api/v1/write"));
    for (name, value) in write_headers(Version::V1) {
        request = request.header(name, value);
    }
    let response = request
        .body(remote_write::compress(&remote_write::encode_v1(&fleet)))
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{:?}", response.text());

    // Both fire TempHigh once `for` has passed; then the alerts agree.
    let receiver_alerts = || alerts(&data(&receiver.url("/api/v1/alerts"), Some(&read), &[]));
    let prometheus_alerts = || alerts(&data(&format!("{api}/api/v1/alerts"), None, &[]));
    let firing = |alerts: &[Value]| alerts.iter().filter(|a| a["state"] == "firing").count();
    wait_until("both fire every alert", Duration::from_secs(30), || {
        firing(&receiver_alerts()) == 4 && firing(&prometheus_alerts()) == 4
    });
    let (ours, theirs) = (receiver_alerts(), prometheus_alerts());
    assert_eq!(
        ours,
        theirs,
        "receiver:\n{}\nprometheus:\n{}",
        serde_json::to_string_pretty(&ours).unwrap(),
        serde_json::to_string_pretty(&theirs).unwrap()
    );

    // Recording outputs and ALERTS at Prometheus's latest evaluation time,
    // once the receiver has evaluated it too: same series, values and
    // timestamps (the same schedule).
    let latest = |url: &str, token: Option<&str>| -> f64 {
        let result = data(url, token, &[("query", "timestamp(job:temp:avg{job=\"gpu\"})")]);
        result["result"][0]["value"][1].as_str().unwrap().parse().unwrap()
    };
    let at = latest(&format!("{api}/api/v1/query"), None);
    wait_until("the receiver evaluates that time", Duration::from_secs(10), || {
        latest(&receiver.url("/api/v1/query"), Some(&read)) >= at
    });
    let at = at.to_string();
    for query in [
        r#"{__name__=~"job:.+|instance:.+"}"#,
        r#"timestamp({__name__=~"job:.+|instance:.+"})"#,
        "ALERTS",
        "ALERTS_FOR_STATE - ALERTS_FOR_STATE",
        // Not a multiple of the interval: 2.42 counts a sample on the
        // window's left edge, Prometheus 3 (and the receiver) do not.
        r#"count_over_time({__name__=~"job:.+"}[2500ms])"#,
    ] {
        let params = [("query", query), ("time", at.as_str())];
        let ours = vector(&data(&receiver.url("/api/v1/query"), Some(&read), &params));
        let theirs = vector(&data(&format!("{api}/api/v1/query"), None, &params));
        assert!(!theirs.is_empty(), "{query}: nothing in prometheus");
        assert_eq!(ours, theirs, "{query} at {at}");
    }

    // The rules API: same groups and rules, states and alerts.
    let ours = || structure(&data(&receiver.url("/api/v1/rules"), Some(&read), &[]));
    let theirs = || structure(&data(&format!("{api}/api/v1/rules"), None, &[]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ours() != theirs() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ours, theirs) = (ours(), theirs());
    assert_eq!(
        ours,
        theirs,
        "receiver:\n{}\nprometheus:\n{}",
        serde_json::to_string_pretty(&ours).unwrap(),
        serde_json::to_string_pretty(&theirs).unwrap()
    );
}
