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
    // Times at the ends of i64: refused, not wrapped.
    for (start, end, step) in [(i64::MIN, i64::MAX, 1), (i64::MIN, i64::MAX, i64::MAX)] {
        let err = engine.range_query("1", start, end, step).unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::BadData);
    }
    for t in [i64::MIN, i64::MAX] {
        for query in [
            "x offset -1y",
            "max_over_time(x[1y:1d] offset 1y)",
            "timestamp(x offset 1y)",
        ] {
            assert!(engine.instant_query(query, t).is_ok(), "{query} at {t}");
        }
        assert!(engine.range_query("x offset 1y", t, t, 1).is_ok());
    }
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

/// Runs `f` on a thread with the stack queries get in the API.
fn on_query_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(super::QUERY_STACK_BYTES)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// `body` wrapped in brackets up to exactly `depth` levels.
fn at_depth(body: &str, depth: usize) -> String {
    let own = super::depth::tree_depth(&super::parse(body).unwrap());
    assert!(own <= depth, "{body}: already {own} deep");
    let pad = depth - own;
    format!("{}{body}{}", "(".repeat(pad), ")".repeat(pad))
}

#[test]
fn the_deepest_accepted_queries_evaluate_and_print_on_a_query_stack() {
    let options = EngineOptions {
        max_query_length: usize::MAX,
        ..EngineOptions::default()
    };
    let (engine, _dir) = engine_with(&[("temp", RAMP)], options);
    let n = super::MAX_DEPTH;
    let bodies = [
        vec!["1"; n].join(" + "),
        vec!["1"; n].join(" ^ "),
        vec!["temp"; n - 1].join(" and "),
        format!("{}temp{}", "abs(".repeat(n - 1), ")".repeat(n - 1)),
        format!("{}temp{}", "sum(".repeat(n - 1), ")".repeat(n - 1)),
        format!(
            "{}temp{}",
            "label_replace(".repeat(n - 1),
            ", \"a\", \"b\", \"c\", \"d\")".repeat(n - 1)
        ),
        format!("{}temp{}", "clamp(".repeat(n - 1), ", 0, 1)".repeat(n - 1)),
        format!("{}temp{}", "-(1 + ".repeat(n / 3), ")".repeat(n / 3)),
        format!(
            "{}temp{}",
            "max_over_time((".repeat(n / 3),
            ")[2m:1m])".repeat(n / 3)
        ),
    ];
    for body in bodies {
        let query = at_depth(&body, n);
        let engine = engine.clone();
        let result = on_query_stack(move || {
            let expr = super::parse(&query)?;
            assert_eq!(super::depth::tree_depth(&expr), n);
            assert!(!expr.to_string().is_empty());
            engine.range_query(&query, 0, 120_000, 60_000)?;
            let too_deep = format!("({query})");
            let err = engine
                .range_query(&too_deep, 0, 120_000, 60_000)
                .unwrap_err();
            assert_eq!(err.kind, QueryErrorKind::BadData, "{}", err.message);
            assert!(err.message.contains("nests too deeply"), "{}", err.message);
            Ok::<_, super::QueryError>(())
        });
        assert!(result.is_ok(), "{}: {result:?}", &body[..40]);
    }
    // The pretty printer too (it takes time in the square of the depth).
    let query = at_depth(&vec!["1"; n].join(" + "), n);
    let pretty = on_query_stack(move || super::parse(&query).unwrap().prettify());
    assert!(pretty.len() > n);
}

#[test]
fn operator_chains_are_refused_before_the_parser_sees_them() {
    let (engine, _dir) = engine_with(
        &[],
        EngineOptions {
            max_query_length: usize::MAX,
            ..EngineOptions::default()
        },
    );
    // On a small stack: neither the check nor the refusal recurses deeply.
    let small_stack = |query: String| {
        let engine = engine.clone();
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || engine.instant_query(&query, 0).unwrap_err())
            .unwrap()
            .join()
            .unwrap()
    };
    for terms in [4_000, 100_000, 400_000] {
        for query in [
            vec!["1"; terms].join("+"),
            vec!["up"; terms].join(" and "),
            vec!["1"; terms].join("^"),
            format!("{}1{}", "(".repeat(terms), ")".repeat(terms)),
        ] {
            let started = std::time::Instant::now();
            let err = small_stack(query);
            assert_eq!(err.kind, QueryErrorKind::BadData, "{}", err.message);
            assert!(err.message.contains("nests too deeply"), "{}", err.message);
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }
    }
    // Past the check on the text, the parser builds them and the tree
    // check refuses them: also within a small stack.
    for query in [
        vec!["1"; 3_990].join("+"),
        vec!["up"; 2_000].join(" and "),
        format!("{}up{}", "abs(".repeat(1_990), ")".repeat(1_990)),
    ] {
        assert!(super::depth::text_depth_bound(&query) <= super::depth::MAX_TEXT_DEPTH);
        let err = small_stack(query);
        assert!(err.message.contains("nests too deeply"), "{}", err.message);
    }
    // Brackets and operators inside strings do not count.
    let quoted = format!(
        "label_replace(vector(1), \"a\", \"{}\", \"b\", \"\")",
        "(+".repeat(5_000)
    );
    assert!(engine.instant_query(&quoted, 0).is_ok());
}

#[test]
fn queries_longer_than_the_limit_are_refused_naming_the_flag() {
    let options = EngineOptions {
        max_query_length: 20,
        ..EngineOptions::default()
    };
    let (engine, _dir) = engine_with(&[("temp", RAMP)], options);
    assert!(engine.instant_query("sum(temp) + 12345678", 0).is_ok());
    for query in ["sum(temp) + 123456789", &"1".repeat(1 << 20)] {
        let err = engine.instant_query(query, 0).unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::BadData);
        assert!(
            err.message.contains("20 bytes") && err.message.contains("--query.max-length"),
            "{}",
            err.message
        );
        let err = engine.range_query(query, 0, 60_000, 60_000).unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::BadData);
    }
}

#[test]
fn parsing_waits_for_neither_a_cancelled_nor_a_timed_out_query() {
    let (engine, _dir) = engine_with(&[], EngineOptions::default());
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let err = engine
        .with_cancel(flag)
        .instant_query("1 +", 0)
        .unwrap_err();
    assert_eq!(err.kind, QueryErrorKind::Canceled);
    let err = engine
        .with_timeout(std::time::Duration::ZERO)
        .instant_query("1 +", 0)
        .unwrap_err();
    assert_eq!(err.kind, QueryErrorKind::Timeout);
}

#[test]
fn subquery_steps_count_against_the_sample_limit() {
    let options = EngineOptions {
        max_samples: 1_000,
        ..EngineOptions::default()
    };
    let (engine, _dir) = engine_with(&[("temp", RAMP)], options);
    let too_many = "query processing would load too many samples into memory in query execution";
    let started = std::time::Instant::now();
    // 3.6 million inner steps of one sample each, and 300 thousand over
    // stored data (every inner step within the lookback of a sample).
    for query in [
        "max_over_time(vector(1)[1h:1ms])",
        "max_over_time(temp[5m:1ms])",
    ] {
        let err = engine.instant_query(query, 300_000).unwrap_err();
        assert_eq!(err.kind, QueryErrorKind::Execution, "{query}");
        assert_eq!(err.message, too_many, "{query}");
    }
    // Nested, and in a range query whose inner steps are kept for reuse.
    let err = engine
        .range_query(
            "max_over_time(sum_over_time(vector(1)[1m:100ms])[5m:1s])",
            0,
            120_000,
            60_000,
        )
        .unwrap_err();
    assert_eq!(err.message, too_many);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Below the limit subqueries answer as before.
    let ok = engine
        .range_query("max_over_time(temp[2m:1m])", 0, 120_000, 60_000)
        .unwrap();
    assert!(matches!(ok.value, Value::Matrix(m) if m[0].points.len() == 3));
}
