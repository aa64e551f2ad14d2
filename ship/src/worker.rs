//! The loop that feeds one endpoint. It owns the endpoint's spool; fresh
//! batches arrive over a channel from the producer (the exporter's
//! collection loop, the receiver's forwarding batcher), which spools
//! directly when the channel is full.
//!
//! Batches go out in time order. Each round sends one batch: a fresh one
//! when nothing is spooled, otherwise the oldest spooled one, with fresh
//! batches joining the spool behind it. Sending current data ahead of a
//! backlog would lose the backlog at Prometheus, Mimir and any other
//! endpoint that refuses a sample older than the newest of its series (a
//! 400 "out of order sample", never retried). A batch is removed from the
//! spool only once it is delivered or refused for good, so nothing is lost
//! across a crash and nothing is sent twice in normal operation. A
//! retryable failure puts the batch in the spool and starts a backoff;
//! while it runs, fresh batches go straight to the spool. On shutdown any
//! batch not yet delivered, including one whose request was in flight, is
//! spooled.
//!
//! Every request goes in the message the endpoint is sent now; a batch
//! encoded or spooled in the other one is re-encoded first. When an `auto`
//! endpoint shows it does not take 2.0, the worker remembers it and sends
//! the same batch again at once as 1.0: it is neither dropped nor counted
//! as failed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::batch::Batch;
use super::endpoint::{Attempt, Endpoint};
use super::message::Negotiation;
use super::metrics::EndpointMetrics;
use super::now_ms;
use super::retry::Backoff;
use super::spool::{Dropped, Spool, SpoolError, SpoolKey};

/// The longest `Retry-After` honoured: a server asking for more is still
/// retried after this long, so a bad header cannot stall shipping for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// A spool shared by the endpoint's worker and the collection loop (which
/// spools directly when the worker's channel is full), with every disk
/// operation run on the blocking pool and reflected in the metrics.
#[derive(Debug, Clone)]
pub struct SpoolHandle {
    spool: Arc<Mutex<Spool>>,
    /// Batches in the spool, readable without taking the lock.
    len: Arc<AtomicUsize>,
    metrics: Arc<EndpointMetrics>,
    endpoint: String,
}

impl SpoolHandle {
    /// Wraps an opened spool.
    pub fn new(spool: Spool, metrics: Arc<EndpointMetrics>, endpoint: String) -> Self {
        metrics.set_spool_bytes(spool.bytes());
        metrics.set_spool_oldest_ms(spool.oldest().map_or(0, |key| key.tick_ms()));
        Self {
            len: Arc::new(AtomicUsize::new(spool.len())),
            spool: Arc::new(Mutex::new(spool)),
            metrics,
            endpoint,
        }
    }

    async fn with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> T {
        let spool = Arc::clone(&self.spool);
        let metrics = Arc::clone(&self.metrics);
        let len = Arc::clone(&self.len);
        tokio::task::spawn_blocking(move || {
            let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
            let out = op(&mut spool);
            metrics.set_spool_bytes(spool.bytes());
            metrics.set_spool_oldest_ms(spool.oldest().map_or(0, |key| key.tick_ms()));
            len.store(spool.len(), Ordering::Relaxed);
            out
        })
        .await
        .expect("spool operation panicked")
    }

    /// Writes `batch` to the spool, counting what the bounds dropped. A
    /// batch that cannot be written is counted as dropped.
    pub async fn push(&self, batch: Arc<Batch>) {
        let samples = batch.samples;
        let result = self.with(move |spool| spool.push(&batch, now_ms())).await;
        match result {
            Ok(dropped) => self.count_dropped(dropped, "spool full or too old"),
            Err(err) => {
                tracing::error!(endpoint = %self.endpoint, error = %err, samples, "cannot write to the spool; batch dropped");
                self.metrics.dropped(samples);
            }
        }
    }

    fn count_dropped(&self, dropped: Dropped, why: &str) {
        if dropped.batches == 0 {
            return;
        }
        self.metrics.dropped(dropped.samples);
        self.metrics.corrupt_files(dropped.corrupt);
        tracing::warn!(
            endpoint = %self.endpoint,
            batches = dropped.batches,
            samples = dropped.samples,
            "dropped spooled batches: {why}"
        );
    }

    /// The oldest spooled batch that can be read, dropping expired and
    /// corrupt ones on the way.
    async fn oldest(&self) -> Oldest {
        loop {
            let (expired, next) = self
                .with(|spool| {
                    let expired = spool.expire(now_ms());
                    let next = spool.oldest().map(|key| (key, spool.read(key)));
                    (expired, next)
                })
                .await;
            self.count_dropped(expired, "older than the spool's max age");
            match next {
                None => return Oldest::Empty,
                Some((key, Ok(batch))) => return Oldest::Batch(key, batch),
                Some((
                    _,
                    Err(SpoolError::Corrupt {
                        path,
                        reason,
                        dropped,
                    }),
                )) => {
                    tracing::warn!(endpoint = %self.endpoint, file = %path.display(), reason, "skipped a corrupt spool file");
                    self.metrics.dropped(dropped.samples);
                    self.metrics.corrupt_files(dropped.corrupt);
                }
                Some((_, Err(err @ SpoolError::Io { .. }))) => {
                    tracing::error!(endpoint = %self.endpoint, error = %err, "cannot read the spool");
                    return Oldest::Unreadable;
                }
            }
        }
    }

    async fn remove(&self, key: SpoolKey) {
        if let Err(err) = self.with(move |spool| spool.remove(key)).await {
            tracing::error!(endpoint = %self.endpoint, error = %err, "cannot remove a delivered batch from the spool");
        }
    }

    /// Whether anything is spooled.
    pub fn has_batches(&self) -> bool {
        self.len.load(Ordering::Relaxed) > 0
    }
}

/// What the spool offers next.
enum Oldest {
    Batch(SpoolKey, Batch),
    Empty,
    /// The oldest file exists but cannot be read now (an I/O error).
    Unreadable,
}

/// Where the batch being sent came from.
enum Source {
    Fresh(Arc<Batch>),
    Spooled(SpoolKey, Arc<Batch>),
}

impl Source {
    fn batch(&self) -> &Arc<Batch> {
        match self {
            Source::Fresh(batch) | Source::Spooled(_, batch) => batch,
        }
    }

    /// The same source with its batch replaced.
    fn with_batch(self, batch: Arc<Batch>) -> Source {
        match self {
            Source::Fresh(_) => Source::Fresh(batch),
            Source::Spooled(key, _) => Source::Spooled(key, batch),
        }
    }
}

/// One endpoint's loop.
#[derive(Debug)]
pub struct Worker {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its spool.
    pub spool: SpoolHandle,
    /// Its counters.
    pub metrics: Arc<EndpointMetrics>,
    /// The message it is sent now.
    pub negotiation: Arc<Negotiation>,
    /// Fresh batches from the collection loop; closed when it stops.
    pub fresh: mpsc::Receiver<Arc<Batch>>,
    /// Becomes `true` on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Retry delays.
    pub backoff: Backoff,
}

impl Worker {
    /// Runs until shutdown, then spools whatever was not delivered.
    pub async fn run(mut self) {
        let name = self.endpoint.config().display_url();
        let mut queued: VecDeque<Arc<Batch>> = VecDeque::new();
        let mut retry_at: Option<Instant> = None;
        // The reason of the failure being retried, if any: each new reason
        // is logged once as a warning (an outage that turns into a refused
        // certificate must say so), repeats only at debug level.
        let mut failing: Option<String> = None;
        loop {
            let has_work = !queued.is_empty() || (self.spool.has_batches() && retry_at.is_none());
            if !has_work {
                tokio::select! {
                    biased;
                    _ = self.shutdown.wait_for(|stop| *stop) => break,
                    received = self.fresh.recv() => match received {
                        Some(batch) => queued.push_back(batch),
                        None => break,
                    },
                    _ = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
                }
            }
            while let Ok(batch) = self.fresh.try_recv() {
                queued.push_back(batch);
            }
            if let Some(at) = retry_at {
                if Instant::now() < at {
                    // Backing off: keep fresh batches safe on disk meanwhile.
                    while let Some(batch) = queued.pop_front() {
                        self.spool.push(batch).await;
                    }
                    continue;
                }
                retry_at = None;
            }
            if self.spool.has_batches() {
                // A backlog (spooled by a failure, or by the producer while
                // this loop was busy) goes first: fresh batches wait behind
                // it, in the spool's time order.
                while let Some(batch) = queued.pop_front() {
                    self.spool.push(batch).await;
                }
            }
            let source = match queued.pop_front() {
                Some(batch) => Source::Fresh(batch),
                None => match self.spool.oldest().await {
                    Oldest::Batch(key, batch) => Source::Spooled(key, Arc::new(batch)),
                    Oldest::Empty => continue,
                    Oldest::Unreadable => {
                        retry_at = Some(Instant::now() + self.backoff.next_delay());
                        continue;
                    }
                },
            };
            let wanted = self.negotiation.current();
            let source = if source.batch().version == wanted {
                source
            } else {
                match source.batch().to_version(wanted) {
                    Ok(batch) => source.with_batch(Arc::new(batch)),
                    Err(err) => {
                        let samples = source.batch().samples;
                        tracing::error!(endpoint = %name, error = %err, samples, "batch dropped");
                        self.metrics.dropped(samples);
                        if let Source::Spooled(key, _) = source {
                            self.spool.remove(key).await;
                        }
                        continue;
                    }
                }
            };
            let attempt = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|stop| *stop) => {
                    // Abandon the request; the batch is kept for next time.
                    if let Source::Fresh(batch) = source {
                        queued.push_front(batch);
                    }
                    break;
                }
                attempt = self.endpoint.send(source.batch()) => attempt,
            };
            let attempt = self.negotiation.judge(source.batch().version, attempt);
            let samples = source.batch().samples;
            match attempt {
                Attempt::Delivered => {
                    let bytes = source.batch().body.len() as u64;
                    self.metrics.sent(samples, bytes, now_ms());
                    self.backoff.reset();
                    if failing.take().is_some() {
                        tracing::info!(endpoint = %name, "remote write recovered");
                    }
                    if let Source::Spooled(key, _) = source {
                        self.spool.remove(key).await;
                    }
                }
                Attempt::Refused { status, body } => {
                    tracing::warn!(
                        endpoint = %name,
                        status = status.as_u16(),
                        response = %body,
                        samples,
                        "remote write refused; batch dropped (a 4xx is not retried)"
                    );
                    self.metrics.dropped(samples);
                    self.backoff.reset();
                    if let Source::Spooled(key, _) = source {
                        self.spool.remove(key).await;
                    }
                }
                Attempt::NotUnderstood { reason } => {
                    if self.negotiation.fall_back() {
                        tracing::warn!(
                            endpoint = %name,
                            reason,
                            "the endpoint does not take Remote-Write 2.0; sending 1.0 (prometheus.WriteRequest) from now on (set protobuf_message = \"v1\" to skip the first try)"
                        );
                    }
                    // Sent again at once, re-encoded; a spooled batch stays
                    // on the spool meanwhile.
                    if let Source::Fresh(batch) = source {
                        queued.push_front(batch);
                    }
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    self.metrics.failed(samples);
                    let delay = self
                        .backoff
                        .next_delay()
                        .max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER));
                    if failing.as_ref() == Some(&reason) {
                        tracing::debug!(endpoint = %name, error = %reason, retry_in = ?delay, "remote write still failing");
                    } else {
                        tracing::warn!(endpoint = %name, error = %reason, retry_in = ?delay, "remote write failed; spooling until it recovers");
                        failing = Some(reason);
                    }
                    retry_at = Some(Instant::now() + delay);
                    if let Source::Fresh(batch) = source {
                        self.spool.push(batch).await;
                    }
                }
            }
        }
        // Shutting down: the collection loop stops at the same signal and
        // then closes the channel; everything still queued goes to disk.
        while let Some(batch) = self.fresh.recv().await {
            queued.push_back(batch);
        }
        let unsent = queued.len();
        for batch in queued {
            self.spool.push(batch).await;
        }
        tracing::debug!(endpoint = %name, spooled = unsent, "shipper stopped");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
