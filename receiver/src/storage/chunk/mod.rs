//! The sample chunk codec: how one series' samples for one time window
//! become the BLOB that storage keeps in SQLite, and back.
//!
//! This module owns the byte format and nothing else: no I/O, no knowledge
//! of series or windows. [`encode`] packs strictly increasing samples;
//! [`decode`] restores them bit-exactly (values travel as `f64::to_bits`, so
//! NaN payloads such as the Prometheus stale marker, -0.0 and subnormals
//! survive). `decode` treats its input as untrusted: any byte string gives
//! the samples or a [`ChunkError`], never a panic. Successfully decoded
//! timestamps are always strictly increasing.
//!
//! Regular timestamps and a constant value cost no bits per sample, so a
//! chunk's length cannot bound its sample count by itself. Chunks are
//! therefore made of blocks of at most 4096 samples, each with its own
//! header (at least 36 bits); a chunk of `L` bytes decodes to at most about
//! `910 * L` samples, whatever its count fields say, and codings that do
//! spend bits on every sample are checked against the bits left before
//! anything is allocated.
//!
//! # Why this shape
//!
//! Monitoring data is predictable: timestamps sit on a scrape grid, counters
//! grow at a roughly steady rate, gauges wander, many series never change,
//! and nearly every value was printed in decimal by an exporter (`10870.69`,
//! `54.5`, `8201035776`). Gorilla's XOR of raw float bits ignores that last
//! fact, and it is what costs the most. So values are first read as decimal
//! integers `m / 10^k`, accepted only where that one division reproduces the
//! exact bits (anything else, stale markers included, is kept aside as an
//! exception, or the chunk falls back to XOR). The integers, and the
//! timestamps, are then predicted (level, delta or delta-of-delta around a
//! per-chunk base; timestamps also against their scrape grid), divided by
//! the residuals' common divisor (memory in kB, disk in 4 KiB pages, half
//! degrees), and entropy coded with a per-chunk canonical Huffman code, with
//! a sparse form for residuals that are mostly zero. Each chunk keeps the
//! prediction that comes out smallest. On the test workload (node-exporter
//! like: 30% constant, 30% decimal counters, 20% byte counters, 20% gauges,
//! 240 samples a chunk) that is about 0.9 bytes a sample, against 2.7 for
//! Gorilla.
//!
//! # Layout (versions 3 and 1)
//!
//! Byte 0 is the format version: 3, which this build writes, or 1, the
//! same without lanes, which it still reads. The rest is one MSB-first bit stream,
//! zero-padded to a whole byte; trailing bytes and nonzero padding are
//! errors. `u(k)` is a k-bit field, `gamma` an Elias gamma code, `uvar` an
//! unsigned integer as `(b + 1):gamma` for its bit length `b` and then the
//! `b - 1` bits below its leading one, `svar` a zigzagged `uvar`. Integer
//! arithmetic wraps, so every `i64` timestamp and mantissa round-trips.
//!
//! ```text
//! chunk     := version:u8  (0:uvar | block)  pad
//! block     := n:uvar  t0:svar  [n > 1: times]  values  more:u(1)  [more = 1: block]
//!              (1 <= n <= 4096, and each block starts after the last)
//! times     := tmode:u(2)  base:round  [tmode 3: phase:svar]  [tmode > 0: seq(n - 1)]
//!   tmode 0 regular  t[i] = t[i-1] + base
//!   tmode 1 delta    t[i] = t[i-1] + base + r[i]
//!   tmode 2 dod      t[i] = t[i-1] + d[i],  d[i] = d[i-1] + r[i],  d[0] = base
//!   tmode 3 grid     t[i] = g[i-1] + base + r[i],  g[0] = t0 + phase,
//!                    g[i] = g[i-1] + base, or after missed samples
//!                    (|r[i]| > base / 2) the grid point nearest t[i]
//! values    := vmode:u(2) ...
//!   vmode 0 constant scalar
//!   vmode 1 decimal  k:u(5)  e:uvar  e * exception  pred:u(2)
//!                    [pred > 0: m0:svar]  base:svar  seq(n - e, or n - e - 1)
//!     pred 0 level   m[i] = base + r[i]
//!     pred 1 delta   m[i] = m[i-1] + base + r[i]
//!     pred 2 dod     m[i] = m[i-1] + d[i],  d[i] = d[i-1] + r[i],  d[0] = base
//!                    value = (m as f64) / 10^k, exceptions at their indices
//!   vmode 2 xor      first:u(64), then per value (x = bits ^ previous bits):
//!                    0 (x = 0) | 10 x in the last window
//!                    | 11 lead:u(6) (len - 1):u(6) x's significant bits
//! scalar    := 1 k:u(5) m:svar | 0 bits:u(64)
//! exception := index gap:uvar  (1 [the stale marker] | 0 bits:u(64))
//! round     := (e + 1):gamma  m:uvar                      (m * 10^e)
//! seq(c)    := signed:u(1)  (gcd - 1):uvar  sparse:u(1) ...
//!   dense    code  [version 3, c >= 128: lanes]  c * symbol
//!   lanes    len0:uvar  (len1 - len0):svar  (len2 - len0):svar
//!            (the symbols are in four lanes, consecutive parts of the
//!            sequence, the first c % 4 one symbol longer; len is a lane's
//!            bits; the decoder reads the four at once)
//!   sparse   nz:uvar  [nz > 0: code(gaps) code(values)  nz * (gap value)]
//!            (the residuals between are zero)
//! code      := d:gamma  (lo + 1):gamma  (hi - lo + 1):gamma  [lo < hi: length
//!              of each symbol lo..=hi: 0 same | 10 +1 | 110 -1 | 1110 none
//!              | 1111 l:u(4)]                    (canonical Huffman, <= 11 bits)
//! symbol    := Huffman code of s, then for s >= 2^d the b - 1 low bits of a
//!              value of bit length b = s - 2^d + d + 1 (s < 2^d is the value)
//! ```
//!
//! A residual `r` is coded as `zigzag(r / gcd)` when any is negative, else
//! as `r / gcd`.
//!
//! # Segments (version 2)
//!
//! ```text
//! chunk     := 2:u8  (len:leb128  segment)+
//! segment   := a whole chunk (version 3 or 1) of `len` bytes, not empty; each
//!              segment's samples start after the previous one's end
//! ```
//!
//! A window still being written gets each compaction's new samples as one
//! more segment ([`append`]): only those are encoded, not the whole window
//! again. Storage re-encodes a window into one unsegmented chunk once it is
//! closed, or once it has [`MAX_SEGMENTS`] segments, so segments cost
//! space only in the newest windows.
//!
//! # Where each part lives
//!
//! `bits` is the bit stream and its field codes, `arith` the integer
//! helpers. A block is its timestamps (`timestamps`) and its values
//! (`values`, with `xor` as the fallback); both predict and hand the
//! residuals to `seq`, which writes them with the codes of `huffman`.
//! `memo` keeps a reader's decoded times for the next chunk with the same. The
//! test-only `testkit`, `workload` and `pinned` hold shared test inputs, the
//! size benchmark and the pinned encodings.

mod arith;
mod bits;
mod huffman;
mod memo;
#[cfg(test)]
mod pinned;
mod seq;
#[cfg(test)]
mod testkit;
mod timestamps;
mod values;
#[cfg(test)]
mod workload;
mod xor;

pub(in crate::storage) use arith::{unzigzag, zigzag};
use bits::{BitReader, BitWriter};
pub use memo::TimesMemo;
use timestamps::{decode_times, encode_times};
use values::{decode_values, encode_values};

/// A sample as stored: timestamp in ms since epoch, value as `f64::to_bits()`
/// (so NaN payloads such as Prometheus stale markers 0x7ff0000000000002 survive bit-exactly).
pub type RawSample = (i64, u64);

/// The format version this build writes (the chunk's first byte): 3, long
/// dense sequences in lanes ([`seq`]). It reads 1 as well, the same
/// format without lanes.
const VERSION: u8 = 3;

/// The first format, still read.
const VERSION_WITHOUT_LANES: u8 = 1;

/// First byte of a chunk made of segments.
const SEGMENTED: u8 = 2;

/// Most segments storage lets a chunk have before re-encoding it whole.
pub const MAX_SEGMENTS: usize = 4;

/// Most samples in one block of a chunk. Longer chunks are split into
/// blocks, so the samples a chunk can declare are bounded by its length.
const MAX_BLOCK: usize = 4096;

/// Why a byte string is not a chunk this build can decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// Not even the version byte is there.
    #[error("empty chunk: the format version byte is missing")]
    Empty,
    /// The first byte names a format this build does not know.
    #[error(
        "unsupported chunk format version {0} (this build reads versions {old} and {v})",
        old = VERSION_WITHOUT_LANES,
        v = VERSION
    )]
    UnsupportedVersion(u8),
    /// The bit stream ends before the samples it declares.
    #[error("truncated chunk: the data ends before the last sample")]
    Truncated,
    /// A block declares more samples than a block may hold.
    #[error("chunk block declares {0} samples, more than the limit of {max}", max = MAX_BLOCK)]
    TooManySamples(u64),
    /// Bytes are left over after the last sample.
    #[error("chunk has {0} trailing byte(s) after its last sample")]
    TrailingBytes(usize),
    /// A field holds a value the encoder never writes.
    #[error("corrupt chunk: {0}")]
    Corrupt(&'static str),
}

/// Encodes samples whose timestamps are strictly increasing (caller guarantees; debug_assert it).
#[must_use]
pub fn encode(samples: &[RawSample]) -> Vec<u8> {
    debug_assert!(
        samples.windows(2).all(|w| w[0].0 < w[1].0),
        "chunk timestamps must be strictly increasing"
    );
    let mut w = BitWriter::new(16 + samples.len());
    if samples.is_empty() {
        w.put_uvar(0);
    }
    let mut blocks = samples.chunks(MAX_BLOCK).peekable();
    while let Some(block) = blocks.next() {
        w.put_uvar(block.len() as u64);
        w.put_uvar(zigzag(block[0].0));
        if block.len() > 1 {
            encode_times(&mut w, block);
        }
        encode_values(&mut w, block);
        w.put(u64::from(blocks.peek().is_some()), 1);
    }
    w.finish()
}

/// Decodes a chunk produced by `encode`. Must never panic on arbitrary input bytes (return Err instead),
/// and must not allocate unboundedly from a forged count (cap allocations by input length).
///
/// Timestamps of a successfully decoded chunk are strictly increasing.
pub fn decode(data: &[u8]) -> Result<Vec<RawSample>, ChunkError> {
    let mut out = Vec::new();
    decode_into(data, &mut out)?;
    Ok(out)
}

/// [`decode`], appending the samples to `out` (a reader decoding many
/// chunks reuses one buffer). On error `out` is left as it was.
pub fn decode_into(data: &[u8], out: &mut Vec<RawSample>) -> Result<(), ChunkError> {
    decode_into_checked(data, out, None)
}

/// [`decode_into`] for a reader decoding many chunks, many of them with
/// the same timestamps (the series of one scrape): times decoded for an
/// earlier chunk that began with the same bits come from `memo`. The
/// result is [`decode_into`]'s, error or samples.
pub fn decode_into_with(
    data: &[u8],
    out: &mut Vec<RawSample>,
    memo: &mut TimesMemo,
) -> Result<(), ChunkError> {
    decode_into_checked(data, out, Some(memo))
}

fn decode_into_checked(
    data: &[u8],
    out: &mut Vec<RawSample>,
    memo: Option<&mut TimesMemo>,
) -> Result<(), ChunkError> {
    let before = out.len();
    let result = decode_after(data, out, before, memo);
    if result.is_err() {
        out.truncate(before);
    }
    result
}

/// `chunk` with `newer` (samples strictly after its last one; the caller
/// guarantees it) added as one more segment.
#[must_use]
pub fn append(chunk: &[u8], newer: &[RawSample]) -> Vec<u8> {
    debug_assert!(!newer.is_empty());
    let segment = encode(newer);
    let mut out = Vec::with_capacity(chunk.len() + segment.len() + 8);
    if chunk.first() == Some(&SEGMENTED) {
        out.extend_from_slice(chunk);
    } else {
        out.push(SEGMENTED);
        put_leb128(&mut out, chunk.len());
        out.extend_from_slice(chunk);
    }
    put_leb128(&mut out, segment.len());
    out.extend_from_slice(&segment);
    out
}

/// How many segments `chunk` has (1 for an unsegmented chunk). Reads the
/// framing only.
pub fn segments(chunk: &[u8]) -> Result<usize, ChunkError> {
    if chunk.first() != Some(&SEGMENTED) {
        return Ok(1);
    }
    let mut count = 0;
    let mut rest = &chunk[1..];
    while !rest.is_empty() {
        let segment;
        (segment, rest) = next_segment(rest)?;
        debug_assert!(!segment.is_empty());
        count += 1;
    }
    Ok(count)
}

fn put_leb128(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Splits the next `len segment` off a segmented chunk's body.
fn next_segment(rest: &[u8]) -> Result<(&[u8], &[u8]), ChunkError> {
    let mut len = 0usize;
    for (i, &byte) in rest.iter().enumerate().take(4) {
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            let rest = &rest[i + 1..];
            if len == 0 {
                return Err(ChunkError::Corrupt("empty segment"));
            }
            if len > rest.len() {
                return Err(ChunkError::Truncated);
            }
            return Ok(rest.split_at(len));
        }
    }
    Err(ChunkError::Corrupt("segment length"))
}

/// Decodes `data`'s samples onto `out`, whose first `before` samples are
/// not the chunk's.
fn decode_after(
    data: &[u8],
    out: &mut Vec<RawSample>,
    before: usize,
    mut memo: Option<&mut TimesMemo>,
) -> Result<(), ChunkError> {
    if data.first() != Some(&SEGMENTED) {
        return decode_segment(data, out, before, memo);
    }
    let mut rest = &data[1..];
    if rest.is_empty() {
        return Err(ChunkError::Truncated);
    }
    while !rest.is_empty() {
        let segment;
        (segment, rest) = next_segment(rest)?;
        if segment[0] == SEGMENTED {
            return Err(ChunkError::Corrupt("segment inside a segment"));
        }
        // The same `before`: a segment must start after the last one ends.
        decode_segment(segment, out, before, memo.as_deref_mut())?;
    }
    Ok(())
}

/// Decodes a chunk of one segment onto `out`, whose first `before` samples are
/// not the chunk's.
fn decode_segment(
    data: &[u8],
    out: &mut Vec<RawSample>,
    before: usize,
    mut memo: Option<&mut TimesMemo>,
) -> Result<(), ChunkError> {
    let (&version, body) = data.split_first().ok_or(ChunkError::Empty)?;
    if version != VERSION && version != VERSION_WITHOUT_LANES {
        return Err(ChunkError::UnsupportedVersion(version));
    }
    let mut r = BitReader::new(body);
    r.lanes = version == VERSION;
    let mut scratch = Vec::new();
    loop {
        let n = r.get_uvar()?;
        if n > MAX_BLOCK as u64 {
            return Err(ChunkError::TooManySamples(n));
        }
        let n = n as usize;
        if n == 0 {
            if out.len() == before {
                break;
            }
            return Err(r.corrupt("empty block after samples"));
        }
        let start = out.len();
        let t0 = unzigzag(r.get_uvar()?);
        if out[before..].last().is_some_and(|&(last, _)| t0 <= last) {
            return Err(r.corrupt("timestamps not strictly increasing"));
        }
        // Only a first block's times can be the memo's: its bits are the
        // chunk's first.
        match memo.take() {
            Some(memo) => decode_first_times(memo, data, &mut r, (n, t0), out, &mut scratch)?,
            None => decode_times(&mut r, n, t0, out, &mut scratch)?,
        }
        decode_values(&mut r, &mut out[start..], &mut scratch)?;
        if r.get(1) == 0 {
            break;
        }
    }
    r.finish()
}

/// [`decode_times`] of the first block of `chunk` (read by `r` after its
/// version byte), from `memo` where an earlier chunk began with the same
/// bits, and kept there otherwise.
fn decode_first_times(
    memo: &mut TimesMemo,
    chunk: &[u8],
    r: &mut BitReader<'_>,
    (n, t0): (usize, i64),
    out: &mut Vec<RawSample>,
    scratch: &mut Vec<i64>,
) -> Result<(), ChunkError> {
    if let Some((times, bits)) = memo.find(chunk) {
        // The same bits gave the same count and first time; checked all
        // the same, as this is cheap.
        if times.len() == n && times.first() == Some(&t0) && bits >= 8 + r.pos {
            out.extend(times.iter().map(|&t| (t, 0)));
            r.pos = bits - 8;
            return Ok(());
        }
    }
    let start = out.len();
    decode_times(r, n, t0, out, scratch)?;
    memo.keep(chunk, 8 + r.pos, out[start..].iter().map(|s| s.0));
    Ok(())
}

#[cfg(test)]
mod tests;
