//! The codec's round trips and its refusals of damaged chunks, over
//! generated workloads and hand-made edge cases.

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
    assert_eq!(decode(&[4, 0]), Err(ChunkError::UnsupportedVersion(4)));
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

proptest! {
    /// Chunks of one scrape's series (the same timestamps, other values),
    /// and damaged copies of them, decoded in turn with one memo: each
    /// gives exactly what decoding it alone gives, samples or error.
    #[test]
    fn prop_a_memo_changes_no_decoding(
        times in arb_series(),
        others in proptest::collection::vec(arb_series(), 1..5),
        damage in proptest::collection::vec((any::<usize>(), any::<usize>(), 0u8..4), 0..8),
    ) {
        let mut chunks = vec![encode(&times)];
        for other in &others {
            let values = other.iter().map(|s| s.1).chain(std::iter::repeat(f(1.0)));
            let shared: Vec<RawSample> = times.iter().map(|s| s.0).zip(values).collect();
            chunks.push(encode(&shared));
        }
        let whole = chunks.len();
        for (pick, at, how) in damage {
            let mut chunk = chunks[pick % whole].clone();
            match how {
                0 => {
                    let bit = at % (chunk.len() * 8);
                    chunk[bit / 8] ^= 0x80 >> (bit % 8);
                }
                1 => chunk.truncate(at % (chunk.len() + 1)),
                2 => chunk = append(&chunk, &[(i64::MAX, f(2.0))]),
                _ => chunk.push(0),
            }
            chunks.push(chunk);
        }
        let mut memo = TimesMemo::new();
        for chunk in chunks.iter().chain(&chunks) {
            // Onto samples already there, as a reader appends.
            let mut with = vec![(i64::MIN, 0)];
            let mut alone = with.clone();
            let result = decode_into_with(chunk, &mut with, &mut memo);
            prop_assert_eq!(result, decode_into(chunk, &mut alone));
            prop_assert_eq!(with, alone);
        }
        // The other series' chunks took the first's times at least.
        prop_assert!(memo.hits() >= others.len(), "{} hits", memo.hits());
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

#[test]
fn version_1_chunks_still_decode() {
    // Chunks the first format (no lanes) wrote for the workload series,
    // each of 300 samples from `Rng::new(1000 + kind)`: storage written
    // by earlier builds is read as it was.
    let written = include_str!("testdata/version1.hex");
    let mut chunks = 0;
    for (kind, line) in written.lines().enumerate() {
        let bytes: Vec<u8> = (0..line.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(bytes[0], 1);
        let mut rng = Rng::new(1000 + kind as u64);
        let samples = workload::series(&mut rng, kind, 300);
        assert_eq!(decode(&bytes).unwrap(), samples, "kind {kind}");
        // Written again, it is the current format, with the same samples.
        let again = encode(&samples);
        assert_eq!(again[0], VERSION);
        assert_eq!(decode(&again).unwrap(), samples);
        chunks += 1;
    }
    assert_eq!(chunks, workload::KINDS);
}
