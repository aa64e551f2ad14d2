//! One alerting rule's alerts from one evaluation to the next: the state
//! machine Prometheus runs (inactive → pending → firing, `for` and
//! `keep_firing_for`), and the `ALERTS` and `ALERTS_FOR_STATE` samples
//! each evaluation writes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::promql::Sample;
use crate::promql::value::{METRIC_NAME, label_value};

use super::template::{Data, Template};

/// A firing alert that stopped is still reported (as resolved) for this
/// long, as Prometheus keeps it for Alertmanager.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// Not (or no longer) active.
    Inactive,
    /// Active for less than the rule's `for`.
    Pending,
    /// Active for at least the rule's `for`.
    Firing,
}

impl State {
    /// The name the API and `alertstate` use.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
        }
    }
}

/// One alert of a rule: one label set.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Its labels: the series' without `__name__`, the rule's, `alertname`;
    /// sorted by name.
    pub labels: Vec<(String, String)>,
    /// Its annotations, rendered.
    pub annotations: Vec<(String, String)>,
    /// Where it stands.
    pub state: State,
    /// The expression's value at the latest evaluation it held.
    pub value: f64,
    /// When it became pending (ms).
    pub active_at_ms: i64,
    /// When it started firing (ms).
    pub fired_at_ms: Option<i64>,
    /// When it was resolved (ms).
    pub resolved_at_ms: Option<i64>,
    /// Since when it stays firing only through `keep_firing_for` (ms).
    pub keep_firing_since_ms: Option<i64>,
    /// When it was last queued for Alertmanager (ms).
    pub last_sent_ms: Option<i64>,
}

/// An alerting rule's settings, as the state machine needs them.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// The alert name.
    pub name: String,
    /// `for`.
    pub hold: Duration,
    /// `keep_firing_for`.
    pub keep_firing_for: Duration,
    /// Label templates.
    pub labels: Vec<(String, Template)>,
    /// Annotation templates.
    pub annotations: Vec<(String, Template)>,
}

/// The alerts of one rule, by label set.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    active: HashMap<Vec<(String, String)>, Alert>,
}

/// Why an evaluation's result cannot be turned into alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertError(pub String);

impl Alerts {
    /// Every alert known, inactive (resolved, still reported) ones included.
    pub fn all(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// Every alert known, to mark the ones sent to Alertmanager.
    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut Alert> {
        self.active.values_mut()
    }

    /// The pending and firing alerts, sorted by labels.
    pub fn active(&self) -> Vec<&Alert> {
        let mut alerts: Vec<&Alert> = self
            .active
            .values()
            .filter(|a| a.state != State::Inactive)
            .collect();
        alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
        alerts
    }

    /// The rule's state: its most advanced alert's.
    pub fn state(&self) -> State {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(State::Inactive)
    }

    /// Applies one evaluation at `ts_ms` whose result was `samples`, and
    /// returns the `ALERTS` and `ALERTS_FOR_STATE` samples to write at
    /// `ts_ms`. `limit` (0: none) bounds the alerts active at once: past
    /// it every alert is dropped and the evaluation fails, as in
    /// Prometheus.
    pub fn update(
        &mut self,
        rule: &AlertRule,
        samples: &[Sample],
        ts_ms: i64,
        limit: usize,
        external_labels: &BTreeMap<&str, &str>,
    ) -> Result<Vec<Sample>, AlertError> {
        let mut current: HashMap<Vec<(String, String)>, Alert> = HashMap::new();
        for sample in samples {
            let data = Data {
                labels: sample
                    .labels
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect(),
                external_labels: external_labels.clone(),
                external_url: "",
                value: sample.value,
            };
            let mut labels: BTreeMap<String, String> = sample
                .labels
                .iter()
                .filter(|(n, _)| n != METRIC_NAME)
                .cloned()
                .collect();
            for (name, template) in &rule.labels {
                let value = template.render(&data);
                if value.is_empty() {
                    labels.remove(name);
                } else {
                    labels.insert(name.clone(), value);
                }
            }
            labels.insert("alertname".to_owned(), rule.name.clone());
            let annotations = rule
                .annotations
                .iter()
                .map(|(name, template)| (name.clone(), template.render(&data)))
                .collect();
            let labels: Vec<(String, String)> = labels.into_iter().collect();
            if current.contains_key(&labels) {
                return Err(AlertError(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                ));
            }
            current.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: State::Pending,
                    value: sample.value,
                    active_at_ms: ts_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    keep_firing_since_ms: None,
                    last_sent_ms: None,
                },
            );
        }
        let returned: Vec<Vec<(String, String)>> = current.keys().cloned().collect();
        for (labels, alert) in current {
            match self.active.get_mut(&labels) {
                Some(known) if known.state != State::Inactive => {
                    known.value = alert.value;
                    known.annotations = alert.annotations;
                }
                _ => {
                    self.active.insert(labels, alert);
                }
            }
        }
        let hold_ms = rule.hold.as_millis() as i64;
        let keep_ms = rule.keep_firing_for.as_millis() as i64;
        let mut out = Vec::new();
        let mut active = 0;
        self.active.retain(|labels, alert| {
            if !returned.contains(labels) {
                let mut keep_firing = false;
                if alert.state == State::Firing && keep_ms > 0 {
                    let since = *alert.keep_firing_since_ms.get_or_insert(ts_ms);
                    keep_firing = ts_ms - since < keep_ms;
                }
                if alert.state == State::Pending
                    || alert
                        .resolved_at_ms
                        .is_some_and(|at| ts_ms - at > RESOLVED_RETENTION_MS)
                {
                    return false;
                }
                if alert.state != State::Inactive && !keep_firing {
                    alert.state = State::Inactive;
                    alert.resolved_at_ms = Some(ts_ms);
                }
                if !keep_firing {
                    return true;
                }
            } else {
                alert.keep_firing_since_ms = None;
            }
            active += 1;
            if alert.state == State::Pending && ts_ms - alert.active_at_ms >= hold_ms {
                alert.state = State::Firing;
                alert.fired_at_ms = Some(ts_ms);
            }
            out.push(series_sample(alert, "ALERTS", Some(alert.state), 1.0));
            out.push(series_sample(
                alert,
                "ALERTS_FOR_STATE",
                None,
                alert.active_at_ms as f64 / 1000.0,
            ));
            true
        });
        if limit > 0 && active > limit {
            self.active.clear();
            return Err(AlertError(format!(
                "exceeded limit of {limit} with {active} alerts"
            )));
        }
        Ok(out)
    }

    /// Takes over the `for` progress of the alerts found in
    /// `ALERTS_FOR_STATE` (label set without `__name__` → the latest
    /// sample's time in ms and value, the active-since seconds) when the
    /// receiver starts, as Prometheus restores it: an alert that had been
    /// pending for less than `hold` resumes with the time it was down
    /// added, one that would fire within `grace` gets `grace` more, one
    /// that was firing fires again. Rules held less than `grace` are left
    /// as they are.
    pub fn restore(
        &mut self,
        found: &HashMap<Vec<(String, String)>, (i64, f64)>,
        ts_ms: i64,
        hold: Duration,
        grace: Duration,
    ) {
        if hold < grace {
            return;
        }
        let hold_ms = hold.as_millis() as i64;
        let grace_ms = grace.as_millis() as i64;
        for (labels, alert) in &mut self.active {
            let Some(&(written_ms, since_s)) = found.get(labels) else {
                continue;
            };
            if alert.state == State::Inactive {
                continue;
            }
            // Whole seconds, as Prometheus reads both back.
            let down_at = written_ms.div_euclid(1000) * 1000;
            let active_at = (since_s as i64) * 1000;
            let remaining = hold_ms - (down_at - active_at);
            alert.active_at_ms = if remaining <= 0 {
                active_at
            } else if remaining < grace_ms {
                ts_ms + grace_ms - hold_ms
            } else {
                active_at + (ts_ms - down_at)
            };
        }
    }
}

fn series_sample(alert: &Alert, name: &str, state: Option<State>, value: f64) -> Sample {
    let mut labels = alert.labels.clone();
    labels.push((METRIC_NAME.to_owned(), name.to_owned()));
    if let Some(state) = state {
        labels.push(("alertstate".to_owned(), state.as_str().to_owned()));
    }
    labels.sort();
    Sample {
        labels: labels.into(),
        value,
    }
}

/// The value of label `name` of an alert.
pub fn label<'a>(alert: &'a Alert, name: &str) -> Option<&'a str> {
    label_value(&alert.labels, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(hold_s: u64, keep_s: u64) -> AlertRule {
        AlertRule {
            name: "Hot".into(),
            hold: Duration::from_secs(hold_s),
            keep_firing_for: Duration::from_secs(keep_s),
            labels: vec![("severity".into(), Template::parse("warning").unwrap())],
            annotations: vec![(
                "summary".into(),
                Template::parse("{{ $labels.instance }} at {{ $value }}").unwrap(),
            )],
        }
    }

    fn sample(instance: &str, value: f64) -> Sample {
        Sample {
            labels: vec![
                ("__name__".to_owned(), "temp".to_owned()),
                ("instance".to_owned(), instance.to_owned()),
            ]
            .into(),
            value,
        }
    }

    fn step(alerts: &mut Alerts, rule: &AlertRule, samples: &[Sample], t: i64) -> Vec<String> {
        let out = alerts
            .update(rule, samples, t * 1000, 0, &BTreeMap::new())
            .unwrap();
        out.iter()
            .filter_map(|s| label_value(&s.labels, "alertstate").map(str::to_owned))
            .collect()
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let rule = rule(60, 0);
        let mut alerts = Alerts::default();
        assert_eq!(
            step(&mut alerts, &rule, &[sample("a", 90.0)], 0),
            ["pending"]
        );
        assert_eq!(
            step(&mut alerts, &rule, &[sample("a", 91.0)], 30),
            ["pending"]
        );
        assert_eq!(
            step(&mut alerts, &rule, &[sample("a", 92.0)], 60),
            ["firing"]
        );
        let alert = alerts.active()[0];
        assert_eq!(alert.active_at_ms, 0);
        assert_eq!(alert.annotations[0].1, "a at 92");
        assert_eq!(label(alert, "alertname"), Some("Hot"));
        assert_eq!(label(alert, "severity"), Some("warning"));
        assert_eq!(label(alert, "__name__"), None);
        assert!(step(&mut alerts, &rule, &[], 90).is_empty());
        assert_eq!(alerts.state(), State::Inactive);
        assert_eq!(alerts.all().count(), 1, "resolved alerts are kept a while");
        assert!(step(&mut alerts, &rule, &[], 90 + 16 * 60).is_empty());
        assert_eq!(alerts.all().count(), 0);
    }

    #[test]
    fn pending_that_stops_is_forgotten_and_starts_over() {
        let rule = rule(60, 0);
        let mut alerts = Alerts::default();
        step(&mut alerts, &rule, &[sample("a", 1.0)], 0);
        step(&mut alerts, &rule, &[], 30);
        assert_eq!(alerts.all().count(), 0);
        assert_eq!(
            step(&mut alerts, &rule, &[sample("a", 1.0)], 60),
            ["pending"]
        );
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let rule = rule(0, 60);
        let mut alerts = Alerts::default();
        assert_eq!(step(&mut alerts, &rule, &[sample("a", 1.0)], 0), ["firing"]);
        assert_eq!(step(&mut alerts, &rule, &[], 30), ["firing"]);
        assert_eq!(step(&mut alerts, &rule, &[], 60), ["firing"]);
        assert_eq!(step(&mut alerts, &rule, &[], 90), Vec::<String>::new());
        assert_eq!(alerts.state(), State::Inactive);
    }

    #[test]
    fn restoring_resumes_for_progress_as_prometheus_does() {
        let hour = Duration::from_secs(3600);
        let grace = Duration::from_secs(600);
        let mut rule = rule(0, 0);
        rule.hold = hour;
        let restored = |active_s: f64, down_s: i64, now_s: i64| {
            let mut alerts = Alerts::default();
            step(&mut alerts, &rule, &[sample("a", 1.0)], now_s);
            let labels = alerts.active()[0].labels.clone();
            let found = [(labels, (down_s * 1000 + 400, active_s))]
                .into_iter()
                .collect();
            alerts.restore(&found, now_s * 1000, hour, grace);
            alerts.active()[0].active_at_ms / 1000
        };
        // Pending 10 min, down 5 min: resumes, the downtime not counted.
        assert_eq!(restored(1000.0, 1600, 1900), 1300);
        // Would fire within the grace period: gets the grace period.
        assert_eq!(restored(1000.0, 4300, 4400), 4400 + 600 - 3600);
        // Was firing: fires again at once.
        assert_eq!(restored(1000.0, 5000, 5100), 1000);
        // A rule held less than the grace period is not restored.
        let mut alerts = Alerts::default();
        step(&mut alerts, &rule, &[sample("a", 1.0)], 50);
        let labels = alerts.active()[0].labels.clone();
        let found = [(labels, (40_000, 10.0))].into_iter().collect();
        alerts.restore(&found, 50_000, Duration::from_secs(60), grace);
        assert_eq!(alerts.active()[0].active_at_ms, 50_000);
    }

    #[test]
    fn limit_and_duplicates_fail_the_evaluation() {
        let rule = rule(0, 0);
        let mut alerts = Alerts::default();
        let two = [sample("a", 1.0), sample("b", 1.0)];
        let err = alerts.update(&rule, &two, 0, 1, &BTreeMap::new());
        assert!(err.unwrap_err().0.contains("exceeded limit of 1"));
        let mut dup = sample("a", 1.0);
        dup.labels = vec![
            ("__name__".to_owned(), "other".to_owned()),
            ("instance".to_owned(), "a".to_owned()),
        ]
        .into();
        let err = alerts.update(&rule, &[sample("a", 1.0), dup], 0, 0, &BTreeMap::new());
        assert!(err.unwrap_err().0.contains("same labelset"));
    }
}
