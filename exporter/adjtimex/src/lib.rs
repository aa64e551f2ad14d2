//! The kernel's NTP clock-discipline state, read with `adjtimex(2)` in
//! read-only mode (`modes == 0`), for dcmon-exporter's `timex` collector.
//!
//! Why a crate of its own: the state exists only behind that system call
//! (no `/proc` or `/sys` file carries it), and neither `nix` nor `rustix`
//! wraps it. The dcmon workspace forbids `unsafe`; this crate denies it too
//! and allows it on [`read`] alone, whose one block zeroes a `timex` and
//! passes it to the C library. Nothing else here is unsafe.

/// `adjtimex`'s return value when the clock is not synchronised.
pub const TIME_ERROR: i32 = 5;

/// `status` bit: `offset` and `jitter` are in nanoseconds, not microseconds.
pub const STA_NANO: i32 = 0x2000;

/// The fields of `struct timex` the exporter reports, widened to `i64`, and
/// the call's return value (the clock state, `TIME_OK` .. `TIME_ERROR`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockState {
    /// `TIME_OK` (0) .. `TIME_ERROR` (5).
    pub state: i32,
    /// Time offset (µs, or ns with `STA_NANO`).
    pub offset: i64,
    /// Frequency offset, ppm with a 16-bit fraction.
    pub freq: i64,
    /// Maximum error (µs).
    pub maxerror: i64,
    /// Estimated error (µs).
    pub esterror: i64,
    /// `STA_*` status bits.
    pub status: i32,
    /// PLL time constant.
    pub constant: i64,
    /// Microseconds between clock ticks.
    pub tick: i64,
    /// PPS frequency, ppm with a 16-bit fraction.
    pub ppsfreq: i64,
    /// PPS jitter (µs, or ns with `STA_NANO`).
    pub jitter: i64,
    /// PPS interval duration (log2 seconds).
    pub shift: i32,
    /// PPS stability, ppm with a 16-bit fraction.
    pub stabil: i64,
    /// PPS jitter-limit events.
    pub jitcnt: i64,
    /// PPS calibration intervals.
    pub calcnt: i64,
    /// PPS calibration errors.
    pub errcnt: i64,
    /// PPS stability-limit events.
    pub stbcnt: i64,
    /// TAI offset (s).
    pub tai: i32,
}

/// Reads the clock state without changing it.
#[allow(unsafe_code)]
pub fn read() -> std::io::Result<ClockState> {
    // SAFETY: `timex` is a plain C struct of integers (and padding) for
    // which all-zero bytes are a valid value; `modes == 0` asks the kernel
    // only to fill it in. The pointer is to a live, exclusively borrowed
    // local for the duration of the call.
    let (state, t) = unsafe {
        let mut t: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut t);
        (state, t)
    };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // `c_long` is `i32` on 32-bit targets
    Ok(ClockState {
        state,
        offset: t.offset as i64,
        freq: t.freq as i64,
        maxerror: t.maxerror as i64,
        esterror: t.esterror as i64,
        status: t.status,
        constant: t.constant as i64,
        tick: t.tick as i64,
        ppsfreq: t.ppsfreq as i64,
        jitter: t.jitter as i64,
        shift: t.shift,
        stabil: t.stabil as i64,
        jitcnt: t.jitcnt as i64,
        calcnt: t.calcnt as i64,
        errcnt: t.errcnt as i64,
        stbcnt: t.stbcnt as i64,
        tai: t.tai,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_running_kernel() {
        let state = super::read().expect("adjtimex in read-only mode needs no privilege");
        assert!((0..=super::TIME_ERROR).contains(&state.state), "{state:?}");
        // The kernel's tick is 1e6/HZ µs, HZ being 100..1000.
        assert!((1_000..=10_000).contains(&state.tick), "{state:?}");
    }
}
