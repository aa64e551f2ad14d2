//! Scrape benchmark: dcmon-exporter against Debian's node_exporter on this
//! machine, scraped alternately with Prometheus's own request headers.
//! Prints median and p99 latency, CPU per scrape, bytes per scrape, series
//! and peak RSS of each, and the ratios.
//!
//! A second table prices `--web.config.file`: each program is scraped
//! plain and over TLS with basic auth (a certificate from a CA made for
//! the run, a bcrypt hash in `basic_auth_users`), once with a new
//! connection per scrape and once over a kept-alive one. A new connection
//! is what Prometheus opens after its idle connection timed out, and Go's
//! TLS client resumes no sessions, so the client here resumes none either:
//! every such scrape pays a full handshake, the worst case. Median and p90
//! latency, the server's CPU per scrape, and the TLS/plain ratios.
//!
//! `cargo bench -p dcmon-exporter --bench scrape` (release build);
//! `BENCH_SCRAPES=N` sets the number of scrapes per exporter (default 300),
//! `BENCH_TLS_SCRAPES=N` the number per exporter, scheme and connection
//! mode in the second table (default 200; 0 leaves it out). Without
//! node_exporter installed (`scripts/test-deps`), only dcmon-exporter runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcmon_testkit::web::{TestCa, bcrypt_hash};
use dcmon_testkit::{KillOnDrop, free_addr, wait_for_port};

/// What Prometheus 3 sends on a scrape.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

/// Basic-auth user and password of the web config in the second table.
const SCRAPE_USER: &str = "prometheus";
const SCRAPE_PASSWORD: &str = "scrape-secret";

struct Target {
    name: &'static str,
    child: KillOnDrop,
    url: String,
    /// Sent with every scrape: set when the target has a web config.
    basic_auth: Option<(&'static str, &'static str)>,
    latencies: Vec<Duration>,
    wire_bytes: usize,
    body_bytes: usize,
    series: usize,
}

impl Target {
    fn start(name: &'static str, program: &str, args: &[String]) -> Target {
        let addr = free_addr();
        let mut all = vec![format!("--web.listen-address={addr}")];
        all.extend(args.iter().cloned());
        let child = KillOnDrop(
            Command::new(program)
                .args(&all)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {program}: {e}")),
        );
        assert!(
            wait_for_port(&addr, Duration::from_secs(20)),
            "{name} did not start"
        );
        Target {
            name,
            child,
            url: format!("http://{addr}/metrics"),
            basic_auth: None,
            latencies: Vec::new(),
            wire_bytes: 0,
            body_bytes: 0,
            series: 0,
        }
    }

    /// `program` with `args` behind the web config at `web_config`: served
    /// over HTTPS, scraped with the basic-auth user.
    fn start_with_web_config(
        name: &'static str,
        program: &str,
        args: &[String],
        web_config: &Path,
    ) -> Target {
        let mut all = args.to_vec();
        all.push(format!("--web.config.file={}", web_config.display()));
        let mut target = Target::start(name, program, &all);
        target.url = target.url.replacen("http://", "https://", 1);
        target.basic_auth = Some((SCRAPE_USER, SCRAPE_PASSWORD));
        target
    }

    fn scrape(&mut self, client: &reqwest::blocking::Client) {
        let started = Instant::now();
        let mut request = client
            .get(&self.url)
            .header("accept", ACCEPT)
            .header("accept-encoding", "gzip");
        if let Some((user, password)) = self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().unwrap();
        assert!(response.status().is_success());
        let body = response.bytes().unwrap();
        self.latencies.push(started.elapsed());
        self.wire_bytes = body.len();
        let mut text = String::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        self.body_bytes = text.len();
        self.series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
    }

    /// (user + system CPU seconds, peak RSS bytes) from /proc/<pid>.
    fn usage(&self) -> (f64, u64) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_comm.split_ascii_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let hwm_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_ascii_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        (ticks / 100.0, hwm_kib * 1024)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    // reqwest's TLS (built in with the exporter's) needs a rustls provider.
    dcmon_web::install_crypto_provider();
    let scrapes: usize = env_count("BENCH_SCRAPES", 300);
    let tls_scrapes: usize = env_count("BENCH_TLS_SCRAPES", 200);
    let node_exporter = ["prometheus-node-exporter", "node_exporter"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok());
    if node_exporter.is_none() {
        println!(
            "node_exporter is not installed (scripts/test-deps installs \
             prometheus-node-exporter): dcmon-exporter alone"
        );
    }
    let ours = env!("CARGO_BIN_EXE_dcmon-exporter");
    let like_for_like: Vec<String> = ["apt", "fan", "gpu", "ipmi", "nvme"]
        .iter()
        .map(|c| format!("--no-collector.{c}"))
        .collect();
    // node_exporter has no hardware collectors: compare like with like.
    let mut programs: Vec<(&'static str, &str, &[String])> =
        vec![("dcmon-exporter", ours, &like_for_like[..])];
    if let Some(program) = node_exporter {
        programs.push(("node_exporter", program, &[][..]));
    }
    let mut targets: Vec<Target> = programs
        .iter()
        .map(|&(name, program, args)| Target::start(name, program, args))
        .collect();
    let client = reqwest::blocking::Client::builder()
        .no_gzip()
        .build()
        .unwrap();
    // Warm up both (first scrape pays for lazy initialisation).
    for target in &mut targets {
        for _ in 0..5 {
            target.scrape(&client);
        }
        target.latencies.clear();
    }
    let cpu_before: Vec<f64> = targets.iter().map(|t| t.usage().0).collect();
    for _ in 0..scrapes {
        for target in &mut targets {
            target.scrape(&client);
        }
    }

    println!("{scrapes} scrapes each, alternating, Prometheus 3 Accept headers, gzip");
    println!(
        "{:<16} {:>10} {:>10} {:>12} {:>10} {:>12} {:>8} {:>10}",
        "exporter", "median ms", "p99 ms", "CPU ms/scr", "gzip B", "body B", "series", "peak RSS"
    );
    let mut rows = Vec::new();
    for (target, before) in targets.iter_mut().zip(cpu_before) {
        target.latencies.sort();
        let (cpu_after, peak_rss) = target.usage();
        let median = percentile(&target.latencies, 0.5).as_secs_f64() * 1e3;
        let p99 = percentile(&target.latencies, 0.99).as_secs_f64() * 1e3;
        let cpu_ms = (cpu_after - before) * 1e3 / scrapes as f64;
        println!(
            "{:<16} {:>10.2} {:>10.2} {:>12.2} {:>10} {:>12} {:>8} {:>8.1}Mi",
            target.name,
            median,
            p99,
            cpu_ms,
            target.wire_bytes,
            target.body_bytes,
            target.series,
            peak_rss as f64 / (1024.0 * 1024.0)
        );
        rows.push((median, p99, cpu_ms, peak_rss as f64));
    }
    if let [a, b] = rows[..] {
        println!(
            "ratio dcmon/node_exporter: median {:.2}, p99 {:.2}, CPU per scrape {:.2}, peak RSS {:.2}",
            a.0 / b.0,
            a.1 / b.1,
            a.2 / b.2,
            a.3 / b.3
        );
    }
    if tls_scrapes > 0 {
        println!();
        tls_table(&programs, targets, tls_scrapes);
    }
}

/// `name` from the environment as a count, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One (program, scheme, connection mode) of the second table.
struct TlsRow {
    median_ms: f64,
    p90_ms: f64,
    cpu_ms: f64,
}

/// The second table: each program in `programs` plain (the running
/// `plain` targets, in the same order) and behind a web config with TLS
/// and basic auth, scraped `scrapes` times per scheme and connection mode,
/// plain and TLS alternately.
fn tls_table(programs: &[(&'static str, &str, &[String])], plain: Vec<Target>, scrapes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dcmon scrape bench CA");
    let (cert, key) = ca.issue("localhost").write(dir.path(), "server");
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {SCRAPE_USER}: {}\n",
            cert.display(),
            key.display(),
            bcrypt_hash(SCRAPE_PASSWORD)
        ),
    )
    .unwrap();
    let tls: Vec<Target> = programs
        .iter()
        .map(|&(name, program, args)| {
            Target::start_with_web_config(name, program, args, &web_config)
        })
        .collect();
    let mut pairs: Vec<(Target, Target)> = plain.into_iter().zip(tls).collect();

    println!(
        "{scrapes} scrapes each, plain and TLS 1.3 + basic auth alternately; \
         \"new\": a new connection (and a full handshake) per scrape"
    );
    println!(
        "{:<16} {:<11} {:<10} {:>10} {:>10} {:>12}",
        "exporter", "connection", "scheme", "median ms", "p90 ms", "CPU ms/scr"
    );
    let mut ratios = Vec::new();
    for new_connections in [true, false] {
        let plain_client = bench_client(None, new_connections);
        let tls_client = bench_client(Some(&ca), new_connections);
        let connection = if new_connections { "new" } else { "kept alive" };
        for (plain, tls) in &mut pairs {
            let [plain_row, tls_row] = scrape_pair(
                [&mut *plain, &mut *tls],
                [&plain_client, &tls_client],
                scrapes,
            );
            for (row, scheme) in [(&plain_row, "http"), (&tls_row, "https+auth")] {
                println!(
                    "{:<16} {:<11} {:<10} {:>10.2} {:>10.2} {:>12.2}",
                    plain.name, connection, scheme, row.median_ms, row.p90_ms, row.cpu_ms
                );
            }
            ratios.push((plain.name, connection, plain_row, tls_row));
        }
    }
    println!("TLS/plain:");
    for (name, connection, plain, tls) in ratios {
        println!(
            "{:<16} {:<11} median {:.2}, p90 {:.2}, CPU per scrape {:.2}",
            name,
            connection,
            tls.median_ms / plain.median_ms,
            tls.p90_ms / plain.p90_ms,
            tls.cpu_ms / plain.cpu_ms
        );
    }
}

/// Scrapes the two targets alternately, each with its own client, after a
/// warm-up; returns each one's latencies and CPU per scrape.
fn scrape_pair(
    mut targets: [&mut Target; 2],
    clients: [&reqwest::blocking::Client; 2],
    scrapes: usize,
) -> [TlsRow; 2] {
    for (target, client) in targets.iter_mut().zip(clients) {
        for _ in 0..5 {
            target.scrape(client);
        }
        target.latencies.clear();
    }
    let before = targets.each_ref().map(|t| t.usage().0);
    for _ in 0..scrapes {
        for (target, client) in targets.iter_mut().zip(clients) {
            target.scrape(client);
        }
    }
    let mut rows = targets.each_mut().map(|t| {
        t.latencies.sort();
        TlsRow {
            median_ms: percentile(&t.latencies, 0.5).as_secs_f64() * 1e3,
            p90_ms: percentile(&t.latencies, 0.9).as_secs_f64() * 1e3,
            cpu_ms: t.usage().0 * 1e3,
        }
    });
    for (row, before) in rows.iter_mut().zip(before) {
        row.cpu_ms = (row.cpu_ms - before * 1e3) / scrapes as f64;
    }
    rows
}

/// A scrape client: trusting only `ca` when given (for HTTPS), and with
/// `new_connections` keeping no connection between scrapes. TLS sessions
/// are never resumed, as by Prometheus's Go client.
fn bench_client(ca: Option<&TestCa>, new_connections: bool) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder()
        .no_gzip()
        .timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(ca.der()))
            .unwrap();
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(Arc::new(roots))
            .with_no_client_auth();
        tls.resumption = rustls::client::Resumption::disabled();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        builder = builder.tls_backend_preconfigured(tls);
    }
    if new_connections {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().unwrap()
}
