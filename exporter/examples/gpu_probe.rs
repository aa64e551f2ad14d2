//! Prints what the gpu collector reads from the real NVML and /sys on this
//! machine (the `nvidia_smi_*` families and the `dcmon_gpu_*` health
//! series), in the Prometheus text format, then watches for XID events for
//! a while.
//!
//! ```text
//! cargo run -p dcmon-exporter --example gpu_probe            # one reading
//! cargo run -p dcmon-exporter --example gpu_probe -- 30      # and 30 s of XID watching
//! ```
//!
//! On a machine without the NVIDIA driver it prints the collector's
//! `success 0` reason and exits with status 2.

use std::process::ExitCode;
use std::time::Duration;

use dcmon_exporter::collector::Collector;
use dcmon_exporter::collector::gpu::{DEFAULT_DEADLINE, GpuCollector};
use dcmon_exporter::collector::gpu_nvml::NvmlSource;
use dcmon_exporter::exposition::encode;
use dcmon_exporter::snapshot::Snapshot;
use dcmon_protocol::exposition::Format;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let watch_seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // As the exporter builds it: NVML loaded and read on its worker
    // thread, GPUs counted on the PCI bus under /sys.
    let collector = GpuCollector::on_worker(|| Box::new(NvmlSource::new()), DEFAULT_DEADLINE)
        .reading_pci("/sys".into());
    let started = std::time::Instant::now();
    let mut out = Snapshot::new();
    let result = collector.update(&mut out);
    eprintln!("gpu collector took {:?}", started.elapsed());
    out.sort();
    print!("{}", encode(out, Format::Text));
    if let Err(err) = result {
        eprintln!("gpu collector failed: {err}");
        return ExitCode::from(2);
    }
    if watch_seconds > 0 {
        // XID events arrive on the source's own thread; read again after
        // waiting so any that arrived show up as nvidia_smi_xid_errors_total.
        std::thread::sleep(Duration::from_secs(watch_seconds));
        let mut out = Snapshot::new();
        let _ = collector.update(&mut out);
        let xid = out
            .get("nvidia_smi_xid_errors_total")
            .map_or(0, |f| f.samples.len());
        println!("# after {watch_seconds}s: {xid} XID series");
        out.sort();
        print!("{}", encode(out, Format::Text));
    }
    ExitCode::SUCCESS
}
