//! Integer helpers of the format: zigzag, bit lengths and field sizes,
//! exact division by a common divisor, the median.

/// Also the head's and the head log's signed-integer coding.
#[inline]
pub(in crate::storage) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[inline]
pub(in crate::storage) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[inline]
pub(super) fn to_unsigned(x: i64, signed: bool) -> u64 {
    if signed { zigzag(x) } else { x as u64 }
}

/// Bits needed for `x`: 0 for 0, 64 for values with the top bit set.
#[inline]
pub(super) fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

#[inline]
pub(super) fn gamma_bits(y: u64) -> u32 {
    2 * bit_len(y) - 1
}

#[inline]
pub(super) fn uvar_bits(x: u64) -> u32 {
    let b = bit_len(x);
    gamma_bits(u64::from(b) + 1) + b.saturating_sub(1)
}

#[inline]
pub(super) fn svar_bits(x: i64) -> u32 {
    uvar_bits(zigzag(x))
}

/// Exact division by a common divisor `2^shift * odd`, as a shift and a
/// multiplication by the odd part's inverse modulo 2^64 (exact because the
/// quotient fits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ExactDiv {
    pub(super) divisor: u64,
    shift: u32,
    inverse: u64,
    /// Largest quotient of an unsigned multiple of the odd part.
    limit: u64,
}

impl ExactDiv {
    fn new(divisor: u64) -> Self {
        let divisor = divisor.max(1);
        let shift = divisor.trailing_zeros();
        let odd = divisor >> shift;
        // Newton's iteration doubles the correct low bits: 3, 6, ..., 96.
        let mut inverse = odd;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        Self {
            divisor,
            shift,
            inverse,
            limit: u64::MAX / odd,
        }
    }

    /// The greatest common divisor of the magnitudes (1 if all are 0).
    pub(super) fn common(xs: &[i64]) -> Self {
        let mut div = Self::new(0);
        let mut gcd = 0;
        for &x in xs {
            let a = x.unsigned_abs();
            if gcd == 0 {
                gcd = a;
                div = Self::new(gcd);
            } else if !div.divides(a) {
                gcd = binary_gcd(gcd, a);
                if gcd == 1 {
                    return Self::new(1);
                }
                div = Self::new(gcd);
            }
        }
        div
    }

    #[inline]
    fn divides(&self, a: u64) -> bool {
        a.trailing_zeros() >= self.shift
            && (a >> self.shift).wrapping_mul(self.inverse) <= self.limit
    }

    /// `x / divisor` for a multiple `x` of the divisor.
    #[inline]
    pub(super) fn apply(&self, x: i64) -> i64 {
        (x >> self.shift).wrapping_mul(self.inverse as i64)
    }
}

fn binary_gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// A median (the upper one for even lengths) of a non-empty slice.
pub(super) fn median<T: Copy + Ord>(xs: &[T]) -> T {
    let mut v = xs.to_vec();
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}
