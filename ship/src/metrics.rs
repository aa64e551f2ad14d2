//! The counters of one endpoint, shared by its worker (which counts) and
//! whoever shows them: the exporter's `/metrics` and shipped batches, the
//! receiver's forwarding metrics. Samples sent, failed (an attempt that
//! will be retried) and dropped (refused with a 4xx, evicted from the spool
//! by its bounds, or lost with a corrupt spool file), the bytes of the
//! delivered request bodies, the protobuf message the endpoint is sent now,
//! the spool's size and the age of its oldest batch, and when a write last
//! succeeded.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::message::Negotiation;

/// Counters of one endpoint.
#[derive(Debug)]
pub struct EndpointMetrics {
    endpoint: String,
    negotiation: Arc<Negotiation>,
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    corrupt_files: AtomicU64,
    spool_bytes: AtomicU64,
    /// The ordering time of the oldest spooled batch, ms since the epoch;
    /// 0 when the spool is empty.
    spool_oldest_ms: AtomicI64,
    /// Milliseconds since the epoch; 0 until the first success.
    last_success_ms: AtomicI64,
}

impl EndpointMetrics {
    /// Zeroed counters for the endpoint labelled `endpoint`, whose
    /// message `negotiation` tells.
    pub fn new(endpoint: impl Into<String>, negotiation: Arc<Negotiation>) -> Self {
        Self {
            endpoint: endpoint.into(),
            negotiation,
            sent: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            corrupt_files: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            spool_oldest_ms: AtomicI64::new(0),
            last_success_ms: AtomicI64::new(0),
        }
    }

    /// Samples delivered at `now_ms` in a request body of `bytes`.
    pub fn sent(&self, samples: u64, bytes: u64, now_ms: i64) {
        self.sent.fetch_add(samples, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.last_success_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Samples of an attempt that failed and will be retried.
    pub fn failed(&self, samples: u64) {
        self.failed.fetch_add(samples, Ordering::Relaxed);
    }

    /// Samples given up on.
    pub fn dropped(&self, samples: u64) {
        self.dropped.fetch_add(samples, Ordering::Relaxed);
    }

    /// Spool files found corrupt and removed.
    pub fn corrupt_files(&self, files: u64) {
        self.corrupt_files.fetch_add(files, Ordering::Relaxed);
    }

    /// The spool's current size.
    pub fn set_spool_bytes(&self, bytes: u64) {
        self.spool_bytes.store(bytes, Ordering::Relaxed);
    }

    /// `(sent, failed, dropped)` so far.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }

    /// The spool's size as last reported.
    pub fn spool_bytes(&self) -> u64 {
        self.spool_bytes.load(Ordering::Relaxed)
    }

    /// The ordering time of the oldest spooled batch (0: empty).
    pub fn set_spool_oldest_ms(&self, tick_ms: i64) {
        self.spool_oldest_ms.store(tick_ms, Ordering::Relaxed);
    }

    /// The ordering time of the oldest spooled batch, ms (0: empty).
    pub fn spool_oldest_ms(&self) -> i64 {
        self.spool_oldest_ms.load(Ordering::Relaxed)
    }

    /// The endpoint's label.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The endpoint's message negotiation.
    pub fn negotiation(&self) -> &Negotiation {
        &self.negotiation
    }

    /// Bytes of acknowledged request bodies so far.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes.load(Ordering::Relaxed)
    }

    /// Spool files found corrupt so far.
    pub fn corrupt_file_count(&self) -> u64 {
        self.corrupt_files.load(Ordering::Relaxed)
    }

    /// When a write last succeeded, ms since the epoch (0: never).
    pub fn last_success_ms(&self) -> i64 {
        self.last_success_ms.load(Ordering::Relaxed)
    }
}
