//! The alerting and recording rules in `rules/`: `promtool check rules`
//! and `promtool test rules` pass, every alert carries a severity, a
//! summary and a description quoting its value, and every alert has a
//! unit test in which it fires and one in which it stays quiet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::fleet::workspace_root;
use crate::common::rulefile::read_rules;

fn promtool() -> &'static str {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "promtool is not installed (apt-get install prometheus)"
    );
    "promtool"
}

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .yml files in {}", dir.display());
    files
}

fn run(args: &[&str], files: &[PathBuf]) -> String {
    let output = Command::new(promtool())
        .args(args)
        .args(files)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_check_rules_is_clean() {
    let files = yml_files(&workspace_root().join("rules"));
    let text = run(&["check", "rules"], &files);
    assert_eq!(
        text.matches("SUCCESS").count(),
        files.len(),
        "one SUCCESS per file expected:\n{text}"
    );
    assert!(!text.contains("WARNING"), "{text}");
}

/// The example Prometheus configuration, with the rule files where the
/// packages install them (here: this checkout) and its credentials file
/// present: `promtool check config` loads it and every rule file.
#[test]
fn example_prometheus_config_loads_the_rules() {
    let example = workspace_root().join("rules/examples/prometheus.yml");
    let text = std::fs::read_to_string(&example).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("dcmon-read-token");
    std::fs::write(&token, "dcmon_example\n").unwrap();
    let rules = workspace_root().join("rules");
    let local = text
        .replace("/usr/share/dcmon/rules", &rules.display().to_string())
        .replace(
            "/etc/prometheus/dcmon-read-token",
            &token.display().to_string(),
        );
    assert_ne!(
        local, text,
        "the example names neither rules nor token file"
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, local).unwrap();
    let output = run(&["check", "config"], &[config]);
    for file in ["dcmon-alerts.yml", "dcmon-records.yml"] {
        assert!(
            output.contains(&format!("Checking {}", rules.join(file).display())),
            "{output}"
        );
    }
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let files = yml_files(&workspace_root().join("rules/tests"));
    let text = run(&["test", "rules"], &files);
    assert_eq!(
        text.matches("SUCCESS").count(),
        files.len(),
        "one SUCCESS per test file expected:\n{text}"
    );
}

#[test]
fn every_alert_is_labelled_and_described() {
    let rules = read_rules(&workspace_root().join("rules/dcmon-alerts.yml"));
    let alerts: Vec<_> = rules.iter().filter(|r| r.kind == "alert").collect();
    assert!(alerts.len() >= 30, "{} alerts", alerts.len());
    for alert in alerts {
        assert!(
            matches!(
                alert.severity.as_deref(),
                Some("critical" | "warning" | "info")
            ),
            "{}: severity {:?}",
            alert.name,
            alert.severity
        );
        let summary = alert.summary.as_deref().unwrap_or_default();
        assert!(
            summary.contains("$labels."),
            "{}: summary {summary:?}",
            alert.name
        );
        let description = alert.description.as_deref().unwrap_or_default();
        assert!(
            description.contains("$value"),
            "{}: the description must quote the value: {description:?}",
            alert.name
        );
        assert!(!alert.expr.is_empty(), "{}: no expr", alert.name);
    }
}

/// For each alert name in the test files: (cases where it fires, cases
/// where it must stay quiet).
fn alert_cases() -> BTreeMap<String, (usize, usize)> {
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in yml_files(&workspace_root().join("rules/tests")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix("alertname:") {
                current = Some(name.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
                let name = current.take().expect("exp_alerts after an alertname");
                let entry = cases.entry(name).or_default();
                if rest.trim() == "[]" {
                    entry.1 += 1;
                } else {
                    entry.0 += 1;
                }
            }
        }
    }
    cases
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test() {
    let rules = read_rules(&workspace_root().join("rules/dcmon-alerts.yml"));
    let cases = alert_cases();
    let mut missing = Vec::new();
    for alert in rules.iter().filter(|r| r.kind == "alert") {
        let (firing, quiet) = cases.get(&alert.name).copied().unwrap_or_default();
        if firing == 0 {
            missing.push(format!("{}: no case where it fires", alert.name));
        }
        if quiet == 0 {
            missing.push(format!("{}: no case where it stays quiet", alert.name));
        }
    }
    for name in cases.keys() {
        if !rules.iter().any(|r| &r.name == name) {
            missing.push(format!("{name}: tested but not defined"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
