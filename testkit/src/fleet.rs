//! A synthetic fleet: deterministic node_exporter-like, nvidia_smi-like and
//! PromLabs-demo-like series, produced scrape by scrape so any number of
//! hosts and hours can be streamed to a remote-write receiver.
//!
//! The one generator of synthetic fleet data for dcmon's tests and
//! benchmarks: the receiver's side-by-side test and its query, ingest and
//! soak benchmarks. Data only: no HTTP here.
//!
//! What the data exercises: counters with resets (a host reboots), gauges
//! as random walks with decimal values, classic histograms (`_bucket` with
//! `le`, `_sum`, `_count`), info-style constant series, and series that go
//! stale (a staleness marker, then silence, then back). Every scrape
//! timestamp is a tick plus a per-host offset plus jitter, never a whole
//! second, so no sample falls on the boundary of a window that starts or
//! ends at a whole second, where Prometheus 2.x and 3.x disagree.
//!
//! [`Options`] reshape a host for the benchmarks: tick-exact timestamps,
//! an exact number of series per host, no vanishing series, decimal values
//! as a text exposition gives them. Its defaults give the data the
//! side-by-side test was tuned with, sample for sample (a test pins it).

use dcmon_protocol::remote_write::SeriesSamples;

use crate::Rng;

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

    /// Timestamp of tick `tick`, before any per-host offset.
    pub fn tick_ms(&self, tick: usize) -> i64 {
        self.start_ms + tick as i64 * self.interval_ms
    }
}

/// Where in the interval a scrape's samples are stamped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stamps {
    /// The tick plus a per-host offset plus ±40 ms of jitter on every
    /// scrape: never on a whole second (see the module's description).
    #[default]
    Scrape,
    /// The tick plus a per-host offset, and on about one scrape in eight
    /// ±5 ms of jitter: as Prometheus, vmagent and Alloy stamp scrapes,
    /// which start on a fixed phase of the interval and mostly on time.
    Phased,
    /// Exactly on the tick, every host.
    Tick,
}

impl Stamps {
    /// A scrape's offset from its tick, from the host's `offset_ms` and a
    /// jitter draw of −40..=40 ms. Every shape takes the same draw, so a
    /// host's values are the same in all of them.
    fn offset_ms(self, offset_ms: i64, jitter: i64) -> i64 {
        match self {
            Stamps::Scrape => offset_ms + jitter,
            // 11 of the 81 draws are within ±5 ms.
            Stamps::Phased if jitter.abs() <= 5 => offset_ms + jitter,
            Stamps::Phased => offset_ms,
            Stamps::Tick => 0,
        }
    }
}

/// How a host deviates from the plain fleet host; the default deviates in
/// nothing.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Timestamp shape.
    pub stamps: Stamps,
    /// Exactly this many series per host: beyond the plain host's, more of
    /// the kinds a large host has in the mix of a real one (a fifth CPU
    /// counters, 15% byte counters in whole disk blocks, 35% gauges and
    /// stepping frequencies, 30% constant unit states); below it, the plain
    /// host's first ones. `None`: as [`Spec::cpus`] and [`Spec::gpus`]
    /// make it.
    pub series_per_host: Option<usize>,
    /// Whether a host has the series that goes away two thirds of the way
    /// through. Without it every series has a sample at every tick, so the
    /// samples sent are series × ticks.
    pub vanishing: bool,
    /// Whether decimal gauges take the double nearest their decimal (as
    /// parsed from a text exposition: `units / 100`) rather than
    /// `units × 0.01`, which is a bit off for most.
    pub exact_decimals: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            stamps: Stamps::Scrape,
            series_per_host: None,
            vanishing: true,
            exact_decimals: false,
        }
    }
}

/// How one series produces its next value.
#[derive(Debug, Clone)]
enum Gen {
    /// Counter in hundredths, growing by `lo..=hi` per scrape; falls back to
    /// a small value at the host's reboot tick.
    Counter { value: u64, lo: u64, hi: u64 },
    /// Random walk.
    Walk(Walk),
    /// A constant.
    Constant(f64),
    /// Integer byte counter with irregular increments around `rate` (none
    /// one scrape in twenty, a burst one in fifty), in whole `block`s.
    Bytes { value: u64, rate: u64, block: u64 },
    /// One of `levels`, changing to another one scrape in twenty (a CPU
    /// frequency governor).
    Step { levels: &'static [f64], at: usize },
    /// A random walk that reads NaN one scrape in ten (a tool answering
    /// "N/A", as nvidia-smi does for the fan of a passively cooled GPU).
    Flaky(Walk),
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

/// Random walk over integer units in `min..=max`, value = units × scale.
#[derive(Debug, Clone)]
struct Walk {
    units: i64,
    step: i64,
    min: i64,
    max: i64,
    scale: f64,
    /// Percent of scrapes it moves at.
    moves: u64,
}

impl Walk {
    /// One step (at `moves` percent of scrapes), then the value: `units ×
    /// scale`, or with `exact_decimals` and a scale of 0.1, 0.01, ... the
    /// double nearest the decimal (`units / 100`).
    fn next(&mut self, rng: &mut Rng, exact_decimals: bool) -> f64 {
        if rng.percent(self.moves) {
            let delta = rng.below(2 * self.step as u64 + 1) as i64 - self.step;
            self.units = (self.units + delta).clamp(self.min, self.max);
        }
        let divisor = (1.0 / self.scale).round();
        if exact_decimals && self.scale < 1.0 && divisor != 1.0 {
            self.units as f64 / divisor
        } else {
            self.units as f64 * self.scale
        }
    }
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

/// `node_cpu_seconds_total`'s modes with their growth per scrape, in
/// hundredths of a second.
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

/// Per-NUMA-node memory gauges of a host filled up to its series count.
const NUMA_MEMORY: [&str; 8] = [
    "node_memory_numa_MemFree",
    "node_memory_numa_MemUsed",
    "node_memory_numa_Active",
    "node_memory_numa_Inactive",
    "node_memory_numa_FilePages",
    "node_memory_numa_AnonPages",
    "node_memory_numa_Dirty",
    "node_memory_numa_Slab",
];

/// The states `node_systemd_unit_state` reports for every unit.
const UNIT_STATES: [&str; 5] = ["activating", "active", "deactivating", "failed", "inactive"];

/// Frequencies a CPU's governor steps between.
const CPU_HERTZ: [f64; 4] = [1.2e9, 2.0e9, 2.6e9, 3.4e9];

/// Which kind of series each of 20 consecutive filler series is: 4 CPU
/// counters, 3 byte counters, 4 temperatures, 2 memory gauges, 1 stepping
/// frequency, 6 constants.
const FILLER: [Filler; 20] = {
    use Filler::*;
    [
        Cpu, Cpu, Cpu, Cpu, Bytes, Bytes, Bytes, Temp, Temp, Temp, Temp, Memory, Memory, Hertz,
        Unit, Unit, Unit, Unit, Unit, Unit,
    ]
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filler {
    Cpu,
    Bytes,
    Temp,
    Memory,
    Hertz,
    Unit,
}

type LabelPairs = Vec<(String, String)>;

/// One scraped target: its series and their generators.
#[derive(Debug)]
pub struct Target {
    rng: Rng,
    stamps: Stamps,
    exact_decimals: bool,
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

    /// A walk that moves seven scrapes in ten.
    fn walk(units: i64, step: i64, min: i64, max: i64, scale: f64) -> Gen {
        Gen::Walk(Walk {
            units,
            step,
            min,
            max,
            scale,
            moves: 70,
        })
    }

    fn counter(rng: &mut Rng, lo: u64, hi: u64) -> Gen {
        Gen::Counter {
            value: rng.between(100_000, 50_000_000),
            lo,
            hi,
        }
    }

    /// Adds series of the filler kinds until there are `count`.
    fn fill(&mut self, rng: &mut Rng, spec: &Spec, count: usize) {
        // Per kind, how many of it were added so far.
        let mut added = [0usize; 6];
        while self.labels.len() < count {
            let kind = FILLER[added.iter().sum::<usize>() % FILLER.len()];
            let n = added[kind as usize];
            added[kind as usize] += 1;
            match kind {
                Filler::Cpu => {
                    let (mode, lo, hi) = CPU_MODES[n % CPU_MODES.len()];
                    let cpu = (spec.cpus + n / CPU_MODES.len()).to_string();
                    let generator = Builder::counter(rng, lo, hi);
                    self.add(
                        "node_cpu_seconds_total",
                        &[("cpu", &cpu), ("mode", mode)],
                        generator,
                    );
                }
                Filler::Bytes => {
                    // Devices after the plain host's eth0, eth1 and nvme0n1.
                    let (name, device, block) = match n % 4 {
                        0 => (
                            "node_network_receive_bytes_total",
                            format!("eth{}", n / 4 + 2),
                            1,
                        ),
                        1 => (
                            "node_network_transmit_bytes_total",
                            format!("eth{}", n / 4 + 2),
                            1,
                        ),
                        2 => (
                            "node_disk_read_bytes_total",
                            format!("nvme{}n1", n / 4 + 1),
                            4096,
                        ),
                        _ => (
                            "node_disk_written_bytes_total",
                            format!("nvme{}n1", n / 4 + 1),
                            4096,
                        ),
                    };
                    let value = rng.below(1_000_000_000_000) / block * block;
                    let rate = 10u64.pow(rng.between(3, 8) as u32) * rng.between(1, 9);
                    self.add(
                        name,
                        &[("device", &device)],
                        Gen::Bytes { value, rate, block },
                    );
                }
                Filler::Temp => {
                    // Half degrees, chips after the plain host's one; a
                    // sensor's reading sits still for a few scrapes.
                    let walk = Walk {
                        units: rng.between(70, 150) as i64,
                        step: 1,
                        min: 50,
                        max: 190,
                        scale: 0.5,
                        moves: 40,
                    };
                    self.add(
                        "node_hwmon_temp_celsius",
                        &[
                            ("chip", &format!("platform_coretemp_{}", n / 16 + 1)),
                            ("sensor", &format!("temp{}", n % 16 + 1)),
                        ],
                        Gen::Walk(walk),
                    );
                }
                Filler::Memory => {
                    // 4 KiB pages, 256 MiB .. 512 GiB.
                    let pages = rng.between(1 << 16, 1 << 27) as i64;
                    self.add(
                        NUMA_MEMORY[n % NUMA_MEMORY.len()],
                        &[("node", &(n / NUMA_MEMORY.len()).to_string())],
                        Builder::walk(pages, 512, 1 << 16, 1 << 27, 4096.0),
                    );
                }
                Filler::Hertz => {
                    let at = rng.below(CPU_HERTZ.len() as u64) as usize;
                    self.add(
                        "node_cpu_scaling_frequency_hertz",
                        &[("cpu", &n.to_string())],
                        Gen::Step {
                            levels: &CPU_HERTZ,
                            at,
                        },
                    );
                }
                Filler::Unit => {
                    let state = UNIT_STATES[n % UNIT_STATES.len()];
                    self.add(
                        "node_systemd_unit_state",
                        &[
                            ("name", &format!("unit{}.service", n / UNIT_STATES.len())),
                            ("state", state),
                            ("type", "simple"),
                        ],
                        Gen::Constant(if state == "active" { 1.0 } else { 0.0 }),
                    );
                }
            }
        }
        // Fewer wanted than the plain host has: its first ones.
        self.labels.truncate(count);
        self.gens.truncate(count);
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
    fn finish(
        builder: Builder,
        mut rng: Rng,
        options: &Options,
        reboot_tick: Option<usize>,
        start_ms: i64,
    ) -> Target {
        // Whole seconds plus 100..900 ms: with ±40 ms of jitter a scrape
        // never lands on a whole second.
        let offset_ms = rng.between(0, 13) as i64 * 1000 + rng.between(100, 900) as i64;
        let boot_time_s = (start_ms / 1000 - rng.between(3_600, 3_000_000) as i64) as f64;
        Target {
            rng,
            stamps: options.stamps,
            exact_decimals: options.exact_decimals,
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
        Target::host_with(spec, &Options::default(), h)
    }

    /// Host `h` shaped by `options`.
    pub fn host_with(spec: &Spec, options: &Options, h: usize) -> Target {
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
        if options.vanishing {
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
        }
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
                Gen::Flaky(Walk {
                    units: start,
                    step: 15,
                    min: 0,
                    max: 100,
                    scale: 0.01,
                    moves: 70,
                }),
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
        if let Some(count) = options.series_per_host {
            b.fill(&mut rng, spec, count);
        }
        // The last host reboots half way through: counters restart.
        let reboot_tick = (h == spec.hosts && spec.ticks > 10).then_some(spec.ticks / 2);
        Target::finish(b, rng, options, reboot_tick, spec.start_ms)
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
        Target::finish(b, rng, &Options::default(), reboot_tick, spec.start_ms)
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

    /// The `instance` label of its series.
    pub fn instance(&self) -> &str {
        self.labels
            .first()
            .and_then(|l| l.iter().find(|(k, _)| k == "instance"))
            .map_or("", |(_, v)| v.as_str())
    }

    /// Latest a scrape of tick `tick` can be stamped.
    pub fn latest_ms(&self, spec: &Spec, tick: usize) -> i64 {
        spec.tick_ms(tick) + self.stamps.offset_ms(self.offset_ms, 40)
    }

    /// Scrapes tick `tick`: appends one sample (or none, for absent
    /// series) per series to `out`, index-aligned with [`Target::labels`].
    pub fn scrape(&mut self, spec: &Spec, tick: usize, out: &mut [Vec<(i64, f64)>]) {
        let jitter = self.rng.below(81) as i64 - 40;
        let ts = spec.tick_ms(tick) + self.stamps.offset_ms(self.offset_ms, jitter);
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
                Gen::Walk(walk) => Some(walk.next(&mut self.rng, self.exact_decimals)),
                Gen::Constant(v) => Some(*v),
                Gen::Bytes { value, rate, block } => {
                    if rebooting {
                        *value = 0;
                    }
                    let roll = self.rng.below(100);
                    let increment = if roll < 5 {
                        0
                    } else if roll < 7 {
                        *rate * self.rng.between(5, 20)
                    } else {
                        self.rng.below(*rate * 2 + 1)
                    };
                    *value += increment / *block * *block;
                    Some(*value as f64)
                }
                Gen::Step { levels, at } => {
                    if self.rng.percent(5) {
                        *at = self.rng.below(levels.len() as u64) as usize;
                    }
                    Some(levels[*at])
                }
                Gen::Flaky(walk) => {
                    let nan = self.rng.percent(10);
                    let value = walk.next(&mut self.rng, self.exact_decimals);
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use dcmon_protocol::remote_write::SeriesSamples;

    use super::{Options, Spec, Stamps, Target, batch};

    /// FNV-1a over every batch's labels, timestamps and value bits, and the
    /// number of samples.
    fn digest(spec: &Spec, targets: &mut [Target], per_write: usize) -> (u64, usize) {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut samples = 0;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for first in (0..spec.ticks).step_by(per_write) {
            for series in batch(spec, targets, first, per_write) {
                for (name, value) in &series.labels {
                    eat(name.as_bytes());
                    eat(&[0]);
                    eat(value.as_bytes());
                    eat(&[1]);
                }
                for (t, v) in &series.samples {
                    eat(&t.to_le_bytes());
                    eat(&v.to_bits().to_le_bytes());
                    samples += 1;
                }
            }
        }
        (hash, samples)
    }

    /// The side-by-side test's fleet at a fixed start.
    fn side_by_side() -> Spec {
        Spec {
            hosts: 3,
            cpus: 2,
            gpus: 2,
            demo_instances: 3,
            interval_ms: 15_000,
            start_ms: 1_780_000_020_000,
            ticks: 480,
            seed: 0x51de_b1de,
        }
    }

    /// The query benchmark's fleet (CPUs filling 300 series per host) at a
    /// fixed start, with fewer hosts and ticks.
    fn query_bench() -> Spec {
        let mut spec = Spec {
            hosts: 4,
            cpus: 0,
            gpus: 4,
            demo_instances: 0,
            interval_ms: 30_000,
            start_ms: 1_780_000_020_000,
            ticks: 200,
            seed: 0x7175_6572_7962_656e,
        };
        let fixed = Target::host(&spec, 1).series_count();
        spec.cpus = (300usize.saturating_sub(fixed) / 8).max(1);
        spec
    }

    /// The data the side-by-side test's known differences and the query
    /// benchmark's figures were taken on: the digests were computed with
    /// the generator before it had [`Options`], and its defaults must keep
    /// giving the same samples.
    #[test]
    fn default_options_give_the_data_the_tests_were_tuned_with() {
        let spec = side_by_side();
        assert_eq!(
            digest(&spec, &mut Target::all(&spec), 40),
            (6_553_051_028_965_715_989, 295_620)
        );
        let spec = query_bench();
        assert_eq!(
            digest(&spec, &mut Target::all(&spec), 40),
            (12_522_166_251_270_668_854, 234_136)
        );
    }

    fn bench_options(series: usize, stamps: Stamps) -> Options {
        Options {
            stamps,
            series_per_host: Some(series),
            vanishing: false,
            exact_decimals: true,
        }
    }

    #[test]
    fn a_host_has_exactly_the_series_asked_for_all_distinct() {
        let spec = Spec {
            hosts: 2,
            cpus: 0,
            gpus: 4,
            ..query_bench()
        };
        for count in [1, 17, 100, 300, 1_001] {
            let host = Target::host_with(&spec, &bench_options(count, Stamps::Scrape), 2);
            let distinct: HashSet<_> = host.labels().iter().collect();
            assert_eq!(distinct.len(), count, "{count} series asked for");
        }
    }

    /// Without the vanishing series every series has a sample at every
    /// tick, so what a bench sends is series × ticks.
    #[test]
    fn without_vanishing_series_every_series_has_every_tick() {
        let spec = Spec {
            hosts: 2,
            ..query_bench()
        };
        let mut targets: Vec<Target> = (1..=spec.hosts)
            .map(|h| Target::host_with(&spec, &bench_options(300, Stamps::Tick), h))
            .collect();
        let samples: usize = (0..spec.ticks)
            .step_by(7)
            .flat_map(|first| batch(&spec, &mut targets, first, 7))
            .map(|s| s.samples.len())
            .sum();
        assert_eq!(samples, spec.hosts * 300 * spec.ticks);
    }

    /// Every shape carries the same values. Tick-exact stamps sit on the
    /// ticks; scrape-shaped ones stay off whole seconds; phased ones sit
    /// on a fixed phase but for a few milliseconds on some scrapes.
    #[test]
    fn every_timestamp_shape_carries_the_same_values() {
        let spec = query_bench();
        let scrapes = |stamps| {
            let mut host = Target::host_with(&spec, &bench_options(300, stamps), 3);
            batch(&spec, std::slice::from_mut(&mut host), 0, spec.ticks)
        };
        let tick = scrapes(Stamps::Tick);
        let phased = scrapes(Stamps::Phased);
        let scrape = scrapes(Stamps::Scrape);
        let offsets = |series: &SeriesSamples| -> Vec<i64> {
            let times = series.samples.iter().map(|(ms, _)| ms);
            times
                .enumerate()
                .map(|(i, ms)| ms - spec.tick_ms(i))
                .collect()
        };
        // The phase: the offset most scrapes have.
        let first = offsets(&phased[0]);
        let count = |o: &i64| first.iter().filter(|x| *x == o).count();
        let phase = *first.iter().max_by_key(|o| count(o)).unwrap();
        for ((t, p), s) in tick.iter().zip(&phased).zip(&scrape) {
            assert_eq!(t.labels, s.labels);
            assert_eq!(t.labels, p.labels);
            assert!(offsets(t).iter().all(|o| *o == 0));
            assert!(
                offsets(s)
                    .iter()
                    .all(|o| (o - phase).abs() <= 40 && o % 1000 != 0)
            );
            let jittered = offsets(p).iter().filter(|o| **o != phase).count();
            assert!(offsets(p).iter().all(|o| (o - phase).abs() <= 5));
            assert!((1..spec.ticks / 4).contains(&jittered), "{jittered}");
            // The clock series reads the timestamp itself.
            if !t.labels.iter().any(|(_, v)| v == "node_time_seconds") {
                for ((a, b), c) in t.samples.iter().zip(&p.samples).zip(&s.samples) {
                    assert_eq!(a.1.to_bits(), b.1.to_bits(), "{:?}", t.labels);
                    assert_eq!(a.1.to_bits(), c.1.to_bits(), "{:?}", t.labels);
                }
            }
        }
    }

    /// With exact decimals a two-decimal gauge reads as its text would
    /// parse; without, `units × 0.01` is off for some.
    #[test]
    fn exact_decimals_read_as_their_text() {
        let spec = query_bench();
        let load1 = |options: &Options| -> Vec<f64> {
            let mut host = Target::host_with(&spec, options, 1);
            batch(&spec, std::slice::from_mut(&mut host), 0, spec.ticks)
                .into_iter()
                .find(|s| s.labels.iter().any(|(_, v)| v == "node_load1"))
                .expect("node_load1")
                .samples
                .iter()
                .map(|(_, v)| *v)
                .collect()
        };
        let exact = load1(&bench_options(300, Stamps::Scrape));
        assert!(
            exact
                .iter()
                .all(|v| format!("{v:.2}").parse::<f64>() == Ok(*v))
        );
        let plain = load1(&Options {
            series_per_host: Some(300),
            ..Options::default()
        });
        assert!(
            plain
                .iter()
                .any(|v| format!("{v:.2}").parse::<f64>() != Ok(*v))
        );
    }
}
