//! One endpoint's delivery lane as a producer sees it: the endpoint with
//! its spool opened and its counters ([`Lane::open`]), a [`Worker`] started
//! on it ([`Lane::start`]), and the [`Outlet`] the producer (the exporter's
//! collection loop, the receiver's forwarding batcher) hands batches to.
//! A producer never waits for a request: a batch the worker cannot take at
//! once goes to the spool, and the worker sends it in its turn.

use std::io;
use std::path::Path;
use std::sync::Arc;

use dcmon_protocol::remote_write::Version;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::batch::Batch;
use crate::endpoint::Endpoint;
use crate::message::Negotiation;
use crate::metrics::EndpointMetrics;
use crate::retry::Backoff;
use crate::spool::{Spool, SpoolLimits};
use crate::worker::{SpoolHandle, Worker};

/// An endpoint ready for its worker.
#[derive(Debug)]
pub struct Lane {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its opened spool.
    pub spool: SpoolHandle,
    /// Its counters.
    pub metrics: Arc<EndpointMetrics>,
    /// The message it is sent now.
    pub negotiation: Arc<Negotiation>,
    /// Batches and bytes already in the spool when it was opened (a
    /// backlog from before a restart, sent first).
    pub backlog: (usize, u64),
}

impl Lane {
    /// Opens the spool in `dir` (off the async threads: it reads every
    /// batch file's header) and sets up the endpoint's negotiation and
    /// counters; corrupt spool files found are removed and counted.
    pub async fn open(endpoint: Endpoint, dir: &Path, limits: SpoolLimits) -> io::Result<Lane> {
        let dir = dir.to_owned();
        let (spool, corrupt) = tokio::task::spawn_blocking(move || Spool::open(&dir, limits))
            .await
            .expect("opening a spool panicked")?;
        let config = endpoint.config();
        let name = config.display_url();
        let negotiation = Arc::new(Negotiation::new(config.protobuf_message));
        let metrics = Arc::new(EndpointMetrics::new(name.clone(), Arc::clone(&negotiation)));
        metrics.corrupt_files(corrupt.corrupt);
        let backlog = (spool.len(), spool.bytes());
        Ok(Lane {
            spool: SpoolHandle::new(spool, Arc::clone(&metrics), name),
            endpoint,
            metrics,
            negotiation,
            backlog,
        })
    }

    /// Starts the endpoint's worker in `tasks`, taking up to `capacity`
    /// batches before the producer spools them, until `shutdown`.
    pub fn start(
        self,
        capacity: usize,
        shutdown: watch::Receiver<bool>,
        backoff: Backoff,
        tasks: &mut JoinSet<()>,
    ) -> Outlet {
        let (sender, fresh) = mpsc::channel(capacity);
        let outlet = Outlet {
            sender,
            spool: self.spool.clone(),
            negotiation: Arc::clone(&self.negotiation),
        };
        tasks.spawn(
            Worker {
                endpoint: self.endpoint,
                spool: self.spool,
                metrics: self.metrics,
                negotiation: self.negotiation,
                fresh,
                shutdown,
                backoff,
            }
            .run(),
        );
        outlet
    }
}

/// Where a producer hands batches to one endpoint.
#[derive(Debug)]
pub struct Outlet {
    sender: mpsc::Sender<Arc<Batch>>,
    spool: SpoolHandle,
    negotiation: Arc<Negotiation>,
}

impl Outlet {
    /// The message the endpoint is sent now.
    pub fn version(&self) -> Version {
        self.negotiation.current()
    }

    /// Hands `batch` to the worker, or to the spool when the worker is busy
    /// (a slow request, a backoff) or already stopped.
    pub async fn hand_over(&self, batch: Arc<Batch>) {
        match self.sender.try_send(batch) {
            Ok(()) => {}
            Err(
                mpsc::error::TrySendError::Full(batch) | mpsc::error::TrySendError::Closed(batch),
            ) => {
                self.spool.push(batch).await;
            }
        }
    }
}

/// Hands one batch to every outlet, encoded (by `encode`) once per
/// protobuf message some endpoint takes now and shared by all that take it.
pub async fn hand_to_all(outlets: &[Outlet], mut encode: impl FnMut(Version) -> Batch) {
    let mut encoded: [Option<Arc<Batch>>; 2] = [None, None];
    for outlet in outlets {
        let version = outlet.version();
        let slot = &mut encoded[usize::from(version == Version::V2)];
        let batch = slot.get_or_insert_with(|| Arc::new(encode(version)));
        outlet.hand_over(Arc::clone(batch)).await;
    }
}
