//! The receiver's rule evaluator notifying Debian's real
//! `prometheus-alertmanager` (`--alertmanager.url`): a firing alert
//! arrives with its rendered annotations, a cleared one is resolved, with
//! Alertmanager stopped the bounded queue drops (and counts) while the
//! receiver goes on answering, and once Alertmanager is back the firing
//! alerts are sent again and arrive.
//!
//! One receiver and one Alertmanager (started twice on the same port);
//! rules evaluated every second, firing alerts resent every two.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use dcmon_protocol::remote_write::Version;
use serde_json::Value;

use crate::common::peer::{Process, free_port, wait_for};
use crate::common::{Receiver, client, now_ms, series, wait_until};

const RULES: &str = r#"groups:
  - name: notify
    interval: 1s
    rules:
      - alert: Hot
        expr: temp > 50
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.instance }} runs hot at {{ $value }}"
"#;

const ALERTMANAGER: &str = "route:
  receiver: blackhole
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: blackhole
";

/// Four alerts are due at once (three firing, one resolved) while
/// Alertmanager is down, so a stalled sender overflows the queue.
const CAPACITY: &str = "4";

fn start_alertmanager(dir: &Path, port: u16, run: &str) -> Process {
    let config = dir.join("alertmanager.yml");
    std::fs::write(&config, ALERTMANAGER).unwrap();
    let process = Process(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join(run).display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"),
    );
    wait_for(&format!("http://127.0.0.1:{port}/-/ready"), "alertmanager");
    process
}

/// Alertmanager's active alerts named Hot, by instance.
fn held(port: u16) -> BTreeMap<String, Value> {
    let alerts: Value = client()
        .get(format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null);
    alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "Hot")
        .map(|a| {
            (
                a["labels"]["instance"].as_str().unwrap_or("").to_owned(),
                a.clone(),
            )
        })
        .collect()
}

/// A metric's value in the receiver's `/metrics` (summed over label sets).
fn metric(receiver: &Receiver, name: &str) -> f64 {
    receiver
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn temps(receiver: &Receiver, values: &[(&str, f64)]) {
    let now = now_ms();
    let written: Vec<_> = values
        .iter()
        .map(|(instance, v)| {
            series(
                &[("__name__", "temp"), ("job", "gpu"), ("instance", instance)],
                &[(now, *v)],
            )
        })
        .collect();
    let response = receiver.write(Version::V1, &written);
    assert_eq!(response.status, 204, "{}", response.body);
}

fn rfc3339_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .timestamp_millis()
}

#[test]
fn alerts_reach_alertmanager_resolve_queue_bounded_and_resend() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("notify.yml");
    std::fs::write(&rules, RULES).unwrap();
    let port = free_port();
    let mut alertmanager = Some(start_alertmanager(dir.path(), port, "first"));
    let url = format!("http://127.0.0.1:{port}");
    let receiver = Receiver::start(&[
        "--rules.file",
        &rules.display().to_string(),
        "--alertmanager.url",
        &url,
        "--rules.alert.resend-delay",
        "1s",
        "--alertmanager.timeout",
        "2s",
        "--alertmanager.notification-queue-capacity",
        CAPACITY,
        "--web.external-url",
        "http://receiver.example:8000",
    ]);
    assert_eq!(
        metric(
            &receiver,
            "prometheus_notifications_alertmanagers_discovered"
        ),
        1.0
    );
    assert_eq!(
        metric(&receiver, "prometheus_notifications_queue_capacity"),
        4.0
    );

    // Firing: arrives with its labels and rendered annotations.
    temps(&receiver, &[("a", 70.0), ("b", 20.0)]);
    wait_until(
        "Hot{a} reaches Alertmanager",
        Duration::from_secs(20),
        || held(port).contains_key("a"),
    );
    let alert = &held(port)["a"];
    assert_eq!(
        alert["annotations"]["summary"], "a runs hot at 70",
        "{alert}"
    );
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["job"], "gpu");
    assert_eq!(alert["status"]["state"], "active");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("http://receiver.example:8000/graph?g0.expr=temp+%3E+50"),
        "{alert}"
    );
    assert!(!held(port).contains_key("b"), "b is below the threshold");
    assert!(metric(&receiver, "prometheus_notifications_sent_total") >= 1.0);

    // Cleared: sent as resolved. Unresolved, Alertmanager would hold it
    // until the last `endsAt` it got (at least two resend delays ahead);
    // resolved, it goes at once.
    temps(&receiver, &[("a", 20.0)]);
    let mut last_ends_at = i64::MAX;
    wait_until(
        "Hot{a} is resolved",
        Duration::from_secs(20),
        || match held(port).get("a") {
            Some(alert) => {
                last_ends_at = rfc3339_ms(alert["endsAt"].as_str().unwrap());
                false
            }
            None => true,
        },
    );
    assert!(
        now_ms() < last_ends_at,
        "Hot{{a}} left Alertmanager only when its endsAt passed: it was not sent resolved"
    );

    // Alertmanager stopped: three alerts fire, every send fails and is
    // retried, the queue overflows; its bound holds, the drops are
    // counted, and the receiver goes on answering.
    drop(alertmanager.take());
    temps(&receiver, &[("b", 71.0), ("c", 72.0), ("d", 73.0)]);
    wait_until("notifications are dropped", Duration::from_secs(30), || {
        let length = metric(&receiver, "prometheus_notifications_queue_length");
        assert!(length <= 4.0, "queue length {length} past its capacity");
        metric(&receiver, "prometheus_notifications_dropped_total") > 0.0
    });
    assert!(metric(&receiver, "prometheus_notifications_errors_total") > 0.0);
    let (status, firing) = receiver.get_json("/api/v1/alerts");
    assert_eq!(status, 200);
    assert_eq!(
        firing["data"]["alerts"].as_array().unwrap().len(),
        3,
        "{firing}"
    );

    // Back (with no memory of before): the firing alerts are sent again
    // and arrive; the resolved one stays resolved.
    alertmanager = Some(start_alertmanager(dir.path(), port, "second"));
    wait_until(
        "the firing alerts reach the new Alertmanager",
        Duration::from_secs(30),
        || held(port).keys().map(String::as_str).eq(["b", "c", "d"]),
    );
    let held = held(port);
    assert_eq!(held["c"]["annotations"]["summary"], "c runs hot at 72");
    assert!(!held.contains_key("a"));
    drop(alertmanager);
}

#[test]
fn bad_alertmanager_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
            .args(["--web.listen-address", "127.0.0.1:0", "--storage.path"])
            .arg(dir.path().join("dcmon.db"))
            .arg("--admin-token-file")
            .arg(dir.path().join("admin-token"))
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let err = refused(&["--alertmanager.url", "am:9093"]);
    assert!(err.contains("--alertmanager.url"), "{err}");
    let err = refused(&["--alertmanager.notification-queue-capacity", "0"]);
    assert!(err.contains("notification-queue-capacity"), "{err}");
    let missing = dir.path().join("missing");
    let err = refused(&[
        "--alertmanager.url",
        "http://127.0.0.1:9",
        "--alertmanager.bearer-token-file",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("missing"), "{err}");
}
