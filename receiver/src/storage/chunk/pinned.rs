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
