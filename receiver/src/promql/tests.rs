//! Engine behaviour the conformance corpus does not pin down: error kinds,
//! limits and annotations.

use dcmon_protocol::remote_write::SeriesSamples;

use super::{Engine, EngineOptions, QueryErrorKind, Value};
use crate::storage::{Options, Storage};

fn engine_with(
    series: &[(&str, &[(i64, f64)])],
    options: EngineOptions,
) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("q.db"), Options::default()).unwrap();
    let batch = series
        .iter()
        .map(|(name, samples)| SeriesSamples {
            labels: vec![
                ("__name__".into(), (*name).into()),
                ("job".into(), "x".into()),
            ],
            samples: samples.to_vec(),
        })
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(storage.append(batch, Vec::new()))
        .unwrap();
    (Engine::new(storage, options), dir)
}

const RAMP: &[(i64, f64)] = &[(0, 0.0), (60_000, 10.0), (120_000, 20.0)];

#[test]
fn rate_of_a_gauge_name_adds_an_info() {
    let (engine, _dir) = engine_with(
        &[("temp", RAMP), ("reqs_total", RAMP)],
        EngineOptions::default(),
    );
    let result = engine.instant_query("rate(temp[5m])", 120_000).unwrap();
    assert_eq!(
        result.infos,
        [
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"temp\" (1:6)"
        ]
    );
    let result = engine
        .instant_query("rate(reqs_total[5m])", 120_000)
        .unwrap();
    assert!(result.infos.is_empty());
}

#[test]
fn unsupported_features_are_bad_data_naming_them() {
    let (engine, _dir) = engine_with(&[("temp", RAMP)], EngineOptions::default());
    for (query, feature) in [
        ("mad_over_time(temp[5m])", "mad_over_time"),
        ("sort_by_label(temp, \"job\")", "sort_by_label"),
        ("limitk(1, temp)", "limitk"),
        ("temp[5m] anchored", "anchored"),
        ("info(temp)", "info"),
    ] {
        let err = engine.instant_query(query, 120_000).unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::BadData, "{query}");
        assert!(err.message.contains(feature), "{query}: {}", err.message);
    }
}

#[test]
fn limits_fail_with_their_error_kinds() {
    let options = EngineOptions {
        max_samples: 2,
        ..EngineOptions::default()
    };
    let (engine, _dir) = engine_with(&[("temp", RAMP)], options);
    let err = engine.instant_query("temp[5m]", 120_000).unwrap_err();
    assert_eq!(err.kind, QueryErrorKind::Execution);
    let (engine, _dir) = engine_with(&[], EngineOptions::default());
    let err = engine.range_query("1", 0, 11_000_000, 1000).unwrap_err();
    assert_eq!(err.kind, QueryErrorKind::BadData);
    assert!(err.message.contains("11,000 points"));
    let ok = engine.range_query("1", 0, 10_999_000, 1000).unwrap();
    assert!(matches!(ok.value, Value::Matrix(m) if m[0].points.len() == 11_000));
}

#[test]
fn a_cancelled_query_stops() {
    let (engine, _dir) = engine_with(&[("temp", RAMP)], EngineOptions::default());
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let err = engine
        .with_cancel(flag)
        .range_query("temp", 0, 120_000, 60_000)
        .unwrap_err();
    assert_eq!(err.kind, QueryErrorKind::Canceled);
}

/// `(labels as text, value)` of an instant vector, sorted.
fn vector(engine: &Engine, query: &str, t: i64) -> Vec<(String, f64)> {
    let Value::Vector(samples) = engine.instant_query(query, t).unwrap().value else {
        panic!("{query}: not a vector");
    };
    let mut out: Vec<(String, f64)> = samples
        .iter()
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
            (labels.join(","), s.value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn functions_outside_the_corpus_scope() {
    let (engine, _dir) = engine_with(
        &[("a", &[(0, -2.5)]), ("b", &[(0, 3.0)]), ("c", &[(0, 3.0)])],
        EngineOptions::default(),
    );
    let one = |query: &str| vector(&engine, query, 0);
    let x = |v: f64| vec![("job=x".to_owned(), v)];
    assert_eq!(one("clamp_min(a, 0)"), x(0.0));
    assert_eq!(one("clamp_min(b, 0)"), x(3.0));
    assert_eq!(one("clamp_max(a, -3)"), x(-3.0));
    assert_eq!(one("clamp_max(b, 10)"), x(3.0));
    assert_eq!(one("sgn(a)"), x(-1.0));
    assert_eq!(one("sgn(b)"), x(1.0));
    assert_eq!(one("sgn(a * 0)"), x(-0.0));
    assert_eq!(
        one("count_values(\"value\", {job=\"x\"})"),
        vec![("value=-2.5".to_owned(), 1.0), ("value=3".to_owned(), 2.0)]
    );
    assert_eq!(
        one("count_values by (job) (\"v\", {job=\"x\"})"),
        vec![
            ("job=x,v=-2.5".to_owned(), 1.0),
            ("job=x,v=3".to_owned(), 2.0)
        ]
    );
}

#[test]
fn absurdly_deep_queries_are_refused_before_parsing() {
    let (engine, _dir) = engine_with(&[], EngineOptions::default());
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let err = engine.instant_query(&deep, 0).unwrap_err();
    assert_eq!(err.kind, QueryErrorKind::BadData);
    // The limit itself fits a default 2 MiB thread stack, also in debug
    // builds, for the costliest frames (nested calls and aggregations).
    for (open, close) in [("(", ")"), ("abs(", ")"), ("sum(", ")"), ("-(1+", ")")] {
        let edge = format!("{}vector(1){}", open.repeat(199), close.repeat(199));
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn({
                let engine = engine.clone();
                move || engine.instant_query(&edge, 0).map(|_| ())
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(result.is_ok(), "{open}: {result:?}");
    }
    // Brackets inside strings do not count.
    let quoted = format!(
        "label_replace(vector(1), \"a\", \"{}\", \"b\", \"\")",
        "(".repeat(500)
    );
    assert!(engine.instant_query(&quoted, 0).is_ok());
}
