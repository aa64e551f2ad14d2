//! What changed in the stored samples, cheaply enough to record on every
//! write: a change epoch that every committed append advances, the
//! earliest sample timestamp each append touched, and the cutoff before
//! which retention has deleted samples.
//!
//! It exists for caches of query answers: an answer computed at epoch E
//! for time t stays right as long as no append since E touched a timestamp
//! its evaluation read, and retention deleted nothing it read. Late samples
//! of any age are accepted (an exporter flushing its spool after an
//! outage), so a cache cannot rely on "old data does not change"; it asks
//! here instead. This module knows nothing of queries.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Appends remembered one by one. Past this, the two oldest records are
/// merged into one (epoch of the newer, earliest timestamp of both): an
/// answer about an old epoch then errs towards "more changed", never
/// "less". At one append group every few milliseconds this still covers
/// many seconds of writes individually.
const CAPACITY: usize = 4096;

/// The change log; shared by the writer (which records) and readers.
#[derive(Debug)]
pub struct ChangeLog {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Advanced by one for every committed append.
    epoch: u64,
    /// `(epoch, earliest sample timestamp of that append)`, oldest first;
    /// the first record may stand for every append up to its epoch.
    writes: VecDeque<(u64, i64)>,
    /// Samples older than this (ms) may have been deleted by retention.
    deleted_before: i64,
}

/// The state of the samples as of one moment, for a cache to compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// The epoch now: pass it to a later [`ChangeLog::since`].
    pub epoch: u64,
    /// The earliest sample timestamp (ms) any append since the epoch asked
    /// about wrote; `None` when nothing was written since.
    pub earliest_written: Option<i64>,
    /// Samples older than this (ms) may be gone (`i64::MIN`: none deleted).
    pub deleted_before: i64,
}

impl Default for ChangeLog {
    fn default() -> Self {
        Self::new()
    }
}

impl ChangeLog {
    /// A log with nothing recorded (epoch 0, nothing deleted).
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                epoch: 0,
                writes: VecDeque::new(),
                deleted_before: i64::MIN,
            }),
        }
    }

    /// Records one committed append whose earliest sample is at
    /// `earliest_ms`. Call it after the samples are visible to readers:
    /// a reader that read the epoch before this call either saw the
    /// samples or will learn of them from [`ChangeLog::since`].
    pub fn record_write(&self, earliest_ms: i64) {
        let mut inner = self.lock();
        inner.epoch += 1;
        let epoch = inner.epoch;
        inner.writes.push_back((epoch, earliest_ms));
        if inner.writes.len() > CAPACITY
            && let Some((_, oldest)) = inner.writes.pop_front()
            && let Some(next) = inner.writes.front_mut()
        {
            next.1 = next.1.min(oldest);
        }
    }

    /// Records that retention deletes every sample older than `cutoff_ms`
    /// (before it starts deleting, so that no reader trusts data it may
    /// have read half-deleted).
    pub fn record_deletion(&self, cutoff_ms: i64) {
        let mut inner = self.lock();
        inner.deleted_before = inner.deleted_before.max(cutoff_ms);
    }

    /// What changed after `epoch` (an epoch an earlier call returned; 0
    /// for "since the start").
    pub fn since(&self, epoch: u64) -> Changes {
        let inner = self.lock();
        let earliest_written = inner
            .writes
            .iter()
            .rev()
            .take_while(|(e, _)| *e > epoch)
            .map(|(_, ts)| *ts)
            .min();
        Changes {
            epoch: inner.epoch,
            earliest_written,
            deleted_before: inner.deleted_before,
        }
    }

    /// The state now, without asking about any earlier epoch.
    pub fn now(&self) -> Changes {
        self.since(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_earliest_timestamp_written_since_an_epoch() {
        let log = ChangeLog::new();
        let start = log.now();
        assert_eq!(start.epoch, 0);
        assert_eq!(start.earliest_written, None);
        log.record_write(5_000);
        let mid = log.now();
        log.record_write(9_000);
        log.record_write(7_000);
        assert_eq!(log.since(start.epoch).earliest_written, Some(5_000));
        assert_eq!(log.since(mid.epoch).earliest_written, Some(7_000));
        let end = log.now();
        assert_eq!(end.epoch, 3);
        assert_eq!(log.since(end.epoch).earliest_written, None);
    }

    #[test]
    fn a_full_log_merges_old_records_and_errs_towards_changed() {
        let log = ChangeLog::new();
        log.record_write(1_000);
        let after_first = log.now().epoch;
        for i in 0..CAPACITY as i64 + 10 {
            log.record_write(1_000_000 + i);
        }
        // The old write at 1000 is merged into a later record, so asking
        // about an epoch after it may report it (conservative) ...
        let since_first = log.since(after_first).earliest_written.unwrap();
        assert!(since_first <= 1_000_000);
        // ... but never something later than what was really written.
        assert_eq!(log.since(0).earliest_written, Some(1_000));
        assert!(log.lock().writes.len() <= CAPACITY);
    }

    #[test]
    fn deletion_cutoff_only_moves_forward() {
        let log = ChangeLog::new();
        assert_eq!(log.now().deleted_before, i64::MIN);
        log.record_deletion(50);
        log.record_deletion(20);
        assert_eq!(log.now().deleted_before, 50);
    }
}
