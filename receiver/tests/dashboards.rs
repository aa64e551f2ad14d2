//! The Grafana provisioning and dashboards in `grafana/`: every dashboard
//! has a fixed uid and reads the provisioned data source; every panel and
//! template-variable query, and every rule expression, parses with
//! `promql-parser` and runs as a range query on a receiver holding a small
//! fleet's data (`common::fleet`), and every panel and variable returns
//! data for it. A second test ships this machine's OS metrics through a
//! real `dcmon-exporter` and requires data from every panel whose metrics
//! arrived. The committed JSON is what `grafana/dashboards.py` generates,
//! byte for byte, so that an edit to either cannot drift from the other.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use dcmon_protocol::remote_write::Version;
use serde_json::Value;

use crate::common::dashboards::{Query, dashboards, panels, queries, substitute};
use crate::common::fleet::{SAMPLES, STEP_MS, fleet_series, workspace_root};
use crate::common::rulefile::read_rules;
use crate::common::{Receiver, client, now_ms};

/// The data source uid of provisioning/datasources/dcmon.yaml.
const DATASOURCE_UID: &str = "dcmon";

#[test]
fn dashboards_have_fixed_uids_and_use_the_provisioned_data_source() {
    let boards = dashboards();
    assert_eq!(boards.len(), 6, "six dashboards");
    let mut uids = BTreeSet::new();
    for (path, board) in &boards {
        let uid = board["uid"].as_str().unwrap_or_default();
        assert!(
            uid.starts_with("dcmon-") && uid.len() <= 40,
            "{}: uid {uid:?}",
            path.display()
        );
        assert!(uids.insert(uid.to_owned()), "duplicate uid {uid}");
        assert!(board["id"].is_null(), "{}: no numeric id", path.display());
        for panel in panels(board) {
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"],
                DATASOURCE_UID,
                "{}: panel {}",
                path.display(),
                panel["title"]
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
            for target in targets {
                assert_eq!(target["datasource"]["uid"], DATASOURCE_UID);
            }
        }
        for var in board["templating"]["list"].as_array().unwrap() {
            assert_eq!(var["datasource"]["uid"], DATASOURCE_UID);
            let query = var["query"]["query"].as_str().unwrap();
            assert!(query.starts_with("label_values("), "{query}");
        }
    }
}

/// How to bring the committed dashboards back in line with the script.
const REGENERATE: &str = "python3 grafana/dashboards.py";

/// The `.json` file names in `dir`, sorted.
fn json_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect()
}

#[test]
fn committed_dashboards_are_what_the_script_generates() {
    let root = workspace_root();
    let committed = root.join("grafana/dashboards");
    let fresh = tempfile::tempdir().unwrap();
    let output = Command::new("python3")
        .arg(root.join("grafana/dashboards.py"))
        .arg(fresh.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("running python3 grafana/dashboards.py (is python3 installed?): {e}")
        });
    assert!(
        output.status.success(),
        "python3 grafana/dashboards.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = json_files(fresh.path());
    assert!(!generated.is_empty(), "the script wrote no dashboard");
    assert_eq!(
        json_files(&committed),
        generated,
        "grafana/dashboards/ holds other files than the script writes; run `{REGENERATE}` and remove the others"
    );
    for name in &generated {
        let want = std::fs::read(fresh.path().join(name)).unwrap();
        let have = std::fs::read(committed.join(name)).unwrap();
        assert!(
            want == have,
            "grafana/dashboards/{name} differs from what grafana/dashboards.py generates: \
             edit the script, not the JSON, and run `{REGENERATE}`"
        );
    }
}

#[test]
fn provisioning_points_grafana_at_the_receiver() {
    let root = workspace_root().join("grafana/provisioning");
    let datasource = std::fs::read_to_string(root.join("datasources/dcmon.yaml")).unwrap();
    for needle in [
        "apiVersion: 1",
        "type: prometheus",
        &format!("uid: {DATASOURCE_UID}"),
        "url: ${DCMON_RECEIVER_URL}",
        "httpMethod: POST",
        "timeInterval: 30s",
        "httpHeaderName1: Authorization",
        "httpHeaderValue1: Bearer ${DCMON_READ_TOKEN}",
    ] {
        assert!(datasource.contains(needle), "datasource lacks {needle:?}");
    }
    let provider = std::fs::read_to_string(root.join("dashboards/dcmon.yaml")).unwrap();
    for needle in ["apiVersion: 1", "type: file", "path: "] {
        assert!(
            provider.contains(needle),
            "dashboard provider lacks {needle:?}"
        );
    }
}

/// Runs `expr` as a range query over the fleet data; the number of series
/// returned, or the error.
fn range_query(receiver: &Receiver, expr: &str, end_ms: i64) -> Result<usize, String> {
    let start = (end_ms - (SAMPLES - 1) * STEP_MS) / 1000 + 600;
    range_query_between(receiver, expr, start, end_ms / 1000, 60)
}

fn range_query_between(
    receiver: &Receiver,
    expr: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Result<usize, String> {
    let response = client()
        .get(receiver.url("/api/v1/query_range"))
        .bearer_auth(&receiver.token)
        .query(&[
            ("query", expr),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("step", &step.to_string()),
        ])
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    if status != 200 || body["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(body["data"]["result"].as_array().map_or(0, Vec::len))
}

#[test]
fn every_dashboard_and_rule_query_parses_and_runs_with_data() {
    let receiver = Receiver::start(&[]);
    let end_ms = now_ms() / STEP_MS * STEP_MS;
    let series = fleet_series(end_ms);
    for chunk in series.chunks(200) {
        let response = receiver.write(Version::V1, chunk);
        assert!((200..300).contains(&response.status), "write: {response:?}");
    }

    let mut all = Vec::new();
    for (path, board) in dashboards() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        all.extend(queries(&name, &board));
    }
    let panel_queries = all.len();
    for file in ["dcmon-records.yml", "dcmon-alerts.yml"] {
        for rule in read_rules(&workspace_root().join("rules").join(file)) {
            all.push(Query {
                origin: format!("{file}: {} {}", rule.kind, rule.name),
                expr: rule.expr,
            });
        }
    }

    let mut failures = Vec::new();
    let mut with_data = 0;
    for query in &all {
        let expr = substitute(&query.expr, "gpu02");
        if let Err(e) = promql_parser::parser::parse(&expr) {
            failures.push(format!("{}: does not parse: {e}\n  {expr}", query.origin));
            continue;
        }
        // Alerts stay quiet on a healthy fleet; they only have to run.
        let must_have_data = !query.origin.contains(": alert ");
        match range_query(&receiver, &expr, end_ms) {
            Err(e) => failures.push(format!("{}: {e}\n  {expr}", query.origin)),
            Ok(0) if must_have_data => {
                failures.push(format!("{}: no data\n  {expr}", query.origin))
            }
            Ok(0) => {}
            Ok(_) => with_data += 1,
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} queries ({panel_queries} from dashboards) ran, {with_data} with data",
        all.len()
    );
    assert!(panel_queries > 150, "{panel_queries} dashboard queries");
}

/// Panels that may stay empty on a machine whose metrics they read, and why.
const MAY_BE_EMPTY_ON_THIS_MACHINE: &[(&str, &str)] = &[
    // Containers (CI) mount their root as overlay, which the panels leave
    // out like the alerts do; other file systems may not exist.
    (
        "File system use",
        "only overlay/tmpfs mounts in a container",
    ),
    // Filters on non-loopback devices or error counters that need traffic.
    ("Network traffic", "a machine may have only `lo`"),
    ("Network errors and drops", "a machine may have only `lo`"),
    ("Failing collectors", "empty while every collector works"),
];

#[test]
fn dashboards_show_what_a_real_exporter_ships() {
    use crate::common::exporter::Exporter;
    use crate::metric_names::selected;

    const INSTANCE: &str = "dashboards-e2e";
    let receiver = Receiver::start(&[]);
    let token_file = receiver.write_token_file("dashboards-e2e");
    let url = format!("http://{}/api/v1/write", receiver.addr);
    // This machine's /proc and /sys; the hardware collectors and apt need
    // fakes (their names are covered by the fleet test above).
    let exporter = Exporter::start(&[
        "--remote-write.url",
        &url,
        "--remote-write.bearer-token-file",
        token_file.to_str().unwrap(),
        "--remote-write.interval",
        "1s",
        "--remote-write.instance",
        INSTANCE,
        "--no-collector.gpu",
        "--no-collector.ipmi",
        "--no-collector.nvme",
        "--no-collector.apt",
    ]);
    let sent = format!("dcmon_remote_write_samples_total{{endpoint=\"{url}\",result=\"sent\"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while exporter.metric(&sent) <= 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing shipped:\n{}",
            exporter.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A few more intervals, so rates have two samples or more.
    std::thread::sleep(std::time::Duration::from_secs(5));

    let (status, body) = receiver.get_json("/api/v1/label/__name__/values");
    assert_eq!(status, 200, "{body}");
    let stored: BTreeSet<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(stored.contains("node_cpu_seconds_total"), "{stored:?}");

    let end = now_ms() / 1000;
    let mut failures = Vec::new();
    let (mut checked, mut required) = (0, 0);
    for (path, board) in dashboards() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for query in queries(&name, &board) {
            let expr = substitute(&query.expr, INSTANCE);
            let ast = promql_parser::parser::parse(&expr).unwrap();
            let reads = selected(&ast);
            let shipped = !reads.names.is_empty()
                && reads.names.iter().all(|n| stored.contains(n))
                && reads.regexes.iter().all(|re| {
                    let re = regex::Regex::new(&format!("^(?:{re})$")).unwrap();
                    stored.iter().any(|n| re.is_match(n))
                });
            let excused = MAY_BE_EMPTY_ON_THIS_MACHINE
                .iter()
                .any(|(title, _)| query.origin.contains(&format!("{title:?}")));
            checked += 1;
            match range_query_between(&receiver, &expr, end - 60, end, 5) {
                Err(e) => failures.push(format!("{}: {e}\n  {expr}", query.origin)),
                Ok(0) if shipped && !excused => {
                    failures.push(format!("{}: no data\n  {expr}", query.origin))
                }
                Ok(_) if shipped => required += 1,
                Ok(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{checked} dashboard queries ran on a real exporter's data, {required} of them read shipped names"
    );
    assert!(
        required >= 30,
        "only {required} queries read what the exporter shipped"
    );
    community_clock_and_conntrack_rules_are_armed(&receiver, INSTANCE);
}

/// The community clock and conntrack alerts read names node_exporter's
/// timex and conntrack collectors export; on a host without them the rules
/// can never fire, silently. With every comparison made a `bool` one, each
/// rule evaluates to a real 0 or 1 for the host when all its inputs are
/// shipped.
fn community_clock_and_conntrack_rules_are_armed(receiver: &Receiver, instance: &str) {
    const RULES: &str = include_str!("promql_side_by_side/data/rule-queries.tsv");
    let comparison = regex::Regex::new(r"(>=|<=|==|>|<)\s*(-?[0-9.]+)").unwrap();
    let mut armed = Vec::new();
    for name in [
        "HostClockSkew",
        "HostClockNotSynchronising",
        "HostConntrackLimit",
    ] {
        let rule = RULES
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|f| f[0].contains("samber_awesome-prometheus-alerts") && f[2] == name)
            .unwrap_or_else(|| panic!("{name} in the rules table"));
        let expr = comparison.replace_all(rule[3], "$1 bool $2").into_owned();
        let result = receiver.query_result(&receiver.token, &[("query", expr.as_str())]);
        let values: Vec<&str> = result
            .iter()
            .filter(|r| r["metric"]["instance"] == instance)
            .filter_map(|r| r["value"][1].as_str())
            .collect();
        assert!(
            !values.is_empty() && values.iter().all(|v| *v == "0" || *v == "1"),
            "{name} has no value for {instance}: {expr} gave {result:?}"
        );
        armed.push(format!("{name}={}", values[0]));
    }
    eprintln!(
        "community rules armed on shipped data: {}",
        armed.join(", ")
    );
}
