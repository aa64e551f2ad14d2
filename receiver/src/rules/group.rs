//! One rule group at run time: when it evaluates (Prometheus's alignment:
//! interval multiples shifted by a hash of the group's file and name, so
//! groups spread out and keep their phase across restarts), and what one
//! evaluation does: its rules in order, each result written to storage
//! before the next rule runs, vanished series marked stale.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::SeriesSamples;

use super::alert::{AlertRule, Alerts, State};
use super::file::{GroupSpec, RuleKind, RuleSpec};
use super::metrics::{GroupLabels, RuleMetrics};
use crate::promql::value::METRIC_NAME;
use crate::promql::{Engine, Sample, Value};
use crate::storage::Storage;

/// Prometheus's staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A rule's health after its latest evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not evaluated yet.
    Unknown,
    /// Evaluated without error.
    Ok,
    /// The latest evaluation failed.
    Err,
}

impl Health {
    /// The API's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// One rule and what its evaluations left.
#[derive(Debug, Clone)]
pub struct RuleState {
    /// The rule as loaded.
    pub spec: RuleSpec,
    /// Health after the latest evaluation.
    pub health: Health,
    /// The latest evaluation's error.
    pub last_error: String,
    /// When it was last evaluated (ms since the epoch).
    pub last_evaluation_ms: Option<i64>,
    /// How long the latest evaluation took.
    pub evaluation_time: Duration,
    /// An alerting rule's alerts.
    pub alerts: Alerts,
    /// The series written by the latest evaluation, to mark stale the
    /// ones the next does not write.
    written: HashSet<Vec<(String, String)>>,
}

/// A group, its rules' state, and its latest evaluation.
#[derive(Debug, Clone)]
pub struct GroupState {
    /// The group as loaded.
    pub spec: GroupSpec,
    /// Its rules.
    pub rules: Vec<RuleState>,
    /// When it was last evaluated (ms since the epoch).
    pub last_evaluation_ms: Option<i64>,
    /// How long its latest evaluation took.
    pub evaluation_time: Duration,
    /// Whether its alerts' `for` progress has been read back from
    /// `ALERTS_FOR_STATE` (or needs no reading: a group added by a
    /// reload). Until then its alerts are not written.
    pub restored: bool,
}

/// How far back `ALERTS_FOR_STATE` is read when the receiver starts
/// (Prometheus's `--rules.alert.for-outage-tolerance`).
pub const OUTAGE_TOLERANCE: Duration = Duration::from_secs(3600);

/// Least time a restored alert still waits before it fires (Prometheus's
/// `--rules.alert.for-grace-period`).
pub const FOR_GRACE_PERIOD: Duration = Duration::from_secs(600);

impl GroupState {
    /// A group not evaluated yet.
    pub fn new(spec: GroupSpec) -> GroupState {
        let rules = spec
            .rules
            .iter()
            .map(|rule| RuleState {
                spec: rule.clone(),
                health: Health::Unknown,
                last_error: String::new(),
                last_evaluation_ms: None,
                evaluation_time: Duration::ZERO,
                alerts: Alerts::default(),
                written: HashSet::new(),
            })
            .collect();
        GroupState {
            spec,
            rules,
            last_evaluation_ms: None,
            evaluation_time: Duration::ZERO,
            restored: false,
        }
    }

    /// The `rule_group` label of its metrics: `file;name`.
    pub fn key(&self) -> String {
        format!("{};{}", self.spec.file, self.spec.name)
    }

    /// Evaluates every rule at `ts_ms` in order, writing each result to
    /// `storage` (through `runtime`, from this evaluation thread) before
    /// the next rule runs.
    pub fn evaluate(
        &mut self,
        engine: &Engine,
        storage: &Storage,
        runtime: &tokio::runtime::Handle,
        ts_ms: i64,
        metrics: &RuleMetrics,
    ) {
        let started = Instant::now();
        let labels = GroupLabels {
            rule_group: self.key(),
        };
        let at = ts_ms - self.spec.query_offset.as_millis() as i64;
        let limit = self.spec.limit;
        let mut samples_written = 0;
        let restored = self.restored;
        for rule in &mut self.rules {
            let rule_started = Instant::now();
            metrics.evaluations.get_or_create(&labels).inc();
            let outcome = evaluate_rule(rule, engine, at, limit).and_then(|mut samples| {
                // As Prometheus: no ALERTS before the state is restored,
                // which reads the ALERTS_FOR_STATE written before.
                if !restored && matches!(rule.spec.kind, RuleKind::Alert { .. }) {
                    samples.clear();
                }
                samples_written += samples.len();
                write(rule, storage, runtime, at, samples)
            });
            match outcome {
                Ok(()) => {
                    rule.health = Health::Ok;
                    rule.last_error.clear();
                }
                Err(err) => {
                    metrics.failures.get_or_create(&labels).inc();
                    tracing::warn!(group = %self.spec.name, rule = rule.spec.name(), error = %err, "rule evaluation failed");
                    rule.health = Health::Err;
                    rule.last_error = err;
                }
            }
            rule.evaluation_time = rule_started.elapsed();
            rule.last_evaluation_ms = Some(ts_ms);
            metrics
                .evaluation_duration
                .observe(rule.evaluation_time.as_secs_f64());
        }
        if !self.restored {
            self.restore(engine, at);
            self.restored = true;
        }
        self.evaluation_time = started.elapsed();
        self.last_evaluation_ms = Some(ts_ms);
        metrics.iterations.get_or_create(&labels).inc();
        metrics
            .last_evaluation
            .get_or_create(&labels)
            .set(ts_ms as f64 / 1000.0);
        metrics
            .last_duration
            .get_or_create(&labels)
            .set(self.evaluation_time.as_secs_f64());
        metrics
            .last_samples
            .get_or_create(&labels)
            .set(samples_written as f64);
    }

    /// Reads back, once after the receiver starts, the `for` progress of
    /// the alerts its first evaluation found active.
    fn restore(&mut self, engine: &Engine, at: i64) {
        for rule in &mut self.rules {
            let RuleKind::Alert { name, hold, .. } = &rule.spec.kind else {
                continue;
            };
            if *hold < FOR_GRACE_PERIOD || rule.alerts.active().is_empty() {
                continue;
            }
            let query = format!(
                "ALERTS_FOR_STATE{{alertname={name:?}}}[{}s]",
                OUTAGE_TOLERANCE.as_secs()
            );
            let series = match engine.instant_query(&query, at) {
                Ok(result) => match result.value {
                    Value::Matrix(series) => series,
                    _ => continue,
                },
                Err(err) => {
                    tracing::warn!(rule = %name, error = %err.message, "restoring alert state failed");
                    continue;
                }
            };
            let found: HashMap<Vec<(String, String)>, (i64, f64)> = series
                .into_iter()
                .filter_map(|s| {
                    let last = *s.points.last()?;
                    let labels = s
                        .labels
                        .iter()
                        .filter(|(n, _)| n != METRIC_NAME)
                        .cloned()
                        .collect();
                    Some((labels, last))
                })
                .collect();
            rule.alerts.restore(&found, at, *hold, FOR_GRACE_PERIOD);
        }
    }

    /// The alerts of every alerting rule, pending and firing.
    pub fn active_alerts(&self) -> impl Iterator<Item = &super::alert::Alert> {
        self.rules.iter().flat_map(|r| r.alerts.active())
    }

    /// Whether any alert of the group is active.
    pub fn firing_or_pending(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.alerts.state() != State::Inactive)
    }
}

/// Evaluates one rule at `at`: the samples to write there.
fn evaluate_rule(
    rule: &mut RuleState,
    engine: &Engine,
    at: i64,
    limit: usize,
) -> Result<Vec<Sample>, String> {
    let result = engine
        .instant_query_parsed(&rule.spec.expr_text, &rule.spec.expr, at)
        .map_err(|err| err.message)?;
    let vector = match result.value {
        Value::Vector(samples) => samples,
        Value::Scalar(value) => vec![Sample {
            labels: crate::promql::value::empty_labels(),
            value,
        }],
        other => {
            return Err(format!(
                "rule result is not a vector or scalar: {}",
                other.type_name()
            ));
        }
    };
    match &rule.spec.kind {
        RuleKind::Record { name } => {
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(vector.len());
            for sample in vector {
                let mut labels: BTreeMap<String, String> = sample.labels.iter().cloned().collect();
                labels.insert(METRIC_NAME.to_owned(), name.clone());
                for (label, value) in &rule.spec.labels {
                    if value.text().is_empty() {
                        labels.remove(label);
                    } else {
                        labels.insert(label.clone(), value.text().to_owned());
                    }
                }
                let labels: Vec<(String, String)> = labels.into_iter().collect();
                if !seen.insert(labels.clone()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                out.push(Sample {
                    labels: labels.into(),
                    value: sample.value,
                });
            }
            if limit > 0 && out.len() > limit {
                return Err(format!(
                    "exceeded limit of {limit} with {} series",
                    out.len()
                ));
            }
            Ok(out)
        }
        RuleKind::Alert {
            name,
            hold,
            keep_firing_for,
            annotations,
        } => {
            let alert_rule = AlertRule {
                name: name.clone(),
                hold: *hold,
                keep_firing_for: *keep_firing_for,
                labels: rule.spec.labels.clone(),
                annotations: annotations.clone(),
            };
            rule.alerts
                .update(&alert_rule, &vector, at, limit, &BTreeMap::new())
                .map_err(|err| err.0)
        }
    }
}

/// Writes `samples` at `at`, and a staleness marker for each series the
/// rule wrote last time and not now.
fn write(
    rule: &mut RuleState,
    storage: &Storage,
    runtime: &tokio::runtime::Handle,
    at: i64,
    samples: Vec<Sample>,
) -> Result<(), String> {
    let now: HashSet<Vec<(String, String)>> = samples.iter().map(|s| s.labels.to_vec()).collect();
    let mut series: Vec<SeriesSamples> = samples
        .into_iter()
        .map(|s| SeriesSamples {
            labels: s.labels.to_vec(),
            samples: vec![(at, s.value)],
        })
        .collect();
    series.extend(rule.written.difference(&now).map(|labels| SeriesSamples {
        labels: labels.clone(),
        samples: vec![(at, f64::from_bits(STALE_NAN))],
    }));
    rule.written = now;
    if series.is_empty() {
        return Ok(());
    }
    runtime
        .block_on(storage.append(series, Vec::new()))
        .map(|_| ())
        .map_err(|err| format!("writing the rule's results: {err}"))
}

/// The evaluation time of the group with `key_hash` at or before `now_ns`
/// for `interval`: Prometheus's `EvalTimestamp`.
pub fn eval_timestamp_ns(now_ns: i128, interval: Duration, key_hash: u64) -> i128 {
    let interval = interval.as_nanos().max(1) as i128;
    let offset = (u128::from(key_hash) % interval as u128) as i128;
    let adjusted = now_ns - offset;
    adjusted - adjusted.rem_euclid(interval) + offset
}

/// The hash Prometheus spreads a group by: its label set `{file, name}`.
pub fn group_hash(file: &str, name: &str) -> u64 {
    let mut bytes = Vec::with_capacity(file.len() + name.len() + 12);
    for (label, value) in [("file", file), ("name", name)] {
        bytes.extend_from_slice(label.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0xff);
    }
    xxhash64(&bytes)
}

/// XXH64 with seed 0 (the hash Prometheus's label sets use).
fn xxhash64(input: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    fn round(acc: u64, lane: u64) -> u64 {
        acc.wrapping_add(lane.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    }
    fn merge(acc: u64, lane: u64) -> u64 {
        (acc ^ round(0, lane)).wrapping_mul(P1).wrapping_add(P4)
    }
    let read64 = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let mut rest = input;
    let mut hash = if input.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, read64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge(h, lane);
        }
        h
    } else {
        P5
    };
    hash = hash.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        hash ^= round(0, read64(rest));
        hash = hash.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let word = u64::from(u32::from_le_bytes(rest[..4].try_into().unwrap_or([0; 4])));
        hash ^= word.wrapping_mul(P1);
        hash = hash.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &byte in rest {
        hash ^= u64::from(byte).wrapping_mul(P5);
        hash = hash.rotate_left(11).wrapping_mul(P1);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(P2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(P3);
    hash ^ (hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_the_reference_vectors() {
        assert_eq!(xxhash64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"abc"), 0x44BC_2CF5_AD77_0999);
        // Longer than one 32-byte stripe.
        assert_eq!(
            xxhash64(b"Nobody inspects the spammish repetition"),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn evaluation_times_are_interval_multiples_shifted_by_the_hash() {
        let minute = Duration::from_secs(60);
        let hash = group_hash("rules/a.yml", "g");
        let offset = i128::from(hash % 60_000_000_000);
        let now = 1_700_000_000_123_456_789i128;
        let ts = eval_timestamp_ns(now, minute, hash);
        assert!(ts <= now && now - ts < 60_000_000_000);
        assert_eq!((ts - offset).rem_euclid(60_000_000_000), 0);
        assert_eq!(eval_timestamp_ns(ts, minute, hash), ts);
    }
}
