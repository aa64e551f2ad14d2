//! Gathers accepted writes into larger requests, as Prometheus's remote
//! write does (`max_samples_per_send`, `batch_send_deadline`): a fleet's
//! many small writes would otherwise cost one upstream round trip each,
//! and one worker per upstream sends one request at a time.
//!
//! A batch goes out once it holds `max_samples` samples or its first write
//! has waited `deadline`; it is encoded once per protobuf message some
//! upstream takes now and handed to each upstream's worker, or written to
//! that upstream's queue when the worker is busy (retrying, or slow).

use std::collections::BTreeMap;
use std::time::Duration;

use dcmon_protocol::remote_write::{self, FamilyMetadata, SeriesSamples};
use dcmon_ship::batch::Batch;
use dcmon_ship::lane::{self, Outlet};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One accepted write.
#[derive(Debug)]
pub struct Accepted {
    /// Its series (host labels already enforced) and metadata.
    pub batch: remote_write::WriteRequest,
    /// When it was accepted, ms since the epoch.
    pub received_ms: i64,
}

/// When a gathered batch goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Samples that make a batch full.
    pub max_samples: usize,
    /// Longest the first write of a batch waits.
    pub deadline: Duration,
}

/// Writes gathered so far.
#[derive(Debug, Default)]
struct Pending {
    series: Vec<SeriesSamples>,
    /// By family, so metadata repeated by many writes goes out once.
    metadata: BTreeMap<String, FamilyMetadata>,
    samples: usize,
    /// The first write's acceptance time and when it must go out.
    first: Option<(i64, Instant)>,
}

impl Pending {
    fn add(&mut self, accepted: Accepted, deadline: Duration) {
        self.first
            .get_or_insert((accepted.received_ms, Instant::now() + deadline));
        self.samples += accepted.batch.sample_count();
        self.series.extend(accepted.batch.series);
        for meta in accepted.batch.metadata {
            self.metadata.insert(meta.family.clone(), meta);
        }
    }
}

/// Runs until `accepted` closes, then flushes what it holds.
pub async fn run(
    mut accepted: mpsc::Receiver<Accepted>,
    outlets: Vec<Outlet>,
    limits: BatchLimits,
) {
    let mut pending = Pending::default();
    loop {
        let due = pending.first.map(|(_, at)| at);
        tokio::select! {
            received = accepted.recv() => match received {
                Some(write) => {
                    pending.add(write, limits.deadline);
                    if pending.samples >= limits.max_samples {
                        flush(&mut pending, &outlets).await;
                    }
                }
                None => break,
            },
            _ = sleep_until(due), if due.is_some() => flush(&mut pending, &outlets).await,
        }
    }
    flush(&mut pending, &outlets).await;
}

async fn flush(pending: &mut Pending, outlets: &[Outlet]) {
    let Some((received_ms, _)) = pending.first else {
        return;
    };
    let taken = std::mem::take(pending);
    let metadata: Vec<FamilyMetadata> = taken.metadata.into_values().collect();
    lane::hand_to_all(outlets, |version| {
        Batch::encode(&taken.series, &metadata, received_ms, version)
    })
    .await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
