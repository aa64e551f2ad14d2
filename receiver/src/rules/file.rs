//! Rule files in Prometheus's format (`groups:` of recording and alerting
//! rules), read and checked as strictly as `promtool check rules`: an
//! unknown field, a missing or doubled `record`/`alert`, an expression
//! that does not parse, a bad label name or template refuses the file,
//! and the error names the file, the group and the rule.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dcmon_protocol::duration::parse_duration;
use promql_parser::parser::Expr;
use serde::Deserialize;

use super::template::Template;
use crate::promql::valid_label_name;

/// A rule file that cannot be used, with where in it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with the group and rule where it is one of them.
    pub message: String,
}

/// The groups of every rule file, in file then group order.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Every group.
    pub groups: Vec<GroupSpec>,
}

/// One group, checked.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The file it came from, as named (after glob expansion).
    pub file: String,
    /// Its name, unique within the file.
    pub name: String,
    /// How often it is evaluated.
    pub interval: Duration,
    /// Most series one rule may produce (0: no limit).
    pub limit: usize,
    /// How far back of the evaluation time its queries look.
    pub query_offset: Duration,
    /// Its rules, in order.
    pub rules: Vec<RuleSpec>,
}

/// One rule, checked.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// Recording or alerting, with what only that kind has.
    pub kind: RuleKind,
    /// The expression as written.
    pub expr_text: String,
    /// The expression parsed.
    pub expr: Expr,
    /// Labels added to (or, for an empty value, removed from) each result;
    /// templates for an alerting rule.
    pub labels: Vec<(String, Template)>,
}

/// What only one kind of rule has.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// `record:`, the metric name its results are stored under.
    Record { name: String },
    /// `alert:` and its hold times and annotations.
    Alert {
        /// The alert name.
        name: String,
        /// How long the expression must hold before the alert fires.
        hold: Duration,
        /// How long a firing alert stays firing after the expression
        /// stops holding.
        keep_firing_for: Duration,
        /// Annotation templates, by name.
        annotations: Vec<(String, Template)>,
    },
}

impl RuleSpec {
    /// The `record` or `alert` name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Record { name } | RuleKind::Alert { name, .. } => name,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    interval: Option<String>,
    #[serde(default)]
    limit: i64,
    query_offset: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: String,
    #[serde(default)]
    alert: String,
    #[serde(default)]
    expr: String,
    #[serde(rename = "for")]
    hold: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The files `patterns` name: each a path, or a glob (`*`, `?`, `[`)
/// whose matches are taken in name order (none is not an error, as in
/// Prometheus). A file named twice is read once.
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, FileError> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for pattern in patterns {
        let matched: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            let paths = glob::glob(pattern).map_err(|err| FileError {
                path: PathBuf::from(pattern),
                message: format!("not a valid glob: {err}"),
            })?;
            let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            found.sort();
            found
        } else {
            vec![PathBuf::from(pattern)]
        };
        for path in matched {
            if seen.insert(path.clone()) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// Reads and checks every file `patterns` name; `default_interval` is a
/// group's interval when it gives none.
pub fn load(patterns: &[String], default_interval: Duration) -> Result<RuleSet, FileError> {
    let mut groups = Vec::new();
    for path in expand(patterns)? {
        let text = std::fs::read_to_string(&path).map_err(|err| FileError {
            path: path.clone(),
            message: format!("cannot read: {err}"),
        })?;
        groups.extend(parse(&path, &text, default_interval)?);
    }
    Ok(RuleSet { groups })
}

/// Parses and checks one file's `text`.
pub fn parse(
    path: &Path,
    text: &str,
    default_interval: Duration,
) -> Result<Vec<GroupSpec>, FileError> {
    let fail = |message: String| FileError {
        path: path.to_owned(),
        message,
    };
    // An empty file is a file without groups, as Prometheus reads it.
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: RawFile = serde_yaml_ng::from_str(text).map_err(|err| fail(err.to_string()))?;
    let mut names = HashSet::new();
    let mut groups = Vec::new();
    for group in raw.groups {
        if group.name.is_empty() {
            return Err(fail(
                "a group has no name (groupname must not be empty)".into(),
            ));
        }
        if !names.insert(group.name.clone()) {
            return Err(fail(format!(
                "group {:?}: the name is repeated in the same file",
                group.name
            )));
        }
        let in_group = |message: String| fail(format!("group {:?}: {message}", group.name));
        let duration = |field: &str, value: &Option<String>| match value {
            None => Ok(None),
            Some(text) => parse_duration(text)
                .map(Some)
                .map_err(|err| in_group(format!("{field} {text:?}: {err}"))),
        };
        let interval = duration("interval", &group.interval)?.unwrap_or(default_interval);
        if interval.is_zero() {
            return Err(in_group("interval must be more than 0".into()));
        }
        let query_offset = duration("query_offset", &group.query_offset)?.unwrap_or_default();
        let limit = usize::try_from(group.limit)
            .map_err(|_| in_group(format!("limit {} is negative", group.limit)))?;
        let mut rules = Vec::new();
        for (index, rule) in group.rules.into_iter().enumerate() {
            let which = match (rule.record.is_empty(), rule.alert.is_empty()) {
                (false, true) => format!("rule {} (record {:?})", index + 1, rule.record),
                (true, false) => format!("rule {} (alert {:?})", index + 1, rule.alert),
                _ => format!("rule {}", index + 1),
            };
            let spec =
                check_rule(rule).map_err(|message| in_group(format!("{which}: {message}")))?;
            rules.push(spec);
        }
        groups.push(GroupSpec {
            file: path.display().to_string(),
            name: group.name,
            interval,
            limit,
            query_offset,
            rules,
        });
    }
    Ok(groups)
}

/// Checks one rule the way `promtool check rules` does.
fn check_rule(rule: RawRule) -> Result<RuleSpec, String> {
    let kind = match (rule.record.is_empty(), rule.alert.is_empty()) {
        (false, false) => return Err("only one of 'record' and 'alert' must be set".into()),
        (true, true) => return Err("one of 'record' or 'alert' must be set".into()),
        (false, true) => "record",
        (true, false) => "alert",
    };
    if rule.expr.trim().is_empty() {
        return Err("field 'expr' must be set in rule".into());
    }
    let expr = crate::promql::parse(&rule.expr)
        .map_err(|err| format!("could not parse expression: {}", err.message))?;
    let hold = parse_hold("for", rule.hold.as_deref())?;
    let keep_firing_for = parse_hold("keep_firing_for", rule.keep_firing_for.as_deref())?;
    for name in rule.labels.keys() {
        if !valid_label_name(name) || name == "__name__" {
            return Err(format!("invalid label name: {name}"));
        }
    }
    let kind = if kind == "record" {
        if !rule.annotations.is_empty() {
            return Err("invalid field 'annotations' in recording rule".into());
        }
        if !hold.is_zero() {
            return Err("invalid field 'for' in recording rule".into());
        }
        if !keep_firing_for.is_zero() {
            return Err("invalid field 'keep_firing_for' in recording rule".into());
        }
        if !valid_metric_name(&rule.record) {
            return Err(format!("invalid recording rule name: {}", rule.record));
        }
        RuleKind::Record { name: rule.record }
    } else {
        for name in rule.annotations.keys() {
            if !valid_label_name(name) {
                return Err(format!("invalid annotation name: {name}"));
            }
        }
        RuleKind::Alert {
            name: rule.alert,
            hold,
            keep_firing_for,
            annotations: templates("annotation", rule.annotations)?,
        }
    };
    let labels = match kind {
        // A recording rule's labels are plain values, never templates.
        RuleKind::Record { .. } => rule
            .labels
            .into_iter()
            .map(|(name, value)| (name, Template::literal(value)))
            .collect(),
        RuleKind::Alert { .. } => templates("label", rule.labels)?,
    };
    Ok(RuleSpec {
        kind,
        expr_text: rule.expr,
        expr,
        labels,
    })
}

fn templates(what: &str, raw: BTreeMap<String, String>) -> Result<Vec<(String, Template)>, String> {
    raw.into_iter()
        .map(|(name, text)| {
            let template =
                Template::parse(&text).map_err(|err| format!("{what} {name:?}: {err}"))?;
            Ok((name, template))
        })
        .collect()
}

fn parse_hold(field: &str, text: Option<&str>) -> Result<Duration, String> {
    text.map_or(Ok(Duration::ZERO), |text| {
        parse_duration(text).map_err(|err| format!("{field} {text:?}: {err}"))
    })
}

/// A metric name as Prometheus's legacy scheme allows: letters, digits,
/// `_` and `:`, not starting with a digit.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn error(text: &str) -> String {
        parse(Path::new("r.yml"), text, MINUTE)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_groups_and_rules() {
        let groups = parse(
            Path::new("r.yml"),
            "groups:\n- name: g\n  interval: 30s\n  limit: 5\n  rules:\n  - record: a:b\n    expr: sum(up)\n    labels: {x: y}\n  - alert: A\n    expr: up == 0\n    for: 2m\n    keep_firing_for: 1m\n    annotations:\n      summary: '{{ $labels.instance }} down'\n",
            MINUTE,
        )
        .unwrap();
        assert_eq!(groups.len(), 1);
        let group = &groups[0];
        assert_eq!((group.interval, group.limit), (Duration::from_secs(30), 5));
        assert_eq!(group.rules[0].name(), "a:b");
        match &group.rules[1].kind {
            RuleKind::Alert {
                hold,
                keep_firing_for,
                annotations,
                ..
            } => {
                assert_eq!(*hold, 2 * MINUTE);
                assert_eq!(*keep_firing_for, MINUTE);
                assert_eq!(annotations[0].0, "summary");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_name_file_group_and_rule() {
        let cases = [
            (
                "groups:\n- name: g\n  rules:\n  - record: x\n    alert: y\n    expr: up\n",
                "r.yml: group \"g\": rule 1: only one of 'record' and 'alert'",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - expr: up\n",
                "rule 1: one of 'record' or 'alert' must be set",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - record: ok\n    expr: up\n  - alert: Bad\n    expr: up ==\n",
                "group \"g\": rule 2 (alert \"Bad\"): could not parse expression",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - record: x\n    expr: up\n    for: 1m\n",
                "rule 1 (record \"x\"): invalid field 'for' in recording rule",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - record: 1x\n    expr: up\n",
                "invalid recording rule name: 1x",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    labels: {\"a-b\": c}\n",
                "invalid label name: a-b",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations: {s: '{{ $value | frobnicate }}'}\n",
                "annotation \"s\": unsupported template function frobnicate",
            ),
            (
                "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    fro: 1m\n",
                "unknown field `fro`",
            ),
            (
                "groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n",
                "group \"g\": the name is repeated",
            ),
            (
                "groups:\n- name: g\n  interval: 1x\n  rules: []\n",
                "group \"g\": interval \"1x\"",
            ),
        ];
        for (text, expected) in cases {
            let got = error(text);
            assert!(got.contains(expected), "{got:?} lacks {expected:?}");
        }
    }

    #[test]
    fn shipped_rule_files_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/*.yml");
        let set = load(&[root.display().to_string()], MINUTE).unwrap();
        let rules: usize = set.groups.iter().map(|g| g.rules.len()).sum();
        assert!(set.groups.len() >= 8, "{}", set.groups.len());
        assert!(rules >= 40, "{rules}");
    }
}
