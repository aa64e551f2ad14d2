//! `cpu`: seconds each CPU spent in each mode, from `/proc/stat`, as
//! `node_cpu_seconds_total{cpu,mode}` and `node_cpu_guest_seconds_total`.
//! Like node_exporter, `user` and `nice` include guest time (the kernel counts
//! it there) and guest time is also exported on its own.

use super::stat::{USER_HZ, read_proc_stat};
use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::Roots;
use crate::snapshot::{Kind, Snapshot};

/// Flag and label name.
pub const NAME: &str = "cpu";

/// Modes in `/proc/stat` column order (the first eight columns).
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// The `cpu` collector.
#[derive(Debug)]
pub struct CpuCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> CpuCollector {
    CpuCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for CpuCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let stat = read_proc_stat(&self.roots)?;
        let seconds = out.family(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
            Kind::Counter,
        );
        for line in &stat.cpus {
            for (mode, ticks) in MODES.iter().zip(line.ticks) {
                seconds.push(
                    vec![("cpu", line.cpu.clone()), ("mode", (*mode).to_owned())],
                    ticks as f64 / USER_HZ,
                );
            }
        }
        let guest = out.family(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
            Kind::Counter,
        );
        for line in &stat.cpus {
            for (mode, ticks) in [("user", line.ticks[8]), ("nice", line.ticks[9])] {
                guest.push(
                    vec![("cpu", line.cpu.clone()), ("mode", mode.to_owned())],
                    ticks as f64 / USER_HZ,
                );
            }
        }
        Ok(())
    }
}
