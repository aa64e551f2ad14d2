//! Helpers shared by the integration tests: fixture paths, a ttar unpacker
//! and a small Prometheus text-format parser for comparing outputs.

#![allow(dead_code)]

pub mod process;
pub mod stand_in;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `exporter/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Unpacks a ttar archive (node_exporter's text archive format) into `dest`.
pub fn unpack_ttar(archive: &Path, dest: &Path) {
    let data = std::fs::read(archive).unwrap_or_else(|e| panic!("{}: {e}", archive.display()));
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let text = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
    let mut current: Option<PathBuf> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let line = text(line);
        if let Some(dir) = line.strip_prefix("Directory: ") {
            std::fs::create_dir_all(dest.join(dir)).unwrap();
            current = Some(dest.join(dir));
        } else if let Some(path) = line.strip_prefix("Path: ") {
            current = Some(dest.join(path));
        } else if let Some(count) = line.strip_prefix("Lines: ") {
            let count: usize = count.trim().parse().unwrap();
            let mut body = Vec::new();
            for raw in &lines[i..i + count] {
                let (content, newline) = match raw.strip_suffix(b"EOF") {
                    Some(rest) if !rest.ends_with(b"\\") => (rest, false),
                    _ => (*raw, true),
                };
                body.extend(decode_ttar_line(content));
                if newline {
                    body.push(b'\n');
                }
            }
            i += count;
            let path = current.as_ref().expect("Lines: before Path:");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        } else if let Some(target) = line.strip_prefix("SymlinkTo: ") {
            let path = current.as_ref().expect("SymlinkTo: before Path:");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, path).unwrap();
        }
        // `Mode:` lines are ignored: the tests read as root or the owner.
    }
}

/// `NULLBYTE` → NUL, `\NULLBYTE` → `NULLBYTE`, `\EOF` → `EOF`.
fn decode_ttar_line(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut i = 0;
    while i < content.len() {
        let rest = &content[i..];
        if rest.starts_with(b"\\NULLBYTE") {
            out.extend_from_slice(b"NULLBYTE");
            i += 9;
        } else if rest.starts_with(b"NULLBYTE") {
            out.push(0);
            i += 8;
        } else if rest.starts_with(b"\\EOF") {
            out.extend_from_slice(b"EOF");
            i += 4;
        } else {
            out.push(content[i]);
            i += 1;
        }
    }
    out
}

/// One parsed metric family.
#[derive(Debug, Default, Clone)]
pub struct ParsedFamily {
    /// `counter`, `gauge`, `untyped`…
    pub kind: String,
    /// HELP text.
    pub help: String,
    /// Canonical label string (`a="x",b="y"`, sorted) → value.
    pub series: BTreeMap<String, f64>,
}

/// Parses Prometheus text format 0.0.4 into families keyed by name.
pub fn parse_exposition(text: &str) -> BTreeMap<String, ParsedFamily> {
    let mut families: BTreeMap<String, ParsedFamily> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_owned()).or_default().help = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else {
            let (name, labels, value) = parse_sample(line);
            families
                .entry(name)
                .or_default()
                .series
                .insert(labels, value);
        }
    }
    families
}

fn parse_sample(line: &str) -> (String, String, f64) {
    let name_end = line.find(['{', ' ']).expect("sample line");
    let name = line[..name_end].to_owned();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut key = String::new();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = i + 1;
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "in {line}");
                    let mut value = String::new();
                    while let Some((_, c)) = chars.next() {
                        match c {
                            '\\' => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(other) => value.push(other),
                                None => {}
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                c => key.push(c),
            }
        }
        rest = &inner[end..];
    }
    labels.sort();
    let canonical = labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let value_text = rest.split_ascii_whitespace().next().expect("value");
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    (name, canonical, value)
}
