//! Scrape benchmark: dcmon-exporter against Debian's node_exporter on this
//! machine, scraped alternately with Prometheus's own request headers.
//! Prints median and p99 latency, CPU per scrape, bytes per scrape, series
//! and peak RSS of each, and the ratios.
//!
//! `cargo bench -p dcmon-exporter --bench scrape` (release build);
//! `BENCH_SCRAPES=N` sets the number of scrapes per exporter (default 300).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What Prometheus 3 sends on a scrape.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

struct Target {
    name: &'static str,
    child: Child,
    url: String,
    latencies: Vec<Duration>,
    wire_bytes: usize,
    body_bytes: usize,
    series: usize,
}

impl Target {
    fn start(name: &'static str, program: &str, args: &[String]) -> Target {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut all = vec![format!("--web.listen-address={addr}")];
        all.extend(args.iter().cloned());
        let child = Command::new(program)
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Target {
            name,
            child,
            url: format!("http://{addr}/metrics"),
            latencies: Vec::new(),
            wire_bytes: 0,
            body_bytes: 0,
            series: 0,
        }
    }

    fn scrape(&mut self, client: &reqwest::blocking::Client) {
        let started = Instant::now();
        let response = client
            .get(&self.url)
            .header("accept", ACCEPT)
            .header("accept-encoding", "gzip")
            .send()
            .unwrap();
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

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    // reqwest's TLS (built in with the exporter's) needs a rustls provider.
    dcmon_web::install_crypto_provider();
    let scrapes: usize = std::env::var("BENCH_SCRAPES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let node_exporter = ["prometheus-node-exporter", "node_exporter"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("install prometheus-node-exporter to compare against");
    let ours = env!("CARGO_BIN_EXE_dcmon-exporter");
    let like_for_like: Vec<String> = ["apt", "fan", "gpu", "ipmi", "nvme"]
        .iter()
        .map(|c| format!("--no-collector.{c}"))
        .collect();
    let mut targets = [
        // node_exporter has no hardware collectors: compare like with like.
        Target::start("dcmon-exporter", ours, &like_for_like),
        Target::start("node_exporter", node_exporter, &[]),
    ];
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
    let (a, b) = (rows[0], rows[1]);
    println!(
        "ratio dcmon/node_exporter: median {:.2}, p99 {:.2}, CPU per scrape {:.2}, peak RSS {:.2}",
        a.0 / b.0,
        a.1 / b.1,
        a.2 / b.2,
        a.3 / b.3
    );
}
