//! Timestamps already decoded, for chunks that repeat them.
//!
//! Every series of one scrape carries the scrape's timestamp, so in a
//! window the chunks of one target's series begin with the same bits: the
//! version, the first block's count and first timestamp, and its times.
//! Decoding those times is most of the work of decoding a chunk (jittered
//! scrapes leave a residual per sample, Huffman coded like the values). A
//! reader decoding many chunks keeps the first blocks' times of the last
//! few it decoded, with the bits they came from; a chunk that begins with
//! the same bits takes the times from here. The same bits decode to the
//! same times: the decoder reads nothing else for them, and checks they
//! passed for one chunk hold for every chunk with those bits and at least
//! as many bytes.

/// Entries kept: the target groups one reader meets at once in a window
/// (a reader task reads a few series of neighbouring ids, which are a few
/// targets at most).
const ENTRIES: usize = 4;

/// The first blocks' times of the chunks a reader decoded last.
#[derive(Debug, Default)]
pub struct TimesMemo {
    entries: Vec<Entry>,
    /// The entry the next [`TimesMemo::keep`] overwrites, once all exist.
    next: usize,
    hits: usize,
}

#[derive(Debug)]
struct Entry {
    /// The chunk's bytes up to the end of its first block's times: the
    /// last byte's low bits may be the values'.
    prefix: Vec<u8>,
    /// How many of the prefix's bits are the version, count and times.
    bits: usize,
    times: Vec<i64>,
}

impl TimesMemo {
    /// An empty memo.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many chunks took their times from the memo.
    #[must_use]
    pub fn hits(&self) -> usize {
        self.hits
    }

    /// The times of an entry whose bits `chunk` begins with, and how many
    /// bits of `chunk` they span.
    pub(super) fn find(&mut self, chunk: &[u8]) -> Option<(&[i64], usize)> {
        let found = self.entries.iter().find(|e| e.begins(chunk))?;
        self.hits += 1;
        Some((&found.times, found.bits))
    }

    /// Remembers that the first `bits` bits of `chunk` are its version,
    /// count and first block's `times`.
    pub(super) fn keep(&mut self, chunk: &[u8], bits: usize, times: impl Iterator<Item = i64>) {
        let Some(prefix) = chunk.get(..bits.div_ceil(8)) else {
            return;
        };
        let entry = if self.entries.len() < ENTRIES {
            self.entries.push(Entry {
                prefix: Vec::new(),
                bits: 0,
                times: Vec::new(),
            });
            self.entries.last_mut()
        } else {
            let at = self.next;
            self.next = (at + 1) % ENTRIES;
            self.entries.get_mut(at)
        };
        let Some(entry) = entry else { return };
        // Buffers are reused: a reader keeps one entry per chunk it misses.
        entry.prefix.clear();
        entry.prefix.extend_from_slice(prefix);
        entry.bits = bits;
        entry.times.clear();
        entry.times.extend(times);
    }
}

impl Entry {
    /// Whether `chunk`'s first `self.bits` bits are this entry's.
    fn begins(&self, chunk: &[u8]) -> bool {
        let whole = self.bits / 8;
        let Some(head) = chunk.get(..self.prefix.len()) else {
            return false;
        };
        if head[..whole] != self.prefix[..whole] {
            return false;
        }
        match self.bits % 8 {
            0 => true,
            // MSB-first: the entry's bits are the high ones of the last byte.
            used => (head[whole] ^ self.prefix[whole]) >> (8 - used) == 0,
        }
    }
}
