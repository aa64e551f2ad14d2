//! What forwarding runs from: the upstreams (from `--remote-write.forward.*`
//! flags and the config file's `[[forward]]` tables), where their queues
//! live, and the bounds of each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dcmon_ship::endpoint::EndpointConfig;
use dcmon_ship::spool::SpoolLimits;

use super::batcher::BatchLimits;

/// First retry delay, as Prometheus's remote write.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest retry delay (unless the upstream's `Retry-After` asks for more).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where accepted samples are kept (`--storage.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageMode {
    /// In SQLite, answering queries (and forwarded too, if upstreams are
    /// configured).
    #[default]
    Local,
    /// Only upstream: no samples in SQLite. Hosts, tokens, commands,
    /// metadata and the receiver's own series are still kept there.
    ForwardOnly,
}

/// Forwarding settings.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Whether accepted samples are also stored locally.
    pub mode: StorageMode,
    /// The upstreams; never empty.
    pub endpoints: Vec<EndpointConfig>,
    /// Holds one queue directory per upstream.
    pub dir: PathBuf,
    /// Bounds of each upstream's queue.
    pub limits: SpoolLimits,
    /// Longest one request may take.
    pub timeout: Duration,
    /// When gathered writes go out.
    pub batch: BatchLimits,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl ForwardConfig {
    /// The queue directory of an upstream: named after its URL, so a
    /// restart finds what it left.
    pub fn queue_dir(&self, endpoint: &EndpointConfig) -> PathBuf {
        self.dir.join(endpoint.id())
    }

    /// The default home of the queues: `forward/` next to the database.
    pub fn default_dir(storage_path: &Path) -> PathBuf {
        storage_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("forward")
    }
}
