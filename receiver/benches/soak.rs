//! Soak benchmark: a simulated fleet pushes to one dcmon-receiver for a
//! long time while compaction, a short retention and a dashboard's queries
//! run concurrently; then the same with the receiver killed (SIGKILL) and
//! restarted along the way.
//!
//! Run with `cargo bench -p dcmon-receiver --bench soak`. It prints the
//! receiver's resident set over time, whether every acknowledged sample
//! still in the retention window is there at the end, the write and query
//! status counts (5xx must be zero) and query latency percentiles. It
//! asserts nothing about the figures; it exits non-zero only when it could
//! not run.
//!
//! Knobs (environment): `SOAK_HOSTS` (200), `SOAK_SERIES` per host (300),
//! `SOAK_INTERVAL_S` push interval (15), `SOAK_MINUTES` per run (60),
//! `SOAK_RETENTION_M` (20), `SOAK_RUNS` (`steady,restarts`), `SOAK_RESTARTS`
//! kills in the restart run (2), `SOAK_SENDERS` threads (8).
//!
//! The hosts are the synthetic fleet's (`dcmon_testkit::fleet`, the one
//! the side-by-side test and the other benches send: node_exporter-like
//! and nvidia_smi-like, filled up to `SOAK_SERIES` series, every series
//! with a sample at every push). Each pushes one Remote-Write 1.0 request
//! per interval with one sample of each of its series at the tick plus a
//! per-host phase and, now and then, a few milliseconds of jitter, and
//! resends a request until it is acknowledged, as the exporter's spool
//! does. Every 30 s a dashboard refresh runs six range queries over the
//! last hour.

mod support;

use support::{env_parse, now_ms};

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::{compress, encode_v1};
use dcmon_testkit::fleet::{self, Options, Spec, Stamps};
use dcmon_testkit::{KillOnDrop, free_addr};
use reqwest::blocking::Client;

/// The dashboard: what a fleet overview refreshes every 30 s.
const DASHBOARD: &[(&str, &str)] = &[
    (
        "fleet counter rate",
        "sum by (instance)(rate(node_cpu_seconds_total[5m]))",
    ),
    ("fleet gauge max", "max by (instance)(node_load1)"),
    ("series per host", "count by (instance)({job=\"node\"})"),
    (
        "top 5 hosts",
        "topk(5, max by (instance)(node_hwmon_temp_celsius))",
    ),
    (
        "one host, CPU counters",
        "rate(node_cpu_seconds_total{job=\"node\", instance=\"host7:9100\"}[5m])",
    ),
    (
        "fleet quantile",
        "quantile(0.9, avg_over_time(nvidia_smi_temperature_gpu[5m]))",
    ),
];

fn main() -> ExitCode {
    // reqwest's TLS (built in with the exporter's) needs a rustls provider.
    dcmon_web::install_crypto_provider();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("soak bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone)]
struct Config {
    hosts: usize,
    series: usize,
    interval: Duration,
    duration: Duration,
    retention: Duration,
    restarts: usize,
    senders: usize,
    runs: Vec<String>,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let config = Config {
            hosts: env_parse("SOAK_HOSTS", 200usize)?,
            series: env_parse("SOAK_SERIES", 300usize)?,
            interval: Duration::from_secs(env_parse("SOAK_INTERVAL_S", 15u64)?),
            duration: Duration::from_secs_f64(env_parse("SOAK_MINUTES", 60f64)? * 60.0),
            retention: Duration::from_secs_f64(env_parse("SOAK_RETENTION_M", 20f64)? * 60.0),
            restarts: env_parse("SOAK_RESTARTS", 2usize)?,
            senders: env_parse("SOAK_SENDERS", 8usize)?,
            runs: env_parse("SOAK_RUNS", "steady,restarts".to_owned())?
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        if config.hosts == 0 || config.series < 8 || config.senders == 0 {
            return Err(
                "SOAK_HOSTS and SOAK_SENDERS must be positive, SOAK_SERIES at least 8".into(),
            );
        }
        if config.interval.is_zero() || config.retention < Duration::from_secs(180) {
            return Err("SOAK_INTERVAL_S must be positive and SOAK_RETENTION_M at least 3".into());
        }
        for run in &config.runs {
            if run != "steady" && run != "restarts" {
                return Err(format!("SOAK_RUNS: unknown run {run:?} (steady, restarts)"));
            }
        }
        Ok(config)
    }
}

fn run() -> Result<(), String> {
    let config = Config::from_env()?;
    println!(
        "soak: {} hosts x {} series every {:?} for {:.0} min per run, retention {:.0} min, runs {:?}",
        config.hosts,
        config.series,
        config.interval,
        config.duration.as_secs_f64() / 60.0,
        config.retention.as_secs_f64() / 60.0,
        config.runs
    );
    for name in config.runs.clone() {
        let restarts = if name == "restarts" {
            config.restarts
        } else {
            0
        };
        soak(&config, &name, restarts)?;
    }
    Ok(())
}

/// The receiver under test, restartable on the same database.
struct Receiver {
    child: KillOnDrop,
    dir: tempfile::TempDir,
    addr: String,
    token: String,
    pid: Arc<AtomicU32>,
    retention: Duration,
}

impl Receiver {
    fn start(retention: Duration) -> Result<Receiver, String> {
        let dir = tempfile::Builder::new()
            .prefix("dcmon-soak-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let addr = free_addr();
        let (child, token) = spawn(&dir, &addr, retention)?;
        let pid = Arc::new(AtomicU32::new(child.id()));
        Ok(Receiver {
            child,
            dir,
            addr,
            token,
            pid,
            retention,
        })
    }

    fn kill_and_restart(&mut self) -> Result<Duration, String> {
        // Killed, as a crash would: the old process is dropped here.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let started = Instant::now();
        let (child, _) = spawn(&self.dir, &self.addr, self.retention)?;
        self.pid.store(child.id(), Ordering::Relaxed);
        self.child = child;
        Ok(started.elapsed())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Starts the receiver on `dir`'s database and waits until `/health` answers.
fn spawn(
    dir: &tempfile::TempDir,
    addr: &str,
    retention: Duration,
) -> Result<(KillOnDrop, String), String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("receiver.log"))
        .map_err(|e| e.to_string())?;
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("dcmon.db").display()
            ))
            .arg(format!(
                "--admin-token-file={}",
                dir.path().join("admin-token").display()
            ))
            .arg(format!("--storage.retention={}s", retention.as_secs()))
            .arg("--storage.compaction-interval=1m")
            .arg("--storage.retention-interval=1m")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting the receiver: {e}"))?,
    );
    let token_file = dir.path().join("admin-token");
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("receiver exited at start: {status}"));
        }
        if let Ok(token) = std::fs::read_to_string(&token_file) {
            let token = token.trim().to_owned();
            let ok = client
                .get(format!("http://{addr}/health"))
                .bearer_auth(&token)
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok((child, token));
            }
        }
        if Instant::now() > deadline {
            return Err("receiver not ready after 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counts of what the senders and the dashboard saw.
#[derive(Debug, Default)]
struct Tally {
    writes_ok: AtomicU64,
    writes_4xx: AtomicU64,
    writes_5xx: AtomicU64,
    writes_unreachable: AtomicU64,
    queries_ok: AtomicU64,
    queries_4xx: AtomicU64,
    queries_5xx: AtomicU64,
    queries_unreachable: AtomicU64,
}

/// Seed of the fleet's values.
const SEED: u64 = 0x736f_616b;

/// One simulated host of the fleet.
struct Host {
    target: fleet::Target,
    /// Timestamps of its acknowledged pushes.
    acknowledged: Vec<i64>,
}

impl Host {
    /// The request body of the push of `tick`, and its timestamp.
    fn request(&mut self, spec: &Spec, tick: usize) -> (Vec<u8>, i64) {
        let series = fleet::batch(spec, std::slice::from_mut(&mut self.target), tick, 1);
        let ts = series
            .first()
            .and_then(|s| s.samples.first())
            .map_or(spec.tick_ms(tick), |(ts, _)| *ts);
        (compress(&encode_v1(&series)), ts)
    }
}

fn soak(config: &Config, name: &str, restarts: usize) -> Result<(), String> {
    println!("\n== run {name:?}: {restarts} kill -9 restarts");
    let receiver = Arc::new(Mutex::new(Receiver::start(config.retention)?));
    let (base, token, pid) = {
        let r = receiver.lock().unwrap();
        (r.url(""), r.token.clone(), Arc::clone(&r.pid))
    };
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let interval_ms = config.interval.as_millis() as i64;
    let started = Instant::now();
    let first_tick = (now_ms() / interval_ms + 1) * interval_ms;
    let ticks = (config.duration.as_millis() as u64).div_ceil(interval_ms as u64) as usize;
    let spec = Arc::new(Spec {
        hosts: config.hosts,
        cpus: 4,
        gpus: 4,
        demo_instances: 0,
        interval_ms,
        start_ms: first_tick,
        ticks,
        seed: SEED,
    });
    let options = Options {
        stamps: Stamps::Phased,
        series_per_host: Some(config.series),
        vanishing: false,
        exact_decimals: true,
    };

    // Senders: hosts spread over threads, each pushing on its schedule.
    let mut hosts: Vec<Vec<Host>> = (0..config.senders).map(|_| Vec::new()).collect();
    for h in 1..=config.hosts {
        hosts[h % config.senders].push(Host {
            target: fleet::Target::host_with(&spec, &options, h),
            acknowledged: Vec::new(),
        });
    }
    for group in &mut hosts {
        group.sort_by_key(|h| h.target.latest_ms(&spec, 0));
    }
    // Every host has the same metric names.
    let names: BTreeSet<String> = hosts
        .iter()
        .flatten()
        .take(1)
        .flat_map(|h| h.target.labels())
        .filter_map(|l| l.iter().find(|(k, _)| k == "__name__"))
        .map(|(_, v)| v.clone())
        .collect();
    let senders: Vec<_> = hosts
        .into_iter()
        .map(|mut group| {
            let (base, token, tally) = (base.clone(), token.clone(), Arc::clone(&tally));
            let spec = Arc::clone(&spec);
            std::thread::spawn(move || {
                let client = Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                for tick in 0..spec.ticks {
                    for host in &mut group {
                        // No sample from the future.
                        let wait = host.target.latest_ms(&spec, tick) - now_ms();
                        if wait > 0 {
                            std::thread::sleep(Duration::from_millis(wait as u64));
                        }
                        let (body, ts) = host.request(&spec, tick);
                        push(&client, &base, &token, body, &tally);
                        host.acknowledged.push(ts);
                    }
                }
                group
                    .into_iter()
                    .map(|h| (h.target.instance().to_owned(), h.acknowledged))
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    // The dashboard, refreshed every 30 s.
    let latencies: Arc<Mutex<HashMap<&'static str, Vec<f64>>>> = Arc::default();
    let dashboard = {
        let (base, token, tally, stop) = (
            base.clone(),
            token.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
        );
        let latencies = Arc::clone(&latencies);
        std::thread::spawn(move || {
            let client = Client::builder()
                .timeout(Duration::from_secs(150))
                .build()
                .expect("client");
            while !stop.load(Ordering::Relaxed) {
                let refresh = Instant::now();
                // Aligned to the step, as Grafana aligns a panel's range.
                let end = (now_ms() / 30_000 * 30) as f64;
                for (label, query) in DASHBOARD {
                    let sent = Instant::now();
                    let answer = client
                        .get(format!("{base}/api/v1/query_range"))
                        .bearer_auth(&token)
                        .query(&[
                            ("query", query.to_string()),
                            ("start", format!("{:.3}", end - 3600.0)),
                            ("end", format!("{end:.3}")),
                            ("step", "30".to_owned()),
                        ])
                        .send();
                    let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
                    match answer.map(|r| r.status().as_u16()) {
                        Ok(200) => {
                            tally.queries_ok.fetch_add(1, Ordering::Relaxed);
                            latencies
                                .lock()
                                .unwrap()
                                .entry(label)
                                .or_default()
                                .push(elapsed);
                        }
                        Ok(s) if s >= 500 => {
                            tally.queries_5xx.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            tally.queries_4xx.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            tally.queries_unreachable.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let rest = Duration::from_secs(30).saturating_sub(refresh.elapsed());
                sleep_unless(&stop, rest);
            }
        })
    };

    // Resident set, sampled every 10 s.
    let rss: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    let sampler = {
        let (rss, stop, pid) = (Arc::clone(&rss), Arc::clone(&stop), Arc::clone(&pid));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let kib = resident_kib(pid.load(Ordering::Relaxed));
                rss.lock()
                    .unwrap()
                    .push((started.elapsed().as_secs_f64(), kib));
                sleep_unless(&stop, Duration::from_secs(10));
            }
        })
    };

    // Kills at even fractions of the run.
    let mut restart_times = Vec::new();
    for k in 1..=restarts {
        let at = config.duration.mul_f64(k as f64 / (restarts + 1) as f64);
        let wait = at.saturating_sub(started.elapsed());
        std::thread::sleep(wait);
        let took = receiver.lock().unwrap().kill_and_restart()?;
        println!(
            "  killed (SIGKILL) and restarted at {:.1} min; back in {:.1} s",
            started.elapsed().as_secs_f64() / 60.0,
            took.as_secs_f64()
        );
        restart_times.push(took);
    }

    let mut acknowledged: HashMap<String, Vec<i64>> = HashMap::new();
    for sender in senders {
        for (host, ts) in sender.join().map_err(|_| "a sender panicked")? {
            acknowledged.insert(host, ts);
        }
    }
    stop.store(true, Ordering::Relaxed);
    dashboard.join().map_err(|_| "the dashboard panicked")?;
    sampler.join().map_err(|_| "the sampler panicked")?;

    // Every acknowledged sample within the window must be there.
    let window_s = (config.retention.as_secs() / 2).min(600);
    let end_ms = acknowledged.values().flatten().copied().max().unwrap_or(0);
    let expected: HashMap<&str, u64> = acknowledged
        .iter()
        .map(|(h, ts)| {
            let n = ts
                .iter()
                .filter(|t| **t > end_ms - window_s as i64 * 1000)
                .count();
            (h.as_str(), n as u64)
        })
        .collect();
    let counted = count_present(&base, &token, &names, window_s, end_ms)?;
    let (mut expected_total, mut present_total, mut short_series) = (0u64, 0u64, 0usize);
    for (instance, per_series) in &counted {
        let want = expected.get(instance.as_str()).copied().unwrap_or(0);
        for have in per_series {
            present_total += have.min(&want);
            if *have < want {
                short_series += 1;
            }
        }
    }
    let missing_series =
        config.hosts * config.series - counted.values().map(Vec::len).sum::<usize>();
    for want in expected.values() {
        expected_total += want * config.series as u64;
    }

    report(
        config,
        &tally,
        &latencies.lock().unwrap(),
        &rss.lock().unwrap(),
        restarts,
    );
    println!(
        "  acknowledged samples in the last {window_s} s: {expected_total}; present: {present_total}; \
         short series: {short_series}; missing series: {missing_series}"
    );
    let (_, stats) = get_json(&base, &token, "/api/dcmon/stats")?;
    println!(
        "  end: {} series, {} samples, {:.1} MiB on disk, {:.2} B/sample, {} compactions, {} retention runs",
        stats["series"],
        stats["samples"],
        stats["db_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        stats["bytes_per_sample"].as_f64().unwrap_or(0.0),
        stats["compactions"],
        stats["retention_runs"]
    );
    Ok(())
}

/// Pushes one request, resending until it is acknowledged (2xx) or
/// refused for good (4xx other than 429).
fn push(client: &Client, base: &str, token: &str, body: Vec<u8>, tally: &Tally) {
    loop {
        let answer = client
            .post(format!("{base}/api/v1/write"))
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(body.clone())
            .send();
        match answer.map(|r| r.status().as_u16()) {
            Ok(s) if (200..300).contains(&s) => {
                tally.writes_ok.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(s) if s >= 500 || s == 429 => {
                tally
                    .writes_5xx
                    .fetch_add(u64::from(s >= 500), Ordering::Relaxed);
            }
            Ok(_) => {
                tally.writes_4xx.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                tally.writes_unreachable.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Per instance, each series' sample count over the last `window_s` at
/// `end_ms`. One query per metric name: `count_over_time` drops the name,
/// and series of two names may differ in nothing else.
fn count_present(
    base: &str,
    token: &str,
    names: &BTreeSet<String>,
    window_s: u64,
    end_ms: i64,
) -> Result<HashMap<String, Vec<u64>>, String> {
    let client = Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| e.to_string())?;
    let time = format!("{:.3}", end_ms as f64 / 1000.0);
    let mut counted: HashMap<String, Vec<u64>> = HashMap::new();
    for name in names {
        let query = format!("count_over_time({name}{{job=\"node\"}}[{window_s}s])");
        let body: serde_json::Value = client
            .get(format!("{base}/api/v1/query"))
            .bearer_auth(token)
            .query(&[("query", query.as_str()), ("time", time.as_str())])
            .send()
            .and_then(|r| r.json())
            .map_err(|e| format!("counting samples: {e}"))?;
        for item in body["data"]["result"]
            .as_array()
            .ok_or(format!("no result: {body}"))?
        {
            let instance = item["metric"]["instance"].as_str().unwrap_or("").to_owned();
            let count = item["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            counted.entry(instance).or_default().push(count);
        }
    }
    Ok(counted)
}

fn get_json(base: &str, token: &str, path: &str) -> Result<(u16, serde_json::Value), String> {
    let response = Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    Ok((status, response.json().map_err(|e| e.to_string())?))
}

fn report(
    config: &Config,
    tally: &Tally,
    latencies: &HashMap<&'static str, Vec<f64>>,
    rss: &[(f64, u64)],
    restarts: usize,
) {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "  writes: {} acknowledged, {} 5xx, {} 4xx, {} unreachable{}",
        load(&tally.writes_ok),
        load(&tally.writes_5xx),
        load(&tally.writes_4xx),
        load(&tally.writes_unreachable),
        if restarts > 0 {
            ", during restarts"
        } else {
            ""
        }
    );
    println!(
        "  queries: {} ok, {} 5xx, {} 4xx, {} unreachable",
        load(&tally.queries_ok),
        load(&tally.queries_5xx),
        load(&tally.queries_4xx),
        load(&tally.queries_unreachable)
    );
    println!("  query latency ms (p50 / p90 / p99 / max, n):");
    for (label, _) in DASHBOARD {
        let mut v = latencies.get(label).cloned().unwrap_or_default();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            v.get(((v.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "    {label:<24} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {}",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            v.last().copied().unwrap_or(0.0),
            v.len()
        );
    }
    // RSS every five minutes (the sample nearest each mark), then the
    // spread after warm-up: once the retention window has filled.
    println!("  resident set (MiB) by minute:");
    let mut line = String::from("   ");
    let step = 300.0;
    let mut mark = 0.0;
    for (at, kib) in rss {
        if *at >= mark {
            line.push_str(&format!(" {:.0}m:{:.0}", at / 60.0, *kib as f64 / 1024.0));
            mark += step;
        }
    }
    println!("{line}");
    let warm = config.retention.as_secs_f64() + 120.0;
    let after: Vec<u64> = rss
        .iter()
        .filter(|(at, _)| *at >= warm)
        .map(|(_, k)| *k)
        .collect();
    if let (Some(min), Some(max)) = (after.iter().min(), after.iter().max()) {
        println!(
            "  after warm-up ({:.0} min on): RSS {:.0}..{:.0} MiB, last {:.0} MiB",
            warm / 60.0,
            *min as f64 / 1024.0,
            *max as f64 / 1024.0,
            *after.last().unwrap() as f64 / 1024.0
        );
    } else {
        println!("  (run shorter than the warm-up; no steady-state RSS figure)");
    }
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
}
