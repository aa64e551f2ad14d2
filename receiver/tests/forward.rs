//! Forwarding accepted writes upstream (`--remote-write.forward.url`),
//! against Debian's VictoriaMetrics single-node (the ingest and export API
//! of a cluster's vminsert and vmselect) and Debian's Prometheus with its
//! remote-write receiver: every accepted sample arrives once, with the
//! enrolled host's labels; an upstream outage loses nothing within the
//! queue's bound; a queue past its bound drops its oldest batches and
//! counts them. Writes are acknowledged whatever the upstream does.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::{self, FamilyMetadata, SeriesSamples, Version};

use crate::common::hosts::Host;
use crate::common::peer::{Process, free_port, wait_for};
use crate::common::{Receiver, client, now_ms, series, write_headers};

/// Debian's `victoria-metrics` on a fixed loopback port and data
/// directory, so it can be stopped and started again as the same upstream.
struct VictoriaMetrics {
    process: Option<Process>,
    port: u16,
    dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    /// Started on a fresh port.
    fn start() -> Self {
        Self::on_port(free_port())
    }

    /// Started on `port`.
    fn on_port(port: u16) -> Self {
        let mut vm = VictoriaMetrics {
            process: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        vm.resume();
        vm
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base())
    }

    fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("vm.log"))
            .unwrap();
        let child = Command::new("victoria-metrics")
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg("-retentionPeriod=30d")
            // Export what was written up to now, not only what is 30 s old.
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("victoria-metrics is not installed (apt-get install victoria-metrics)");
        self.process = Some(Process(child));
        wait_for(&format!("{}/health", self.base()), "victoria-metrics");
    }

    /// SIGTERM and wait: the upstream is down.
    fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.terminate();
        }
    }

    /// Every raw sample of the series `selector` matches, by series (its
    /// labels as `name=value,…`): `/api/v1/export` returns what was
    /// ingested, sample for sample.
    fn export(&self, selector: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        let text = client()
            .get(format!("{}/api/v1/export", self.base()))
            .query(&[("match[]", selector)])
            .send()
            .unwrap()
            .text()
            .unwrap();
        let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let labels: BTreeMap<String, String> = row["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let key = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let values = row["values"].as_array().unwrap();
            let stamps = row["timestamps"].as_array().unwrap();
            let samples = out.entry(key).or_default();
            for (t, v) in stamps.iter().zip(values) {
                samples.push((t.as_i64().unwrap(), v.as_f64().unwrap()));
            }
        }
        for samples in out.values_mut() {
            samples.sort_by_key(|(t, _)| *t);
        }
        out
    }

    fn sample_count(&self, selector: &str) -> usize {
        self.export(selector).values().map(Vec::len).sum()
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` every 100 ms for up to 60 s; panics with `what` and the
/// receiver's log when it never holds.
fn eventually(receiver: &Receiver, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; receiver log:\n{}",
            receiver.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A value of the receiver's forwarding metrics for `upstream`.
fn forward_metric(receiver: &Receiver, family: &str, upstream: &str, result: Option<&str>) -> f64 {
    let text = receiver.metrics_text();
    let upstream_label = format!("upstream=\"{upstream}\"");
    text.lines()
        .filter(|line| line.starts_with(&format!("dcmon_receiver_{family}{{")))
        .filter(|line| line.contains(&upstream_label))
        .find(|line| result.is_none_or(|r| line.contains(&format!("result=\"{r}\""))))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {family} for {upstream} ({result:?}) in:\n{text}"))
}

/// Writes `series` as Remote-Write 1.0 with `token`; the status.
fn write(receiver: &Receiver, token: &str, series: &[SeriesSamples]) -> u16 {
    receiver
        .write_raw(
            Some(token),
            &write_headers(Version::V1),
            remote_write::compress(&remote_write::encode_v1(series)),
        )
        .status
}

/// `count` requests of one series `name{n="i"}` each, one sample per
/// request at `start + i` seconds with value `i`.
fn numbered(name: &str, start_ms: i64, count: usize) -> Vec<Vec<SeriesSamples>> {
    (0..count)
        .map(|i| {
            vec![series(
                &[("__name__", name), ("n", &i.to_string())],
                &[(start_ms + i as i64 * 1000, i as f64)],
            )]
        })
        .collect()
}

#[test]
fn every_accepted_sample_reaches_each_upstream_once_with_the_host_labels_enforced() {
    let vm = VictoriaMetrics::start();
    // The second upstream: Prometheus 2.42, which takes only 1.0 (the
    // default `auto` finds that out and falls back).
    let prom_dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    let config = prom_dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let _prometheus = dcmon_testkit::start_prometheus_with(
        &config,
        prom_dir.path(),
        prom_port,
        &["--web.enable-remote-write-receiver"],
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    wait_for(&format!("{prom}/-/ready"), "prometheus");
    let prom_write = format!("{prom}/api/v1/write");

    let receiver = Receiver::start(&[
        &format!("--remote-write.forward.url={}", vm.write_url()),
        &format!("--remote-write.forward.url={prom_write}"),
        "--remote-write.forward.batch-send-deadline=100ms",
    ]);
    let host = Host::enrol(&receiver, 0, "fwd-gpu-01");
    let start = now_ms() - 60_000;
    // Four writes of two series, three samples each; the host claims
    // another instance, which the receiver overrides before forwarding.
    let mut sent: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for request in 0..4i64 {
        let batch: Vec<SeriesSamples> = ["a", "b"]
            .iter()
            .map(|name| {
                let samples: Vec<(i64, f64)> = (0..3i64)
                    .map(|i| {
                        let t = start + (request * 3 + i) * 1000;
                        (t, (request * 10 + i) as f64 + 0.5)
                    })
                    .collect();
                sent.entry(name.to_string())
                    .or_default()
                    .extend(samples.iter().copied());
                series(
                    &[
                        ("__name__", "fwd_once"),
                        ("series", name),
                        ("instance", "someone-else"),
                    ],
                    &samples,
                )
            })
            .collect();
        assert_eq!(write(&receiver, &host.token(), &batch), 204);
    }
    // A refused write (a sample an hour ahead) is not forwarded.
    let ahead = series(
        &[("__name__", "fwd_once"), ("series", "refused")],
        &[(now_ms() + 3_600_000, 1.0)],
    );
    assert_eq!(write(&receiver, &host.token(), &[ahead]), 400);

    let total = 24.0;
    for upstream in [vm.write_url(), prom_write.clone()] {
        eventually(
            &receiver,
            &format!("all samples sent to {upstream}"),
            || forward_metric(&receiver, "forward_samples_total", &upstream, Some("sent")) >= total,
        );
    }
    eventually(&receiver, "VictoriaMetrics holding every sample", || {
        vm.sample_count("fwd_once") >= 24
    });
    let exported = vm.export("fwd_once");
    let expected: BTreeMap<String, Vec<(i64, f64)>> = sent
        .into_iter()
        .map(|(name, samples)| {
            (
                format!("__name__=fwd_once,instance=fwd-gpu-01,series={name}"),
                samples,
            )
        })
        .collect();
    assert_eq!(exported, expected);

    // Prometheus holds the same samples under the same labels.
    let answer: serde_json::Value = client()
        .get(format!("{prom}/api/v1/query"))
        .query(&[
            ("query", "fwd_once[10m]"),
            ("time", &format!("{}", now_ms() as f64 / 1000.0)),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut from_prometheus: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for row in answer["data"]["result"].as_array().unwrap() {
        let labels: BTreeMap<&str, &str> = row["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let samples = row["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, pair[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        from_prometheus.insert(key, samples);
    }
    assert_eq!(from_prometheus, expected, "{answer}");

    // Exactly once: nothing more was acknowledged, nothing failed for
    // good, and Prometheus is now sent 1.0.
    for upstream in [vm.write_url(), prom_write.clone()] {
        let metric =
            |result| forward_metric(&receiver, "forward_samples_total", &upstream, Some(result));
        assert_eq!(metric("sent"), total, "{upstream}");
        assert_eq!(metric("dropped"), 0.0, "{upstream}");
        assert!(forward_metric(&receiver, "forward_bytes_total", &upstream, None) > 0.0);
        assert!(
            forward_metric(
                &receiver,
                "forward_last_success_timestamp_seconds",
                &upstream,
                None
            ) > 0.0
        );
    }
    assert!(
        receiver.metrics_text().contains(&format!(
            "dcmon_receiver_forward_protobuf_message_info{{upstream=\"{prom_write}\",protobuf_message=\"prometheus.WriteRequest\",setting=\"auto\"}} 1"
        )),
        "{}",
        receiver.metrics_text()
    );
}

#[test]
fn an_upstream_outage_loses_nothing_within_the_queue_bound() {
    let mut vm = VictoriaMetrics::start();
    let receiver = Receiver::start(&[
        &format!("--remote-write.forward.url={}", vm.write_url()),
        "--remote-write.forward.protobuf-message=v1",
        "--remote-write.forward.batch-send-deadline=100ms",
    ]);
    let upstream = vm.write_url();
    let requests = numbered("fwd_outage", now_ms() - 120_000, 8);
    assert_eq!(write(&receiver, &receiver.token, &requests[0]), 204);
    eventually(&receiver, "the first sample sent", || {
        forward_metric(&receiver, "forward_samples_total", &upstream, Some("sent")) >= 1.0
    });

    vm.stop();
    // Several intervals of writes while the upstream is down: each is
    // acknowledged as usual and waits in the queue.
    for (i, request) in requests[1..].iter().enumerate() {
        assert_eq!(write(&receiver, &receiver.token, request), 204);
        if i % 3 == 2 {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    eventually(&receiver, "failed attempts and a queue on disk", || {
        forward_metric(
            &receiver,
            "forward_samples_total",
            &upstream,
            Some("failed"),
        ) > 0.0
            && forward_metric(&receiver, "forward_queue_bytes", &upstream, None) > 0.0
    });
    assert!(forward_metric(&receiver, "forward_queue_age_seconds", &upstream, None) >= 0.0);

    vm.resume();
    eventually(&receiver, "every sample delivered after the outage", || {
        forward_metric(&receiver, "forward_samples_total", &upstream, Some("sent")) >= 8.0
    });
    eventually(&receiver, "VictoriaMetrics holding every sample", || {
        vm.sample_count("fwd_outage") >= 8
    });
    let exported = vm.export("fwd_outage");
    let values: Vec<f64> = exported.values().flatten().map(|(_, v)| *v).collect();
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(
        sorted,
        (0..8).map(f64::from).collect::<Vec<_>>(),
        "{exported:?}"
    );
    assert_eq!(
        forward_metric(&receiver, "forward_samples_total", &upstream, Some("sent")),
        8.0
    );
    assert_eq!(
        forward_metric(
            &receiver,
            "forward_samples_total",
            &upstream,
            Some("dropped")
        ),
        0.0
    );
    eventually(&receiver, "an empty queue", || {
        forward_metric(&receiver, "forward_queue_bytes", &upstream, None) == 0.0
            && forward_metric(&receiver, "forward_queue_age_seconds", &upstream, None) == 0.0
    });
}

#[test]
fn a_queue_past_its_bound_drops_the_oldest_batches_and_counts_them() {
    // The upstream is down from the start; its port is free.
    let port = free_port();
    let upstream = format!("http://127.0.0.1:{port}/api/v1/write");
    let receiver = Receiver::start(&[
        &format!("--remote-write.forward.url={upstream}"),
        "--remote-write.forward.protobuf-message=v1",
        // Every write is a batch of its own, and the queue holds about two.
        "--remote-write.forward.max-samples-per-send=1",
        "--remote-write.forward.queue.max-bytes=400",
    ]);
    let requests = numbered("fwd_bounded", now_ms() - 120_000, 8);
    for request in &requests {
        assert_eq!(write(&receiver, &receiver.token, request), 204);
    }
    eventually(&receiver, "the oldest batches dropped", || {
        forward_metric(
            &receiver,
            "forward_samples_total",
            &upstream,
            Some("dropped"),
        ) >= 1.0
    });
    let queued = forward_metric(&receiver, "forward_queue_bytes", &upstream, None);
    assert!(queued > 0.0 && queued <= 400.0, "queue of {queued} bytes");

    let vm = VictoriaMetrics::on_port(port);
    let metric =
        |result| forward_metric(&receiver, "forward_samples_total", &upstream, Some(result));
    eventually(&receiver, "every sample sent or dropped", || {
        metric("sent") + metric("dropped") >= 8.0
            && forward_metric(&receiver, "forward_queue_bytes", &upstream, None) == 0.0
    });
    let (sent, dropped) = (metric("sent"), metric("dropped"));
    assert_eq!(sent + dropped, 8.0);
    assert!(dropped >= 4.0, "a 400-byte queue kept {sent} batches");
    eventually(&receiver, "VictoriaMetrics holding what was kept", || {
        vm.sample_count("fwd_bounded") >= sent as usize
    });
    let mut kept: Vec<f64> = vm
        .export("fwd_bounded")
        .values()
        .flatten()
        .map(|(_, v)| *v)
        .collect();
    kept.sort_by(f64::total_cmp);
    // The newest writes were kept, the oldest dropped.
    let newest: Vec<f64> = (8 - sent as i32..8).map(f64::from).collect();
    assert_eq!(kept, newest);
}

#[test]
fn forward_only_keeps_no_samples_but_hosts_metadata_and_commands_work() {
    let vm = VictoriaMetrics::start();
    let receiver = Receiver::start(&[
        "--storage.mode=forward-only",
        &format!("--remote-write.forward.url={}", vm.write_url()),
        "--remote-write.forward.batch-send-deadline=100ms",
    ]);
    let host = Host::enrol(&receiver, 1, "fwd-only-01");
    let start = now_ms() - 30_000;
    let samples: Vec<(i64, f64)> = (0..3).map(|i| (start + i * 1000, i as f64)).collect();
    let body = remote_write::encode_v2_with_metadata(
        &[series(&[("__name__", "fwd_only")], &samples)],
        &[FamilyMetadata {
            family: "fwd_only".into(),
            kind: "gauge",
            help: "A gauge kept only upstream.".into(),
            unit: String::new(),
        }],
    );
    let answer = receiver.write_raw(
        Some(&host.token()),
        &write_headers(Version::V2),
        remote_write::compress(&body),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.headers["x-prometheus-remote-write-samples-written"],
        "3"
    );

    eventually(&receiver, "VictoriaMetrics holding the samples", || {
        vm.sample_count("fwd_only") >= 3
    });
    assert_eq!(
        vm.export("fwd_only"),
        BTreeMap::from([("__name__=fwd_only,instance=fwd-only-01".to_owned(), samples)])
    );
    // Nothing of it in SQLite; its metadata is.
    assert!(
        receiver
            .query_result(&receiver.token, &[("query", "fwd_only")])
            .is_empty()
    );
    let (status, stats) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["ingest"]["samples"], 3, "{stats}");
    let (status, metadata) = receiver.get_json("/api/v1/metadata?metric=fwd_only");
    assert_eq!(status, 200);
    assert_eq!(
        metadata["data"]["fwd_only"][0]["help"], "A gauge kept only upstream.",
        "{metadata}"
    );
    // The host is known and seen, and takes commands.
    let (status, clients) = receiver.get_json("/api/dcmon/clients");
    assert_eq!(status, 200);
    assert!(clients.to_string().contains("fwd-only-01"), "{clients}");
    let created = client()
        .post(receiver.url("/api/dcmon/commands"))
        .bearer_auth(&receiver.token)
        .json(
            &serde_json::json!({"client": "fwd-only-01", "type": "fan_control",
               "params": {"action": "set_zone_duty", "zone": 0, "duty": 60}}),
        )
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let delivered = client()
        .get(receiver.url("/api/dcmon/commands/next?timeout=1s"))
        .bearer_auth(host.token())
        .send()
        .unwrap();
    assert_eq!(delivered.status().as_u16(), 200);
    let delivered: serde_json::Value = delivered.json().unwrap();
    assert_eq!(delivered["command"]["params"]["duty"], 60, "{delivered}");
}

/// GET `base` + `path` with `query` and an optional bearer token; the
/// status and JSON answer.
fn get_json(
    base: &str,
    path: &str,
    query: &[(&str, String)],
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = client().get(format!("{base}{path}")).query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn the_query_api_answers_through_the_upstream_behind_dcmons_tokens() {
    let vm = VictoriaMetrics::start();
    let receiver = Receiver::start(&[
        "--storage.mode=forward-only",
        &format!("--remote-write.forward.url={}", vm.write_url()),
        "--remote-write.forward.batch-send-deadline=100ms",
        &format!("--query.upstream.url={}", vm.base()),
    ]);
    let end = now_ms() / 1000 * 1000;
    let start = end - 300_000;
    let batch: Vec<SeriesSamples> = (0..2)
        .map(|n| {
            let samples: Vec<(i64, f64)> = (0..10)
                .map(|i| (start + i * 30_000, (n * 100 + i) as f64))
                .collect();
            series(
                &[
                    ("__name__", "fwd_read"),
                    ("n", &n.to_string()),
                    ("job", "fleet"),
                ],
                &samples,
            )
        })
        .collect();
    assert_eq!(write(&receiver, &receiver.token, &batch), 204);
    eventually(&receiver, "VictoriaMetrics holding the samples", || {
        vm.sample_count("fwd_read") >= 20
    });
    let read = receiver.create_token("grafana", "read");
    let base = format!("http://{}", receiver.addr);
    let (start_s, end_s) = ((start / 1000).to_string(), (end / 1000).to_string());
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "/api/v1/query",
            vec![
                ("query", "sum by (job) (fwd_read)".into()),
                ("time", end_s.clone()),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "fwd_read".into()),
                ("start", start_s.clone()),
                ("end", end_s.clone()),
                ("step", "60".into()),
            ],
        ),
        (
            "/api/v1/series",
            vec![
                ("match[]", "fwd_read".into()),
                ("start", start_s.clone()),
                ("end", end_s.clone()),
            ],
        ),
        (
            "/api/v1/labels",
            vec![
                ("match[]", "fwd_read".into()),
                ("start", start_s.clone()),
                ("end", end_s.clone()),
            ],
        ),
        (
            "/api/v1/label/n/values",
            vec![
                ("match[]", "fwd_read".into()),
                ("start", start_s.clone()),
                ("end", end_s.clone()),
            ],
        ),
    ];
    for (path, query) in &cases {
        let (status, theirs) = get_json(&vm.base(), path, query, None);
        assert_eq!(status, 200, "{path}: {theirs}");
        let data = &theirs["data"];
        let empty = data.as_array().is_some_and(Vec::is_empty)
            || data["result"].as_array().is_some_and(Vec::is_empty);
        assert!(!empty, "{path}: VictoriaMetrics found nothing: {theirs}");
        let (status, ours) = get_json(&base, path, query, Some(&read));
        assert_eq!(status, 200, "{path}: {ours}");
        assert_eq!(ours["data"], theirs["data"], "{path}");
        // dcmon's tokens still guard it.
        assert_eq!(get_json(&base, path, query, None).0, 401, "{path}");
    }
    // A form POST goes through as well.
    let posted: serde_json::Value = client()
        .post(format!("{base}/api/v1/query"))
        .bearer_auth(&read)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            reqwest::Url::parse_with_params("http://form/", &cases[0].1)
                .unwrap()
                .query()
                .unwrap()
                .to_owned(),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        posted["data"],
        get_json(&vm.base(), cases[0].0, &cases[0].1, None).1["data"]
    );
    // The upstream's own refusal comes back in Prometheus's shape, named.
    let (status, refused) = get_json(
        &base,
        "/api/v1/query",
        &[("query", "sum(".into())],
        Some(&read),
    );
    let (their_status, _) = get_json(
        &vm.base(),
        "/api/v1/query",
        &[("query", "sum(".into())],
        None,
    );
    assert!(their_status >= 400, "VictoriaMetrics took sum(");
    assert_eq!(status, their_status, "{refused}");
    assert_eq!(refused["status"], "error");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains(&format!("upstream {}", vm.base())),
        "{refused}"
    );

    // An upstream that is down: 503 naming it; the receiver's own series
    // are still answered here.
    let down = format!("http://127.0.0.1:{}", free_port());
    let alone = Receiver::start(&[&format!("--query.upstream.url={down}")]);
    let (status, answer) = get_json(
        &format!("http://{}", alone.addr),
        "/api/v1/query",
        &[("query", "node_load1".into())],
        Some(&alone.token),
    );
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["status"], "error");
    assert_eq!(answer["errorType"], "unavailable");
    assert!(
        answer["error"].as_str().unwrap().contains(&down),
        "{answer}"
    );
    let (status, answer) = get_json(
        &format!("http://{}", alone.addr),
        "/api/v1/query",
        &[("query", "up{job=\"dcmon\"} == 0".into())],
        Some(&alone.token),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["resultType"], "vector");
}

#[test]
fn forwarding_settings_are_checked_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("x.db").display()
            ))
            .arg(format!(
                "--admin-token-file={}",
                dir.path().join("token").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let config = dir.path().join("receiver.toml");
    std::fs::write(
        &config,
        "[[forward]]\nurl = \"http://a/api/v1/write\"\nbearer_token_file = \"/t\"\nbasic_auth = { username = \"u\", password_file = \"/p\" }\n",
    )
    .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--remote-write.forward.url=ftp://x/y".into()],
            "only http and https",
        ),
        (
            vec!["--remote-write.forward.protobuf-message=v3".into()],
            "expected v1",
        ),
        (
            vec!["--remote-write.forward.bearer-token-file=/t".into()],
            "no --remote-write.forward.url",
        ),
        (
            vec!["--storage.mode=forward-only".into()],
            "needs an upstream",
        ),
        (
            vec!["--query.upstream.url=ftp://x".into()],
            "only http and https",
        ),
        (
            vec!["--query.upstream.bearer-token-file=/t".into()],
            "no --query.upstream.url",
        ),
        (
            vec![format!("--config.file={}", config.display())],
            "bearer_token_file and basic_auth exclude each other",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
