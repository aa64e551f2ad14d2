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

/// The shared generator (SplitMix64). These tests draw with its `modulo`,
/// not its `below`: that is the stream the pinned encodings came from.
pub(super) use dcmon_testkit::Rng;
