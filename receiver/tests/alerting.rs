//! Alerting end to end with the real peers, as the README sets it up:
//! Debian's vmalert, started with the command line of
//! `systemd/dcmon-vmalert.service`, evaluates every rule in `rules/`
//! against the receiver (its query API as the data source, with a read
//! token), writes the recording rules' results and `ALERTS` back through
//! remote write (with a write token), and sends the alerts to Debian's
//! Alertmanager running `rules/examples/alertmanager.yml` unchanged.
//!
//! The rules are loaded with their `for:` hold times removed, so an alert
//! fires on the first evaluation instead of minutes to days later; the
//! expressions, labels and annotations are the shipped ones. Only the
//! addresses, paths and the evaluation interval differ from the unit.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use dcmon_protocol::remote_write::Version;
use serde_json::Value;

use crate::common::fleet::{STEP_MS, fleet_series, workspace_root};
use crate::common::peer::{Process, free_port, wait_for};
use crate::common::rulefile::read_rules;
use crate::common::{Receiver, client, now_ms, series, wait_until};

const RULE_FILES: [&str; 2] = ["dcmon-alerts.yml", "dcmon-records.yml"];

/// Copies a rule file without its `for:` lines.
fn without_hold_times(from: &Path, to: &Path) {
    let text = std::fs::read_to_string(from).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("for:"))
        .collect();
    std::fs::write(to, kept.join("\n") + "\n").unwrap();
}

/// vmalert's arguments from the unit's ExecStart, each of `replacements`
/// (unit text → this test's value) applied; each must occur.
fn unit_arguments(replacements: &[(&str, String)]) -> Vec<String> {
    let unit =
        std::fs::read_to_string(workspace_root().join("systemd/dcmon-vmalert.service")).unwrap();
    let mut command = String::new();
    for line in unit.lines().skip_while(|l| !l.starts_with("ExecStart=")) {
        let line = line.strip_prefix("ExecStart=").unwrap_or(line);
        match line.strip_suffix('\\') {
            Some(continued) => command.push_str(continued),
            None => {
                command.push_str(line);
                break;
            }
        }
    }
    let mut words: Vec<String> = command
        .split_whitespace()
        .filter(|w| !w.starts_with('$'))
        .map(str::to_owned)
        .collect();
    assert_eq!(words.remove(0), "/usr/bin/vmalert");
    for (from, to) in replacements {
        assert!(
            words.iter().any(|w| w.contains(from)),
            "{from} is not in the unit's ExecStart"
        );
        for word in &mut words {
            *word = word.replace(from, to);
        }
    }
    words
}

fn get_json(url: &str, token: Option<&str>, query: &[(&str, &str)]) -> Value {
    let mut request = client().get(url).query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {:?}",
        response.status()
    );
    response.json().unwrap()
}

/// `(alertname, instance, receiver)` of every alert Alertmanager holds.
fn alertmanager_alerts(api: &str) -> BTreeSet<(String, String, String)> {
    let alerts = get_json(&format!("{api}/api/v2/alerts"), None, &[]);
    let mut out = BTreeSet::new();
    for alert in alerts.as_array().unwrap() {
        let label = |name: &str| alert["labels"][name].as_str().unwrap_or("").to_owned();
        for receiver in alert["receivers"].as_array().unwrap() {
            let receiver = receiver["name"].as_str().unwrap().to_owned();
            out.insert((label("alertname"), label("instance"), receiver));
        }
    }
    out
}

/// The `instance` labels of what `query` returns on the receiver.
fn instances(receiver: &Receiver, read_token: &str, query: &str) -> BTreeSet<String> {
    receiver
        .query_result(read_token, &[("query", query)])
        .iter()
        .map(|s| s["metric"]["instance"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn vmalert_evaluates_the_rules_on_the_receiver_and_alertmanager_routes_them() {
    let receiver = Receiver::start(&[]);
    let end_ms = now_ms() / STEP_MS * STEP_MS;
    for chunk in fleet_series(end_ms).chunks(200) {
        let response = receiver.write(Version::V1, chunk);
        assert_eq!(response.status, 204, "{}", response.body);
    }
    // A third host that stopped pushing: the heartbeat's up == 0, and a
    // reboot flag its HostDown alert should silence.
    let samples: Vec<(i64, f64)> = (0..10).map(|k| (end_ms - k * STEP_MS, 0.0)).collect();
    let flag: Vec<(i64, f64)> = samples.iter().map(|(t, _)| (*t, 1.0)).collect();
    let gpu03 = [("job", "dcmon"), ("instance", "gpu03")];
    let response = receiver.write(
        Version::V1,
        &[
            series(&[&[("__name__", "up")][..], &gpu03].concat(), &samples),
            series(
                &[&[("__name__", "node_reboot_required")][..], &gpu03].concat(),
                &flag,
            ),
        ],
    );
    assert_eq!(response.status, 204, "{}", response.body);
    let read_token = receiver.create_token("vmalert-read", "read");
    let write_token = receiver.create_token("vmalert-write", "write");

    let dir = tempfile::tempdir().unwrap();
    let rules = workspace_root().join("rules");
    let mut rule_count = 0;
    for file in RULE_FILES {
        rule_count += read_rules(&rules.join(file)).len();
        without_hold_times(&rules.join(file), &dir.path().join(file));
    }

    let alertmanager_port = free_port();
    let alertmanager_api = format!("http://127.0.0.1:{alertmanager_port}");
    let _alertmanager = Process(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                rules.join("examples/alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.path().join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{alertmanager_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"),
    );
    wait_for(&format!("{alertmanager_api}/-/ready"), "alertmanager");

    let vmalert_port = free_port();
    let vmalert_api = format!("http://127.0.0.1:{vmalert_port}");
    let receiver_url = format!("http://{}", receiver.addr);
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(credentials.join("read-token"), &read_token).unwrap();
    std::fs::write(credentials.join("write-token"), &write_token).unwrap();
    let arguments = unit_arguments(&[
        ("/usr/share/dcmon/rules", dir.path().display().to_string()),
        ("%d", credentials.display().to_string()),
        ("http://127.0.0.1:8000", receiver_url),
        ("http://127.0.0.1:9093", alertmanager_api.clone()),
        ("127.0.0.1:8880", format!("127.0.0.1:{vmalert_port}")),
    ]);
    let vmalert_log = std::fs::File::create(dir.path().join("vmalert.log")).unwrap();
    let _vmalert = Process(
        Command::new("vmalert")
            .args(arguments)
            // Faster than the unit's 30 s; the later flag wins.
            .args(["-evaluationInterval=2s", "-remoteWrite.flushInterval=1s"])
            .stdout(Stdio::null())
            .stderr(vmalert_log)
            .spawn()
            .expect("vmalert is not installed (apt-get install victoria-metrics)"),
    );
    wait_for(&format!("{vmalert_api}/api/v1/rules"), "vmalert");

    // gpu02 needs a reboot and had an XID error (info and warning → the
    // `team` receiver); gpu03 is down (critical → `pager`).
    let wanted = [
        ("RebootRequired", "gpu02", "team"),
        ("GpuXidError", "gpu02", "team"),
        ("HostDown", "gpu03", "pager"),
        ("RebootRequired", "gpu03", "team"),
    ]
    .map(|(a, i, r)| (a.to_owned(), i.to_owned(), r.to_owned()));
    wait_until("alerts in Alertmanager", Duration::from_secs(60), || {
        let held = alertmanager_alerts(&alertmanager_api);
        wanted.iter().all(|w| held.contains(w))
    });

    // Every rule was evaluated on the receiver without an error.
    let groups = get_json(&format!("{vmalert_api}/api/v1/rules"), None, &[]);
    let mut evaluated = 0;
    for group in groups["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            evaluated += 1;
            let error = rule["lastError"].as_str().unwrap_or("");
            assert!(error.is_empty(), "{}: {error}", rule["name"]);
        }
    }
    assert_eq!(evaluated, rule_count, "vmalert loaded every rule");

    // Each alert took its severity's route, with its annotations rendered;
    // the down host's other alerts are inhibited, the rest are not.
    let alerts = get_json(&format!("{alertmanager_api}/api/v2/alerts"), None, &[]);
    for alert in alerts.as_array().unwrap() {
        let label = |name: &str| alert["labels"][name].as_str().unwrap();
        let route = if label("severity") == "critical" {
            "pager"
        } else {
            "team"
        };
        assert_eq!(alert["receivers"][0]["name"], route, "{alert}");
        for annotation in ["summary", "description"] {
            let text = alert["annotations"][annotation].as_str().unwrap();
            assert!(text.contains(label("instance")), "{text}");
            assert!(!text.contains("{{"), "unrendered: {text}");
        }
        let silenced = label("instance") == "gpu03" && label("alertname") != "HostDown";
        let state = if silenced { "suppressed" } else { "active" };
        assert_eq!(alert["status"]["state"], state, "{alert}");
    }

    // What vmalert wrote back: recording rules for both hosts, and ALERTS.
    wait_until(
        "recording rules in the receiver",
        Duration::from_secs(30),
        || {
            instances(
                &receiver,
                &read_token,
                "instance:node_cpu_busy:ratio_rate5m",
            ) == BTreeSet::from(["gpu01".to_owned(), "gpu02".to_owned()])
        },
    );
    wait_until("ALERTS in the receiver", Duration::from_secs(30), || {
        instances(
            &receiver,
            &read_token,
            r#"ALERTS{alertname="RebootRequired", alertstate="firing"}"#,
        ) == BTreeSet::from(["gpu02".to_owned(), "gpu03".to_owned()])
    });
}
