//! The remote-write shipper: collects on its own schedule from the same
//! [`SnapshotSource`] as `/metrics` (the exporter's shared scraper), and pushes each round to every configured
//! endpoint, spooling to disk while an endpoint is unreachable.
//!
//! - [`schedule`]: tick alignment (samples carry the tick time) and the
//!   interval in force, which a `config_update` may change while it runs,
//! - [`batch`]: a scrape turned into a compressed Remote-Write body,
//! - [`metrics`]: the shipper's own counters, as samples.
//!
//! Delivery itself (which message each endpoint gets, one HTTP attempt and
//! its classification, backoff, the crash-safe on-disk spool and the loop
//! feeding one endpoint) is [`dcmon_ship`]'s, shared with the receiver's
//! forwarding; its modules are re-exported here under their own names.
//!
//! Every endpoint has its own worker and spool, so a slow or dead endpoint
//! never delays another: the collection loop hands each worker the batch
//! over a short channel, and spools it for that worker when the channel is
//! full.

pub mod batch;
pub mod metrics;
pub mod schedule;
pub use dcmon_ship::{endpoint, message, retry, spool};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use batch::{Batch, TargetLabels};
pub use endpoint::{EndpointAuth, EndpointConfig, RequestSigner};
pub use message::ProtobufMessage;
pub use metrics::ShipperMetrics;
pub use schedule::LiveInterval;
pub use spool::SpoolLimits;

use crate::self_metrics;
use crate::snapshot::SnapshotSource;
use crate::state_dir::{self, StateDirError};
use dcmon_ship::lane::{self, Lane, Outlet};
use endpoint::{Endpoint, EndpointError};
use retry::Backoff;

/// Fresh batches a worker may have queued before the collection loop spools
/// for it instead: enough to ride out one slow request.
const CHANNEL_CAPACITY: usize = 2;

/// Everything the shipper runs from.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Collection interval (the flag's); ticks are multiples of it since
    /// the epoch. [`Shipper::start_following`] takes a live one instead.
    pub interval: Duration,
    /// Labels added to every series.
    pub labels: TargetLabels,
    /// Where to ship. Empty: the shipper does not run.
    pub endpoints: Vec<EndpointConfig>,
    /// Holds `spool/<endpoint-id>/`.
    pub state_dir: PathBuf,
    /// Bounds of each endpoint's spool.
    pub spool: SpoolLimits,
    /// Longest one request may take.
    pub timeout: Duration,
    /// First retry delay; doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay (unless the server's `Retry-After` asks for more).
    pub max_backoff: Duration,
}

impl ShipperConfig {
    /// Adds an endpoint built by code rather than flags, e.g. the receiver
    /// this host is enrolled with, authorised by a per-request JWT signer:
    ///
    /// ```ignore
    /// config.remote_write.add_endpoint(EndpointConfig::new(
    ///     format!("{server}/api/v1/write"),
    ///     EndpointAuth::Signer(Arc::new(jwt_signer)),
    /// ));
    /// ```
    ///
    /// Call it before [`Shipper::start`]; its spool directory follows from
    /// the URL like any other endpoint's.
    pub fn add_endpoint(&mut self, endpoint: EndpointConfig) {
        self.endpoints.push(endpoint);
    }

    /// The spool directory of an endpoint.
    pub fn spool_dir(&self, endpoint: &EndpointConfig) -> PathBuf {
        self.state_dir.join("spool").join(endpoint.id())
    }
}

/// The `User-Agent` of remote-write requests.
const USER_AGENT: &str = concat!("dcmon-exporter/", env!("CARGO_PKG_VERSION"));

/// The `job` label of pushed samples.
pub const JOB: &str = "dcmon";
/// First retry delay, as Prometheus's remote write: 250 ms doubling up to
/// [`MAX_BACKOFF`], so a returning endpoint is found within seconds.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// This host's name, the default `instance` label.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Why the shipper could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    /// The state directory is unusable.
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    /// An endpoint is misconfigured.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// Two endpoints with the same URL would share a spool.
    #[error("remote-write URL {0} is configured twice")]
    Duplicate(String),
    /// A spool directory could not be opened.
    #[error("opening the spool {path}: {source}")]
    Spool {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A running shipper.
#[derive(Debug)]
pub struct Shipper {
    metrics: Arc<ShipperMetrics>,
    tasks: JoinSet<()>,
}

impl Shipper {
    /// Checks the state directory, opens every spool and starts the
    /// collection loop and one worker per endpoint, collecting every
    /// `config.interval`. Everything stops when `shutdown` becomes `true`;
    /// [`Shipper::stopped`] waits for that.
    pub async fn start<S: SnapshotSource>(
        config: ShipperConfig,
        scraper: Arc<S>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Shipper, ShipperError> {
        let interval = LiveInterval::new(config.interval);
        Shipper::start_following(config, interval, scraper, shutdown).await
    }

    /// [`Shipper::start`], collecting at whatever `interval` holds: a
    /// change takes effect from the next tick (`config.interval` is not
    /// read).
    pub async fn start_following<S: SnapshotSource>(
        config: ShipperConfig,
        interval: LiveInterval,
        scraper: Arc<S>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Shipper, ShipperError> {
        state_dir::prepare(&config.state_dir)?;
        let mut seen = std::collections::HashSet::new();
        let mut lanes = Vec::new();
        for endpoint_config in &config.endpoints {
            if !seen.insert(endpoint_config.url.clone()) {
                return Err(ShipperError::Duplicate(endpoint_config.display_url()));
            }
            let mut endpoint_config = endpoint_config.clone();
            if endpoint_config.tls.is_none() {
                let tls = crate::receiver_tls::system_client_config().map_err(|err| {
                    EndpointError::Tls {
                        url: endpoint_config.display_url(),
                        msg: err.to_string(),
                    }
                })?;
                endpoint_config.tls = Some(Arc::new(tls));
            }
            let endpoint = Endpoint::new(endpoint_config.clone(), config.timeout, USER_AGENT)?;
            let dir = config.spool_dir(&endpoint_config);
            let lane = Lane::open(endpoint, &dir, config.spool)
                .await
                .map_err(|source| ShipperError::Spool { path: dir, source })?;
            let (batches, bytes) = lane.backlog;
            if batches > 0 {
                tracing::info!(endpoint = %endpoint_config.display_url(), batches, bytes, "spooled batches found; sending them oldest first");
            }
            lanes.push(lane);
        }
        let metrics = Arc::new(ShipperMetrics::new(
            lanes.iter().map(|lane| Arc::clone(&lane.metrics)).collect(),
        ));
        let mut tasks = JoinSet::new();
        let mut outlets = Vec::new();
        for lane in lanes {
            let endpoint = lane.endpoint.config();
            tracing::info!(endpoint = %endpoint.display_url(), spool = %config.spool_dir(endpoint).display(), protobuf_message = %endpoint.protobuf_message, "shipping");
            let backoff = Backoff::new(config.min_backoff, config.max_backoff);
            outlets.push(lane.start(CHANNEL_CAPACITY, shutdown.clone(), backoff, &mut tasks));
        }
        tasks.spawn(collect_loop(
            config,
            interval,
            scraper,
            Arc::clone(&metrics),
            outlets,
            shutdown,
        ));
        Ok(Shipper { metrics, tasks })
    }

    /// The shipper's metrics, for `/metrics`.
    pub fn metrics(&self) -> Arc<ShipperMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Waits until the collection loop and every worker have stopped (after
    /// shutdown, once undelivered batches are spooled).
    pub async fn stopped(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(err) = result {
                tracing::error!(error = %err, "shipper task failed");
            }
        }
    }
}

/// Collects on every tick and hands the batch to each endpoint.
async fn collect_loop<S: SnapshotSource>(
    config: ShipperConfig,
    interval: LiveInterval,
    scraper: Arc<S>,
    metrics: Arc<ShipperMetrics>,
    outlets: Vec<Outlet>,
    mut shutdown: watch::Receiver<bool>,
) {
    // `interval` stays alive beside its receiver, so `changed` only ever
    // reports a change.
    let mut changes = interval.subscribe();
    let mut last_tick = None;
    let mut schedule = batch::MetadataSchedule::new(batch::METADATA_RESEND);
    loop {
        let in_force = *changes.borrow_and_update();
        // The next tick after the last one collected: a round that overran
        // skips the ticks it missed rather than stamping them late.
        let (tick, skipped) = schedule::next_tick_after(
            SystemTime::now(),
            in_force.interval,
            last_tick,
            in_force.since_ms,
        );
        if skipped > 0 {
            tracing::warn!(skipped, "collection overran the interval; ticks skipped");
            metrics.skipped(skipped);
        }
        let wait = schedule::until_tick(SystemTime::now(), tick);
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            // A new interval: plan the tick again on it, now rather than
            // after a wait the old interval chose.
            _ = changes.changed() => {
                let interval = changes.borrow().interval;
                tracing::info!(?interval, "collection interval changed");
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let snapshot = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            snapshot = scraper.scrape() => snapshot,
        };
        let mut snapshot = snapshot;
        self_metrics::collect(&mut snapshot);
        metrics.collect(&mut snapshot);
        // One encoding per message some endpoint takes now, shared by all
        // that take it.
        let series = batch::series_of(&snapshot, tick, &config.labels);
        let mut metadata = batch::metadata_of(&snapshot);
        if !schedule.due(&metadata, tick) {
            metadata.clear();
        }
        last_tick = Some(tick);
        // A worker stuck on a slow request gets its batch on its spool
        // rather than hold the loop up.
        lane::hand_to_all(&outlets, |version| {
            Batch::encode(&series, &metadata, tick, version)
        })
        .await;
    }
}
