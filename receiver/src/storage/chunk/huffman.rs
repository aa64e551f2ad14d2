//! The per-chunk canonical Huffman codes residuals are written with.
//!
//! A residual `u` (zigzagged when any is negative) is coded as a Huffman
//! symbol plus raw bits. Values below `2^d` are symbols of their own; larger
//! ones share one symbol per bit length `b` and add their `b - 1` bits below
//! the leading one. Each table picks its own `d` (1 to 5): small alphabets
//! such as scrape jitter want every value to be a symbol, wide residuals
//! want a short table.

use super::ChunkError;
use super::arith::{bit_len, gamma_bits, unzigzag};
use super::bits::{BitReader, BitWriter};
use super::seq::{LANES, lane_start};

/// Largest `d`: at most 32 values get symbols of their own.
const MAX_DIRECT_BITS: u32 = 5;

/// Symbols of the largest alphabet: 32 values, then bit lengths 6 to 64.
const SYMBOLS: usize = (1 << MAX_DIRECT_BITS) + 64 - MAX_DIRECT_BITS as usize;

/// Longest Huffman code; bounds the decoder's lookup table at 2^11 entries.
const MAX_CODE_LEN: u8 = 11;

/// The symbol of residual `u` in an alphabet with `2^d` direct values.
#[inline]
fn symbol(u: u64, d: u32) -> usize {
    if u < 1 << d {
        u as usize
    } else {
        (1 << d) + (bit_len(u) - d - 1) as usize
    }
}

/// Raw bits that follow symbol `s` in an alphabet with `2^d` direct values.
#[inline]
fn extra_bits(s: usize, d: u32) -> u32 {
    if s < 1 << d {
        0
    } else {
        (s - (1 << d)) as u32 + d
    }
}

/// Residual statistics a code is chosen from.
pub(super) struct Histogram {
    /// Occurrences of each value below 32.
    pub(super) small: [u32; 32],
    /// Occurrences of each bit length.
    pub(super) lengths: [u32; 65],
    pub(super) total: u32,
}

impl Histogram {
    pub(super) fn new() -> Self {
        Self {
            small: [0; 32],
            lengths: [0; 65],
            total: 0,
        }
    }

    #[inline]
    pub(super) fn add(&mut self, u: u64) {
        if u < 32 {
            self.small[u as usize] += 1;
        }
        self.lengths[bit_len(u) as usize] += 1;
        self.total += 1;
    }

    /// The `d` to code this with: start from bit-length classes and give
    /// values their own symbols while that pays, by an entropy estimate
    /// (and about 3 table bits per present symbol, 4 per absent one).
    fn direct_bits(&self) -> u32 {
        let total = f64::from(self.total);
        let cost = |c: u32| {
            let c = f64::from(c);
            c * (total / c).log2()
        };
        let (mut best, mut best_gain, mut gain) = (1, 0.0, 0.0);
        for d in 2..=MAX_DIRECT_BITS {
            let class = self.lengths[d as usize];
            if class > 0 {
                let values = &self.small[1 << (d - 1)..1 << d];
                let split: f64 = values
                    .iter()
                    .map(|&c| if c > 0 { cost(c) + 3.0 } else { 4.0 })
                    .sum();
                gain += cost(class) + f64::from(class * (d - 1)) + 3.0 - split;
                if gain > best_gain {
                    (best, best_gain) = (d, gain);
                }
            }
        }
        best
    }

    /// The cheapest code for these residuals, with its exact size.
    pub(super) fn plan(&self) -> Lens {
        let classes = self.plan_with(1);
        match self.direct_bits() {
            1 => classes,
            d => {
                let direct = self.plan_with(d);
                if direct.bits < classes.bits {
                    direct
                } else {
                    classes
                }
            }
        }
    }

    /// The code with `2^d` direct values, with its exact size.
    fn plan_with(&self, d: u32) -> Lens {
        let direct = 1 << d;
        let mut counts = [0u32; SYMBOLS];
        counts[..direct].copy_from_slice(&self.small[..direct]);
        for b in d + 1..=64 {
            counts[direct + (b - d - 1) as usize] = self.lengths[b as usize];
        }
        let mut lens = huffman_lengths(&counts);
        lens.direct = d;
        let payload: u64 = counts
            .iter()
            .zip(&lens.lens)
            .enumerate()
            .map(|(s, (&c, &l))| u64::from(c) * u64::from(u32::from(l) + extra_bits(s, d)))
            .sum();
        lens.bits = table_bits(&lens) + payload;
        lens
    }
}

/// A planned Huffman code: lengths for the symbols `lo..=hi` (absent ones
/// 0, and a lone symbol, `lo == hi`, 0 too: it costs no bits), its `d`, and
/// the table plus payload size in bits.
#[derive(Clone, Copy)]
pub(super) struct Lens {
    pub(super) lens: [u8; SYMBOLS],
    pub(super) lo: usize,
    pub(super) hi: usize,
    pub(super) direct: u32,
    pub(super) bits: u64,
}

impl Lens {
    /// Bits the codes of some residuals take (their counts by value below
    /// 32, `small`, and by bit length), without the table.
    pub(super) fn payload_bits(&self, small: &[u32; 32], lengths: &[u32; 65]) -> u64 {
        let d = self.direct;
        let direct = 1usize << d;
        let own: u64 = small[..direct]
            .iter()
            .zip(&self.lens[..direct])
            .map(|(&c, &l)| u64::from(c) * u64::from(l))
            .sum();
        let shared: u64 = (d + 1..=64)
            .map(|b| {
                let s = direct + (b - d - 1) as usize;
                u64::from(lengths[b as usize])
                    * u64::from(u32::from(self.lens[s]) + extra_bits(s, d))
            })
            .sum();
        own + shared
    }
}

/// Length-limited Huffman code lengths for symbol counts (at least one
/// nonzero); `direct` and `bits` are left for the caller.
fn huffman_lengths(counts: &[u32; SYMBOLS]) -> Lens {
    let mut lens = [0u8; SYMBOLS];
    let mut leaves = [(0u32, 0u8); SYMBOLS];
    let mut k = 0;
    for (s, &c) in counts.iter().enumerate() {
        if c > 0 {
            leaves[k] = (c, s as u8);
            k += 1;
        }
    }
    let mut out = Lens {
        lens,
        lo: usize::from(leaves[0].1),
        hi: usize::from(leaves[k.max(1) - 1].1),
        direct: 1,
        bits: 0,
    };
    if k < 2 {
        return out;
    }
    let leaves = &mut leaves[..k];
    loop {
        leaves.sort_unstable();
        // Two-queue construction: leaves in ascending weight, then internal
        // nodes, which are created in ascending weight too.
        let mut weight = [0u64; 2 * SYMBOLS];
        let mut parent = [0usize; 2 * SYMBOLS];
        for (i, &(c, _)) in leaves.iter().enumerate() {
            weight[i] = u64::from(c);
        }
        let (mut leaf, mut node) = (0, k);
        for next in k..2 * k - 1 {
            let mut pick = || {
                if leaf < k && (node >= next || weight[leaf] <= weight[node]) {
                    leaf += 1;
                    leaf - 1
                } else {
                    node += 1;
                    node - 1
                }
            };
            let (a, b) = (pick(), pick());
            weight[next] = weight[a] + weight[b];
            parent[a] = next;
            parent[b] = next;
        }
        let mut depth = [0u8; 2 * SYMBOLS];
        for i in (0..2 * k - 2).rev() {
            depth[i] = depth[parent[i]] + 1;
        }
        if depth[..k].iter().all(|&d| d <= MAX_CODE_LEN) {
            for (i, &(_, s)) in leaves.iter().enumerate() {
                lens[usize::from(s)] = depth[i];
            }
            out.lens = lens;
            return out;
        }
        // Too deep: flatten the distribution and try again.
        for leaf in leaves.iter_mut() {
            leaf.0 = leaf.0.div_ceil(2);
        }
    }
}

/// Canonical codes for code lengths (as in DEFLATE), in the order of
/// `lens`: of all the symbols, or of a run of them outside which every
/// length is 0 (absent symbols take no code), which costs less to walk.
fn canonical_codes(lens: &[u8]) -> [u16; SYMBOLS] {
    let mut per_len = [0u16; MAX_CODE_LEN as usize + 1];
    for &l in lens {
        per_len[usize::from(l)] += 1;
    }
    per_len[0] = 0;
    let mut next = [0u16; MAX_CODE_LEN as usize + 1];
    let mut code = 0u16;
    for l in 1..=usize::from(MAX_CODE_LEN) {
        code = (code + per_len[l - 1]) << 1;
        next[l] = code;
    }
    let mut codes = [0u16; SYMBOLS];
    for (s, &l) in lens.iter().enumerate() {
        if l > 0 {
            codes[s] = next[usize::from(l)];
            next[usize::from(l)] += 1;
        }
    }
    codes
}

/// First length the table's relative length coding starts from.
const LEN_START: u8 = 4;

/// Bits for one code length in the table header: same as the previous
/// present symbol's, one more, one less, absent, or a 4-bit literal.
#[inline]
fn len_code(len: u8, prev: u8) -> (u64, u32) {
    if len == prev {
        (0b0, 1)
    } else if len == prev + 1 {
        (0b10, 2)
    } else if prev >= 1 && len == prev - 1 {
        (0b110, 3)
    } else if len == 0 {
        (0b1110, 4)
    } else {
        (0b1111_0000 | u64::from(len), 8)
    }
}

fn table_bits(t: &Lens) -> u64 {
    let (lo, hi) = (t.lo, t.hi);
    let mut bits = gamma_bits(u64::from(t.direct))
        + gamma_bits(lo as u64 + 1)
        + gamma_bits((hi - lo) as u64 + 1);
    if hi > lo {
        let mut prev = LEN_START;
        for &l in &t.lens[lo..=hi] {
            bits += len_code(l, prev).1;
            if l > 0 {
                prev = l;
            }
        }
    }
    u64::from(bits)
}

/// The encoder's side of a Huffman table.
pub(super) struct Code {
    lens: Lens,
    codes: [u16; SYMBOLS],
}

impl Code {
    pub(super) fn new(lens: &Lens) -> Self {
        Self {
            lens: *lens,
            codes: canonical_codes(&lens.lens),
        }
    }

    pub(super) fn write_table(&self, w: &mut BitWriter) {
        let (lo, hi) = (self.lens.lo, self.lens.hi);
        w.put_gamma(u64::from(self.lens.direct));
        w.put_gamma(lo as u64 + 1);
        w.put_gamma((hi - lo) as u64 + 1);
        if hi > lo {
            let mut prev = LEN_START;
            for &l in &self.lens.lens[lo..=hi] {
                let (code, n) = len_code(l, prev);
                w.put(code, n);
                if l > 0 {
                    prev = l;
                }
            }
        }
    }

    #[inline]
    pub(super) fn put(&self, w: &mut BitWriter, u: u64) {
        let s = symbol(u, self.lens.direct);
        let len = u32::from(self.lens.lens[s]);
        let code = u64::from(self.codes[s]);
        let extra = extra_bits(s, self.lens.direct);
        if extra == 0 {
            w.put(code, len);
        } else if len + extra <= 64 {
            w.put(
                code << extra | (u & (u64::MAX >> (64 - extra))),
                len + extra,
            );
        } else {
            w.put(code, len);
            w.put(u & (u64::MAX >> (64 - extra)), extra);
        }
    }
}

/// The residual whose code starts `word`, and the bits it takes (code and
/// raw bits, at most 28 for tables read several residuals a look: the
/// caller's shift stays within the word). `narrow` is `MAX_CODE_LEN -
/// maxlen`.
#[inline(always)]
fn short_residual(entries: &[u16; TABLE_SIZE], narrow: u32, word: u64) -> (u64, u32) {
    // The top MAX_CODE_LEN bits, narrowed to maxlen: in bounds for the
    // array whatever the word holds.
    let index = (word >> (64 - u32::from(MAX_CODE_LEN))) >> narrow;
    let e = entries[index as usize];
    let len = u32::from(e & 15);
    let extra = u32::from((e >> 4) & 63);
    // Without a branch: which symbols have raw bits follows the data, so
    // a branch would be guessed wrong often.
    let raw = (1u64 << extra) | (((word << len) >> 1) >> (63 - extra));
    let has_raw = u64::from(extra != 0).wrapping_neg();
    (u64::from(e >> 10) | (raw & has_raw), len + extra)
}

/// Entries a decoding table has room for: one per code of the longest length.
const TABLE_SIZE: usize = 1 << MAX_CODE_LEN;

/// The decoder's side of a Huffman table: entries indexed by the next
/// `maxlen` bits, each `length | extra bits << 4 | direct value << 10`.
/// Only the first `1 << maxlen` are filled; the array is the longest
/// table's size so that an index taken from a word's top bits is in
/// bounds without a check in the decoding loop.
pub(super) struct Table {
    pub(super) entries: Box<[u16; TABLE_SIZE]>,
    pub(super) maxlen: u32,
    /// Most bits one residual takes (code and extra bits).
    pub(super) max_bits: u32,
}

impl Table {
    pub(super) fn read(r: &mut BitReader<'_>) -> Result<Self, ChunkError> {
        let d = r.get_gamma()?;
        let lo = r.get_gamma()? - 1;
        let hi = lo + r.get_gamma()? - 1;
        if !(1..=u64::from(MAX_DIRECT_BITS)).contains(&d) {
            return Err(r.corrupt("Huffman table with a bad direct-value range"));
        }
        let d = d as u32;
        let symbols = (1 << d) + 64 - d as usize;
        if hi >= symbols as u64 {
            return Err(r.corrupt("Huffman symbol out of range"));
        }
        let (lo, hi) = (lo as usize, hi as usize);
        let entry = |s: usize, len: u8| {
            let extra = extra_bits(s, d);
            let value = if extra == 0 { s as u16 } else { 0 };
            u16::from(len) | (extra as u16) << 4 | value << 10
        };
        let mut entries = Box::new([0u16; TABLE_SIZE]);
        if lo == hi {
            entries[0] = entry(lo, 0);
            return Ok(Self {
                entries,
                maxlen: 0,
                max_bits: extra_bits(lo, d),
            });
        }
        let mut lens = [0u8; SYMBOLS];
        let mut prev = LEN_START;
        for len in &mut lens[lo..=hi] {
            let l = if r.get(1) == 0 {
                prev
            } else if r.get(1) == 0 {
                prev + 1
            } else if r.get(1) == 0 {
                prev.saturating_sub(1)
            } else if r.get(1) == 0 {
                0
            } else {
                r.get(4) as u8
            };
            if l > MAX_CODE_LEN {
                return Err(r.corrupt("Huffman code length too long"));
            }
            *len = l;
            if l > 0 {
                prev = l;
            }
        }
        // Only `lo..=hi` can have codes: the rest of the work looks there.
        let present = &lens[lo..=hi];
        let kraft: u32 = present
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u32 << (MAX_CODE_LEN - l))
            .sum();
        if kraft != 1 << MAX_CODE_LEN {
            return Err(r.corrupt("Huffman code lengths do not form a complete code"));
        }
        let maxlen = u32::from(present.iter().copied().max().unwrap_or(0));
        let codes = canonical_codes(present);
        for (s, (&l, &c)) in (lo..).zip(present.iter().zip(&codes)) {
            if l > 0 {
                let shift = maxlen - u32::from(l);
                let start = usize::from(c) << shift;
                entries[start..start + (1 << shift)].fill(entry(s, l));
            }
        }
        let max_bits = (lo..=hi)
            .filter(|&s| lens[s] > 0)
            .map(|s| u32::from(lens[s]) + extra_bits(s, d))
            .max()
            .unwrap_or(0);
        Ok(Self {
            entries,
            maxlen,
            max_bits,
        })
    }

    /// Fills `out` with residuals, each zigzag-decoded when `signed` and
    /// multiplied by `scale`: several from each 64-bit look at the stream
    /// when they are short enough, else one by one
    /// ([`Table::read_value`]); the same values and the same position
    /// either way.
    pub(super) fn read_values(
        &self,
        r: &mut BitReader<'_>,
        out: &mut [i64],
        signed: bool,
        scale: i64,
    ) {
        // One stream is one lane, which always ends where it ends.
        let start = [r.pos];
        if signed {
            self.read_lanes_as::<true, 1>(r, &start, out, scale);
        } else {
            self.read_lanes_as::<false, 1>(r, &start, out, scale);
        }
    }

    /// Fills `out` from the lanes of a dense sequence starting at bit
    /// positions `starts` ([`super::seq`]), as [`Table::read_values`]
    /// does one stream: the lanes are followed in step, a residual of each
    /// in turn, so their lookups overlap. Leaves `r` after the last lane;
    /// `false` when a lane does not end where the next one starts.
    pub(super) fn read_lanes(
        &self,
        r: &mut BitReader<'_>,
        starts: &[usize; LANES],
        out: &mut [i64],
        signed: bool,
        scale: i64,
    ) -> bool {
        // One loop per signedness, so the loop body has no branch on it.
        if signed {
            self.read_lanes_as::<true, LANES>(r, starts, out, scale)
        } else {
            self.read_lanes_as::<false, LANES>(r, starts, out, scale)
        }
    }

    #[inline(always)]
    fn read_lanes_as<const SIGNED: bool, const N: usize>(
        &self,
        r: &mut BitReader<'_>,
        starts: &[usize; N],
        out: &mut [i64],
        scale: i64,
    ) -> bool {
        let finish = |u: u64| {
            let x = if SIGNED { unzigzag(u) } else { u as i64 };
            x.wrapping_mul(scale)
        };
        let count = out.len();
        let common = count / N;
        let mut pos = *starts;
        let mut done = 0;
        // A look yields at least 57 meaningful bits.
        let per_look = (57 / self.max_bits.max(1)).min(8) as usize;
        if per_look >= 2 {
            let entries: &[u16; TABLE_SIZE] = &self.entries;
            let narrow = u32::from(MAX_CODE_LEN) - self.maxlen;
            let first: [usize; N] = std::array::from_fn(|k| lane_start(count, N, k));
            while done + per_look <= common {
                let mut words: [u64; N] = std::array::from_fn(|k| r.peek_at(pos[k]));
                let mut used = [0u32; N];
                for j in done..done + per_look {
                    for k in 0..N {
                        let (value, bits) = short_residual(entries, narrow, words[k]);
                        out[first[k] + j] = finish(value);
                        words[k] <<= bits;
                        used[k] += bits;
                    }
                }
                for (at, used) in pos.iter_mut().zip(used) {
                    *at += used as usize;
                }
                done += per_look;
            }
        }
        // What is left of each lane, a residual at a time.
        for (k, at) in pos.iter_mut().enumerate() {
            let (from, to) = (lane_start(count, N, k), lane_start(count, N, k + 1));
            let mut lane = r.at(*at);
            for slot in &mut out[from + done..to] {
                *slot = finish(self.read_value(&mut lane));
            }
            *at = lane.pos;
        }
        r.pos = pos[N - 1];
        pos[..N - 1] == starts[1..]
    }

    /// Reads one residual: its code, then any bits below its leading one.
    #[inline]
    pub(super) fn read_value(&self, r: &mut BitReader<'_>) -> u64 {
        let word = r.peek();
        let narrow = u32::from(MAX_CODE_LEN) - self.maxlen;
        let e = self.entries[((word >> (64 - u32::from(MAX_CODE_LEN))) >> narrow) as usize];
        let len = u32::from(e & 15);
        let extra = u32::from((e >> 4) & 63);
        if extra == 0 {
            r.pos += len as usize;
            return u64::from(e >> 10);
        }
        let top = 1u64 << extra;
        if len + extra <= 57 {
            r.pos += (len + extra) as usize;
            top | (((word << len) >> 1) >> (63 - extra))
        } else {
            r.pos += len as usize;
            top | r.get_wide(extra)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huffman_lengths_are_limited_and_complete() {
        // Fibonacci counts force a maximally deep tree.
        let mut counts = [0u32; SYMBOLS];
        let (mut a, mut b) = (1u32, 1u32);
        for c in counts.iter_mut().take(40) {
            *c = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let lens = huffman_lengths(&counts);
        assert!(lens.lens.iter().all(|&l| l <= MAX_CODE_LEN));
        let kraft: u32 = lens.lens[..40]
            .iter()
            .map(|&l| 1 << (MAX_CODE_LEN - l))
            .sum();
        assert_eq!(kraft, 1 << MAX_CODE_LEN);
        let all = huffman_lengths(&[1; SYMBOLS]);
        assert!(all.lens.iter().all(|&l| l == 6 || l == 7));
    }
}
