//! The exact bytes this format version writes for representative inputs,
//! so that no change to the encoder alters what storage has on disk
//! unnoticed.

use super::testkit::{Rng, SPECIALS, T0, f, regular, round_trip};
use super::values::STALE_NAN;
use super::{MAX_BLOCK, RawSample, workload};

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
    let mut rng = Rng::new(4242);
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
            let t = T0 + 30_000 * slot + rng.modulo(9) as i64 - 4;
            (t, f(50.0 + rng.modulo(5) as f64 * 0.5))
        })
        .collect();
    out.push(("grid times, decimal level", grid));
    let mut t = T0;
    let drift: Vec<RawSample> = (0..120i64)
        .map(|i| {
            t += 30_000 + rng.modulo(9) as i64;
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
            kb += rng.modulo(2001) as i64 - 1000;
            f((kb * 1024) as f64)
        })
        .collect();
    out.push(("common divisor", regular(&mem)));
    let mut t = -1_000_000;
    let mut v = 0i64;
    let blocks: Vec<RawSample> = (0..MAX_BLOCK + 7)
        .map(|_| {
            t += 1 + rng.modulo(3) as i64;
            v += rng.modulo(100) as i64;
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
    (2, 0x0835_6e07_b4ed_7996, "0380"),
    (
        17,
        0x203b_5d73_0879_035e,
        "0340ae2f3f95a0001ffc00000000000080",
    ),
    (
        18,
        0xedae_c7e9_e760_7c5f,
        "0313c015c5e7f2b40002b90023e8d1e00000",
    ),
    (
        19,
        0x5694_38ea_90ac_605b,
        "033202b8bcfe568000573006cf5e9895015554",
    ),
    (98, 0x3b06_8e77_24d8_75c8, ""),
    (
        27,
        0x89cf_a7cc_8791_843c,
        "0313c015c5e7f2b40032bcf6cfe3b6d95c48908928990cd446b180",
    ),
    (124, 0x3db3_f65e_6a77_0c6a, ""),
    (89, 0x96c2_72c8_3d05_cccd, ""),
    (921, 0xf51b_b8f8_2a68_fb82, ""),
    (366, 0x3c2b_89e2_931c_8c9c, ""),
    (4484, 0x7a47_1455_41c0_24a1, ""),
    (13, 0x6198_0d39_8f52_2dd9, "0313c015c5e7f2e36682b90300"),
    (12, 0xc95c_7149_5904_06f8, "0313c015c5e7f2c05182b904"),
    (13, 0xc486_9623_1b3d_f74e, "0313c015c5e7f2e30b82b90300"),
    (323, 0x987d_32c3_0ce5_c3b7, ""),
    (49, 0x5d09_ec93_86c8_d5b5, ""),
    (60, 0x3b91_52f2_dae4_d626, ""),
    (299, 0xf1c2_92fc_74ab_f341, ""),
    (709, 0x676f_292e_2a6d_1e29, ""),
    (117, 0x9711_a525_1927_01b3, ""),
    (355, 0xed42_7fb2_853e_7d07, ""),
    (
        18,
        0x5d4b_0811_803d_5689,
        "0313c015c5e7f2db6102b90022a13b860000",
    ),
    (12, 0x21af_374d_f562_5a5b, "0313c015c5e7f2d18102b904"),
    (13, 0xdd88_6e8e_0e95_356a, "0313c015c5e7f2d94f02b901c0"),
    (271, 0x9fb8_5384_b4a8_bd82, ""),
    (363, 0x6780_298c_f13e_5079, ""),
    (144, 0x7e0a_e8c7_051a_ed79, ""),
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
