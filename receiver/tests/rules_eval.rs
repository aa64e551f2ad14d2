//! The receiver evaluating rule files itself (`--rules.file`), over real
//! loopback HTTP with a real database: a recording rule's output is
//! stored and seen by the next rule of the same evaluation, an alert goes
//! pending then firing with rendered labels and annotations, both show in
//! `/api/v1/rules` and `/api/v1/alerts` (read scope) and in `ALERTS`; a
//! bad file is refused with its file, group and rule named, at start and
//! on reload, where the rules running go on.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dcmon_protocol::remote_write::Version;
use serde_json::Value;

use crate::common::{Receiver, client, now_ms, series, wait_until};

const RULES: &str = r#"groups:
  - name: fleet
    interval: 1s
    rules:
      - record: job:temp:max
        expr: max by (job) (temp)
      - record: job:temp:max_doubled
        expr: job:temp:max * 2
        labels:
          source: rules
      - alert: Hot
        expr: temp > 50
        for: 2s
        labels:
          severity: warning
          host: "{{ $labels.instance }}"
        annotations:
          summary: "{{ $labels.instance }} runs hot"
          description: "{{ $labels.instance }} is at {{ $value | humanize }} degrees ({{ printf \"%.1f\" $value }})."
"#;

/// GET `path` with `token`: (status, JSON).
fn get(receiver: &Receiver, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = client().get(receiver.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn alerts(receiver: &Receiver, token: &str) -> Vec<Value> {
    let (status, body) = get(receiver, Some(token), "/api/v1/alerts");
    assert_eq!(status, 200, "{body}");
    body["data"]["alerts"].as_array().unwrap().clone()
}

fn groups(receiver: &Receiver, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = get(receiver, Some(token), &format!("/api/v1/rules{query}"));
    assert_eq!(status, 200, "{body}");
    body["data"]["groups"].as_array().unwrap().clone()
}

fn reload(receiver: &Receiver, token: &str) -> (u16, String) {
    let response = client()
        .post(receiver.url("/-/reload"))
        .bearer_auth(token)
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

fn number(result: &[Value]) -> f64 {
    assert_eq!(result.len(), 1, "{result:?}");
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn rules_record_and_alert_and_show_in_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.yml");
    std::fs::write(&file, RULES).unwrap();
    let pattern = dir.path().join("*.yml").display().to_string();
    let receiver = Receiver::start(&["--rules.file", &pattern]);
    let read = receiver.create_token("grafana", "read");
    let now = now_ms();
    let written = receiver.write(
        Version::V1,
        &[
            series(
                &[("__name__", "temp"), ("job", "gpu"), ("instance", "a")],
                &[(now, 70.0)],
            ),
            series(
                &[("__name__", "temp"), ("job", "gpu"), ("instance", "b")],
                &[(now, 40.0)],
            ),
        ],
    );
    assert_eq!(written.status, 204, "{}", written.body);

    // The alert goes pending first, then fires once `for` has passed.
    wait_until("Hot is pending", Duration::from_secs(20), || {
        alerts(&receiver, &read)
            .iter()
            .any(|a| a["state"] == "pending" || a["state"] == "firing")
    });
    wait_until("Hot fires", Duration::from_secs(20), || {
        alerts(&receiver, &read)
            .iter()
            .any(|a| a["state"] == "firing")
    });
    let alerts = alerts(&receiver, &read);
    assert_eq!(alerts.len(), 1, "only instance a is above 50: {alerts:?}");
    let alert = &alerts[0];
    assert_eq!(
        alert["labels"],
        serde_json::json!({"alertname": "Hot", "host": "a", "instance": "a", "job": "gpu", "severity": "warning"})
    );
    assert_eq!(alert["annotations"]["summary"], "a runs hot");
    assert_eq!(
        alert["annotations"]["description"],
        "a is at 70 degrees (70.0)."
    );
    assert_eq!(alert["value"], "7e+01");
    assert!(
        alert["activeAt"].as_str().unwrap().ends_with('Z'),
        "{alert}"
    );

    // The recording rules' results are stored, labelled by the rule.
    let doubled = receiver.query_result(&read, &[("query", "job:temp:max_doubled")]);
    assert_eq!(number(&doubled), 140.0);
    assert_eq!(doubled[0]["metric"]["source"], "rules");
    assert_eq!(doubled[0]["metric"]["job"], "gpu");
    // The second rule saw the first one's output of the same evaluation:
    // it has a sample for every evaluation the first had, the first
    // included (one behind had it read the previous evaluation's).
    let last = receiver.query_result(&read, &[("query", "timestamp(job:temp:max_doubled)")]);
    let at = number(&last).to_string();
    let count = |name: &str| {
        number(&receiver.query_result(
            &read,
            &[
                ("query", &format!("count_over_time({name}[1h])")),
                ("time", &at),
            ],
        ))
    };
    let records = count("job:temp:max");
    assert!(records >= 2.0, "{records}");
    assert_eq!(count("job:temp:max_doubled"), records);

    // ALERTS and ALERTS_FOR_STATE are written as Prometheus writes them.
    let firing = receiver.query_result(
        &read,
        &[("query", r#"ALERTS{alertname="Hot",alertstate="firing"}"#)],
    );
    assert_eq!(number(&firing), 1.0);
    assert_eq!(firing[0]["metric"]["host"], "a");
    let since = receiver.query_result(&read, &[("query", r#"ALERTS_FOR_STATE{alertname="Hot"}"#)]);
    let active_at = chrono::DateTime::parse_from_rfc3339(alert["activeAt"].as_str().unwrap())
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0;
    assert_eq!(number(&since), active_at);

    // /api/v1/rules in Prometheus's shape, and its filters.
    let all = groups(&receiver, &read, "");
    assert_eq!(all.len(), 1);
    let group = &all[0];
    assert_eq!(group["name"], "fleet");
    assert_eq!(group["file"], file.display().to_string());
    assert_eq!(group["interval"], 1.0);
    let rules = group["rules"].as_array().unwrap();
    let kinds: Vec<(&str, &str, &str)> = rules
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["type"].as_str().unwrap(),
                r["health"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("job:temp:max", "recording", "ok"),
            ("job:temp:max_doubled", "recording", "ok"),
            ("Hot", "alerting", "ok"),
        ]
    );
    let hot = &rules[2];
    assert_eq!(hot["state"], "firing");
    assert_eq!(hot["duration"], 2.0);
    assert_eq!(hot["query"], "temp > 50");
    assert_eq!(hot["labels"]["host"], "{{ $labels.instance }}");
    assert_eq!(hot["alerts"][0]["labels"]["instance"], "a");
    assert!(rules[0].get("labels").is_none(), "{}", rules[0]);
    assert_eq!(rules[1]["labels"]["source"], "rules");
    let records = groups(&receiver, &read, "?type=record");
    assert_eq!(records[0]["rules"].as_array().unwrap().len(), 2);
    let named = groups(
        &receiver,
        &read,
        "?rule_name[]=Hot&rule_name[]=job:temp:max",
    );
    assert_eq!(named[0]["rules"].as_array().unwrap().len(), 2);
    assert!(groups(&receiver, &read, "?rule_group[]=other").is_empty());
    let (status, body) = get(&receiver, Some(&read), "/api/v1/rules?type=both");
    assert_eq!(
        (status, body["errorType"].as_str()),
        (400, Some("bad_data")),
        "{body}"
    );

    // Read scope is needed; reloading needs the admin.
    assert_eq!(get(&receiver, None, "/api/v1/rules").0, 401);
    assert_eq!(get(&receiver, None, "/api/v1/alerts").0, 401);
    assert_eq!(reload(&receiver, &read).0, 403);

    // The evaluator's metrics, under Prometheus's names.
    let metrics = receiver.metrics_text();
    let key = format!("rule_group=\"{};fleet\"", file.display());
    for name in [
        "prometheus_rule_group_last_evaluation_timestamp_seconds",
        "prometheus_rule_evaluations_total",
        "prometheus_rule_group_rules",
    ] {
        assert!(
            metrics.contains(&format!("{name}{{{key}}}")),
            "{name} missing:\n{metrics}"
        );
    }
    assert!(metrics.contains("prometheus_rule_evaluation_duration_seconds_count"));

    // A bad file on reload is refused, named, and the old rules go on.
    std::fs::write(&file, RULES.replace("expr: temp > 50", "expr: temp >")).unwrap();
    let (status, body) = reload(&receiver, &receiver.token);
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let body = body["error"].as_str().unwrap();
    for part in [
        file.display().to_string().as_str(),
        "group \"fleet\"",
        "rule 3 (alert \"Hot\")",
        "could not parse expression",
    ] {
        assert!(body.contains(part), "{part:?} missing: {body}");
    }
    let before = groups(&receiver, &read, "")[0]["lastEvaluation"].clone();
    wait_until(
        "the old rules evaluate again",
        Duration::from_secs(10),
        || groups(&receiver, &read, "")[0]["lastEvaluation"] != before,
    );
    assert!(receiver.log().contains("reloading the rule files failed"));

    // A good file replaces them; the unchanged alert keeps its state.
    std::fs::write(
        &file,
        RULES.replace("      - record: job:temp:max_doubled", "      - record: job:temp:min\n        expr: min by (job) (temp)\n      - record: job:temp:max_doubled"),
    )
    .unwrap();
    let (status, body) = reload(&receiver, &receiver.token);
    assert_eq!(status, 200, "{body}");
    let rules = groups(&receiver, &read, "")[0]["rules"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 4);
    assert_eq!(rules[3]["state"], "firing", "{rules}");
    wait_until("the new rule records", Duration::from_secs(10), || {
        !receiver
            .query_result(&read, &[("query", "job:temp:min")])
            .is_empty()
    });
}

/// Runs the receiver with `rule_file` and returns its stderr once it
/// exits (it must, refusing the file).
fn refused_at_start(dir: &Path, rule_file: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
        .args(["--web.listen-address", "127.0.0.1:0", "--storage.path"])
        .arg(dir.join("dcmon.db"))
        .arg("--admin-token-file")
        .arg(dir.join("admin-token"))
        .arg("--rules.file")
        .arg(rule_file)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a bad rule file must stop the start"
    );
    // The log escapes quotes; the message is read without the escapes.
    String::from_utf8_lossy(&output.stderr).replace('\\', "")
}

#[test]
fn a_bad_rule_file_stops_the_start_naming_file_group_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "groups:\n  - name: g1\n    rules:\n      - alert: Loud\n        expr: up == 0\n        annotations:\n          summary: '{{ $value | sparkle }}'\n",
            &[
                "group \"g1\"",
                "rule 1 (alert \"Loud\")",
                "unsupported template function sparkle",
            ][..],
        ),
        (
            "groups:\n  - name: g2\n    rules:\n      - record: ok:rule\n        expr: up\n      - record: bad:rule\n        expr: up\n        for: 5m\n",
            &[
                "group \"g2\"",
                "rule 2 (record \"bad:rule\")",
                "invalid field 'for' in recording rule",
            ][..],
        ),
        (
            "groups:\n  - name: g3\n    rules:\n      - alert: A\n        expr: up\n        severity: page\n",
            &["unknown field `severity`"][..],
        ),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{index}.yml"));
        std::fs::write(&file, text).unwrap();
        let stderr = refused_at_start(dir.path(), &file);
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        for part in *expected {
            assert!(stderr.contains(part), "{part:?} missing: {stderr}");
        }
    }
}

/// `(timestamp ms, value)` of every `ALERTS_FOR_STATE` sample of the last
/// hour.
fn for_state_samples(receiver: &Receiver, token: &str) -> Vec<(i64, f64)> {
    let result = receiver.query_result(token, &[("query", "ALERTS_FOR_STATE[1h]")]);
    assert!(result.len() <= 1, "{result:?}");
    result
        .first()
        .map(|series| {
            series["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A pending alert keeps its `for` progress across a restart (SIGKILL):
/// its `activeAt` is read back from `ALERTS_FOR_STATE` and moved on by
/// the time the receiver was down, as Prometheus does, instead of
/// starting over at the first evaluation after the restart.
#[test]
fn a_restart_keeps_a_pending_alerts_for_progress() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.yml");
    std::fs::write(
        &file,
        "groups:\n  - name: slow\n    interval: 1s\n    rules:\n      - alert: SlowBurn\n        expr: temp > 50\n        for: 1h\n",
    )
    .unwrap();
    let mut receiver = Receiver::start(&["--rules.file", &file.display().to_string()]);
    let token = receiver.token.clone();
    let written = receiver.write(
        Version::V1,
        &[series(
            &[("__name__", "temp"), ("instance", "a")],
            &[(now_ms(), 90.0)],
        )],
    );
    assert_eq!(written.status, 204, "{}", written.body);
    // Pending for at least 3 s (four samples a second apart) before the kill.
    wait_until(
        "SlowBurn has been pending a while",
        Duration::from_secs(20),
        || for_state_samples(&receiver, &token).len() >= 4,
    );
    let before = for_state_samples(&receiver, &token);
    let active_before = before[0].1;
    assert!(
        before.iter().all(|(_, v)| *v == active_before),
        "{before:?}"
    );
    let killed_at = now_ms();
    receiver.kill_and_restart();
    let token = receiver.token.clone();
    let after = || -> Vec<(i64, f64)> {
        for_state_samples(&receiver, &token)
            .into_iter()
            .filter(|(t, _)| *t > killed_at)
            .collect()
    };
    wait_until("SlowBurn is written again", Duration::from_secs(20), || {
        !after().is_empty()
    });
    let (first_ms, active_after) = after()[0];
    let alerts = alerts(&receiver, &token);
    assert_eq!(alerts[0]["state"], "pending", "{alerts:?}");
    // Started over, activeAt would be the evaluation just before this
    // sample (a second earlier). Restored, it is at least the 3 s the
    // alert had been pending earlier than that, and later than before by
    // the time the receiver was down.
    assert!(
        active_after * 1000.0 <= (first_ms - 3000) as f64,
        "activeAt {active_after} not restored (first sample at {first_ms} ms, before {before:?})"
    );
    assert!(
        active_after > active_before,
        "{active_after} vs {active_before}"
    );
}
