//! Wire benchmark: real `dcmon-exporter` processes remote-write this
//! host's default collectors to a real `dcmon-receiver`, half of them with
//! `--remote-write.protobuf-message=v1` (`prometheus.WriteRequest`), half
//! with `v2` (`io.prometheus.write.v2.Request`, with metadata), at the same
//! time. Each exporter's own counters give the figures:
//! `dcmon_remote_write_bytes_total` (snappy-compressed bodies the receiver
//! acknowledged) over `dcmon_remote_write_samples_total{result="sent"}` is
//! the wire bytes per sample. The receiver's stored sample count is printed
//! beside them, so the figures are of data that arrived.
//!
//! `cargo bench -p dcmon-exporter --bench wire`; `BENCH_WIRE_HOSTS=N`
//! exporters per message (default 3), `BENCH_WIRE_ROUNDS=N` collections
//! each (default 20, one per second: at the default 30 s interval the
//! families' metadata goes with every 20th batch, so 20 rounds carry it in
//! the same proportion). The receiver's speed does not enter the figures,
//! so it is built in the quicker dev profile; the bytes do not depend on
//! the profile either (`--profile dev` gives the same figures sooner).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcmon_testkit::{KillOnDrop, free_port, sigterm, wait_for_port, workspace_binary};

const MESSAGES: [(&str, &str); 2] = [
    ("v1", "prometheus.WriteRequest"),
    ("v2", "io.prometheus.write.v2.Request"),
];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `dcmon-exporter` shipping to the receiver.
struct Exporter {
    child: KillOnDrop,
    addr: String,
    message: &'static str,
    instance: String,
    _dir: tempfile::TempDir,
}

/// Sum of the values of `name`'s samples whose line holds every one of
/// `labels` (`name="value"` texts), in Prometheus text format.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    dcmon_web::install_crypto_provider();
    let hosts = env_or("BENCH_WIRE_HOSTS", 3);
    let rounds = env_or("BENCH_WIRE_ROUNDS", 20);
    let exporter_binary = PathBuf::from(env!("CARGO_BIN_EXE_dcmon-exporter"));
    let target = exporter_binary.parent().unwrap().parent().unwrap();
    let receiver_binary =
        workspace_binary("dcmon-receiver", "dcmon-receiver", &target.join("debug"));

    let dir = tempfile::tempdir().unwrap();
    let receiver_addr = format!("127.0.0.1:{}", free_port());
    let token_file = dir.path().join("admin-token");
    let receiver_log = dir.path().join("receiver.log");
    let mut receiver = KillOnDrop(
        Command::new(&receiver_binary)
            .arg("--web.listen-address")
            .arg(&receiver_addr)
            .arg("--storage.path")
            .arg(dir.path().join("dcmon.db"))
            .arg("--admin-token-file")
            .arg(&token_file)
            .arg("--self-scrape.interval=0s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&receiver_log).unwrap())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for_port(&receiver_addr, Duration::from_secs(30)),
        "the receiver did not start: {}",
        std::fs::read_to_string(&receiver_log).unwrap_or_default()
    );
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let url = format!("http://{receiver_addr}/api/v1/write");

    let mut exporters = Vec::new();
    for (short, message) in MESSAGES {
        for host in 0..hosts {
            let dir = tempfile::tempdir().unwrap();
            let addr = format!("127.0.0.1:{}", free_port());
            let instance = format!("wire-{short}-{host}");
            let log = dir.path().join("exporter.log");
            let child = KillOnDrop(
                Command::new(&exporter_binary)
                    .arg(format!("--web.listen-address={addr}"))
                    .arg(format!(
                        "--state-dir={}",
                        dir.path().join("state").display()
                    ))
                    .arg(format!("--remote-write.url={url}"))
                    .arg(format!(
                        "--remote-write.bearer-token-file={}",
                        token_file.display()
                    ))
                    .arg(format!("--remote-write.protobuf-message={short}"))
                    .arg("--remote-write.interval=1s")
                    .arg(format!("--remote-write.instance={instance}"))
                    // apt-get runs in the background at start; six at once
                    // would only slow the machine, and add four series.
                    .arg("--no-collector.apt")
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap(),
            );
            assert!(
                wait_for_port(&addr, Duration::from_secs(30)),
                "an exporter did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            exporters.push(Exporter {
                child,
                addr,
                message,
                instance,
                _dir: dir,
            });
        }
    }

    let client = reqwest::blocking::Client::new();
    let scrape = |exporter: &Exporter| -> String {
        client
            .get(format!("http://{}/metrics", exporter.addr))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    };
    let endpoint = format!("endpoint=\"{url}\"");
    let sent = |text: &str| {
        metric(
            text,
            "dcmon_remote_write_samples_total",
            &[&endpoint, "result=\"sent\""],
        )
    };
    // Each exporter ships `rounds` collections; the figures are read once
    // every one has, with the exporters still running.
    let deadline = Instant::now() + Duration::from_secs(rounds * 3 + 60);
    let texts = loop {
        let texts: Vec<String> = exporters.iter().map(scrape).collect();
        // A round is about as many samples as the exporter exposes.
        let done = texts
            .iter()
            .all(|text| sent(text) > 0.0 && sent(text) >= (series(text) * rounds) as f64);
        if done {
            break texts;
        }
        assert!(
            Instant::now() < deadline,
            "the exporters did not ship {rounds} rounds in time"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let shipped: Vec<(&str, String)> = exporters
        .iter()
        .map(|e| (e.message, e.instance.clone()))
        .collect();
    for exporter in exporters.drain(..) {
        let mut child = exporter.child;
        sigterm(&mut child.0);
    }

    println!(
        "wire: {hosts} dcmon-exporter processes per message, this host's default collectors, 1 s interval, {rounds}+ rounds each, to dcmon-receiver"
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>11} {:>13}",
        "message", "series", "sent", "stored", "bytes", "bytes/sample"
    );
    let mut figures = Vec::new();
    for (short, message) in MESSAGES {
        let (mut samples, mut bytes, mut exposed, mut stored) = (0.0, 0.0, 0, 0.0);
        for ((shipped_message, instance), text) in shipped.iter().zip(&texts) {
            if *shipped_message != message {
                continue;
            }
            samples += sent(text);
            bytes += metric(text, "dcmon_remote_write_bytes_total", &[&endpoint]);
            exposed += series(text);
            stored += stored_samples(&client, &receiver_addr, &token, instance);
        }
        let per_sample = bytes / samples;
        println!(
            "{:<40} {:>10} {:>10} {:>10} {:>11} {:>13.2}",
            format!("{message} ({short})"),
            exposed / hosts,
            samples,
            stored,
            bytes,
            per_sample
        );
        figures.push(per_sample);
    }
    println!(
        "v2/v1 bytes per sample: {:.3} (done when at most 0.5: {})",
        figures[1] / figures[0],
        if figures[1] * 2.0 <= figures[0] {
            "yes"
        } else {
            "no"
        }
    );
    sigterm(&mut receiver.0);
}

/// Samples in a `/metrics` text: about one round's batch (the shipper adds
/// nothing the page does not show).
fn series(text: &str) -> u64 {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count() as u64
}

/// Samples the receiver stores for `instance` (every series, last hour),
/// counted from the raw range vector (`count_over_time` would drop the
/// names and collide).
fn stored_samples(
    client: &reqwest::blocking::Client,
    addr: &str,
    token: &str,
    instance: &str,
) -> f64 {
    let query = format!("{{instance=\"{instance}\"}}[1h]");
    let answer: serde_json::Value = client
        .get(format!("http://{addr}/api/v1/query"))
        .query(&[("query", query.as_str())])
        .bearer_auth(token)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("querying the receiver: {e}"));
    let series = answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("the receiver answered {query} with {answer}"));
    series
        .iter()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum::<usize>() as f64
}
