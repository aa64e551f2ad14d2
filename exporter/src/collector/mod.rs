//! The collector contract and the scrape runner.
//!
//! A collector is a module with a `NAME`, a constructor taking the validated
//! [`Config`], and an `update` that appends families to a [`Snapshot`]. The
//! runner, not the collector, owns isolation: each collector runs on its own
//! blocking thread under the collector timeout, a collector still busy from
//! an earlier scrape is not started twice, and every scrape reports
//! `node_scrape_collector_success` and `_duration_seconds` for each one, as
//! node_exporter does. One failing or hung collector never fails the scrape.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::snapshot::Snapshot;

pub mod apt;
pub mod apt_parse;
pub mod arp;
pub mod conntrack;
pub mod cpu;
pub mod diskstats;
pub mod edac;
pub mod entropy;
pub mod fan;
pub mod filefd;
pub mod filesystem;
pub mod gpu;
pub mod gpu_nvml;
pub mod gpu_source;
pub mod hwmon;
pub mod ipmi;
pub mod ipmi_parse;
pub mod loadavg;
pub mod meminfo;
pub mod netclass;
pub mod netdev;
pub mod netstat;
pub mod nvme;
pub mod nvme_parse;
pub mod os;
pub mod pressure;
pub mod sockstat;
pub mod softnet;
pub mod stat;
pub mod textfile;
pub mod textfile_parse;
pub mod time;
pub mod timex;
pub mod udp_queues;
pub mod uname;
pub mod vmstat;

/// Why a collector produced no (or partial) data.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A host file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A host file did not have the expected shape.
    #[error("{path}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, naming the offending token.
        msg: String,
    },
    /// The host has nothing for this collector (no PSI, no EDAC...). Reported
    /// as `success 0` like any error, but logged at debug level only.
    #[error("no data: {0}")]
    NoData(String),
}

impl CollectError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// A parse error in `path`.
    pub fn parse(path: &Path, msg: impl Into<String>) -> Self {
        Self::Parse {
            path: path.to_owned(),
            msg: msg.into(),
        }
    }
}

/// One collector instance.
pub trait Collector: Send + Sync {
    /// Reads the host and appends this collector's families to `out`.
    /// Partial output followed by an error is allowed; the runner keeps it.
    fn update(&self, out: &mut Snapshot) -> Result<(), CollectError>;
}

/// A collector the exporter knows about: its flag name, whether it runs by
/// default, and how to build it from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct CollectorInfo {
    /// The name used in `--collector.<name>` and in the `collector` label.
    pub name: &'static str,
    /// Enabled unless turned off.
    pub default_enabled: bool,
    build: fn(&Config) -> Box<dyn Collector>,
}

macro_rules! info {
    ($module:ident, $default:expr) => {
        CollectorInfo {
            name: $module::NAME,
            default_enabled: $default,
            build: |config| Box::new($module::new(config)),
        }
    };
}

/// Every collector, in the order they appear in `--help`.
pub const ALL: &[CollectorInfo] = &[
    info!(apt, true),
    info!(arp, true),
    info!(conntrack, true),
    info!(cpu, true),
    info!(diskstats, true),
    info!(edac, true),
    info!(entropy, true),
    info!(fan, true),
    info!(filefd, true),
    info!(filesystem, true),
    info!(gpu, true),
    info!(hwmon, true),
    info!(ipmi, true),
    info!(loadavg, true),
    info!(meminfo, true),
    info!(netclass, true),
    info!(netdev, true),
    info!(netstat, true),
    info!(nvme, true),
    info!(os, true),
    info!(pressure, true),
    info!(sockstat, true),
    info!(softnet, true),
    info!(stat, true),
    info!(textfile, true),
    info!(time, true),
    info!(timex, true),
    info!(udp_queues, true),
    info!(uname, true),
    info!(vmstat, true),
];

struct Entry {
    name: &'static str,
    collector: Arc<dyn Collector>,
    /// Set while a run is in flight, so a hung collector is not piled up on.
    running: Arc<AtomicBool>,
}

/// Runs the enabled collectors for each scrape.
pub struct Scraper {
    entries: Vec<Entry>,
    timeout: Duration,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.entries.iter().map(|e| e.name).collect();
        f.debug_struct("Scraper")
            .field("collectors", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What happened to one collector during one scrape.
enum Outcome {
    Done(Snapshot, Result<(), CollectError>, Duration),
    TimedOut,
    StillRunning,
}

impl Scraper {
    /// Builds the collectors that `config` enables.
    pub fn new(config: &Config) -> Self {
        let entries = ALL
            .iter()
            .filter(|info| config.collector_enabled(info.name))
            .map(|info| Entry {
                name: info.name,
                collector: Arc::from((info.build)(config)),
                running: Arc::new(AtomicBool::new(false)),
            })
            .collect();
        Self {
            entries,
            timeout: config.collector_timeout,
        }
    }

    /// Names of the enabled collectors.
    pub fn collector_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.iter().map(|e| e.name)
    }

    /// Runs every enabled collector concurrently and merges their output,
    /// with the per-collector success and duration families added.
    pub async fn scrape(&self) -> Snapshot {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let tasks: Vec<_> = self
            .entries
            .iter()
            .map(|entry| (entry.name, self.start(entry)))
            .collect();
        let mut merged = Snapshot::new();
        for (name, task) in tasks {
            let outcome = match task {
                None => Outcome::StillRunning,
                Some(handle) => match tokio::time::timeout_at(deadline, handle).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(join_err)) => Outcome::Done(
                        Snapshot::new(),
                        Err(CollectError::NoData(format!(
                            "collector panicked: {join_err}"
                        ))),
                        Duration::ZERO,
                    ),
                    Err(_) => Outcome::TimedOut,
                },
            };
            self.record(name, outcome, &mut merged);
        }
        merged
    }

    /// Starts one collector on the blocking pool, unless it is still busy.
    fn start(&self, entry: &Entry) -> Option<tokio::task::JoinHandle<Outcome>> {
        if entry.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        let collector = Arc::clone(&entry.collector);
        let running = Arc::clone(&entry.running);
        Some(tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut out = Snapshot::new();
            let result = collector.update(&mut out);
            running.store(false, Ordering::Release);
            Outcome::Done(out, result, started.elapsed())
        }))
    }

    fn record(&self, name: &'static str, outcome: Outcome, merged: &mut Snapshot) {
        let (success, seconds) = match outcome {
            Outcome::Done(out, result, elapsed) => {
                merged.absorb(out);
                match result {
                    Ok(()) => (1.0, elapsed.as_secs_f64()),
                    Err(CollectError::NoData(why)) => {
                        tracing::debug!(collector = name, reason = %why, "collector returned no data");
                        (0.0, elapsed.as_secs_f64())
                    }
                    Err(err) => {
                        tracing::error!(collector = name, error = %err, "collector failed");
                        (0.0, elapsed.as_secs_f64())
                    }
                }
            }
            Outcome::TimedOut => {
                tracing::error!(collector = name, timeout = ?self.timeout, "collector timed out");
                (0.0, self.timeout.as_secs_f64())
            }
            Outcome::StillRunning => {
                tracing::error!(
                    collector = name,
                    "collector skipped: its previous run has not finished"
                );
                (0.0, 0.0)
            }
        };
        let labels = || vec![("collector", name.to_owned())];
        merged.gauge(
            "node_scrape_collector_duration_seconds",
            "node_exporter: Duration of a collector scrape.",
            labels(),
            seconds,
        );
        merged.gauge(
            "node_scrape_collector_success",
            "node_exporter: Whether a collector succeeded.",
            labels(),
            success,
        );
    }
}
