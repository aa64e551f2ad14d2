//! A synthetic fleet: deterministic node_exporter-like, nvidia_smi-like and
//! PromLabs-demo-like series, produced scrape by scrape so any number of
//! hosts and hours can be streamed to a remote-write receiver.
//!
//! Shared by the side-by-side test and the query benchmark (which includes
//! this file by path). Data only: no HTTP here.
//!
//! What the data exercises: counters with resets (a host reboots), gauges
//! as random walks with decimal values, classic histograms (`_bucket` with
//! `le`, `_sum`, `_count`), info-style constant series, and series that go
//! stale (a staleness marker, then silence, then back). Every scrape
//! timestamp is a tick plus a per-host offset plus jitter, never a whole
//! second, so no sample falls on the boundary of a window that starts or
//! ends at a whole second, where Prometheus 2.x and 3.x disagree.

#![allow(dead_code)]

use dcmon_protocol::remote_write::SeriesSamples;
use dcmon_testkit::Rng;

/// Prometheus's staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// The GPU uuid the dashboards' `$gpu` variable was filled with.
pub const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// The shape of the fleet.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Hosts with node and GPU series (`instance="hostN:9100"`, `job="node"`).
    pub hosts: usize,
    /// CPUs per host (8 `node_cpu_seconds_total` series each).
    pub cpus: usize,
    /// GPUs per host.
    pub gpus: usize,
    /// Demo-service instances (`job="demo"`), as the compliance queries expect.
    pub demo_instances: usize,
    /// Scrape interval.
    pub interval_ms: i64,
    /// First tick (ms).
    pub start_ms: i64,
    /// Number of scrapes.
    pub ticks: usize,
    /// Seed of the value generator.
    pub seed: u64,
}

impl Spec {
    /// Timestamp of the last tick.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + (self.ticks as i64 - 1) * self.interval_ms
    }
}

/// How one series produces its next value.
#[derive(Debug, Clone)]
enum Gen {
    /// Counter in hundredths, growing by `lo..=hi` per scrape; falls back to
    /// a small value at the host's reboot tick.
    Counter { value: u64, lo: u64, hi: u64 },
    /// Random walk over integer units, value = units × scale.
    Walk {
        units: i64,
        step: i64,
        min: i64,
        max: i64,
        scale: f64,
    },
    /// A constant.
    Constant(f64),
    /// A random walk that reads NaN one scrape in ten (a tool answering
    /// "N/A", as nvidia-smi does for the fan of a passively cooled GPU).
    Flaky(Box<Gen>),
    /// The scrape time in seconds (`node_time_seconds`).
    Clock,
    /// The host's boot time in seconds.
    BootTime,
    /// Seconds of the last successful batch run: updated about once a
    /// minute, skipped one time in four.
    LastSuccess(f64),
    /// Present (value 1) during even minutes only, stale otherwise.
    Intermittent,
    /// Present until `until` ticks, then a staleness marker and gone.
    Vanishing { value: f64, until: usize },
    /// A cumulative histogram bucket: shares the counts of its histogram.
    Bucket { hist: usize, index: usize },
    /// The histogram's `_count`.
    HistCount(usize),
    /// The histogram's `_sum`.
    HistSum(usize),
}

/// Classic histogram state: cumulative counts per bucket and the sum.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    /// Requests per scrape, roughly.
    load: u64,
}

impl Histogram {
    fn observe(&mut self, rng: &mut Rng) {
        let n = rng.below(self.load * 2 + 1);
        for _ in 0..n {
            // Log-uniform-ish latencies between 1 ms and ~20 s.
            let exp = rng.below(1400) as f64 / 100.0;
            let value = 0.001 * exp.exp2();
            self.sum += value;
            for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
                if value <= *bound {
                    *count += 1;
                }
            }
            // +Inf bucket.
            *self.counts.last_mut().unwrap() += 1;
        }
    }
}

const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const CPU_MODES: [(&str, u64, u64); 8] = [
    ("idle", 1500, 3000),
    ("iowait", 0, 120),
    ("irq", 0, 15),
    ("nice", 0, 4),
    ("softirq", 0, 60),
    ("steal", 0, 0),
    ("system", 0, 400),
    ("user", 0, 900),
];

type LabelPairs = Vec<(String, String)>;

/// One scraped target: its series and their generators.
#[derive(Debug)]
pub struct Target {
    rng: Rng,
    offset_ms: i64,
    /// Tick at which counters restart (a reboot), if any.
    reboot_tick: Option<usize>,
    boot_time_s: f64,
    labels: Vec<LabelPairs>,
    gens: Vec<Gen>,
    hists: Vec<Histogram>,
}

struct Builder {
    base: LabelPairs,
    labels: Vec<LabelPairs>,
    gens: Vec<Gen>,
    hists: Vec<Histogram>,
}

impl Builder {
    fn new(base: &[(&str, &str)]) -> Builder {
        Builder {
            base: base
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            labels: Vec::new(),
            gens: Vec::new(),
            hists: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, extra: &[(&str, &str)], generator: Gen) {
        let mut labels = self.base.clone();
        labels.push(("__name__".to_owned(), name.to_owned()));
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        labels.sort();
        self.labels.push(labels);
        self.gens.push(generator);
    }

    fn walk(units: i64, step: i64, min: i64, max: i64, scale: f64) -> Gen {
        Gen::Walk {
            units,
            step,
            min,
            max,
            scale,
        }
    }

    fn counter(rng: &mut Rng, lo: u64, hi: u64) -> Gen {
        Gen::Counter {
            value: rng.between(100_000, 50_000_000),
            lo,
            hi,
        }
    }

    fn histogram(&mut self, name: &str, extra: &[(&str, &str)], load: u64) {
        let hist = self.hists.len();
        self.hists.push(Histogram {
            bounds: LATENCY_BOUNDS.to_vec(),
            counts: vec![0; LATENCY_BOUNDS.len() + 1],
            sum: 0.0,
            load,
        });
        let les: Vec<String> = LATENCY_BOUNDS
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_owned()))
            .collect();
        for (index, le) in les.iter().enumerate() {
            let mut labels = extra.to_vec();
            labels.push(("le", le.as_str()));
            self.add(
                &format!("{name}_bucket"),
                &labels,
                Gen::Bucket { hist, index },
            );
        }
        self.add(&format!("{name}_count"), extra, Gen::HistCount(hist));
        self.add(&format!("{name}_sum"), extra, Gen::HistSum(hist));
    }
}

impl Target {
    fn finish(builder: Builder, mut rng: Rng, reboot_tick: Option<usize>, start_ms: i64) -> Target {
        // Whole seconds plus 100..900 ms: with ±40 ms of jitter a scrape
        // never lands on a whole second.
        let offset_ms = rng.between(0, 13) as i64 * 1000 + rng.between(100, 900) as i64;
        let boot_time_s = (start_ms / 1000 - rng.between(3_600, 3_000_000) as i64) as f64;
        Target {
            rng,
            offset_ms,
            reboot_tick,
            boot_time_s,
            labels: builder.labels,
            gens: builder.gens,
            hists: builder.hists,
        }
    }

    /// Host `h` (1-based names): node and GPU series.
    pub fn host(spec: &Spec, h: usize) -> Target {
        let mut rng = Rng::new(spec.seed ^ (h as u64).wrapping_mul(0xa076_1d64_78bd_642f));
        let instance = format!("host{h}:9100");
        let nodename = format!("host{h}");
        let mut b = Builder::new(&[("instance", &instance), ("job", "node")]);
        for cpu in 0..spec.cpus {
            for (mode, lo, hi) in CPU_MODES {
                let generator = Builder::counter(&mut rng, lo, hi);
                b.add(
                    "node_cpu_seconds_total",
                    &[("cpu", &cpu.to_string()), ("mode", mode)],
                    generator,
                );
            }
        }
        let gib = (1u64 << 30) as f64;
        let total_gib = rng.between(64, 512) as f64;
        b.add(
            "node_memory_MemTotal_bytes",
            &[],
            Gen::Constant(total_gib * gib),
        );
        b.add("node_memory_SwapTotal_bytes", &[], Gen::Constant(8.0 * gib));
        let pages = (total_gib * gib / 4096.0) as i64;
        for name in [
            "node_memory_MemFree_bytes",
            "node_memory_MemAvailable_bytes",
            "node_memory_Cached_bytes",
            "node_memory_Buffers_bytes",
            "node_memory_SReclaimable_bytes",
            "node_memory_SwapFree_bytes",
        ] {
            let max = if name.contains("Swap") {
                (8.0 * gib / 4096.0) as i64
            } else {
                pages / 2
            };
            let start = rng.between(1, max as u64) as i64;
            b.add(name, &[], Builder::walk(start, 2048, 0, max, 4096.0));
        }
        for (name, step) in [("node_load1", 40), ("node_load5", 15), ("node_load15", 5)] {
            let start = rng.between(0, 800) as i64;
            b.add(name, &[], Builder::walk(start, step, 0, 6400, 0.01));
        }
        for dev in ["eth0", "eth1"] {
            for dir in ["receive", "transmit"] {
                for (counter, hi) in [
                    ("bytes", 500_000_000),
                    ("packets", 5_000_000),
                    ("errs", 100),
                    ("drop", 300),
                ] {
                    let generator = Builder::counter(&mut rng, 0, hi);
                    b.add(
                        &format!("node_network_{dir}_{counter}_total"),
                        &[("device", dev)],
                        generator,
                    );
                }
            }
            b.add(
                "node_network_speed_bytes",
                &[("device", dev)],
                Gen::Constant(1.25e9),
            );
        }
        for dev in ["nvme0n1", "sda"] {
            for (name, lo, hi) in [
                ("node_disk_read_bytes_total", 0, 40_960_000_000),
                ("node_disk_written_bytes_total", 0, 81_920_000_000),
                ("node_disk_reads_completed_total", 0, 100_000),
                ("node_disk_writes_completed_total", 0, 200_000),
                ("node_disk_io_time_seconds_total", 0, 1_500),
                ("node_disk_io_time_weighted_seconds_total", 0, 4_000),
            ] {
                let generator = Builder::counter(&mut rng, lo, hi);
                b.add(name, &[("device", dev)], generator);
            }
        }
        for (dev, fstype, mountpoint) in [
            ("/dev/nvme0n1p2", "ext4", "/"),
            ("/dev/sda1", "xfs", "/data"),
            ("tmpfs", "tmpfs", "/run"),
        ] {
            let labels = [
                ("device", dev),
                ("fstype", fstype),
                ("mountpoint", mountpoint),
            ];
            let size_blocks = rng.between(1 << 20, 1 << 28) as i64;
            b.add(
                "node_filesystem_size_bytes",
                &labels,
                Gen::Constant(size_blocks as f64 * 4096.0),
            );
            let avail = rng.between(1, size_blocks as u64 / 2) as i64;
            b.add(
                "node_filesystem_avail_bytes",
                &labels,
                Builder::walk(avail, 5_000, 0, size_blocks, 4096.0),
            );
            b.add(
                "node_filesystem_free_bytes",
                &labels,
                Builder::walk(avail + 1000, 5_000, 0, size_blocks, 4096.0),
            );
            b.add(
                "node_filesystem_files",
                &labels,
                Gen::Constant((size_blocks / 4) as f64),
            );
            let free = rng.between(1, size_blocks as u64 / 8) as i64;
            b.add(
                "node_filesystem_files_free",
                &labels,
                Builder::walk(free, 500, 0, size_blocks / 4, 1.0),
            );
            b.add(
                "node_filesystem_readonly",
                &labels,
                Gen::Constant(if fstype == "tmpfs" { 1.0 } else { 0.0 }),
            );
        }
        // What the scraping Prometheus adds and remote-writes along.
        b.add("up", &[], Gen::Constant(1.0));
        b.add("node_boot_time_seconds", &[], Gen::BootTime);
        b.add("node_time_seconds", &[], Gen::Clock);
        b.add(
            "node_uname_info",
            &[
                ("nodename", &nodename),
                ("release", "6.1.0-28-amd64"),
                ("sysname", "Linux"),
                ("machine", "x86_64"),
            ],
            Gen::Constant(1.0),
        );
        let generator = Builder::counter(&mut rng, 100_000, 9_000_000);
        b.add("node_context_switches_total", &[], generator);
        b.add(
            "node_timex_offset_seconds",
            &[],
            Builder::walk(0, 3, -80, 80, 0.001),
        );
        b.add("node_timex_sync_status", &[], Gen::Constant(1.0));
        b.add(
            "node_timex_maxerror_seconds",
            &[],
            Builder::walk(200, 20, 0, 20_000, 0.001),
        );
        b.add(
            "node_filefd_allocated",
            &[],
            Builder::walk(rng.between(1000, 5000) as i64, 30, 0, 100_000, 1.0),
        );
        b.add("node_filefd_maximum", &[], Gen::Constant(9.2e18));
        for sensor in 1..=4 {
            b.add(
                "node_hwmon_temp_celsius",
                &[
                    ("chip", "platform_coretemp_0"),
                    ("sensor", &format!("temp{sensor}")),
                ],
                Builder::walk(rng.between(70, 150) as i64, 1, 50, 190, 0.5),
            );
        }
        for unit in ["ssh.service", "cron.service", "dcmon-exporter.service"] {
            for state in ["active", "failed", "inactive"] {
                b.add(
                    "node_systemd_unit_state",
                    &[("name", unit), ("state", state), ("type", "simple")],
                    Gen::Constant(if state == "active" { 1.0 } else { 0.0 }),
                );
            }
        }
        // A oneshot unit that goes away two thirds of the way through.
        b.add(
            "node_systemd_unit_state",
            &[
                ("name", "backup.service"),
                ("state", "activating"),
                ("type", "oneshot"),
            ],
            Gen::Vanishing {
                value: 1.0,
                until: spec.ticks * 2 / 3,
            },
        );
        for gpu in 0..spec.gpus {
            let uuid = if h == 1 && gpu == 0 {
                ZERO_UUID.to_owned()
            } else {
                format!("00000000-0000-0000-0000-{h:06}{gpu:06}")
            };
            let index = gpu.to_string();
            let l = [("uuid", uuid.as_str())];
            b.add(
                "nvidia_smi_gpu_info",
                &[
                    ("uuid", &uuid),
                    ("index", &index),
                    ("name", "NVIDIA H100 80GB HBM3"),
                    ("driver_version", "550.127.05"),
                ],
                Gen::Constant(1.0),
            );
            b.add("nvidia_smi_index", &l, Gen::Constant(gpu as f64));
            for name in [
                "nvidia_smi_utilization_gpu_ratio",
                "nvidia_smi_utilization_memory_ratio",
            ] {
                let start = rng.between(0, 100) as i64;
                b.add(name, &l, Builder::walk(start, 15, 0, 100, 0.01));
            }
            let start = rng.between(0, 100) as i64;
            b.add(
                "nvidia_smi_fan_speed_ratio",
                &l,
                Gen::Flaky(Box::new(Builder::walk(start, 15, 0, 100, 0.01))),
            );
            let total = 85_899_345_920.0;
            b.add("nvidia_smi_memory_total_bytes", &l, Gen::Constant(total));
            b.add(
                "nvidia_smi_memory_used_bytes",
                &l,
                Builder::walk(rng.between(0, 80_000) as i64, 2_000, 0, 81_920, 1_048_576.0),
            );
            b.add(
                "nvidia_smi_temperature_gpu",
                &l,
                Builder::walk(rng.between(35, 75) as i64, 2, 25, 95, 1.0),
            );
            b.add(
                "nvidia_smi_power_draw_watts",
                &l,
                Builder::walk(
                    rng.between(6_000, 60_000) as i64,
                    1_500,
                    5_000,
                    70_000,
                    0.01,
                ),
            );
            b.add(
                "nvidia_smi_enforced_power_limit_watts",
                &l,
                Gen::Constant(700.0),
            );
            b.add("nvidia_smi_pstate", &l, Gen::Constant(0.0));
            for (kind, max) in [("graphics", 1980.0e6), ("memory", 2619.0e6)] {
                b.add(
                    &format!("nvidia_smi_clocks_current_{kind}_clock_hz"),
                    &l,
                    Builder::walk(rng.between(500, 1500) as i64, 100, 200, 1980, 1.0e6),
                );
                b.add(
                    &format!("nvidia_smi_clocks_max_{kind}_clock_hz"),
                    &l,
                    Gen::Constant(max),
                );
            }
            for reason in ["sw_power_cap", "sw_thermal_slowdown", "hw_thermal_slowdown"] {
                b.add(
                    &format!("nvidia_smi_clocks_event_reasons_{reason}"),
                    &l,
                    Builder::walk(0, 1, 0, 1, 1.0),
                );
            }
            let generator = Builder::counter(&mut rng, 60_000, 2_100_000);
            b.add("nvidia_smi_energy_joules_total", &l, generator);
        }
        b.histogram(
            "dcmon_receiver_request_duration_seconds",
            &[("handler", "/api/v1/write")],
            20,
        );
        // The last host reboots half way through: counters restart.
        let reboot_tick = (h == spec.hosts && spec.ticks > 10).then_some(spec.ticks / 2);
        Target::finish(b, rng, reboot_tick, spec.start_ms)
    }

    /// Demo-service instance `i` (0-based): the PromLabs demo series the
    /// compliance queries read.
    pub fn demo(spec: &Spec, i: usize) -> Target {
        let mut rng = Rng::new(spec.seed ^ 0xdead_beef ^ (i as u64 * 7919));
        let instance = format!("demo.promlabs.com:{}", 10000 + i);
        let mut b = Builder::new(&[("instance", &instance), ("job", "demo")]);
        for (kind, base) in [
            ("used", 4_000_000),
            ("cached", 2_000_000),
            ("buffers", 500_000),
            ("free", 9_000_000),
        ] {
            b.add(
                "demo_memory_usage_bytes",
                &[("type", kind)],
                Builder::walk(base, base / 50, 0, base * 2, 1024.0),
            );
        }
        b.add("demo_num_cpus", &[], Gen::Constant(4.0));
        for (mode, lo, hi) in [("idle", 1000, 4000), ("system", 0, 1500), ("user", 0, 2500)] {
            let generator = Builder::counter(&mut rng, lo, hi);
            b.add("demo_cpu_usage_seconds_total", &[("mode", mode)], generator);
        }
        let total = 160e9;
        b.add("demo_disk_total_bytes", &[], Gen::Constant(total));
        b.add(
            "demo_disk_usage_bytes",
            &[],
            Builder::walk(
                rng.between(16_000, 144_000) as i64,
                300,
                16_000,
                144_000,
                1e6,
            ),
        );
        b.add(
            "demo_batch_last_success_timestamp_seconds",
            &[],
            Gen::LastSuccess((spec.start_ms / 1000 - 60) as f64),
        );
        b.add(
            "demo_api_http_requests_in_progress",
            &[],
            Builder::walk(3, 2, 0, 20, 1.0),
        );
        b.add("demo_intermittent_metric", &[], Gen::Intermittent);
        for (method, path, status, load) in [
            ("GET", "/api/foo", "200", 30),
            ("POST", "/api/foo", "200", 10),
            ("GET", "/api/bar", "500", 2),
        ] {
            b.histogram(
                "demo_api_request_duration_seconds",
                &[("method", method), ("path", path), ("status", status)],
                load,
            );
        }
        // One instance restarts: its CPU counters fall back.
        let reboot_tick = (i == 1 && spec.ticks > 10).then_some(spec.ticks / 3);
        Target::finish(b, rng, reboot_tick, spec.start_ms)
    }

    /// Every target of the fleet.
    pub fn all(spec: &Spec) -> Vec<Target> {
        (1..=spec.hosts)
            .map(|h| Target::host(spec, h))
            .chain((0..spec.demo_instances).map(|i| Target::demo(spec, i)))
            .collect()
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.labels.len()
    }

    /// Label sets of the series.
    pub fn labels(&self) -> &[LabelPairs] {
        &self.labels
    }

    /// Scrapes tick `tick`: appends one sample (or none, for absent
    /// series) per series to `out`, index-aligned with [`Target::labels`].
    pub fn scrape(&mut self, spec: &Spec, tick: usize, out: &mut [Vec<(i64, f64)>]) {
        let jitter = self.rng.below(81) as i64 - 40;
        let ts = spec.start_ms + tick as i64 * spec.interval_ms + self.offset_ms + jitter;
        let rebooting = self.reboot_tick == Some(tick);
        if rebooting {
            self.boot_time_s = (ts / 1000 - 20) as f64;
        }
        for hist in &mut self.hists {
            if rebooting {
                hist.counts.iter_mut().for_each(|c| *c = 0);
                hist.sum = 0.0;
            }
            hist.observe(&mut self.rng);
        }
        let stale = f64::from_bits(STALE_NAN);
        for (i, generator) in self.gens.iter_mut().enumerate() {
            let value = match generator {
                Gen::Counter { value, lo, hi } => {
                    if rebooting {
                        *value = self.rng.between(0, 2000);
                    }
                    *value += self.rng.between(*lo, *hi);
                    Some(*value as f64 / 100.0)
                }
                Gen::Walk {
                    units,
                    step,
                    min,
                    max,
                    scale,
                } => {
                    step_walk(&mut self.rng, units, *step, *min, *max);
                    Some(*units as f64 * *scale)
                }
                Gen::Constant(v) => Some(*v),
                Gen::Flaky(inner) => {
                    let nan = self.rng.percent(10);
                    let value = match inner.as_mut() {
                        Gen::Walk {
                            units,
                            step,
                            min,
                            max,
                            scale,
                        } => {
                            step_walk(&mut self.rng, units, *step, *min, *max);
                            *units as f64 * *scale
                        }
                        _ => unreachable!("only walks are flaky"),
                    };
                    Some(if nan { f64::NAN } else { value })
                }
                Gen::Clock => Some(ts as f64 / 1000.0),
                Gen::BootTime => Some(self.boot_time_s),
                Gen::LastSuccess(last) => {
                    if tick.is_multiple_of(4) && !self.rng.percent(25) {
                        *last = (ts / 1000) as f64;
                    }
                    Some(*last)
                }
                Gen::Intermittent => {
                    let minute = (ts / 60_000) % 2;
                    let prev_minute = ((ts - spec.interval_ms) / 60_000) % 2;
                    if minute == 0 {
                        Some(1.0)
                    } else if prev_minute == 0 && tick > 0 {
                        Some(stale)
                    } else {
                        None
                    }
                }
                Gen::Vanishing { value, until } => {
                    if tick < *until {
                        Some(*value)
                    } else if tick == *until {
                        Some(stale)
                    } else {
                        None
                    }
                }
                Gen::Bucket { hist, index } => Some(self.hists[*hist].counts[*index] as f64),
                Gen::HistCount(hist) => Some(*self.hists[*hist].counts.last().unwrap() as f64),
                Gen::HistSum(hist) => Some(self.hists[*hist].sum),
            };
            if let Some(v) = value {
                out[i].push((ts, v));
            }
        }
    }
}

/// One step of a random walk: moves seven times in ten.
fn step_walk(rng: &mut Rng, units: &mut i64, step: i64, min: i64, max: i64) {
    if rng.percent(70) {
        let delta = rng.below(2 * step as u64 + 1) as i64 - step;
        *units = (*units + delta).clamp(min, max);
    }
}

/// Remote-write series for `ticks` consecutive scrapes of `targets`,
/// starting at `first_tick`; series without samples are left out.
pub fn batch(
    spec: &Spec,
    targets: &mut [Target],
    first_tick: usize,
    ticks: usize,
) -> Vec<SeriesSamples> {
    let mut out = Vec::new();
    for target in targets.iter_mut() {
        let mut samples: Vec<Vec<(i64, f64)>> =
            vec![Vec::with_capacity(ticks); target.labels.len()];
        for tick in first_tick..(first_tick + ticks).min(spec.ticks) {
            target.scrape(spec, tick, &mut samples);
        }
        for (labels, samples) in target.labels.iter().zip(samples) {
            if !samples.is_empty() {
                out.push(SeriesSamples {
                    labels: labels.clone(),
                    samples,
                });
            }
        }
    }
    out
}
