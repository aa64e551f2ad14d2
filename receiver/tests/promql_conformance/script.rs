//! Parser of Prometheus's `.test` script language (load / clear / eval).

use regex::Regex;

pub use crate::common::series_notation::LabelSet;
use crate::common::series_notation::{duration_ms, expand_values, go_number, parse_metric};

/// The series of one `load` block: labels and `(ms, value)` samples.
pub type LoadBlock = Vec<(LabelSet, Vec<(i64, f64)>)>;

/// One command of a script.
#[derive(Debug)]
pub enum Command {
    /// Drop all data.
    Clear,
    /// Add series: samples at `i * interval_ms`.
    Load(LoadBlock),
    /// A test case.
    Eval(Case),
}

/// What a case expects.
#[derive(Debug, Clone)]
pub enum Expected {
    /// The query must fail.
    Fail,
    /// A scalar.
    Scalar(f64),
    /// A string.
    String(String),
    /// An instant vector: label sets and values (in file order).
    Vector(Vec<(LabelSet, f64)>),
    /// A matrix: label sets with one optional value per position.
    Matrix {
        start_ms: i64,
        step_ms: i64,
        series: Vec<(LabelSet, Vec<Option<f64>>)>,
    },
}

/// How an expected annotation is matched.
#[derive(Debug, Clone)]
pub enum AnnotationMatch {
    /// Any annotation of the kind.
    Any,
    /// Exactly this text.
    Exact(String),
    /// An unanchored regex search.
    Regex(String),
}

/// Expectations about warnings (or infos) of one case.
#[derive(Debug, Clone, Default)]
pub struct KindSpec {
    /// `expect warn …` lines.
    pub expected: Vec<AnnotationMatch>,
    /// `expect no_warn`.
    pub none: bool,
    /// Legacy `eval_warn`: at least one.
    pub at_least_one: bool,
}

/// Expectations about annotations.
#[derive(Debug, Clone, Default)]
pub struct AnnotationSpec {
    /// Warnings.
    pub warn: KindSpec,
    /// Infos.
    pub info: KindSpec,
}

/// An eval command.
#[derive(Debug, Clone)]
pub struct Case {
    /// 1-based line of the header.
    pub line: usize,
    /// The PromQL expression.
    pub expr: String,
    /// `Some((start, end, step))` for range evals.
    pub range: Option<(i64, i64, i64)>,
    /// Instant evaluation time.
    pub at_ms: i64,
    /// Whether result order matters.
    pub ordered: bool,
    /// What the case says about warnings and infos.
    pub annotations: AnnotationSpec,
    /// The expectation.
    pub expected: Expected,
    /// The expected series hold native histograms.
    pub histograms: bool,
}

/// Parses a whole script.
pub fn parse(text: &str) -> Result<Vec<Command>, String> {
    let instant =
        Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
            .unwrap();
    let range = Regex::new(
        r"^eval(?:_(fail|warn|ordered|info))?\s+range\s+from\s+(.+?)\s+to\s+(.+?)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap();
    let lines: Vec<&str> = text.split('\n').map(str::trim).collect();
    let blank = |l: &str| l.is_empty() || l.starts_with('#');
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if blank(line) {
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() && !blank(lines[i]) {
            body.push(lines[i]);
            i += 1;
        }
        let first = line.split_whitespace().next().unwrap_or("").to_lowercase();
        if first == "clear" {
            commands.push(Command::Clear);
            i = start + 1;
        } else if first.starts_with("load") {
            let interval = duration_ms(line.split_whitespace().nth(1).unwrap_or(""))
                .ok_or_else(|| format!("line {}: bad load interval", start + 1))?;
            let mut series: LoadBlock = Vec::new();
            for l in body {
                let Some((labels, values)) = parse_metric(l) else {
                    return Err(format!("line {}: bad series {l:?}", start + 1));
                };
                if labels
                    .iter()
                    .any(|(n, v)| n == "__name__" && v.ends_with("@st"))
                {
                    continue;
                }
                let Ok(values) = expand_values(values) else {
                    continue;
                };
                let samples: Vec<(i64, f64)> = values
                    .into_iter()
                    .enumerate()
                    .filter_map(|(k, v)| v.map(|v| (k as i64 * interval, v)))
                    .collect();
                series.retain(|(l, _)| *l != labels);
                series.push((labels, samples));
            }
            commands.push(Command::Load(series));
        } else if first.starts_with("eval") {
            let case = parse_eval(start + 1, line, &body, &instant, &range)?;
            // A scalar expectation ends the block; what follows is a new command.
            commands.push(Command::Eval(case.0));
            if let Some(consumed) = case.1 {
                i = start + 1 + consumed;
            }
        } else {
            return Err(format!("line {}: unknown command {line:?}", start + 1));
        }
    }
    Ok(commands)
}

/// Parses one eval block; the second value is how many body lines it used
/// when it stopped early.
fn parse_eval(
    line_no: usize,
    header: &str,
    body: &[&str],
    instant: &Regex,
    range: &Regex,
) -> Result<(Case, Option<usize>), String> {
    let err = |m: &str| format!("line {line_no}: {m}");
    let (modifier, at_ms, expr, range_spec) = if let Some(c) = range.captures(header) {
        let d = |i: usize| duration_ms(&c[i]).ok_or_else(|| err("bad duration"));
        (
            c.get(1).map(|m| m.as_str().to_owned()),
            0,
            c[5].to_owned(),
            Some((d(2)?, d(3)?, d(4)?)),
        )
    } else if let Some(c) = instant.captures(header) {
        let at = c.get(2).map(|m| m.as_str()).unwrap_or("");
        (
            c.get(1).map(|m| m.as_str().to_owned()),
            duration_ms(at).ok_or_else(|| err("bad eval time"))?,
            c[3].to_owned(),
            None,
        )
    } else {
        return Err(err("bad eval header"));
    };
    let mut case = Case {
        line: line_no,
        expr,
        range: range_spec,
        at_ms,
        ordered: modifier.as_deref() == Some("ordered"),
        annotations: AnnotationSpec::default(),
        expected: Expected::Vector(Vec::new()),
        histograms: false,
    };
    let mut fail = modifier.as_deref() == Some("fail");
    case.annotations.warn.at_least_one = modifier.as_deref() == Some("warn");
    case.annotations.info.at_least_one = modifier.as_deref() == Some("info");
    let mut vector: Vec<(LabelSet, Vec<Option<f64>>)> = Vec::new();
    let mut matrix_spec = range_spec.map(|(s, _, step)| (s, step));
    let mut scalar = None;
    let mut string = None;
    let mut consumed = None;
    for (k, l) in body.iter().enumerate() {
        if l.starts_with("expected_fail_message") || l.starts_with("expected_fail_regexp") {
            consumed = Some(k + 1);
            break;
        }
        if let Some(rest) = l.strip_prefix("expect range vector") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            if parts.len() != 6 {
                return Err(err("bad expect range vector"));
            }
            let d = |s: &str| duration_ms(s).ok_or_else(|| err("bad duration"));
            let (s, e, p) = (d(parts[1])?, d(parts[3])?, d(parts[5])?);
            case.at_ms = e;
            matrix_spec = Some((s, p));
            continue;
        }
        if let Some(rest) = l.strip_prefix("expect string") {
            let text = rest.trim();
            string = Some(text[1..text.len().saturating_sub(1)].to_owned());
            continue;
        }
        if let Some(rest) = l.strip_prefix("expect ") {
            let word = rest.split_whitespace().next().unwrap_or("");
            let detail = rest[word.len()..].trim();
            let matcher = if let Some(m) = detail.strip_prefix("msg:") {
                AnnotationMatch::Exact(m.trim().to_owned())
            } else if let Some(r) = detail.strip_prefix("regex:") {
                AnnotationMatch::Regex(r.trim().to_owned())
            } else {
                AnnotationMatch::Any
            };
            match word {
                "fail" => fail = true,
                "ordered" => case.ordered = true,
                "warn" => case.annotations.warn.expected.push(matcher),
                "info" => case.annotations.info.expected.push(matcher),
                "no_warn" => case.annotations.warn.none = true,
                "no_info" => case.annotations.info.none = true,
                _ => {}
            }
            continue;
        }
        if let Some(v) = go_number(l) {
            scalar = Some(v);
            consumed = Some(k + 1);
            break;
        }
        let Some((labels, values)) = parse_metric(l) else {
            return Err(err("bad expected series"));
        };
        match expand_values(values) {
            Ok(values) => {
                vector.retain(|(l, _)| *l != labels);
                vector.push((labels, values));
            }
            Err(()) => case.histograms = true,
        }
    }
    case.expected = if fail {
        Expected::Fail
    } else if let Some(v) = scalar {
        Expected::Scalar(v)
    } else if let Some(s) = string {
        Expected::String(s)
    } else if let Some((start_ms, step_ms)) = matrix_spec {
        Expected::Matrix {
            start_ms,
            step_ms,
            series: vector,
        }
    } else {
        Expected::Vector(
            vector
                .into_iter()
                .map(|(l, v)| (l, v.first().copied().flatten().unwrap_or(f64::NAN)))
                .collect(),
        )
    };
    Ok((case, consumed))
}
