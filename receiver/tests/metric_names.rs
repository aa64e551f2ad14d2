//! Every metric name the rules, the dashboards and the test fleet use is
//! one dcmon really writes: a name in the exporter's source or in
//! node_exporter's expected output for the fixtures the exporter is
//! compared with, or one the receiver writes. A typo in a rule would
//! otherwise pass its own unit test, which is written with the same typo.

use std::collections::BTreeSet;
use std::path::Path;

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};

use crate::common::fleet::{fleet_series, workspace_root};
use crate::common::rulefile::read_rules;

/// Names dcmon writes, as far as its sources tell.
fn known_names() -> (BTreeSet<String>, Vec<regex::Regex>) {
    let root = workspace_root();
    let mut names = BTreeSet::new();
    let e2e = std::fs::read_to_string(
        root.join("exporter/tests/fixtures/procfs/node_exporter/e2e-output.txt"),
    )
    .unwrap();
    for line in e2e.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            names.insert(rest.split_whitespace().next().unwrap().to_owned());
        }
    }
    let literal =
        regex::Regex::new(r#""((?:node|nvidia_smi|ipmi|nvme|apt|dcmon)_[A-Za-z0-9_]+)""#).unwrap();
    let reason = regex::Regex::new(r#"\(ThrottleReasons::\w+, "(\w+)"\)"#).unwrap();
    let mut sources = Vec::new();
    collect_rs(&root.join("exporter/src"), &mut sources);
    for text in &sources {
        for caps in literal.captures_iter(text) {
            names.insert(caps[1].to_owned());
        }
        for caps in reason.captures_iter(text) {
            names.insert(format!("nvidia_smi_clocks_event_reasons_{}", &caps[1]));
        }
    }
    // The receiver: its heartbeat series and its self-metrics.
    let heartbeat = std::fs::read_to_string(root.join("receiver/src/heartbeat.rs")).unwrap();
    for name in ["up", "dcmon_client_last_seen_timestamp_seconds"] {
        assert!(
            heartbeat.contains(&format!("\"{name}\"")),
            "heartbeat writes {name}"
        );
        names.insert(name.to_owned());
    }
    let metrics = std::fs::read_to_string(root.join("receiver/src/metrics.rs")).unwrap();
    let registered = regex::Regex::new(r#"register\(\s*"([a-z_]+)""#).unwrap();
    for caps in registered.captures_iter(&metrics) {
        for suffix in ["", "_total", "_bucket", "_count", "_sum"] {
            names.insert(format!("dcmon_receiver_{}{suffix}", &caps[1]));
        }
    }
    // meminfo writes every /proc/meminfo field.
    let patterns = vec![regex::Regex::new(r"^node_memory_[A-Za-z0-9_()]+_bytes$").unwrap()];
    (names, patterns)
}

fn collect_rs(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(path).unwrap());
        }
    }
}

/// Metric names a query reads: selector names, `__name__="…"` matchers,
/// and `__name__=~"…"` regexes (returned separately).
#[derive(Default)]
pub struct Selected {
    /// Exact names.
    pub names: Vec<String>,
    /// `__name__` regexes.
    pub regexes: Vec<String>,
}

/// The metric names a parsed query reads.
pub fn selected(ast: &Expr) -> Selected {
    let mut selected = Selected::default();
    walk_expr(&mut selected, ast).unwrap();
    selected
}

impl ExprVisitor for Selected {
    type Error = ();

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        let selector = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        if let Some(name) = &selector.name {
            self.names.push(name.clone());
        }
        for matcher in &selector.matchers.matchers {
            if matcher.name != "__name__" {
                continue;
            }
            match matcher.op {
                MatchOp::Equal => self.names.push(matcher.value.clone()),
                MatchOp::Re(_) => self.regexes.push(matcher.value.clone()),
                _ => {}
            }
        }
        Ok(true)
    }
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let dir = workspace_root().join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut panels: Vec<&serde_json::Value> = Vec::new();
        for panel in board["panels"].as_array().unwrap() {
            panels.push(panel);
            panels.extend(panel["panels"].as_array().into_iter().flatten());
        }
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!("{file}: {}", panel["title"]),
                    target["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn rules_and_dashboards_read_only_names_dcmon_writes() {
    let (known, patterns) = known_names();
    let is_known = |name: &str| known.contains(name) || patterns.iter().any(|p| p.is_match(name));
    let mut exprs = dashboard_exprs();
    for file in ["dcmon-alerts.yml", "dcmon-records.yml"] {
        for rule in read_rules(&workspace_root().join("rules").join(file)) {
            exprs.push((format!("{file}: {}", rule.name), rule.expr));
        }
    }
    let mut unknown = Vec::new();
    for (origin, expr) in &exprs {
        // Grafana's variables do not change which metrics are read.
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", "x")
            .replace("$receiver_job", "x")
            .replace("$job", "x");
        let ast = promql_parser::parser::parse(&expr).unwrap_or_else(|e| panic!("{origin}: {e}"));
        let selected = selected(&ast);
        for name in &selected.names {
            if !is_known(name) {
                unknown.push(format!("{origin}: {name}"));
            }
        }
        for re in &selected.regexes {
            let anchored = regex::Regex::new(&format!("^(?:{re})$")).unwrap();
            let matching: Vec<&String> = known.iter().filter(|n| anchored.is_match(n)).collect();
            if matching.is_empty() {
                unknown.push(format!("{origin}: no known name matches {re}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "names dcmon does not write:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_test_fleet_writes_only_names_dcmon_writes() {
    let (known, patterns) = known_names();
    let mut unknown = BTreeSet::new();
    for series in fleet_series(0) {
        let name = &series
            .labels
            .iter()
            .find(|(k, _)| k == "__name__")
            .unwrap()
            .1;
        if !known.contains(name) && !patterns.iter().any(|p| p.is_match(name)) {
            unknown.insert(name.clone());
        }
    }
    assert!(
        unknown.is_empty(),
        "fleet data with unknown names: {unknown:?}"
    );
}
