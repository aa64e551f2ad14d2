//! The recent past of each series, kept decoded after compaction packed it
//! into chunks, so the newest steps of a dashboard read no chunk.
//!
//! A range query served partly from the answer cache evaluates only its
//! newest steps, whose windows reach a few minutes back. Those samples sit
//! in the series' newest chunk (up to six hours, about 720 samples), which
//! would be decoded whole for every series the query selects. A series'
//! tail here holds a copy of its chunk samples at or after `from`: a read
//! starting at or after `from` takes the tail with the head and skips the
//! chunks.
//!
//! A tail is only ever a copy, kept exact by the writer: compaction, which
//! rewrites a window's chunk from the whole merged window, replaces the
//! tail's part of that window with the new chunk's, in the same step as it
//! drains the head, under the head's write lock (so a reader holding the
//! head lock sees head and tails from one moment). Retention trims what it
//! deleted. A tail is started only where no newer chunk exists; dropping a
//! tail is always safe (reads fall back to the chunks), so tails emptied by
//! age are dropped rather than kept as claims about nothing.

use rustc_hash::FxHashMap;

use super::chunk::RawSample;
use super::index::SeriesId;
use super::search::partition_point_from_end;

/// One series' chunk samples at or after `from`, sorted.
#[derive(Debug)]
pub struct Tail {
    from: i64,
    samples: Vec<RawSample>,
}

impl Tail {
    /// The chunk samples in `[start, end]`, if the tail holds all of them
    /// (`None`: read the chunks).
    pub fn range(&self, start: i64, end: i64) -> Option<&[RawSample]> {
        if self.from > start {
            return None;
        }
        // A tail is read for the newest minutes of its hours.
        let from = partition_point_from_end(&self.samples, |s| s.0 < start);
        let to = partition_point_from_end(&self.samples, |s| s.0 <= end);
        Some(&self.samples[from..to.max(from)])
    }

    /// The newest sample's timestamp (0 when empty). Reading it brings
    /// the newest samples, which reads look at first, into the CPU's
    /// cache.
    pub fn newest_ms(&self) -> i64 {
        self.samples.last().map_or(0, |s| s.0)
    }
}

/// Decoded copies of the series' newest chunk samples.
#[derive(Debug, Default)]
pub struct Recent {
    tails: FxHashMap<SeriesId, Tail>,
    samples: usize,
}

impl Recent {
    /// Whether the series has a tail (compaction then keeps it exact
    /// without asking the database whether newer chunks exist).
    pub fn has(&self, id: SeriesId) -> bool {
        self.tails.contains_key(&id)
    }

    /// The series' tail, if it has one.
    pub fn tail(&self, id: SeriesId) -> Option<&Tail> {
        self.tails.get(&id)
    }

    /// The series' chunk samples in `[start, end]`, as [`Tail::range`].
    #[cfg(test)]
    pub fn range(&self, id: SeriesId, start: i64, end: i64) -> Option<&[RawSample]> {
        self.tail(id)?.range(start, end)
    }

    /// Samples held, for the receiver's own metrics.
    pub fn len(&self) -> usize {
        self.samples
    }

    /// After compaction wrote a window's whole content, `window` (samples
    /// in `[window_start, window_end)`), keeps the tail equal to the
    /// chunks. `start_from` is where a series without a tail starts one:
    /// the caller passes it only when no chunk of the series is newer than
    /// this window (`None`: leave a series without a tail as it is).
    pub fn replace_window(
        &mut self,
        id: SeriesId,
        (window_start, window_end): (i64, i64),
        window: &[RawSample],
        start_from: Option<i64>,
    ) {
        let tail = match (self.tails.get_mut(&id), start_from) {
            (Some(tail), _) => tail,
            (None, Some(from)) => self.tails.entry(id).or_insert(Tail {
                from: from.max(window_start),
                samples: Vec::new(),
            }),
            (None, None) => return,
        };
        let lo = window_start.max(tail.from);
        if window_end <= lo {
            return;
        }
        let before = tail.samples.len();
        let cut_from = tail.samples.partition_point(|s| s.0 < lo);
        let cut_to = tail.samples.partition_point(|s| s.0 < window_end);
        let first = window.partition_point(|s| s.0 < lo);
        let last = window.partition_point(|s| s.0 < window_end);
        tail.samples
            .splice(cut_from..cut_to, window[first..last].iter().copied());
        self.samples = self.samples + tail.samples.len() - before;
    }

    /// After compaction added `samples` to a window whose other samples are
    /// all older (an in-order append), adds those the series' tail covers.
    /// A series without a tail is left as it is.
    pub fn insert(&mut self, id: SeriesId, samples: &[RawSample]) {
        let Some(tail) = self.tails.get_mut(&id) else {
            return;
        };
        let samples = &samples[samples.partition_point(|s| s.0 < tail.from)..];
        let Some(first) = samples.first() else {
            return;
        };
        let at = tail.samples.partition_point(|s| s.0 < first.0);
        debug_assert!(
            tail.samples
                .get(at)
                .is_none_or(|s| s.0 > samples[samples.len() - 1].0)
        );
        tail.samples.splice(at..at, samples.iter().copied());
        self.samples += samples.len();
    }

    /// Forgets every sample older than `keep_from` (chunks still hold
    /// them); tails left empty are dropped.
    pub fn trim(&mut self, keep_from: i64) {
        let mut held = 0;
        self.tails.retain(|_, tail| {
            if tail.from < keep_from {
                let cut = tail.samples.partition_point(|s| s.0 < keep_from);
                tail.samples.drain(..cut);
                tail.from = keep_from;
            }
            held += tail.samples.len();
            !tail.samples.is_empty()
        });
        self.samples = held;
    }

    /// Forgets a series (its data is gone).
    pub fn remove(&mut self, id: SeriesId) {
        if let Some(tail) = self.tails.remove(&id) {
            self.samples -= tail.samples.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_starts_only_when_allowed_and_answers_only_from_its_start() {
        let mut recent = Recent::default();
        let window = [(100, 1), (200, 2), (300, 3)];
        recent.replace_window(1, (0, 1000), &window, None);
        assert!(!recent.has(1), "no tail without a start");
        recent.replace_window(1, (0, 1000), &window, Some(150));
        assert_eq!(recent.range(1, 150, 1000), Some(&[(200, 2), (300, 3)][..]));
        assert_eq!(recent.range(1, 149, 1000), None, "before the tail's start");
        assert_eq!(recent.len(), 2);
    }

    #[test]
    fn a_rewritten_window_replaces_only_its_own_part() {
        let mut recent = Recent::default();
        recent.replace_window(1, (0, 1000), &[(900, 9)], Some(500));
        recent.replace_window(1, (1000, 2000), &[(1000, 10), (1100, 11)], None);
        // A late sample rewrote the older window; the newer one stays.
        recent.replace_window(1, (0, 1000), &[(100, 1), (600, 6), (900, 90)], None);
        assert_eq!(
            recent.range(1, 500, 5000),
            Some(&[(600, 6), (900, 90), (1000, 10), (1100, 11)][..])
        );
        assert_eq!(recent.len(), 4);
    }

    #[test]
    fn trimming_moves_the_start_and_drops_empty_tails() {
        let mut recent = Recent::default();
        recent.replace_window(1, (0, 1000), &[(100, 1), (900, 9)], Some(0));
        recent.replace_window(2, (0, 1000), &[(100, 1)], Some(0));
        recent.trim(500);
        assert_eq!(recent.range(1, 499, 1000), None);
        assert_eq!(recent.range(1, 500, 1000), Some(&[(900, 9)][..]));
        assert!(!recent.has(2));
        assert_eq!(recent.len(), 1);
        recent.remove(1);
        assert_eq!(recent.len(), 0);
    }
}
