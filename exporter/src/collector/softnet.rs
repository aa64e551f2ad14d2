//! `softnet`: per-CPU packet-processing counters from
//! `/proc/net/softnet_stat`, as node_exporter's `node_softnet_*{cpu}`.
//! The file has grown columns over kernel versions (9 before 2.6.39, 11
//! from 4.18, 13 from 5.14, more since); absent columns read as 0, and the
//! CPU number is the 13th column where there is one, else the row number.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_string};
use crate::snapshot::{Kind, Snapshot};

/// Flag and label name.
pub const NAME: &str = "softnet";

/// One CPU's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftnetRow {
    /// The CPU the row belongs to.
    pub cpu: u32,
    /// Packets processed.
    pub processed: u32,
    /// Packets dropped (backlog full).
    pub dropped: u32,
    /// Times the NET_RX budget ran out with work left.
    pub times_squeezed: u32,
    /// Lock collisions on transmit (always 0 on current kernels).
    pub cpu_collision: u32,
    /// Times this CPU was woken by an inter-processor interrupt for RPS.
    pub received_rps: u32,
    /// Times the flow limit was reached.
    pub flow_limit_count: u32,
    /// Packets waiting in the backlog.
    pub backlog_len: u32,
}

/// Parses the whole file.
pub fn parse_softnet(path: &Path, text: &str) -> Result<Vec<SoftnetRow>, CollectError> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let hex: Vec<u32> = line
            .split_ascii_whitespace()
            .map(|f| {
                u32::from_str_radix(f, 16)
                    .map_err(|_| CollectError::parse(path, format!("bad hex number {f:?}")))
            })
            .collect::<Result<_, _>>()?;
        if hex.len() < 9 {
            return Err(CollectError::parse(
                path,
                format!(
                    "line {} has {} columns, expected at least 9",
                    index + 1,
                    hex.len()
                ),
            ));
        }
        let column = |i: usize| hex.get(i).copied().unwrap_or(0);
        let cpu = match hex.get(12) {
            Some(cpu) => *cpu,
            None => u32::try_from(index).map_err(|_| CollectError::parse(path, "too many rows"))?,
        };
        rows.push(SoftnetRow {
            cpu,
            processed: hex[0],
            dropped: hex[1],
            times_squeezed: hex[2],
            cpu_collision: hex[8],
            received_rps: column(9),
            flow_limit_count: column(10),
            backlog_len: if hex.len() >= 13 { hex[11] } else { 0 },
        });
    }
    Ok(rows)
}

type Field = (&'static str, &'static str, Kind, fn(&SoftnetRow) -> u32);

const FIELDS: [Field; 7] = [
    (
        "node_softnet_processed_total",
        "Number of processed packets",
        Kind::Counter,
        |r| r.processed,
    ),
    (
        "node_softnet_dropped_total",
        "Number of dropped packets",
        Kind::Counter,
        |r| r.dropped,
    ),
    (
        "node_softnet_times_squeezed_total",
        "Number of times processing packets ran out of quota",
        Kind::Counter,
        |r| r.times_squeezed,
    ),
    (
        "node_softnet_cpu_collision_total",
        "Number of collision occur while obtaining device lock while transmitting",
        Kind::Counter,
        |r| r.cpu_collision,
    ),
    (
        "node_softnet_received_rps_total",
        "Number of times cpu woken up received_rps",
        Kind::Counter,
        |r| r.received_rps,
    ),
    (
        "node_softnet_flow_limit_count_total",
        "Number of times flow limit has been reached",
        Kind::Counter,
        |r| r.flow_limit_count,
    ),
    (
        "node_softnet_backlog_len",
        "Softnet backlog status",
        Kind::Gauge,
        |r| r.backlog_len,
    ),
];

/// The `softnet` collector.
#[derive(Debug)]
pub struct SoftnetCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> SoftnetCollector {
    SoftnetCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for SoftnetCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let path = self.roots.proc("net/softnet_stat");
        let rows = parse_softnet(&path, &read_string(&path)?)?;
        for (name, help, kind, read) in FIELDS {
            let family = out.family(name, help, kind);
            for row in &rows {
                family.push(vec![("cpu", row.cpu.to_string())], f64::from(read(row)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kernel_generation() {
        let p = Path::new("softnet_stat");
        // Linux 6.18: 15 columns, the CPU number in the 13th.
        let new = "0000eeb1 00000002 00000003 00000000 00000000 00000000 00000000 00000000 \
                   00000000 00000004 00000005 00000006 00000007 00000000 00000000\n";
        assert_eq!(
            parse_softnet(p, new).unwrap(),
            vec![SoftnetRow {
                cpu: 7,
                processed: 0xeeb1,
                dropped: 2,
                times_squeezed: 3,
                cpu_collision: 0,
                received_rps: 4,
                flow_limit_count: 5,
                backlog_len: 6,
            }]
        );
        // Before 2.6.39: 9 columns; the row number is the CPU.
        let old = "00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000009\n\
                   00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n";
        let rows = parse_softnet(p, old).unwrap();
        assert_eq!((rows[0].cpu, rows[0].cpu_collision), (0, 9));
        assert_eq!((rows[1].cpu, rows[1].processed), (1, 2));
        assert!(parse_softnet(p, "00000001 00000002\n").is_err());
        assert!(parse_softnet(p, "0000000g 0 0 0 0 0 0 0 0\n").is_err());
    }
}
