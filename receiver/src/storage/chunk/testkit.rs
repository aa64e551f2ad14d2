//! Inputs shared by the codec's tests: sample builders, the special float
//! values, and a deterministic generator.

use super::values::STALE_NAN;
use super::{RawSample, VERSION, decode, encode};

pub(super) const T0: i64 = 1_700_000_000_000;

pub(super) fn f(v: f64) -> u64 {
    v.to_bits()
}

pub(super) fn regular(values: &[u64]) -> Vec<RawSample> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| (T0 + 30_000 * i as i64, v))
        .collect()
}

#[track_caller]
pub(super) fn round_trip(samples: &[RawSample]) -> Vec<u8> {
    let chunk = encode(samples);
    assert_eq!(chunk[0], VERSION);
    let back = decode(&chunk).expect("decodes");
    assert_eq!(back.len(), samples.len());
    for (i, (a, b)) in samples.iter().zip(&back).enumerate() {
        assert_eq!(a, b, "sample {i} differs: {a:x?} vs {b:x?}");
    }
    chunk
}

pub(super) const SPECIALS: [u64; 16] = [
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

/// A small deterministic generator (SplitMix64); arithmetic only, so the
/// workload is identical on every platform.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    pub(super) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Roughly standard normal (Irwin-Hall of four uniforms).
    pub(super) fn normal(&mut self) -> f64 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 3f64.sqrt()
    }
    /// Log-uniform in [10^lo, 10^hi) without transcendental functions.
    pub(super) fn log_range(&mut self, lo: i32, hi: i32) -> f64 {
        let e = lo + self.below((hi - lo) as u64) as i32;
        10f64.powi(e) * self.range(1.0, 10.0)
    }
}
