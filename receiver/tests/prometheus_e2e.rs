//! End to end with the real thing: Debian's `prometheus` scrapes Debian's
//! node_exporter and remote-writes to the receiver with the admin token as
//! bearer credentials; afterwards the receiver holds exactly the series and
//! samples Prometheus's own TSDB holds for the same window.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcmon_receiver::storage::index::{MatchOp, Matcher};

use dcmon_testkit::start_prometheus;

use crate::common::peer::{Process, free_port, wait_for};
use crate::common::{Receiver, client, now_ms, open_storage};

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// labels → [(timestamp ms, value bits)], stale markers left out (the
/// query API never returns them).
type Dump = BTreeMap<Vec<(String, String)>, Vec<(i64, u64)>>;

#[test]
fn receiver_matches_prometheus_tsdb() {
    let mut receiver = Receiver::start(&["--storage.compaction-interval", "2s"]);
    let dir = tempfile::tempdir().unwrap();

    let exporter_port = free_port();
    let _node_exporter = Process(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)"),
    );
    let prometheus_port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n\
         remote_write:\n  - url: http://{}/api/v1/write\n    authorization:\n      credentials_file: {}\n    queue_config:\n      batch_send_deadline: 500ms\n",
        receiver.addr,
        receiver.token_file().display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let prometheus = start_prometheus(
        &dir.path().join("prometheus.yml"),
        dir.path(),
        prometheus_port,
    );
    let api = format!("http://127.0.0.1:{prometheus_port}");
    wait_for(&format!("{api}/-/ready"), "prometheus");

    // Prometheus syncs targets 5 s after start; wait for five scrapes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count: serde_json::Value = client()
            .get(format!("{api}/api/v1/query"))
            .query(&[("query", "count_over_time(up[1m])")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let scrapes = count["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<u32>().ok());
        if scrapes.is_some_and(|n| n >= 5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape: {count}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let end = now_ms() - 1000;
    let window_ms = 4000;
    let response: serde_json::Value = client()
        .get(format!("{api}/api/v1/query"))
        .query(&[
            ("query", format!("{{__name__=~\".+\"}}[{window_ms}ms]")),
            ("time", format!("{:.3}", end as f64 / 1000.0)),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(response["status"], "success", "{response}");
    let mut theirs = Dump::new();
    for series in response["data"]["result"].as_array().unwrap() {
        let mut labels: Vec<(String, String)> = series["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        labels.sort();
        let samples = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let ts = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                let value: f64 = match pair[1].as_str().unwrap() {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap(),
                };
                (ts, value.to_bits())
            })
            .collect();
        theirs.insert(labels, samples);
    }
    assert!(
        theirs.len() > 100,
        "prometheus scraped only {} series",
        theirs.len()
    );

    // Stopping Prometheus flushes its remote-write queue; then stop ours.
    prometheus.terminate();
    assert!(receiver.terminate().success(), "{}", receiver.log());
    let storage = open_storage(&receiver.db_path());
    let selected = storage
        .select(
            &[Matcher::new("__name__", MatchOp::Regex, ".+").unwrap()],
            end - window_ms + 1,
            end,
        )
        .unwrap();
    let mut ours = Dump::new();
    for series in selected {
        let samples: Vec<(i64, u64)> = series
            .samples
            .iter()
            .map(|(t, v)| (*t, v.to_bits()))
            .filter(|(_, bits)| *bits != STALE_NAN)
            .collect();
        if !samples.is_empty() {
            ours.insert(series.labels.to_vec(), samples);
        }
    }
    let missing: Vec<_> = theirs
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = ours
        .keys()
        .filter(|k| !theirs.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "series differ: missing {missing:?}, extra {extra:?}"
    );
    for (labels, samples) in &theirs {
        // Prometheus renders values with Go's shortest formatting, which
        // round-trips; NaN payloads cannot be compared through JSON.
        let normalise = |s: &[(i64, u64)]| -> Vec<(i64, u64)> {
            s.iter()
                .map(|(t, b)| {
                    (
                        *t,
                        if f64::from_bits(*b).is_nan() {
                            f64::NAN.to_bits()
                        } else {
                            *b
                        },
                    )
                })
                .collect()
        };
        assert_eq!(
            normalise(samples),
            normalise(&ours[labels]),
            "samples of {labels:?}"
        );
    }
}
