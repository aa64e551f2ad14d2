//! The exporter's own metrics: `dcmon_exporter_build_info` and the standard
//! `process_*` family that every Prometheus exporter exposes, read from this
//! process's own `/proc/self` (never from `--path.procfs`, which may be a
//! fixture tree).

use procfs_core::FromRead;

use crate::snapshot::Snapshot;

/// Git revision the binary was built from (set by `build.rs`).
pub const REVISION: &str = env!("DCMON_REVISION");

/// Appends build info and process metrics. Process metrics that cannot be
/// read are left out rather than failing the scrape.
pub fn collect(out: &mut Snapshot) {
    out.gauge(
        "dcmon_exporter_build_info",
        "A metric with a constant '1' value labeled by version and revision from which dcmon-exporter was built.",
        vec![("version", env!("CARGO_PKG_VERSION").into()), ("revision", REVISION.into())],
        1.0,
    );
    if let Err(err) = collect_process(out) {
        tracing::debug!(error = %err, "process metrics unavailable");
    }
}

fn collect_process(out: &mut Snapshot) -> Result<(), Box<dyn std::error::Error>> {
    use nix::sys::resource::{Resource, getrlimit};
    use nix::unistd::{SysconfVar, sysconf};

    let stat = procfs_core::process::Stat::from_file("/proc/self/stat")?;
    let ticks = sysconf(SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let page_size = sysconf(SysconfVar::PAGE_SIZE)?.unwrap_or(4096) as f64;
    let boot_time = std::fs::read_to_string("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or("no btime in /proc/stat")?;
    let open_fds = std::fs::read_dir("/proc/self/fd")?.count() as f64;
    let (max_fds, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let (max_vm, _) = getrlimit(Resource::RLIMIT_AS)?;

    out.counter(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        vec![],
        (stat.utime + stat.stime) as f64 / ticks,
    );
    out.gauge(
        "process_open_fds",
        "Number of open file descriptors.",
        vec![],
        open_fds,
    );
    out.gauge(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        vec![],
        max_fds as f64,
    );
    out.gauge(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        vec![],
        stat.vsize as f64,
    );
    out.gauge(
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.",
        vec![],
        max_vm as f64,
    );
    out.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        vec![],
        stat.rss as f64 * page_size,
    );
    out.gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        vec![],
        boot_time + stat.starttime as f64 / ticks,
    );
    Ok(())
}
