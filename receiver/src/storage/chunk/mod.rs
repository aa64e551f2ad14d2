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
//! # Layout (version 1)
//!
//! Byte 0 is the format version. The rest is one MSB-first bit stream,
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
//!   dense    code  c * symbol
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
//! segment   := a whole version-1 chunk of `len` bytes, not empty; each
//!              segment's samples start after the previous one's end
//! ```
//!
//! A window still being written gets each compaction's new samples as one
//! more segment ([`append`]): only those are encoded, not the whole window
//! again. Storage re-encodes a window into one version-1 chunk once it is
//! closed, or once it has [`MAX_SEGMENTS`] segments, so segments cost
//! space only in the newest windows.
//!
//! # Where each part lives
//!
//! `bits` is the bit stream and its field codes, `arith` the integer
//! helpers. A block is its timestamps (`timestamps`) and its values
//! (`values`, with `xor` as the fallback); both predict and hand the
//! residuals to `seq`, which writes them with the codes of `huffman`. The
//! test-only `testkit`, `workload` and `pinned` hold shared test inputs, the
//! size benchmark and the pinned encodings.

mod arith;
mod bits;
mod huffman;
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

use arith::{unzigzag, zigzag};
use bits::{BitReader, BitWriter};
use timestamps::{decode_times, encode_times};
use values::{decode_values, encode_values};

/// A sample as stored: timestamp in ms since epoch, value as `f64::to_bits()`
/// (so NaN payloads such as Prometheus stale markers 0x7ff0000000000002 survive bit-exactly).
pub type RawSample = (i64, u64);

/// The format version this build writes and reads (the chunk's first byte).
const VERSION: u8 = 1;

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
    #[error("unsupported chunk format version {0} (this build reads version {v})", v = VERSION)]
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
    let before = out.len();
    let result = decode_after(data, out, before);
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

/// How many segments `chunk` has (1 for a version-1 chunk). Reads the
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
fn decode_after(data: &[u8], out: &mut Vec<RawSample>, before: usize) -> Result<(), ChunkError> {
    if data.first() != Some(&SEGMENTED) {
        return decode_segment(data, out, before);
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
        decode_segment(segment, out, before)?;
    }
    Ok(())
}

/// Decodes a version-1 chunk onto `out`, whose first `before` samples are
/// not the chunk's.
fn decode_segment(data: &[u8], out: &mut Vec<RawSample>, before: usize) -> Result<(), ChunkError> {
    let (&version, body) = data.split_first().ok_or(ChunkError::Empty)?;
    if version != VERSION {
        return Err(ChunkError::UnsupportedVersion(version));
    }
    let mut r = BitReader::new(body);
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
        decode_times(&mut r, n, t0, out, &mut scratch)?;
        decode_values(&mut r, &mut out[start..], &mut scratch)?;
        if r.get(1) == 0 {
            break;
        }
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use testkit::{Rng, SPECIALS, T0, f, regular, round_trip};
    use timestamps::{TIME_DELTA, TIME_REGULAR};
    use values::{MAX_SCALE, POW10, VALUE_CONSTANT};

    #[test]
    fn empty() {
        let chunk = round_trip(&[]);
        assert_eq!(chunk.len(), 2);
    }

    #[test]
    fn single_sample_of_every_special_value() {
        for &v in &SPECIALS {
            for t in [0, -1, T0, i64::MIN, i64::MAX] {
                round_trip(&[(t, v)]);
            }
        }
    }

    #[test]
    fn special_values_in_every_mode() {
        // Each special among decimal data (an exception), among arbitrary
        // floats (XOR), alone (constant), and all of them together.
        for &v in &SPECIALS {
            let mut dec: Vec<u64> = (0..50).map(|i| f(f64::from(i) * 0.25)).collect();
            dec[17] = v;
            round_trip(&regular(&dec));
            let mut xor: Vec<u64> = (0..50).map(|i| f(f64::from(i).sqrt())).collect();
            xor[3] = v;
            xor[49] = v;
            round_trip(&regular(&xor));
            round_trip(&regular(&[v; 10]));
        }
        round_trip(&regular(&SPECIALS));
        let mut doubled = SPECIALS.to_vec();
        doubled.extend_from_slice(&SPECIALS);
        round_trip(&regular(&doubled));
    }

    #[test]
    fn extreme_timestamps() {
        round_trip(&[(i64::MIN, 1), (i64::MAX, 2)]);
        round_trip(&[(i64::MIN, 1), (0, 2), (i64::MAX, 3)]);
        round_trip(&[
            (i64::MIN, 1),
            (i64::MIN + 1, 2),
            (i64::MAX - 1, 3),
            (i64::MAX, 4),
        ]);
        round_trip(&[(-5, 1), (-4, 1), (-2, 1), (7, 1), (1 << 62, 1)]);
        let negative: Vec<RawSample> = (0..100).map(|i| (-1_000_000 + i * 1000, f(1.0))).collect();
        round_trip(&negative);
        let ending: Vec<RawSample> = (0..100).map(|i| (i64::MAX - 99 + i, f(1.0))).collect();
        round_trip(&ending);
        let starting: Vec<RawSample> = (0..100).map(|i| (i64::MIN + i * 7, 0)).collect();
        round_trip(&starting);
    }

    #[test]
    fn long_chunks_are_split_into_blocks() {
        let mut rng = Rng::new(17);
        for n in [MAX_BLOCK - 1, MAX_BLOCK, MAX_BLOCK + 1, 3 * MAX_BLOCK + 5] {
            let constant: Vec<RawSample> = (0..n as i64).map(|i| (i * 1000, f(1.0))).collect();
            let chunk = round_trip(&constant);
            assert!(
                chunk.len() <= 16 * n.div_ceil(MAX_BLOCK),
                "{} bytes",
                chunk.len()
            );
            let mut t = -1_000_000;
            let mut v = 0i64;
            let noisy: Vec<RawSample> = (0..n)
                .map(|_| {
                    t += 1 + rng.modulo(3) as i64;
                    v += rng.modulo(100) as i64;
                    (t, f(v as f64 / 100.0))
                })
                .collect();
            round_trip(&noisy);
            let random: Vec<RawSample> = (0..n as i64).map(|i| (i, rng.next())).collect();
            round_trip(&random);
        }
    }

    #[test]
    fn decode_errors() {
        assert_eq!(decode(&[]), Err(ChunkError::Empty));
        assert_eq!(decode(&[0]), Err(ChunkError::UnsupportedVersion(0)));
        assert_eq!(decode(&[3, 0]), Err(ChunkError::UnsupportedVersion(3)));
        assert_eq!(decode(&[VERSION]), Err(ChunkError::Truncated));

        let samples = regular(&[f(1.5), f(2.5), f(2.75)]);
        let mut chunk = encode(&samples);
        chunk.push(0);
        assert_eq!(decode(&chunk), Err(ChunkError::TrailingBytes(1)));
        chunk.extend_from_slice(&[1, 2]);
        assert_eq!(decode(&chunk), Err(ChunkError::TrailingBytes(3)));

        // A count past the limit is refused before anything is allocated.
        let mut w = BitWriter::new(0);
        w.put_uvar(MAX_BLOCK as u64 + 1);
        assert_eq!(decode(&w.finish()), Err(ChunkError::TooManySamples(4097)));
        let mut w = BitWriter::new(0);
        w.put_uvar(u64::MAX);
        assert_eq!(
            decode(&w.finish()),
            Err(ChunkError::TooManySamples(u64::MAX))
        );

        // A forged count whose residuals would need more bits than remain.
        let mut w = BitWriter::new(0);
        w.put_uvar(MAX_BLOCK as u64);
        w.put_uvar(0);
        w.put(TIME_DELTA, 2);
        w.put_round_uvar(30_000);
        w.put(0b0_1_0, 3); // unsigned, gcd 1, dense
        w.put_gamma(1); // d = 1
        w.put_gamma(1); // lo = 0
        w.put_gamma(2); // hi = 1
        w.put(0b1111_0001, 8); // length 1
        w.put(0, 1); // length 1
        assert_eq!(decode(&w.finish()), Err(ChunkError::Truncated));

        // Free samples: a block at the limit, then one more block; a third
        // that is empty, or that starts before the last, is refused.
        let block = |w: &mut BitWriter, n: usize, t0: i64, more: bool| {
            w.put_uvar(n as u64);
            w.put_uvar(zigzag(t0));
            w.put(TIME_REGULAR, 2);
            w.put_round_uvar(1);
            w.put(VALUE_CONSTANT, 2);
            w.put(0b100_0001, 7); // decimal scalar: scale 0, mantissa 0
            w.put(u64::from(more), 1);
        };
        let mut w = BitWriter::new(0);
        block(&mut w, MAX_BLOCK, 0, true);
        block(&mut w, 2, MAX_BLOCK as i64, false);
        let all = decode(&w.finish()).unwrap();
        assert_eq!(all.len(), MAX_BLOCK + 2);
        assert!(all.iter().enumerate().all(|(i, &s)| s == (i as i64, 0)));
        let mut w = BitWriter::new(0);
        block(&mut w, 10, 0, true);
        block(&mut w, 10, 9, false);
        assert_eq!(
            decode(&w.finish()),
            Err(ChunkError::Corrupt("timestamps not strictly increasing"))
        );
        let mut w = BitWriter::new(0);
        block(&mut w, 10, 0, true);
        w.put_uvar(0);
        assert_eq!(
            decode(&w.finish()),
            Err(ChunkError::Corrupt("empty block after samples"))
        );

        // Nonzero padding.
        let chunk = encode(&[(5, 0)]);
        let mut padded = chunk.clone();
        *padded.last_mut().unwrap() |= 1;
        assert!(
            matches!(decode(&padded), Err(ChunkError::Corrupt(_))),
            "{padded:?}"
        );

        // Regular timestamps that would overflow i64.
        let mut w = BitWriter::new(0);
        w.put_uvar(3);
        w.put_uvar(zigzag(i64::MAX - 10));
        w.put(TIME_REGULAR, 2);
        w.put_uvar(6);
        assert_eq!(
            decode(&w.finish()),
            Err(ChunkError::Corrupt("timestamps not strictly increasing"))
        );

        // An unknown value encoding.
        let mut w = BitWriter::new(0);
        w.put_uvar(1);
        w.put_uvar(0);
        w.put(3, 2);
        w.put(0, 20);
        assert_eq!(
            decode(&w.finish()),
            Err(ChunkError::Corrupt("unknown value encoding"))
        );

        assert!(ChunkError::Truncated.to_string().contains("truncated"));
        assert!(
            ChunkError::UnsupportedVersion(9)
                .to_string()
                .contains("version 9")
        );
    }

    /// A few chunks covering every mode, for the corruption tests.
    fn sample_chunks() -> Vec<(Vec<RawSample>, Vec<u8>)> {
        let mut rng = Rng::new(99);
        let mut out = Vec::new();
        for i in 0..workload::KINDS {
            let s = workload::series(&mut rng, i, 60);
            let c = encode(&s);
            out.push((s, c));
        }
        let mut xor = regular(&(0..40).map(|i| f(f64::from(i).ln())).collect::<Vec<_>>());
        xor[5].0 += 3;
        let c = encode(&xor);
        out.push((xor, c));
        let c = encode(&regular(&SPECIALS));
        out.push((regular(&SPECIALS), c));
        out
    }

    #[test]
    fn every_prefix_fails_cleanly() {
        for (samples, chunk) in sample_chunks() {
            for len in 0..chunk.len() {
                if let Ok(back) = decode(&chunk[..len]) {
                    assert_eq!(back, samples, "prefix {len} of {chunk:?}");
                }
            }
        }
    }

    #[test]
    fn every_bit_flip_is_survived() {
        for (_, chunk) in sample_chunks() {
            for bit in 0..chunk.len() * 8 {
                let mut bad = chunk.clone();
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                if let Ok(back) = decode(&bad) {
                    assert!(back.windows(2).all(|w| w[0].0 < w[1].0));
                }
            }
        }
    }

    fn arb_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            proptest::sample::select(SPECIALS.to_vec()),
            // NaNs with any payload and sign.
            any::<u64>().prop_map(|x| x & 0x800f_ffff_ffff_ffff | 0x7ff0_0000_0000_0001),
            (any::<i32>(), 0..=MAX_SCALE).prop_map(|(m, k)| f(f64::from(m) / POW10[k])),
            (any::<i64>(), 0..=MAX_SCALE).prop_map(|(m, k)| f(m as f64 / POW10[k])),
            any::<f64>().prop_map(f),
        ]
    }

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Regular,
        Jitter(u64),
        Any(u64),
        Small(u64),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => Just(Step::Regular),
            2 => (0u64..10).prop_map(Step::Jitter),
            1 => (1u64..=u64::MAX).prop_map(Step::Any),
            1 => (1u64..5).prop_map(Step::Small),
        ]
    }

    #[derive(Clone, Copy, Debug)]
    enum Next {
        Repeat,
        Value(u64),
        /// Add `m / 10^k` to the previous value's decimal mantissa.
        Walk(i32, usize),
    }

    fn arb_next() -> impl Strategy<Value = Next> {
        prop_oneof![
            3 => Just(Next::Repeat),
            2 => arb_value().prop_map(Next::Value),
            4 => (-1000i32..1000, 0usize..4).prop_map(|(m, k)| Next::Walk(m, k)),
        ]
    }

    fn arb_series() -> impl Strategy<Value = Vec<RawSample>> {
        let start = prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX - 1_000_000),
            any::<i64>(),
            (T0..T0 + 30_000),
            (-1_000_000i64..1_000_000),
        ];
        (
            start,
            1u64..100_000,
            arb_value(),
            proptest::collection::vec((arb_step(), arb_next()), 0..300),
        )
            .prop_map(|(start, interval, v0, steps)| {
                let mut out = vec![(start, v0)];
                let (mut t, mut v, mut m) = (start, v0, 0i64);
                for (step, next) in steps {
                    let delta = match step {
                        Step::Regular => interval,
                        Step::Jitter(j) => (interval + j).saturating_sub(5).max(1),
                        Step::Any(d) => d,
                        Step::Small(d) => d,
                    };
                    let Some(nt) = t.checked_add_unsigned(delta) else {
                        break;
                    };
                    t = nt;
                    v = match next {
                        Next::Repeat => v,
                        Next::Value(x) => x,
                        Next::Walk(d, k) => {
                            m = m.wrapping_add(i64::from(d));
                            f(m as f64 / POW10[k])
                        }
                    };
                    out.push((t, v));
                }
                out
            })
    }

    proptest! {
        #[test]
        fn prop_round_trip(samples in arb_series()) {
            let chunk = encode(&samples);
            prop_assert_eq!(decode(&chunk), Ok(samples));
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&data);
            let mut versioned = data;
            versioned.insert(0, VERSION);
            if let Ok(samples) = decode(&versioned) {
                // At least 36 bits per block of at most 4096 samples.
                prop_assert!(samples.len() <= 911 * versioned.len());
                prop_assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
            }
        }

        #[test]
        fn prop_damaged_chunks_never_panic(
            samples in arb_series(),
            flips in proptest::collection::vec(any::<usize>(), 1..4),
            cut in any::<usize>(),
        ) {
            let mut chunk = encode(&samples);
            for bit in flips {
                let bit = bit % (chunk.len() * 8);
                chunk[bit / 8] ^= 0x80 >> (bit % 8);
            }
            let _ = decode(&chunk);
            let _ = decode(&chunk[..cut % (chunk.len() + 1)]);
        }

        #[test]
        fn prop_segments_decode_as_one_chunk(
            samples in arb_series(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            // Cut the samples into non-empty runs; the first is a version-1
            // chunk, every other one appended as a segment.
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(samples.len() + 1)).collect();
            at.extend([0, samples.len()]);
            at.sort_unstable();
            at.dedup();
            let runs: Vec<&[RawSample]> = at.windows(2).map(|w| &samples[w[0]..w[1]]).collect();
            let mut chunk = encode(runs.first().copied().unwrap_or(&[]));
            for run in runs.iter().skip(1) {
                chunk = append(&chunk, run);
            }
            prop_assert_eq!(segments(&chunk), Ok(runs.len().max(1)));
            prop_assert_eq!(decode(&chunk), Ok(samples));
        }

        #[test]
        fn prop_damaged_segmented_chunks_never_panic(
            samples in arb_series(),
            flips in proptest::collection::vec(any::<usize>(), 1..4),
            cut in any::<usize>(),
        ) {
            let half = samples.len() / 2;
            let mut chunk = encode(&samples[..half]);
            if half < samples.len() {
                chunk = append(&chunk, &samples[half..]);
            }
            for bit in flips {
                let bit = bit % (chunk.len() * 8);
                chunk[bit / 8] ^= 0x80 >> (bit % 8);
            }
            for data in [&chunk[..], &chunk[..cut % (chunk.len() + 1)]] {
                let _ = segments(data);
                if let Ok(decoded) = decode(data) {
                    prop_assert!(decoded.windows(2).all(|w| w[0].0 < w[1].0));
                    prop_assert!(decoded.len() <= 911 * data.len());
                }
            }
        }
    }

    #[test]
    fn segment_errors() {
        let first = regular(&[f(1.0), f(2.0)]);
        let later: Vec<RawSample> = first.iter().map(|&(t, v)| (t + 1_000_000, v)).collect();
        let chunk = append(&encode(&first), &later);
        assert_eq!(chunk[0], SEGMENTED);
        assert_eq!(segments(&chunk), Ok(2));
        assert_eq!(decode(&[SEGMENTED]), Err(ChunkError::Truncated));
        assert_eq!(
            decode(&[SEGMENTED, 0]),
            Err(ChunkError::Corrupt("empty segment"))
        );
        assert_eq!(
            decode(&chunk[..chunk.len() - 1]),
            Err(ChunkError::Truncated)
        );
        assert_eq!(
            decode(&[SEGMENTED, 0x80, 0x80, 0x80, 0x80, 1]),
            Err(ChunkError::Corrupt("segment length"))
        );
        // A segment holding a segmented chunk.
        let mut nested = vec![SEGMENTED, chunk.len() as u8];
        nested.extend_from_slice(&chunk);
        assert_eq!(
            decode(&nested),
            Err(ChunkError::Corrupt("segment inside a segment"))
        );
        // Segments out of time order.
        let backwards = append(&encode(&later), &first);
        assert!(matches!(decode(&backwards), Err(ChunkError::Corrupt(_))));
    }
}
