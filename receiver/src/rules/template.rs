//! Alert label and annotation templates: the part of Go's text/template
//! that Prometheus rule files use, executed the way Prometheus does
//! (`missingkey=zero`, numbers printed as Go prints a float64).
//!
//! Supported: text with `{{ … }}` actions (`{{-`/`-}}` trim spaces,
//! `{{/* … */}}` comments); operands `$labels.name`, `$externalLabels.name`,
//! `$value`, `$externalURL`, `.Labels.name`, `.ExternalLabels.name`,
//! `.Value`, `.ExternalURL`, string and number literals; pipelines with
//! `|`; the functions in [`FUNCTIONS`]. Anything else (`if`, `range`,
//! `with`, `define`, parentheses, another function) is refused when the
//! rule file loads, naming what is not supported; no Go-template crate
//! for Rust covers Prometheus's functions and is kept up.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The functions a template may call.
pub const FUNCTIONS: [&str; 11] = [
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "printf",
    "reReplaceAll",
    "stripPort",
    "title",
    "toLower",
    "toUpper",
    "label",
];

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

/// What a template is executed with.
#[derive(Debug, Clone, Default)]
pub struct Data<'a> {
    /// The alert's series labels (`$labels`).
    pub labels: BTreeMap<&'a str, &'a str>,
    /// The receiver's external labels (`$externalLabels`).
    pub external_labels: BTreeMap<&'a str, &'a str>,
    /// `$externalURL`.
    pub external_url: &'a str,
    /// The sample's value (`$value`).
    pub value: f64,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Action(Vec<Command>),
}

#[derive(Debug, Clone)]
enum Command {
    Operand(Operand),
    Call(String, Vec<Operand>),
}

#[derive(Debug, Clone)]
enum Operand {
    Labels(Option<String>),
    ExternalLabels(Option<String>),
    Value,
    ExternalUrl,
    Str(String),
    Num(f64),
}

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(f64),
    Map(Vec<(String, String)>),
}

impl Template {
    /// A template that is only text (a recording rule's label value).
    pub fn literal(text: String) -> Template {
        Template {
            parts: vec![Part::Text(text.clone())],
            text,
        }
    }

    /// Parses `text`; the error names what is not supported.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut pending = String::new();
        while let Some(open) = rest.find("{{") {
            let mut before = &rest[..open];
            let mut inner_start = open + 2;
            if rest[inner_start..].starts_with("- ") || rest[inner_start..].starts_with("-\t") {
                before = before.trim_end();
                inner_start += 1;
            }
            pending.push_str(before);
            let close = rest[inner_start..]
                .find("}}")
                .ok_or_else(|| format!("unclosed action in template {text:?}"))?
                + inner_start;
            let mut inner = &rest[inner_start..close];
            let mut after = &rest[close + 2..];
            if inner.ends_with(" -") || inner.ends_with("\t-") {
                inner = &inner[..inner.len() - 1];
                after = after.trim_start();
            }
            let inner = inner.trim();
            if !(inner.starts_with("/*") && inner.ends_with("*/")) {
                if !pending.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut pending)));
                }
                parts.push(Part::Action(parse_pipeline(inner)?));
            }
            rest = after;
        }
        if rest.contains("}}") && !rest.contains("{{") {
            // Go refuses nothing here either: a lone `}}` is text.
        }
        pending.push_str(rest);
        if !pending.is_empty() {
            parts.push(Part::Text(pending));
        }
        Ok(Template {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Executes the template; a failure reads as Prometheus writes it
    /// into the label or annotation: `<error expanding template: …>`.
    pub fn render(&self, data: &Data<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Action(pipeline) => match run_pipeline(pipeline, data) {
                    Ok(value) => out.push_str(&print(&value)),
                    Err(err) => return format!("<error expanding template: {err}>"),
                },
            }
        }
        out
    }
}

fn parse_pipeline(inner: &str) -> Result<Vec<Command>, String> {
    let tokens = tokenize(inner)?;
    if tokens.is_empty() {
        return Err("missing value for command".into());
    }
    let mut commands = Vec::new();
    for (index, words) in tokens.split(|t| matches!(t, Token::Pipe)).enumerate() {
        let Some((head, args)) = words.split_first() else {
            return Err(format!("missing command in pipeline {inner:?}"));
        };
        let command = match head {
            Token::Ident(name) => {
                if let Some(keyword) = [
                    "if", "else", "end", "range", "with", "define", "template", "block", "break",
                    "continue",
                ]
                .iter()
                .find(|k| *k == name)
                {
                    return Err(format!("unsupported template action {keyword}"));
                }
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(format!("unsupported template function {name}"));
                }
                let args = args
                    .iter()
                    .map(operand)
                    .collect::<Result<Vec<_>, String>>()?;
                check_arity(name, args.len() + usize::from(index > 0))?;
                Command::Call(name.clone(), args)
            }
            other => {
                if !args.is_empty() || index > 0 {
                    return Err(format!("can't give argument to non-function in {inner:?}"));
                }
                Command::Operand(operand(other)?)
            }
        };
        commands.push(command);
    }
    Ok(commands)
}

fn check_arity(name: &str, given: usize) -> Result<(), String> {
    let (least, most) = match name {
        "printf" => (1, usize::MAX),
        "reReplaceAll" => (3, 3),
        "label" => (2, 2),
        _ => (1, 1),
    };
    if given < least || given > most {
        return Err(format!(
            "wrong number of args for {name}: want {least}, got {given}"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Pipe,
    Ident(String),
    Var(String, Vec<String>),
    Field(Vec<String>),
    Str(String),
    Num(f64),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let fields = |i: &mut usize| {
        let mut path = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            *i += 1;
            path.push(word(i));
        }
        path
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            '$' => {
                i += 1;
                let name = word(&mut i);
                tokens.push(Token::Var(name, fields(&mut i)));
            }
            '.' => tokens.push(Token::Field(fields(&mut i))),
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(format!("unterminated quoted string in {text:?}"));
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let escaped = chars.get(i).copied().unwrap_or('\\');
                            i += 1;
                            s.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        other => s.push(other),
                    }
                }
                tokens.push(Token::Str(s));
            }
            '`' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| format!("unterminated raw string in {text:?}"))?;
                tokens.push(Token::Str(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '+' | '-'))
                {
                    i += 1;
                }
                let literal: String = chars[start..i].iter().collect();
                let number = literal
                    .parse::<f64>()
                    .map_err(|_| format!("bad number syntax: {literal:?}"))?;
                tokens.push(Token::Num(number));
            }
            c if c.is_alphabetic() || c == '_' => tokens.push(Token::Ident(word(&mut i))),
            other => return Err(format!("unsupported template syntax {other:?} in {text:?}")),
        }
    }
    Ok(tokens)
}

fn operand(token: &Token) -> Result<Operand, String> {
    let one_field = |path: &[String], what: &str| match path {
        [] => Ok(None),
        [name] => Ok(Some(name.clone())),
        _ => Err(format!("{what} has no field {}", path[1])),
    };
    match token {
        Token::Var(name, path) => match name.as_str() {
            "labels" => Ok(Operand::Labels(one_field(path, "$labels")?)),
            "externalLabels" => Ok(Operand::ExternalLabels(one_field(path, "$externalLabels")?)),
            "value" if path.is_empty() => Ok(Operand::Value),
            "externalURL" if path.is_empty() => Ok(Operand::ExternalUrl),
            _ => Err(format!("undefined variable: ${name}")),
        },
        Token::Field(path) => match path.first().map(String::as_str) {
            Some("Labels") => Ok(Operand::Labels(one_field(&path[1..], ".Labels")?)),
            Some("ExternalLabels") => Ok(Operand::ExternalLabels(one_field(
                &path[1..],
                ".ExternalLabels",
            )?)),
            Some("Value") if path.len() == 1 => Ok(Operand::Value),
            Some("ExternalURL") if path.len() == 1 => Ok(Operand::ExternalUrl),
            _ => Err(format!("unsupported field .{}", path.join("."))),
        },
        Token::Str(s) => Ok(Operand::Str(s.clone())),
        Token::Num(n) => Ok(Operand::Num(*n)),
        Token::Ident(name) => Err(format!("unsupported template function {name}")),
        Token::Pipe => Err("unexpected |".into()),
    }
}

fn run_pipeline(commands: &[Command], data: &Data<'_>) -> Result<Val, String> {
    let mut piped: Option<Val> = None;
    for command in commands {
        let value = match command {
            Command::Operand(op) => resolve(op, data),
            Command::Call(name, args) => {
                let mut values: Vec<Val> = args.iter().map(|a| resolve(a, data)).collect();
                values.extend(piped.take());
                call(name, &values)?
            }
        };
        piped = Some(value);
    }
    Ok(piped.unwrap_or(Val::Str(String::new())))
}

fn map_value(map: &BTreeMap<&str, &str>, field: &Option<String>) -> Val {
    match field {
        // missingkey=zero: an absent label is the empty string.
        Some(name) => Val::Str(map.get(name.as_str()).copied().unwrap_or("").to_owned()),
        None => Val::Map(
            map.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
    }
}

fn resolve(operand: &Operand, data: &Data<'_>) -> Val {
    match operand {
        Operand::Labels(field) => map_value(&data.labels, field),
        Operand::ExternalLabels(field) => map_value(&data.external_labels, field),
        Operand::Value => Val::Num(data.value),
        Operand::ExternalUrl => Val::Str(data.external_url.to_owned()),
        Operand::Str(s) => Val::Str(s.clone()),
        Operand::Num(n) => Val::Num(*n),
    }
}

/// Go's `fmt.Sprint` of a value.
fn print(value: &Val) -> String {
    match value {
        Val::Str(s) => s.clone(),
        Val::Num(n) => go_float(*n, 'g', None),
        Val::Map(pairs) => {
            let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", inner.join(" "))
        }
    }
}

/// A value as a number, as Prometheus's template functions convert one.
fn number(value: &Val, function: &str) -> Result<f64, String> {
    match value {
        Val::Num(n) => Ok(*n),
        Val::Str(s) => s.trim().parse::<f64>().map_err(|_| {
            format!("error calling {function}: strconv.ParseFloat: parsing {s:?}: invalid syntax")
        }),
        Val::Map(_) => Err(format!(
            "error calling {function}: can't convert a map to float"
        )),
    }
}

fn string(value: &Val) -> String {
    print(value)
}

fn call(name: &str, args: &[Val]) -> Result<Val, String> {
    let text = match name {
        "humanize" => humanize(number(&args[0], name)?),
        "humanize1024" => humanize1024(number(&args[0], name)?),
        "humanizeDuration" => humanize_duration(number(&args[0], name)?),
        "humanizePercentage" => format!(
            "{}%",
            go_float(number(&args[0], name)? * 100.0, 'g', Some(4))
        ),
        "title" => title(&string(&args[0])),
        "toUpper" => string(&args[0]).to_uppercase(),
        "toLower" => string(&args[0]).to_lowercase(),
        "stripPort" => strip_port(&string(&args[0])),
        "label" => match &args[1] {
            Val::Map(pairs) => {
                let wanted = string(&args[0]);
                pairs
                    .iter()
                    .find(|(k, _)| *k == wanted)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            }
            _ => return Err("error calling label: not a label set".into()),
        },
        "reReplaceAll" => {
            let pattern = string(&args[0]);
            let re = regex::Regex::new(&pattern)
                .map_err(|err| format!("error calling reReplaceAll: {err}"))?;
            re.replace_all(&string(&args[2]), string(&args[1]).as_str())
                .into_owned()
        }
        "printf" => printf(&string(&args[0]), &args[1..]),
        other => return Err(format!("unsupported template function {other}")),
    };
    Ok(Val::Str(text))
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

fn strip_port(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_owned();
    }
    match host.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h.to_owned(),
        _ => host.to_owned(),
    }
}

const BIG_PREFIXES: [&str; 8] = ["k", "M", "G", "T", "P", "E", "Z", "Y"];
const SMALL_PREFIXES: [&str; 8] = ["m", "u", "n", "p", "f", "a", "z", "y"];

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in BIG_PREFIXES {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in SMALL_PREFIXES {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_float(v, 'g', Some(4)))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_float(v, 'g', Some(4)))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_float(v, 'g', Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_float(v, 'g', Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let whole = v as i64;
        let (seconds, minutes, hours, days) = (
            whole % 60,
            (whole / 60) % 60,
            (whole / 3600) % 24,
            whole / 86_400,
        );
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", go_float(v, 'g', Some(4)))
        };
    }
    let mut prefix = "";
    for p in SMALL_PREFIXES {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_float(v, 'g', Some(4)))
}

/// Go's `%e`, `%f` or `%g` of `v` (`precision` None: Go's default, the
/// shortest representation for `%g`, 6 digits for the others).
pub fn go_float(v: f64, verb: char, precision: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    match verb {
        'f' => format!("{v:.*}", precision.unwrap_or(6)),
        'e' => exponent_form(&format!("{v:.*e}", precision.unwrap_or(6)), false),
        _ => {
            let (scientific, limit) = match precision {
                Some(p) => (format!("{v:.*e}", p.max(1) - 1), p.max(1) as i32),
                // Go switches to the exponent form from 1e+06 (and below 1e-04).
                None => (format!("{v:e}"), 6),
            };
            let exp: i32 = scientific
                .split_once('e')
                .and_then(|(_, e)| e.parse().ok())
                .unwrap_or(0);
            if exp < -4 || exp >= limit {
                exponent_form(&scientific, true)
            } else if let Some(p) = precision {
                let decimals = (p.max(1) as i32 - 1 - exp).max(0) as usize;
                trim_zeros(format!("{v:.decimals$}"))
            } else {
                format!("{v}")
            }
        }
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: the shortest exponent form
/// (`1e+00`, `2.5e-01`), as Prometheus's API writes an alert's value.
pub fn go_float_e(v: f64) -> String {
    if !v.is_finite() {
        return go_float(v, 'g', None);
    }
    exponent_form(&format!("{v:e}"), false)
}

/// `1.5e6` as Go writes it: `1.5e+06`; `trim` drops trailing zeros of the
/// mantissa (`%g`).
fn exponent_form(rust: &str, trim: bool) -> String {
    let (mantissa, exp) = rust.split_once('e').unwrap_or((rust, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mantissa = if trim {
        trim_zeros(mantissa.to_owned())
    } else {
        mantissa.to_owned()
    };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %f %e %g %q
/// %%`, with width, precision and the `-`, `+`, `0` flags.
fn printf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek().filter(|f| "-+ 0#".contains(**f)) {
            flags.push(f);
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let mut text = match (verb, arg) {
            ('s' | 'v', value) => {
                let s = print(value);
                match (verb, precision) {
                    ('s', Some(p)) => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            ('q', value) => format!("{:?}", print(value)),
            ('d', Val::Num(n)) => format!("%!d(float64={})", go_float(*n, 'g', None)),
            ('e' | 'f' | 'g', Val::Num(n)) => go_float(*n, verb, precision),
            ('e' | 'f' | 'g' | 'd', Val::Str(s)) => format!("%!{verb}(string={s})"),
            (_, value) => format!("%!{verb}({})", print(value)),
        };
        if flags.contains('+') && matches!(arg, Val::Num(n) if *n >= 0.0) {
            text.insert(0, '+');
        }
        let width: usize = width.parse().unwrap_or(0);
        let len = text.chars().count();
        if len < width {
            let pad = width - len;
            if flags.contains('-') {
                text.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && matches!(arg, Val::Num(_)) {
                let at = usize::from(text.starts_with(['-', '+']));
                text.insert_str(at, &"0".repeat(pad));
            } else {
                text.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&text);
    }
    for extra in args {
        let _ = write!(out, "%!(EXTRA {})", print(extra));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, value: f64) -> String {
        let data = Data {
            labels: [("instance", "h1:9100"), ("job", "node")]
                .into_iter()
                .collect(),
            external_labels: [("site", "a")].into_iter().collect(),
            external_url: "http://r:8000",
            value,
        };
        Template::parse(text).unwrap().render(&data)
    }

    #[test]
    fn prints_values_as_go_does() {
        // Go's fmt.Sprint of a float64.
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(render("{{ $value }}", v), want, "{v}");
        }
    }

    #[test]
    fn humanizes_as_prometheus_does() {
        for (text, v, want) in [
            ("{{ $value | humanize }}", 1234567.0, "1.235M"),
            ("{{ $value | humanize }}", 0.001234, "1.234m"),
            ("{{ $value | humanize }}", 12.0, "12"),
            ("{{ humanize 0 }}", 0.0, "0"),
            ("{{ $value | humanize1024 }}", 1048576.0, "1Mi"),
            ("{{ $value | humanize1024 }}", 512.0, "512"),
            ("{{ $value | humanizePercentage }}", 0.12345, "12.35%"),
            ("{{ $value | humanizeDuration }}", 93784.0, "1d 2h 3m 4s"),
            ("{{ $value | humanizeDuration }}", 3.5, "3.5s"),
            ("{{ $value | humanizeDuration }}", 0.25, "250ms"),
            ("{{ $value | humanizeDuration }}", 65.0, "1m 5s"),
            ("{{ printf \"%.2f\" $value }}", 2.0 / 3.0, "0.67"),
            (
                "{{ printf \"%5.1f|%-4s|\" $value \"ab\" }}",
                2.71,
                "  2.7|ab  |",
            ),
            ("{{ $labels.instance | stripPort | toUpper }}", 0.0, "H1"),
            (
                "{{ reReplaceAll \":.*\" \"\" $labels.instance }}",
                0.0,
                "h1",
            ),
            ("{{ title \"disk full\" }}", 0.0, "Disk Full"),
            ("{{ $labels.missing }}", 0.0, ""),
            (
                "{{ .Labels.job }} at {{ $externalLabels.site }}",
                0.0,
                "node at a",
            ),
            ("a {{- \" b \" -}} c", 0.0, "a b c"),
            ("x{{/* note */}}y", 0.0, "xy"),
        ] {
            assert_eq!(render(text, v), want, "{text}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_support_by_name() {
        for (text, want) in [
            (
                "{{ $value | frobnicate }}",
                "unsupported template function frobnicate",
            ),
            (
                "{{ if $value }}x{{ end }}",
                "unsupported template action if",
            ),
            (
                "{{ range $labels }}{{ end }}",
                "unsupported template action range",
            ),
            ("{{ $nope }}", "undefined variable: $nope"),
            ("{{ $value", "unclosed action"),
            ("{{ humanize }}", "wrong number of args for humanize"),
            ("{{ query \"up\" }}", "unsupported template function query"),
        ] {
            let err = Template::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
