//! Reads the rules in `rules/*.yml` (our own files, in the block layout
//! they are written in): each rule's kind, name, expression, severity and
//! annotations. promtool checks the YAML itself; this is only for the
//! tests that need the expressions.

use std::path::Path;

/// One alerting or recording rule.
#[derive(Debug, Default, Clone)]
pub struct Rule {
    /// `alert` or `record`.
    pub kind: String,
    /// Alert or record name.
    pub name: String,
    /// The PromQL expression.
    pub expr: String,
    /// `labels.severity`, where present.
    pub severity: Option<String>,
    /// `annotations.summary`.
    pub summary: Option<String>,
    /// `annotations.description`.
    pub description: Option<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        inner.replace("\\\"", "\"")
    } else {
        value.to_owned()
    }
}

/// Every rule of one rule file.
pub fn read_rules(path: &Path) -> Vec<Rule> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut rules: Vec<Rule> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        i += 1;
        if trimmed.starts_with('#') {
            continue;
        }
        for kind in ["alert", "record"] {
            if let Some(name) = trimmed.strip_prefix(&format!("- {kind}: ")) {
                rules.push(Rule {
                    kind: kind.to_owned(),
                    name: name.trim().to_owned(),
                    ..Rule::default()
                });
            }
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        if let Some(value) = trimmed.strip_prefix("expr:") {
            let value = value.trim();
            if value.starts_with('|') || value.starts_with('>') {
                let base = indent(line);
                let mut block = Vec::new();
                while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > base) {
                    block.push(lines[i].trim());
                    i += 1;
                }
                rule.expr = block.join("\n").trim().to_owned();
            } else {
                rule.expr = unquote(value);
            }
        } else if let Some(value) = trimmed.strip_prefix("severity:") {
            rule.severity = Some(unquote(value));
        } else if let Some(value) = trimmed.strip_prefix("summary:") {
            rule.summary = Some(unquote(value));
        } else if let Some(value) = trimmed.strip_prefix("description:") {
            rule.description = Some(unquote(value));
        }
    }
    rules
}
