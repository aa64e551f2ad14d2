//! Differential tests of evaluation by series ([`super::columns`]): over a
//! fleet-like data set (per-host phase and jitter, dropped scrapes, a gap
//! ended by a stale marker, counter resets, NaN values, a series that ends
//! stale, two metric names sharing label sets), half of it compacted into
//! chunks and the rest in the head, a range query's answer equals the step
//! evaluator's bit for bit, with the same errors and annotations, at random
//! starts, ends and steps.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::SeriesSamples;
// Drawn with `modulo` and `per_mille`: the stream this data set was built from.
use dcmon_testkit::Rng;
use proptest::prelude::*;
use proptest::sample::select;

use super::eval::{Annotations, Evaluator, Limits};
use super::plan::{self, Query};
use super::selector::STALE_NAN_BITS;
use super::{QueryError, Value, columns};
use crate::storage::{Options, Storage};

const MINUTE: i64 = 60_000;
/// Span of the data, from 0.
const SPAN_MS: i64 = 120 * MINUTE;
/// Samples before this are compacted into chunks; the rest stay in the head.
const COMPACTED_BEFORE_MS: i64 = 55 * MINUTE;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    out.sort();
    out
}

/// Scrape times of one host in `[from, to)`: every 15 s from its phase,
/// with up to `jitter` ms either way, about 3% dropped.
fn scrapes(rng: &mut Rng, phase: i64, jitter: u64, from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut t = phase;
    while t < to {
        let jittered = t + rng.modulo(2 * jitter + 1) as i64 - jitter as i64;
        if jittered >= from && jittered < to && !rng.per_mille(30) {
            out.push(jittered);
        }
        t += 15_000;
    }
    out
}

fn fleet() -> Vec<SeriesSamples> {
    let mut rng = Rng::new(0x6672_6565_7421);
    let stale = f64::from_bits(STALE_NAN_BITS);
    let mut out = Vec::new();
    for host in 0..4 {
        let instance = format!("h{host}");
        // h3 scrapes on the dot, so that samples fall on window edges.
        let (phase, jitter) = match host {
            3 => (0, 0),
            _ => (rng.modulo(15_000) as i64, 300),
        };
        let mut times = scrapes(&mut rng, phase, jitter, 0, SPAN_MS);
        if host == 1 {
            // A gap of 17 minutes, opened by a stale marker.
            let (gap_from, gap_to) = (40 * MINUTE, 57 * MINUTE);
            times.retain(|t| *t < gap_from || *t >= gap_to);
        }
        if host == 3 {
            // A gap without a stale marker: the lookback runs out.
            times.retain(|t| !(30 * MINUTE..45 * MINUTE).contains(t));
        }
        let with_gap = |values: Vec<(i64, f64)>| -> Vec<(i64, f64)> {
            let mut values = values;
            if host == 1 {
                let at = values.partition_point(|(t, _)| *t < 40 * MINUTE);
                values.insert(at, (40 * MINUTE, stale));
            }
            values
        };
        for cpu in ["0", "1"] {
            for mode in ["user", "system", "idle"] {
                let mut value = rng.modulo(1000) as f64;
                // h1's counters restart only in their gap: the one reset's
                // two samples have the stale marker between them.
                let mut restarted = false;
                let samples = times
                    .iter()
                    .map(|&t| {
                        if host == 1 && t >= 57 * MINUTE && !restarted {
                            restarted = true;
                            value = rng.modulo(5) as f64;
                        } else if host != 1 && rng.per_mille(8) {
                            value = rng.modulo(5) as f64;
                        } else {
                            value += rng.modulo(1500) as f64 / 100.0;
                        }
                        (t, value)
                    })
                    .collect();
                out.push(SeriesSamples {
                    labels: labels(&[
                        ("__name__", "node_cpu_seconds_total"),
                        ("instance", &instance),
                        ("cpu", cpu),
                        ("mode", mode),
                    ]),
                    samples: with_gap(samples),
                });
            }
        }
        for gpu in ["0", "1"] {
            let mut value = 40.0 + rng.modulo(20) as f64;
            let mut samples: Vec<(i64, f64)> = times
                .iter()
                .map(|&t| {
                    if rng.per_mille(5) {
                        return (t, f64::NAN);
                    }
                    // An idle GPU's zeros of both signs: equal, but
                    // written apart, so which of them a window picks shows.
                    if host == 3 && gpu == "0" {
                        return (t, if rng.per_mille(500) { 0.0 } else { -0.0 });
                    }
                    if !rng.per_mille(300) {
                        value += (rng.modulo(7) as f64 - 3.0) * 0.25;
                    }
                    (t, value)
                })
                .collect();
            if host == 2 && gpu == "1" {
                // Ends at 90 minutes with a stale marker.
                samples.retain(|(t, _)| *t < 90 * MINUTE);
                let last = samples.last().map_or(0, |s| s.0);
                samples.push((last + 1_000, stale));
            }
            out.push(SeriesSamples {
                labels: labels(&[
                    ("__name__", "gpu_temp"),
                    ("instance", &instance),
                    ("gpu", gpu),
                ]),
                samples: with_gap(samples),
            });
        }
        let mut counts = [0.0f64; 3];
        let bucket_samples: Vec<Vec<(i64, f64)>> = {
            let mut per_le = vec![Vec::new(); 3];
            for &t in &times {
                let fast = rng.modulo(20) as f64;
                let slow = rng.modulo(5) as f64;
                counts[0] += fast;
                counts[1] += fast + slow;
                counts[2] += fast + slow + rng.modulo(2) as f64;
                for (le, samples) in per_le.iter_mut().enumerate() {
                    samples.push((t, counts[le]));
                }
            }
            per_le
        };
        for (le, samples) in ["0.1", "1", "+Inf"].iter().zip(bucket_samples) {
            out.push(SeriesSamples {
                labels: labels(&[
                    ("__name__", "req_bucket"),
                    ("instance", &instance),
                    ("le", le),
                ]),
                samples: with_gap(samples),
            });
        }
        let up = times
            .iter()
            .map(|&t| {
                (
                    t,
                    if (70 * MINUTE..75 * MINUTE).contains(&t) {
                        0.0
                    } else {
                        1.0
                    },
                )
            })
            .collect();
        out.push(SeriesSamples {
            labels: labels(&[("__name__", "up"), ("instance", &instance)]),
            samples: with_gap(up),
        });
        // Two names over one label set: `a_total` until 70 minutes;
        // `b_total` from 60 minutes on h0 (overlapping) and from 80 on h1.
        let counter = |from: i64, to: i64| -> Vec<(i64, f64)> {
            times
                .iter()
                .filter(|t| (from..to).contains(*t))
                .map(|&t| (t, (t / 1000) as f64))
                .collect()
        };
        if host < 3 {
            out.push(SeriesSamples {
                labels: labels(&[("__name__", "a_total"), ("instance", &instance)]),
                samples: counter(0, 70 * MINUTE),
            });
        }
        let b_from = match host {
            0 => Some(60 * MINUTE),
            1 => Some(80 * MINUTE),
            _ => None,
        };
        if let Some(from) = b_from {
            out.push(SeriesSamples {
                labels: labels(&[("__name__", "b_total"), ("instance", &instance)]),
                samples: counter(from, SPAN_MS),
            });
        }
    }
    out
}

/// The fleet stored with small chunks: its first part compacted, the rest
/// in the head.
fn storage() -> &'static Storage {
    static STORAGE: OnceLock<(Storage, tempfile::TempDir)> = OnceLock::new();
    &STORAGE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let options = Options {
                chunk_window: Duration::from_secs(600),
                ..Options::default()
            };
            let storage = Storage::open(&dir.path().join("c.db"), options).unwrap();
            let split = |before: bool| -> Vec<SeriesSamples> {
                fleet()
                    .into_iter()
                    .map(|s| SeriesSamples {
                        labels: s.labels,
                        samples: s
                            .samples
                            .into_iter()
                            .filter(|(t, _)| (*t < COMPACTED_BEFORE_MS) == before)
                            .collect(),
                    })
                    .filter(|s| !s.samples.is_empty())
                    .collect()
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                storage.append(split(true), Vec::new()).await.unwrap();
                let compacted = storage.compact().await.unwrap();
                assert!(compacted.samples > 0);
                storage.append(split(false), Vec::new()).await.unwrap();
            });
            (storage, dir)
        })
        .0
}

/// One evaluation's outcome: the value or error, and the annotations.
type Outcome = (Result<Value, QueryError>, Annotations);

enum Path {
    /// Step by step, nothing computed by series.
    Reference,
    /// Wholly by series; fails the test if the query is not taken there.
    Whole,
    /// As the engine does: by series where it can.
    Engine,
}

fn evaluate(
    text: &str,
    (start_ms, end_ms, step_ms): (i64, i64, i64),
    max_samples: usize,
    path: Path,
) -> Option<(Outcome, usize)> {
    let expr = super::parse(text).unwrap();
    let query = Query {
        source: text.to_owned(),
        is_range: true,
        start_ms,
        end_ms,
        step_ms,
        lookback_ms: 5 * MINUTE,
        default_subquery_step_ms: MINUTE,
    };
    let limits = || Limits {
        deadline: Instant::now() + Duration::from_secs(120),
        max_samples,
        cancel: Vec::new(),
    };
    let data = plan::fetch(storage(), &expr, &query, &limits()).ok()?;
    let ev = Evaluator::new(&query, &data, limits());
    let value = match path {
        Path::Reference => ev.range_by_step(&expr),
        Path::Whole => {
            columns::range(&ev, &expr).unwrap_or_else(|| panic!("{text}: not evaluated by series"))
        }
        Path::Engine => ev.range(&expr),
    };
    let precomputed = ev.precomputed_count();
    Some(((value, ev.into_annotations()), precomputed))
}

fn same_number(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn describe(value: &Value) -> String {
    match value {
        Value::Matrix(series) => series
            .iter()
            .map(|s| format!("{:?}: {} points", s.labels, s.points.len()))
            .collect::<Vec<_>>()
            .join("\n"),
        other => format!("{other:?}"),
    }
}

/// Fails unless both outcomes are the same, NaN-aware bit for bit.
fn assert_same(query: &str, expected: &Outcome, got: &Outcome) -> Result<(), TestCaseError> {
    match (&expected.0, &got.0) {
        (Ok(Value::Matrix(want)), Ok(Value::Matrix(have))) => {
            prop_assert_eq!(
                want.len(),
                have.len(),
                "{}: series\nwant:\n{}\nhave:\n{}",
                query,
                describe(&Value::Matrix(want.clone())),
                describe(&Value::Matrix(have.clone()))
            );
            for (w, h) in want.iter().zip(have) {
                prop_assert_eq!(&w.labels, &h.labels, "{}", query);
                prop_assert_eq!(w.points.len(), h.points.len(), "{} {:?}", query, w.labels);
                for (p, q) in w.points.iter().zip(&h.points) {
                    prop_assert!(
                        p.0 == q.0 && same_number(p.1, q.1),
                        "{}: {:?}: want {:?}, have {:?}",
                        query,
                        w.labels,
                        p,
                        q
                    );
                }
            }
        }
        (Err(want), Err(have)) => {
            prop_assert_eq!(want.kind, have.kind, "{}", query);
            prop_assert_eq!(&want.message, &have.message, "{}", query);
        }
        (want, have) => {
            prop_assert!(
                false,
                "{}: want {:?}, have {:?}",
                query,
                want.as_ref().map(describe),
                have.as_ref().map(describe)
            );
        }
    }
    if expected.0.is_ok() {
        prop_assert_eq!(&expected.1.warnings, &got.1.warnings, "{}", query);
        prop_assert_eq!(&expected.1.infos, &got.1.infos, "{}", query);
    }
    Ok(())
}

fn selector(with_modifier: bool) -> impl Strategy<Value = (String, String)> {
    let name = select(
        &[
            "node_cpu_seconds_total",
            "gpu_temp",
            "req_bucket",
            "up",
            "{a_or_b}",
        ][..],
    );
    let matcher = select(
        &[
            "",
            "",
            "instance=\"h1\"",
            "mode!=\"idle\"",
            "instance=~\"h[02]\"",
        ][..],
    );
    let modifier = if with_modifier {
        select(
            &[
                "",
                "",
                "",
                " offset 1m",
                " offset -2m",
                " @ 3000",
                " @ start()",
                " @ end()",
            ][..],
        )
        .boxed()
    } else {
        Just("").boxed()
    };
    (name, matcher, modifier).prop_map(|(name, matcher, modifier)| {
        let selector = match (name, matcher) {
            ("{a_or_b}", "") => "{__name__=~\"a_total|b_total\"}".to_owned(),
            ("{a_or_b}", m) => format!("{{__name__=~\"a_total|b_total\",{m}}}"),
            (n, "") => n.to_owned(),
            (n, m) => format!("{n}{{{m}}}"),
        };
        (selector, modifier.to_owned())
    })
}

fn range_function() -> impl Strategy<Value = String> {
    let function = select(
        &[
            "rate",
            "increase",
            "delta",
            "irate",
            "idelta",
            "deriv",
            "predict_linear",
            "resets",
            "changes",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "sum_over_time",
            "count_over_time",
            "quantile_over_time",
            "stddev_over_time",
            "stdvar_over_time",
            "last_over_time",
            "present_over_time",
        ][..],
    );
    let range = select(&["10s", "1m", "5m", "7m30s", "20m"][..]);
    let phi = select(&["0.3", "0.9", "1.5"][..]);
    (function, selector(true), range, phi).prop_map(|(f, (s, m), r, phi)| match f {
        "quantile_over_time" => format!("{f}({phi}, {s}[{r}]{m})"),
        "predict_linear" => format!("{f}({s}[{r}]{m}, 600)"),
        _ => format!("{f}({s}[{r}]{m})"),
    })
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => selector(true).prop_map(|(s, m)| format!("{s}{m}")),
        3 => range_function(),
    ]
}

fn aggregation(inner: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let op = select(
        &[
            "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
        ][..],
    );
    let grouping = select(
        &[
            "",
            " by (instance)",
            " without (cpu)",
            " by (le)",
            " by (__name__)",
            " without (instance, mode)",
            " by ()",
        ][..],
    );
    (op, grouping, inner).prop_map(|(op, g, e)| format!("{op}{g} ({e})"))
}

/// `topk`/`bottomk` with a literal parameter (0 and 1.5 included: none
/// kept, and a fraction cut), grouped as `aggregation` groups.
fn k_aggregation(inner: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let op = select(&["topk", "bottomk"][..]);
    let k = select(&["1", "2", "3", "0", "1.5", "(4)", "100"][..]);
    let grouping = select(&["", " by (instance)", " without (cpu)", " by (le)"][..]);
    (op, grouping, k, inner).prop_map(|(op, g, k, e)| format!("{op}{g} ({k}, {e})"))
}

/// Queries made only of what is evaluated by series.
fn whole_query() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => leaf(),
        3 => aggregation(leaf()),
        2 => aggregation(aggregation(leaf())),
        2 => k_aggregation(leaf()),
        2 => k_aggregation(aggregation(leaf())),
        1 => aggregation(k_aggregation(leaf())),
        1 => k_aggregation(k_aggregation(aggregation(leaf()))),
    ]
}

/// Queries evaluated step by step around parts evaluated by series.
fn mixed_query() -> impl Strategy<Value = String> {
    let part = aggregation(leaf()).boxed();
    let operator = select(&["+", "/", "> bool", "and", "or", " > "][..]);
    let matching = select(&["", " on (instance)", " ignoring (le)"][..]);
    prop_oneof![
        (part.clone(), operator, matching, part.clone())
            .prop_map(|(l, op, m, r)| format!("{l} {op}{m} {r}")),
        part.clone().prop_map(|p| format!("-{p}")),
        part.clone().prop_map(|p| format!("abs({p})")),
        part.clone().prop_map(|p| format!("topk(2, {p}) * 2")),
        range_function().prop_map(|p| format!("clamp({p}, 0, 50)")),
        select(&["0.5", "0.99"][..]).prop_map(|q| format!(
            "histogram_quantile({q}, sum by (le, instance) (rate(req_bucket[5m])))"
        )),
        part.prop_map(|p| format!("max_over_time(({p})[10m:1m]) + {p}")),
    ]
}

/// Start, end and step: anywhere around the data, with steps from seconds
/// to longer than every window.
fn span() -> impl Strategy<Value = (i64, i64, i64)> {
    let step = prop_oneof![
        2 => 5_000i64..400_000,
        2 => (1i64..80).prop_map(|k| k * 5_000),
        1 => select(&[15_000i64, 60_000, 900_000, 1_800_000, 3_600_000][..]),
    ];
    let start = prop_oneof![
        -10 * MINUTE..SPAN_MS + 10 * MINUTE,
        (-1..SPAN_MS / 15_000).prop_map(|k| k * 15_000),
    ];
    (start, 0..150 * MINUTE, step).prop_map(|(start, length, step)| (start, start + length, step))
}

fn max_samples() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => Just(50_000_000usize),
        1 => select(&[200usize, 3_000, 40_000][..]),
    ]
}

/// Compares the engine's answer with the step evaluator's.
fn check(
    query: &str,
    span: (i64, i64, i64),
    max_samples: usize,
    whole: bool,
) -> Result<(), TestCaseError> {
    let Some((expected, _)) = evaluate(query, span, max_samples, Path::Reference) else {
        return Ok(());
    };
    let (got, precomputed) = evaluate(query, span, max_samples, Path::Engine).unwrap();
    // Evaluating by series reads a selector a part at a time and holds
    // less than the step evaluator, which holds all of it: where only the
    // latter passes the sample limit, the answer must be its unlimited one
    // (a value, or an error met later, such as a duplicate match).
    let over_limit = |outcome: &Outcome| matches!(&outcome.0, Err(e) if e.message == QueryError::too_many_samples().message);
    let expected = if over_limit(&expected) && !over_limit(&got) {
        evaluate(query, span, usize::MAX, Path::Reference)
            .unwrap()
            .0
    } else {
        expected
    };
    assert_same(query, &expected, &got)?;
    if whole {
        prop_assert!(
            columns::supported(&super::parse(query).unwrap()),
            "{}",
            query
        );
        if max_samples == 50_000_000 {
            let (got, _) = evaluate(query, span, max_samples, Path::Whole).unwrap();
            assert_same(query, &expected, &got)?;
        }
    } else if max_samples == 50_000_000 {
        prop_assert!(precomputed > 0, "{}: nothing evaluated by series", query);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn by_series_equals_step_by_step(
        query in whole_query(),
        span in span(),
        max_samples in max_samples(),
    ) {
        check(&query, span, max_samples, true)?;
    }

    #[test]
    fn mixed_queries_equal_step_by_step(
        query in mixed_query(),
        span in span(),
        max_samples in max_samples(),
    ) {
        check(&query, span, max_samples, false)?;
    }
}

/// The cases random spans may miss: one label set from two names, at
/// overlapping steps (an error) and at separate ones (one series).
#[test]
fn label_sets_from_two_names_fail_or_merge_alike() {
    let query = "rate({__name__=~\"a_total|b_total\"}[1m])";
    let overlap = (55 * MINUTE, 75 * MINUTE, MINUTE);
    let apart = (60 * MINUTE, 100 * MINUTE, MINUTE);
    for (span, fails) in [(overlap, true), (apart, false)] {
        let query = if fails {
            query.to_owned()
        } else {
            "rate({__name__=~\"a_total|b_total\",instance=\"h1\"}[1m])".to_owned()
        };
        let (expected, _) = evaluate(&query, span, 50_000_000, Path::Reference).unwrap();
        let (got, _) = evaluate(&query, span, 50_000_000, Path::Whole).unwrap();
        assert_eq!(expected.0.is_err(), fails, "{query}");
        if let Ok(Value::Matrix(series)) = &expected.0 {
            // h1's a_total and b_total make one series.
            assert_eq!(series.len(), 1);
            assert!(series[0].points.first().unwrap().0 < 70 * MINUTE);
            assert!(series[0].points.last().unwrap().0 > 80 * MINUTE);
        }
        assert_same(&query, &expected, &got).unwrap();
    }
}

/// Past the sample limit the engine answers what the step evaluator does.
#[test]
fn the_sample_limit_fails_alike() {
    let query = "gpu_temp";
    let span = (0, SPAN_MS, 5_000);
    let (expected, _) = evaluate(query, span, 5_000, Path::Reference).unwrap();
    let (got, _) = evaluate(query, span, 5_000, Path::Engine).unwrap();
    let err = expected.0.as_ref().unwrap_err();
    assert_eq!(err.message, QueryError::too_many_samples().message);
    assert_same(query, &expected, &got).unwrap();
}

/// h1's counters fall only across their stale marker: a window holding
/// both sides must count that reset, as the step evaluator does.
#[test]
fn a_reset_across_a_stale_marker_is_counted_alike() {
    for function in ["rate", "increase"] {
        let query = format!("{function}(node_cpu_seconds_total{{instance=\"h1\"}}[20m])");
        check(&query, (50 * MINUTE, 80 * MINUTE, MINUTE), 50_000_000, true).unwrap();
    }
}

#[test]
fn window_extremes_equal_step_by_step_walked_or_queued() {
    // Over the idle GPU's zeros of both signs, and the others with NaN:
    // windows spanning 1 and 2 steps are walked, 20 steps queued.
    for function in ["max_over_time", "min_over_time"] {
        for (range, step) in [("1m", MINUTE), ("1m", 30_000), ("20m", MINUTE)] {
            let query = format!("{function}(gpu_temp[{range}])");
            check(&query, (0, SPAN_MS, step), 50_000_000, true).unwrap();
        }
    }
}
