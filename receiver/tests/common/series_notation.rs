//! Prometheus's series notation, shared by the PromQL test scripts and the
//! promtool rule unit tests: a series selector (`name{label="v"}`), its
//! values in the expanding form (`1+2x10`, `_x3`, `stale`), durations
//! (`1m30s`) and numbers as Go reads them.

/// A label set, sorted by name.
pub type LabelSet = Vec<(String, String)>;

/// Parses a duration like `1m30s`, `0`, `10s53ms`.
pub fn duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if text == "0" {
        return Some(0);
    }
    let mut total = 0i64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            let unit = match rest.chars().next()? {
                'y' => 365 * 86_400_000,
                'w' => 7 * 86_400_000,
                'd' => 86_400_000,
                'h' => 3_600_000,
                'm' => 60_000,
                's' => 1000,
                _ => return None,
            };
            (unit, 1)
        };
        total += n * unit;
        rest = &rest[len..];
    }
    Some(total)
}

/// Parses a number the way Go's ParseInt(s, 0, 64) then ParseFloat would.
pub fn go_number(text: &str) -> Option<f64> {
    let t = text.replace('_', "");
    let (negative, body) = match t.strip_prefix('-') {
        Some(b) => (true, b.to_owned()),
        None => (false, t.strip_prefix('+').unwrap_or(&t).to_owned()),
    };
    let sign = if negative { -1.0 } else { 1.0 };
    let lower = body.to_ascii_lowercase();
    let radix_int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.chars().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        None
    };
    if let Some(i) = radix_int {
        return Some(sign * i as f64);
    }
    match lower.as_str() {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if lower.is_empty()
        || !lower
            .chars()
            .all(|c| c.is_ascii_digit() || ".e+-".contains(c))
    {
        return None;
    }
    lower.parse::<f64>().ok().map(|v| sign * v)
}

const STALE: u64 = 0x7ff0_0000_0000_0002;

/// Expands the values part of a series line. `None` entries are omitted
/// positions; `Err(())` means the line holds native histograms.
pub fn expand_values(text: &str) -> Result<Vec<Option<f64>>, ()> {
    if text.contains("{{") {
        return Err(());
    }
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if item == "stale" {
            out.push(Some(f64::from_bits(STALE)));
            continue;
        }
        if let Some(k) = item.strip_prefix("_x") {
            let k: usize = k.parse().map_err(|_| ())?;
            out.extend(std::iter::repeat_n(None, k));
            continue;
        }
        let (base, times) = match item.rsplit_once('x') {
            Some((base, k)) if k.chars().all(|c| c.is_ascii_digit()) && !k.is_empty() => {
                (base, Some(k.parse::<usize>().map_err(|_| ())?))
            }
            _ => (item, None),
        };
        let split = base
            .char_indices()
            .skip(1)
            .find(|&(i, c)| {
                (c == '+' || c == '-') && !matches!(base.as_bytes()[i - 1], b'e' | b'E')
            })
            .map(|(i, _)| i);
        match (split, times) {
            (Some(i), Some(k)) => {
                let start = go_number(&base[..i]).ok_or(())?;
                let step = go_number(&base[i..]).ok_or(())?;
                let mut v = start;
                for _ in 0..=k {
                    out.push(Some(v));
                    v += step;
                }
            }
            (None, Some(k)) => {
                let v = go_number(base).ok_or(())?;
                out.extend(std::iter::repeat_n(Some(v), k + 1));
            }
            _ => out.push(Some(go_number(item).ok_or(())?)),
        }
    }
    Ok(out)
}

/// Splits a series line into its label set and the rest.
pub fn parse_metric(line: &str) -> Option<(LabelSet, &str)> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let mut labels: LabelSet = Vec::new();
    if name_end > 0 {
        labels.push(("__name__".into(), line[..name_end].to_owned()));
    }
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices().peekable();
        loop {
            while chars
                .peek()
                .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
            {
                chars.next();
            }
            let (i, c) = chars.next()?;
            if c == '}' {
                rest = &rest[1 + i + 1..];
                break;
            }
            // A label name, or a quoted string.
            let name = if c == '"' {
                read_quoted(&mut chars, '"')?
            } else {
                let mut name = String::from(c);
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                name
            };
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_some_and(|(_, c)| *c == '=') {
                chars.next();
                while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                    chars.next();
                }
                let (_, quote) = chars.next()?;
                let value = read_quoted(&mut chars, quote)?;
                labels.retain(|(n, _)| *n != name);
                labels.push((name, value));
            } else {
                // A bare quoted string is the metric name.
                labels.retain(|(n, _)| n != "__name__");
                labels.push(("__name__".into(), name));
            }
        }
    }
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    Some((labels, rest.trim()))
}

fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    quote: char,
) -> Option<String> {
    let mut out = String::new();
    loop {
        let (_, c) = chars.next()?;
        if c == quote {
            return Some(out);
        }
        if c == '\\' && quote != '`' {
            let (_, e) = chars.next()?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = (0..n)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            }
        } else {
            out.push(c);
        }
    }
}
