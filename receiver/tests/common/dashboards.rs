//! Our Grafana dashboards as data: their files, panels and the queries
//! Grafana sends, with its variables replaced as Grafana would.

use std::path::PathBuf;

use serde_json::Value;

use super::fleet::workspace_root;

pub fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = workspace_root().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, json)
        })
        .collect()
}

/// Panels, with those nested in collapsed rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// A query to check: where it comes from and its text.
pub struct Query {
    /// Dashboard, panel or variable.
    pub origin: String,
    /// The PromQL text, Grafana variables unreplaced.
    pub expr: String,
}

pub fn queries(name: &str, dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                origin: format!("{name}: panel {:?} {}", panel["title"], target["refId"]),
                expr: target["expr"].as_str().unwrap().to_owned(),
            });
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let query = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap();
        out.push(Query {
            origin: format!("{name}: variable {}", var["name"]),
            expr: variable_selector(query),
        });
    }
    out
}

/// The series selector a `label_values(...)`/`query_result(...)`
/// variable query sends.
pub fn variable_selector(query: &str) -> String {
    if let Some(inner) = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
    {
        let (selector, _label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("label_values without a metric: {query}"));
        selector.trim().to_owned()
    } else if let Some(inner) = query
        .strip_prefix("query_result(")
        .and_then(|q| q.strip_suffix(')'))
    {
        inner.to_owned()
    } else {
        panic!("unsupported variable query {query}")
    }
}

/// Replaces Grafana's variables as Grafana would for one selected host.
pub fn substitute(expr: &str, instance: &str) -> String {
    substitute_with_job(expr, "dcmon", instance)
}

/// [`substitute`] with another `$job`.
pub fn substitute_with_job(expr: &str, job: &str, instance: &str) -> String {
    let values = [
        ("job", job),
        ("receiver_job", "dcmon-receiver"),
        ("instance", instance),
        ("__rate_interval", "2m"),
        ("__interval", "30s"),
        ("__range", "1h"),
    ];
    let re = regex::Regex::new(r"\$\{(\w+)\}|\$(\w+)").unwrap();
    re.replace_all(expr, |caps: &regex::Captures<'_>| {
        let name = caps.get(1).or(caps.get(2)).unwrap().as_str();
        if name.chars().all(|c| c.is_ascii_digit()) {
            // label_replace's `$1`
            return caps[0].to_owned();
        }
        values
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unknown Grafana variable ${name} in {expr}"))
            .1
            .to_owned()
    })
    .into_owned()
}
