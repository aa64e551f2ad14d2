//! Property tests of the parser plus evaluator over a small stored data
//! set: whatever the query, the engine answers with a value or a 4xx-kind
//! error (`bad_data` or `execution`) within the deadline, and never panics
//! or overflows its stack.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::SeriesSamples;
use proptest::prelude::*;
use proptest::sample::select;

use super::{Engine, EngineOptions, QueryErrorKind};
use crate::storage::{Options, Storage};

/// The shared engine over three metrics, two instances each, sampled every
/// 15 s for 20 minutes (with a gap and a counter reset).
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<(Engine, tempfile::TempDir)> = OnceLock::new();
    &ENGINE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let storage = Storage::open(&dir.path().join("p.db"), Options::default()).unwrap();
            let mut batch = Vec::new();
            for (name, base) in [("a", 1.0), ("b", -3.5), ("c_total", 0.0)] {
                for instance in ["i1", "i2"] {
                    let samples = (0..80)
                        .filter(|k| !(30..35).contains(k))
                        .map(|k: i64| {
                            let value = match name {
                                "c_total" => ((k % 50) * 7) as f64,
                                _ => base * (k % 7) as f64,
                            };
                            (k * 15_000, value)
                        })
                        .collect();
                    batch.push(SeriesSamples {
                        labels: vec![
                            ("__name__".into(), name.into()),
                            ("instance".into(), instance.into()),
                            ("job".into(), "j".into()),
                        ],
                        samples,
                    });
                }
            }
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(storage.append(batch, Vec::new()))
                .unwrap();
            let options = EngineOptions {
                timeout: Duration::from_secs(10),
                max_samples: 200_000,
                ..EngineOptions::default()
            };
            (Engine::new(storage, options), dir)
        })
        .0
}

fn instant_vector_leaf() -> impl Strategy<Value = String> {
    let name = select(&["a", "b", "c_total"][..]);
    let matchers = prop_oneof![
        Just(String::new()),
        Just("{instance=\"i1\"}".to_owned()),
        Just("{job=~\"j|k\"}".to_owned()),
        Just("{instance!=\"i2\"}".to_owned()),
    ];
    let modifier = prop_oneof![
        Just(String::new()),
        Just(" offset 1m".to_owned()),
        Just(" offset -30s".to_owned()),
        Just(" @ 600".to_owned()),
        Just(" @ start()".to_owned()),
        // Far ends of time: arithmetic saturates instead of overflowing.
        Just(" offset 290000000y".to_owned()),
        Just(" @ -9e15".to_owned()),
    ];
    prop_oneof![
        (name, matchers, modifier).prop_map(|(n, m, o)| format!("{n}{m}{o}")),
        Just("{__name__=~\"a|b\"}".to_owned()),
        Just("vector(time())".to_owned()),
        Just("absent(nope)".to_owned()),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("-2.5".to_owned()),
        Just("NaN".to_owned()),
        Just("Inf".to_owned()),
        Just("1e308".to_owned()),
        (0u32..100).prop_map(|n| n.to_string()),
    ]
}

fn range() -> impl Strategy<Value = &'static str> {
    select(&["1m", "5m", "10m"][..])
}

fn binary_operator() -> impl Strategy<Value = &'static str> {
    select(
        &[
            "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "> bool", "== bool",
            "and", "or", "unless", "atan2",
        ][..],
    )
}

fn matching() -> impl Strategy<Value = &'static str> {
    select(
        &[
            "",
            " on (instance)",
            " ignoring (job)",
            " on (instance) group_left",
            " ignoring (instance) group_right (job)",
        ][..],
    )
}

/// Random compositions; types are loosely respected, so some are refused.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![3 => instant_vector_leaf(), 1 => number()];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            (inner.clone(), binary_operator(), matching(), inner.clone())
                .prop_map(|(l, op, m, r)| format!("{l} {op}{m} {r}")),
            (inner.clone(), binary_operator(), inner.clone())
                .prop_map(|(l, op, r)| format!("({l}) {op} ({r})")),
            inner.clone().prop_map(|e| format!("-({e})")),
            (
                select(&["sum", "avg", "min", "max", "count", "stddev", "group"][..]),
                select(&["", " by (instance)", " without (job)", " by ()"][..]),
                inner.clone(),
            )
                .prop_map(|(op, by, e)| format!("{op}{by} ({e})")),
            (
                select(&["topk", "bottomk", "quantile"][..]),
                number(),
                inner.clone()
            )
                .prop_map(|(op, k, e)| format!("{op}({k}, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("count_values(\"v\", {e})")),
            (
                select(
                    &[
                        "abs",
                        "ceil",
                        "round",
                        "sqrt",
                        "ln",
                        "sgn",
                        "sort",
                        "sort_desc",
                        "scalar",
                        "vector",
                        "timestamp",
                        "absent",
                        "exp",
                        "day_of_week"
                    ][..]
                ),
                inner.clone(),
            )
                .prop_map(|(f, e)| format!("{f}({e})")),
            (inner.clone(), number(), number())
                .prop_map(|(e, lo, hi)| format!("clamp({e}, {lo}, {hi})")),
            (number(), inner.clone()).prop_map(|(q, e)| format!("histogram_quantile({q}, {e})")),
            inner.clone().prop_map(|e| format!(
                "label_replace({e}, \"x\", \"$1\", \"instance\", \"i(.*)\")"
            )),
            (
                select(
                    &[
                        "rate",
                        "irate",
                        "increase",
                        "delta",
                        "deriv",
                        "resets",
                        "changes",
                        "avg_over_time",
                        "max_over_time",
                        "count_over_time",
                        "stddev_over_time",
                        "last_over_time",
                        "present_over_time"
                    ][..]
                ),
                select(&["a", "b", "c_total", "a{instance=\"i1\"}"][..]),
                range(),
                select(&["", " offset 2m"][..]),
            )
                .prop_map(|(f, s, r, o)| format!("{f}({s}[{r}]{o})")),
            (
                select(
                    &[
                        "max_over_time",
                        "sum_over_time",
                        "rate",
                        "quantile_over_time(0.5,"
                    ][..]
                ),
                inner.clone(),
                range(),
                select(&["", "1m", "30s"][..]),
                select(&["", " offset 1m"][..]),
            )
                .prop_map(|(f, e, r, step, o)| {
                    let open = if f.ends_with(',') {
                        format!("{f} ")
                    } else {
                        format!("{f}(")
                    };
                    format!("{open}({e})[{r}:{step}]{o})")
                }),
            (select(&["predict_linear", "holt_winters"][..]), range()).prop_map(|(f, r)| {
                if f == "predict_linear" {
                    format!("{f}(a[{r}], 60)")
                } else {
                    format!("double_exponential_smoothing(a[{r}], 0.5, 0.5)")
                }
            }),
        ]
    })
}

/// Pieces of PromQL in any order: mostly syntax errors, some deep or odd
/// but valid queries.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("a"),
        Just("b"),
        Just("1"),
        Just("("),
        Just(")"),
        Just("["),
        Just("]"),
        Just("{"),
        Just("}"),
        Just("+"),
        Just("-"),
        Just("^"),
        Just("and"),
        Just("or"),
        Just("sum"),
        Just("by"),
        Just("rate"),
        Just("5m"),
        Just(":"),
        Just(","),
        Just("offset"),
        Just("@"),
        Just("\""),
        Just("="),
        Just("=~"),
        Just("bool"),
        Just("on"),
        Just("group_left"),
        Just(" "),
        Just("1e9"),
        Just("NaN"),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// Evaluates `query` at the data's end and over its span; each answer is
/// a value or a `bad_data`/`execution` error, in time.
fn check(query: &str) -> Result<(), TestCaseError> {
    let engine = engine();
    let started = Instant::now();
    let answers = [
        engine.instant_query(query, 1_200_000).map(drop),
        engine.range_query(query, 0, 1_200_000, 60_000).map(drop),
    ];
    for answer in answers {
        if let Err(err) = answer {
            prop_assert!(
                matches!(
                    err.kind,
                    QueryErrorKind::BadData | QueryErrorKind::Execution
                ),
                "{query}: {err:?}"
            );
        }
    }
    prop_assert!(
        started.elapsed() < engine.options().timeout,
        "{query}: took {:?}",
        started.elapsed()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn generated_expressions_answer_or_fail_cleanly(query in expression()) {
        check(&query)?;
    }

    #[test]
    fn generated_expressions_in_brackets_answer_the_same(query in expression()) {
        let engine = engine();
        let plain = engine.instant_query(&query, 1_200_000).map(|r| format!("{:?}", r.value));
        let bracketed = engine
            .instant_query(&format!("(({query}))"), 1_200_000)
            .map(|r| format!("{:?}", r.value));
        prop_assert_eq!(plain.map_err(|e| e.kind), bracketed.map_err(|e| e.kind));
    }

    #[test]
    fn token_soup_answers_or_fails_cleanly(query in token_soup()) {
        check(&query)?;
    }
}
