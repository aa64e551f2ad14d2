//! What one remote-write request, and one sender over an hour, may add.
//!
//! Every new series costs index memory for as long as it is retained, so a
//! single request (or a compromised host) must not be able to add millions
//! of them, or labels of megabytes. The per-request limits follow
//! Prometheus's `label_limit`/`label_name_length_limit`/
//! `label_value_length_limit` and VictoriaMetrics's
//! `-maxLabelsPerTimeseries`/`-maxLabelValueLen`; the hourly budget of new
//! series per sender follows VictoriaMetrics's `-storage.maxHourlySeries`,
//! but per principal, so one noisy sender cannot use up everyone's budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dcmon_protocol::excerpt::excerpt;
use dcmon_protocol::remote_write::{RequestView, describe};

use crate::auth::Principal;

/// The limits, with the receiver's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Longest label name, bytes.
    pub max_label_name_length: usize,
    /// Longest label value (the metric name included), bytes.
    pub max_label_value_length: usize,
    /// Most labels on one series, `__name__` included.
    pub max_labels_per_series: usize,
    /// Most series in one request.
    pub max_series_per_request: usize,
    /// New series a scoped token (or the admin) may add per hour.
    pub max_new_series_per_hour: usize,
    /// New series one enrolled host may add per hour.
    pub max_new_series_per_host_hour: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self {
            max_label_name_length: 256,
            max_label_value_length: 4096,
            max_labels_per_series: 64,
            max_series_per_request: 50_000,
            max_new_series_per_hour: 200_000,
            max_new_series_per_host_hour: 20_000,
        }
    }
}

/// A request over a per-request limit: it can never succeed as sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LimitError {
    /// Metric reason (`label_value_too_long`, …).
    pub reason: &'static str,
    /// What was over which limit, and the flag that sets it.
    pub message: String,
}

impl WriteLimits {
    /// Checks every series and metadata entry of `batch` against the
    /// per-request limits.
    pub fn check(&self, batch: &RequestView) -> Result<(), LimitError> {
        let refuse = |reason, message: String| Err(LimitError { reason, message });
        if batch.series_count() > self.max_series_per_request {
            return refuse(
                "too_many_series",
                format!(
                    "request has {} series, more than {} (--write.max-series-per-request); send smaller batches",
                    batch.series_count(),
                    self.max_series_per_request
                ),
            );
        }
        if batch.metadata().len() > self.max_series_per_request {
            return refuse(
                "too_many_metadata",
                format!(
                    "request has {} metadata entries, more than {} (--write.max-series-per-request)",
                    batch.metadata().len(),
                    self.max_series_per_request
                ),
            );
        }
        for series in batch.series() {
            if series.labels.len() > self.max_labels_per_series {
                return refuse(
                    "too_many_labels",
                    format!(
                        "series {} has {} labels, more than {} (--write.max-labels-per-series)",
                        describe(series.labels),
                        series.labels.len(),
                        self.max_labels_per_series
                    ),
                );
            }
            for (name, value) in series.labels {
                if name.len() > self.max_label_name_length {
                    return refuse(
                        "label_name_too_long",
                        format!(
                            "series {} has a label name of {} bytes, more than {} (--write.max-label-name-length)",
                            describe(series.labels),
                            name.len(),
                            self.max_label_name_length
                        ),
                    );
                }
                if value.len() > self.max_label_value_length {
                    return refuse(
                        "label_value_too_long",
                        format!(
                            "series {} has a value of {} bytes for label {:?}, more than {} (--write.max-label-value-length)",
                            describe(series.labels),
                            value.len(),
                            excerpt(name),
                            self.max_label_value_length
                        ),
                    );
                }
            }
        }
        for meta in batch.metadata() {
            let longest = [meta.family, meta.help, meta.unit]
                .iter()
                .map(|f| f.len())
                .max()
                .unwrap_or(0);
            if longest > self.max_label_value_length {
                return refuse(
                    "metadata_too_long",
                    format!(
                        "metadata of {:?} has a field of {longest} bytes, more than {} (--write.max-label-value-length)",
                        excerpt(meta.family),
                        self.max_label_value_length
                    ),
                );
            }
        }
        Ok(())
    }

    /// The hourly budget of new series for `principal`.
    fn hourly_budget(&self, principal: &Principal) -> usize {
        match principal {
            Principal::Client { .. } => self.max_new_series_per_host_hour,
            Principal::Admin | Principal::Token { .. } | Principal::Web { .. } => {
                self.max_new_series_per_hour
            }
        }
    }
}

/// Why new series were refused by the hourly budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// More new series than a whole hour's budget: never succeeds as sent.
    #[error(
        "request adds {new} new series, more than the hourly budget of {budget} (--write.max-new-series-per{host}-hour); send smaller batches or raise the budget"
    )]
    OverBudget {
        /// New series in the request.
        new: usize,
        /// The hourly budget.
        budget: usize,
        /// `-host` where the host budget applies.
        host: &'static str,
    },
    /// The budget is spent for now; it refills over the hour.
    #[error(
        "new-series budget spent: request adds {new} new series, {available} left of {budget} per hour (--write.max-new-series-per{host}-hour); retry in {retry_after:?}"
    )]
    Spent {
        /// New series in the request.
        new: usize,
        /// Whole series left in the budget now.
        available: usize,
        /// The hourly budget.
        budget: usize,
        /// `-host` where the host budget applies.
        host: &'static str,
        /// When enough of the budget will have refilled.
        retry_after: Duration,
    },
}

/// A token bucket of new series per principal: it holds at most an hour's
/// budget and refills at budget/3600 per second, so a sender may add its
/// whole budget at once (a host's first push) and then a steady trickle.
#[derive(Debug, Default)]
pub struct SeriesBudgets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    available: f64,
    updated: Instant,
}

impl SeriesBudgets {
    /// Takes `new` series from `principal`'s budget at `now`, or refuses
    /// without taking any.
    pub fn charge(
        &self,
        limits: &WriteLimits,
        principal: &Principal,
        new: usize,
        now: Instant,
    ) -> Result<(), BudgetError> {
        if new == 0 {
            return Ok(());
        }
        let budget = limits.hourly_budget(principal);
        let host = match principal {
            Principal::Client { .. } => "-host",
            _ => "",
        };
        if new > budget {
            return Err(BudgetError::OverBudget { new, budget, host });
        }
        let per_second = budget as f64 / 3600.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Principals are authenticated (admin, tokens, enrolled hosts), so
        // the map is bounded by what the admin created.
        let bucket = buckets.entry(key(principal)).or_insert(Bucket {
            available: budget as f64,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.available = (bucket.available + elapsed * per_second).min(budget as f64);
        bucket.updated = now;
        if bucket.available < new as f64 {
            let missing = new as f64 - bucket.available;
            let retry_after = Duration::from_secs_f64((missing / per_second).ceil().max(1.0));
            return Err(BudgetError::Spent {
                new,
                available: bucket.available as usize,
                budget,
                host,
                retry_after,
            });
        }
        bucket.available -= new as f64;
        Ok(())
    }
}

/// The budget a principal draws from.
fn key(principal: &Principal) -> String {
    match principal {
        Principal::Admin => "admin".to_owned(),
        Principal::Token { name, .. } => format!("token:{name}"),
        Principal::Web { name } => format!("web:{name}"),
        Principal::Client { id, .. } => format!("client:{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_protocol::prompb;
    use dcmon_protocol::remote_write::{Version, decode_view};
    use prost::Message;

    /// A Remote-Write 1.0 body of `series` series, each with `labels`
    /// besides its name and number, and `metadata`.
    fn body(series: usize, labels: &[(&str, &str)], metadata: &[(&str, &str)]) -> Vec<u8> {
        let label = |name: &str, value: &str| prompb::Label {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        prompb::WriteRequest {
            timeseries: (0..series)
                .map(|i| prompb::TimeSeries {
                    labels: [label("__name__", "m"), label("i", &i.to_string())]
                        .into_iter()
                        .chain(labels.iter().map(|(n, v)| label(n, v)))
                        .collect(),
                    samples: vec![prompb::Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    ..Default::default()
                })
                .collect(),
            metadata: metadata
                .iter()
                .map(|(family, help)| prompb::MetricMetadata {
                    metric_family_name: family.to_string(),
                    help: help.to_string(),
                    ..Default::default()
                })
                .collect(),
        }
        .encode_to_vec()
    }

    fn batch(series: usize, labels: &[(&str, &str)]) -> Vec<u8> {
        body(series, labels, &[])
    }

    fn check(limits: &WriteLimits, body: &[u8]) -> Result<(), LimitError> {
        limits.check(&decode_view(Version::V1, body).unwrap())
    }

    fn small() -> WriteLimits {
        WriteLimits {
            max_label_name_length: 8,
            max_label_value_length: 16,
            max_labels_per_series: 4,
            max_series_per_request: 10,
            max_new_series_per_hour: 3600,
            max_new_series_per_host_hour: 360,
        }
    }

    #[test]
    fn each_per_request_limit_refuses_with_its_reason() {
        let limits = small();
        assert_eq!(check(&limits, &batch(10, &[("a", "b")])), Ok(()));
        let reason = |b: &[u8]| check(&limits, b).unwrap_err().reason;
        assert_eq!(reason(&batch(11, &[])), "too_many_series");
        assert_eq!(
            reason(&batch(1, &[("a", "1"), ("b", "2"), ("c", "3")])),
            "too_many_labels"
        );
        assert_eq!(
            reason(&batch(1, &[("abcdefghi", "1")])),
            "label_name_too_long"
        );
        assert_eq!(
            reason(&batch(1, &[("a", &"x".repeat(17))])),
            "label_value_too_long"
        );
        let meta = body(1, &[], &[("m", &"h".repeat(17))]);
        assert_eq!(reason(&meta), "metadata_too_long");
    }

    #[test]
    fn a_huge_value_is_not_copied_into_the_message() {
        let err = check(&small(), &batch(1, &[("a", &"x".repeat(10 << 20))])).unwrap_err();
        assert!(err.message.len() < 1000, "{} bytes", err.message.len());
        assert!(err.message.contains("10485760 bytes"), "{}", err.message);
    }

    #[test]
    fn budgets_are_per_principal_and_refill_over_the_hour() {
        let limits = small();
        let budgets = SeriesBudgets::default();
        let start = Instant::now();
        let host = Principal::Client {
            id: "c1".into(),
            instance: "h1".into(),
        };
        let other = Principal::Client {
            id: "c2".into(),
            instance: "h2".into(),
        };
        assert_eq!(budgets.charge(&limits, &host, 360, start), Ok(()));
        let Err(BudgetError::Spent { retry_after, .. }) = budgets.charge(&limits, &host, 10, start)
        else {
            panic!("budget should be spent");
        };
        // 360 per hour: one series every 10 s.
        assert_eq!(retry_after, Duration::from_secs(100));
        assert_eq!(
            budgets.charge(&limits, &other, 360, start),
            Ok(()),
            "own budget"
        );
        let later = start + Duration::from_secs(100);
        assert_eq!(budgets.charge(&limits, &host, 10, later), Ok(()));
        assert!(matches!(
            budgets.charge(&limits, &host, 361, later),
            Err(BudgetError::OverBudget { .. })
        ));
        let token = Principal::Token {
            name: "prom".into(),
            scope: crate::auth::Scope::Write,
        };
        assert_eq!(
            budgets.charge(&limits, &token, 3600, start),
            Ok(()),
            "token budget"
        );
        assert_eq!(
            budgets.charge(&limits, &token, 0, start),
            Ok(()),
            "nothing new"
        );
    }
}
