//! Value coding of one block: one constant; decimal mantissas `m / 10^k`
//! predicted by level, delta or delta of deltas, with the values that are
//! not short decimals set aside as exceptions; or the XOR coding when that
//! comes out smaller.

use super::arith::{median, svar_bits, unzigzag, zigzag};
use super::bits::{BitMark, BitReader, BitWriter};
use super::seq::{cheapest, read_seq};
use super::xor::{decode_xor, encode_xor};
use super::{ChunkError, RawSample};

pub(super) const VALUE_CONSTANT: u64 = 0;

const VALUE_DECIMAL: u64 = 1;

pub(super) const VALUE_XOR: u64 = 2;

const PRED_LEVEL: u64 = 0;

const PRED_DELTA: u64 = 1;

const PRED_DOD: u64 = 2;

/// The Prometheus staleness marker, a NaN with payload 2.
pub(super) const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Largest decimal scale: 10^22 is the largest power of ten an `f64` holds
/// exactly, which keeps `m / 10^k` a single correctly rounded division.
pub(super) const MAX_SCALE: usize = 22;

pub(super) const POW10: [f64; MAX_SCALE + 1] = [
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

pub(super) fn encode_values(w: &mut BitWriter, samples: &[RawSample]) {
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

pub(super) fn decode_values(
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
        if p == 1.0 {
            // Whole numbers (counts, bytes): `x / 1.0` is `x`, so the
            // division per sample is left out.
            for (s, m) in out.iter_mut().zip(mantissas) {
                s.1 = (m as f64).to_bits();
            }
        } else {
            for (s, m) in out.iter_mut().zip(mantissas) {
                s.1 = ((m as f64) / p).to_bits();
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::chunk::testkit::{Rng, f, regular, round_trip};

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
    fn value_modes() {
        let constant = regular(&[f(8_201_035_776.0); 240]);
        assert_eq!(value_mode(&constant).0, VALUE_CONSTANT);
        assert!(round_trip(&constant).len() <= 20);
        let constant_raw = regular(&[f(1.0 / 3.0); 240]);
        assert_eq!(value_mode(&constant_raw).0, VALUE_CONSTANT);
        round_trip(&constant_raw);

        // A gauge hovering around a level: predicted by the level.
        let mut rng = Rng::new(3);
        let level: Vec<u64> = (0..240)
            .map(|_| f(50.0 + rng.modulo(5) as f64 * 0.5))
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
                ticks += 2900 + rng.modulo(100) as i64;
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
}
