//! The host's runtime configuration: what a `config_update` command may
//! change (the fan policy, the collection interval, the enabled
//! collectors), checked again here against the host's own duty floor,
//! kept in the state directory so it survives restarts, with the previous
//! version beside it for rollback.
//!
//! Files (0600, written to a temporary file, fsynced, then renamed over
//! the old one, so a crash leaves the old or the new file, never half of
//! one): `runtime-config.toml` (in force), `runtime-config.previous.toml`
//! (the one before), and `runtime-config.unconfirmed` (the version and
//! Unix deadline of a configuration applied with `revert_after_s` and not
//! yet confirmed). An exporter that starts with an unconfirmed
//! configuration rolls it back at once: it may be what stopped it.
//!
//! Everything takes effect at once, without a restart, and a rollback
//! undoes it the same way: the fan policy; the collector set from the next
//! scrape, a collector the exporter did not start being built then as at
//! start-up ([`RuntimeCollectors`]); and the interval from the shipper's
//! next tick ([`LiveInterval`]). At start-up the stored configuration goes
//! through the same two switches before the scraper and the shipper start.
//!
//! The interval is the shipper's alone: `/metrics` is scraped whenever its
//! client asks, fan safety keeps `--fans.interval`, the spool's limits are
//! bytes and age rather than batch counts, and the metadata resend is
//! timed on its own. The receiver judges a host's freshness by its own
//! `--clients.push-interval`, which it cannot learn from here: an
//! `interval_s` above it shows the host as stale between pushes.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dcmon_protocol::commands::{ConfigAction, RuntimeConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::collector::RuntimeCollectors;
use crate::fans::{FanController, Policy};
use crate::shipper::LiveInterval;

/// The configuration in force.
pub const CURRENT_FILE: &str = "runtime-config.toml";
/// The one before it.
pub const PREVIOUS_FILE: &str = "runtime-config.previous.toml";
/// Marks a configuration that rolls back unless confirmed.
pub const UNCONFIRMED_FILE: &str = "runtime-config.unconfirmed";

/// Why a runtime configuration was refused or could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    /// The document is not valid here; names the field.
    #[error("refused by this host: {0}")]
    Invalid(String),
    /// Reading or writing the state directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A confirmation that matches nothing pending.
    #[error("{0}")]
    Confirm(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeConfigError + '_ {
    move |source| RuntimeConfigError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A configuration awaiting confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unconfirmed {
    version: String,
    /// Unix seconds after which it is rolled back.
    revert_at: u64,
}

/// What the host answers to a `config_update`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// The version now in force (`null`: none, the flags rule).
    pub version: Option<String>,
    /// Its content hash.
    pub hash: Option<String>,
    /// The fan policy's version now in force.
    pub fan_policy: Option<String>,
    /// Unix seconds by which a `confirm` must arrive, if one must.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_at: Option<u64>,
}

/// What a runtime configuration switches in the running exporter besides
/// the fans, shared with the scraper and the shipper.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// The scraper's collector set.
    pub collectors: RuntimeCollectors,
    /// The shipper's interval, starting at the flag's.
    pub interval: LiveInterval,
}

impl LiveSettings {
    /// Settings nothing follows yet: the collectors of the scraper built
    /// on `collectors`' services, the interval starting at `interval`.
    pub fn new(collectors: RuntimeCollectors, interval: Duration) -> LiveSettings {
        LiveSettings {
            collectors,
            interval: LiveInterval::new(interval),
        }
    }
}

/// Parses and checks a runtime configuration (TOML) against `min_duty`.
pub fn parse(text: &str, min_duty: u8) -> Result<RuntimeConfig, RuntimeConfigError> {
    let config: RuntimeConfig = toml::from_str(text)
        .map_err(|e| RuntimeConfigError::Invalid(e.to_string().trim().into()))?;
    config
        .validate(min_duty)
        .map_err(|e| RuntimeConfigError::Invalid(e.to_string()))?;
    Ok(config)
}

/// The canonical TOML of `config`.
pub fn to_toml(config: &RuntimeConfig) -> String {
    toml::to_string(config).expect("a runtime configuration always serializes")
}

/// SHA-256 of the canonical TOML, first 16 hex digits.
pub fn hash(config: &RuntimeConfig) -> String {
    Sha256::digest(to_toml(config).as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `contents` to `path` with mode 0600: temporary file, fsync, rename.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), RuntimeConfigError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(contents).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<String>, RuntimeConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // An exporter run by another user than the state directory's owner
        // (a local try-out beside the installed service) runs on its flags.
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                path = %path.display(),
                "cannot read the runtime configuration here; running on the flags alone"
            );
            Ok(None)
        }
        Err(err) => Err(io_error(path)(err)),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Inner {
    current: Option<RuntimeConfig>,
    unconfirmed: Option<Unconfirmed>,
}

/// The runtime configuration store of one host, and what applies it.
pub struct RuntimeStore {
    dir: PathBuf,
    min_duty: u8,
    fans: Arc<FanController>,
    /// Shared with the scraper and the shipper.
    live: LiveSettings,
    /// Held while `live` is switched: an update and a rollback racing each
    /// other leave the settings of whichever configuration is in force.
    switching: Mutex<()>,
    /// The policy of `--fans.policy-file`, in force while no runtime
    /// configuration is.
    base_policy: Option<Policy>,
    inner: Mutex<Inner>,
    me: Weak<RuntimeStore>,
}

impl std::fmt::Debug for RuntimeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl RuntimeStore {
    /// Opens the store in `dir` (created on the first write), rolls back a
    /// configuration left unconfirmed by the last run, and puts the fan
    /// policy in force (the stored one, else `base_policy`). The collectors
    /// and interval it sets are followed by nothing.
    pub fn open(
        dir: &Path,
        min_duty: u8,
        fans: Arc<FanController>,
        base_policy: Option<Policy>,
    ) -> Result<Arc<RuntimeStore>, RuntimeConfigError> {
        let flags = crate::config::Config::default();
        RuntimeStore::open_with(
            dir,
            min_duty,
            fans,
            base_policy,
            LiveSettings::new(RuntimeCollectors::default(), flags.remote_write.interval),
        )
    }

    /// [`RuntimeStore::open`], also switching the collectors and the
    /// interval through `live`: open it before building the scraper and
    /// starting the shipper on them, so they start on the stored settings.
    pub fn open_with(
        dir: &Path,
        min_duty: u8,
        fans: Arc<FanController>,
        base_policy: Option<Policy>,
        live: LiveSettings,
    ) -> Result<Arc<RuntimeStore>, RuntimeConfigError> {
        if let (Some(policy), Some(why)) = (&base_policy, fans.unsupported_reason()) {
            return Err(RuntimeConfigError::Invalid(format!(
                "fan policy {} cannot run here: {why}",
                policy.doc.version
            )));
        }
        let store = Arc::new_cyclic(|me| RuntimeStore {
            dir: dir.to_owned(),
            min_duty,
            fans,
            live,
            switching: Mutex::new(()),
            base_policy,
            inner: Mutex::new(Inner {
                current: None,
                unconfirmed: None,
            }),
            me: me.clone(),
        });
        let current = match read_optional(&store.path(CURRENT_FILE))? {
            None => None,
            Some(text) => Some(parse(&text, min_duty).map_err(|err| {
                RuntimeConfigError::Invalid(format!(
                    "{}: {err}",
                    store.path(CURRENT_FILE).display()
                ))
            })?),
        };
        store.lock().current = current;
        if read_optional(&store.path(UNCONFIRMED_FILE))?.is_some() {
            tracing::warn!(
                "the runtime configuration was never confirmed before the exporter stopped; rolling back"
            );
            store.roll_back()?;
        } else {
            store.put_in_force()?;
        }
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The configuration in force, if any.
    pub fn current(&self) -> Option<RuntimeConfig> {
        self.lock().current.clone()
    }

    /// The collectors and interval this store switches.
    pub fn live(&self) -> &LiveSettings {
        &self.live
    }

    /// Switches the collectors and the interval to the configuration in
    /// force (the flags' where it names none, or where none is).
    fn apply_live(&self) {
        let _switching = self.switching.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current();
        let collectors = current.as_ref().and_then(|c| c.collectors.clone());
        let started = self.live.collectors.set(collectors);
        if !started.is_empty() {
            tracing::info!(collectors = ?started, "collectors started");
        }
        let interval = current
            .and_then(|c| c.interval_s)
            .map(|s| Duration::from_secs(u64::from(s)));
        if self.live.interval.set(interval) {
            tracing::info!(interval = ?self.live.interval.get(), "collection interval set");
        }
    }

    /// Puts the stored (or base) fan policy, collectors and interval in force.
    fn put_in_force(&self) -> Result<(), RuntimeConfigError> {
        self.apply_live();
        let policy = match self.current() {
            Some(current) => match current.fan_policy {
                Some(doc) => Some(
                    Policy::new(doc, self.min_duty)
                        .map_err(|e| RuntimeConfigError::Invalid(format!("config.{e}")))?,
                ),
                None => None,
            },
            None => self.base_policy.clone(),
        };
        let unchanged = match (&policy, self.fans.policy()) {
            (Some(new), Some(old)) => new.hash == old.hash,
            (None, None) => true,
            _ => false,
        };
        if !unchanged {
            self.fans.set_policy(policy);
        }
        Ok(())
    }

    /// Runs one `config_update` action.
    pub fn execute(&self, action: &ConfigAction) -> Result<Applied, RuntimeConfigError> {
        match action {
            ConfigAction::Apply {
                config,
                revert_after_s,
            } => self.apply(config, revert_after_s.map(u64::from)),
            ConfigAction::Confirm { version } => self.confirm(version),
        }
    }

    /// Checks `config` against this host's rules, keeps the configuration
    /// in force as the previous one, persists and applies `config`.
    pub fn apply(
        &self,
        config: &RuntimeConfig,
        revert_after_s: Option<u64>,
    ) -> Result<Applied, RuntimeConfigError> {
        config
            .validate(self.min_duty)
            .map_err(|e| RuntimeConfigError::Invalid(e.to_string()))?;
        let policy = config
            .fan_policy
            .clone()
            .map(|doc| Policy::new(doc, self.min_duty))
            .transpose()
            .map_err(|e| RuntimeConfigError::Invalid(e.to_string()))?;
        // A policy this board cannot run would be a silent no-op.
        if let (Some(policy), Some(why)) = (&policy, self.fans.unsupported_reason()) {
            return Err(RuntimeConfigError::Invalid(format!(
                "fan policy {} cannot run here: {why}",
                policy.doc.version
            )));
        }
        crate::state_dir::prepare(&self.dir)
            .map_err(|e| RuntimeConfigError::Invalid(e.to_string()))?;
        let previous = self.current();
        match &previous {
            Some(previous) => {
                write_private(&self.path(PREVIOUS_FILE), to_toml(previous).as_bytes())?
            }
            None => remove(&self.path(PREVIOUS_FILE))?,
        }
        write_private(&self.path(CURRENT_FILE), to_toml(config).as_bytes())?;
        let unconfirmed = revert_after_s.map(|after| Unconfirmed {
            version: config.version.clone(),
            revert_at: now_unix() + after,
        });
        match &unconfirmed {
            Some(pending) => write_private(
                &self.path(UNCONFIRMED_FILE),
                toml::to_string(pending)
                    .expect("a deadline always serializes")
                    .as_bytes(),
            )?,
            None => remove(&self.path(UNCONFIRMED_FILE))?,
        }
        {
            let mut inner = self.lock();
            inner.current = Some(config.clone());
            inner.unconfirmed = unconfirmed.clone();
        }
        self.fans.set_policy(policy);
        self.apply_live();
        if let (Some(after), Some(me)) = (revert_after_s, self.me.upgrade()) {
            let version = config.version.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(after));
                me.revert_if_unconfirmed(&version);
            });
        }
        tracing::info!(
            version = config.version,
            hash = hash(config),
            revert_after_s,
            "runtime configuration applied"
        );
        Ok(Applied {
            version: Some(config.version.clone()),
            hash: Some(hash(config)),
            fan_policy: config.fan_policy.as_ref().map(|p| p.version.clone()),
            revert_at: unconfirmed.map(|u| u.revert_at),
        })
    }

    /// Keeps the unconfirmed configuration `version`.
    pub fn confirm(&self, version: &str) -> Result<Applied, RuntimeConfigError> {
        let mut inner = self.lock();
        match &inner.unconfirmed {
            Some(pending) if pending.version == version => {
                remove(&self.path(UNCONFIRMED_FILE))?;
                inner.unconfirmed = None;
                tracing::info!(version, "runtime configuration confirmed");
                let current = inner.current.clone();
                Ok(Applied {
                    version: current.as_ref().map(|c| c.version.clone()),
                    hash: current.as_ref().map(hash),
                    fan_policy: current
                        .as_ref()
                        .and_then(|c| c.fan_policy.as_ref().map(|p| p.version.clone())),
                    revert_at: None,
                })
            }
            Some(pending) => Err(RuntimeConfigError::Confirm(format!(
                "version {} awaits confirmation, not {version}",
                pending.version
            ))),
            None => Err(RuntimeConfigError::Confirm(format!(
                "no configuration awaits confirmation (asked to confirm {version}; rolled back already?)"
            ))),
        }
    }

    /// Rolls back `version` if it is still unconfirmed.
    pub fn revert_if_unconfirmed(&self, version: &str) {
        let due = self
            .lock()
            .unconfirmed
            .as_ref()
            .is_some_and(|p| p.version == version);
        if due {
            tracing::warn!(
                version,
                "runtime configuration not confirmed in time; rolling back"
            );
            if let Err(err) = self.roll_back() {
                tracing::error!(error = %err, "rolling back the runtime configuration failed");
            }
        }
    }

    /// Puts the previous configuration (or none) back in force.
    fn roll_back(&self) -> Result<(), RuntimeConfigError> {
        let previous = match read_optional(&self.path(PREVIOUS_FILE))? {
            Some(text) => Some(parse(&text, self.min_duty)?),
            None => None,
        };
        match &previous {
            Some(previous) => {
                write_private(&self.path(CURRENT_FILE), to_toml(previous).as_bytes())?
            }
            None => remove(&self.path(CURRENT_FILE))?,
        }
        remove(&self.path(PREVIOUS_FILE))?;
        remove(&self.path(UNCONFIRMED_FILE))?;
        {
            let mut inner = self.lock();
            inner.current = previous;
            inner.unconfirmed = None;
        }
        self.put_in_force()
    }

    /// `dcmon_config_info{version,hash}`, while a runtime configuration is in force.
    pub fn write_to(&self, out: &mut crate::snapshot::Snapshot) {
        if let Some(current) = self.current() {
            out.gauge(
                "dcmon_config_info",
                "The runtime configuration in force (config_update): its version and content hash.",
                vec![
                    ("version", current.version.clone()),
                    ("hash", hash(&current)),
                ],
                1.0,
            );
        }
    }
}

fn remove(path: &Path) -> Result<(), RuntimeConfigError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_error(path)(err)),
    }
}
