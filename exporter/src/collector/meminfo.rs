//! `meminfo`: every field of `/proc/meminfo` as `node_memory_<Field>_bytes`
//! (or without `_bytes` for page counts such as `HugePages_Total`), exactly
//! as node_exporter names them: `Active(anon)` becomes `Active_anon`.
//!
//! Parsed generically here because `procfs-core`'s `Meminfo` is a fixed
//! struct: fields added by newer kernels would silently disappear.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_string};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "meminfo";

/// `(metric name, value)` for every line of `/proc/meminfo`.
pub fn parse_meminfo(path: &Path, text: &str) -> Result<Vec<(String, f64)>, CollectError> {
    let mut fields = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, rest) = line
            .split_once(':')
            .ok_or_else(|| CollectError::parse(path, format!("no ':' in line {line:?}")))?;
        let mut parts = rest.split_ascii_whitespace();
        let token = parts
            .next()
            .ok_or_else(|| CollectError::parse(path, format!("no value in line {line:?}")))?;
        let mut value: f64 = token.parse().map_err(|_| {
            CollectError::parse(path, format!("bad value {token:?} in line {line:?}"))
        })?;
        let key = key.replace('(', "_").replace(')', "");
        let name = match parts.next() {
            Some("kB") => {
                value *= 1024.0;
                format!("node_memory_{key}_bytes")
            }
            Some(unit) => {
                return Err(CollectError::parse(
                    path,
                    format!("unknown unit {unit:?} in line {line:?}"),
                ));
            }
            None => format!("node_memory_{key}"),
        };
        fields.push((name, value));
    }
    if fields.is_empty() {
        return Err(CollectError::parse(path, "empty file"));
    }
    Ok(fields)
}

/// The `meminfo` collector.
#[derive(Debug)]
pub struct MeminfoCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> MeminfoCollector {
    MeminfoCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for MeminfoCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let path = self.roots.proc("meminfo");
        for (name, value) in parse_meminfo(&path, &read_string(&path)?)? {
            let field = name.trim_start_matches("node_memory_").to_owned();
            out.gauge(
                name,
                format!("Memory information field {field}."),
                vec![],
                value,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_node_exporter() {
        let text =
            "MemTotal:        3742148 kB\nActive(anon):    2020004 kB\nHugePages_Total:       0\n";
        let fields = parse_meminfo(Path::new("meminfo"), text).unwrap();
        assert_eq!(
            fields,
            vec![
                ("node_memory_MemTotal_bytes".to_owned(), 3742148.0 * 1024.0),
                (
                    "node_memory_Active_anon_bytes".to_owned(),
                    2020004.0 * 1024.0
                ),
                ("node_memory_HugePages_Total".to_owned(), 0.0),
            ]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_meminfo(Path::new("meminfo"), "MemTotal: lots kB\n").is_err());
        assert!(parse_meminfo(Path::new("meminfo"), "\u{0}\u{1}binary").is_err());
        assert!(parse_meminfo(Path::new("meminfo"), "").is_err());
    }
}
