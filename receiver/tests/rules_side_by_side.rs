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
use std::path::{Path, PathBuf};
use std::time::Duration;

use dcmon_protocol::remote_write::{self, SeriesSamples, Version};
use dcmon_testkit::start_prometheus_with;
use serde_json::{Value, json};

use crate::common::fleet::{STEP_MS, fleet_series, workspace_root};
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
        .map(|s| {
            (
                s["metric"].to_string(),
                s["value"][1].as_str().unwrap().to_owned(),
            )
        })
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

/// A receiver and a Prometheus evaluating the same rule files.
struct Pair {
    receiver: Receiver,
    read: String,
    api: String,
    _prometheus: dcmon_testkit::KillOnDrop,
}

impl Pair {
    fn start(dir: &Path, rule_files: &[PathBuf], receiver_flags: &[&str]) -> Pair {
        let mut flags: Vec<String> = receiver_flags.iter().map(|f| f.to_string()).collect();
        for file in rule_files {
            flags.push(format!("--rules.file={}", file.display()));
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let receiver = Receiver::start(&flags);
        let read = receiver.create_token("grafana", "read");
        let port = free_port();
        let config = dir.join("prometheus.yml");
        let files: String = rule_files
            .iter()
            .map(|f| format!("  - {}\n", f.display()))
            .collect();
        std::fs::write(
            &config,
            format!("global:\n  evaluation_interval: 1s\nrule_files:\n{files}"),
        )
        .unwrap();
        let prometheus =
            start_prometheus_with(&config, dir, port, &["--web.enable-remote-write-receiver"]);
        let api = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{api}/-/ready"), "prometheus");
        Pair {
            receiver,
            read,
            api,
            _prometheus: prometheus,
        }
    }

    /// Remote-writes `series` to both.
    fn push(&self, series: &[SeriesSamples]) {
        for chunk in series.chunks(200) {
            let written = self.receiver.write(Version::V1, chunk);
            assert_eq!(written.status, 204, "{}", written.body);
            let mut request = client().post(format!("{}/api/v1/write", self.api));
            for (name, value) in write_headers(Version::V1) {
                request = request.header(name, value);
            }
            let response = request
                .body(remote_write::compress(&remote_write::encode_v1(chunk)))
                .send()
                .unwrap();
            assert!(response.status().is_success(), "{:?}", response.text());
        }
    }

    fn ours(&self, path: &str, params: &[(&str, &str)]) -> Value {
        data(&self.receiver.url(path), Some(&self.read), params)
    }

    fn theirs(&self, path: &str, params: &[(&str, &str)]) -> Value {
        data(&format!("{}{path}", self.api), None, params)
    }

    /// Polls until `view` of both answers to `path` agree (both at the
    /// same evaluation), then asserts it, showing both.
    fn agree(&self, path: &str, view: impl Fn(&Value) -> Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let both = || (view(&self.ours(path, &[])), view(&self.theirs(path, &[])));
        let (mut ours, mut theirs) = both();
        while ours != theirs && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            (ours, theirs) = both();
        }
        assert_eq!(
            ours,
            theirs,
            "{path}\nreceiver:\n{}\nprometheus:\n{}",
            serde_json::to_string_pretty(&ours).unwrap(),
            serde_json::to_string_pretty(&theirs).unwrap()
        );
    }

    /// Asserts that `query` answers the same on both (`same`) at an
    /// evaluation time both have done, found through `probe`; retried for
    /// a while at later times, since either may skip an evaluation when
    /// the machine is busy, or (Prometheus) write a group's ALERTS only
    /// from its second evaluation on.
    fn same_at(
        &self,
        query: &str,
        probe: &str,
        same: impl Fn(&BTreeMap<String, String>, &BTreeMap<String, String>) -> bool,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let at = self.common_evaluation_time(probe);
            let params = [("query", query), ("time", at.as_str())];
            let ours = vector(&self.ours("/api/v1/query", &params));
            let theirs = vector(&self.theirs("/api/v1/query", &params));
            if !theirs.is_empty() && same(&ours, &theirs) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{query} at {at}\nreceiver: {ours:#?}\nprometheus: {theirs:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Prometheus's latest evaluation time of the series `probe` selects,
    /// once the receiver has evaluated it too.
    fn common_evaluation_time(&self, probe: &str) -> String {
        let query = format!("max(timestamp({probe}))");
        let latest = |result: Value| -> f64 {
            result["result"][0]["value"][1]
                .as_str()
                .map_or(0.0, |v| v.parse().unwrap())
        };
        // Prometheus writes ALERTS only from its second evaluation on
        // (after restoring `for` state), so this may take a moment.
        wait_until(
            "prometheus evaluates the probe",
            Duration::from_secs(10),
            || latest(self.theirs("/api/v1/query", &[("query", &query)])) > 0.0,
        );
        let at = latest(self.theirs("/api/v1/query", &[("query", &query)]));
        wait_until(
            "the receiver evaluates that time",
            Duration::from_secs(10),
            || latest(self.ours("/api/v1/query", &[("query", &query)])) >= at,
        );
        at.to_string()
    }
}

#[test]
fn rule_evaluation_matches_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let rule_file = dir.path().join("side.yml");
    std::fs::write(&rule_file, RULES).unwrap();
    let pair = Pair::start(dir.path(), &[rule_file], &[]);

    // The same samples into both. The values keep every average exact:
    // 2.42 averages by running mean, the receiver (as Prometheus 3) by
    // sum over count, which can differ in the last bits.
    let now = now_ms();
    let fleet = [
        series(
            &[("__name__", "temp"), ("job", "gpu"), ("instance", "a")],
            &[(now, 75.5)],
        ),
        series(
            &[("__name__", "temp"), ("job", "gpu"), ("instance", "b")],
            &[(now, 40.0)],
        ),
        series(
            &[("__name__", "temp"), ("job", "gpu"), ("instance", "c")],
            &[(now, 64.5)],
        ),
        series(
            &[("__name__", "temp"), ("job", "cpu"), ("instance", "d")],
            &[(now, 50.0)],
        ),
    ];
    pair.push(&fleet);

    // Both fire TempHigh once `for` has passed; then the alerts agree.
    let receiver_alerts = || alerts(&pair.ours("/api/v1/alerts", &[]));
    let prometheus_alerts = || alerts(&pair.theirs("/api/v1/alerts", &[]));
    let firing = |alerts: &[Value]| alerts.iter().filter(|a| a["state"] == "firing").count();
    wait_until("both fire every alert", Duration::from_secs(30), || {
        firing(&receiver_alerts()) == 4 && firing(&prometheus_alerts()) == 4
    });
    pair.agree("/api/v1/alerts", |d| json!(alerts(d)));

    // Recording outputs and ALERTS at Prometheus's latest evaluation time,
    // once the receiver has evaluated it too: same series, values and
    // timestamps (the same schedule).
    for query in [
        r#"{__name__=~"job:.+|instance:.+"}"#,
        r#"timestamp({__name__=~"job:.+|instance:.+"})"#,
        "ALERTS",
        "ALERTS_FOR_STATE - ALERTS_FOR_STATE",
    ] {
        pair.same_at(query, r#"job:temp:avg{job="gpu"}"#, |a, b| a == b);
    }

    // The rules API: same groups and rules, states and alerts.
    pair.agree("/api/v1/rules", structure);
}

/// Values within a relative 1e-9: the engines may differ in the last bits
/// (2.42's running-mean `avg`).
fn close(ours: &BTreeMap<String, String>, theirs: &BTreeMap<String, String>) -> bool {
    ours.len() == theirs.len()
        && ours.iter().zip(theirs).all(|((ka, va), (kb, vb))| {
            let (a, b): (f64, f64) = (va.parse().unwrap(), vb.parse().unwrap());
            ka == kb && (a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()))
        })
}

/// The shipped rule files (groups every second, `for:` as shipped, so
/// alerts stay pending) on the test fleet: the same recording outputs,
/// the same alerts with the same rendered annotations.
#[test]
fn shipped_rules_evaluate_as_in_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in ["dcmon-alerts.yml", "dcmon-records.yml"] {
        let text = std::fs::read_to_string(workspace_root().join("rules").join(name)).unwrap();
        let file = dir.path().join(name);
        std::fs::write(&file, text.replace("interval: 30s", "interval: 1s")).unwrap();
        files.push(file);
    }
    let pair = Pair::start(dir.path(), &files, &["--rules.evaluation-interval=1s"]);
    let end_ms = now_ms() / STEP_MS * STEP_MS;
    pair.push(&fleet_series(end_ms));

    wait_until("both have pending alerts", Duration::from_secs(30), || {
        !alerts(&pair.ours("/api/v1/alerts", &[])).is_empty()
            && !alerts(&pair.theirs("/api/v1/alerts", &[])).is_empty()
    });
    pair.agree("/api/v1/alerts", |d| json!(alerts(d)));
    pair.same_at(
        r#"{__name__=~"instance:.+"}"#,
        "instance:node_memory_used:ratio",
        close,
    );
    pair.same_at("ALERTS", "ALERTS", close);
    pair.agree("/api/v1/rules", structure);
}
