//! The shipped promtool rule unit tests (`rules/tests/*.yml`, run by
//! `promtool test rules` in `rules.rs`) replayed through the receiver's own
//! rule evaluator, so the same files prove both promtool and the receiver.
//!
//! Each test is run as promtool runs it: its input series are loaded into
//! a real storage (SQLite in a temporary directory) up to each evaluation
//! time; every rule group (file order, or `group_eval_order`) is evaluated
//! by `GroupState::evaluate` at each `evaluation_interval` step from 0 to
//! the latest `eval_time`, recording rules' results stored for the rules
//! after them and alert state carried from step to step. An
//! `alert_rule_test` is checked right after the step at or just before its
//! `eval_time`, against the firing alerts of its `alertname` (pending ones
//! do not count); a `promql_expr_test` is queried once every step has run.
//! Alerts and samples are compared as sets. Every mismatch names the file,
//! the test, the eval_time and what differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dcmon_protocol::remote_write::SeriesSamples;
use dcmon_receiver::promql::{Engine, EngineOptions, Value};
use dcmon_receiver::rules::RuleMetrics;
use dcmon_receiver::rules::alert::State;
use dcmon_receiver::rules::file::{self, RuleKind};
use dcmon_receiver::rules::group::{GroupState, Health};
use dcmon_receiver::storage::{Options, Storage};
use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

use crate::common::fleet::workspace_root;
use crate::common::series_notation::{LabelSet, duration_ms, expand_values, parse_metric};

/// Relative tolerance of `exp_samples` values: promtool's `fuzzy_compare`
/// epsilon, so float rounding in a different evaluation order is no
/// mismatch.
const VALUE_EPSILON: f64 = 1e-6;

// The file layout, field for field as promtool reads it (it refuses an
// unknown field too). Durations and label values are read as YAML scalars
// because Go's YAML reads `eval_time: 0` or `gpu: 2` into a string.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<Yaml>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<RawTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    #[serde(default)]
    name: String,
    interval: Option<Yaml>,
    #[serde(default)]
    input_series: Vec<RawSeries>,
    #[serde(default)]
    alert_rule_test: Vec<RawAlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<RawExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, Yaml>,
    external_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertTest {
    eval_time: Option<Yaml>,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<RawAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, Yaml>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, Yaml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExprTest {
    expr: String,
    eval_time: Option<Yaml>,
    #[serde(default)]
    exp_samples: Vec<RawSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    labels: String,
    value: f64,
}

/// An alert as compared: labels and annotations, each sorted by name.
type AlertView = (LabelSet, LabelSet);

/// One `alert_rule_test`, read.
struct AlertCase {
    /// Position in the test's `alert_rule_test`.
    index: usize,
    eval_ms: i64,
    eval_text: String,
    alertname: String,
    expected: Vec<AlertView>,
}

/// One `promql_expr_test`, read.
struct ExprCase {
    index: usize,
    eval_ms: i64,
    eval_text: String,
    expr: String,
    expected: Vec<(LabelSet, f64)>,
}

/// One test of a file, read and checked before anything is evaluated.
struct UnitTest {
    /// Where it is: `file: tests[i] "name"`.
    place: String,
    interval_ms: i64,
    input: Vec<(LabelSet, Vec<(i64, f64)>)>,
    alerts: Vec<AlertCase>,
    exprs: Vec<ExprCase>,
}

/// What replaying one file found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Alert and expression tests compared.
    pub checked: usize,
    /// Each failed comparison or evaluation, described.
    pub mismatches: Vec<String>,
}

/// Replays one promtool unit-test file. `Err` is a file that cannot be
/// used (unreadable, unknown field, bad notation, bad rule file), with
/// where in it.
pub fn replay(path: &Path) -> Result<Replay, String> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let raw: RawFile = serde_yaml_ng::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
    let eval_interval_ms = match &raw.evaluation_interval {
        Some(value) => duration(value).map_err(|e| format!("{shown}: evaluation_interval: {e}"))?,
        None => 0,
    };
    let eval_interval_ms = if eval_interval_ms == 0 {
        60_000
    } else {
        eval_interval_ms
    };
    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, name) in raw.group_eval_order.iter().enumerate() {
        if order.insert(name, i).is_some() {
            return Err(format!(
                "{shown}: group name repeated in group_eval_order: {name}"
            ));
        }
    }
    // Rule files are relative to the test file, as promtool resolves them.
    let base = path.parent().unwrap_or(Path::new("."));
    let rule_files: Vec<String> = raw
        .rule_files
        .iter()
        .map(|f| {
            if Path::new(f).is_absolute() {
                f.clone()
            } else {
                base.join(f).display().to_string()
            }
        })
        .collect();
    let tests = raw
        .tests
        .iter()
        .enumerate()
        .map(|(i, test)| read_test(&shown, i, test, eval_interval_ms))
        .collect::<Result<Vec<_>, _>>()?;

    // Tests are independent (each has its own rule state and storage), so
    // they run side by side; the long ones evaluate thousands of steps.
    let outcomes: Vec<Result<Replay, String>> = std::thread::scope(|scope| {
        let running: Vec<_> = tests
            .iter()
            .map(|test| {
                let (rule_files, order) = (&rule_files, &order);
                scope.spawn(move || replay_test(test, rule_files, order, eval_interval_ms))
            })
            .collect();
        running
            .into_iter()
            .zip(&tests)
            .map(|(thread, test)| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(format!("{}: the replay panicked", test.place)))
            })
            .collect()
    });
    let mut replay = Replay::default();
    for outcome in outcomes {
        let one = outcome?;
        replay.checked += one.checked;
        replay.mismatches.extend(one.mismatches);
    }
    Ok(replay)
}

/// Replays one test of a file with its own rule groups and storage.
fn replay_test(
    test: &UnitTest,
    rule_files: &[String],
    order: &BTreeMap<&str, usize>,
    eval_interval_ms: i64,
) -> Result<Replay, String> {
    // promtool loads the rule files per test, with the test's interval as
    // the groups' default.
    let interval = Duration::from_millis(test.interval_ms as u64);
    let mut groups = file::load(rule_files, interval)
        .map_err(|e| format!("{}: rule files: {e}", test.place))?
        .groups;
    // promtool's ordering: by place in group_eval_order, a group not named
    // there counting as the first.
    groups.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(0));
    let groups = groups
        .into_iter()
        .map(|spec| {
            let mut state = GroupState::new(spec);
            // As promtool marks its rules restored: no earlier run's `for`
            // progress to read, and ALERTS written from the first
            // evaluation.
            state.restored = true;
            state
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?;
    let mut replay = Replay::default();
    run_test(&runtime, test, groups, eval_interval_ms, &mut replay)?;
    Ok(replay)
}

/// Reads one test; `Err` says what in it cannot be used.
fn read_test(
    file: &str,
    index: usize,
    raw: &RawTest,
    eval_interval_ms: i64,
) -> Result<UnitTest, String> {
    let place = if raw.name.is_empty() {
        format!("{file}: tests[{index}]")
    } else {
        format!("{file}: tests[{index}] {:?}", raw.name)
    };
    // The receiver's evaluator renders templates without external labels
    // or URL; a test relying on them cannot be replayed faithfully.
    if !raw.external_labels.is_empty() || raw.external_url.is_some() {
        return Err(format!(
            "{place}: external_labels and external_url are not supported by the receiver's rule evaluator"
        ));
    }
    let interval_ms = match &raw.interval {
        Some(value) => duration(value).map_err(|e| format!("{place}: interval: {e}"))?,
        None => 0,
    };
    // An unset interval is the evaluation interval, as promtool documents
    // it (promtool 2.42 itself loads such series all at time 0).
    let interval_ms = if interval_ms == 0 {
        eval_interval_ms
    } else {
        interval_ms
    };
    let mut input = Vec::new();
    for (k, series) in raw.input_series.iter().enumerate() {
        let at = format!("{place}: input_series[{k}]");
        let labels = selector(&series.series)
            .ok_or_else(|| format!("{at}: not a series selector: {:?}", series.series))?;
        let values = expand_values(&series.values)
            .map_err(|()| format!("{at}: values cannot be read: {:?}", series.values))?;
        let samples = values
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as i64 * interval_ms, v)))
            .collect();
        input.push((labels, samples));
    }
    let mut alerts = Vec::new();
    for (k, case) in raw.alert_rule_test.iter().enumerate() {
        let at = format!("{place}: alert_rule_test[{k}]");
        if case.alertname.is_empty() {
            return Err(format!("{at}: alertname is missing"));
        }
        let (eval_ms, eval_text) =
            eval_time(case.eval_time.as_ref()).map_err(|e| format!("{at}: eval_time: {e}"))?;
        let mut expected = Vec::new();
        for (j, alert) in case.exp_alerts.iter().enumerate() {
            let at = format!("{at}: exp_alerts[{j}]");
            let mut labels =
                scalar_map(&alert.exp_labels).map_err(|e| format!("{at}: exp_labels: {e}"))?;
            // The rule adds alertname; the test does not spell it out.
            labels.retain(|(n, _)| n != "alertname");
            labels.push(("alertname".to_owned(), case.alertname.clone()));
            labels.sort();
            let annotations = scalar_map(&alert.exp_annotations)
                .map_err(|e| format!("{at}: exp_annotations: {e}"))?;
            expected.push((labels, annotations));
        }
        expected.sort();
        alerts.push(AlertCase {
            index: k,
            eval_ms,
            eval_text,
            alertname: case.alertname.clone(),
            expected,
        });
    }
    let mut exprs = Vec::new();
    for (k, case) in raw.promql_expr_test.iter().enumerate() {
        let at = format!("{place}: promql_expr_test[{k}]");
        let (eval_ms, eval_text) =
            eval_time(case.eval_time.as_ref()).map_err(|e| format!("{at}: eval_time: {e}"))?;
        let mut expected = Vec::new();
        for (j, sample) in case.exp_samples.iter().enumerate() {
            let labels = selector(&sample.labels).ok_or_else(|| {
                format!(
                    "{at}: exp_samples[{j}]: not a series selector: {:?}",
                    sample.labels
                )
            })?;
            expected.push((labels, sample.value));
        }
        exprs.push(ExprCase {
            index: k,
            eval_ms,
            eval_text,
            expr: case.expr.clone(),
            expected,
        });
    }
    Ok(UnitTest {
        place,
        interval_ms,
        input,
        alerts,
        exprs,
    })
}

/// Runs one test over a fresh storage, adding its checks and mismatches
/// to `replay`.
fn run_test(
    runtime: &tokio::runtime::Runtime,
    test: &UnitTest,
    mut groups: Vec<GroupState>,
    eval_interval_ms: i64,
    replay: &mut Replay,
) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let storage = Storage::open(&dir.path().join("rules.db"), Options::default())
        .map_err(|e| format!("opening the storage: {e}"))?;
    let engine = Engine::new(
        storage.clone(),
        EngineOptions {
            // promtool's subquery step is the evaluation interval.
            default_subquery_step: Duration::from_millis(eval_interval_ms as u64),
            ..EngineOptions::default()
        },
    );
    let metrics = RuleMetrics::default();
    let mut alert_cases: Vec<&AlertCase> = test.alerts.iter().collect();
    alert_cases.sort_by_key(|c| (c.eval_ms, c.index));
    let last_ms = test
        .alerts
        .iter()
        .map(|c| c.eval_ms)
        .chain(test.exprs.iter().map(|c| c.eval_ms))
        .max()
        .unwrap_or(0);
    let mut loaded = vec![0usize; test.input.len()];
    let mut next_case = 0;
    let mut ts = 0;
    while ts <= last_ms {
        // Input samples up to this step only, as promtool's loader gives them.
        let mut batch = Vec::new();
        for ((labels, samples), done) in test.input.iter().zip(loaded.iter_mut()) {
            let upto = *done
                + samples[*done..]
                    .iter()
                    .take_while(|(t, _)| *t <= ts)
                    .count();
            if upto > *done {
                batch.push(SeriesSamples {
                    labels: labels.clone(),
                    samples: samples[*done..upto].to_vec(),
                });
                *done = upto;
            }
        }
        if !batch.is_empty() {
            runtime
                .block_on(storage.append(batch, Vec::new()))
                .map_err(|e| format!("{}: loading input at {ts} ms: {e}", test.place))?;
        }
        let mut failed = Vec::new();
        for group in &mut groups {
            group.evaluate(&engine, &storage, runtime.handle(), ts, &metrics);
            for rule in group.rules.iter().filter(|r| r.health == Health::Err) {
                failed.push(format!(
                    "{}: rule {:?} failed at {}: {}",
                    test.place,
                    rule.spec.name(),
                    show_ms(ts),
                    rule.last_error
                ));
            }
        }
        // promtool stops a test whose rules fail to evaluate.
        if !failed.is_empty() {
            replay.mismatches.extend(failed);
            runtime.block_on(storage.close());
            return Ok(());
        }
        while let Some(case) = alert_cases.get(next_case) {
            if !(ts <= case.eval_ms && case.eval_ms < ts + eval_interval_ms) {
                break;
            }
            replay.checked += 1;
            if let Some(diff) = compare_alerts(case, &firing(&groups, &case.alertname)) {
                replay.mismatches.push(format!(
                    "{}: alert_rule_test[{}]: alertname {} at eval_time {}:\n{diff}",
                    test.place, case.index, case.alertname, case.eval_text
                ));
            }
            next_case += 1;
        }
        ts += eval_interval_ms;
    }
    for case in &test.exprs {
        replay.checked += 1;
        let at = format!(
            "{}: promql_expr_test[{}]: {:?} at eval_time {}",
            test.place, case.index, case.expr, case.eval_text
        );
        let got = match engine.instant_query(&case.expr, case.eval_ms) {
            Ok(result) => match result.value {
                Value::Vector(samples) => samples
                    .into_iter()
                    .map(|s| (s.labels.to_vec(), s.value))
                    .collect(),
                Value::Scalar(value) => vec![(Vec::new(), value)],
                other => {
                    replay.mismatches.push(format!(
                        "{at}: the result is a {}, not a vector or scalar",
                        other.type_name()
                    ));
                    continue;
                }
            },
            Err(err) => {
                replay
                    .mismatches
                    .push(format!("{at}: query failed: {}", err.message));
                continue;
            }
        };
        if let Some(diff) = compare_samples(&case.expected, got) {
            replay.mismatches.push(format!("{at}:\n{diff}"));
        }
    }
    runtime.block_on(storage.close());
    Ok(())
}

/// The firing alerts of every alerting rule named `alertname`, in every
/// group (one name may be used by several rules).
fn firing(groups: &[GroupState], alertname: &str) -> Vec<AlertView> {
    let mut got: Vec<AlertView> = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| matches!(&r.spec.kind, RuleKind::Alert { name, .. } if name == alertname))
        .flat_map(|r| r.alerts.active())
        .filter(|a| a.state == State::Firing)
        .map(|a| {
            let mut labels = a.labels.clone();
            labels.sort();
            let mut annotations = a.annotations.clone();
            annotations.sort();
            (labels, annotations)
        })
        .collect();
    got.sort();
    got
}

/// `None` when the alerts match as sets, else what is missing and what
/// is unexpected.
fn compare_alerts(case: &AlertCase, got: &[AlertView]) -> Option<String> {
    if case.expected == got {
        return None;
    }
    let mut unexpected: Vec<&AlertView> = got.iter().collect();
    let mut missing = Vec::new();
    for want in &case.expected {
        match unexpected.iter().position(|g| *g == want) {
            Some(i) => {
                unexpected.remove(i);
            }
            None => missing.push(want),
        }
    }
    let show = |alerts: &[&AlertView]| -> String {
        if alerts.is_empty() {
            return " none".to_owned();
        }
        alerts
            .iter()
            .map(|(labels, annotations)| {
                format!(
                    "\n    labels {} annotations {}",
                    show_labels(labels),
                    show_labels(annotations)
                )
            })
            .collect()
    };
    Some(format!(
        "  expected {} firing, got {}\n  missing (expected, not firing):{}\n  unexpected (firing, not expected):{}",
        case.expected.len(),
        got.len(),
        show(&missing),
        show(&unexpected)
    ))
}

/// `None` when the samples match as sets (values within
/// [`VALUE_EPSILON`]), else what is missing and what is unexpected.
fn compare_samples(expected: &[(LabelSet, f64)], got: Vec<(LabelSet, f64)>) -> Option<String> {
    let mut unexpected: Vec<(LabelSet, f64)> = got
        .into_iter()
        .map(|(mut labels, value)| {
            labels.sort();
            (labels, value)
        })
        .collect();
    let mut missing = Vec::new();
    for (labels, value) in expected {
        match unexpected
            .iter()
            .position(|(l, v)| l == labels && values_match(*value, *v))
        {
            Some(i) => {
                unexpected.remove(i);
            }
            None => missing.push((labels.clone(), *value)),
        }
    }
    if missing.is_empty() && unexpected.is_empty() {
        return None;
    }
    let show = |samples: &[(LabelSet, f64)]| -> String {
        if samples.is_empty() {
            return " none".to_owned();
        }
        samples
            .iter()
            .map(|(labels, value)| format!("\n    {} {value}", show_labels(labels)))
            .collect()
    };
    Some(format!(
        "  missing (expected, not returned):{}\n  unexpected (returned, not expected):{}",
        show(&missing),
        show(&unexpected)
    ))
}

/// Whether `got` is `want`, within [`VALUE_EPSILON`] of it relatively.
fn values_match(want: f64, got: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    want == got || (want - got).abs() <= VALUE_EPSILON * want.abs().max(got.abs())
}

/// A series selector's label set (the name as `__name__`); `None` if it
/// is not one or is followed by anything.
fn selector(text: &str) -> Option<LabelSet> {
    match parse_metric(text)? {
        (labels, "") => Some(labels),
        _ => None,
    }
}

/// A YAML scalar as Go's YAML reads it into a string.
fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Null => Some(String::new()),
        _ => None,
    }
}

/// A map of scalars, sorted by name.
fn scalar_map(map: &BTreeMap<String, Yaml>) -> Result<LabelSet, String> {
    map.iter()
        .map(|(name, value)| {
            scalar(value)
                .map(|v| (name.clone(), v))
                .ok_or_else(|| format!("{name}: not a string"))
        })
        .collect()
}

/// A duration (`90s`, `1h30m`, `0`) in ms.
fn duration(value: &Yaml) -> Result<i64, String> {
    let text = scalar(value).ok_or("not a duration")?;
    duration_ms(&text).ok_or_else(|| format!("not a duration: {text:?}"))
}

/// An `eval_time` (0 when absent, as promtool reads it) in ms, and as
/// written.
fn eval_time(value: Option<&Yaml>) -> Result<(i64, String), String> {
    match value {
        None => Ok((0, "0s".to_owned())),
        Some(value) => Ok((duration(value)?, scalar(value).unwrap_or_default())),
    }
}

fn show_labels(labels: &LabelSet) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// A step's time from 0 as promtool names it (`4m`, `90s`).
fn show_ms(ms: i64) -> String {
    if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms as f64 / 1000.0)
    }
}

/// The shipped unit-test files.
fn shipped() -> Vec<PathBuf> {
    let dir = workspace_root().join("rules/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

/// Runs real `promtool test rules` on `file`: whether it passed, and its
/// output.
fn promtool_test(file: &Path) -> (bool, String) {
    let output = Command::new("promtool")
        .args(["test", "rules"])
        .arg(file)
        .output()
        .expect("promtool is not installed (apt-get install prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn shipped_rule_unit_tests_pass_in_the_receivers_evaluator() {
    let files = shipped();
    assert!(
        files.len() >= 6,
        "rules/tests/*.yml went missing: {files:?}"
    );
    let outcomes: Vec<Result<Replay, String>> = std::thread::scope(|scope| {
        let running: Vec<_> = files.iter().map(|f| scope.spawn(|| replay(f))).collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (file, outcome) in files.iter().zip(outcomes) {
        match outcome {
            Ok(replay) => {
                // A file whose tests compare nothing proves nothing.
                if replay.checked == 0 {
                    failures.push(format!(
                        "{}: no alert or expression test ran",
                        file.display()
                    ));
                }
                failures.extend(replay.mismatches);
            }
            Err(err) => failures.push(err),
        }
    }
    assert!(
        failures.is_empty(),
        "the receiver's evaluator disagrees with rules/tests ({} failures):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Rules exercising what the replay must get right: a recording rule read
/// by the next rule, a group read by a later group, `for`, `keep_firing_for`,
/// templated labels and annotations.
const SYNTHETIC_RULES: &str = r#"groups:
  - name: first
    rules:
      - record: job:load:sum
        expr: sum by (job) (load)
      - record: job:load:doubled
        expr: job:load:sum * 2
  - name: second
    rules:
      - alert: LoadHigh
        expr: job:load:doubled > 100
        for: 2m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.job }} doubled load is {{ $value }}"
      - alert: Flapping
        expr: flap > 0
        keep_firing_for: 3m
        labels:
          severity: info
          kind: '{{ $labels.job | toUpper }}'
"#;

/// A unit test of [`SYNTHETIC_RULES`] using every part of the value
/// notation; real promtool passes it.
const SYNTHETIC_TEST: &str = r#"rule_files:
  - synthetic-rules.yml
evaluation_interval: 1m
group_eval_order: [first, second]
tests:
  - name: notation, chaining, for and keep_firing_for
    interval: 1m
    input_series:
      - series: 'load{job="a",instance="1"}'
        values: '1e1+1e1x10'
      - series: 'load{job="a",instance="2"}'
        values: '_x3 30 stale 30x5'
      - series: 'flap{job="a"}'
        values: '1 1 0 _ 0x6'
      - series: 'flap{job="b"}'
        values: '0 1 1 0x7'
      - series: 'infinite{job="a"}'
        values: 'Inf -Inf'
      - series: 'notnum{job="a"}'
        values: 'NaN NaN'
      - series: 'down{job="a"}'
        values: '5-1x4'
    alert_rule_test:
      - eval_time: 3m
        alertname: LoadHigh
        exp_alerts: []
      - eval_time: 6m
        alertname: LoadHigh
        exp_alerts: []
      - eval_time: 7m
        alertname: LoadHigh
        exp_alerts:
          - exp_labels: {severity: warning, job: a}
            exp_annotations:
              summary: "a doubled load is 220"
      - eval_time: 7m30s
        alertname: LoadHigh
        exp_alerts:
          - exp_labels: {severity: warning, job: a}
            exp_annotations:
              summary: "a doubled load is 220"
      - eval_time: 0m
        alertname: Flapping
        exp_alerts:
          - exp_labels: {severity: info, job: a, kind: A}
      - eval_time: 4m
        alertname: Flapping
        exp_alerts:
          - exp_labels: {severity: info, job: a, kind: A}
          - exp_labels: {severity: info, job: b, kind: B}
      - eval_time: 5m
        alertname: Flapping
        exp_alerts:
          - exp_labels: {severity: info, job: b, kind: B}
      - eval_time: 6m
        alertname: Flapping
        exp_alerts: []
    promql_expr_test:
      - expr: job:load:doubled
        eval_time: 4m
        exp_samples:
          - labels: 'job:load:doubled{job="a"}'
            value: 100
      - expr: ALERTS{alertname="LoadHigh"}
        eval_time: 6m
        exp_samples:
          - labels: 'ALERTS{alertname="LoadHigh",alertstate="pending",job="a",severity="warning"}'
            value: 1
      - expr: infinite
        eval_time: 1m
        exp_samples:
          - labels: 'infinite{job="a"}'
            value: -.inf
      - expr: notnum > 0
        eval_time: 1m
        exp_samples: []
      - expr: down
        eval_time: 4m
        exp_samples:
          - labels: 'down{job="a"}'
            value: 1
      - expr: 1 + 1
        eval_time: 0m
        exp_samples:
          - labels: '{}'
            value: 2
"#;

/// Writes the synthetic rules and `test` into `dir`: the test file's path.
fn write_synthetic(dir: &Path, test: &str) -> PathBuf {
    std::fs::write(dir.join("synthetic-rules.yml"), SYNTHETIC_RULES).unwrap();
    let path = dir.join("synthetic.yml");
    std::fs::write(&path, test).unwrap();
    path
}

/// `text` with `from` replaced by `to`, which must be there once.
fn changed(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} is not in the text once"
    );
    text.replacen(from, to, 1)
}

#[test]
fn replay_agrees_with_promtool_on_notation_order_and_alert_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_synthetic(dir.path(), SYNTHETIC_TEST);
    let (passed, output) = promtool_test(&path);
    assert!(passed, "promtool fails the synthetic test:\n{output}");
    let replay = replay(&path).unwrap();
    assert_eq!(replay.mismatches, Vec::<String>::new());
    assert_eq!(replay.checked, 14, "8 alert and 6 expression tests");
}

#[test]
fn changed_expectations_fail_in_both_promtool_and_the_replay() {
    // Each change breaks one expectation: the replay must report it with
    // its place and diff, and promtool must fail it too.
    let cases = [
        // Pending for 1m of its 2m `for`: not firing yet.
        (
            "      - eval_time: 6m\n        alertname: LoadHigh\n        exp_alerts: []",
            "      - eval_time: 6m\n        alertname: LoadHigh\n        exp_alerts:\n          - exp_labels: {severity: warning, job: a}\n            exp_annotations:\n              summary: \"a doubled load is 200\"",
            vec![
                "tests[0]",
                "alert_rule_test[1]",
                "alertname LoadHigh at eval_time 6m",
                "expected 1 firing, got 0",
                "a doubled load is 200",
            ],
        ),
        // keep_firing_for (3m) ran out for job a at 5m.
        (
            "      - eval_time: 5m\n        alertname: Flapping\n        exp_alerts:\n",
            "      - eval_time: 5m\n        alertname: Flapping\n        exp_alerts:\n          - exp_labels: {severity: info, job: a, kind: A}\n",
            vec![
                "alert_rule_test[6]",
                "alertname Flapping at eval_time 5m",
                "expected 2 firing, got 1",
                "kind=\"A\"",
            ],
        ),
        // A rendered annotation.
        (
            "summary: \"a doubled load is 220\"\n      - eval_time: 7m30s",
            "summary: \"a doubled load is 221\"\n      - eval_time: 7m30s",
            vec![
                "alert_rule_test[2]",
                "at eval_time 7m",
                "a doubled load is 221",
                "a doubled load is 220",
            ],
        ),
        // A recorded value.
        (
            "            value: 100",
            "            value: 100.5",
            vec![
                "promql_expr_test[0]",
                "\"job:load:doubled\" at eval_time 4m",
                "100.5",
                "job=\"a\"} 100",
            ],
        ),
    ];
    for (from, to, needles) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = write_synthetic(dir.path(), &changed(SYNTHETIC_TEST, from, to));
        let (passed, output) = promtool_test(&path);
        assert!(
            !passed,
            "promtool passes the changed test {to:?}:\n{output}"
        );
        let replay = replay(&path).unwrap();
        assert_eq!(
            replay.mismatches.len(),
            1,
            "{to:?}: {:#?}",
            replay.mismatches
        );
        let message = &replay.mismatches[0];
        assert!(message.contains("synthetic.yml"), "{message}");
        for needle in needles {
            assert!(message.contains(needle), "{needle:?} is not in:\n{message}");
        }
    }
}

#[test]
fn a_changed_expectation_in_a_copy_of_a_shipped_test_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("tests");
    std::fs::create_dir(&tests).unwrap();
    let rules = workspace_root().join("rules");
    std::fs::copy(
        rules.join("dcmon-alerts.yml"),
        dir.path().join("dcmon-alerts.yml"),
    )
    .unwrap();
    let original = std::fs::read_to_string(rules.join("tests/gpu.yml")).unwrap();
    let path = tests.join("gpu.yml");
    std::fs::write(
        &path,
        changed(
            &original,
            "NVML on g1 is not answering",
            "NVML on g1 is answering",
        ),
    )
    .unwrap();
    let replay = replay(&path).unwrap();
    assert_eq!(replay.mismatches.len(), 1, "{:#?}", replay.mismatches);
    let message = &replay.mismatches[0];
    println!("{message}");
    for needle in [
        "gpu.yml: tests[1] \"nvml unresponsive\": alert_rule_test[1]",
        "alertname GpuNvmlUnresponsive at eval_time 10m",
        "missing (expected, not firing):",
        "summary=\"NVML on g1 is answering\"",
        "unexpected (firing, not expected):",
        "summary=\"NVML on g1 is not answering\"",
    ] {
        assert!(message.contains(needle), "{needle:?} is not in:\n{message}");
    }
}

#[test]
fn a_test_file_that_cannot_be_used_is_refused_with_where() {
    let cases = [
        (
            changed(SYNTHETIC_TEST, "group_eval_order:", "group_eval_ordr:"),
            "unknown field `group_eval_ordr`",
        ),
        (
            changed(SYNTHETIC_TEST, "'1e1+1e1x10'", "'1e1+x10'"),
            "tests[0] \"notation, chaining, for and keep_firing_for\": input_series[0]: values cannot be read: \"1e1+x10\"",
        ),
        (
            changed(
                SYNTHETIC_TEST,
                "series: 'down{job=\"a\"}'",
                "series: 'down{job=\"a\"'",
            ),
            "input_series[6]: not a series selector",
        ),
        (
            changed(
                SYNTHETIC_TEST,
                "        alertname: Flapping\n        exp_alerts: []",
                "        exp_alerts: []",
            ),
            "alert_rule_test[7]: alertname is missing",
        ),
        (
            changed(SYNTHETIC_TEST, "eval_time: 7m30s", "eval_time: 7q"),
            "alert_rule_test[3]: eval_time: not a duration: \"7q\"",
        ),
        (
            changed(SYNTHETIC_TEST, "labels: '{}'", "labels: '{} 3'"),
            "promql_expr_test[5]: exp_samples[0]: not a series selector",
        ),
        (
            changed(
                SYNTHETIC_TEST,
                "    interval: 1m\n",
                "    interval: 1m\n    external_labels: {site: x}\n",
            ),
            "external_labels and external_url are not supported",
        ),
        (
            changed(SYNTHETIC_TEST, "  - synthetic-rules.yml", "  - absent.yml"),
            "absent.yml: cannot read",
        ),
        (
            changed(
                SYNTHETIC_TEST,
                "group_eval_order: [first, second]",
                "group_eval_order: [first, first]",
            ),
            "group name repeated in group_eval_order: first",
        ),
    ];
    for (text, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = write_synthetic(dir.path(), &text);
        let err = replay(&path).unwrap_err();
        assert!(err.contains("synthetic.yml"), "{err}");
        assert!(err.contains(needle), "{needle:?} is not in: {err}");
    }
    // A rule file that does not check is refused with its own error.
    let dir = tempfile::tempdir().unwrap();
    let path = write_synthetic(dir.path(), SYNTHETIC_TEST);
    std::fs::write(
        dir.path().join("synthetic-rules.yml"),
        changed(SYNTHETIC_RULES, "expr: flap > 0", "expr: flap >"),
    )
    .unwrap();
    let err = replay(&path).unwrap_err();
    assert!(
        err.contains("rule files:") && err.contains("Flapping"),
        "{err}"
    );
}
