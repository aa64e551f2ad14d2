//! The exporter's wire against real receivers: the shipper, every endpoint
//! left at `auto`, sends Remote-Write 2.0 (with metadata) to a dcmon
//! receiver and, after one 2.0 request Debian's Prometheus 2.42 answers
//! without the written headers (it takes only 1.0 and ignores the
//! `Content-Type`), 1.0 to that Prometheus; each stores every sample, read
//! back through its query API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcmon_exporter::shipper::{
    EndpointAuth, EndpointConfig, Shipper, ShipperConfig, ShipperMetrics, SpoolLimits, TargetLabels,
};
use dcmon_exporter::snapshot::{Snapshot, SnapshotSource};
use dcmon_testkit::{KillOnDrop, free_port, wait_for_port};
use serde_json::Value;
use tokio::sync::watch;

const INTERVAL: Duration = Duration::from_millis(500);
const SLOTS: usize = 30;
const INSTANCE: &str = "wire-test";

/// The same families every round: gauges whose value names their slot, so
/// a stored value shows it belongs to its series.
struct Fixed;

impl SnapshotSource for Fixed {
    async fn scrape(&self) -> Snapshot {
        let mut snapshot = Snapshot::new();
        for slot in 0..SLOTS {
            snapshot.gauge(
                "wire_test_slot_value",
                "A value naming its slot.",
                vec![("slot", slot.to_string())],
                slot as f64 + 0.25,
            );
        }
        snapshot.counter(
            "wire_test_rounds_total",
            "Rounds of the wire test.",
            vec![],
            7.0,
        );
        snapshot
    }
}

/// A dcmon receiver process in its own directory.
struct Receiver {
    _child: KillOnDrop,
    addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_dcmon-exporter"))
            .parent()
            .unwrap();
        let binary =
            dcmon_testkit::workspace_binary("dcmon-receiver", "dcmon-receiver", profile_dir);
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let token_file = dir.path().join("admin-token");
        let child = KillOnDrop(
            Command::new(binary)
                .arg("--web.listen-address")
                .arg(&addr)
                .arg("--storage.path")
                .arg(dir.path().join("dcmon.db"))
                .arg("--admin-token-file")
                .arg(&token_file)
                .arg("--self-scrape.interval=0s")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        assert!(
            wait_for_port(&addr, Duration::from_secs(30)),
            "the receiver did not listen: {}",
            std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
        );
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        Receiver {
            _child: child,
            addr,
            token,
            _dir: dir,
        }
    }
}

/// Debian's Prometheus with its remote-write receiver on.
struct Prometheus {
    _child: KillOnDrop,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start() -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
        let port = free_port();
        let child = dcmon_testkit::start_prometheus_with(
            &config,
            dir.path(),
            port,
            &["--web.enable-remote-write-receiver"],
        );
        let addr = format!("127.0.0.1:{port}");
        assert!(
            wait_for_port(&addr, Duration::from_secs(30)),
            "prometheus did not listen: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        Prometheus {
            _child: child,
            addr,
            _dir: dir,
        }
    }
}

fn shipper_config(state_dir: &Path, endpoints: Vec<EndpointConfig>) -> ShipperConfig {
    ShipperConfig {
        interval: INTERVAL,
        labels: TargetLabels {
            instance: INSTANCE.into(),
            job: "dcmon".into(),
            external: vec![],
        },
        endpoints,
        state_dir: state_dir.to_owned(),
        spool: SpoolLimits {
            max_bytes: 16 << 20,
            max_age: Duration::from_secs(3600),
        },
        timeout: Duration::from_secs(10),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
    }
}

/// One label of one sample of a family in the shipper's own metrics.
fn shipper_family(metrics: &ShipperMetrics, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Snapshot::new();
    metrics.collect(&mut out);
    out.get(name)
        .map(|f| {
            f.samples
                .iter()
                .map(|s| {
                    let labels = s
                        .labels
                        .iter()
                        .map(|(n, v)| ((*n).to_owned(), v.clone()))
                        .collect();
                    (labels, s.value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn per_endpoint(metrics: &ShipperMetrics, name: &str, url: &str, result: Option<&str>) -> f64 {
    shipper_family(metrics, name)
        .iter()
        .filter(|(labels, _)| labels.get("endpoint").map(String::as_str) == Some(url))
        .filter(|(labels, _)| {
            result.is_none_or(|r| labels.get("result").map(String::as_str) == Some(r))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn get_json(client: &reqwest::Client, url: &str, token: Option<&str>) -> Value {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

/// Every raw sample of `selector` over the last 10 minutes: series labels
/// to `(timestamp ms, value)`.
async fn raw_samples(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    selector: &str,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let query: String = url_escape(&format!("{selector}[10m]"));
    let answer = get_json(client, &format!("{base}/api/v1/query?query={query}"), token).await;
    assert_eq!(answer["status"], "success", "{answer}");
    assert_eq!(answer["data"]["resultType"], "matrix", "{answer}");
    answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(n, v)| format!("{n}={}", v.as_str().unwrap()))
                .collect::<Vec<_>>()
                .join(",");
            let samples = series["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
                    (t, v)
                })
                .collect();
            (labels, samples)
        })
        .collect()
}

/// Percent-encodes a query parameter.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks one store's copy of the fixed families against what the shipper
/// counted as acknowledged; returns the ticks stored.
async fn assert_stores_every_sample(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    sent: f64,
    batch_samples: f64,
) -> BTreeSet<i64> {
    let slots = raw_samples(
        client,
        base,
        token,
        &format!("wire_test_slot_value{{instance=\"{INSTANCE}\",job=\"dcmon\"}}"),
    )
    .await;
    assert_eq!(slots.len(), SLOTS, "{base}: series {:?}", slots.keys());
    let mut ticks: Option<BTreeSet<i64>> = None;
    for (labels, samples) in &slots {
        let slot: f64 = labels
            .split(',')
            .find_map(|pair| pair.strip_prefix("slot="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            samples.iter().all(|(_, v)| *v == slot + 0.25),
            "{base}: {labels} holds another series' values: {samples:?}"
        );
        let these: BTreeSet<i64> = samples.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            these.len(),
            samples.len(),
            "{base}: {labels} repeats a tick"
        );
        assert!(
            these.iter().all(|t| t % INTERVAL.as_millis() as i64 == 0),
            "{base}: {labels} off the tick grid: {these:?}"
        );
        match &ticks {
            None => ticks = Some(these),
            Some(first) => assert_eq!(first, &these, "{base}: {labels} misses ticks"),
        }
    }
    // Everything the endpoint acknowledged is stored: all of the job's
    // samples, the shipper's own included. A request in flight at shutdown
    // may have been stored without its answer being counted.
    let all = raw_samples(
        client,
        base,
        token,
        &format!("{{instance=\"{INSTANCE}\",job=\"dcmon\"}}"),
    )
    .await;
    let stored: usize = all.values().map(Vec::len).sum();
    assert!(
        stored as f64 == sent || stored as f64 == sent + batch_samples,
        "{base}: {stored} samples stored, {sent} acknowledged ({batch_samples} per batch)"
    );
    ticks.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_to_the_receiver_and_v1_to_prometheus_each_store_every_sample() {
    dcmon_web::install_crypto_provider();
    let (receiver, prometheus) =
        tokio::task::spawn_blocking(|| (Receiver::start(), Prometheus::start()))
            .await
            .unwrap();
    let receiver_url = format!("http://{}/api/v1/write", receiver.addr);
    let prometheus_url = format!("http://{}/api/v1/write", prometheus.addr);
    let token_dir = tempfile::tempdir().unwrap();
    let token_file: PathBuf = token_dir.path().join("token");
    std::fs::write(&token_file, &receiver.token).unwrap();
    let endpoints = vec![
        EndpointConfig::new(receiver_url.clone(), EndpointAuth::Bearer(token_file)),
        EndpointConfig::new(prometheus_url.clone(), EndpointAuth::None),
    ];
    let state = tempfile::tempdir().unwrap();
    let (stop, stopping) = watch::channel(false);
    let shipper = Shipper::start(
        shipper_config(state.path(), endpoints),
        Arc::new(Fixed),
        stopping,
    )
    .await
    .unwrap();
    let metrics = shipper.metrics();
    let deadline = Instant::now() + Duration::from_secs(30);
    while per_endpoint(
        &metrics,
        "dcmon_remote_write_samples_total",
        &prometheus_url,
        Some("sent"),
    ) < 6.0 * SLOTS as f64
        || per_endpoint(
            &metrics,
            "dcmon_remote_write_samples_total",
            &receiver_url,
            Some("sent"),
        ) < 6.0 * SLOTS as f64
    {
        assert!(
            Instant::now() < deadline,
            "too few samples acknowledged: {:?}",
            shipper_family(&metrics, "dcmon_remote_write_samples_total")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    shipper.stopped().await;

    let messages: BTreeMap<String, String> =
        shipper_family(&metrics, "dcmon_remote_write_protobuf_message_info")
            .into_iter()
            .map(|(labels, _)| {
                (
                    labels["endpoint"].clone(),
                    labels["protobuf_message"].clone(),
                )
            })
            .collect();
    assert_eq!(messages[&receiver_url], "io.prometheus.write.v2.Request");
    assert_eq!(messages[&prometheus_url], "prometheus.WriteRequest");
    for url in [&receiver_url, &prometheus_url] {
        for result in ["dropped", "failed"] {
            assert_eq!(
                per_endpoint(
                    &metrics,
                    "dcmon_remote_write_samples_total",
                    url,
                    Some(result)
                ),
                0.0,
                "{url} {result}"
            );
        }
    }

    // A batch is the fixed families plus the shipper's own metrics.
    let batch_samples = {
        let mut snapshot = Fixed.scrape().await;
        dcmon_exporter::self_metrics::collect(&mut snapshot);
        metrics.collect(&mut snapshot);
        snapshot.sample_count() as f64
    };
    let client = reqwest::Client::new();
    let at_receiver = assert_stores_every_sample(
        &client,
        &format!("http://{}", receiver.addr),
        Some(&receiver.token),
        per_endpoint(
            &metrics,
            "dcmon_remote_write_samples_total",
            &receiver_url,
            Some("sent"),
        ),
        batch_samples,
    )
    .await;
    let at_prometheus = assert_stores_every_sample(
        &client,
        &format!("http://{}", prometheus.addr),
        None,
        per_endpoint(
            &metrics,
            "dcmon_remote_write_samples_total",
            &prometheus_url,
            Some("sent"),
        ),
        batch_samples,
    )
    .await;
    // Both were handed the same batches; the first one Prometheus got as
    // 2.0 (and ignored) reached it again as 1.0. Only a batch cut off by
    // the shutdown may be missing at one of them.
    let differ: Vec<_> = at_receiver.symmetric_difference(&at_prometheus).collect();
    assert!(
        differ.len() <= 1
            && differ
                .iter()
                .all(|t| **t == *at_receiver.iter().chain(&at_prometheus).max().unwrap()),
        "receiver {at_receiver:?}, prometheus {at_prometheus:?}"
    );

    // 2.0 carried the families' type and help to the receiver.
    let metadata = get_json(
        &client,
        &format!("http://{}/api/v1/metadata", receiver.addr),
        Some(&receiver.token),
    )
    .await;
    let entry = |family: &str| metadata["data"][family][0].clone();
    assert_eq!(entry("wire_test_slot_value")["type"], "gauge", "{metadata}");
    assert_eq!(
        entry("wire_test_slot_value")["help"],
        "A value naming its slot."
    );
    assert_eq!(
        entry("wire_test_rounds_total")["type"],
        "counter",
        "{metadata}"
    );
    assert_eq!(
        entry("dcmon_remote_write_bytes_total")["type"],
        "counter",
        "{metadata}"
    );
}
