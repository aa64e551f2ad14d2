//! The collector contract and the scrape runner.
//!
//! A collector is a module with a `NAME`, a constructor taking the validated
//! [`Config`] (or, for `fan` and `gpu`, the live [`Services`] that `main`
//! builds), and an `update` that appends families to a [`Snapshot`]. The
//! runner, not the collector, owns isolation: each collector runs on its own
//! blocking thread under the collector timeout, a collector still busy from
//! an earlier scrape is not started twice, a collector that panics is logged
//! at error level and runs again at the next scrape, and every scrape
//! reports `node_scrape_collector_success` and `_duration_seconds` for each
//! one, as node_exporter does. One failing, panicking or hung collector
//! never fails the scrape.
//!
//! Which collectors run is the flags' choice until a runtime configuration
//! names a set ([`RuntimeCollectors`]): the scraper then skips the others
//! from the next scrape, and builds at once, as at start-up, any it names
//! that were not built. A collector is built once for the process's life
//! (some keep a worker thread or a cached background run), so one turned
//! off is kept, no longer scraped, and scraped again as it was when turned
//! back on; a background timer it started (apt's) keeps its pace meanwhile.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::fans::{FanController, SharedTemperatures};
use crate::roots::ReadError;
use crate::snapshot::{Snapshot, SnapshotSource};
use crate::tool::ToolError;

pub mod apt;
pub mod apt_parse;
pub mod arp;
pub mod background;
pub mod config;
pub mod conntrack;
pub mod cpu;
pub mod diskstats;
pub mod edac;
pub mod entropy;
pub mod fan;
pub mod filefd;
pub mod filesystem;
pub mod gpu;
pub mod gpu_health;
pub mod gpu_nvml;
pub mod gpu_pci;
pub mod gpu_procs;
pub mod gpu_source;
pub mod gpu_worker;
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
pub mod time;
pub mod timex;
pub mod udp_queues;
pub mod uname;
pub mod vmstat;

/// Why a collector produced no (or partial) data.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A host file or directory could not be read, or did not hold what
    /// its reader expects.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A host file or a tool's output did not have the expected shape.
    #[error("{path}: {msg}")]
    Parse {
        /// The file (or program).
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
        Self::Read(ReadError::io(path, source))
    }

    /// A parse error in `path`.
    pub fn parse(path: &Path, msg: impl Into<String>) -> Self {
        Self::Parse {
            path: path.to_owned(),
            msg: msg.into(),
        }
    }
}

impl From<ToolError> for CollectError {
    /// A missing tool is "no data" (debug level: hosts without a BMC or
    /// NVMe drives are normal); anything else is a failure worth logging.
    fn from(err: ToolError) -> Self {
        match err {
            ToolError::NotFound { .. } => CollectError::NoData(err.to_string()),
            ToolError::Spawn { ref program, .. } | ToolError::TimedOut { ref program, .. } => {
                CollectError::parse(&program.clone(), err.to_string())
            }
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
    build: fn(&Config, &Services) -> Box<dyn Collector>,
}

/// The live parts some collectors share with the rest of the exporter,
/// built once at start-up and handed to the scraper, so that the
/// configuration stays plain data.
#[derive(Debug, Clone)]
pub struct Services {
    /// This host's fan control: the `fan` collector maintains it, the
    /// command runner acts on it.
    pub fans: Arc<FanController>,
    /// The `gpu` collector's latest temperatures, watched by fan control's
    /// thermal guard.
    pub gpu_temperatures: SharedTemperatures,
    /// The runtime configuration store, once `main` has opened it (the
    /// `config` collector shows its version).
    pub runtime: Arc<std::sync::OnceLock<Arc<crate::runtime_config::RuntimeStore>>>,
    /// The collectors a `config_update` runs (the flags' while it names
    /// none); the scraper built on these services follows it.
    pub runtime_collectors: RuntimeCollectors,
}

/// The set of collectors a runtime configuration names, shared by the
/// runtime configuration store, which sets it, and the scraper built on
/// the same [`Services`], which runs it.
#[derive(Clone, Default)]
pub struct RuntimeCollectors(Arc<Selection>);

#[derive(Default)]
struct Selection {
    /// The names a configuration enables; `None`: the flags'.
    names: RwLock<Option<Vec<String>>>,
    /// The collectors of the scraper built on these services. Weak: that
    /// scraper holds the services, and so this.
    built: Mutex<Weak<Built>>,
}

impl std::fmt::Debug for RuntimeCollectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RuntimeCollectors")
            .field(&self.names())
            .finish()
    }
}

impl RuntimeCollectors {
    /// Runs `names` from the next scrape (`None`: the flags' set), building
    /// at once those of them the scraper has not built. Before a scraper
    /// exists this only records the set, which [`Scraper::new`] builds.
    /// Returns the collectors it built.
    pub fn set(&self, names: Option<Vec<String>>) -> Vec<&'static str> {
        let built = self
            .0
            .built
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade();
        // Built before they are named: a scrape in between never finds a
        // collector named and missing.
        let started = match &built {
            Some(built) => built.build_missing(names.as_deref()),
            None => Vec::new(),
        };
        *self.0.names.write().unwrap_or_else(|e| e.into_inner()) = names;
        started
    }

    /// The names a configuration enables (`None`: the flags').
    pub fn names(&self) -> Option<Vec<String>> {
        self.0
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn attach(&self, built: &Arc<Built>) {
        *self.0.built.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(built);
    }
}

impl Services {
    /// The services for the host `config` describes: fan control for the
    /// board found under its sysfs root, watching the GPU temperatures.
    pub fn for_host(config: &Config) -> Self {
        let gpu_temperatures = SharedTemperatures::default();
        let fans = FanController::for_host(&config.fans, &config.roots.sysfs)
            .watching(gpu_temperatures.clone());
        Self {
            fans: Arc::new(fans),
            gpu_temperatures,
            runtime: Arc::default(),
            runtime_collectors: RuntimeCollectors::default(),
        }
    }
}

impl CollectorInfo {
    /// Builds this collector from `config` on `services`, as the scraper
    /// does (the metrics reference in `docs/` is generated this way).
    pub fn build(&self, config: &Config, services: &Services) -> Box<dyn Collector> {
        (self.build)(config, services)
    }
}

macro_rules! info {
    ($module:ident, $default:expr) => {
        CollectorInfo {
            name: $module::NAME,
            default_enabled: $default,
            build: |config, _| Box::new($module::new(config)),
        }
    };
    // Collectors built on a shared service rather than on settings.
    ($module:ident, $default:expr, services) => {
        CollectorInfo {
            name: $module::NAME,
            default_enabled: $default,
            build: |_, services| Box::new($module::new(services)),
        }
    };
    // Collectors built on both.
    ($module:ident, $default:expr, config_and_services) => {
        CollectorInfo {
            name: $module::NAME,
            default_enabled: $default,
            build: |config, services| Box::new($module::new(config, services)),
        }
    };
}

/// Every collector, in the order they appear in `--help`.
pub const ALL: &[CollectorInfo] = &[
    info!(apt, true),
    info!(arp, true),
    info!(config, true, services),
    info!(conntrack, true),
    info!(cpu, true),
    info!(diskstats, true),
    info!(edac, true),
    info!(entropy, true),
    info!(fan, true, services),
    info!(filefd, true),
    info!(filesystem, true),
    info!(gpu, true, config_and_services),
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

/// What builds a collector named after start-up: the start-up
/// configuration and services, so it is built exactly as it would have
/// been then.
struct Factory {
    config: Config,
    services: Services,
}

/// The collectors a scraper has built.
struct Built {
    /// In [`ALL`]'s order.
    entries: RwLock<Vec<Arc<Entry>>>,
    /// The flags' set: what runs while no configuration names one.
    flags: Vec<&'static str>,
    /// `None` for a scraper over given collectors (tests).
    factory: Option<Factory>,
    /// Held while building, so two updates never build one collector twice.
    building: Mutex<()>,
}

impl Built {
    fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn is_built(&self, name: &str) -> bool {
        self.entries().iter().any(|e| e.name == name)
    }

    /// Builds the collectors of `names` (`None`: the flags') not built yet.
    fn build_missing(&self, names: Option<&[String]>) -> Vec<&'static str> {
        let Some(factory) = &self.factory else {
            return Vec::new();
        };
        let _building = self.building.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = |name: &str| match names {
            Some(names) => names.iter().any(|n| n == name),
            None => self.flags.contains(&name),
        };
        let missing: Vec<&CollectorInfo> = ALL
            .iter()
            .filter(|info| wanted(info.name) && !self.is_built(info.name))
            .collect();
        for info in &missing {
            let entry = Arc::new(Entry::new(
                info.name,
                info.build(&factory.config, &factory.services),
            ));
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            let at = entries.partition_point(|e| position(e.name) < position(info.name));
            entries.insert(at, entry);
        }
        missing.iter().map(|info| info.name).collect()
    }
}

/// Where `name` stands in [`ALL`] (names not in it, last).
fn position(name: &str) -> usize {
    ALL.iter()
        .position(|info| info.name == name)
        .unwrap_or(usize::MAX)
}

impl Entry {
    fn new(name: &'static str, collector: Box<dyn Collector>) -> Entry {
        Entry {
            name,
            collector: Arc::from(collector),
            running: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Runs the enabled collectors for each scrape.
pub struct Scraper {
    built: Arc<Built>,
    timeout: Duration,
    /// A runtime configuration's collectors: the others are skipped.
    runtime_collectors: RuntimeCollectors,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.built.entries().iter().map(|e| e.name).collect();
        f.debug_struct("Scraper")
            .field("collectors", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A [`Scraper`] whose scrapes never overlap: `/metrics` and the shipper
/// share one. The runner skips a collector whose previous run is still
/// going, so two overlapping scrapes would each lose the other's slow
/// collectors, and a shipped tick would have holes.
#[derive(Debug)]
pub struct SharedScraper {
    scraper: Scraper,
    turn: tokio::sync::Mutex<()>,
}

impl SharedScraper {
    /// Wraps `scraper`.
    pub fn new(scraper: Scraper) -> Self {
        Self {
            scraper,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// The wrapped scraper.
    pub fn inner(&self) -> &Scraper {
        &self.scraper
    }

    /// Waits for any scrape in progress, then scrapes.
    pub async fn scrape(&self) -> Snapshot {
        let _turn = self.turn.lock().await;
        self.scraper.scrape().await
    }
}

impl SnapshotSource for SharedScraper {
    fn scrape(&self) -> impl Future<Output = Snapshot> + Send {
        SharedScraper::scrape(self)
    }
}

/// What happened to one collector during one scrape.
enum Outcome {
    Done(Snapshot, Result<(), CollectError>, Duration),
    /// The collector panicked: the panic's message.
    Panicked(String),
    TimedOut,
    StillRunning,
}

impl Scraper {
    /// Builds the collectors that `config` enables, on `services`, or
    /// those that `services.runtime_collectors` names when it names a set
    /// (a stored runtime configuration), and follows that set from then on.
    pub fn new(config: &Config, services: &Services) -> Self {
        let flags: Vec<&'static str> = ALL
            .iter()
            .map(|info| info.name)
            .filter(|name| config.collector_enabled(name))
            .collect();
        let built = Arc::new(Built {
            entries: RwLock::default(),
            flags,
            factory: Some(Factory {
                config: config.clone(),
                services: services.clone(),
            }),
            building: Mutex::new(()),
        });
        built.build_missing(services.runtime_collectors.names().as_deref());
        services.runtime_collectors.attach(&built);
        Self {
            built,
            timeout: config.collector_timeout,
            runtime_collectors: services.runtime_collectors.clone(),
        }
    }

    /// A scraper over the given collectors (tests use their own).
    #[cfg(test)]
    fn with_collectors(
        collectors: Vec<(&'static str, Box<dyn Collector>)>,
        timeout: Duration,
    ) -> Self {
        let flags = collectors.iter().map(|(name, _)| *name).collect();
        let entries = collectors
            .into_iter()
            .map(|(name, collector)| Arc::new(Entry::new(name, collector)))
            .collect();
        Self {
            built: Arc::new(Built {
                entries: RwLock::new(entries),
                flags,
                factory: None,
                building: Mutex::new(()),
            }),
            timeout,
            runtime_collectors: RuntimeCollectors::default(),
        }
    }

    /// Names of the collectors that run now: built, and enabled by the
    /// runtime configuration (or the flags, while it names none).
    pub fn collector_names(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.running()
            .into_iter()
            .map(|entry| entry.name)
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The entries that run now.
    fn running(&self) -> Vec<Arc<Entry>> {
        let names = self.runtime_collectors.names();
        self.built
            .entries()
            .into_iter()
            .filter(|entry| match &names {
                Some(names) => names.iter().any(|n| n == entry.name),
                None => self.built.flags.contains(&entry.name),
            })
            .collect()
    }

    /// Runs every enabled collector concurrently and merges their output,
    /// with the per-collector success and duration families added.
    pub async fn scrape(&self) -> Snapshot {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let tasks: Vec<_> = self
            .running()
            .iter()
            .map(|entry| (entry.name, self.start(entry)))
            .collect();
        let mut merged = Snapshot::new();
        for (name, task) in tasks {
            let outcome = match task {
                None => Outcome::StillRunning,
                Some(handle) => match tokio::time::timeout_at(deadline, handle).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(join_err)) => Outcome::Panicked(panic_message(join_err)),
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
        let running = RunningGuard(Arc::clone(&entry.running));
        Some(tokio::task::spawn_blocking(move || {
            let _running = running;
            let started = Instant::now();
            let mut out = Snapshot::new();
            let result = collector.update(&mut out);
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
            Outcome::Panicked(message) => {
                tracing::error!(collector = name, panic = %message, "collector panicked");
                (0.0, 0.0)
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

/// Clears a collector's in-flight flag when its run ends, however it ends:
/// a panic unwinding out of `update` must not leave the collector marked
/// busy, or it would be skipped for the rest of the process's life.
struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What a collector's panic said, for the log.
fn panic_message(err: tokio::task::JoinError) -> String {
    if !err.is_panic() {
        return err.to_string();
    }
    let payload = err.into_panic();
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn a_missing_tool_is_no_data() {
        let err = crate::tool::run(Path::new("/nonexistent/tool"), &[], Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(CollectError::from(err), CollectError::NoData(_)));
    }

    /// Panics on its first run and works from then on, as a collector
    /// tripping over a host file that was briefly malformed would.
    struct PanicsOnce {
        runs: AtomicUsize,
    }

    impl Collector for PanicsOnce {
        fn update(&self, out: &mut Snapshot) -> Result<(), CollectError> {
            if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("index out of range in a test collector");
            }
            out.gauge("test_value", "A value.", Vec::new(), 7.0);
            Ok(())
        }
    }

    fn scraper() -> Scraper {
        let collector = PanicsOnce {
            runs: AtomicUsize::new(0),
        };
        Scraper::with_collectors(vec![("flaky", Box::new(collector))], Duration::from_secs(5))
    }

    fn success(snapshot: &Snapshot, collector: &str) -> f64 {
        let family = snapshot
            .get("node_scrape_collector_success")
            .expect("the success family is always reported");
        let samples: Vec<_> = family
            .samples
            .iter()
            .filter(|s| s.labels == [("collector", collector.to_owned())])
            .collect();
        assert_eq!(samples.len(), 1, "{family:?}");
        samples[0].value
    }

    /// The log lines written while `f` runs, as the exporter formats them.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        use tracing_subscriber::layer::SubscriberExt;
        let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(move || writer.clone()),
            );
        let result = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        (result, text)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_collector_that_panicked_is_reported_logged_and_run_again() {
        let runtime = runtime();
        let scraper = scraper();
        let (first, first_log) = logged(|| runtime.block_on(scraper.scrape()));
        let (second, second_log) = logged(|| runtime.block_on(scraper.scrape()));

        assert_eq!(success(&first, "flaky"), 0.0);
        assert!(first.get("test_value").is_none());
        // The panic did not leave the collector marked as still running.
        assert_eq!(success(&second, "flaky"), 1.0, "{second_log}");
        assert_eq!(second.get("test_value").unwrap().samples[0].value, 7.0);

        let lines: Vec<&str> = first_log.lines().filter(|l| l.contains("flaky")).collect();
        assert_eq!(lines.len(), 1, "{first_log}");
        assert!(lines[0].contains("level=error"), "{first_log}");
        assert!(lines[0].contains("collector=flaky"), "{first_log}");
        assert!(
            lines[0].contains("index out of range in a test collector"),
            "{first_log}"
        );
        assert!(!second_log.contains("flaky"), "{second_log}");
    }
}
