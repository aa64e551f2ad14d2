//! Timestamp coding of one block. Regular spacing costs nothing per sample;
//! otherwise the residuals against the cheapest of three predictions (the
//! median interval, the previous interval, or the scrape grid with its
//! phase) go to the sequence coder.

use std::cell::RefCell;

use super::ChunkError;
use super::RawSample;
use super::arith::{median, svar_bits, unzigzag, zigzag};
use super::bits::{BitReader, BitWriter};
use super::seq::{cheapest, read_seq};

pub(super) const TIME_REGULAR: u64 = 0;

pub(super) const TIME_DELTA: u64 = 1;

const TIME_DOD: u64 = 2;

const TIME_GRID: u64 = 3;

thread_local! {
    /// The timestamps of the last block coded on this thread, and their
    /// coding: every series of a host carries the host's timestamps, and
    /// compaction codes a host's series one after the other, so working
    /// out the cheapest prediction once per host is enough.
    static LAST: RefCell<Option<(Vec<i64>, BitWriter)>> = const { RefCell::new(None) };
}

pub(super) fn encode_times(w: &mut BitWriter, samples: &[RawSample]) {
    LAST.with_borrow_mut(|last| {
        if let Some((times, coded)) = last.as_ref()
            && times.len() == samples.len()
            && times.iter().zip(samples).all(|(t, s)| *t == s.0)
        {
            w.append(coded);
            return;
        }
        let mut coded = BitWriter::empty();
        code_times(&mut coded, samples);
        w.append(&coded);
        *last = Some((samples.iter().map(|s| s.0).collect(), coded));
    });
}

/// Codes the timestamps of one block (`samples.len() > 1`).
fn code_times(w: &mut BitWriter, samples: &[RawSample]) {
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

pub(super) fn decode_times(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::chunk::testkit::{Rng, T0, f, round_trip};

    fn time_mode(samples: &[RawSample]) -> u64 {
        let mut w = BitWriter::new(0);
        encode_times(&mut w, samples);
        let buf = w.finish();
        BitReader::new(&buf[1..]).get(2)
    }

    #[test]
    fn a_repeated_block_of_timestamps_is_coded_as_the_first_time() {
        // Jittered, so the cheapest prediction has to be worked out.
        let mut rng = Rng::new(11);
        let times: Vec<i64> = (0..50)
            .map(|i| T0 + 30_000 * i + rng.modulo(9) as i64 - 4)
            .collect();
        let with = |values: &[u64]| -> Vec<RawSample> {
            times.iter().copied().zip(values.iter().copied()).collect()
        };
        let first = with(&[f(1.0); 50]);
        let second: Vec<u64> = (0..50).map(|i| f(f64::from(i) * 0.5)).collect();
        let second = with(&second);
        // Coded on a fresh thread, nothing cached.
        let fresh = {
            let second = second.clone();
            std::thread::spawn(move || super::super::encode(&second))
                .join()
                .unwrap()
        };
        let _ = super::super::encode(&first);
        let cached = super::super::encode(&second);
        assert_eq!(cached, fresh);
        assert_eq!(super::super::decode(&cached), Ok(second));
    }

    #[test]
    fn time_modes() {
        let v = f(1.0);
        let reg: Vec<RawSample> = (0..240).map(|i| (T0 + 30_000 * i, v)).collect();
        assert_eq!(time_mode(&reg), TIME_REGULAR);
        assert!(round_trip(&reg).len() <= 16);

        // Scrape jitter around a fixed grid, plus a few missed scrapes.
        let mut rng = Rng::new(7);
        let mut grid = Vec::new();
        let mut slot = 0;
        for _ in 0..240 {
            if rng.chance(0.02) {
                slot += 3;
            }
            grid.push((T0 + 30_000 * slot + rng.modulo(9) as i64 - 4, v));
            slot += 1;
        }
        assert_eq!(time_mode(&grid), TIME_GRID);
        round_trip(&grid);

        // A sleep loop: each interval is 30 s plus its own jitter.
        let mut t = T0;
        let drift: Vec<RawSample> = (0..240)
            .map(|_| {
                t += 30_000 + rng.modulo(9) as i64;
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
}
