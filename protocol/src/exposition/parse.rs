//! A strict parser for the Prometheus text exposition format (0.0.4): the
//! exporter's textfile collector reads operators' files with it, and the
//! receiver reads back its own registry's text for its self-scrape. No crate on crates.io parses it with line-exact
//! errors and node_exporter's rules, so this one does: `# HELP` / `# TYPE`
//! once per family and TYPE before the family's samples; `_sum`, `_count`
//! and `_bucket` samples belong to a declared summary or histogram;
//! escapes `\\`, `\"` (label values) and `\n`; no reserved `__` label
//! names or repeated labels. A sample with a timestamp is refused, as
//! node_exporter refuses client-side timestamps in text files.

use std::collections::HashMap;

/// A family's declared type (`untyped` when there is no TYPE line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`
    Counter,
    /// `gauge`
    Gauge,
    /// `histogram`
    Histogram,
    /// `summary`
    Summary,
    /// `untyped`, or no TYPE line
    Untyped,
}

impl MetricType {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" => Self::Untyped,
            _ => return None,
        })
    }

    /// The word used in a TYPE line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSample {
    /// The sample's own name (`x_bucket` for a histogram `x`).
    pub name: String,
    /// Label pairs in file order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A family as one file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct TextFamily {
    /// Family name.
    pub name: String,
    /// HELP text, unescaped, if the file gives one.
    pub help: Option<String>,
    /// Declared type.
    pub kind: MetricType,
    /// Samples in file order.
    pub samples: Vec<TextSample>,
}

/// What is wrong, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// The problem.
    pub msg: String,
}

/// Parses a whole file; families come in order of first mention.
pub fn parse(text: &str) -> Result<Vec<TextFamily>, SyntaxError> {
    let mut parser = Parser::default();
    for (index, line) in text.split('\n').enumerate() {
        parser.line(line).map_err(|msg| SyntaxError {
            line: index + 1,
            msg,
        })?;
    }
    Ok(parser.families)
}

#[derive(Default)]
struct Parser {
    families: Vec<TextFamily>,
    by_name: HashMap<String, usize>,
    seen_help: Vec<bool>,
    seen_type: Vec<bool>,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits a metric name off the front of `s`.
fn take_metric_name(s: &str) -> Result<(&str, &str), String> {
    if !s.starts_with(is_name_start) {
        return Err(format!("invalid metric name at {:?}", excerpt(s)));
    }
    let end = s.find(|c| !is_name_char(c)).unwrap_or(s.len());
    Ok(s.split_at(end))
}

fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

impl Parser {
    fn line(&mut self, line: &str) -> Result<(), String> {
        let line = line.trim_start_matches(is_blank);
        if line.is_empty() {
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.comment(comment);
        }
        self.sample(line)
    }

    fn family_index(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        self.families.push(TextFamily {
            name: name.to_owned(),
            help: None,
            kind: MetricType::Untyped,
            samples: Vec::new(),
        });
        self.seen_help.push(false);
        self.seen_type.push(false);
        let i = self.families.len() - 1;
        self.by_name.insert(name.to_owned(), i);
        i
    }

    fn comment(&mut self, rest: &str) -> Result<(), String> {
        let rest = rest.trim_start_matches(is_blank);
        let (keyword, rest) = rest.split_at(rest.find(is_blank).unwrap_or(rest.len()));
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(()); // an ordinary comment
        }
        let rest = rest.trim_start_matches(is_blank);
        let (name, rest) = take_metric_name(rest)?;
        if !rest.is_empty() && !rest.starts_with(is_blank) {
            return Err(format!("invalid metric name in {keyword} line"));
        }
        let rest = rest.trim_start_matches(is_blank);
        let i = self.family_index(name);
        if keyword == "HELP" {
            if std::mem::replace(&mut self.seen_help[i], true) {
                return Err(format!("second HELP line for metric name {name:?}"));
            }
            self.families[i].help = Some(unescape(rest, false)?);
        } else {
            let word = rest.trim_end_matches(is_blank);
            let kind =
                MetricType::parse(word).ok_or_else(|| format!("unknown metric type {word:?}"))?;
            if std::mem::replace(&mut self.seen_type[i], true)
                || !self.families[i].samples.is_empty()
            {
                return Err(format!(
                    "second TYPE line for metric name {name:?}, or TYPE reported after samples"
                ));
            }
            self.families[i].kind = kind;
        }
        Ok(())
    }

    /// The family a sample called `name` belongs to: its own, or the
    /// summary or histogram whose `_sum`/`_count`/`_bucket` it is.
    fn family_for_sample(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        for (suffix, kinds) in [
            ("_sum", &[MetricType::Summary, MetricType::Histogram][..]),
            ("_count", &[MetricType::Summary, MetricType::Histogram][..]),
            ("_bucket", &[MetricType::Histogram][..]),
        ] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(&i) = self.by_name.get(base)
                && kinds.contains(&self.families[i].kind)
            {
                return i;
            }
        }
        self.family_index(name)
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let (name, mut rest) = take_metric_name(line)?;
        let mut labels: Vec<(String, String)> = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = parse_labels(after, &mut labels)?;
        } else if !rest.starts_with(is_blank) {
            return Err(format!("unexpected {:?} after metric name", excerpt(rest)));
        }
        let rest = rest.trim_start_matches(is_blank);
        let mut fields = rest.split(is_blank).filter(|f| !f.is_empty());
        let value = fields
            .next()
            .ok_or_else(|| format!("no value for {name}"))
            .and_then(parse_value)?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| format!("expected a timestamp or end of line, got {timestamp:?}"))?;
            return Err("client-side timestamps are not supported in text files".into());
        }
        let i = self.family_for_sample(name);
        let family = &mut self.families[i];
        let has = |label: &str| labels.iter().any(|(n, _)| n == label);
        match family.kind {
            MetricType::Histogram if name.ends_with("_bucket") && !has("le") => {
                return Err(format!("histogram bucket {name} without an \"le\" label"));
            }
            MetricType::Summary if name == family.name && !has("quantile") => {
                return Err(format!(
                    "summary sample {name} without a \"quantile\" label"
                ));
            }
            _ => {}
        }
        family.samples.push(TextSample {
            name: name.to_owned(),
            labels,
            value,
        });
        Ok(())
    }
}

/// Parses `name="value",...}`; returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches(is_blank);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(format!("invalid label name at {:?}", excerpt(s)));
        }
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let (label, rest) = s.split_at(end);
        if label.starts_with("__") {
            return Err(format!("label name {label:?} is reserved"));
        }
        if labels.iter().any(|(n, _)| n == label) {
            return Err(format!("duplicate label name {label:?}"));
        }
        let rest = rest.trim_start_matches(is_blank);
        let rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("expected '=' after label name {label:?}"))?;
        let rest = rest.trim_start_matches(is_blank);
        let rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("expected '\"' to open the value of label {label:?}"))?;
        let (value, rest) =
            take_quoted(rest).ok_or_else(|| format!("unterminated value of label {label:?}"))?;
        labels.push((label.to_owned(), unescape(value, true)?));
        s = rest.trim_start_matches(is_blank);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {label:?}"));
        }
    }
}

/// Splits at the first unescaped `"`: `(raw value, rest after the quote)`.
fn take_quoted(s: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Resolves `\\`, `\n` and, in label values, `\"`.
fn unescape(raw: &str, label_value: bool) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if label_value => out.push('"'),
            Some(other) => return Err(format!("invalid escape sequence '\\{other}'")),
            None => return Err("escape at end of text".into()),
        }
    }
    Ok(out)
}

fn parse_value(word: &str) -> Result<f64, String> {
    // Go's ParseFloat, which node_exporter uses, takes the same words and
    // forms as Rust's, except hex floats and '_' separators: refuse those
    // here too so a file means the same to both.
    if word.contains(['x', 'X', 'p', 'P', '_']) {
        return Err(format!("invalid value {word:?}"));
    }
    word.parse::<f64>()
        .map_err(|_| format!("invalid value {word:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> SyntaxError {
        parse(text).unwrap_err()
    }

    #[test]
    fn parses_families_types_and_escapes() {
        let text = "# HELP a_total Things, with a \\\\ and a\\nnewline.\n\
                    # TYPE a_total counter\n\
                    a_total{x=\"1\",y=\"q\\\"uo\\\\te\\n\"} 3\n\
                    \n\
                    # a plain comment\n\
                    a_total{ x = \"2\" , } +Inf\n\
                    b -1.5e3\n\
                    # TYPE h histogram\n\
                    h_bucket{le=\"0.5\"} 1\n\
                    h_bucket{le=\"+Inf\"} 2\n\
                    h_sum 0.7\n\
                    h_count 2\n\
                    # TYPE s summary\n\
                    s{quantile=\"0.9\"} NaN\n\
                    s_sum 1\n\
                    s_count 1\n";
        let families = parse(text).unwrap();
        let names: Vec<_> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a_total", "b", "h", "s"]);
        let a = &families[0];
        assert_eq!(a.help.as_deref(), Some("Things, with a \\ and a\nnewline."));
        assert_eq!(a.kind, MetricType::Counter);
        assert_eq!(
            a.samples[0].labels,
            [("x".into(), "1".into()), ("y".into(), "q\"uo\\te\n".into())]
        );
        assert_eq!(a.samples[1].value, f64::INFINITY);
        assert_eq!(families[1].kind, MetricType::Untyped);
        assert_eq!(families[1].samples[0].value, -1500.0);
        assert_eq!(families[2].samples.len(), 4);
        assert!(families[3].samples[0].value.is_nan());
        assert_eq!(families[3].samples[2].name, "s_count");
    }

    #[test]
    fn reports_the_line_of_each_mistake() {
        assert_eq!(err("a 1\nb{x=\"1\" 2\n").line, 2);
        assert_eq!(err("# TYPE a gauge\n# TYPE a counter\n").line, 2);
        assert_eq!(err("a 1\n# TYPE a gauge\n").line, 2);
        assert_eq!(err("# HELP a x\n# HELP a y\n").line, 2);
        assert_eq!(err("# TYPE a bogus\n").line, 1);
        assert_eq!(err("\n\n1a 3\n").line, 3);
        assert_eq!(err("a{__name__=\"x\"} 1\n").line, 1);
        assert_eq!(err("a{x=\"1\",x=\"2\"} 1\n").line, 1);
        assert_eq!(err("a{x=\"\\t\"} 1\n").line, 1);
        assert_eq!(err("a\n").line, 1);
        assert_eq!(err("a one\n").line, 1);
        assert_eq!(err("a 0x10\n").line, 1);
        assert_eq!(err("a 1 2 3\n").line, 1);
        assert_eq!(err("a=1\n").line, 1);
        assert_eq!(err("# TYPE h histogram\nh_bucket 1\n").line, 2);
        assert_eq!(err("# TYPE s summary\ns 1\n").line, 2);
        let stamped = err("ok 1\nstamped 1 1700000000000\n");
        assert_eq!(stamped.line, 2);
        assert!(stamped.msg.contains("timestamps"), "{stamped}");
    }
}
