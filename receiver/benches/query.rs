//! Query benchmark: the same synthetic fleet (node_exporter-like and
//! nvidia_smi-like series, a classic histogram per host) remote-written to
//! dcmon-receiver, Prometheus and VictoriaMetrics; then the median latency
//! of dashboard-style queries over the whole span, each system in the same
//! run, printed as a table with ratios. It asserts nothing; it notes where
//! a peer's answer differs from dcmon's.
//!
//! Timing starts once every system has finished its background work
//! after the load (compaction, merges): until then a query would share
//! the machine's cores with it, whichever system it went to.
//!
//! A latency is the time from sending a request to receiving the last
//! byte of its answer; the bench's own parsing of the JSON is not timed.
//! Reads are timed with a client that reads on the calling thread (ureq),
//! so that a light answer's figure is the server's, not a client runtime's
//! hand-offs.
//!
//! Cold runs pass `nocache=1` (dcmon and VictoriaMetrics honour it;
//! Prometheus has no cache), so they time evaluation. They take turns, a
//! run on each system after another, so that the machine's moments of
//! load fall on every system alike. Each range query is
//! then also timed warm, as a dashboard refresh: after one cached run, a
//! new sample 30 s after the data is written to every series and the same
//! query runs with its end moved to the first step reading it (dcmon's
//! warm answer is checked against a `nocache=1` one).
//!
//! Run with `cargo bench -p dcmon-receiver --bench query` (a release
//! build; `apt-get install prometheus victoria-metrics` for the peers).
//!
//! Knobs (environment): `BENCH_HOSTS` (100), `BENCH_SERIES` per host (~300),
//! `BENCH_HOURS` of data ending now (24; `BENCH_DAYS=7` for a week),
//! `BENCH_RUNS` timed runs per query (5, after one warm-up),
//! `BENCH_ONLY` (comma list of `dcmon`, `prometheus`, `victoriametrics`),
//! `BENCH_FILTER` (only the queries containing this text), `BENCH_STEP`
//! in seconds (default: Grafana's, about 1,400 points over the span),
//! `BENCH_DCMON_BIN` (another dcmon-receiver binary to run),
//! `BENCH_GZIP=1` (ask for gzipped answers, as Grafana does: each system
//! then compresses them, and the time to unzip, client work, is not
//! counted; by default answers are plain).

#[path = "../tests/promql_side_by_side/peers.rs"]
mod peers;

mod support;

use support::{cpu_time, env_parse, now_ms};

use dcmon_protocol::remote_write::SeriesSamples;

use std::process::{Command, ExitCode, Stdio};

use dcmon_testkit::fleet::{self, Spec, Target};
use dcmon_testkit::{KillOnDrop, free_addr};
use std::time::{Duration, Instant};

use peers::{Answer, Endpoint, Kind, Peer, client, installed, timing_client};

const INTERVAL_MS: i64 = 30_000;
/// Scrapes per remote-write request (one host per request).
const TICKS_PER_WRITE: usize = 40;
const SEED: u64 = 0x7175_6572_7962_656e;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("query bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A system under test: where to write, where to query.
struct System {
    name: &'static str,
    write: Endpoint,
    read: Endpoint,
    process: Process,
    /// Whether queries accept gzipped answers (`BENCH_GZIP=1`).
    gzip: bool,
}

/// What keeps a system running; dropping it stops the system.
struct Process {
    child: Option<KillOnDrop>,
    _dir: Option<tempfile::TempDir>,
    peer: Option<Peer>,
}

impl Process {
    fn pid(&self) -> Option<u32> {
        match (&self.child, &self.peer) {
            (Some(child), _) => Some(child.id()),
            (None, Some(peer)) => Some(peer.pid()),
            (None, None) => None,
        }
    }
}

/// The peak resident set size of `pid` since it started or since
/// [`reset_peak_rss`], in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    support::peak_rss_bytes(pid).map(|bytes| bytes as f64 / (1024.0 * 1024.0))
}

/// Starts measuring `pid`'s peak RSS afresh (Linux: `clear_refs` 5).
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn start_dcmon() -> Result<System, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let addr = free_addr();
    let db = dir.path().join("dcmon.db");
    let token_file = dir.path().join("token");
    // Another build may be named, to compare two on one machine.
    let program = std::env::var("BENCH_DCMON_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_dcmon-receiver").to_owned());
    let child = Command::new(program)
        .args([
            "--web.listen-address",
            &addr,
            "--storage.path",
            &db.display().to_string(),
            "--admin-token-file",
            &token_file.display().to_string(),
            "--storage.compaction-interval",
            "10s",
            "--storage.retention",
            "30d",
            "--log.level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("dcmon-receiver: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            return Err("dcmon-receiver did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(&token_file)
        .map_err(|e| e.to_string())?
        .trim()
        .to_owned();
    let endpoint = Endpoint {
        base: format!("http://{addr}"),
        token: Some(token),
    };
    Ok(System {
        name: "dcmon",
        write: endpoint.clone(),
        read: endpoint,
        process: Process {
            child: Some(KillOnDrop(child)),
            _dir: Some(dir),
            peer: None,
        },
        gzip: false,
    })
}

fn start_peer(kind: Kind, name: &'static str) -> Result<System, String> {
    let peer = Peer::start(kind)?;
    let endpoint = Endpoint {
        base: peer.base.clone(),
        token: None,
    };
    Ok(System {
        name,
        write: endpoint.clone(),
        read: endpoint,
        process: Process {
            child: None,
            _dir: None,
            peer: Some(peer),
        },
        gzip: false,
    })
}

/// Sends the whole fleet to `system`, host by host in blocks of scrapes.
fn load(spec: &Spec, system: &System) -> Result<Duration, String> {
    let started = Instant::now();
    let workers = 2.min(spec.hosts);
    // Senders move through time in step, so no system sees a sample older
    // than what it accepts (Prometheus: its head's newest sample - 1 h).
    let barrier = std::sync::Barrier::new(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|me| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<(), String> {
                    let http = client();
                    let mut targets: Vec<Target> = (1..=spec.hosts)
                        .filter(|h| h % workers == me)
                        .map(|h| Target::host(spec, h))
                        .collect();
                    for first in (0..spec.ticks).step_by(TICKS_PER_WRITE) {
                        for target in &mut targets {
                            let batch = fleet::batch(
                                spec,
                                std::slice::from_mut(target),
                                first,
                                TICKS_PER_WRITE,
                            );
                            if let Err(e) = system.write.write(&http, &batch) {
                                // The other sender waits at the barrier.
                                eprintln!("query bench: {}: {e}", system.name);
                                std::process::exit(1);
                            }
                        }
                        barrier.wait();
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err("sender panicked".into())))
    })?;
    Ok(started.elapsed())
}

/// Waits until the system has made what it was sent queryable in its
/// steady-state form (dcmon: the head compacted into chunks).
fn settle(system: &System) -> Result<(), String> {
    let http = client();
    match system.name {
        "dcmon" => {
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let stats = system.read.get(&http, "/api/dcmon/stats", &[])?;
                if stats["head_samples"].as_u64() == Some(0) || Instant::now() > deadline {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        "victoriametrics" => {
            let _ = http
                .get(format!("{}/internal/force_flush", system.read.base))
                .send();
            std::thread::sleep(Duration::from_secs(2));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Longest wait for the systems' background work to end.
const QUIET_WAIT: Duration = Duration::from_secs(900);

/// How long every system must stay quiet when Prometheus is one: longer
/// than a minute, as it looks for head blocks to compact once a minute.
const QUIET_HOLD: Duration = Duration::from_secs(65);

/// Waits until no system works in the background (a peer's compaction
/// or merges after the load can take a core for minutes, and a query timed
/// then, on any system, shares the machine with it): quiet is each
/// process under a twentieth of a core in every two seconds for
/// `hold`. Gives the busy systems' names if they are still busy after
/// [`QUIET_WAIT`].
fn quiet(systems: &[System], hold: Duration) -> Result<(), String> {
    const WINDOW: Duration = Duration::from_secs(2);
    let deadline = Instant::now() + QUIET_WAIT;
    let pids: Vec<(&str, u32)> = systems
        .iter()
        .filter_map(|s| Some((s.name, s.process.pid()?)))
        .collect();
    let mut quiet_since = Instant::now();
    loop {
        let before: Vec<Duration> = pids.iter().map(|&(_, pid)| cpu_time(pid)).collect();
        std::thread::sleep(WINDOW);
        let busy: Vec<&str> = pids
            .iter()
            .zip(before)
            .filter(|&(&(_, pid), before)| cpu_time(pid).saturating_sub(before) > WINDOW / 20)
            .map(|(&(name, _), _)| name)
            .collect();
        if !busy.is_empty() {
            if Instant::now() > deadline {
                return Err(busy.join(", "));
            }
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= hold {
            return Ok(());
        }
    }
}

/// One benchmark query.
enum Probe {
    Range(String),
    Get(String, Vec<(&'static str, String)>),
}

impl Probe {
    fn title(&self) -> String {
        match self {
            Probe::Range(q) => q.clone(),
            Probe::Get(path, params) => {
                let args: Vec<String> = params
                    .iter()
                    .filter(|(k, _)| *k != "start" && *k != "end")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if args.is_empty() {
                    path.clone()
                } else {
                    format!("{path}?{}", args.join("&"))
                }
            }
        }
    }
}

fn probes(start: i64, end: i64) -> Vec<Probe> {
    let range = |q: &str| Probe::Range(q.to_owned());
    let window = || {
        vec![
            ("start", peers::seconds(start)),
            ("end", peers::seconds(end)),
        ]
    };
    let with = |extra: (&'static str, &str)| {
        let mut p = vec![(extra.0, extra.1.to_owned())];
        p.extend(window());
        p
    };
    vec![
        range(r#"rate(node_cpu_seconds_total{instance="host1:9100",mode="user"}[5m])"#),
        range(r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#),
        range(r#"sum by (instance) (rate(node_network_receive_bytes_total[5m]))"#),
        range(
            r#"node_memory_MemAvailable_bytes{instance="host1:9100"} / node_memory_MemTotal_bytes{instance="host1:9100"}"#,
        ),
        range(r#"max_over_time(nvidia_smi_temperature_gpu{instance="host1:9100"}[5m])"#),
        range(r#"max by (instance) (max_over_time(nvidia_smi_temperature_gpu[5m]))"#),
        range(r#"topk(5, max by (instance) (nvidia_smi_temperature_gpu))"#),
        range(r#"count by (instance) (up)"#),
        range(
            r#"histogram_quantile(0.9, rate(dcmon_receiver_request_duration_seconds_bucket{instance="host1:9100"}[5m]))"#,
        ),
        range(
            r#"histogram_quantile(0.99, sum by (le) (rate(dcmon_receiver_request_duration_seconds_bucket[5m])))"#,
        ),
        Probe::Get(
            "/api/v1/series".into(),
            with((
                "match[]",
                r#"node_cpu_seconds_total{instance="host1:9100"}"#,
            )),
        ),
        Probe::Get("/api/v1/labels".into(), window()),
        Probe::Get("/api/v1/label/instance/values".into(), window()),
        Probe::Get("/api/v1/label/__name__/values".into(), window()),
        // Two evaluations reading every CPU series over the whole span:
        // how much of the per-step queries above is reading the samples.
        Probe::Get(
            "/api/v1/query_range".into(),
            vec![
                (
                    "query",
                    r#"count(count_over_time(node_cpu_seconds_total{mode!="idle"}[1m]))"#
                        .to_owned(),
                ),
                ("start", peers::seconds(start)),
                ("end", peers::seconds(end)),
                ("step", peers::seconds(end - start)),
                // Read cost, not any system's answer cache.
                ("nocache", "1".to_owned()),
            ],
        ),
    ]
}

/// A range query's answer, with `nocache=1` when `nocache`.
fn range_answer(
    system: &System,
    agent: &ureq::Agent,
    query: &str,
    window: (i64, i64, i64),
    nocache: bool,
) -> Answer {
    timed_range_answer(system, agent, query, window, nocache).1
}

/// [`range_answer`] with the time from sending the request to receiving
/// the last byte of its answer (parsing it, the same client work for
/// every system, is not timed).
fn timed_range_answer(
    system: &System,
    agent: &ureq::Agent,
    query: &str,
    (start, end, step): (i64, i64, i64),
    nocache: bool,
) -> (Duration, Answer) {
    let mut params = vec![
        ("query", query.to_owned()),
        ("start", peers::seconds(start)),
        ("end", peers::seconds(end)),
        ("step", peers::seconds(step)),
    ];
    if nocache {
        params.push(("nocache", "1".to_owned()));
    }
    let path = "/api/v1/query_range";
    let started = Instant::now();
    let body = system
        .read
        .get_body_timed(agent, path, &params, system.gzip);
    let took = started.elapsed();
    let answer = match body.and_then(|b| b.json(path)) {
        Ok(body) => Answer::from_json(&body),
        Err(e) => Answer::Error(e),
    };
    (took, answer)
}

/// The warnings and infos a system's answer carries (an answer with any
/// is not cached), as notes.
fn annotations(
    system: &System,
    http: &reqwest::blocking::Client,
    query: &str,
    (start, end, step): (i64, i64, i64),
) -> Vec<String> {
    let params = vec![
        ("query", query.to_owned()),
        ("start", peers::seconds(start)),
        ("end", peers::seconds(end)),
        ("step", peers::seconds(step)),
        ("nocache", "1".to_owned()),
    ];
    let Ok(body) = system.read.get(http, "/api/v1/query_range", &params) else {
        return Vec::new();
    };
    ["warnings", "infos"]
        .iter()
        .flat_map(|kind| {
            let texts = body[*kind].as_array().cloned().unwrap_or_default();
            texts
                .into_iter()
                .map(move |t| format!("{} {kind}: {}", system.name, t.as_str().unwrap_or("")))
        })
        .collect()
}

/// Writes one sample at `at_ms` to every series of the fleet, as the next
/// scrape would (the value only has to be valid and rising).
fn write_next_samples(
    system: &System,
    http: &reqwest::blocking::Client,
    labels: &[Vec<(String, String)>],
    at_ms: i64,
) -> Result<(), String> {
    let value = 1e15 + (at_ms % 1_000_000) as f64;
    let batch: Vec<SeriesSamples> = labels
        .iter()
        .map(|l| SeriesSamples {
            labels: l.clone(),
            samples: vec![(at_ms, value)],
        })
        .collect();
    system.write.write(http, &batch)
}

/// The median warm refresh of `query` on `system`: a cached run over
/// `[start, end]`, then per timed run a new sample 30 s after the data
/// (a millisecond apart per run, so no system sees a duplicate) and the
/// query with its end moved to the first step that reads it.
#[allow(clippy::too_many_arguments)]
fn warm_refresh(
    system: &System,
    (http, agent): (&reqwest::blocking::Client, &ureq::Agent),
    spec: &Spec,
    labels: &[Vec<(String, String)>],
    query: &str,
    (start, end, step): (i64, i64, i64),
    runs: usize,
    written: &mut i64,
) -> Result<(Duration, Option<String>), String> {
    if let Answer::Error(e) = range_answer(system, agent, query, (start, end, step), false) {
        return Err(e);
    }
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    let mut later = (start, end, step);
    for _ in 0..runs {
        *written += 1;
        let at_ms = spec.end_ms() + 30_000 + *written;
        write_next_samples(system, http, labels, at_ms)?;
        let steps = (at_ms - start + step - 1).div_euclid(step);
        later = (start, start + steps * step, step);
        let (took, answer) = timed_range_answer(system, agent, query, later, false);
        samples.push(took);
        last = Some(answer);
    }
    let mut note = None;
    if system.name == "dcmon"
        && let Some(warm) = last
        && !same(&warm, &range_answer(system, agent, query, later, true))
    {
        note = Some("dcmon's warm answer differs from its nocache=1 answer".to_owned());
    }
    Ok((median(samples), note))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Whether two answers agree (same series, points, values within 1e-5).
fn same(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (Answer::Matrix(a), Answer::Matrix(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|((la, pa), (lb, pb))| {
                    la == lb
                        && pa.len() == pb.len()
                        && pa.iter().zip(pb).all(|(x, y)| {
                            x.0 == y.0
                                && ((x.1.is_nan() && y.1.is_nan())
                                    || (x.1 - y.1).abs() <= 1e-5 * x.1.abs().max(y.1.abs()))
                        })
                })
        }
        _ => false,
    }
}

/// One line of the result table.
struct Row {
    title: String,
    /// Cold (`nocache=1`) median per system.
    times: Vec<Option<Duration>>,
    /// Warm-refresh median per system (range queries only).
    warm_times: Vec<Option<Duration>>,
    notes: Vec<String>,
}

fn run() -> Result<(), String> {
    let hosts = env_parse("BENCH_HOSTS", 100usize)?;
    let series = env_parse("BENCH_SERIES", 300usize)?;
    let days = env_parse("BENCH_DAYS", 0f64)?;
    let hours = if days > 0.0 {
        days * 24.0
    } else {
        env_parse("BENCH_HOURS", 24f64)?
    };
    let runs = env_parse("BENCH_RUNS", 5usize)?.max(1);
    let gzip = env_parse("BENCH_GZIP", 0u8)? == 1;
    if hosts == 0 || series == 0 || hours.is_nan() || hours <= 0.0 {
        return Err("BENCH_HOSTS, BENCH_SERIES and BENCH_HOURS must be positive".into());
    }
    // The data starts a quarter of an hour before the queried span, so no
    // counter starts inside it (where Prometheus 2.x and 3.x extrapolate
    // `rate` differently).
    let lead_ms = 900_000;
    let ticks =
        (((hours * 3_600_000.0 + lead_ms as f64) / INTERVAL_MS as f64).round() as usize).max(1);
    let start_ms = (now_ms() - 120_000 - ticks as i64 * INTERVAL_MS).div_euclid(60_000) * 60_000;
    // Everything but the CPU series is fixed per host; the CPUs make up the rest.
    let mut spec = Spec {
        hosts,
        cpus: 0,
        gpus: 4,
        demo_instances: 0,
        interval_ms: INTERVAL_MS,
        start_ms,
        ticks,
        seed: SEED,
    };
    let fixed = Target::host(&spec, 1).series_count();
    spec.cpus = (series.saturating_sub(fixed) / 8).max(1);
    let per_host = Target::host(&spec, 1).series_count();
    let only: Vec<String> = std::env::var("BENCH_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    println!(
        "workload: {hosts} hosts x {per_host} series, {ticks} scrapes every {} s ({hours} h), {} samples",
        INTERVAL_MS / 1000,
        hosts * per_host * ticks
    );

    let mut systems = Vec::new();
    if wanted("dcmon") {
        systems.push(start_dcmon()?);
    }
    for (kind, name) in [
        (Kind::Prometheus, "prometheus"),
        (Kind::VictoriaMetrics, "victoriametrics"),
    ] {
        if !wanted(name) {
            continue;
        }
        if installed(kind.program()) {
            systems.push(start_peer(kind, name)?);
        } else {
            println!(
                "{name}: not installed, skipped (apt-get install {})",
                kind.program()
            );
        }
    }
    for system in &mut systems {
        system.gzip = gzip;
    }
    for system in &systems {
        let took = load(&spec, system)?;
        println!(
            "{}: loaded in {:.1} s ({:.0} samples/s)",
            system.name,
            took.as_secs_f64(),
            (hosts * per_host * ticks) as f64 / took.as_secs_f64()
        );
    }
    for system in &systems {
        let started = Instant::now();
        settle(system)?;
        println!(
            "{}: settled in {:.1} s",
            system.name,
            started.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    let hold = if systems.iter().any(|s| s.name == "prometheus") {
        QUIET_HOLD
    } else {
        Duration::ZERO
    };
    match quiet(&systems, hold) {
        Ok(()) => println!(
            "all quiet for {hold:?} after {:.1} s more",
            started.elapsed().as_secs_f64()
        ),
        Err(busy) => println!("still busy after {QUIET_WAIT:?}: {busy}; timing anyway"),
    }

    // Peak RSS while loading, then afresh for the queries.
    let mut load_rss = Vec::new();
    for system in &systems {
        let pid = system.process.pid();
        load_rss.push(pid.and_then(peak_rss_mib));
        if let Some(pid) = pid
            && !reset_peak_rss(pid)
        {
            println!(
                "{}: peak RSS cannot be reset; the query figure includes loading",
                system.name
            );
        }
    }
    let end = spec.end_ms().div_euclid(60_000) * 60_000;
    let start = spec.start_ms + lead_ms;
    // Grafana's step for the span at ~1,400 points.
    let step = match env_parse("BENCH_STEP", 0i64)? {
        seconds if seconds > 0 => seconds * 1000,
        _ => ((end - start) / 1_400).max(INTERVAL_MS).div_euclid(1000) * 1000,
    };
    println!(
        "queries over {:.1} h at a {} s step; median of {runs} runs after one warm-up; answers {}",
        (end - start) as f64 / 3_600_000.0,
        step / 1000,
        if gzip {
            "gzipped (Accept-Encoding: gzip, as Grafana asks; unzipping not timed)"
        } else {
            "plain"
        }
    );
    let http = client();
    let agent = timing_client();
    let labels: Vec<Vec<(String, String)>> = (1..=spec.hosts)
        .flat_map(|h| Target::host(&spec, h).labels().to_vec())
        .collect();
    let mut written = 0i64;
    let mut table: Vec<Row> = Vec::new();
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    let chosen = probes(start, end)
        .into_iter()
        .filter(|probe| probe.title().contains(filter.as_str()));
    let window = (start, end, step);
    for probe in chosen {
        let mut notes = Vec::new();
        // One run on `system`: how long the answer took to arrive, and the
        // answer (range queries only).
        let once = |system: &System| -> Result<(Duration, Option<Answer>), String> {
            match &probe {
                Probe::Range(q) => match timed_range_answer(system, &agent, q, window, true) {
                    (_, Answer::Error(e)) => Err(e),
                    (took, answer) => Ok((took, Some(answer))),
                },
                Probe::Get(path, params) => {
                    let started = Instant::now();
                    let body = system
                        .read
                        .get_body_timed(&agent, path, params, system.gzip)?;
                    let took = started.elapsed();
                    let body = body.json(path)?;
                    if body["status"] != "success" {
                        return Err(body.to_string());
                    }
                    Ok((took, None))
                }
            }
        };
        // A warm-up run on each system, whose answer is compared with
        // dcmon's; a system that fails it sits the timed runs out.
        let mut answered = Vec::with_capacity(systems.len());
        let mut reference: Option<Answer> = None;
        for system in &systems {
            match once(system) {
                Ok((_, Some(answer))) => {
                    match &reference {
                        None => reference = Some(answer),
                        Some(ours) if !same(ours, &answer) => {
                            notes.push(format!("{} answers differently from dcmon", system.name));
                        }
                        Some(_) => {}
                    }
                    answered.push(true);
                }
                Ok((_, None)) => answered.push(true),
                Err(e) => {
                    notes.push(format!("{} failed: {e}", system.name));
                    answered.push(false);
                }
            }
        }
        // The timed runs take turns, one run of each system after another,
        // so that a burst of load on this shared machine falls on every
        // system alike rather than on the one whose runs it overlapped.
        let mut samples: Vec<Vec<Duration>> =
            systems.iter().map(|_| Vec::with_capacity(runs)).collect();
        for _ in 0..runs {
            for ((system, samples), &answered) in systems.iter().zip(&mut samples).zip(&answered) {
                if answered {
                    samples.push(once(system)?.0);
                }
            }
        }
        let times: Vec<Option<Duration>> = samples
            .into_iter()
            .zip(&answered)
            .map(|(samples, &answered)| answered.then(|| median(samples)))
            .collect();
        let mut warm_times = Vec::new();
        if let Probe::Range(q) = &probe {
            for (system, &answered) in systems.iter().zip(&answered) {
                if !answered {
                    warm_times.push(None);
                    continue;
                }
                if system.name == "dcmon" {
                    notes.extend(annotations(system, &http, q, window));
                }
                let clients = (&http, &agent);
                match warm_refresh(
                    system,
                    clients,
                    &spec,
                    &labels,
                    q,
                    window,
                    runs,
                    &mut written,
                ) {
                    Ok((took, note)) => {
                        warm_times.push(Some(took));
                        notes.extend(note);
                    }
                    Err(e) => {
                        notes.push(format!("{} warm refresh failed: {e}", system.name));
                        warm_times.push(None);
                    }
                }
            }
        }
        table.push(Row {
            title: probe.title(),
            times,
            warm_times,
            notes,
        });
    }

    println!();
    let mut header = format!("{:<4}", "#");
    for system in &systems {
        header.push_str(&format!(" {:>14}", format!("{} ms", system.name)));
    }
    for system in &systems {
        header.push_str(&format!(" {:>14}", format!("{} warm", system.name)));
    }
    if systems.len() > 1 {
        header.push_str(&format!(" {:>16}", "dcmon/fastest"));
    }
    println!("{header}  query");
    for (n, row) in table.iter().enumerate() {
        let Row {
            title,
            times,
            warm_times,
            notes,
        } = row;
        let mut line = format!("{:<4}", n + 1);
        for t in times {
            match t {
                Some(t) => line.push_str(&format!(" {:>14.2}", t.as_secs_f64() * 1000.0)),
                None => line.push_str(&format!(" {:>14}", "error")),
            }
        }
        for i in 0..systems.len() {
            match warm_times.get(i) {
                Some(Some(t)) => line.push_str(&format!(" {:>14.2}", t.as_secs_f64() * 1000.0)),
                Some(None) => line.push_str(&format!(" {:>14}", "error")),
                None => line.push_str(&format!(" {:>14}", "-")),
            }
        }
        if systems.len() > 1 && systems[0].name == "dcmon" {
            let fastest_peer = times[1..].iter().flatten().min();
            match (times[0], fastest_peer) {
                (Some(ours), Some(peer)) => line.push_str(&format!(
                    " {:>16.2}",
                    ours.as_secs_f64() / peer.as_secs_f64()
                )),
                _ => line.push_str(&format!(" {:>16}", "-")),
            }
        }
        println!("{line}  {title}");
        for note in notes {
            println!("{:<4} note: {note}", "");
        }
    }
    println!();
    let mib = |v: Option<f64>| v.map_or("-".to_owned(), |m| format!("{m:.0} MiB"));
    for (system, loading) in systems.iter().zip(load_rss) {
        let querying = system.process.pid().and_then(peak_rss_mib);
        println!(
            "{}: peak RSS {} while loading, {} while querying",
            system.name,
            mib(loading),
            mib(querying)
        );
    }
    Ok(())
}
