//! Ingest benchmark: the same deterministic fleet workload sent over
//! Prometheus Remote-Write 1.0 to dcmon-receiver, Prometheus and
//! VictoriaMetrics, one after the other.
//!
//! Run with `cargo bench -p dcmon-receiver --bench ingest`. It prints
//! figures (ingest rate, peak RSS, on-disk bytes per sample); it asserts
//! nothing about them.
//!
//! Knobs (environment): `BENCH_HOSTS` (100), `BENCH_SERIES` per host (300),
//! `BENCH_HOURS` of data ending now (24), `BENCH_SENDERS` threads (4),
//! `BENCH_ONLY` (comma list of `dcmon`, `prometheus`, `victoriametrics`),
//! `BENCH_SHAPE` (`tick`, `scrape` or `both`, the default: which
//! timestamp shapes to run, see below), `BENCH_BATCH` samples per series
//! per request (1; 20 is the shape of a sender catching up),
//! `BENCH_TLS=1` (dcmon twice: plain, then over TLS with a web config),
//! `BENCH_FORWARD=1` (after the plain dcmon run, dcmon forwarding to one
//! and to two upstreams, see below).
//!
//! Besides ingest rate, it reads each server's CPU time from
//! `/proc/<pid>/stat` and prints CPU microseconds per sample: while
//! sending, and in all (the settling after it, compaction or flushes,
//! included). That figure does not depend on how much of the machine the
//! sender threads take.
//!
//! With `BENCH_TLS=1` the same workload goes to a second dcmon-receiver
//! started with `--web.config.file` (a certificate from a CA made for the
//! run); the senders trust that CA and, like Prometheus's remote write,
//! keep their connections, so the figure is the cost of TLS records on a
//! steady stream rather than of handshakes. It prints samples/s of both
//! and the TLS/plain ratio.
//!
//! With `BENCH_FORWARD=1` two more dcmon runs follow the plain one in
//! each shape, with `--remote-write.forward.url`: "dcmon → 1 upstream"
//! (a VictoriaMetrics started by the bench) and "dcmon → 2 upstreams"
//! (that and a Prometheus with `--web.enable-remote-write-receiver`); a
//! run whose upstream is not installed is skipped with a note. Each
//! prints the ingest rate the senders saw and its ratio to the plain run;
//! the forwarding throughput, from the first write until the receiver's
//! `dcmon_receiver_forward_samples_total{result="sent"}` (read from its
//! `/metrics`) has reached the samples sent for every upstream (sent and
//! dropped together, when some are dropped), with any failed or dropped;
//! it includes the last batch's wait of up to
//! `--remote-write.forward.batch-send-deadline` (1 s), which dominates on
//! small workloads. Then the receiver's CPU per sample while sending, until
//! forwarded, and in all (forwarded and settled), and the extra over the
//! plain run; and how many samples each upstream holds by its own
//! account (VictoriaMetrics: `count_over_time` over the workload;
//! Prometheus: `prometheus_tsdb_head_samples_appended_total`). The
//! upstreams are processes of their own: their CPU is not in the
//! receiver's figures, though on a small machine they compete with it.
//!
//! The workload: the synthetic fleet of `dcmon_testkit::fleet` (the one
//! the side-by-side test and the query bench send), every host sending
//! one request per 30 s tick holding one sample of each of its series.
//! A host is node_exporter-like and nvidia_smi-like (4 CPUs, 4 GPUs, a
//! classic histogram: counters with two decimals, byte counters, gauges
//! with decimal values, constants, one host rebooting half way), filled
//! up to `BENCH_SERIES` with more CPU counters, byte counters in whole
//! blocks, temperatures, memory gauges, stepping CPU frequencies and unit
//! states; every series has a sample at every tick. Timestamps: with the
//! `tick` shape every host's samples sit exactly on the 30 s tick; with
//! the `scrape` shape (as Prometheus, vmagent and Alloy produce them) each
//! host has its own fixed offset within the interval and about one scrape
//! in eight a few milliseconds of jitter (`fleet::Stamps::Phased`).
//! Requests are built right before they are sent, so the sender's CPU use
//! is part of the picture on small machines.

mod support;

#[path = "support/forward.rs"]
mod forward;

use support::{env_parse, now_ms};

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::{compress, encode_v1};
use dcmon_testkit::fleet::{self, Options, Spec, Stamps};
use dcmon_testkit::web::TestCa;
use dcmon_testkit::{KillOnDrop, free_port};
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};

/// Seed of the workload generator; the same seed gives the same values.
const SEED: u64 = 0x6463_6d6f_6e2d_6265;
/// Scrape interval.
const INTERVAL_MS: i64 = 30_000;
/// How many ticks a sender thread may run ahead of the slowest one. Keeps
/// every system's "too old" window (Prometheus: head max time - 1h) clear.
const MAX_LEAD_TICKS: usize = 20;
/// Retries of one request before the run is abandoned.
const MAX_RETRIES: u32 = 30;
/// How long the dcmon head may take to drain after the send phase.
const DCMON_SETTLE_LIMIT: Duration = Duration::from_secs(300);
/// Settle time for Prometheus and VictoriaMetrics.
const PEER_SETTLE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // reqwest's TLS (built in with the exporter's) needs a rustls provider.
    dcmon_web::install_crypto_provider();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ingest bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Dcmon,
    Prometheus,
    VictoriaMetrics,
}

impl System {
    const ALL: [System; 3] = [System::Dcmon, System::Prometheus, System::VictoriaMetrics];

    fn key(self) -> &'static str {
        match self {
            System::Dcmon => "dcmon",
            System::Prometheus => "prometheus",
            System::VictoriaMetrics => "victoriametrics",
        }
    }

    fn label(self) -> &'static str {
        match self {
            System::Dcmon => "dcmon",
            System::Prometheus => "Prometheus",
            System::VictoriaMetrics => "VictoriaMetrics",
        }
    }

    /// The installed binary it runs as (dcmon is built with the bench).
    fn program(self) -> Option<&'static str> {
        match self {
            System::Dcmon => None,
            System::Prometheus => Some("prometheus"),
            System::VictoriaMetrics => Some("victoria-metrics"),
        }
    }

    /// Whether its binary can be found (dcmon's always can).
    fn installed(self) -> bool {
        self.program().is_none_or(|p| find_in_path(p).is_some())
    }
}

/// Where in the interval samples are stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Exactly on the tick, every host.
    Tick,
    /// A per-host offset within the interval, milliseconds of jitter.
    Scrape,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Shape::Tick => "tick-exact",
            Shape::Scrape => "scrape-shaped",
        }
    }

    fn stamps(self) -> Stamps {
        match self {
            Shape::Tick => Stamps::Tick,
            Shape::Scrape => Stamps::Phased,
        }
    }
}

#[derive(Debug)]
struct Config {
    hosts: usize,
    series: usize,
    senders: usize,
    ticks: usize,
    /// Samples per series per request.
    batch: usize,
    shapes: Vec<Shape>,
    /// Timestamp (ms) of the first tick, a multiple of the interval.
    first_tick_ms: i64,
    only: Vec<System>,
    /// Also run dcmon behind a TLS web config.
    tls: bool,
    /// Also run dcmon forwarding to one and to two upstreams.
    forward: bool,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let hosts = env_parse("BENCH_HOSTS", 100usize)?;
        let series = env_parse("BENCH_SERIES", 300usize)?;
        let hours = env_parse("BENCH_HOURS", 24f64)?;
        let senders = env_parse("BENCH_SENDERS", 4usize)?;
        let tls = env_parse("BENCH_TLS", 0u8)? != 0;
        let forward = env_parse("BENCH_FORWARD", 0u8)? != 0;
        let batch = env_parse("BENCH_BATCH", 1usize)?;
        if hosts == 0 || series == 0 || senders == 0 || batch == 0 || hours.is_nan() || hours <= 0.0
        {
            return Err(
                "BENCH_HOSTS, BENCH_SERIES, BENCH_SENDERS, BENCH_BATCH and BENCH_HOURS must be positive"
                    .into(),
            );
        }
        let shapes = match env_parse("BENCH_SHAPE", "both".to_owned())?.as_str() {
            "tick" => vec![Shape::Tick],
            "scrape" => vec![Shape::Scrape],
            "both" => vec![Shape::Tick, Shape::Scrape],
            other => {
                return Err(format!(
                    "BENCH_SHAPE: {other:?}, expected tick, scrape or both"
                ));
            }
        };
        let ticks = ((hours * 3600.0 * 1000.0 / INTERVAL_MS as f64).round() as usize).max(1);
        // The last tick plus the largest host offset and jitter stays at or
        // before now.
        let now = now_ms();
        let last_tick_ms = (now - INTERVAL_MS - 10).div_euclid(INTERVAL_MS) * INTERVAL_MS;
        let first_tick_ms = last_tick_ms - (ticks as i64 - 1) * INTERVAL_MS;
        let only = match std::env::var("BENCH_ONLY") {
            Ok(list) if !list.trim().is_empty() => {
                let mut only = Vec::new();
                for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let system = System::ALL
                        .into_iter()
                        .find(|s| s.key().eq_ignore_ascii_case(name))
                        .ok_or_else(|| {
                            format!(
                                "BENCH_ONLY: unknown system {name:?} \
                                 (expected dcmon, prometheus, victoriametrics)"
                            )
                        })?;
                    if !only.contains(&system) {
                        only.push(system);
                    }
                }
                only
            }
            _ => System::ALL.to_vec(),
        };
        if forward && !only.contains(&System::Dcmon) {
            return Err("BENCH_FORWARD=1 compares with the plain dcmon run: \
                        BENCH_ONLY must include dcmon"
                .into());
        }
        Ok(Config {
            hosts,
            series,
            senders: senders.min(hosts),
            ticks,
            batch,
            shapes,
            first_tick_ms,
            only,
            tls,
            forward,
        })
    }

    fn total_samples(&self) -> u64 {
        (self.hosts * self.series * self.ticks) as u64
    }
}

// ---------------------------------------------------------------------------
// Workload

impl Config {
    /// The fleet: hosts with a few CPUs and four GPUs, filled up to
    /// `series` series each.
    fn fleet(&self) -> Spec {
        Spec {
            hosts: self.hosts,
            cpus: 4,
            gpus: 4,
            demo_instances: 0,
            interval_ms: INTERVAL_MS,
            start_ms: self.first_tick_ms,
            ticks: self.ticks,
            seed: SEED,
        }
    }

    /// A host of the fleet in `shape`: exactly `series` series, each with a
    /// sample at every tick (so the samples sent are hosts × series ×
    /// ticks), decimal values as an exposition's text gives them.
    fn host(&self, spec: &Spec, shape: Shape, h: usize) -> fleet::Target {
        let options = Options {
            stamps: shape.stamps(),
            series_per_host: Some(self.series),
            vanishing: false,
            exact_decimals: true,
        };
        fleet::Target::host_with(spec, &options, h)
    }
}

/// The compressed Remote-Write 1.0 body of `host`'s next `ticks` scrapes
/// from `first_tick`.
fn request(spec: &Spec, host: &mut fleet::Target, first_tick: usize, ticks: usize) -> Vec<u8> {
    let series = fleet::batch(spec, std::slice::from_mut(host), first_tick, ticks);
    compress(&encode_v1(&series))
}

// ---------------------------------------------------------------------------
// Sending

#[derive(Debug)]
struct Target {
    url: String,
    token: Option<String>,
    /// The CA an `https://` URL's certificate comes from.
    ca: Option<reqwest::Certificate>,
}

#[derive(Debug, Default)]
struct SendTotals {
    requests: u64,
    retries: u64,
    /// Sender CPU spent generating, encoding and compressing (all threads).
    build: Duration,
}

/// Sends the whole workload with `config.senders` threads; returns the wall
/// time of the send phase.
fn send_phase(
    config: &Config,
    shape: Shape,
    target: &Target,
) -> Result<(Duration, SendTotals), String> {
    let progress: Vec<AtomicUsize> = (0..config.senders).map(|_| AtomicUsize::new(0)).collect();
    let abort = AtomicBool::new(false);
    let start = Instant::now();
    let results: Vec<Result<SendTotals, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..config.senders)
            .map(|me| {
                let progress = &progress;
                let abort = &abort;
                scope.spawn(move || {
                    let result = sender(config, shape, target, me, progress, abort);
                    progress[me].store(usize::MAX, Ordering::Release);
                    if result.is_err() {
                        abort.store(true, Ordering::Release);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("sender thread panicked".into()))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut totals = SendTotals::default();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(t) => {
                totals.requests += t.requests;
                totals.retries += t.retries;
                totals.build += t.build;
            }
            Err(e) if first_error.is_none() && e != ABORTED => first_error = Some(e),
            Err(_) => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if abort.load(Ordering::Acquire) => Err(ABORTED.into()),
        None => Ok((elapsed, totals)),
    }
}

const ABORTED: &str = "aborted";

fn sender(
    config: &Config,
    shape: Shape,
    target: &Target,
    me: usize,
    progress: &[AtomicUsize],
    abort: &AtomicBool,
) -> Result<SendTotals, String> {
    let mut builder = Client::builder()
        .timeout(Duration::from_secs(120))
        .tcp_nodelay(true);
    if let Some(ca) = &target.ca {
        builder = builder.tls_certs_only([ca.clone()]);
    }
    let client = builder.build().map_err(|e| format!("http client: {e}"))?;
    let spec = config.fleet();
    let mut hosts: Vec<fleet::Target> = (1..=config.hosts)
        .skip(me)
        .step_by(config.senders)
        .map(|h| config.host(&spec, shape, h))
        .collect();
    let mut totals = SendTotals::default();
    for tick in (0..config.ticks).step_by(config.batch) {
        let ticks = config.batch.min(config.ticks - tick);
        // Stay within MAX_LEAD_TICKS of the slowest sender.
        loop {
            if abort.load(Ordering::Acquire) {
                return Err(ABORTED.into());
            }
            let slowest = progress
                .iter()
                .map(|p| p.load(Ordering::Acquire))
                .min()
                .unwrap_or(usize::MAX);
            if tick <= slowest.saturating_add(MAX_LEAD_TICKS) {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        for host in &mut hosts {
            let built = Instant::now();
            let body = request(&spec, host, tick, ticks);
            totals.build += built.elapsed();
            post(&client, target, &body, &mut totals.retries)?;
            totals.requests += 1;
        }
        progress[me].store(tick + ticks, Ordering::Release);
    }
    Ok(totals)
}

/// POSTs one body, retrying on 5xx, 429 and connection errors.
fn post(client: &Client, target: &Target, body: &[u8], retries: &mut u64) -> Result<(), String> {
    let mut attempt = 0u32;
    loop {
        let mut request = client
            .post(&target.url)
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_ENCODING, "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.to_vec());
        if let Some(token) = &target.token {
            request = request.bearer_auth(token);
        }
        let reason = match request.send() {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    // Drain the (normally empty) body so the connection is reused.
                    let _ = response.bytes();
                    return Ok(());
                }
                let text = response.text().unwrap_or_default();
                if !(status.is_server_error() || status.as_u16() == 429) {
                    return Err(format!(
                        "POST {} answered {status}: {}",
                        target.url,
                        text.trim()
                    ));
                }
                format!("{status}: {}", text.trim())
            }
            Err(e) => format!("{e}"),
        };
        attempt += 1;
        *retries += 1;
        if attempt > MAX_RETRIES {
            return Err(format!(
                "POST {} still failing after {MAX_RETRIES} retries: {reason}",
                target.url
            ));
        }
        std::thread::sleep(Duration::from_millis((20u64 << attempt.min(6)).min(1000)));
    }
}

// ---------------------------------------------------------------------------
// Servers

/// A server process with its own temporary directory; killed on drop.
#[derive(Debug)]
struct Server {
    child: KillOnDrop,
    /// Everything the server stores, nothing else (logs live beside it).
    data: PathBuf,
    log: PathBuf,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `program` in a fresh directory after writing `files` (name,
    /// content) into it. In `args`, `{DIR}` is that directory, `{DATA}` the
    /// data directory in it and `{ADDR}` a free loopback address; `scheme`
    /// is what the program serves there.
    fn spawn(
        program: &str,
        args: &[String],
        system: System,
        files: &[(&str, &str)],
        scheme: &str,
    ) -> Result<Server, String> {
        // BENCH_KEEP=1 leaves the data directories behind for inspection.
        let dir = tempfile::Builder::new()
            .prefix(&format!("dcmon-ingest-bench-{}-", system.key()))
            .disable_cleanup(std::env::var_os("BENCH_KEEP").is_some())
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, content).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let log = dir.path().join("server.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{DATA}", &data.display().to_string())
                    .replace("{ADDR}", &addr)
                    .replace("{DIR}", &dir.path().display().to_string())
            })
            .collect();
        let child = KillOnDrop(
            Command::new(program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(log_file)
                .stderr(log_err)
                .spawn()
                .map_err(|e| format!("cannot start {program}: {e}"))?,
        );
        Ok(Server {
            child,
            data,
            log,
            base: format!("{scheme}://{addr}"),
            _dir: dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn addr(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, addr)| addr)
    }

    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!(
                "server exited ({status}); log tail:\n{}",
                self.log_tail()
            )),
            _ => Ok(()),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `path` answers 200 (or, with `None`, the port accepts).
    fn wait_ready(&mut self, path: Option<&str>, client: &Client) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.check_alive()?;
            let ready = match path {
                None => TcpStream::connect(self.addr()).is_ok(),
                Some(path) => client
                    .get(self.url(path))
                    .send()
                    .map(|r| r.status().is_success())
                    .unwrap_or(false),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "server at {} not ready after 120 s; log tail:\n{}",
                    self.base,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU time (user and system) the server has used so far.
    fn cpu_time(&self) -> Duration {
        support::cpu_time(self.child.id())
    }

    /// Peak resident set (`VmHWM`) in bytes.
    fn peak_rss(&self) -> u64 {
        support::peak_rss_bytes(self.child.id()).unwrap_or(0)
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Total length of all files under `path`.
fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------
// Runs

#[derive(Debug)]
struct Outcome {
    system: System,
    /// Sent over TLS.
    tls: bool,
    /// What dcmon forwarded, in a forwarding run.
    forwarded: Option<forward::Forwarded>,
    samples: u64,
    send: Duration,
    /// Server CPU time while the workload was sent.
    cpu_send: Duration,
    /// Server CPU time until it had settled (compaction, flushes).
    cpu_total: Duration,
    peak_rss: u64,
    disk_bytes: u64,
    retries: u64,
}

impl Outcome {
    fn label(&self) -> String {
        let upstreams = self.forwarded.as_ref().map_or(0, |f| f.upstreams.len());
        run_label(self.system, self.tls, upstreams)
    }

    /// Neither over TLS nor forwarding: dcmon's plain run.
    fn is_plain(&self) -> bool {
        !self.tls && self.forwarded.is_none()
    }

    fn rate(&self) -> f64 {
        self.samples as f64 / self.send.as_secs_f64()
    }

    fn bytes_per_sample(&self) -> f64 {
        self.disk_bytes as f64 / self.samples as f64
    }

    /// Server CPU microseconds per sample: while sending, and in all.
    fn cpu_per_sample(&self) -> (f64, f64) {
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / self.samples as f64;
        (per(self.cpu_send), per(self.cpu_total))
    }
}

/// A CA made for the run and a receiver certificate from it, for
/// `BENCH_TLS=1`.
#[derive(Debug)]
struct TlsSetup {
    ca: reqwest::Certificate,
    cert_pem: String,
    key_pem: String,
}

impl TlsSetup {
    fn new() -> Result<TlsSetup, String> {
        let ca = TestCa::new("dcmon ingest bench CA");
        let issued = ca.issue("receiver");
        Ok(TlsSetup {
            ca: reqwest::Certificate::from_pem(ca.pem().as_bytes())
                .map_err(|e| format!("CA certificate: {e}"))?,
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        })
    }
}

/// The web config `tls` starts dcmon-receiver with (paths relative to it).
const WEB_CONFIG: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

/// Runs `system`; dcmon behind a TLS web config when `tls` is given.
fn run_system(
    config: &Config,
    shape: Shape,
    system: System,
    tls: Option<&TlsSetup>,
    control: &Client,
) -> Result<Outcome, String> {
    let started = start_system(system, tls, &[], control)?;
    measure(config, shape, started, &mut [], control)
}

/// Runs dcmon forwarding to `upstreams`, each started for the run.
fn run_forward(
    config: &Config,
    shape: Shape,
    upstreams: &[System],
    control: &Client,
) -> Result<Outcome, String> {
    let mut started = Vec::new();
    for &system in upstreams {
        let upstream = start_system(system, None, &forward::upstream_args(system), control)?;
        started.push(forward::Upstream {
            system,
            write_url: upstream.target.url,
            server: upstream.server,
        });
    }
    let flags: Vec<String> = started
        .iter()
        .map(|u| format!("--remote-write.forward.url={}", u.write_url))
        .collect();
    let receiver = start_system(System::Dcmon, None, &flags, control)?;
    measure(config, shape, receiver, &mut started, control)
}

/// A server started for a run, and how to write to it.
#[derive(Debug)]
struct Started {
    system: System,
    server: Server,
    target: Target,
}

/// Starts `system` with `extra` flags (dcmon behind a TLS web config when
/// `tls` is given) and waits until it is ready.
fn start_system(
    system: System,
    tls: Option<&TlsSetup>,
    extra: &[String],
    control: &Client,
) -> Result<Started, String> {
    let (program, mut args, ready_path, write_path): (String, Vec<String>, Option<&str>, &str) =
        match system {
            System::Dcmon => (
                env!("CARGO_BIN_EXE_dcmon-receiver").to_owned(),
                [
                    "--web.listen-address",
                    "{ADDR}",
                    "--storage.path",
                    "{DATA}/dcmon.db",
                    "--admin-token-file",
                    "{DATA}/token",
                    // The head-size trigger compacts during the run; the
                    // interval only finishes the tail after it.
                    "--storage.compaction-interval",
                    "10s",
                    "--storage.retention",
                    "30d",
                    "--log.level",
                    "warn",
                ]
                .map(String::from)
                .to_vec(),
                None,
                "/api/v1/write",
            ),
            System::Prometheus => {
                let program = find_in_path("prometheus").ok_or(NOT_INSTALLED)?;
                (
                    program.display().to_string(),
                    [
                        "--config.file={DIR}/prometheus.yml",
                        "--storage.tsdb.path={DATA}",
                        "--web.listen-address={ADDR}",
                        "--web.enable-remote-write-receiver",
                        "--storage.tsdb.retention.time=30d",
                    ]
                    .map(String::from)
                    .to_vec(),
                    Some("/-/ready"),
                    "/api/v1/write",
                )
            }
            System::VictoriaMetrics => {
                let program = find_in_path("victoria-metrics").ok_or(NOT_INSTALLED)?;
                (
                    program.display().to_string(),
                    [
                        "-storageDataPath={DATA}",
                        "-httpListenAddr={ADDR}",
                        "-retentionPeriod=30d",
                    ]
                    .map(String::from)
                    .to_vec(),
                    Some("/health"),
                    "/api/v1/write",
                )
            }
        };
    let mut files: Vec<(&str, &str)> = match system {
        System::Prometheus => vec![("prometheus.yml", "global:\n  scrape_interval: 1m\n")],
        _ => Vec::new(),
    };
    let scheme = match tls {
        Some(tls) => {
            files.extend([
                ("web.yml", WEB_CONFIG),
                ("server.crt", tls.cert_pem.as_str()),
                ("server.key", tls.key_pem.as_str()),
            ]);
            args.extend(["--web.config.file".to_owned(), "{DIR}/web.yml".to_owned()]);
            "https"
        }
        None => "http",
    };
    args.extend(extra.iter().cloned());
    let mut server = Server::spawn(&program, &args, system, &files, scheme)?;
    server.wait_ready(ready_path, control)?;
    let token = if system == System::Dcmon {
        let file = server.data.join("token");
        Some(
            std::fs::read_to_string(&file)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .trim()
                .to_owned(),
        )
    } else {
        None
    };
    let target = Target {
        url: server.url(write_path),
        token,
        ca: tls.map(|t| t.ca.clone()),
    };
    Ok(Started {
        system,
        server,
        target,
    })
}

const NOT_INSTALLED: &str = "not installed";

/// Mean time and count of remote-write requests inside dcmon-receiver,
/// from its request-duration histogram: how much of a sender's round trip
/// is the receiver's.
fn write_latency(control: &Client, server: &Server, token: &str) -> Option<(f64, f64)> {
    let text = control
        .get(server.url("/metrics"))
        .bearer_auth(token)
        .send()
        .ok()?
        .text()
        .ok()?;
    let field = |suffix: &str| -> Option<f64> {
        let prefix = format!(
            "dcmon_receiver_request_duration_seconds_{suffix}{{handler=\"/api/v1/write\"}} "
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))?
            .trim()
            .parse()
            .ok()
    };
    let (sum, count) = (field("sum")?, field("count")?);
    (count > 0.0).then(|| (sum / count, count))
}

/// How a run is named in progress lines and the table: by its system,
/// whether it was sent over TLS, and how many upstreams it forwarded to.
fn run_label(system: System, tls: bool, upstreams: usize) -> String {
    if upstreams > 0 {
        forward::run_label(upstreams)
    } else if tls {
        format!("{} (TLS)", system.label())
    } else {
        system.label().to_owned()
    }
}

/// Sends the workload to `started` and measures it until it has settled
/// (and, for dcmon forwarding to `upstreams`, until it has forwarded
/// everything).
fn measure(
    config: &Config,
    shape: Shape,
    started: Started,
    upstreams: &mut [forward::Upstream],
    control: &Client,
) -> Result<Outcome, String> {
    let Started {
        system,
        mut server,
        target,
    } = started;
    let tls = target.ca.is_some();
    let label = run_label(system, tls, upstreams.len());
    println!("{label}: sending ...");
    let first_write = Instant::now();
    let cpu_start = server.cpu_time();
    let (send, totals) = send_phase(config, shape, &target).map_err(|e| {
        let tail = server.log_tail();
        format!("{label}: {e}\nserver log tail:\n{tail}")
    })?;
    let rss_after_send = server.peak_rss();
    let cpu_send = server.cpu_time().saturating_sub(cpu_start);
    println!(
        "{}: sent {} requests in {:.1} s ({} retries; sender build+encode+compress {:.1} s CPU)",
        label,
        totals.requests,
        send.as_secs_f64(),
        totals.retries,
        totals.build.as_secs_f64()
    );
    let settle = Instant::now();
    let waited = if upstreams.is_empty() {
        None
    } else {
        let token = target.token.clone().unwrap_or_default();
        let waited = forward::wait_forwarded(
            &label,
            control,
            &mut server,
            &token,
            upstreams,
            config.total_samples(),
            first_write,
        )?;
        let cpu = server.cpu_time().saturating_sub(cpu_start);
        // The last upstream to be done; none when one never was.
        let done_after = waited
            .iter()
            .map(|progress| progress.done_after)
            .collect::<Option<Vec<Duration>>>()
            .and_then(|done| done.into_iter().max());
        if let Some(after) = done_after {
            println!(
                "{label}: every upstream had every sample {:.1} s after the first write, \
                 {:.1} s after the last",
                after.as_secs_f64(),
                after.saturating_sub(send).as_secs_f64()
            );
        }
        Some((waited, done_after, cpu))
    };
    match system {
        System::Dcmon => {
            let token = target.token.clone().unwrap_or_default();
            let deadline = Instant::now() + DCMON_SETTLE_LIMIT;
            // The head empties slice by slice during a compaction pass; the
            // log trim and file shrink end the pass. Wait for a pass that
            // finished after the head was seen empty.
            let mut compactions_when_empty: Option<u64> = None;
            let stats = loop {
                server.check_alive()?;
                let stats: serde_json::Value = control
                    .get(server.url("/api/dcmon/stats"))
                    .bearer_auth(&token)
                    .send()
                    .and_then(|r| r.error_for_status())
                    .and_then(|r| r.json())
                    .map_err(|e| format!("dcmon stats: {e}"))?;
                if stats["head_samples"].as_u64() == Some(0) {
                    let passes = stats["compactions"].as_u64().unwrap_or(0);
                    match compactions_when_empty {
                        Some(before) if passes > before => break stats,
                        Some(_) => {}
                        None => compactions_when_empty = Some(passes),
                    }
                }
                if Instant::now() > deadline {
                    println!(
                        "{label}: head not empty after {} s (head_samples {}); measuring anyway",
                        DCMON_SETTLE_LIMIT.as_secs(),
                        stats["head_samples"]
                    );
                    break stats;
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            let stored = stats["samples"].as_u64().unwrap_or(0);
            let compacted = stats["compacted_samples"].as_f64().unwrap_or(0.0);
            let compaction_s = stats["compaction_seconds"].as_f64().unwrap_or(0.0);
            println!(
                "{label}: compaction: {} passes, {compaction_s:.1} s for {compacted:.0} samples, \
                 {:.3} us per sample",
                stats["compactions"],
                compaction_s * 1e6 / compacted.max(1.0)
            );
            println!(
                "{label}: head drained after {:.1} s; stats: samples {stored}, db_bytes {}, \
                 bytes_per_sample {:.3}",
                settle.elapsed().as_secs_f64(),
                stats["db_bytes"],
                stats["bytes_per_sample"].as_f64().unwrap_or(f64::NAN)
            );
            if let Some((mean, count)) = write_latency(control, &server, &token) {
                println!(
                    "{label}: {count} writes took {:.2} ms each on average inside the receiver \
                     (from receiving the request to answering it)",
                    mean * 1e3
                );
            }
            if stored != config.total_samples() {
                println!(
                    "{label}: note: stored {stored} samples, sent {}",
                    config.total_samples()
                );
            }
        }
        System::Prometheus => std::thread::sleep(PEER_SETTLE),
        System::VictoriaMetrics => {
            if let Err(e) = control
                .get(server.url("/internal/force_flush"))
                .send()
                .and_then(|r| r.error_for_status())
            {
                println!("VictoriaMetrics: force_flush failed: {e}");
            }
            std::thread::sleep(PEER_SETTLE);
        }
    }
    server.check_alive()?;
    let cpu_total = server.cpu_time().saturating_sub(cpu_start);
    let peak_rss = rss_after_send.max(server.peak_rss());
    // With forwarding, this includes what is left of the queues (next to
    // the database).
    let disk_bytes = dir_bytes(&server.data);
    let forwarded = match waited {
        Some((waited, done_after, cpu)) => Some(forward::Forwarded {
            upstreams: forward::finish(
                control,
                &server,
                target.token.as_deref().unwrap_or_default(),
                upstreams,
                waited,
                config.first_tick_ms,
            )?,
            done_after,
            cpu,
        }),
        None => None,
    };
    drop(server);
    Ok(Outcome {
        system,
        tls,
        forwarded,
        samples: config.total_samples(),
        send,
        cpu_send,
        cpu_total,
        peak_rss,
        disk_bytes,
        retries: totals.retries,
    })
}

// ---------------------------------------------------------------------------
// Main

/// One run of a shape.
#[derive(Debug, Clone, Copy)]
enum Run<'a> {
    /// A system storing what it is sent; dcmon behind TLS when given.
    Local(System, Option<&'a TlsSetup>),
    /// dcmon storing what it is sent and forwarding it to these upstreams.
    Forward(&'static [System]),
}

fn run() -> Result<(), String> {
    let config = Config::from_env()?;
    // The generator must give every series of a host a distinct label set.
    let probe = config.host(&config.fleet(), Shape::Tick, 1);
    let distinct: HashSet<&Vec<(String, String)>> = probe.labels().iter().collect();
    if distinct.len() != config.series {
        return Err(format!(
            "generator produced {} distinct label sets for {} series",
            distinct.len(),
            config.series
        ));
    }
    drop(probe);

    let requests = config.hosts * config.ticks.div_ceil(config.batch);
    println!(
        "workload: {} hosts x {} series, {} ticks of {} s ({:.1} h, last tick at {} ms), {} samples, \
         {} requests of {} samples ({} per series), {} sender threads",
        config.hosts,
        config.series,
        config.ticks,
        INTERVAL_MS / 1000,
        config.ticks as f64 * INTERVAL_MS as f64 / 3_600_000.0,
        config.first_tick_ms + (config.ticks as i64 - 1) * INTERVAL_MS,
        config.total_samples(),
        requests,
        config.series * config.batch,
        config.batch,
        config.senders
    );

    let tls = if config.tls && config.only.contains(&System::Dcmon) {
        Some(TlsSetup::new()?)
    } else {
        None
    };
    let mut control = Client::builder().timeout(Duration::from_secs(30));
    if let Some(tls) = &tls {
        control = control.tls_certs_merge([tls.ca.clone()]);
    }
    let control = control.build().map_err(|e| format!("http client: {e}"))?;
    // dcmon plain, then (with BENCH_TLS=1) dcmon over TLS, then (with
    // BENCH_FORWARD=1) dcmon forwarding, then the peers.
    let mut runs: Vec<Run> = config
        .only
        .iter()
        .map(|&system| Run::Local(system, None))
        .collect();
    let mut after_dcmon = runs
        .iter()
        .position(|run| matches!(run, Run::Local(System::Dcmon, _)))
        .map_or(runs.len(), |at| at + 1);
    if let Some(tls) = &tls {
        runs.insert(after_dcmon, Run::Local(System::Dcmon, Some(tls)));
        after_dcmon += 1;
    }
    if config.forward {
        for (i, upstreams) in forward::UPSTREAM_SETS.into_iter().enumerate() {
            runs.insert(after_dcmon + i, Run::Forward(upstreams));
        }
    }
    let mut tables = Vec::new();
    for &shape in &config.shapes {
        println!("--- {} timestamps", shape.label());
        let mut outcomes = Vec::new();
        for &run in &runs {
            let outcome = match run {
                Run::Local(system, tls) => {
                    match run_system(&config, shape, system, tls, &control) {
                        Err(e) if e == NOT_INSTALLED => {
                            println!(
                                "{}: binary not installed, skipping (install with: \
                             apt-get install prometheus victoria-metrics)",
                                system.label()
                            );
                            continue;
                        }
                        outcome => outcome?,
                    }
                }
                Run::Forward(upstreams) => {
                    let missing: Vec<&str> = upstreams
                        .iter()
                        .filter(|s| !s.installed())
                        .filter_map(|s| s.program())
                        .collect();
                    if !missing.is_empty() {
                        println!(
                            "{}: upstream {} not installed, skipping (install with: \
                             apt-get install {})",
                            forward::run_label(upstreams.len()),
                            missing.join(" and "),
                            missing.join(" ")
                        );
                        continue;
                    }
                    run_forward(&config, shape, upstreams, &control)?
                }
            };
            outcomes.push(outcome);
        }
        tables.push((shape, outcomes));
    }
    for (shape, outcomes) in &tables {
        print_table(*shape, config.batch, outcomes);
    }
    Ok(())
}

/// The figures of one shape's runs, and dcmon's ratios to each peer.
fn print_table(shape: Shape, batch: usize, outcomes: &[Outcome]) {
    println!();
    println!(
        "{} timestamps, {batch} sample(s) per series per request:",
        shape.label()
    );
    println!(
        "{:<20} {:>12} {:>9} {:>12} {:>10} {:>10} {:>13} {:>14} {:>13} {:>8}",
        "system",
        "samples",
        "seconds",
        "samples/s",
        "cpu us/s",
        "cpu us/all",
        "peak RSS MiB",
        "disk bytes",
        "bytes/sample",
        "retries"
    );
    for o in outcomes {
        let (cpu_send, cpu_total) = o.cpu_per_sample();
        println!(
            "{:<20} {:>12} {:>9.2} {:>12.0} {:>10.3} {:>10.3} {:>13.1} {:>14} {:>13.3} {:>8}",
            o.label(),
            o.samples,
            o.send.as_secs_f64(),
            o.rate(),
            cpu_send,
            cpu_total,
            o.peak_rss as f64 / (1024.0 * 1024.0),
            o.disk_bytes,
            o.bytes_per_sample(),
            o.retries
        );
    }
    println!("(cpu us/s: server CPU microseconds per sample while sending; us/all: until settled)");
    let Some(dcmon) = outcomes
        .iter()
        .find(|o| o.system == System::Dcmon && o.is_plain())
    else {
        return;
    };
    if let Some(tls) = outcomes.iter().find(|o| o.tls) {
        println!(
            "dcmon TLS/plain: ingest rate {:.2}x, peak RSS {:.2}x",
            tls.rate() / dcmon.rate(),
            tls.peak_rss as f64 / dcmon.peak_rss as f64
        );
    }
    for peer in outcomes.iter().filter(|o| o.system != System::Dcmon) {
        let (ours, theirs) = (dcmon.cpu_per_sample(), peer.cpu_per_sample());
        println!(
            "dcmon/{}: ingest rate {:.2}x, cpu/sample {:.2}x sending, {:.2}x in all, \
             bytes/sample {:.2}x, peak RSS {:.2}x",
            peer.system.label(),
            dcmon.rate() / peer.rate(),
            ours.0 / theirs.0,
            ours.1 / theirs.1,
            dcmon.bytes_per_sample() / peer.bytes_per_sample(),
            dcmon.peak_rss as f64 / peer.peak_rss as f64
        );
    }
    print_forwarding(dcmon, outcomes);
}

/// The forwarding runs' figures against the plain dcmon run `plain`.
fn print_forwarding(plain: &Outcome, outcomes: &[Outcome]) {
    let runs: Vec<(&Outcome, &forward::Forwarded)> = outcomes
        .iter()
        .filter_map(|o| Some((o, o.forwarded.as_ref()?)))
        .collect();
    if runs.is_empty() {
        return;
    }
    println!();
    println!("forwarding, against the plain dcmon run (receiver CPU only):");
    println!(
        "{:<20} {:>12} {:>8} {:>10} {:>13} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "run",
        "ingest s/s",
        "x plain",
        "fwd secs",
        "fwd samples/s",
        "cpu us/s",
        "us/fwd",
        "us/all",
        "extra us/s",
        "extra /all"
    );
    let (plain_send, plain_all) = plain.cpu_per_sample();
    for (outcome, forwarded) in &runs {
        let (send, all) = outcome.cpu_per_sample();
        let until_forwarded = forwarded.cpu.as_secs_f64() * 1e6 / outcome.samples as f64;
        let (secs, rate) = match forwarded.done_after {
            Some(after) => (
                format!("{:.2}", after.as_secs_f64()),
                format!("{:.0}", outcome.samples as f64 / after.as_secs_f64()),
            ),
            None => ("not done".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<20} {:>12.0} {:>8.2} {:>10} {:>13} {:>9.3} {:>9.3} {:>9.3} {:>10.3} {:>10.3}",
            outcome.label(),
            outcome.rate(),
            outcome.rate() / plain.rate(),
            secs,
            rate,
            send,
            until_forwarded,
            all,
            send - plain_send,
            all - plain_all
        );
    }
    println!(
        "(fwd secs: from the first write until every upstream had been sent every sample; \
         us/fwd: receiver CPU per sample until then; us/all: until forwarded and settled; \
         extra: over the plain run)"
    );
    for (outcome, forwarded) in &runs {
        forward::print_upstreams(&outcome.label(), forwarded, outcome.samples);
    }
}
