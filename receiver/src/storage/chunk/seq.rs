//! Integer sequences: the residual coder shared by timestamps and values.
//!
//! A sequence is divided by its residuals' common divisor, zigzagged when
//! any residual is negative, and written dense (a Huffman symbol per
//! residual) or sparse (zero runs and nonzero values, each with a code of
//! its own), whichever is exactly smaller.
//!
//! A dense sequence of at least [`LANE_MIN`] residuals is written as
//! [`LANES`] lanes, consecutive parts of it one after the other, with the
//! bit lengths of all but the last in front. Each residual's code can only
//! be found once the one before it is read, so one stream is decoded one
//! lookup at a time; with lanes whose starts are known, the decoder follows
//! all of them at once and the processor overlaps their lookups (format 3;
//! format 1 chunks have no lanes).

use super::ChunkError;
use super::arith::{ExactDiv, bit_len, svar_bits, to_unsigned, unzigzag, uvar_bits, zigzag};
use super::bits::{BitReader, BitWriter};
use super::huffman::{Code, Histogram, Lens, Table};

/// Lanes a long dense sequence is written in.
pub(super) const LANES: usize = 4;

/// Shortest dense sequence written in lanes: below it, what the lane
/// lengths cost in bits is not won back in decoding time.
pub(super) const LANE_MIN: usize = 128;

/// Where lane `k` of `count` residuals in `lanes` lanes starts: the first
/// `count % lanes` take one residual more than the rest.
pub(super) fn lane_start(count: usize, lanes: usize, k: usize) -> usize {
    k * (count / lanes) + k.min(count % lanes)
}

/// The cheapest of candidate residual sequences, each with the header bits
/// it needs besides: its index and plan. Candidates far behind the best by
/// a rough estimate are not planned at all.
pub(super) fn cheapest(candidates: &[(Vec<i64>, u64)]) -> (usize, SeqPlan) {
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
pub(super) struct SeqPlan {
    bits: u64,
    signed: bool,
    div: ExactDiv,
    dense: Lens,
    /// Bits of each lane's codes when written dense in lanes.
    lanes: Option<[u64; LANES]>,
    /// `Some(nonzero count, gap code, value code)` for sparse coding.
    sparse: Option<(u64, Lens, Lens)>,
}

impl SeqPlan {
    pub(super) fn new(xs: &[i64]) -> Self {
        let signed = xs.iter().any(|&x| x < 0);
        let div = ExactDiv::common(xs);
        let unsigned = |x: i64| to_unsigned(div.apply(x), signed);
        // A histogram per lane, filled a residual of each lane at a time,
        // so that runs of one value do not serialize on a single counter.
        let mut lengths = [[0u32; 65]; LANES];
        let mut small = [[0u32; 33]; LANES];
        let n = xs.len();
        let starts: [usize; LANES] = std::array::from_fn(|k| lane_start(n, LANES, k));
        for i in 0..n / LANES {
            for k in 0..LANES {
                let u = unsigned(xs[starts[k] + i]);
                lengths[k][bit_len(u) as usize] += 1;
                small[k][u.min(32) as usize] += 1;
            }
        }
        // The lanes with one residual more.
        for (k, &start) in starts.iter().enumerate().take(n % LANES) {
            let u = unsigned(xs[start + n / LANES]);
            lengths[k][bit_len(u) as usize] += 1;
            small[k][u.min(32) as usize] += 1;
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
        let lanes = (n >= LANE_MIN).then(|| {
            let small = small.map(|lane| std::array::from_fn(|u| lane[u]));
            std::array::from_fn(|k| dense.payload_bits(&small[k], &lengths[k]))
        });
        let mut plan = Self {
            bits: header + dense.bits + lanes.as_ref().map_or(0, lane_header_bits),
            signed,
            div,
            dense,
            lanes,
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
                plan.lanes = None;
                plan.sparse = Some((nonzero, gap_code, val_code));
            }
        }
        plan
    }

    pub(super) fn write(&self, w: &mut BitWriter, xs: &[i64]) {
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
                if let Some(lanes) = &self.lanes {
                    write_lane_header(w, lanes);
                }
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

/// Bits of the lane lengths in front of the lanes: the first lane's,
/// then how much each next one but the last differs from it (the lanes of
/// one sequence are about as long).
fn lane_header_bits(lanes: &[u64; LANES]) -> u64 {
    let first = lanes[0];
    u64::from(uvar_bits(first))
        + lanes[1..LANES - 1]
            .iter()
            .map(|&l| u64::from(svar_bits(l.wrapping_sub(first) as i64)))
            .sum::<u64>()
}

fn write_lane_header(w: &mut BitWriter, lanes: &[u64; LANES]) {
    let first = lanes[0];
    w.put_uvar(first);
    for &l in &lanes[1..LANES - 1] {
        w.put_uvar(zigzag(l.wrapping_sub(first) as i64));
    }
}

/// The bit positions where the lanes start, from the lane header at `r`
/// (which is left after it, at the first lane).
fn read_lane_starts(r: &mut BitReader<'_>) -> Result<[usize; LANES], ChunkError> {
    let first = r.get_uvar()?;
    let mut lens = [first; LANES - 1];
    for len in &mut lens[1..] {
        *len = first
            .checked_add_signed(unzigzag(r.get_uvar()?))
            .ok_or_else(|| r.corrupt("lane length out of range"))?;
    }
    let mut starts = [r.pos; LANES];
    for k in 0..LANES - 1 {
        let next = (starts[k] as u64)
            .checked_add(lens[k])
            .filter(|&end| end <= r.bits_total() as u64)
            .ok_or(ChunkError::Truncated)?;
        starts[k + 1] = next as usize;
    }
    Ok(starts)
}

/// Reads `count` residuals written by [`SeqPlan::write`] into `out`.
pub(super) fn read_seq(
    r: &mut BitReader<'_>,
    count: usize,
    out: &mut Vec<i64>,
) -> Result<(), ChunkError> {
    out.clear();
    if count == 0 {
        return Ok(());
    }
    let signed = r.get(1) == 1;
    let gcd = r.get_uvar()?.wrapping_add(1) as i64;
    let sparse = r.get(1) == 1;
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
                let u = vals.read_value(r);
                let x = if signed { unzigzag(u) } else { u as i64 };
                out[at] = x.wrapping_mul(gcd);
                at += 1;
            }
        }
    } else {
        let table = Table::read(r)?;
        if table.maxlen > 0 && count > r.bits_left() {
            return Err(ChunkError::Truncated);
        }
        out.resize(count, 0);
        if r.lanes && count >= LANE_MIN {
            let starts = read_lane_starts(r)?;
            if !table.read_lanes(r, &starts, out, signed, gcd) {
                return Err(r.corrupt("a lane's codes do not end where the next lane starts"));
            }
        } else if table.maxlen > 0 || table.entries[0] != 0 {
            table.read_values(r, out, signed, gcd);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::chunk::testkit::{Rng, f, regular, round_trip};

    #[test]
    fn common_divisors_are_used() {
        // Memory in kB reported as bytes; disk I/O in 4 KiB blocks.
        let mut rng = Rng::new(11);
        let mut kb = 4_000_000i64;
        let mem: Vec<u64> = (0..240)
            .map(|_| {
                kb += rng.modulo(2001) as i64 - 1000;
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
            // Around the shortest sequence written in lanes, and lanes of
            // unequal lengths.
            (0..LANE_MIN as i64 - 1).map(|i| i % 9 - 4).collect(),
            (0..LANE_MIN as i64).map(|i| i % 9 - 4).collect(),
            (0..LANE_MIN as i64 + 1).map(|i| (i * i) % 37).collect(),
            (0..LANE_MIN as i64 + 3).map(|i| i * 1000).collect(),
            // Residuals too wide for several per look, in lanes.
            (0..700).map(|i: i64| (i * 0x9e37_79b9) << 20).collect(),
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
            assert_eq!(
                plan.lanes.is_some(),
                plan.sparse.is_none() && xs.len() >= LANE_MIN
            );
        }
    }

    #[test]
    fn a_lane_that_does_not_end_where_the_next_starts_is_refused() {
        let mut rng = Rng::new(3);
        let xs: Vec<i64> = (0..600).map(|_| rng.modulo(5000) as i64).collect();
        let mut plan = SeqPlan::new(&xs);
        let right = plan.lanes.expect("written in lanes");
        for k in 0..LANES - 1 {
            // Each lane length in turn one bit too long, then too short.
            for wrong in [1i64, -1] {
                let mut damaged = right;
                damaged[k] = damaged[k].wrapping_add_signed(wrong);
                plan.lanes = Some(damaged);
                let mut w = BitWriter::new(0);
                plan.write(&mut w, &xs);
                let buf = w.finish();
                let mut back = Vec::new();
                let got = read_seq(&mut BitReader::new(&buf[1..]), xs.len(), &mut back);
                assert!(got.is_err(), "lane {k} off by {wrong} was accepted");
            }
        }
        plan.lanes = Some(right);
        // Read as a chunk without lanes (format 1), the same bits are
        // another sequence: the format decides how they are read.
        let mut w = BitWriter::new(0);
        plan.write(&mut w, &xs);
        let buf = w.finish();
        let mut reader = BitReader::new(&buf[1..]);
        reader.lanes = false;
        let mut back = Vec::new();
        let _ = read_seq(&mut reader, xs.len(), &mut back);
        assert_ne!(back, xs);
    }
}
