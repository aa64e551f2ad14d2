//! Runs Prometheus's PromQL test scripts (`promql/testdata/*.test`) against
//! dcmon's engine over a real storage, and fails when a case listed in
//! `promql/expected-pass.txt` no longer passes.
//!
//! Each in-scope case (scope `core` or `subquery` in `cases-index.tsv`) is
//! evaluated as written; an instant case is also evaluated as a range
//! query from one minute before to one minute after, as Prometheus's own
//! harness does, and the point at the instant must match too; and, unless
//! it depends on the evaluation time, it is evaluated with every selector
//! pinned by `@` to the case's time at other times, which must not change
//! the answer.
//!
//! `PROMQL_WRITE_EXPECTED=1` rewrites `expected-pass.txt` from this run;
//! `PROMQL_ALL_CASES=1` also runs the out-of-scope cases and prints how
//! many pass (informational only).

mod compare;
mod script;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dcmon_protocol::remote_write::SeriesSamples;
use dcmon_receiver::promql::{Engine, EngineOptions, QueryResult, Value};
use dcmon_receiver::storage::{Options, Storage};
use promql_parser::parser::{AtModifier, Expr};

use compare::{check_annotations, check_matrix, check_vector, floats_equal, labels_of, matrix_of};
use script::{Case, Command, Expected, LabelSet, LoadBlock};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql")
}

/// `file:line` of every in-scope case.
fn in_scope() -> BTreeSet<String> {
    let index = std::fs::read_to_string(corpus_dir().join("cases-index.tsv")).unwrap();
    index
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            matches!(cols.get(3), Some(&"core") | Some(&"subquery"))
                .then(|| format!("{}:{}", cols[0], cols[1]))
        })
        .collect()
}

/// A storage in a temporary directory holding the given load blocks.
struct Loaded {
    engine: Engine,
    storage: Storage,
    _dir: tempfile::TempDir,
}

fn load(runtime: &tokio::runtime::Runtime, blocks: &[LoadBlock]) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("test.db"), Options::default()).unwrap();
    for block in blocks {
        let series: Vec<SeriesSamples> = block
            .iter()
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(labels, samples)| SeriesSamples {
                labels: labels.clone(),
                samples: samples.clone(),
            })
            .collect();
        if !series.is_empty() {
            runtime
                .block_on(storage.append(series, Vec::new()))
                .unwrap();
        }
    }
    let options = EngineOptions {
        max_samples: usize::MAX,
        ..EngineOptions::default()
    };
    Loaded {
        engine: Engine::new(storage.clone(), options),
        storage,
        _dir: dir,
    }
}

/// Checks one result (or error) against a case's expectation.
fn check(case: &Case, result: Result<QueryResult, String>) -> Result<(), String> {
    let result = match (&case.expected, result) {
        (Expected::Fail, Err(_)) => return Ok(()),
        (Expected::Fail, Ok(r)) => {
            return Err(format!("expected an error, got a {}", r.value.type_name()));
        }
        (_, Err(e)) => return Err(format!("error: {e}")),
        (_, Ok(r)) => r,
    };
    match (&case.expected, &result.value) {
        (Expected::Scalar(want), Value::Scalar(got)) => {
            if floats_equal(*want, *got) {
                Ok(())
            } else {
                Err(format!("expected scalar {want}, got {got}"))
            }
        }
        (Expected::String(want), Value::String(got)) => {
            if want == got {
                Ok(())
            } else {
                Err(format!("expected string {want:?}, got {got:?}"))
            }
        }
        (Expected::Vector(want), Value::Vector(got)) => {
            let got: Vec<(LabelSet, f64)> = got
                .iter()
                .map(|s| (labels_of(&s.labels), s.value))
                .collect();
            check_vector(want, &got, case.ordered)
        }
        (
            Expected::Matrix {
                start_ms,
                step_ms,
                series,
            },
            value @ Value::Matrix(_),
        ) => check_matrix(
            *start_ms,
            *step_ms,
            series,
            &matrix_of(value).unwrap_or_default(),
        ),
        (_, value) => Err(format!("unexpected result type {}", value.type_name())),
    }
}

/// The extra range-mode check of an instant case: the same expression as
/// a range query around the instant must give the same answer there.
fn check_range_mode(case: &Case, engine: &Engine) -> Result<(), String> {
    let skip = case.ordered
        || matches!(
            case.expected,
            Expected::Fail | Expected::String(_) | Expected::Matrix { .. }
        )
        || ["start()", "end()", "range()", "step()"]
            .iter()
            .any(|f| case.expr.contains(f));
    if skip {
        return Ok(());
    }
    let t = case.at_ms;
    let result = engine
        .range_query(&case.expr, t - 60_000, t + 60_000, 60_000)
        .map_err(|e| format!("range mode: error: {e}"))?;
    let matrix = matrix_of(&result.value).ok_or("range mode: no matrix")?;
    if !matrix.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err("range mode: matrix not sorted".into());
    }
    let at_t: Vec<(LabelSet, f64)> = matrix
        .iter()
        .filter_map(|(l, points)| points.iter().find(|p| p.0 == t).map(|p| (l.clone(), p.1)))
        .collect();
    match &case.expected {
        Expected::Scalar(want) => match at_t.as_slice() {
            [(_, got)] if floats_equal(*want, *got) => Ok(()),
            other => Err(format!("range mode: expected scalar {want}, got {other:?}")),
        },
        Expected::Vector(want) => {
            check_vector(want, &at_t, false).map_err(|e| format!("range mode: {e}"))
        }
        _ => Ok(()),
    }
}

/// Functions whose value depends on the evaluation time itself, which
/// makes the `@` invariance check meaningless (upstream's list).
const TIME_DEPENDENT: &[&str] = &[
    "time",
    "timestamp",
    "predict_linear",
    "minute",
    "hour",
    "month",
    "year",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "start",
    "end",
    "range",
    "step",
];

/// Gives every selector and subquery without `@` (and not inside a
/// subquery that has one) an `@ at`.
fn pin_at(expr: &mut Expr, at: SystemTime) {
    match expr {
        Expr::VectorSelector(vs) => {
            vs.at.get_or_insert(AtModifier::At(at));
        }
        Expr::MatrixSelector(ms) => {
            ms.vs.at.get_or_insert(AtModifier::At(at));
        }
        Expr::Subquery(sq) => {
            sq.at.get_or_insert(AtModifier::At(at));
        }
        Expr::Aggregate(a) => {
            if let Some(p) = a.param.as_mut() {
                pin_at(p, at);
            }
            pin_at(&mut a.expr, at);
        }
        Expr::Unary(u) => pin_at(&mut u.expr, at),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, at);
            pin_at(&mut b.rhs, at);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, at),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| pin_at(a, at)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Prometheus's `@` invariance check: with every selector pinned to the
/// case's time, evaluating at other times must give the same answer.
fn check_at_invariance(case: &Case, engine: &Engine) -> Result<(), String> {
    if matches!(case.expected, Expected::Fail)
        || TIME_DEPENDENT
            .iter()
            .any(|f| case.expr.contains(&format!("{f}(")))
    {
        return Ok(());
    }
    let Ok(mut expr) = promql_parser::parser::parse(&case.expr) else {
        return Ok(());
    };
    let t = case.at_ms;
    pin_at(&mut expr, UNIX_EPOCH + Duration::from_millis(t as u64));
    let times = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * t, 0, t / 5, t, 10 * t]
    };
    for at in times {
        let result = engine.instant_query_parsed(&case.expr, &expr, at);
        check(case, result.map_err(|e| e.to_string()))
            .map_err(|e| format!("pinned with @ and evaluated at {at} ms: {e}"))?;
    }
    Ok(())
}

/// Runs one case; `Err` holds why it failed.
fn run_case(case: &Case, engine: &Engine) -> Result<(), String> {
    if case.histograms {
        return Err("native histograms are not supported".into());
    }
    let result = match case.range {
        Some((start, end, step)) => engine.range_query(&case.expr, start, end, step),
        None => engine.instant_query(&case.expr, case.at_ms),
    };
    if let Ok(r) = &result {
        check_annotations("warning", &case.annotations.warn, &r.warnings)?;
        check_annotations("info", &case.annotations.info, &r.infos)?;
    }
    check(case, result.map_err(|e| e.to_string()))?;
    if case.range.is_none() {
        check_range_mode(case, engine)?;
        check_at_invariance(case, engine)?;
    }
    Ok(())
}

#[test]
fn promql_conformance() {
    let scope = in_scope();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir().join("testdata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    let mut outcomes: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    // PROMQL_ALL_CASES=1 also runs the out-of-scope cases and counts them.
    let all_cases = std::env::var_os("PROMQL_ALL_CASES").is_some();
    let mut out_of_scope: BTreeMap<bool, usize> = BTreeMap::new();
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let commands = match script::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                for id in scope
                    .iter()
                    .filter(|id| id.starts_with(&format!("{file}:")))
                {
                    outcomes.insert(id.clone(), Err(format!("script parse error: {e}")));
                }
                continue;
            }
        };
        let mut blocks = Vec::new();
        let mut loaded: Option<Loaded> = None;
        for command in commands {
            match command {
                Command::Clear => {
                    blocks.clear();
                    loaded = None;
                }
                Command::Load(series) => {
                    blocks.push(series);
                    loaded = None;
                }
                Command::Eval(case) => {
                    let id = format!("{file}:{}", case.line);
                    let in_scope = scope.contains(&id);
                    if !in_scope && !all_cases {
                        continue;
                    }
                    let current = loaded.get_or_insert_with(|| load(&runtime, &blocks));
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_case(&case, &current.engine)
                    }))
                    .unwrap_or_else(|_| Err("panicked".into()));
                    if !in_scope {
                        *out_of_scope.entry(outcome.is_ok()).or_insert(0) += 1;
                        if let Err(e) = &outcome {
                            println!("OUT {id}: {}\n     {e}", case.expr);
                        }
                        continue;
                    }
                    if let Err(e) = &outcome {
                        println!("FAIL {id}: {}\n     {e}", case.expr);
                    }
                    outcomes.insert(id, outcome);
                }
            }
        }
        if let Some(current) = loaded.take() {
            runtime.block_on(current.storage.close());
        }
    }
    for id in &scope {
        outcomes
            .entry(id.clone())
            .or_insert_with(|| Err("case not found in the script".into()));
    }
    if all_cases {
        println!(
            "out of scope (informational): {} passed, {} failed",
            out_of_scope.get(&true).unwrap_or(&0),
            out_of_scope.get(&false).unwrap_or(&0)
        );
    }
    report_and_compare(&outcomes);
}

fn report_and_compare(outcomes: &BTreeMap<String, Result<(), String>>) {
    let mut per_file: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (id, outcome) in outcomes {
        let file = id.split(':').next().unwrap_or("");
        let entry = per_file.entry(file).or_default();
        if outcome.is_ok() {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    for (file, (passed, failed)) in &per_file {
        println!("{file}: {passed} passed, {failed} failed");
    }
    let passed: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| o.is_ok())
        .map(|(id, _)| id)
        .collect();
    println!(
        "total: {} passed, {} failed (of {} in-scope cases)",
        passed.len(),
        outcomes.len() - passed.len(),
        outcomes.len()
    );
    let expected_path = corpus_dir().join("expected-pass.txt");
    if std::env::var_os("PROMQL_WRITE_EXPECTED").is_some() {
        let mut text = String::new();
        for id in &passed {
            text.push_str(id);
            text.push('\n');
        }
        std::fs::write(&expected_path, text).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    let regressed: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|id| !matches!(outcomes.get(*id), Some(Ok(()))))
        .collect();
    assert!(
        regressed.is_empty(),
        "cases listed in expected-pass.txt no longer pass: {regressed:?}"
    );
}
