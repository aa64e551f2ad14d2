//! `stat`: kernel counters from `/proc/stat` (boot time, context switches,
//! forks, interrupts, runnable and blocked processes), node_exporter's names.
//!
//! `/proc/stat` is parsed here rather than with `procfs-core`, whose
//! `KernelStats` drops the CPU number of each `cpuN` line (CPUs that are
//! offline leave gaps) and the `intr` total; the `cpu` collector shares this
//! parser.

use std::path::Path;

use super::{CollectError, Collector};
use crate::config::Config;
use crate::roots::{Roots, read_string};
use crate::snapshot::Snapshot;

/// Flag and label name.
pub const NAME: &str = "stat";

/// Clock ticks per second in `/proc/stat`: USER_HZ, fixed at 100 on Linux
/// for every architecture node_exporter supports.
pub const USER_HZ: f64 = 100.0;

/// One `cpuN` line: the CPU number and its tick counters in kernel order
/// (user nice system idle iowait irq softirq steal guest guest_nice).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuLine {
    /// The N of `cpuN`.
    pub cpu: String,
    /// Tick counters; missing trailing columns (old kernels) are zero.
    pub ticks: [u64; 10],
}

/// The parts of `/proc/stat` dcmon exports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStat {
    /// Per-CPU lines (the aggregate `cpu` line is not kept).
    pub cpus: Vec<CpuLine>,
    /// `intr` total.
    pub intr: Option<u64>,
    /// `ctxt`.
    pub ctxt: Option<u64>,
    /// `btime`.
    pub btime: Option<u64>,
    /// `processes` (forks since boot).
    pub processes: Option<u64>,
    /// `procs_running`.
    pub procs_running: Option<u64>,
    /// `procs_blocked`.
    pub procs_blocked: Option<u64>,
}

/// Parses `/proc/stat`. Unknown lines are ignored; a malformed number in a
/// known line is an error naming the line.
pub fn parse_proc_stat(path: &Path, text: &str) -> Result<ProcStat, CollectError> {
    let mut stat = ProcStat::default();
    let number = |line: &str, token: Option<&str>| -> Result<u64, CollectError> {
        let token = token
            .ok_or_else(|| CollectError::parse(path, format!("missing value in line {line:?}")))?;
        token.parse().map_err(|_| {
            CollectError::parse(path, format!("bad number {token:?} in line {line:?}"))
        })
    };
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        match key {
            "cpu" => {
                // The all-CPU total is not exported, but must be well formed.
                for token in fields {
                    number(line, Some(token))?;
                }
            }
            "intr" => stat.intr = Some(number(line, fields.next())?),
            "ctxt" => stat.ctxt = Some(number(line, fields.next())?),
            "btime" => stat.btime = Some(number(line, fields.next())?),
            "processes" => stat.processes = Some(number(line, fields.next())?),
            "procs_running" => stat.procs_running = Some(number(line, fields.next())?),
            "procs_blocked" => stat.procs_blocked = Some(number(line, fields.next())?),
            _ => {
                let Some(cpu) = key.strip_prefix("cpu") else {
                    continue;
                };
                if cpu.is_empty() || !cpu.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let mut ticks = [0u64; 10];
                let mut count = 0;
                for (slot, token) in ticks.iter_mut().zip(fields) {
                    *slot = number(line, Some(token))?;
                    count += 1;
                }
                if count < 4 {
                    return Err(CollectError::parse(
                        path,
                        format!("too few columns in line {line:?}"),
                    ));
                }
                stat.cpus.push(CpuLine {
                    cpu: cpu.to_owned(),
                    ticks,
                });
            }
        }
    }
    let required = [
        ("intr", stat.intr),
        ("ctxt", stat.ctxt),
        ("btime", stat.btime),
        ("processes", stat.processes),
    ];
    if let Some((missing, _)) = required.iter().find(|(_, v)| v.is_none()) {
        return Err(CollectError::parse(path, format!("no {missing} line")));
    }
    if stat.cpus.is_empty() {
        return Err(CollectError::parse(path, "no cpuN lines"));
    }
    Ok(stat)
}

/// Reads and parses `<procfs>/stat`.
pub fn read_proc_stat(roots: &Roots) -> Result<ProcStat, CollectError> {
    let path = roots.proc("stat");
    parse_proc_stat(&path, &read_string(&path)?)
}

/// The `stat` collector.
#[derive(Debug)]
pub struct StatCollector {
    roots: Roots,
}

/// Builds the collector.
pub fn new(config: &Config) -> StatCollector {
    StatCollector {
        roots: config.roots.clone(),
    }
}

impl Collector for StatCollector {
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
        let stat = read_proc_stat(&self.roots)?;
        if let Some(v) = stat.intr {
            out.counter(
                "node_intr_total",
                "Total number of interrupts serviced.",
                vec![],
                v as f64,
            );
        }
        if let Some(v) = stat.ctxt {
            out.counter(
                "node_context_switches_total",
                "Total number of context switches.",
                vec![],
                v as f64,
            );
        }
        if let Some(v) = stat.processes {
            out.counter(
                "node_forks_total",
                "Total number of forks.",
                vec![],
                v as f64,
            );
        }
        if let Some(v) = stat.btime {
            out.gauge(
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                vec![],
                v as f64,
            );
        }
        if let Some(v) = stat.procs_running {
            out.gauge(
                "node_procs_running",
                "Number of processes in runnable state.",
                vec![],
                v as f64,
            );
        }
        if let Some(v) = stat.procs_blocked {
            out.gauge(
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                vec![],
                v as f64,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_proc_stat_lines() {
        let text = "cpu  301854 612 111922 8979004 3552 2 3944 0 44 36\ncpu0 44490 19 21045 1087069 220 1 3410 0 2 1\ncpu3 1 2 3 4\nintr 8885917 17 0 0\nctxt 38014093\nbtime 1418183276\nprocesses 26442\nprocs_running 2\nprocs_blocked 0\nsoftirq 5057579 250191\n";
        let stat = parse_proc_stat(Path::new("stat"), text).unwrap();
        assert_eq!(stat.cpus.len(), 2);
        assert_eq!(stat.cpus[0].cpu, "0");
        assert_eq!(
            stat.cpus[0].ticks,
            [44490, 19, 21045, 1087069, 220, 1, 3410, 0, 2, 1]
        );
        assert_eq!(
            stat.cpus[1].cpu, "3",
            "CPU numbers come from the line, not its position"
        );
        assert_eq!(stat.cpus[1].ticks[4..], [0; 6]);
        assert_eq!(stat.intr, Some(8885917));
        assert_eq!(stat.btime, Some(1418183276));
        assert_eq!(stat.procs_blocked, Some(0));
    }

    #[test]
    fn malformed_number_names_the_line() {
        let err = parse_proc_stat(Path::new("/proc/stat"), "ctxt 12x\n").unwrap_err();
        assert!(err.to_string().contains("\"12x\""), "{err}");
        let err = parse_proc_stat(Path::new("/proc/stat"), "cpu0 1 2\n").unwrap_err();
        assert!(err.to_string().contains("too few columns"), "{err}");
        let err =
            parse_proc_stat(Path::new("/proc/stat"), "cpu  1 2 3 4\ncpu0 1 2 3 4\n").unwrap_err();
        assert!(err.to_string().contains("no intr line"), "{err}");
        let err = parse_proc_stat(Path::new("/proc/stat"), "cpu  1 2 3 4x\n").unwrap_err();
        assert!(err.to_string().contains("\"4x\""), "{err}");
    }
}
