//! The XOR value coding, for values that are not short decimals: each
//! value's bits XORed with the previous value's, the significant bits sent
//! in a window that is reused while it fits.

use super::bits::{BitReader, BitWriter};
use super::values::VALUE_XOR;
use super::{ChunkError, RawSample};

pub(super) fn encode_xor(w: &mut BitWriter, samples: &[RawSample]) {
    w.put(VALUE_XOR, 2);
    let mut prev = samples[0].1;
    w.put(prev, 64);
    // The current window: leading zeros and significant bits.
    let mut window: Option<(u32, u32)> = None;
    for &(_, bits) in &samples[1..] {
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.put(0, 1);
            continue;
        }
        let lead = x.leading_zeros();
        let trail = x.trailing_zeros();
        let sig = 64 - lead - trail;
        match window {
            // Reuse the window when it fits and is not much wider than a
            // fresh one would be.
            Some((wl, ws)) if lead >= wl && 64 - wl - ws <= trail && ws <= sig + 12 => {
                w.put(0b10, 2);
                w.put(x >> (64 - wl - ws), ws);
            }
            _ => {
                w.put(0b11, 2);
                w.put(u64::from(lead), 6);
                w.put(u64::from(sig - 1), 6);
                w.put(x >> trail, sig);
                window = Some((lead, sig));
            }
        }
    }
}

pub(super) fn decode_xor(r: &mut BitReader<'_>, out: &mut [RawSample]) -> Result<(), ChunkError> {
    if out.len() > r.bits_left() {
        return Err(ChunkError::Truncated);
    }
    let mut prev = r.get_wide(64);
    out[0].1 = prev;
    let mut window: Option<(u32, u32)> = None;
    for s in &mut out[1..] {
        if r.get(1) == 1 {
            let (lead, sig) = if r.get(1) == 1 {
                let lead = r.get(6) as u32;
                let sig = r.get(6) as u32 + 1;
                if lead + sig > 64 {
                    return Err(r.corrupt("XOR window wider than 64 bits"));
                }
                window = Some((lead, sig));
                (lead, sig)
            } else {
                window.ok_or_else(|| r.corrupt("XOR window reused before it was set"))?
            };
            prev ^= r.get_wide(sig) << (64 - lead - sig);
        }
        s.1 = prev;
    }
    Ok(())
}
