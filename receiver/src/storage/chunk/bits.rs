//! The MSB-first bit stream under the format, with its field codes (gamma,
//! `uvar`, round numbers). The writer can mark, measure and rewind, so that
//! codings can be tried and the smaller kept; the reader reads past the end
//! as zeros and reports that as truncation, so decoding never indexes out
//! of bounds.

use super::arith::{bit_len, gamma_bits};
use super::{ChunkError, VERSION};

pub(super) struct BitWriter {
    buf: Vec<u8>,
    /// Pending bits, right-aligned; fewer than 32 between calls.
    acc: u64,
    nacc: u32,
}

impl BitWriter {
    pub(super) fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.push(VERSION);
        Self {
            buf,
            acc: 0,
            nacc: 0,
        }
    }

    /// A writer for a stream spliced into another with [`Self::append`].
    pub(super) fn empty() -> Self {
        Self {
            buf: Vec::new(),
            acc: 0,
            nacc: 0,
        }
    }

    pub(super) fn mark(&self) -> BitMark {
        BitMark {
            bytes: self.buf.len(),
            acc: self.acc,
            nacc: self.nacc,
        }
    }

    pub(super) fn bits_since(&self, mark: BitMark) -> u64 {
        ((self.buf.len() - mark.bytes) * 8) as u64 + u64::from(self.nacc) - u64::from(mark.nacc)
    }

    /// Drops everything written since `mark`.
    pub(super) fn reset(&mut self, mark: BitMark) {
        self.buf.truncate(mark.bytes);
        self.acc = mark.acc;
        self.nacc = mark.nacc;
    }

    pub(super) fn append(&mut self, other: &Self) {
        for &byte in &other.buf {
            self.put(u64::from(byte), 8);
        }
        self.put(other.acc, other.nacc);
    }

    /// Appends the low `n` bits of `v` (`n <= 64`, higher bits clear).
    #[inline]
    pub(super) fn put(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64 && (n == 64 || v >> n == 0));
        if n > 32 {
            self.put32(v >> 32, n - 32);
            self.put32(v & 0xffff_ffff, 32);
        } else {
            self.put32(v, n);
        }
    }

    #[inline]
    pub(super) fn put32(&mut self, v: u64, n: u32) {
        self.acc = (self.acc << n) | v;
        self.nacc += n;
        if self.nacc >= 32 {
            self.nacc -= 32;
            let word = (self.acc >> self.nacc) as u32;
            self.buf.extend_from_slice(&word.to_be_bytes());
            self.acc &= (1u64 << self.nacc) - 1;
        }
    }

    /// Elias gamma code of `y >= 1`.
    pub(super) fn put_gamma(&mut self, y: u64) {
        debug_assert!((1..1 << 31).contains(&y));
        self.put(y, gamma_bits(y));
    }

    pub(super) fn put_uvar(&mut self, x: u64) {
        let b = bit_len(x);
        self.put_gamma(u64::from(b) + 1);
        if b > 1 {
            self.put(x & (u64::MAX >> (65 - b)), b - 1);
        }
    }

    /// A `uvar` as `m * 10^e`: scrape intervals are round numbers.
    pub(super) fn put_round_uvar(&mut self, x: u64) {
        let (mut m, mut e) = (x, 0);
        while m != 0 && m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        self.put_gamma(e + 1);
        self.put_uvar(m);
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        let pad = (8 - self.nacc % 8) % 8;
        self.acc <<= pad;
        self.nacc += pad;
        while self.nacc > 0 {
            self.nacc -= 8;
            self.buf.push((self.acc >> self.nacc) as u8);
        }
        self.buf
    }
}

/// A position in a [`BitWriter`] to measure from or go back to.
#[derive(Clone, Copy, Default)]
pub(super) struct BitMark {
    bytes: usize,
    acc: u64,
    nacc: u32,
}

pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// Bits consumed; may run past the end, which reads as zeros and is
    /// reported as truncation.
    pub(super) pos: usize,
    /// Whether long dense sequences are written in lanes (format 3).
    pub(super) lanes: bool,
}

impl<'a> BitReader<'a> {
    /// A reader of `data` in the format this build writes.
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            lanes: true,
        }
    }

    /// A reader of the same data at bit `pos`.
    pub(super) fn at(&self, pos: usize) -> Self {
        Self { pos, ..*self }
    }

    /// Bits of data, read or not.
    pub(super) fn bits_total(&self) -> usize {
        self.data.len() * 8
    }

    /// The next 64 bits (at least 57 of them meaningful), MSB-first.
    #[inline]
    pub(super) fn peek(&self) -> u64 {
        self.peek_at(self.pos)
    }

    /// The 64 bits from bit `pos` (at least 57 of them meaningful),
    /// MSB-first, zeros past the end.
    #[inline]
    pub(super) fn peek_at(&self, pos: usize) -> u64 {
        let tail = self.data.get(pos >> 3..).unwrap_or(&[]);
        let word = match tail.first_chunk::<8>() {
            Some(w) => u64::from_be_bytes(*w),
            None => {
                let mut w = [0u8; 8];
                w[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(w)
            }
        };
        word << (pos & 7)
    }

    /// Reads `n <= 57` bits.
    #[inline]
    pub(super) fn get(&mut self, n: u32) -> u64 {
        debug_assert!(n <= 57);
        let v = (self.peek() >> 1) >> (63 - n);
        self.pos += n as usize;
        v
    }

    /// Reads `n <= 64` bits.
    #[inline]
    pub(super) fn get_wide(&mut self, n: u32) -> u64 {
        if n <= 57 {
            self.get(n)
        } else {
            let hi = self.get(n - 32);
            (hi << 32) | self.get(32)
        }
    }

    pub(super) fn get_gamma(&mut self) -> Result<u64, ChunkError> {
        // Values up to 65 only: at most 6 leading zeros.
        let zeros = self.peek().leading_zeros();
        if zeros > 6 {
            return Err(if self.pos + 7 > self.data.len() * 8 {
                ChunkError::Truncated
            } else {
                ChunkError::Corrupt("bad length prefix")
            });
        }
        Ok(self.get(2 * zeros + 1))
    }

    pub(super) fn get_uvar(&mut self) -> Result<u64, ChunkError> {
        let y = self.get_gamma()?;
        if y > 65 {
            return Err(self.corrupt("integer longer than 64 bits"));
        }
        let b = (y - 1) as u32;
        Ok(if b <= 1 {
            u64::from(b)
        } else {
            (1 << (b - 1)) | self.get_wide(b - 1)
        })
    }

    pub(super) fn get_round_uvar(&mut self) -> Result<u64, ChunkError> {
        let e = self.get_gamma()? - 1;
        let m = self.get_uvar()?;
        10u64
            .checked_pow(e as u32)
            .and_then(|p| m.checked_mul(p))
            .ok_or_else(|| self.corrupt("interval out of range"))
    }

    /// Bits not yet consumed.
    pub(super) fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// A corruption error, or [`ChunkError::Truncated`] when the reader has
    /// already run out of data (garbage then is just the zero fill).
    pub(super) fn corrupt(&self, what: &'static str) -> ChunkError {
        if self.pos > self.data.len() * 8 {
            ChunkError::Truncated
        } else {
            ChunkError::Corrupt(what)
        }
    }

    pub(super) fn finish(mut self) -> Result<(), ChunkError> {
        let len = self.data.len();
        if self.pos > len * 8 {
            return Err(ChunkError::Truncated);
        }
        let used = self.pos.div_ceil(8);
        if used < len {
            return Err(ChunkError::TrailingBytes(len - used));
        }
        let pad = (used * 8 - self.pos) as u32;
        if self.get(pad) != 0 {
            return Err(ChunkError::Corrupt("nonzero padding bits"));
        }
        Ok(())
    }
}
