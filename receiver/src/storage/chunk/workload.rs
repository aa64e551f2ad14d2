//! Synthetic node-exporter-like series (30 s scrapes, 240 per chunk), and
//! the size the codec reaches on them against Gorilla's.

use super::RawSample;
use super::testkit::{Rng, round_trip};
use super::values::STALE_NAN;

pub(super) const CATEGORIES: [&str; 4] =
    ["constant", "decimal counter", "integer counter", "gauge"];
/// Number of distinct series kinds `series` knows.
pub(super) const KINDS: usize = 16;

/// The category of series `i` of a workload: 30% constant, 30%
/// decimal counters, 20% integer counters, 20% gauges.
pub(super) fn category(i: usize) -> usize {
    match i % 10 {
        0..=2 => 0,
        3..=5 => 1,
        6 | 7 => 2,
        _ => 3,
    }
}

fn timestamps(rng: &mut Rng, n: usize) -> Vec<i64> {
    let start = 1_700_000_000_000 + rng.modulo(30_000) as i64;
    // Most targets are stamped on the dot; a fifth jitter by a few
    // ms; a tenth miss the odd scrape.
    let jitter = if rng.chance(0.2) {
        1 + rng.modulo(5) as i64
    } else {
        0
    };
    let gappy = rng.chance(0.1);
    let mut slot = 0;
    (0..n)
        .map(|_| {
            if gappy && rng.chance(0.02) {
                slot += 1 + rng.modulo(10) as i64;
            }
            let j = if jitter > 0 {
                rng.modulo(2 * jitter as u64 + 1) as i64 - jitter
            } else {
                0
            };
            slot += 1;
            start + (slot - 1) * 30_000 + j
        })
        .collect()
}

/// Series of kind `kind` (its category is `category(kind)`).
pub(super) fn series(rng: &mut Rng, kind: usize, n: usize) -> Vec<RawSample> {
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
        let at = rng.modulo(n as u64) as usize;
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
    vec![VALUES[rng.modulo(VALUES.len() as u64) as usize]; 1 << 16]
}

/// CPU seconds in ticks of 1/100 s, or busy time in ms.
fn decimal_counter(rng: &mut Rng, dt: &[f64]) -> Vec<f64> {
    let (rate, noise, scale, rare) = match rng.modulo(10) {
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
                    units += (1 + rng.modulo(3)) as f64;
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
    let kind = rng.modulo(20);
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
                        60.0 + rng.modulo(2000) as f64
                    }
                }
                // Packets.
                13..=16 => (rate * dt * (1.0 + 0.3 * rng.normal())).round().max(0.0),
                // Disk bytes, in 4 KiB pages.
                _ => {
                    if rng.chance(0.4) {
                        0.0
                    } else {
                        4096.0 * rng.modulo(256) as f64
                    }
                }
            };
            total
        })
        .collect()
}

fn gauge(rng: &mut Rng, n: usize) -> Vec<f64> {
    match rng.modulo(20) {
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
            let step = [1.0, 1.0, 0.5, 0.125][rng.modulo(4) as usize];
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
                        free -= 4096.0 * rng.modulo(1000) as f64;
                    }
                    if rng.chance(0.01) {
                        free += 4096.0 * rng.modulo(1_000_000) as f64;
                    }
                    free
                })
                .collect()
        }
        // Process count.
        _ => {
            let mut procs = 100.0 + rng.modulo(400) as f64;
            (0..n)
                .map(|_| {
                    procs = (procs + rng.modulo(9) as f64 - 4.0).max(1.0);
                    procs
                })
                .collect()
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
    // (The lane lengths of format 3 take about 0.005 bytes/sample at 240.)
    for (per_chunk, limit) in [(240, 0.93), (120, 1.015), (1000, 0.86)] {
        let mut rng = Rng::new(2024);
        let mut bytes = [0usize; 4];
        let mut samples = [0usize; 4];
        let mut gorilla = 0u64;
        for i in 0..480_000 / per_chunk {
            let s = series(&mut rng, i, per_chunk);
            let category = category(i);
            bytes[category] += round_trip(&s).len();
            samples[category] += s.len();
            gorilla += gorilla_bits(&s).div_ceil(8);
        }
        let total: usize = samples.iter().sum();
        let per_sample = bytes.iter().sum::<usize>() as f64 / total as f64;
        let categories: Vec<String> = CATEGORIES
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
