//! The rule evaluator's metrics, under the names Prometheus gives them
//! (`prometheus_rule_…`), so dashboards and alerts written for a
//! Prometheus server's rule evaluation read the receiver's unchanged.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of a group's metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// `file;name`, as Prometheus labels it.
    pub rule_group: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every rule-evaluation metric.
#[derive(Debug, Clone)]
pub struct RuleMetrics {
    /// Time one rule takes to evaluate.
    pub evaluation_duration: Histogram,
    /// Rule evaluations, by group.
    pub evaluations: Family<GroupLabels, Counter>,
    /// Failed rule evaluations, by group.
    pub failures: Family<GroupLabels, Counter>,
    /// Group evaluations done.
    pub iterations: Family<GroupLabels, Counter>,
    /// Group evaluations skipped because the previous one ran late.
    pub missed: Family<GroupLabels, Counter>,
    /// Time of the latest group evaluation, seconds since the epoch.
    pub last_evaluation: Family<GroupLabels, FloatGauge>,
    /// How long the latest group evaluation took.
    pub last_duration: Family<GroupLabels, FloatGauge>,
    /// Samples the latest group evaluation wrote.
    pub last_samples: Family<GroupLabels, FloatGauge>,
    /// A group's interval, seconds.
    pub interval: Family<GroupLabels, FloatGauge>,
    /// Rules in a group.
    pub rules: Family<GroupLabels, FloatGauge>,
    /// Notifications to Alertmanager.
    pub notifications: super::notify::NotifyMetrics,
}

impl Default for RuleMetrics {
    fn default() -> Self {
        RuleMetrics {
            evaluation_duration: Histogram::new(exponential_buckets(0.0005, 4.0, 10)),
            evaluations: Family::default(),
            failures: Family::default(),
            iterations: Family::default(),
            missed: Family::default(),
            last_evaluation: Family::default(),
            last_duration: Family::default(),
            last_samples: Family::default(),
            interval: Family::default(),
            rules: Family::default(),
            notifications: Default::default(),
        }
    }
}

impl RuleMetrics {
    /// Registers every metric in `registry` (one without a prefix).
    pub fn register(&self, registry: &mut Registry) {
        self.notifications.register(registry);
        registry.register(
            "prometheus_rule_evaluation_duration_seconds",
            "The duration of rule evaluations",
            self.evaluation_duration.clone(),
        );
        registry.register(
            "prometheus_rule_evaluations",
            "The total number of rule evaluations",
            self.evaluations.clone(),
        );
        registry.register(
            "prometheus_rule_evaluation_failures",
            "The total number of rule evaluation failures",
            self.failures.clone(),
        );
        registry.register(
            "prometheus_rule_group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed",
            self.iterations.clone(),
        );
        registry.register(
            "prometheus_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation",
            self.missed.clone(),
        );
        registry.register(
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds",
            self.last_evaluation.clone(),
        );
        registry.register(
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation",
            self.last_duration.clone(),
        );
        registry.register(
            "prometheus_rule_group_last_evaluation_samples",
            "The number of samples returned during the last rule group evaluation",
            self.last_samples.clone(),
        );
        registry.register(
            "prometheus_rule_group_interval_seconds",
            "The interval of a rule group",
            self.interval.clone(),
        );
        registry.register(
            "prometheus_rule_group_rules",
            "The number of rules",
            self.rules.clone(),
        );
    }

    /// Creates every series of a group just loaded, so its counters read 0
    /// before its first evaluation (as Prometheus's do).
    pub fn init_group(&self, group: &GroupLabels) {
        for family in [
            &self.evaluations,
            &self.failures,
            &self.iterations,
            &self.missed,
        ] {
            let _ = family.get_or_create(group);
        }
        for family in [
            &self.last_evaluation,
            &self.last_duration,
            &self.last_samples,
            &self.interval,
            &self.rules,
        ] {
            let _ = family.get_or_create(group);
        }
    }

    /// Drops the series of a group no longer loaded.
    pub fn forget(&self, group: &GroupLabels) {
        for family in [
            &self.evaluations,
            &self.failures,
            &self.iterations,
            &self.missed,
        ] {
            family.remove(group);
        }
        for family in [
            &self.last_evaluation,
            &self.last_duration,
            &self.last_samples,
            &self.interval,
            &self.rules,
        ] {
            family.remove(group);
        }
    }
}
