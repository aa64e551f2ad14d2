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

/// A sample as stored: timestamp in ms since epoch, value as `f64::to_bits()`
/// (so NaN payloads such as Prometheus stale markers 0x7ff0000000000002 survive bit-exactly).
pub type RawSample = (i64, u64);

/// The format version this build writes and reads (the chunk's first byte).
const VERSION: u8 = 1;

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
    let (&version, body) = data.split_first().ok_or(ChunkError::Empty)?;
    if version != VERSION {
        return Err(ChunkError::UnsupportedVersion(version));
    }
    let mut r = BitReader::new(body);
    let mut out: Vec<RawSample> = Vec::new();
    let mut scratch = Vec::new();
    loop {
        let n = r.get_uvar()?;
        if n > MAX_BLOCK as u64 {
            return Err(ChunkError::TooManySamples(n));
        }
        let n = n as usize;
        if n == 0 {
            if out.is_empty() {
                break;
            }
            return Err(r.corrupt("empty block after samples"));
        }
        let start = out.len();
        let t0 = unzigzag(r.get_uvar()?);
        if out.last().is_some_and(|&(last, _)| t0 <= last) {
            return Err(r.corrupt("timestamps not strictly increasing"));
        }
        decode_times(&mut r, n, t0, &mut out, &mut scratch)?;
        decode_values(&mut r, &mut out[start..], &mut scratch)?;
        if r.get(1) == 0 {
            break;
        }
    }
    r.finish()?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Timestamps

const TIME_REGULAR: u64 = 0;
const TIME_DELTA: u64 = 1;
const TIME_DOD: u64 = 2;
const TIME_GRID: u64 = 3;

fn encode_times(w: &mut BitWriter, samples: &[RawSample]) {
    let first = samples[1].0.wrapping_sub(samples[0].0) as u64;
    let regular = samples
        .windows(2)
        .all(|p| p[1].0.wrapping_sub(p[0].0) as u64 == first);
    if regular {
        w.put(TIME_REGULAR, 2);
        w.put_round_uvar(first);
        return;
    }
    let deltas: Vec<u64> = samples
        .windows(2)
        .map(|p| p[1].0.wrapping_sub(p[0].0) as u64)
        .collect();
    let base = median(&deltas);
    let delta: Vec<i64> = deltas
        .iter()
        .map(|&d| d.wrapping_sub(base) as i64)
        .collect();
    let mut prev = base;
    let dod: Vec<i64> = deltas
        .iter()
        .map(|&d| {
            let r = d.wrapping_sub(prev) as i64;
            prev = d;
            r
        })
        .collect();
    // The grid's phase: where sample 0 would sit without its jitter.
    let phase = median(&grid_residuals(samples, base, samples[0].0));
    let grid = grid_residuals(samples, base, samples[0].0.wrapping_add(phase));
    let candidates = [(delta, 0), (dod, 0), (grid, u64::from(svar_bits(phase)))];
    let (i, plan) = cheapest(&candidates);
    let mode = [TIME_DELTA, TIME_DOD, TIME_GRID][i];
    w.put(mode, 2);
    w.put_round_uvar(base);
    if mode == TIME_GRID {
        w.put_uvar(zigzag(phase));
    }
    plan.write(w, &candidates[i].0);
}

/// Residuals of timestamps 1.. from a grid of `base` spacing through
/// `grid0`.
fn grid_residuals(samples: &[RawSample], base: u64, grid0: i64) -> Vec<i64> {
    let mut grid = grid0;
    samples[1..]
        .iter()
        .map(|&(t, _)| {
            let predicted = grid.wrapping_add(base as i64);
            let r = t.wrapping_sub(predicted);
            grid = grid_next(predicted, r, base);
            r
        })
        .collect()
}

/// The grid point the next grid prediction starts from: the predicted one,
/// or after missed samples the grid point nearest the sample, so the grid
/// keeps its phase.
#[inline]
fn grid_next(predicted: i64, r: i64, base: u64) -> i64 {
    if base == 0 || r.unsigned_abs() <= base / 2 {
        predicted
    } else {
        let b = i128::from(base);
        let skipped = (i128::from(r) + b / 2).div_euclid(b);
        predicted.wrapping_add((skipped * b) as i64)
    }
}

fn decode_times(
    r: &mut BitReader<'_>,
    n: usize,
    t0: i64,
    out: &mut Vec<RawSample>,
    scratch: &mut Vec<i64>,
) -> Result<(), ChunkError> {
    out.push((t0, 0));
    if n == 1 {
        return Ok(());
    }
    let mode = r.get(2);
    let base = r.get_round_uvar()?;
    if mode == TIME_REGULAR {
        let last = i128::from(t0) + i128::from(base) * (n as i128 - 1);
        if base == 0 || last > i128::from(i64::MAX) {
            return Err(r.corrupt("timestamps not strictly increasing"));
        }
        out.extend((1..n as u64).map(|i| (t0.wrapping_add(base.wrapping_mul(i) as i64), 0)));
        return Ok(());
    }
    let phase = if mode == TIME_GRID {
        unzigzag(r.get_uvar()?)
    } else {
        0
    };
    read_seq(r, n - 1, scratch)?;
    let mut prev = t0;
    let mut increasing = true;
    match mode {
        TIME_DELTA => {
            for &x in scratch.iter() {
                let t = prev.wrapping_add(base.wrapping_add(x as u64) as i64);
                increasing &= t > prev;
                out.push((t, 0));
                prev = t;
            }
        }
        TIME_DOD => {
            let mut d = base;
            for &x in scratch.iter() {
                d = d.wrapping_add(x as u64);
                let t = prev.wrapping_add(d as i64);
                increasing &= t > prev;
                out.push((t, 0));
                prev = t;
            }
        }
        _ => {
            let mut grid = t0.wrapping_add(phase);
            for &x in scratch.iter() {
                let predicted = grid.wrapping_add(base as i64);
                let t = predicted.wrapping_add(x);
                grid = grid_next(predicted, x, base);
                increasing &= t > prev;
                out.push((t, 0));
                prev = t;
            }
        }
    }
    if increasing {
        Ok(())
    } else {
        Err(r.corrupt("timestamps not strictly increasing"))
    }
}

// ---------------------------------------------------------------------------
// Values

const VALUE_CONSTANT: u64 = 0;
const VALUE_DECIMAL: u64 = 1;
const VALUE_XOR: u64 = 2;

const PRED_LEVEL: u64 = 0;
const PRED_DELTA: u64 = 1;
const PRED_DOD: u64 = 2;

/// The Prometheus staleness marker, a NaN with payload 2.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Largest decimal scale: 10^22 is the largest power of ten an `f64` holds
/// exactly, which keeps `m / 10^k` a single correctly rounded division.
const MAX_SCALE: usize = 22;

const POW10: [f64; MAX_SCALE + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `m` such that `(m as f64) / 10^k` has exactly these bits, if any.
#[inline]
fn decimal_mantissa(bits: u64, k: usize) -> Option<i64> {
    let p = POW10[k];
    let scaled = f64::from_bits(bits) * p;
    // Out of i64's range, or NaN, or infinite.
    if scaled.is_nan() || scaled.abs() >= 9.0e18 {
        return None;
    }
    // Round to nearest without a libm call; the check below is what
    // matters, so how ties go does not.
    let truncated = scaled as i64;
    let fraction = scaled - truncated as f64;
    let m = truncated + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5);
    (((m as f64) / p).to_bits() == bits).then_some(m)
}

/// The values as decimal mantissas at one scale, with the samples that do
/// not fit (stale markers, -0.0, anything not printed in decimal) set aside.
struct Decimal {
    scale: usize,
    exceptions: Vec<usize>,
    mantissas: Vec<i64>,
}

impl Decimal {
    fn analyze(samples: &[RawSample]) -> Option<Self> {
        // Beyond this many exceptions the XOR coding is as good.
        let max_exceptions = samples.len() / 8 + 1;
        let mut scale = 0;
        let mut exceptions = Vec::new();
        let mut mantissas = Vec::with_capacity(samples.len());
        let mut rescaled = false;
        for (i, &(_, bits)) in samples.iter().enumerate() {
            if let Some(m) = decimal_mantissa(bits, scale) {
                mantissas.push(m);
                continue;
            }
            match (scale + 1..=MAX_SCALE).find_map(|k| decimal_mantissa(bits, k).map(|m| (k, m))) {
                Some((k, m)) => {
                    rescaled |= !mantissas.is_empty();
                    scale = k;
                    mantissas.push(m);
                }
                None => {
                    exceptions.push(i);
                    if exceptions.len() > max_exceptions {
                        return None;
                    }
                }
            }
        }
        if rescaled {
            // Earlier mantissas were found at a smaller scale; redo them all
            // at the final one (a value that no longer fits turns exception).
            mantissas.clear();
            let old = std::mem::take(&mut exceptions);
            let mut old = old.iter().peekable();
            for (i, &(_, bits)) in samples.iter().enumerate() {
                if old.next_if_eq(&&i).is_some() {
                    exceptions.push(i);
                    continue;
                }
                match decimal_mantissa(bits, scale) {
                    Some(m) => mantissas.push(m),
                    None => exceptions.push(i),
                }
            }
            if exceptions.len() > max_exceptions {
                return None;
            }
        }
        (!mantissas.is_empty()).then_some(Self {
            scale,
            exceptions,
            mantissas,
        })
    }
}

fn encode_values(w: &mut BitWriter, samples: &[RawSample]) {
    let v0 = samples[0].1;
    if samples.iter().all(|s| s.1 == v0) {
        w.put(VALUE_CONSTANT, 2);
        match (0..=MAX_SCALE).find_map(|k| decimal_mantissa(v0, k).map(|m| (k, m))) {
            Some((k, m)) => {
                w.put(1, 1);
                w.put(k as u64, 5);
                w.put_uvar(zigzag(m));
            }
            None => {
                w.put(0, 1);
                w.put(v0, 64);
            }
        }
        return;
    }
    let Some(dec) = Decimal::analyze(samples) else {
        encode_xor(w, samples);
        return;
    };
    let mark = w.mark();
    encode_decimal(w, samples, &dec);
    // Long mantissas (computed values rather than printed ones) may do
    // better as XOR; try it when the decimal coding is expensive.
    let bits = w.bits_since(mark);
    if bits > 24 * samples.len() as u64 {
        let mut xor = BitWriter::empty();
        encode_xor(&mut xor, samples);
        if xor.bits_since(BitMark::default()) < bits {
            w.reset(mark);
            w.append(&xor);
        }
    }
}

fn encode_decimal(w: &mut BitWriter, samples: &[RawSample], dec: &Decimal) {
    w.put(VALUE_DECIMAL, 2);
    w.put(dec.scale as u64, 5);
    w.put_uvar(dec.exceptions.len() as u64);
    let mut next = 0;
    for &i in &dec.exceptions {
        w.put_uvar((i - next) as u64);
        next = i + 1;
        let bits = samples[i].1;
        if bits == STALE_NAN {
            w.put(1, 1);
        } else {
            w.put(0, 1);
            w.put(bits, 64);
        }
    }

    // Candidates: around the median level, the median delta, or the
    // previous delta; each with its header fields.
    let ms = &dec.mantissas;
    let level_base = median(ms);
    let level: Vec<i64> = ms.iter().map(|&m| m.wrapping_sub(level_base)).collect();
    let mut candidates = vec![(level, u64::from(svar_bits(level_base)))];
    let mut headers = vec![(PRED_LEVEL, level_base)];
    if ms.len() > 1 {
        let diffs: Vec<i64> = ms.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
        let delta_base = median(&diffs);
        let delta: Vec<i64> = diffs.iter().map(|&d| d.wrapping_sub(delta_base)).collect();
        let mut prev = diffs[0];
        let dod: Vec<i64> = diffs
            .iter()
            .map(|&d| {
                let r = d.wrapping_sub(prev);
                prev = d;
                r
            })
            .collect();
        let m0 = svar_bits(ms[0]);
        candidates.push((delta, u64::from(m0 + svar_bits(delta_base))));
        headers.push((PRED_DELTA, delta_base));
        candidates.push((dod, u64::from(m0 + svar_bits(diffs[0]))));
        headers.push((PRED_DOD, diffs[0]));
    }
    let (i, plan) = cheapest(&candidates);
    let (pred, base) = headers[i];
    w.put(pred, 2);
    if pred != PRED_LEVEL {
        w.put_uvar(zigzag(ms[0]));
    }
    w.put_uvar(zigzag(base));
    plan.write(w, &candidates[i].0);
}

fn encode_xor(w: &mut BitWriter, samples: &[RawSample]) {
    w.put(VALUE_XOR, 2);
    let mut prev = samples[0].1;
    w.put(prev, 64);
    // The current window: leading zeros and significant bits.
    let mut window: Option<(u32, u32)> = None;
    for &(_, bits) in &samples[1..] {
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.put(0, 1);
            continue;
        }
        let lead = x.leading_zeros();
        let trail = x.trailing_zeros();
        let sig = 64 - lead - trail;
        match window {
            // Reuse the window when it fits and is not much wider than a
            // fresh one would be.
            Some((wl, ws)) if lead >= wl && 64 - wl - ws <= trail && ws <= sig + 12 => {
                w.put(0b10, 2);
                w.put(x >> (64 - wl - ws), ws);
            }
            _ => {
                w.put(0b11, 2);
                w.put(u64::from(lead), 6);
                w.put(u64::from(sig - 1), 6);
                w.put(x >> trail, sig);
                window = Some((lead, sig));
            }
        }
    }
}

fn decode_values(
    r: &mut BitReader<'_>,
    out: &mut [RawSample],
    scratch: &mut Vec<i64>,
) -> Result<(), ChunkError> {
    match r.get(2) {
        VALUE_CONSTANT => {
            let bits = if r.get(1) == 1 {
                let k = r.get(5) as usize;
                let m = unzigzag(r.get_uvar()?);
                let p = *POW10
                    .get(k)
                    .ok_or_else(|| r.corrupt("decimal scale out of range"))?;
                ((m as f64) / p).to_bits()
            } else {
                r.get_wide(64)
            };
            for s in out.iter_mut() {
                s.1 = bits;
            }
            Ok(())
        }
        VALUE_DECIMAL => decode_decimal(r, out, scratch),
        VALUE_XOR => decode_xor(r, out),
        _ => Err(r.corrupt("unknown value encoding")),
    }
}

fn decode_decimal(
    r: &mut BitReader<'_>,
    out: &mut [RawSample],
    scratch: &mut Vec<i64>,
) -> Result<(), ChunkError> {
    let n = out.len();
    let k = r.get(5) as usize;
    let p = *POW10
        .get(k)
        .ok_or_else(|| r.corrupt("decimal scale out of range"))?;
    let e = r.get_uvar()?;
    if e >= n as u64 {
        return Err(r.corrupt("more value exceptions than samples"));
    }
    if e as usize > r.bits_left() {
        return Err(ChunkError::Truncated);
    }
    let mut exceptions = Vec::with_capacity(e as usize);
    let mut next = 0usize;
    for _ in 0..e {
        let gap = r.get_uvar()?;
        if gap >= (n - next) as u64 {
            return Err(r.corrupt("value exception index out of range"));
        }
        let i = next + gap as usize;
        let bits = if r.get(1) == 1 {
            STALE_NAN
        } else {
            r.get_wide(64)
        };
        exceptions.push((i, bits));
        next = i + 1;
    }
    let len = n - e as usize;
    match r.get(2) {
        PRED_LEVEL => {
            let base = unzigzag(r.get_uvar()?);
            read_seq(r, len, scratch)?;
            let ms = scratch.iter().map(|&x| x.wrapping_add(base));
            fill_decimal(out, &exceptions, ms, p);
        }
        PRED_DELTA => {
            let m0 = unzigzag(r.get_uvar()?);
            let base = unzigzag(r.get_uvar()?);
            read_seq(r, len - 1, scratch)?;
            let ms = scratch.iter().scan(m0, |m, &x| {
                *m = m.wrapping_add(base).wrapping_add(x);
                Some(*m)
            });
            fill_decimal(out, &exceptions, std::iter::once(m0).chain(ms), p);
        }
        PRED_DOD => {
            let m0 = unzigzag(r.get_uvar()?);
            let base = unzigzag(r.get_uvar()?);
            read_seq(r, len - 1, scratch)?;
            let ms = scratch.iter().scan((m0, base), |(m, d), &x| {
                *d = d.wrapping_add(x);
                *m = m.wrapping_add(*d);
                Some(*m)
            });
            fill_decimal(out, &exceptions, std::iter::once(m0).chain(ms), p);
        }
        _ => return Err(r.corrupt("unknown value prediction")),
    }
    Ok(())
}

/// Stores the decimal values `m / p`, and the exceptions at their indices.
#[inline]
fn fill_decimal(
    out: &mut [RawSample],
    exceptions: &[(usize, u64)],
    mut mantissas: impl Iterator<Item = i64>,
    p: f64,
) {
    if exceptions.is_empty() {
        for (s, m) in out.iter_mut().zip(mantissas) {
            s.1 = ((m as f64) / p).to_bits();
        }
        return;
    }
    let mut exceptions = exceptions.iter().peekable();
    for (i, s) in out.iter_mut().enumerate() {
        if let Some(&(_, bits)) = exceptions.next_if(|x| x.0 == i) {
            s.1 = bits;
        } else if let Some(m) = mantissas.next() {
            s.1 = ((m as f64) / p).to_bits();
        }
    }
}

fn decode_xor(r: &mut BitReader<'_>, out: &mut [RawSample]) -> Result<(), ChunkError> {
    if out.len() > r.bits_left() {
        return Err(ChunkError::Truncated);
    }
    let mut prev = r.get_wide(64);
    out[0].1 = prev;
    let mut window: Option<(u32, u32)> = None;
    for s in &mut out[1..] {
        if r.get(1) == 1 {
            let (lead, sig) = if r.get(1) == 1 {
                let lead = r.get(6) as u32;
                let sig = r.get(6) as u32 + 1;
                if lead + sig > 64 {
                    return Err(r.corrupt("XOR window wider than 64 bits"));
                }
                window = Some((lead, sig));
                (lead, sig)
            } else {
                window.ok_or_else(|| r.corrupt("XOR window reused before it was set"))?
            };
            prev ^= r.get_wide(sig) << (64 - lead - sig);
        }
        s.1 = prev;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Integer sequences: the residual coder shared by timestamps and values.
//
// A residual `u` (zigzagged when any is negative) is coded as a Huffman
// symbol plus raw bits. Values below `2^d` are symbols of their own; larger
// ones share one symbol per bit length `b` and add their `b - 1` bits below
// the leading one. Each table picks its own `d` (1 to 5): small alphabets
// such as scrape jitter want every value to be a symbol, wide residuals
// want a short table.

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
struct Histogram {
    /// Occurrences of each value below 32.
    small: [u32; 32],
    /// Occurrences of each bit length.
    lengths: [u32; 65],
    total: u32,
}

impl Histogram {
    fn new() -> Self {
        Self {
            small: [0; 32],
            lengths: [0; 65],
            total: 0,
        }
    }

    #[inline]
    fn add(&mut self, u: u64) {
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
    fn plan(&self) -> Lens {
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
struct Lens {
    lens: [u8; SYMBOLS],
    lo: usize,
    hi: usize,
    direct: u32,
    bits: u64,
}

/// The cheapest of candidate residual sequences, each with the header bits
/// it needs besides: its index and plan. Candidates far behind the best by
/// a rough estimate are not planned at all.
fn cheapest(candidates: &[(Vec<i64>, u64)]) -> (usize, SeqPlan) {
    let rough: Vec<u64> = candidates
        .iter()
        .map(|(xs, extra)| {
            extra
                + xs.iter()
                    .map(|&x| u64::from(bit_len(zigzag(x))))
                    .sum::<u64>()
        })
        .collect();
    let floor = rough.iter().copied().min().unwrap_or(0);
    let mut best: Option<(usize, SeqPlan, u64)> = None;
    for (i, (xs, extra)) in candidates.iter().enumerate() {
        if rough[i] > floor + floor / 8 + 64 {
            continue;
        }
        let plan = SeqPlan::new(xs);
        let bits = plan.bits + extra;
        if best.as_ref().is_none_or(|b| bits < b.2) {
            best = Some((i, plan, bits));
        }
    }
    let (i, plan, _) = best.expect("the roughly cheapest candidate is always planned");
    (i, plan)
}

/// How one residual sequence will be written, and its exact size in bits.
struct SeqPlan {
    bits: u64,
    signed: bool,
    div: ExactDiv,
    dense: Lens,
    /// `Some(nonzero count, gap code, value code)` for sparse coding.
    sparse: Option<(u64, Lens, Lens)>,
}

impl SeqPlan {
    fn new(xs: &[i64]) -> Self {
        let signed = xs.iter().any(|&x| x < 0);
        let div = ExactDiv::common(xs);
        let unsigned = |x: i64| to_unsigned(div.apply(x), signed);
        // Four interleaved histograms, so that runs of one value do not
        // serialize on a single counter.
        let mut lengths = [[0u32; 65]; 4];
        let mut small = [[0u32; 33]; 4];
        let mut quads = xs.chunks_exact(4);
        for quad in &mut quads {
            for (j, &x) in quad.iter().enumerate() {
                let u = unsigned(x);
                lengths[j][bit_len(u) as usize] += 1;
                small[j][u.min(32) as usize] += 1;
            }
        }
        for &x in quads.remainder() {
            let u = unsigned(x);
            lengths[0][bit_len(u) as usize] += 1;
            small[0][u.min(32) as usize] += 1;
        }
        let mut all = Histogram::new();
        for (b, count) in all.lengths.iter_mut().enumerate() {
            *count = lengths.iter().map(|lane| lane[b]).sum();
        }
        for (u, count) in all.small.iter_mut().enumerate() {
            *count = small.iter().map(|lane| lane[u]).sum();
        }
        all.total = xs.len() as u32;

        let header = 2 + u64::from(uvar_bits(div.divisor - 1));
        let dense = all.plan();
        let mut plan = Self {
            bits: header + dense.bits,
            signed,
            div,
            dense,
            sparse: None,
        };
        let zeros = all.lengths[0];
        if u64::from(zeros) * 2 > xs.len() as u64 {
            let nonzero = u64::from(all.total - zeros);
            let mut bits = header + u64::from(uvar_bits(nonzero));
            let (mut gap_code, mut val_code) = (dense, dense);
            if nonzero > 0 {
                let mut gaps = Histogram::new();
                let mut run = 0u64;
                for &x in xs {
                    if x == 0 {
                        run += 1;
                    } else {
                        gaps.add(run);
                        run = 0;
                    }
                }
                all.small[0] = 0;
                all.lengths[0] = 0;
                all.total -= zeros;
                gap_code = gaps.plan();
                val_code = all.plan();
                bits += gap_code.bits + val_code.bits;
            }
            if bits < plan.bits {
                plan.bits = bits;
                plan.sparse = Some((nonzero, gap_code, val_code));
            }
        }
        plan
    }

    fn write(&self, w: &mut BitWriter, xs: &[i64]) {
        if xs.is_empty() {
            return;
        }
        w.put(u64::from(self.signed), 1);
        w.put_uvar(self.div.divisor - 1);
        let values = xs
            .iter()
            .map(|&x| to_unsigned(self.div.apply(x), self.signed));
        match &self.sparse {
            None => {
                w.put(0, 1);
                let code = Code::new(&self.dense);
                code.write_table(w);
                for u in values {
                    code.put(w, u);
                }
            }
            Some((nonzero, gap_lens, val_lens)) => {
                w.put(1, 1);
                w.put_uvar(*nonzero);
                if *nonzero > 0 {
                    let gaps = Code::new(gap_lens);
                    let vals = Code::new(val_lens);
                    gaps.write_table(w);
                    vals.write_table(w);
                    let mut run = 0;
                    for u in values {
                        if u == 0 {
                            run += 1;
                        } else {
                            gaps.put(w, run);
                            vals.put(w, u);
                            run = 0;
                        }
                    }
                }
            }
        }
    }
}

/// Reads `count` residuals written by [`SeqPlan::write`] into `out`.
fn read_seq(r: &mut BitReader<'_>, count: usize, out: &mut Vec<i64>) -> Result<(), ChunkError> {
    out.clear();
    if count == 0 {
        return Ok(());
    }
    let signed = r.get(1) == 1;
    let gcd = r.get_uvar()?.wrapping_add(1) as i64;
    let sparse = r.get(1) == 1;
    let finish = |u: u64| {
        let x = if signed { unzigzag(u) } else { u as i64 };
        x.wrapping_mul(gcd)
    };
    if sparse {
        let nonzero = r.get_uvar()?;
        if nonzero > count as u64 {
            return Err(r.corrupt("more nonzero residuals than residuals"));
        }
        out.resize(count, 0);
        if nonzero > 0 {
            let gaps = Table::read(r)?;
            let vals = Table::read(r)?;
            let mut at = 0;
            for _ in 0..nonzero {
                let gap = gaps.read_value(r);
                if gap >= (count - at) as u64 {
                    return Err(r.corrupt("zero run longer than the sequence"));
                }
                at += gap as usize;
                out[at] = finish(vals.read_value(r));
                at += 1;
            }
        }
    } else {
        let table = Table::read(r)?;
        if table.maxlen > 0 && count > r.bits_left() {
            return Err(ChunkError::Truncated);
        }
        if table.maxlen == 0 && table.entries[0] == 0 {
            out.resize(count, 0);
        } else {
            out.reserve(count);
            for _ in 0..count {
                out.push(finish(table.read_value(r)));
            }
        }
    }
    Ok(())
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

/// Canonical codes for code lengths (as in DEFLATE).
fn canonical_codes(lens: &[u8; SYMBOLS]) -> [u16; SYMBOLS] {
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
struct Code {
    lens: Lens,
    codes: [u16; SYMBOLS],
}

impl Code {
    fn new(lens: &Lens) -> Self {
        Self {
            lens: *lens,
            codes: canonical_codes(&lens.lens),
        }
    }

    fn write_table(&self, w: &mut BitWriter) {
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
    fn put(&self, w: &mut BitWriter, u: u64) {
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

/// The decoder's side of a Huffman table: entries indexed by the next
/// `maxlen` bits, each `length | extra bits << 4 | direct value << 10`.
struct Table {
    entries: Vec<u16>,
    maxlen: u32,
}

impl Table {
    fn read(r: &mut BitReader<'_>) -> Result<Self, ChunkError> {
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
        if lo == hi {
            return Ok(Self {
                entries: vec![entry(lo, 0)],
                maxlen: 0,
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
        let kraft: u32 = lens
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u32 << (MAX_CODE_LEN - l))
            .sum();
        if kraft != 1 << MAX_CODE_LEN {
            return Err(r.corrupt("Huffman code lengths do not form a complete code"));
        }
        let maxlen = u32::from(lens.iter().copied().max().unwrap_or(0));
        let codes = canonical_codes(&lens);
        let mut entries = vec![0u16; 1 << maxlen];
        for (s, (&l, &c)) in lens.iter().zip(&codes).enumerate() {
            if l > 0 {
                let shift = maxlen - u32::from(l);
                let start = usize::from(c) << shift;
                entries[start..start + (1 << shift)].fill(entry(s, l));
            }
        }
        Ok(Self { entries, maxlen })
    }

    /// Reads one residual: its code, then any bits below its leading one.
    #[inline]
    fn read_value(&self, r: &mut BitReader<'_>) -> u64 {
        let word = r.peek();
        let e = self.entries[((word >> 1) >> (63 - self.maxlen)) as usize];
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

// ---------------------------------------------------------------------------
// Bit I/O and small integer helpers

struct BitWriter {
    buf: Vec<u8>,
    /// Pending bits, right-aligned; fewer than 32 between calls.
    acc: u64,
    nacc: u32,
}

impl BitWriter {
    fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.push(VERSION);
        Self {
            buf,
            acc: 0,
            nacc: 0,
        }
    }

    /// A writer for a stream spliced into another with [`Self::append`].
    fn empty() -> Self {
        Self {
            buf: Vec::new(),
            acc: 0,
            nacc: 0,
        }
    }

    fn mark(&self) -> BitMark {
        BitMark {
            bytes: self.buf.len(),
            acc: self.acc,
            nacc: self.nacc,
        }
    }

    fn bits_since(&self, mark: BitMark) -> u64 {
        ((self.buf.len() - mark.bytes) * 8) as u64 + u64::from(self.nacc) - u64::from(mark.nacc)
    }

    /// Drops everything written since `mark`.
    fn reset(&mut self, mark: BitMark) {
        self.buf.truncate(mark.bytes);
        self.acc = mark.acc;
        self.nacc = mark.nacc;
    }

    fn append(&mut self, other: &Self) {
        for &byte in &other.buf {
            self.put(u64::from(byte), 8);
        }
        self.put(other.acc, other.nacc);
    }

    /// Appends the low `n` bits of `v` (`n <= 64`, higher bits clear).
    #[inline]
    fn put(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64 && (n == 64 || v >> n == 0));
        if n > 32 {
            self.put32(v >> 32, n - 32);
            self.put32(v & 0xffff_ffff, 32);
        } else {
            self.put32(v, n);
        }
    }

    #[inline]
    fn put32(&mut self, v: u64, n: u32) {
        self.acc = (self.acc << n) | v;
        self.nacc += n;
        if self.nacc >= 32 {
            self.nacc -= 32;
            let word = (self.acc >> self.nacc) as u32;
            self.buf.extend_from_slice(&word.to_be_bytes());
            self.acc &= (1u64 << self.nacc) - 1;
        }
    }

    /// Elias gamma code of `y >= 1`.
    fn put_gamma(&mut self, y: u64) {
        debug_assert!((1..1 << 31).contains(&y));
        self.put(y, gamma_bits(y));
    }

    fn put_uvar(&mut self, x: u64) {
        let b = bit_len(x);
        self.put_gamma(u64::from(b) + 1);
        if b > 1 {
            self.put(x & (u64::MAX >> (65 - b)), b - 1);
        }
    }

    /// A `uvar` as `m * 10^e`: scrape intervals are round numbers.
    fn put_round_uvar(&mut self, x: u64) {
        let (mut m, mut e) = (x, 0);
        while m != 0 && m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        self.put_gamma(e + 1);
        self.put_uvar(m);
    }

    fn finish(mut self) -> Vec<u8> {
        let pad = (8 - self.nacc % 8) % 8;
        self.acc <<= pad;
        self.nacc += pad;
        while self.nacc > 0 {
            self.nacc -= 8;
            self.buf.push((self.acc >> self.nacc) as u8);
        }
        self.buf
    }
}

/// A position in a [`BitWriter`] to measure from or go back to.
#[derive(Clone, Copy, Default)]
struct BitMark {
    bytes: usize,
    acc: u64,
    nacc: u32,
}

struct BitReader<'a> {
    data: &'a [u8],
    /// Bits consumed; may run past the end, which reads as zeros and is
    /// reported as truncation.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// The next 64 bits (at least 57 of them meaningful), MSB-first.
    #[inline]
    fn peek(&self) -> u64 {
        let tail = self.data.get(self.pos >> 3..).unwrap_or(&[]);
        let word = match tail.first_chunk::<8>() {
            Some(w) => u64::from_be_bytes(*w),
            None => {
                let mut w = [0u8; 8];
                w[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(w)
            }
        };
        word << (self.pos & 7)
    }

    /// Reads `n <= 57` bits.
    #[inline]
    fn get(&mut self, n: u32) -> u64 {
        debug_assert!(n <= 57);
        let v = (self.peek() >> 1) >> (63 - n);
        self.pos += n as usize;
        v
    }

    /// Reads `n <= 64` bits.
    #[inline]
    fn get_wide(&mut self, n: u32) -> u64 {
        if n <= 57 {
            self.get(n)
        } else {
            let hi = self.get(n - 32);
            (hi << 32) | self.get(32)
        }
    }

    fn get_gamma(&mut self) -> Result<u64, ChunkError> {
        // Values up to 65 only: at most 6 leading zeros.
        let zeros = self.peek().leading_zeros();
        if zeros > 6 {
            return Err(if self.pos + 7 > self.data.len() * 8 {
                ChunkError::Truncated
            } else {
                ChunkError::Corrupt("bad length prefix")
            });
        }
        Ok(self.get(2 * zeros + 1))
    }

    fn get_uvar(&mut self) -> Result<u64, ChunkError> {
        let y = self.get_gamma()?;
        if y > 65 {
            return Err(self.corrupt("integer longer than 64 bits"));
        }
        let b = (y - 1) as u32;
        Ok(if b <= 1 {
            u64::from(b)
        } else {
            (1 << (b - 1)) | self.get_wide(b - 1)
        })
    }

    fn get_round_uvar(&mut self) -> Result<u64, ChunkError> {
        let e = self.get_gamma()? - 1;
        let m = self.get_uvar()?;
        10u64
            .checked_pow(e as u32)
            .and_then(|p| m.checked_mul(p))
            .ok_or_else(|| self.corrupt("interval out of range"))
    }

    /// Bits not yet consumed.
    fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// A corruption error, or [`ChunkError::Truncated`] when the reader has
    /// already run out of data (garbage then is just the zero fill).
    fn corrupt(&self, what: &'static str) -> ChunkError {
        if self.pos > self.data.len() * 8 {
            ChunkError::Truncated
        } else {
            ChunkError::Corrupt(what)
        }
    }

    fn finish(mut self) -> Result<(), ChunkError> {
        let len = self.data.len();
        if self.pos > len * 8 {
            return Err(ChunkError::Truncated);
        }
        let used = self.pos.div_ceil(8);
        if used < len {
            return Err(ChunkError::TrailingBytes(len - used));
        }
        let pad = (used * 8 - self.pos) as u32;
        if self.get(pad) != 0 {
            return Err(ChunkError::Corrupt("nonzero padding bits"));
        }
        Ok(())
    }
}

#[inline]
fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[inline]
fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[inline]
fn to_unsigned(x: i64, signed: bool) -> u64 {
    if signed { zigzag(x) } else { x as u64 }
}

/// Bits needed for `x`: 0 for 0, 64 for values with the top bit set.
#[inline]
fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

#[inline]
fn gamma_bits(y: u64) -> u32 {
    2 * bit_len(y) - 1
}

#[inline]
fn uvar_bits(x: u64) -> u32 {
    let b = bit_len(x);
    gamma_bits(u64::from(b) + 1) + b.saturating_sub(1)
}

#[inline]
fn svar_bits(x: i64) -> u32 {
    uvar_bits(zigzag(x))
}

/// Exact division by a common divisor `2^shift * odd`, as a shift and a
/// multiplication by the odd part's inverse modulo 2^64 (exact because the
/// quotient fits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ExactDiv {
    divisor: u64,
    shift: u32,
    inverse: u64,
    /// Largest quotient of an unsigned multiple of the odd part.
    limit: u64,
}

impl ExactDiv {
    fn new(divisor: u64) -> Self {
        let divisor = divisor.max(1);
        let shift = divisor.trailing_zeros();
        let odd = divisor >> shift;
        // Newton's iteration doubles the correct low bits: 3, 6, ..., 96.
        let mut inverse = odd;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        Self {
            divisor,
            shift,
            inverse,
            limit: u64::MAX / odd,
        }
    }

    /// The greatest common divisor of the magnitudes (1 if all are 0).
    fn common(xs: &[i64]) -> Self {
        let mut div = Self::new(0);
        let mut gcd = 0;
        for &x in xs {
            let a = x.unsigned_abs();
            if gcd == 0 {
                gcd = a;
                div = Self::new(gcd);
            } else if !div.divides(a) {
                gcd = binary_gcd(gcd, a);
                if gcd == 1 {
                    return Self::new(1);
                }
                div = Self::new(gcd);
            }
        }
        div
    }

    #[inline]
    fn divides(&self, a: u64) -> bool {
        a.trailing_zeros() >= self.shift
            && (a >> self.shift).wrapping_mul(self.inverse) <= self.limit
    }

    /// `x / divisor` for a multiple `x` of the divisor.
    #[inline]
    fn apply(&self, x: i64) -> i64 {
        (x >> self.shift).wrapping_mul(self.inverse as i64)
    }
}

fn binary_gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// A median (the upper one for even lengths) of a non-empty slice.
fn median<T: Copy + Ord>(xs: &[T]) -> T {
    let mut v = xs.to_vec();
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;

    fn f(v: f64) -> u64 {
        v.to_bits()
    }

    fn regular(values: &[u64]) -> Vec<RawSample> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (T0 + 30_000 * i as i64, v))
            .collect()
    }

    #[track_caller]
    fn round_trip(samples: &[RawSample]) -> Vec<u8> {
        let chunk = encode(samples);
        assert_eq!(chunk[0], VERSION);
        let back = decode(&chunk).expect("decodes");
        assert_eq!(back.len(), samples.len());
        for (i, (a, b)) in samples.iter().zip(&back).enumerate() {
            assert_eq!(a, b, "sample {i} differs: {a:x?} vs {b:x?}");
        }
        chunk
    }

    /// The value encoding chosen for `samples`: (vmode, decimal prediction).
    fn value_mode(samples: &[RawSample]) -> (u64, Option<u64>) {
        let mut w = BitWriter::new(0);
        encode_values(&mut w, samples);
        let buf = w.finish();
        let mut r = BitReader::new(&buf[1..]);
        let mode = r.get(2);
        if mode != VALUE_DECIMAL {
            return (mode, None);
        }
        r.get(5);
        let e = r.get_uvar().unwrap();
        for _ in 0..e {
            r.get_uvar().unwrap();
            if r.get(1) == 0 {
                r.get_wide(64);
            }
        }
        (mode, Some(r.get(2)))
    }

    fn time_mode(samples: &[RawSample]) -> u64 {
        let mut w = BitWriter::new(0);
        encode_times(&mut w, samples);
        let buf = w.finish();
        BitReader::new(&buf[1..]).get(2)
    }

    const SPECIALS: [u64; 16] = [
        STALE_NAN,
        0x7ff8_0000_0000_0000, // canonical quiet NaN
        0xfff8_0000_0000_0001, // negative NaN with payload
        0x7ff0_0000_0000_0001, // signalling NaN
        0x7fff_ffff_ffff_ffff, // NaN, all payload bits
        0x7ff0_0000_0000_0000, // +Inf
        0xfff0_0000_0000_0000, // -Inf
        0x8000_0000_0000_0000, // -0.0
        0,                     // +0.0
        1,                     // smallest subnormal
        0x000f_ffff_ffff_ffff, // largest subnormal
        0x800f_ffff_ffff_ffff, // negative subnormal
        0x7fef_ffff_ffff_ffff, // f64::MAX
        0xffef_ffff_ffff_ffff, // f64::MIN
        0x0010_0000_0000_0000, // f64::MIN_POSITIVE
        0x3fb9_9999_9999_999a, // 0.1
    ];

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
    fn stale_markers_stay_cheap_exceptions() {
        let mut values: Vec<u64> = (0..240).map(|i| f(f64::from(100 + i) / 100.0)).collect();
        values[100] = STALE_NAN;
        values[239] = STALE_NAN;
        let samples = regular(&values);
        assert_eq!(value_mode(&samples), (VALUE_DECIMAL, Some(PRED_DELTA)));
        let chunk = round_trip(&samples);
        assert!(chunk.len() <= 24, "{} bytes", chunk.len());
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
        let mut rng = Rng(17);
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
                    t += 1 + rng.below(3) as i64;
                    v += rng.below(100) as i64;
                    (t, f(v as f64 / 100.0))
                })
                .collect();
            round_trip(&noisy);
            let random: Vec<RawSample> = (0..n as i64).map(|i| (i, rng.next())).collect();
            round_trip(&random);
        }
    }

    #[test]
    fn time_modes() {
        let v = f(1.0);
        let reg: Vec<RawSample> = (0..240).map(|i| (T0 + 30_000 * i, v)).collect();
        assert_eq!(time_mode(&reg), TIME_REGULAR);
        assert!(round_trip(&reg).len() <= 16);

        // Scrape jitter around a fixed grid, plus a few missed scrapes.
        let mut rng = Rng(7);
        let mut grid = Vec::new();
        let mut slot = 0;
        for _ in 0..240 {
            if rng.chance(0.02) {
                slot += 3;
            }
            grid.push((T0 + 30_000 * slot + rng.below(9) as i64 - 4, v));
            slot += 1;
        }
        assert_eq!(time_mode(&grid), TIME_GRID);
        round_trip(&grid);

        // A sleep loop: each interval is 30 s plus its own jitter.
        let mut t = T0;
        let drift: Vec<RawSample> = (0..240)
            .map(|_| {
                t += 30_000 + rng.below(9) as i64;
                (t, v)
            })
            .collect();
        assert_eq!(time_mode(&drift), TIME_DELTA);
        round_trip(&drift);

        // A steadily lengthening interval.
        let mut t = T0;
        let dod: Vec<RawSample> = (0..240)
            .map(|i| {
                t += 1000 + i * 37;
                (t, v)
            })
            .collect();
        assert_eq!(time_mode(&dod), TIME_DOD);
        round_trip(&dod);

        // Mostly regular with two late scrapes: sparse residuals.
        let mut sparse = reg.clone();
        sparse[50].0 += 4;
        sparse[51].0 += 4;
        sparse[200].0 += 1;
        let chunk = round_trip(&sparse);
        assert!(chunk.len() <= 26, "{} bytes", chunk.len());
    }

    #[test]
    fn value_modes() {
        let constant = regular(&[f(8_201_035_776.0); 240]);
        assert_eq!(value_mode(&constant).0, VALUE_CONSTANT);
        assert!(round_trip(&constant).len() <= 20);
        let constant_raw = regular(&[f(1.0 / 3.0); 240]);
        assert_eq!(value_mode(&constant_raw).0, VALUE_CONSTANT);
        round_trip(&constant_raw);

        // A gauge hovering around a level: predicted by the level.
        let mut rng = Rng(3);
        let level: Vec<u64> = (0..240)
            .map(|_| f(50.0 + rng.below(5) as f64 * 0.5))
            .collect();
        assert_eq!(
            value_mode(&regular(&level)),
            (VALUE_DECIMAL, Some(PRED_LEVEL))
        );
        round_trip(&regular(&level));

        // A counter with a noisy rate: predicted by the delta.
        let mut ticks = 1_087_069i64;
        let delta: Vec<u64> = (0..240)
            .map(|_| {
                ticks += 2900 + rng.below(100) as i64;
                f(ticks as f64 / 100.0)
            })
            .collect();
        assert_eq!(
            value_mode(&regular(&delta)),
            (VALUE_DECIMAL, Some(PRED_DELTA))
        );
        round_trip(&regular(&delta));

        // A smoothly accelerating value: predicted by the delta of deltas.
        let dod: Vec<u64> = (0..240i64)
            .map(|i| f((i * i * 3 + i) as f64 / 1000.0))
            .collect();
        assert_eq!(value_mode(&regular(&dod)), (VALUE_DECIMAL, Some(PRED_DOD)));
        round_trip(&regular(&dod));

        // Computed floats that are not short decimals.
        let xor: Vec<u64> = (0..240).map(|i| f((f64::from(i) * 0.1).sin())).collect();
        assert_eq!(value_mode(&regular(&xor)).0, VALUE_XOR);
        round_trip(&regular(&xor));
        let mut noise = 0;
        let repeats: Vec<u64> = (0..240)
            .map(|i| {
                if i % 10 == 0 {
                    // Around 2^-100: too small for a decimal scale.
                    noise = 0x39b0_0000_0000_0000 | rng.next() >> 12;
                }
                noise
            })
            .collect();
        assert_eq!(value_mode(&regular(&repeats)).0, VALUE_XOR);
        round_trip(&regular(&repeats));
    }

    #[test]
    fn long_decimals_take_the_smaller_coding() {
        // Thirds print with 16 or 17 digits: decimal with huge mantissas
        // (and exceptions), or XOR, whichever is smaller.
        for step in [1.0 / 3.0, 1e-7 / 3.0, 1e9 / 7.0] {
            let samples = regular(&(0..240).map(|i| f(f64::from(i) * step)).collect::<Vec<_>>());
            let size = |encoder: fn(&mut BitWriter, &[RawSample])| {
                let mut w = BitWriter::empty();
                encoder(&mut w, &samples);
                w.bits_since(BitMark::default())
            };
            let chosen = size(encode_values);
            let xor = size(encode_xor);
            assert!(chosen <= xor, "{chosen} > {xor}");
            if let Some(dec) = Decimal::analyze(&samples) {
                let mut w = BitWriter::empty();
                encode_decimal(&mut w, &samples, &dec);
                assert!(chosen <= w.bits_since(BitMark::default()));
            }
            round_trip(&samples);
        }
    }

    #[test]
    fn decimal_scales_and_magnitudes() {
        for &p in &POW10 {
            let values: Vec<u64> = [1i64, -7, 123_456_789, 1 << 53, -(1 << 52) + 1, 0, 42]
                .iter()
                .map(|&m| f(m as f64 / p))
                .collect();
            round_trip(&regular(&values));
        }
        // Integers beyond 2^53 and near i64's limits.
        let big: Vec<u64> = [9.0e18, -9.0e18, 1.0e19, 2f64.powi(62), 2f64.powi(63), 1e300]
            .iter()
            .map(|&v| f(v))
            .collect();
        round_trip(&regular(&big));
        // One value needing many decimals among two-decimal ones.
        let mut mixed: Vec<u64> = (0..100).map(|i| f(f64::from(i) / 100.0)).collect();
        mixed[40] = f(0.123_456_789_012);
        round_trip(&regular(&mixed));
    }

    #[test]
    fn common_divisors_are_used() {
        // Memory in kB reported as bytes; disk I/O in 4 KiB blocks.
        let mut rng = Rng(11);
        let mut kb = 4_000_000i64;
        let mem: Vec<u64> = (0..240)
            .map(|_| {
                kb += rng.below(2001) as i64 - 1000;
                f((kb * 1024) as f64)
            })
            .collect();
        let chunk = round_trip(&regular(&mem));
        // About 11 bits of entropy per sample, not 21.
        assert!(chunk.len() < 240 * 13 / 8, "{} bytes", chunk.len());
        let plan = SeqPlan::new(&[4096, -8192, 0, 4096 * 5]);
        assert_eq!(plan.div.divisor, 4096);
        assert!(plan.signed);
        let plan = SeqPlan::new(&[i64::MIN, 0, i64::MIN]);
        assert_eq!(plan.div.divisor, 1 << 63);
    }

    #[test]
    fn seq_coding_round_trips_extremes() {
        let cases: Vec<Vec<i64>> = vec![
            vec![0; 100],
            vec![5; 100],
            vec![i64::MIN, i64::MAX, 0, -1, 1],
            vec![i64::MIN; 3],
            vec![i64::MAX; 3],
            (0..300)
                .map(|i| if i % 50 == 0 { i64::MIN + i } else { 0 })
                .collect(),
            (0..300).map(|i| if i % 97 == 0 { 3 } else { 0 }).collect(),
            (0..300).map(|i| i64::from(i % 7 == 0)).collect(),
            (0..2000)
                .map(|i: i64| i.wrapping_mul(-0x61c8_8646_80b5_83eb))
                .collect(),
            (0..500).map(|i: i64| 1 << (i % 63)).collect(),
        ];
        for xs in cases {
            let plan = SeqPlan::new(&xs);
            let mut w = BitWriter::new(0);
            plan.write(&mut w, &xs);
            let buf = w.finish();
            let mut r = BitReader::new(&buf[1..]);
            let mut back = Vec::new();
            read_seq(&mut r, xs.len(), &mut back).unwrap();
            assert_eq!(back, xs);
            assert_eq!(r.pos as u64, plan.bits, "planned size is exact");
        }
    }

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

    #[test]
    fn decode_errors() {
        assert_eq!(decode(&[]), Err(ChunkError::Empty));
        assert_eq!(decode(&[0]), Err(ChunkError::UnsupportedVersion(0)));
        assert_eq!(decode(&[2, 0]), Err(ChunkError::UnsupportedVersion(2)));
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
        let mut rng = Rng(99);
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

    // -- Pinned encodings ----------------------------------------------------

    /// FNV-1a, to pin long encodings without spelling out their bytes.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Inputs covering every time mode, value mode and prediction, sparse
    /// and dense residuals, exceptions and several blocks.
    fn pinned_inputs() -> Vec<(&'static str, Vec<RawSample>)> {
        let mut rng = Rng(4242);
        let mut out = vec![
            ("empty", Vec::new()),
            ("single stale marker", vec![(T0, STALE_NAN)]),
            ("constant", regular(&[f(8_201_035_776.0); 240])),
            ("constant raw", regular(&[f(1.0 / 3.0); 20])),
            ("specials", regular(&SPECIALS)),
        ];
        let mut sparse = regular(
            &(0..240)
                .map(|i| f(f64::from(100 + i) / 100.0))
                .collect::<Vec<_>>(),
        );
        sparse[50].0 += 4;
        sparse[51].0 += 4;
        sparse[100].1 = STALE_NAN;
        out.push(("sparse times, decimal delta", sparse));
        let mut slot = 0;
        let grid: Vec<RawSample> = (0..120)
            .map(|i| {
                if i % 40 == 39 {
                    slot += 2;
                }
                slot += 1;
                let t = T0 + 30_000 * slot + rng.below(9) as i64 - 4;
                (t, f(50.0 + rng.below(5) as f64 * 0.5))
            })
            .collect();
        out.push(("grid times, decimal level", grid));
        let mut t = T0;
        let drift: Vec<RawSample> = (0..120i64)
            .map(|i| {
                t += 30_000 + rng.below(9) as i64;
                (t, f((i * i * 3 + i) as f64 / 1000.0))
            })
            .collect();
        out.push(("delta times, decimal dod", drift));
        let mut t = T0;
        let dod: Vec<RawSample> = (0..120i64)
            .map(|i| {
                t += 1000 + i * 37;
                (t, f((i as f64 * 0.1).sin()))
            })
            .collect();
        out.push(("dod times, xor", dod));
        let mut kb = 4_000_000i64;
        let mem: Vec<u64> = (0..240)
            .map(|_| {
                kb += rng.below(2001) as i64 - 1000;
                f((kb * 1024) as f64)
            })
            .collect();
        out.push(("common divisor", regular(&mem)));
        let mut t = -1_000_000;
        let mut v = 0i64;
        let blocks: Vec<RawSample> = (0..MAX_BLOCK + 7)
            .map(|_| {
                t += 1 + rng.below(3) as i64;
                v += rng.below(100) as i64;
                (t, f(v as f64 / 100.0))
            })
            .collect();
        out.push(("two blocks", blocks));
        for kind in 0..workload::KINDS {
            out.push(("workload", workload::series(&mut rng, kind, 240)));
        }
        out
    }

    /// The encodings of `pinned_inputs` this format version has always
    /// written: length, FNV-1a of the bytes, and the bytes themselves when
    /// short. A change here changes what storage writes to disk.
    const PINNED: [(usize, u64, &str); 27] = [
        (2, 0x082f_a207_b4e9_6644, "0180"),
        (
            17,
            0xc7af_4ce7_8138_6c60,
            "0140ae2f3f95a0001ffc00000000000080",
        ),
        (
            18,
            0x5be5_e335_e12e_ef71,
            "0113c015c5e7f2b40002b90023e8d1e00000",
        ),
        (
            19,
            0xdfe9_debb_8f3d_01bd,
            "013202b8bcfe568000573006cf5e9895015554",
        ),
        (98, 0x16f4_cee7_a5dd_b5c2, ""),
        (
            27,
            0xea70_0307_0a8d_2d52,
            "0113c015c5e7f2b40032bcf6cfe3b6d95c48908928990cd446b180",
        ),
        (124, 0xc0d4_2ac4_5470_0090, ""),
        (89, 0xb088_5686_0b07_500f, ""),
        (921, 0x6369_2fd0_5119_bdf0, ""),
        (362, 0xfbc3_ddfa_20c2_274f, ""),
        (4477, 0x5eb5_5b99_d972_bb9f, ""),
        (13, 0x3e22_e966_8cbf_592f, "0113c015c5e7f2e36682b90300"),
        (12, 0xf2c9_2287_762e_3126, "0113c015c5e7f2c05182b904"),
        (13, 0x1a57_826e_e03e_0374, "0113c015c5e7f2e30b82b90300"),
        (318, 0x6289_5cd1_16ec_8c9f, ""),
        (49, 0xa3c6_8137_4798_956f, ""),
        (60, 0x207f_38af_3374_05b4, ""),
        (292, 0x0872_81de_c26a_38ee, ""),
        (704, 0xebdb_5cff_bb64_7f12, ""),
        (113, 0x179f_c68f_a04e_fbd7, ""),
        (351, 0xdf25_aa94_484c_5cb4, ""),
        (
            18,
            0x6162_de5e_249c_3e4f,
            "0113c015c5e7f2db6102b90022a13b860000",
        ),
        (12, 0xa0e4_e45c_0ccc_6809, "0113c015c5e7f2d18102b904"),
        (13, 0x0e26_f17c_604f_36c0, "0113c015c5e7f2d94f02b901c0"),
        (267, 0x7d73_6e14_4056_acd9, ""),
        (356, 0x620e_98c0_7e24_e436, ""),
        (141, 0x15af_8614_f7a2_8b4d, ""),
    ];

    #[test]
    fn encodings_are_pinned() {
        let inputs = pinned_inputs();
        assert_eq!(inputs.len(), PINNED.len());
        for (i, ((name, samples), &(len, hash, bytes))) in inputs.iter().zip(&PINNED).enumerate() {
            let chunk = round_trip(samples);
            if !bytes.is_empty() {
                assert_eq!(hex(&chunk), bytes, "input {i}: {name}");
            }
            assert_eq!(
                (chunk.len(), fnv1a(&chunk)),
                (len, hash),
                "input {i}: {name}"
            );
        }
    }

    // -- Property tests ------------------------------------------------------

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
    }

    // -- Realistic workload --------------------------------------------------

    /// A small deterministic generator (SplitMix64); arithmetic only, so the
    /// workload is identical on every platform.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn chance(&mut self, p: f64) -> bool {
            self.unit() < p
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.unit()
        }
        /// Roughly standard normal (Irwin-Hall of four uniforms).
        fn normal(&mut self) -> f64 {
            (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 3f64.sqrt()
        }
        /// Log-uniform in [10^lo, 10^hi) without transcendental functions.
        fn log_range(&mut self, lo: i32, hi: i32) -> f64 {
            let e = lo + self.below((hi - lo) as u64) as i32;
            10f64.powi(e) * self.range(1.0, 10.0)
        }
    }

    /// Synthetic node-exporter-like series: 30 s scrapes, 240 per chunk.
    mod workload {
        use super::{RawSample, Rng, STALE_NAN};

        pub const CATEGORIES: [&str; 4] =
            ["constant", "decimal counter", "integer counter", "gauge"];
        /// Number of distinct series kinds `series` knows.
        pub const KINDS: usize = 16;

        /// The category of series `i` of a workload: 30% constant, 30%
        /// decimal counters, 20% integer counters, 20% gauges.
        pub fn category(i: usize) -> usize {
            match i % 10 {
                0..=2 => 0,
                3..=5 => 1,
                6 | 7 => 2,
                _ => 3,
            }
        }

        fn timestamps(rng: &mut Rng, n: usize) -> Vec<i64> {
            let start = 1_700_000_000_000 + rng.below(30_000) as i64;
            // Most targets are stamped on the dot; a fifth jitter by a few
            // ms; a tenth miss the odd scrape.
            let jitter = if rng.chance(0.2) {
                1 + rng.below(5) as i64
            } else {
                0
            };
            let gappy = rng.chance(0.1);
            let mut slot = 0;
            (0..n)
                .map(|_| {
                    if gappy && rng.chance(0.02) {
                        slot += 1 + rng.below(10) as i64;
                    }
                    let j = if jitter > 0 {
                        rng.below(2 * jitter as u64 + 1) as i64 - jitter
                    } else {
                        0
                    };
                    slot += 1;
                    start + (slot - 1) * 30_000 + j
                })
                .collect()
        }

        /// Series of kind `kind` (its category is `category(kind)`).
        pub fn series(rng: &mut Rng, kind: usize, n: usize) -> Vec<RawSample> {
            let ts = timestamps(rng, n);
            let dt: Vec<f64> = std::iter::once(30.0)
                .chain(ts.windows(2).map(|w| (w[1] - w[0]) as f64 / 1000.0))
                .collect();
            let values: Vec<f64> = match category(kind) {
                0 => constant(rng),
                1 => decimal_counter(rng, &dt),
                2 => integer_counter(rng, &dt),
                _ => gauge(rng, n),
            }
            .into_iter()
            .take(n)
            .collect();
            let mut out: Vec<RawSample> = ts
                .into_iter()
                .zip(values)
                .map(|(t, v)| (t, v.to_bits()))
                .collect();
            // Now and then a target went away: a staleness marker.
            if rng.chance(0.03) {
                let at = rng.below(n as u64) as usize;
                out[at].1 = STALE_NAN;
            }
            out
        }

        fn constant(rng: &mut Rng) -> Vec<f64> {
            const VALUES: [f64; 12] = [
                0.0,
                1.0,
                1.0,
                1.0,
                0.0,
                2.0,
                16.0,
                64.0,
                1500.0,
                8_201_035_776.0,
                3.5e9,
                0.5,
            ];
            vec![VALUES[rng.below(VALUES.len() as u64) as usize]; 1 << 16]
        }

        /// CPU seconds in ticks of 1/100 s, or busy time in ms.
        fn decimal_counter(rng: &mut Rng, dt: &[f64]) -> Vec<f64> {
            let (rate, noise, scale, rare) = match rng.below(10) {
                // Idle time of a CPU: ~100 ticks/s, a few % of variation.
                0..=2 => (rng.range(60.0, 100.0), 0.03, 100.0, false),
                // User or system time.
                3..=5 => (rng.range(0.5, 20.0), 0.3, 100.0, false),
                // Disk busy time in ms.
                6 => (rng.range(1.0, 300.0), 0.5, 1000.0, false),
                // nice, irq, steal, iowait: mostly idle.
                _ => (0.0, 0.0, 100.0, true),
            };
            let mut units = rng.range(1e5, 1e8).round();
            dt.iter()
                .map(|&dt| {
                    if rare {
                        if rng.chance(0.15) {
                            units += (1 + rng.below(3)) as f64;
                        }
                    } else {
                        units += (rate * dt * (1.0 + noise * rng.normal())).round().max(0.0);
                    }
                    units / scale
                })
                .collect()
        }

        /// Byte and packet counters.
        fn integer_counter(rng: &mut Rng, dt: &[f64]) -> Vec<f64> {
            let kind = rng.below(20);
            let rate = match kind {
                0..=6 => rng.log_range(3, 6),
                13..=16 => rng.log_range(0, 3),
                _ => 0.0,
            };
            let mut total = rng.range(0.0, 1e12).round();
            dt.iter()
                .map(|&dt| {
                    total += match kind {
                        // Busy network interface, bytes.
                        0..=6 => (rate * dt * (1.0 + 0.5 * rng.normal())).round().max(0.0),
                        // Idle interface: the odd broadcast.
                        7..=11 => {
                            if rng.chance(0.5) {
                                0.0
                            } else {
                                60.0 + rng.below(2000) as f64
                            }
                        }
                        // Packets.
                        13..=16 => (rate * dt * (1.0 + 0.3 * rng.normal())).round().max(0.0),
                        // Disk bytes, in 4 KiB pages.
                        _ => {
                            if rng.chance(0.4) {
                                0.0
                            } else {
                                4096.0 * rng.below(256) as f64
                            }
                        }
                    };
                    total
                })
                .collect()
        }

        fn gauge(rng: &mut Rng, n: usize) -> Vec<f64> {
            match rng.below(20) {
                // Memory bytes (from kB): a random walk in pages of 4 kB.
                0..=5 => {
                    let mut kb = rng.range(1e6, 6e7).round();
                    (0..n)
                        .map(|_| {
                            if rng.chance(0.8) {
                                kb += 4.0 * (1250.0 * rng.normal()).round();
                            }
                            kb * 1024.0
                        })
                        .collect()
                }
                // Temperatures in whole, half or eighth degrees.
                6..=10 => {
                    let step = [1.0, 1.0, 0.5, 0.125][rng.below(4) as usize];
                    let level = rng.range(35.0, 75.0).round();
                    let mut t = level;
                    (0..n)
                        .map(|_| {
                            if rng.chance(0.4) {
                                let up = if t < level { 0.6 } else { 0.4 };
                                t += if rng.chance(up) { step } else { -step };
                            }
                            t
                        })
                        .collect()
                }
                // Load average: an exponentially smoothed run queue.
                11..=14 => {
                    let busy = rng.range(0.0, 4.0);
                    let mut load = busy;
                    (0..n)
                        .map(|_| {
                            let running = (busy + rng.normal()).max(0.0);
                            load = load * 0.6 + running * 0.4;
                            (load * 100.0).round() / 100.0
                        })
                        .collect()
                }
                // Free filesystem bytes: slow consumption in 4 KiB blocks.
                15..=17 => {
                    let mut free = 4096.0 * rng.range(1e6, 1e9).round();
                    (0..n)
                        .map(|_| {
                            if rng.chance(0.5) {
                                free -= 4096.0 * rng.below(1000) as f64;
                            }
                            if rng.chance(0.01) {
                                free += 4096.0 * rng.below(1_000_000) as f64;
                            }
                            free
                        })
                        .collect()
                }
                // Process count.
                _ => {
                    let mut procs = 100.0 + rng.below(400) as f64;
                    (0..n)
                        .map(|_| {
                            procs = (procs + rng.below(9) as f64 - 4.0).max(1.0);
                            procs
                        })
                        .collect()
                }
            }
        }
    }

    /// Bits the original Gorilla scheme would need, for comparison.
    fn gorilla_bits(samples: &[RawSample]) -> u64 {
        let mut bits = 64 + 64;
        if samples.len() < 2 {
            return bits;
        }
        bits += 14;
        let mut prev_delta = samples[1].0 - samples[0].0;
        for w in samples[1..].windows(2) {
            let delta = w[1].0 - w[0].0;
            let dod = delta - prev_delta;
            prev_delta = delta;
            bits += match dod {
                0 => 1,
                -63..=64 => 2 + 7,
                -255..=256 => 3 + 9,
                -2047..=2048 => 4 + 12,
                _ => 4 + 32,
            };
        }
        let (mut lead, mut trail) = (u32::MAX, 0);
        for w in samples.windows(2) {
            let x = w[0].1 ^ w[1].1;
            if x == 0 {
                bits += 1;
                continue;
            }
            let (l, t) = (x.leading_zeros().min(31), x.trailing_zeros());
            if lead != u32::MAX && l >= lead && t >= trail {
                bits += 2 + u64::from(64 - lead - trail);
            } else {
                bits += 2 + 5 + 6 + u64::from(64 - l - t);
                (lead, trail) = (l, t);
            }
        }
        bits
    }

    #[test]
    fn realistic_workload_size() {
        // The figure the format is tuned for: 240 samples a chunk (2 h of
        // 30 s scrapes). Shorter and longer chunks are reported too.
        for (per_chunk, limit) in [(240, 0.92), (120, 1.015), (1000, 0.86)] {
            let mut rng = Rng(2024);
            let mut bytes = [0usize; 4];
            let mut samples = [0usize; 4];
            let mut gorilla = 0u64;
            for i in 0..480_000 / per_chunk {
                let s = workload::series(&mut rng, i, per_chunk);
                let category = workload::category(i);
                bytes[category] += round_trip(&s).len();
                samples[category] += s.len();
                gorilla += gorilla_bits(&s).div_ceil(8);
            }
            let total: usize = samples.iter().sum();
            let per_sample = bytes.iter().sum::<usize>() as f64 / total as f64;
            let categories: Vec<String> = workload::CATEGORIES
                .iter()
                .zip(bytes.iter().zip(&samples))
                .map(|(name, (&b, &n))| format!("{name} {:.3}", b as f64 / n as f64))
                .collect();
            eprintln!(
                "{per_chunk:>4} samples/chunk: {per_sample:.3} bytes/sample ({}; Gorilla {:.3})",
                categories.join(", "),
                gorilla as f64 / total as f64
            );
            assert!(
                per_sample < limit,
                "{per_sample:.3} bytes/sample at {per_chunk}/chunk"
            );
        }
    }
}
