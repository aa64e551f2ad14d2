//! Rule evaluation inside the receiver: rule files in Prometheus's format
//! ([`file`]), evaluated by the receiver's own PromQL engine on each
//! group's schedule ([`group`]), recording rules' results and `ALERTS` /
//! `ALERTS_FOR_STATE` written to storage like any write, alert states
//! kept as Prometheus keeps them ([`alert`]), labels and annotations
//! rendered by [`template`]. [`Rules`] owns the running groups: the API
//! reads their state, a reload swaps them.

pub mod alert;
pub mod file;
pub mod group;
pub mod metrics;
pub mod notify;
pub mod template;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use self::file::{FileError, GroupSpec, RuleSet};
use self::group::{GroupState, eval_timestamp_ns, group_hash};
use self::metrics::GroupLabels;
pub use self::metrics::RuleMetrics;
use crate::promql::Engine;
use crate::storage::Storage;

/// The rule files and the groups evaluating them.
#[derive(Debug)]
pub struct Rules {
    patterns: Vec<String>,
    default_interval: Duration,
    engine: Engine,
    metrics: RuleMetrics,
    notifier: std::sync::OnceLock<notify::Notifier>,
    running: Mutex<Vec<Running>>,
}

#[derive(Debug)]
struct Running {
    state: Arc<Mutex<GroupState>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Rules {
    /// Loads the files `patterns` name (paths or globs), refusing a bad one;
    /// nothing is evaluated until [`Rules::start`].
    pub fn load(
        patterns: Vec<String>,
        default_interval: Duration,
        engine: Engine,
        metrics: RuleMetrics,
    ) -> Result<Rules, FileError> {
        let set = file::load(&patterns, default_interval)?;
        let rules = Rules {
            patterns,
            default_interval,
            engine,
            metrics,
            notifier: std::sync::OnceLock::new(),
            running: Mutex::new(Vec::new()),
        };
        rules.install(set, false);
        Ok(rules)
    }

    /// Hands each evaluation's alerts due to `notifier`; set once, before
    /// [`Rules::start`].
    pub fn set_notifier(&self, notifier: notify::Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Starts evaluating every group (on the current tokio runtime).
    pub fn start(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for group in running.iter_mut() {
            if group.task.is_none() {
                group.task = Some(self.spawn(Arc::clone(&group.state)));
            }
        }
    }

    /// Stops every group.
    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for group in running.iter_mut() {
            if let Some(task) = group.task.take() {
                task.abort();
            }
        }
    }

    /// Reads the files again. A bad file is refused with its error and the
    /// groups running go on; otherwise the new groups replace them, each
    /// rule that is unchanged (same group, position, name and expression)
    /// keeping its alerts.
    pub fn reload(&self) -> Result<(), FileError> {
        let set = file::load(&self.patterns, self.default_interval)?;
        self.install(set, true);
        Ok(())
    }

    fn install(&self, set: RuleSet, start: bool) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let old: Vec<GroupState> = running
            .iter()
            .map(|g| g.state.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        for state in &old {
            self.metrics.forget(&GroupLabels {
                rule_group: state.key(),
            });
        }
        let mut fresh = Vec::new();
        for spec in set.groups {
            let mut state = GroupState::new(spec);
            // Only the groups loaded at start read their alerts back;
            // Prometheus too restores no group a reload adds.
            state.restored = start;
            if let Some(before) = old
                .iter()
                .find(|o| o.spec.file == state.spec.file && o.spec.name == state.spec.name)
            {
                carry_over(before, &mut state);
            }
            let labels = GroupLabels {
                rule_group: state.key(),
            };
            self.metrics.init_group(&labels);
            self.metrics
                .interval
                .get_or_create(&labels)
                .set(state.spec.interval.as_secs_f64());
            self.metrics
                .rules
                .get_or_create(&labels)
                .set(state.rules.len() as f64);
            let state = Arc::new(Mutex::new(state));
            let task = start.then(|| self.spawn(Arc::clone(&state)));
            fresh.push(Running { state, task });
        }
        // Dropping the old groups stops their tasks.
        *running = fresh;
    }

    /// Every group's state now, in file then group order.
    pub fn groups(&self) -> Vec<GroupState> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .iter()
            .map(|g| g.state.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    /// The groups loaded.
    pub fn specs(&self) -> Vec<GroupSpec> {
        self.groups().into_iter().map(|g| g.spec).collect()
    }

    fn spawn(&self, state: Arc<Mutex<GroupState>>) -> tokio::task::JoinHandle<()> {
        let engine = self.engine.clone();
        let metrics = self.metrics.clone();
        let notifier = self.notifier.get().cloned();
        tokio::spawn(run_group(state, engine, metrics, notifier))
    }
}

/// Takes over the alerts and written series of the rules of `before` that
/// are unchanged in `after` (same name and expression; among rules alike,
/// in order), wherever they moved within the group.
fn carry_over(before: &GroupState, after: &mut GroupState) {
    after.restored = before.restored;
    let mut taken = vec![false; before.rules.len()];
    for new in &mut after.rules {
        let same = before.rules.iter().enumerate().find(|(i, old)| {
            !taken[*i]
                && old.spec.name() == new.spec.name()
                && old.spec.expr_text == new.spec.expr_text
        });
        if let Some((i, old)) = same {
            taken[i] = true;
            let spec = new.spec.clone();
            *new = old.clone();
            new.spec = spec;
        }
    }
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Evaluates one group on its schedule until aborted: the first time at
/// its next slot, then every interval; slots that passed while an
/// evaluation ran late are counted as missed, never caught up on.
async fn run_group(
    state: Arc<Mutex<GroupState>>,
    engine: Engine,
    metrics: RuleMetrics,
    notifier: Option<notify::Notifier>,
) {
    let (interval, hash, labels) = {
        let group = state.lock().unwrap_or_else(|p| p.into_inner());
        (
            group.spec.interval,
            group_hash(&group.spec.file, &group.spec.name),
            GroupLabels {
                rule_group: group.key(),
            },
        )
    };
    let interval_ns = interval.as_nanos().max(1) as i128;
    let mut next = eval_timestamp_ns(now_ns(), interval, hash) + interval_ns;
    let runtime = tokio::runtime::Handle::current();
    loop {
        let wait = next - now_ns();
        if wait > 0 {
            tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
        }
        let ts_ms = (next / 1_000_000) as i64;
        let mut working = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (engine_c, metrics_c, runtime_c) = (engine.clone(), metrics.clone(), runtime.clone());
        let storage: Storage = engine.storage().clone();
        let (done, finished) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("dcmon-rules".to_owned())
            .stack_size(crate::promql::QUERY_STACK_BYTES)
            .spawn(move || {
                working.evaluate(&engine_c, &storage, &runtime_c, ts_ms, &metrics_c);
                let _ = done.send(working);
            });
        match spawned {
            Ok(_) => {
                if let Ok(mut evaluated) = finished.await {
                    if let Some(notifier) = &notifier {
                        let at = ts_ms - evaluated.spec.query_offset.as_millis() as i64;
                        notifier.queue_due(&mut evaluated, at);
                    }
                    *state.lock().unwrap_or_else(|p| p.into_inner()) = evaluated;
                }
            }
            Err(err) => tracing::warn!(error = %err, "starting a rule evaluation thread failed"),
        }
        let behind = (now_ns() - next) / interval_ns - 1;
        if behind > 0 {
            let missed = behind as u64;
            metrics.missed.get_or_create(&labels).inc_by(missed);
            metrics.iterations.get_or_create(&labels).inc_by(missed);
            tracing::warn!(group = %labels.rule_group, missed, "rule group evaluation ran late; skipping missed evaluations");
        }
        next += (behind.max(0) + 1) * interval_ns;
    }
}
