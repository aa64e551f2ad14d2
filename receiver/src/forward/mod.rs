//! Forwarding: every write the receiver accepted, after host-label
//! enforcement, is re-sent to each upstream (a VictoriaMetrics cluster's
//! vminsert, Mimir, Thanos Receive, a Prometheus with its remote-write
//! receiver), so a fleet can outgrow one receiver while dcmon keeps its
//! enrolment, tokens, host labels and commands.
//!
//! - [`config`]: the upstreams and the queue bounds,
//! - [`batcher`]: accepted writes gathered into larger requests,
//! - [`metrics`]: per-upstream figures at `/metrics`,
//! - [`query`]: the query API answered by the upstream
//!   (`--query.upstream.url`).
//!
//! Delivery is the exporter's own ([`dcmon_ship`]): per upstream a worker,
//! a durable bounded on-disk queue (the spool), retries with backoff that
//! honour `Retry-After`, 4xx answers dropped and counted, 5xx and 429
//! retried. The write handler only hands its copy over a bounded channel
//! and never waits: a full channel (the batcher stalled on a slow disk)
//! drops that copy and counts it for every upstream, rather than slow the
//! local acknowledgement.

pub mod batcher;
pub mod config;
pub mod metrics;
pub mod query;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use dcmon_protocol::remote_write;
use dcmon_ship::endpoint::{Endpoint, EndpointError};
use dcmon_ship::lane::Lane;
use dcmon_ship::metrics::EndpointMetrics;
use dcmon_ship::retry::Backoff;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use config::{ForwardConfig, StorageMode};

use batcher::Accepted;

/// Accepted writes waiting for the batcher before further ones are
/// dropped (and counted) rather than waited for.
const INTAKE_CAPACITY: usize = 4096;

/// Batches an upstream's worker may have queued before the batcher spools
/// for it instead.
const OUTLET_CAPACITY: usize = 4;

/// The `User-Agent` of forwarded requests.
const USER_AGENT: &str = concat!("dcmon-receiver/", env!("CARGO_PKG_VERSION"));

/// Why forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// An upstream is misconfigured.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Two upstreams with the same URL would share a queue.
    #[error("--remote-write.forward.url {0} is configured twice")]
    Duplicate(String),
    /// A queue directory could not be opened.
    #[error("opening the forwarding queue {path}: {source}")]
    Queue {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Running forwarding: the intake the write handler feeds, and the tasks
/// behind it.
#[derive(Debug)]
pub struct Forwarder {
    /// `None` once closed for shutdown.
    intake: RwLock<Option<mpsc::Sender<Accepted>>>,
    upstreams: Vec<Arc<EndpointMetrics>>,
    tasks: Mutex<JoinSet<()>>,
    shutdown: watch::Sender<bool>,
    mode: StorageMode,
}

impl Forwarder {
    /// Opens every upstream's queue (sending what an earlier run left there
    /// first) and starts the batcher and one worker per upstream. Must be
    /// called within a Tokio runtime.
    pub async fn start(config: ForwardConfig) -> Result<Forwarder, ForwardError> {
        // reqwest wants a process-wide rustls provider even when its TLS
        // settings name one.
        dcmon_web::install_crypto_provider();
        let (shutdown, stop) = watch::channel(false);
        let mut seen = std::collections::HashSet::new();
        let mut tasks = JoinSet::new();
        let mut outlets = Vec::new();
        let mut upstreams = Vec::new();
        for endpoint_config in &config.endpoints {
            if !seen.insert(endpoint_config.url.clone()) {
                return Err(ForwardError::Duplicate(endpoint_config.display_url()));
            }
            let endpoint = Endpoint::new(endpoint_config.clone(), config.timeout, USER_AGENT)?;
            let dir = config.queue_dir(endpoint_config);
            let lane = Lane::open(endpoint, &dir, config.limits)
                .await
                .map_err(|source| ForwardError::Queue {
                    path: dir.clone(),
                    source,
                })?;
            let name = endpoint_config.display_url();
            let (batches, bytes) = lane.backlog;
            if batches > 0 {
                tracing::info!(upstream = %name, batches, bytes, "queued batches found; forwarding them oldest first");
            }
            tracing::info!(upstream = %name, queue = %dir.display(), protobuf_message = %endpoint_config.protobuf_message, "forwarding accepted writes");
            let metrics = Arc::clone(&lane.metrics);
            let backoff = Backoff::new(config.min_backoff, config.max_backoff);
            outlets.push(lane.start(OUTLET_CAPACITY, stop.clone(), backoff, &mut tasks));
            upstreams.push(metrics);
        }
        let (intake, accepted) = mpsc::channel(INTAKE_CAPACITY);
        tasks.spawn(batcher::run(accepted, outlets, config.batch));
        Ok(Forwarder {
            intake: RwLock::new(Some(intake)),
            upstreams,
            tasks: Mutex::new(tasks),
            shutdown,
            mode: config.mode,
        })
    }

    /// Whether samples are kept only upstream (`--storage.mode
    /// forward-only`).
    pub fn forward_only(&self) -> bool {
        self.mode == StorageMode::ForwardOnly
    }

    /// Hands a write stored locally over for forwarding; never waits. A
    /// write that cannot be taken (forwarding far behind) is dropped and
    /// counted for every upstream: it is stored here all the same.
    pub fn submit(&self, batch: remote_write::WriteRequest, received_ms: i64) {
        let samples = batch.sample_count() as u64;
        if !self.try_submit(batch, received_ms) {
            for upstream in &self.upstreams {
                upstream.dropped(samples);
            }
            tracing::warn!(
                samples,
                "forwarding is behind; an accepted write was not forwarded"
            );
        }
    }

    /// Hands a write over for forwarding, stamped with `received_ms` (from
    /// which its queue age counts); `false`, without waiting, when
    /// forwarding cannot take it now.
    pub fn try_submit(&self, batch: remote_write::WriteRequest, received_ms: i64) -> bool {
        let guard = self.intake.read().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .is_some_and(|intake| intake.try_send(Accepted { batch, received_ms }).is_ok())
    }

    /// The per-upstream figures, for `/metrics`.
    pub fn metrics(&self) -> metrics::ForwardMetrics {
        metrics::ForwardMetrics::new(self.upstreams.clone())
    }

    /// Stops taking writes, hands what the batcher holds to the workers,
    /// and waits (at most `grace`) until every worker has stopped, having
    /// put whatever it could not deliver in its queue for the next start.
    pub async fn shut_down(&self, grace: Duration) {
        // Dropping the intake ends the batcher once it has flushed; that
        // closes the workers' channels, which they drain to disk.
        self.intake
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.shutdown.send_replace(true);
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let drained = tokio::time::timeout(grace, async {
            while let Some(result) = tasks.join_next().await {
                if let Err(err) = result {
                    tracing::error!(error = %err, "forwarding task failed");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("forwarding did not stop in time; undelivered batches may be lost");
        }
    }
}
