//! `POST /api/v1/write` over loopback: both protocol versions round-trip
//! bit-exactly into storage; every malformed request gets its documented
//! status and stores nothing.

use dcmon_protocol::prompb;
use dcmon_protocol::remote_write::{Version, compress, encode_v1, encode_v2};
use dcmon_receiver::storage::index::{MatchOp, Matcher};
use prost::Message;

use crate::common::{Receiver, now_ms, open_storage, series, write_headers};

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn all() -> Vec<Matcher> {
    vec![Matcher::new("__name__", MatchOp::Regex, ".+").unwrap()]
}

/// Stops the receiver gracefully and reads everything back through the
/// storage read path: labels → (timestamp, value bits).
/// A stored series: labels and `(timestamp, value bits)`.
type StoredSeries = (Vec<(String, String)>, Vec<(i64, u64)>);

fn stored(mut receiver: Receiver) -> Vec<StoredSeries> {
    assert!(
        receiver.terminate().success(),
        "graceful stop:\n{}",
        receiver.log()
    );
    let storage = open_storage(&receiver.db_path());
    storage
        .select(&all(), 0, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.labels.to_vec(),
                s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
            )
        })
        .collect()
}

#[test]
fn both_versions_round_trip_bit_exactly() {
    let now = now_ms();
    for version in [Version::V1, Version::V2] {
        let receiver = Receiver::start(&[]);
        let batch = vec![
            series(
                &[
                    ("__name__", "node_load1"),
                    ("instance", "gpu01"),
                    ("job", "dcmon"),
                ],
                &[
                    (now - 60_000, 0.21),
                    (now - 30_000, f64::NAN),
                    (now, f64::from_bits(STALE_NAN)),
                ],
            ),
            series(
                &[("__name__", "nvidia_smi_temperature_gpu"), ("uuid", "abc")],
                &[(now, f64::MIN_POSITIVE / 2.0), (now - 1, f64::INFINITY)],
            ),
        ];
        let response = receiver.write(version, &batch);
        match version {
            Version::V1 => assert_eq!(response.status, 204, "{}", response.body),
            Version::V2 => {
                assert_eq!(response.status, 200, "{}", response.body);
                assert_eq!(
                    response.headers["x-prometheus-remote-write-samples-written"],
                    "5"
                );
                assert_eq!(
                    response.headers["x-prometheus-remote-write-histograms-written"],
                    "0"
                );
                assert_eq!(
                    response.headers["x-prometheus-remote-write-exemplars-written"],
                    "0"
                );
            }
        }
        let got = stored(receiver);
        assert_eq!(got.len(), 2);
        let load = got
            .iter()
            .find(|(l, _)| l.iter().any(|(_, v)| v == "node_load1"))
            .unwrap();
        assert_eq!(
            load.1,
            vec![
                (now - 60_000, 0.21f64.to_bits()),
                (now - 30_000, f64::NAN.to_bits()),
                (now, STALE_NAN)
            ]
        );
        let temp = got
            .iter()
            .find(|(l, _)| l.iter().any(|(_, v)| v == "abc"))
            .unwrap();
        assert_eq!(
            temp.1,
            vec![
                (now - 1, f64::INFINITY.to_bits()),
                (now, (f64::MIN_POSITIVE / 2.0).to_bits())
            ]
        );
    }
}

#[test]
fn resent_and_late_samples_are_harmless() {
    let receiver = Receiver::start(&[]);
    let now = now_ms();
    let labels = [("__name__", "up"), ("instance", "gpu01")];
    assert_eq!(
        receiver
            .write(Version::V1, &[series(&labels, &[(now, 1.0)])])
            .status,
        204
    );
    // The same batch again, then a corrected value, then a day-old sample.
    assert_eq!(
        receiver
            .write(Version::V1, &[series(&labels, &[(now, 1.0)])])
            .status,
        204
    );
    assert_eq!(
        receiver
            .write(Version::V2, &[series(&labels, &[(now, 0.0)])])
            .status,
        200
    );
    assert_eq!(
        receiver
            .write(Version::V1, &[series(&labels, &[(now - 86_400_000, 1.0)])])
            .status,
        204
    );
    let got = stored(receiver);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].1,
        vec![
            (now - 86_400_000, 1.0f64.to_bits()),
            (now, 0.0f64.to_bits())
        ]
    );
}

#[test]
fn malformed_requests_get_their_status_and_store_nothing() {
    let receiver = Receiver::start(&["--web.max-request-bytes", "4096"]);
    let token = receiver.token.clone();
    let now = now_ms();
    let good = |labels: &[(&str, &str)]| compress(&encode_v1(&[series(labels, &[(now, 1.0)])]));
    let v1 = write_headers(Version::V1);
    let v2 = write_headers(Version::V2);
    let duplicate = {
        let request = prompb::WriteRequest {
            timeseries: vec![prompb::TimeSeries {
                labels: [("__name__", "up"), ("job", "a"), ("job", "b")]
                    .iter()
                    .map(|(n, v)| prompb::Label {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: vec![prompb::Sample {
                    value: 1.0,
                    timestamp: now,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        };
        compress(&request.encode_to_vec())
    };
    // As many labels as a series may have (--write.max-labels-per-series).
    let big: Vec<(String, String)> = (0..63)
        .map(|i| (format!("l{i:03}"), "x".repeat(40)))
        .collect();
    let big_refs: Vec<(&str, &str)> = std::iter::once(("__name__", "up"))
        .chain(big.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .collect();
    let oversized: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let future = compress(&encode_v2(&[series(
        &[("__name__", "up")],
        &[(now + 3_600_000, 1.0)],
    )]));
    let ancient = compress(&encode_v1(&[series(
        &[("__name__", "up")],
        &[(now - 30 * 86_400_000, 1.0)],
    )]));
    // (what, headers, body, token, expected status)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        Option<&'a str>,
        u16,
    );
    let cases: Vec<Case> = vec![
        (
            "no token",
            v1.clone(),
            good(&[("__name__", "up")]),
            None,
            401,
        ),
        (
            "wrong token",
            v1.clone(),
            good(&[("__name__", "up")]),
            Some("x".repeat(64).leak()),
            401,
        ),
        (
            "bad snappy",
            v1.clone(),
            b"\x0a\xff\xff\xff\xff\xff".to_vec(),
            Some(&token),
            400,
        ),
        (
            "bad protobuf",
            v1.clone(),
            compress(b"\x0a\xff\xff\xff\x0f"),
            Some(&token),
            400,
        ),
        (
            "bad protobuf v2",
            v2.clone(),
            compress(b"\x22\xff\xff\xff\x0f"),
            Some(&token),
            400,
        ),
        (
            "missing __name__",
            v1.clone(),
            good(&[("job", "x")]),
            Some(&token),
            400,
        ),
        ("duplicate label", v1.clone(), duplicate, Some(&token), 400),
        (
            "empty label name",
            v2.clone(),
            compress(&encode_v2(&[series(
                &[("__name__", "up"), ("", "x")],
                &[(now, 1.0)],
            )])),
            Some(&token),
            400,
        ),
        (
            "oversized body",
            v1.clone(),
            compress(&oversized),
            Some(&token),
            413,
        ),
        (
            "oversized when decompressed",
            v1.clone(),
            compress(&vec![0u8; 64 * 1024]),
            Some(&token),
            413,
        ),
        (
            "big but fine labels",
            v1.clone(),
            good(&big_refs),
            Some(&token),
            204,
        ),
        (
            "wrong content type",
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "snappy"),
            ],
            good(&[("__name__", "up")]),
            Some(&token),
            415,
        ),
        (
            "unknown proto",
            vec![
                (
                    "content-type",
                    "application/x-protobuf;proto=io.prometheus.write.v9.Request",
                ),
                ("content-encoding", "snappy"),
            ],
            good(&[("__name__", "up")]),
            Some(&token),
            415,
        ),
        (
            "wrong content encoding",
            vec![
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ],
            good(&[("__name__", "up")]),
            Some(&token),
            415,
        ),
        (
            "sample far in the future",
            v2.clone(),
            future,
            Some(&token),
            400,
        ),
        (
            "sample past retention",
            v1.clone(),
            ancient,
            Some(&token),
            400,
        ),
    ];
    for (what, headers, body, token, expected) in cases {
        let response = receiver.write_raw(token, &headers, body);
        assert_eq!(response.status, expected, "{what}: {}", response.body);
        if expected >= 400 && expected != 401 {
            assert!(
                !response.body.trim().is_empty(),
                "{what}: the error says why"
            );
        }
        if headers.iter().any(|(_, v)| v.contains("write.v2.Request")) {
            let written = &response.headers["x-prometheus-remote-write-samples-written"];
            assert_eq!(written, if expected < 300 { "1" } else { "0" }, "{what}");
        }
    }
    let (_, stats) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(
        stats["series"], 1,
        "only the one valid request stored a series: {stats}"
    );
    assert_eq!(stats["samples"], 1);
    let rejected = &stats["ingest"]["rejected"];
    for reason in [
        "bad_snappy",
        "bad_protobuf",
        "missing_metric_name",
        "duplicate_label",
        "too_large",
        "unsupported_content_type",
        "too_far_in_future",
        "too_old",
    ] {
        assert!(
            rejected[reason].as_f64().unwrap_or(0.0) >= 1.0,
            "{reason} counted: {stats}"
        );
    }
}

#[test]
fn stats_health_and_metrics_describe_the_store() {
    let receiver = Receiver::start(&[]);
    let now = now_ms();
    let batch: Vec<_> = (0..10)
        .map(|i| {
            series(
                &[
                    ("__name__", "node_load1"),
                    ("instance", &format!("gpu{i:02}")),
                ],
                &[(now - 30_000, 0.5), (now, 1.5)],
            )
        })
        .collect();
    assert_eq!(receiver.write(Version::V1, &batch).status, 204);
    let (status, stats) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["series"], 10);
    assert_eq!(stats["samples"], 20);
    assert_eq!(stats["oldest_timestamp_ms"], now - 30_000);
    assert_eq!(stats["newest_timestamp_ms"], now);
    assert!(stats["db_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["ingest"]["samples"], 20);
    let (status, health) = receiver.get_json("/health");
    assert_eq!((status, health["database"].as_str()), (200, Some("ok")));
    let text = receiver.metrics_text();
    assert!(
        text.contains("dcmon_receiver_ingested_samples_total 20"),
        "{text}"
    );
    assert!(text.contains("dcmon_receiver_series 10"), "{text}");
    assert!(
        text.contains("dcmon_receiver_request_duration_seconds_bucket{"),
        "{text}"
    );
}
