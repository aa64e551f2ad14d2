//! `loadavg`: `node_load1`, `node_load5`, `node_load15` from `/proc/loadavg`.
//! Parsed here as f64: `procfs-core` reads these as f32, which would turn
//! `0.21` into `0.2099999934`.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_string};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "loadavg";

/// The three load averages of a `/proc/loadavg` line. The kernel always
/// writes five fields (`0.21 0.37 0.39 1/719 19737`); anything shorter is a
/// truncated read, whose last number cannot be trusted.
pub fn parse_loadavg(path: &Path, text: &str) -> Result<[f64; 3], CollectError> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    if fields.len() != 5 || !fields[3].contains('/') {
        return Err(CollectError::parse(
            path,
            format!("expected 'avg1 avg5 avg15 running/total lastpid', got {text:?}"),
        ));
    }
    let mut loads = [0.0; 3];
    for (slot, token) in loads.iter_mut().zip(&fields) {
        *slot = token
            .parse()
            .map_err(|_| CollectError::parse(path, format!("bad load average {token:?}")))?;
    }
    Ok(loads)
}

/// The `loadavg` collector.
#[derive(Debug)]
pub struct LoadavgCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> LoadavgCollector {
    LoadavgCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for LoadavgCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let path = self.roots.proc("loadavg");
        let [one, five, fifteen] = parse_loadavg(&path, &read_string(&path)?)?;
        out.gauge("node_load1", "1m load average.", vec![], one);
        out.gauge("node_load5", "5m load average.", vec![], five);
        out.gauge("node_load15", "15m load average.", vec![], fifteen);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_line() {
        let loads = parse_loadavg(Path::new("loadavg"), "0.21 0.37 0.39 1/719 19737\n").unwrap();
        assert_eq!(loads, [0.21, 0.37, 0.39]);
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        assert!(parse_loadavg(Path::new("loadavg"), "0.21 0.37").is_err());
        assert!(parse_loadavg(Path::new("loadavg"), "0.21 0.37 0.3").is_err());
        let err = parse_loadavg(Path::new("loadavg"), "0.21 abc 0.39 1/719 19737").unwrap_err();
        assert!(err.to_string().contains("\"abc\""), "{err}");
    }
}
