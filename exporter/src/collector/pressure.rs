//! `pressure`: Pressure Stall Information totals from `/proc/pressure/*`,
//! as node_exporter exports them (`some` → waiting, `full` → stalled; the
//! system-wide CPU `full` line is meaningless and not exported).

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_optional};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "pressure";

/// `some` and `full` totals of one PSI file, in microseconds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PsiTotals {
    /// `some … total=`.
    pub some: Option<u64>,
    /// `full … total=`.
    pub full: Option<u64>,
}

/// Parses a PSI file (`some avg10=… total=N` / `full …`).
pub fn parse_psi(path: &Path, text: &str) -> Result<PsiTotals, CollectError> {
    let mut totals = PsiTotals::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_ascii_whitespace();
        let kind = fields.next().unwrap_or_default();
        let total = fields
            .find_map(|f| f.strip_prefix("total="))
            .ok_or_else(|| CollectError::parse(path, format!("no total= in line {line:?}")))?;
        let total: u64 = total
            .parse()
            .map_err(|_| CollectError::parse(path, format!("bad total {total:?}")))?;
        match kind {
            "some" => totals.some = Some(total),
            "full" => totals.full = Some(total),
            other => {
                return Err(CollectError::parse(
                    path,
                    format!("unknown line kind {other:?}"),
                ));
            }
        }
    }
    Ok(totals)
}

/// `(resource, line kind, metric, help)` for every exported total.
const SERIES: [(&str, bool, &str, &str); 6] = [
    (
        "cpu",
        false,
        "node_pressure_cpu_waiting_seconds_total",
        "Total time in seconds that processes have waited for CPU time",
    ),
    (
        "io",
        false,
        "node_pressure_io_waiting_seconds_total",
        "Total time in seconds that processes have waited due to IO congestion",
    ),
    (
        "io",
        true,
        "node_pressure_io_stalled_seconds_total",
        "Total time in seconds no process could make progress due to IO congestion",
    ),
    (
        "memory",
        false,
        "node_pressure_memory_waiting_seconds_total",
        "Total time in seconds that processes have waited for memory",
    ),
    (
        "memory",
        true,
        "node_pressure_memory_stalled_seconds_total",
        "Total time in seconds no process could make progress due to memory congestion",
    ),
    (
        "irq",
        true,
        "node_pressure_irq_stalled_seconds_total",
        "Total time in seconds no process could make progress due to IRQ congestion",
    ),
];

/// The `pressure` collector.
#[derive(Debug)]
pub struct PressureCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> PressureCollector {
    PressureCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for PressureCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let mut found_any = false;
        for resource in ["cpu", "io", "memory", "irq"] {
            let path = self.roots.proc(&format!("pressure/{resource}"));
            let Some(text) = read_optional(&path)? else {
                continue;
            };
            found_any = true;
            let totals = parse_psi(&path, &text)?;
            for (_, full, name, help) in SERIES.iter().filter(|s| s.0 == resource) {
                let total = if *full { totals.full } else { totals.some };
                if let Some(micros) = total {
                    out.counter(*name, *help, vec![], micros as f64 / 1000.0 / 1000.0);
                }
            }
        }
        if found_any {
            Ok(())
        } else {
            Err(CollectError::NoData(
                "pressure stall information not available".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let text = "some avg10=0.18 avg60=0.34 avg300=0.10 total=159886802\nfull avg10=0.18 avg60=0.34 avg300=0.10 total=159229614\n";
        let totals = parse_psi(Path::new("io"), text).unwrap();
        assert_eq!(
            totals,
            PsiTotals {
                some: Some(159886802),
                full: Some(159229614)
            }
        );
        let irq = parse_psi(
            Path::new("irq"),
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=8494",
        )
        .unwrap();
        assert_eq!(
            irq,
            PsiTotals {
                some: None,
                full: Some(8494)
            }
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_psi(Path::new("io"), "some avg10=0.18").is_err());
        assert!(parse_psi(Path::new("io"), "some total=x").is_err());
    }
}
