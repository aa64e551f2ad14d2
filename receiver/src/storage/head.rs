//! The head: acknowledged samples not yet packed into chunks. They live in
//! memory (per series, in arrival order) for reads and compaction, and in
//! the `head_log` table for durability; on start the log is replayed.

use super::chunk::{RawSample, unzigzag, zigzag};
use super::id_map::IdMap;
use super::index::SeriesId;
use super::packed::{Packed, put_varint};

/// In-memory head samples.
#[derive(Debug, Default)]
pub struct Head {
    /// By id: appends find their series by indexing (see [`IdMap`]);
    /// packed, so a head of a given memory holds more samples and
    /// compaction meets more samples per series and pass.
    series: IdMap<Packed>,
    total: usize,
}

impl Head {
    /// Appends samples of one series in arrival order.
    pub fn append(&mut self, id: SeriesId, samples: impl IntoIterator<Item = RawSample>) {
        let list = self.series.get_or_insert_with(id, Packed::default);
        let before = list.len();
        for sample in samples {
            list.push(sample);
        }
        self.total += list.len() - before;
    }

    /// Appends log entries, one map lookup per run of the same series.
    pub fn append_entries(&mut self, entries: &[LogEntry]) {
        for run in entries.chunk_by(|a, b| a.0 == b.0) {
            self.append(run[0].0, run.iter().map(|(_, ts, bits)| (*ts, *bits)));
        }
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the head is empty.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// `(series, number of samples)` for every series with head samples:
    /// the cut a compaction pass works through.
    pub fn cut(&self) -> Vec<(SeriesId, usize)> {
        let mut cut: Vec<_> = self.series.iter().map(|(id, s)| (id, s.len())).collect();
        cut.sort_unstable();
        cut
    }

    /// The first `count` samples of a series, in arrival order.
    pub fn prefix(&self, id: SeriesId, count: usize) -> Vec<RawSample> {
        self.series
            .get(id)
            .map(|s| s.iter().take(count).collect())
            .unwrap_or_default()
    }

    /// Forgets the first `count` samples of a series (now in chunks).
    pub fn drain_prefix(&mut self, id: SeriesId, count: usize) {
        if let Some(list) = self.series.get_mut(id) {
            let count = count.min(list.len());
            list.drain_prefix(count);
            self.total -= count;
            if list.is_empty() {
                self.series.remove(id);
            }
        }
    }

    /// A series' head samples, if it has any (read with [`sorted_range`]).
    pub(super) fn series(&self, id: SeriesId) -> Option<&Packed> {
        self.series.get(id)
    }

    /// A series' head samples in `[start, end]`, as [`sorted_range`].
    #[cfg(test)]
    pub fn range(&self, id: SeriesId, start: i64, end: i64) -> Vec<RawSample> {
        self.series(id)
            .map(|list| sorted_range(list, start, end))
            .unwrap_or_default()
    }

    /// Whether a series has a head sample in `[start, end]`.
    pub fn has_samples_in(&self, id: SeriesId, start: i64, end: i64) -> bool {
        self.series
            .get(id)
            .is_some_and(|s| s.iter().any(|(t, _)| t >= start && t <= end))
    }

    /// Whether a series has a head sample at or after `since`.
    pub fn has_samples_since(&self, id: SeriesId, since: i64) -> bool {
        self.series
            .get(id)
            .is_some_and(|s| s.iter().any(|(t, _)| t >= since))
    }

    /// Forgets samples older than `cutoff` (retention).
    pub fn drop_before(&mut self, cutoff: i64) {
        let mut dropped = 0;
        self.series.retain(|_, list| {
            let before = list.len();
            list.retain(|(t, _)| *t >= cutoff);
            dropped += before - list.len();
            !list.is_empty()
        });
        self.total -= dropped;
    }

    /// Oldest and newest head timestamps.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        self.series
            .values()
            .flat_map(Packed::iter)
            .fold(None, |acc, (t, _)| match acc {
                None => Some((t, t)),
                Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
            })
    }
}

/// A series' head samples in `[start, end]`, sorted, later writes winning
/// over earlier ones at the same timestamp.
pub(super) fn sorted_range(list: &Packed, start: i64, end: i64) -> Vec<RawSample> {
    let in_range = list.iter().filter(|(t, _)| *t >= start && *t <= end);
    merge(Vec::new(), in_range)
}

/// Merges `newer` samples (any order; later entries win among themselves)
/// into `older`, which is sorted with unique timestamps. The result is
/// sorted with unique timestamps, `newer` winning ties: a resent sample
/// replaces the stored one.
pub fn merge(older: Vec<RawSample>, newer: impl IntoIterator<Item = RawSample>) -> Vec<RawSample> {
    let mut newer: Vec<(usize, RawSample)> = newer.into_iter().enumerate().collect();
    if newer.is_empty() {
        return older;
    }
    // Sort by time, then arrival, and keep the last arrival per timestamp.
    newer.sort_by_key(|(seq, (t, _))| (*t, *seq));
    newer.dedup_by(|later, earlier| {
        if later.1.0 == earlier.1.0 {
            *earlier = *later;
            true
        } else {
            false
        }
    });
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let mut old = older.into_iter().peekable();
    for (_, sample) in newer {
        while let Some(o) = old.next_if(|o| o.0 < sample.0) {
            out.push(o);
        }
        old.next_if(|o| o.0 == sample.0);
        out.push(sample);
    }
    out.extend(old);
    out
}

/// One head-log entry: a sample of a series.
pub type LogEntry = (SeriesId, i64, u64);

/// Encodes log entries: varint count, then per entry varint series id,
/// zigzag varint timestamp delta, 8-byte value bits; snappy-compressed.
pub fn encode_log(entries: &[LogEntry]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(entries.len() * 14 + 5);
    put_varint(&mut raw, entries.len() as u64);
    let mut last_ts = 0i64;
    for (id, ts, bits) in entries {
        put_varint(&mut raw, *id);
        let delta = ts.wrapping_sub(last_ts);
        put_varint(&mut raw, zigzag(delta));
        raw.extend_from_slice(&bits.to_le_bytes());
        last_ts = *ts;
    }
    dcmon_protocol::remote_write::compress(&raw)
}

/// Decodes a log blob written by [`encode_log`].
pub fn decode_log(blob: &[u8]) -> Result<Vec<LogEntry>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(blob)
        .map_err(|e| format!("head log blob: {e}"))?;
    let mut pos = 0;
    let count = get_varint(&raw, &mut pos)? as usize;
    let mut entries = Vec::with_capacity(count.min(raw.len() / 10 + 1));
    let mut last_ts = 0i64;
    for _ in 0..count {
        let id = get_varint(&raw, &mut pos)?;
        let zig = get_varint(&raw, &mut pos)?;
        let delta = unzigzag(zig);
        let ts = last_ts.wrapping_add(delta);
        let bytes = raw
            .get(pos..pos + 8)
            .ok_or("head log blob: truncated value")?;
        pos += 8;
        entries.push((
            id,
            ts,
            u64::from_le_bytes(bytes.try_into().expect("8 bytes")),
        ));
        last_ts = ts;
    }
    if pos != raw.len() {
        return Err("head log blob: trailing bytes".into());
    }
    Ok(entries)
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("head log blob: truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("head log blob: varint too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_the_last_write_per_timestamp() {
        let older = vec![(10, 1), (20, 2), (30, 3)];
        let merged = merge(older, [(20, 22), (5, 5), (40, 4), (20, 222), (30, 33)]);
        assert_eq!(merged, vec![(5, 5), (10, 1), (20, 222), (30, 33), (40, 4)]);
        assert_eq!(merge(vec![(1, 1)], []), vec![(1, 1)]);
    }

    #[test]
    fn log_round_trips_and_rejects_garbage() {
        let entries = vec![
            (1, 1_700_000_000_000, f64::NAN.to_bits()),
            (7, 1_699_000_000_000, 0x7ff0_0000_0000_0002),
            (1, -5, 0),
        ];
        assert_eq!(decode_log(&encode_log(&entries)).unwrap(), entries);
        assert!(decode_log(b"garbage").is_err());
        let mut blob = encode_log(&entries);
        blob.truncate(blob.len() - 3);
        assert!(decode_log(&blob).is_err());
    }

    #[test]
    fn head_prefix_and_drain() {
        let mut head = Head::default();
        head.append(1, [(10, 1), (20, 2)]);
        head.append(2, [(10, 9)]);
        assert_eq!(head.cut(), vec![(1, 2), (2, 1)]);
        head.append(1, [(30, 3)]);
        assert_eq!(head.prefix(1, 2), vec![(10, 1), (20, 2)]);
        head.drain_prefix(1, 2);
        head.drain_prefix(2, 1);
        assert_eq!(head.len(), 1);
        assert_eq!(head.range(1, 0, 100), vec![(30, 3)]);
        assert_eq!(head.cut(), vec![(1, 1)], "series 2 left the head");
    }
}
