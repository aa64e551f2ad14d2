//! Integer sequences: the residual coder shared by timestamps and values.
//!
//! A sequence is divided by its residuals' common divisor, zigzagged when
//! any residual is negative, and written dense (a Huffman symbol per
//! residual) or sparse (zero runs and nonzero values, each with a code of
//! its own), whichever is exactly smaller.

use super::ChunkError;
use super::arith::{ExactDiv, bit_len, to_unsigned, unzigzag, uvar_bits, zigzag};
use super::bits::{BitReader, BitWriter};
use super::huffman::{Code, Histogram, Lens, Table};

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
    /// `Some(nonzero count, gap code, value code)` for sparse coding.
    sparse: Option<(u64, Lens, Lens)>,
}

impl SeqPlan {
    pub(super) fn new(xs: &[i64]) -> Self {
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
            table.read_values(r, count, out, finish);
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
}
