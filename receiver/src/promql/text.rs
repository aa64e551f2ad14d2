//! Numbers as Prometheus's API writes them: sample values (Go's shortest
//! `'f'`/`'e'` forms, `NaN`, `+Inf`), times in seconds, and whole
//! `[time,"value"]` points, which a range answer writes by the million and
//! the query cache keeps already written for the steps it serves again.

use std::sync::Arc;

use bytes::Bytes;

use super::gzip::{Deflated, GzipWriter};

/// Formats a float the way Prometheus's API writes sample values: the
/// shortest round-trip decimal, in exponent form below 1e-6 and from 1e21
/// on, `+Inf`, `-Inf`, `NaN`.
pub fn format_float(v: f64) -> String {
    let mut buf = [0; FLOAT_TEXT_MAX];
    let len = put_float(&mut buf, v);
    // ASCII only: digits, signs, `.`, `e`, `NaN`, `Inf`.
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// The longest text [`put_float`] writes: 17 significant digits laid out
/// plainly down to 1e-6 (`-0.0000012345678901234567`, 25 bytes) or in
/// exponent form (`-1.2345678901234567e-308`, 24 bytes).
const FLOAT_TEXT_MAX: usize = 32;

/// Writes the text of `v` at the start of `out` (at least
/// [`FLOAT_TEXT_MAX`] bytes) and returns its length. An answer writes
/// millions of values, so the common forms are built in place, without
/// the formatting machinery or an allocation.
fn put_float(out: &mut [u8], v: f64) -> usize {
    let out = &mut out[..FLOAT_TEXT_MAX];
    if v.is_nan() {
        put(out, b"NaN")
    } else if v == f64::INFINITY {
        put(out, b"+Inf")
    } else if v == f64::NEG_INFINITY {
        put(out, b"-Inf")
    } else if v.abs() < 1e15 && (v as i64) as f64 == v {
        // Whole numbers (counts, bytes, states) are their digits: no
        // shorter decimal is within half a double's spacing of them. (A
        // cast, not `fract()`: that is a library call on the baseline
        // x86-64 this is built for.)
        let sign = usize::from(v.is_sign_negative());
        // Without a branch: the digits overwrite it when there is no sign.
        out[0] = b'-';
        sign + put_digits(&mut out[sign..], v.abs() as u64)
    } else if (1e-6..1e21).contains(&v.abs()) {
        // Ryu's shortest digits, ties to even as Go's (the standard
        // library's `{}` rounds them up: Prometheus writes
        // 571922000821932.25 as `571922000821932.2`, `{}` as `…932.3`),
        // and several times faster. Ryu writes `1234.0` where Go writes
        // `1234`, and an exponent outside about 1e-5..1e16, laid out
        // plainly here.
        let mut buffer = ryu::Buffer::new();
        let digits = buffer.format_finite(v);
        match digits.bytes().rposition(|b| b == b'e') {
            None => put(out, digits.strip_suffix(".0").unwrap_or(digits).as_bytes()),
            Some(e) => put(
                out,
                plain_decimal(&digits[..e], digits[e + 1..].parse().unwrap_or(0)).as_bytes(),
            ),
        }
    } else {
        put(out, go_exponent(&format!("{v:e}")).as_bytes())
    }
}

/// Copies `bytes` to the start of `out`; every float's text fits (see
/// [`FLOAT_TEXT_MAX`]), and one that did not would be cut, not panic.
fn put(out: &mut [u8], bytes: &[u8]) -> usize {
    let n = bytes.len().min(out.len());
    out[..n].copy_from_slice(&bytes[..n]);
    n
}

/// `00`, `01`, … `99`: digits are written two at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes the decimal digits of `n` at the start of `out` (which must
/// hold 20 bytes, the most a `u64` takes) and returns how many.
fn put_digits(out: &mut [u8], mut n: u64) -> usize {
    let len = n.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut end = len;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        out[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        end -= 2;
    }
    if n >= 10 {
        let pair = n as usize * 2;
        out[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        out[end - 1] = b'0' + n as u8;
    }
    len
}

/// `mantissa × 10^exponent` (a mantissa such as `-1.25`) without an
/// exponent: `1.25`, `2` → `125`; `1.25`, `-7` → `0.000000125`.
fn plain_decimal(mantissa: &str, exponent: i32) -> String {
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    // Digits before the decimal point.
    let whole = exponent + 1;
    if whole <= 0 {
        let zeros = "0".repeat(whole.unsigned_abs() as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if whole as usize >= digits.len() {
        let zeros = "0".repeat(whole as usize - digits.len());
        format!("{sign}{digits}{zeros}")
    } else {
        let (int, frac) = digits.split_at(whole as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// Rust's `1e21` / `1.5e-7` → Go's `1e+21` / `1.5e-07`.
fn go_exponent(rust: &str) -> String {
    let (mantissa, exp) = rust.split_once('e').unwrap_or((rust, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// Seconds with millisecond precision, without a trailing `.0`.
pub fn write_seconds(out: &mut Vec<u8>, ms: i64) {
    let mut buf = [0u8; SECONDS_MAX];
    let len = put_seconds(&mut buf, ms);
    out.extend_from_slice(&buf[..len]);
}

/// The longest time [`put_seconds`] writes: `-9223372036854775.808`.
const SECONDS_MAX: usize = 21;

/// [`write_seconds`] at the start of `out` (at least [`SECONDS_MAX`]
/// bytes); returns the length.
fn put_seconds(out: &mut [u8], ms: i64) -> usize {
    let mut at = 0;
    if ms < 0 {
        out[0] = b'-';
        at = 1;
    }
    let (whole, frac) = (ms.unsigned_abs() / 1000, ms.unsigned_abs() % 1000);
    at += put_digits(&mut out[at..], whole);
    if frac != 0 {
        // Three digits, trailing zeros dropped.
        let digits = [frac / 100, frac / 10 % 10, frac % 10].map(|d| b'0' + d as u8);
        let used = if digits[2] != b'0' {
            3
        } else if digits[1] != b'0' {
            2
        } else {
            1
        };
        out[at] = b'.';
        out[at + 1..at + 4].copy_from_slice(&digits);
        at += 1 + used;
    }
    at
}

/// The longest `[time,"value"]` pair.
const POINT_MAX: usize = 1 + SECONDS_MAX + 2 + FLOAT_TEXT_MAX + 2;

/// One `[time,"value"]` pair, written in place: room for the longest is
/// added to `out` and what was not used cut off again. A matrix answer
/// writes one per point, and appends of small pieces of varying length
/// cost more than the digits.
pub fn write_point(out: &mut Vec<u8>, ms: i64, value: f64) {
    let from = out.len();
    out.resize(from + POINT_MAX, 0);
    let buf = &mut out[from..];
    buf[0] = b'[';
    let mut at = 1 + put_seconds(&mut buf[1..], ms);
    buf[at..at + 2].copy_from_slice(b",\"");
    at += 2;
    at += put_float(&mut buf[at..], value);
    buf[at..at + 2].copy_from_slice(b"\"]");
    out.truncate(from + at + 2);
}

/// The points of a series, and the same written as an answer's `values`
/// list holds them (`[t,"v"],[t,"v"]`), with where each starts, so that
/// any run of consecutive points can be sent out as text; and the same
/// text in blocks compressed apart, for gzip answers.
#[derive(Debug, Default)]
pub struct PointsText {
    /// The points themselves, oldest first: an answer served from the
    /// cache lends them instead of copying them.
    points: Vec<(i64, f64)>,
    /// Shared, so that an answer can send a run of points as it is.
    bytes: Bytes,
    /// The memory `bytes` takes (its buffer may be longer than the text).
    bytes_heap: usize,
    /// Offset of each point's `[` in `bytes`.
    starts: Vec<u32>,
    /// Consecutive, covering every point.
    blocks: Vec<Block>,
}

/// The points whose times fall in one span of [`BLOCK_STEPS`] steps (on a
/// grid of absolute time, so that a later text of the same series, which
/// may start further on, has the same blocks and reuses their
/// compressed text). Its points start where the previous block's end.
#[derive(Debug)]
struct Block {
    /// Which span: the points' time divided by the span's length.
    span: i64,
    /// The index after its last point.
    end: u32,
    /// Its points' text, without a comma before or after.
    deflated: Arc<Deflated>,
}

/// Steps in a block's span: a block's text is some KiB, which deflate
/// compresses nearly as well alone as in a long stream.
pub const BLOCK_STEPS: i64 = 256;

impl PointsText {
    /// The text of `written`'s points followed by that of `points`, in
    /// blocks of `span_ms` (a query's step times [`BLOCK_STEPS`]);
    /// blocks wholly within `written` are taken from its text.
    pub fn extended(written: Option<&WrittenPoints>, points: &[(i64, f64)], span_ms: i64) -> Self {
        let written = written.filter(|w| w.count() > 0);
        let mut text = Self::default();
        let mut bytes = Vec::new();
        text.points
            .reserve(written.map_or(0, WrittenPoints::count) + points.len());
        if let Some(written) = written {
            text.points.extend_from_slice(written.points());
            let old = written.bytes();
            bytes.reserve(old.len() + points.len() * POINT_TYPICAL);
            bytes.extend_from_slice(old);
            let base = written.text.starts[written.from];
            let starts = &written.text.starts[written.from..written.to];
            text.starts.extend(starts.iter().map(|s| s - base));
        } else {
            bytes.reserve(points.len() * POINT_TYPICAL);
        }
        text.starts.reserve(points.len());
        for &(ms, value) in points {
            if !text.starts.is_empty() {
                bytes.push(b',');
            }
            // An answer over 4 GiB is refused long before (max samples).
            text.starts
                .push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
            write_point(&mut bytes, ms, value);
        }
        text.points.extend_from_slice(points);
        text.bytes_heap = bytes.capacity();
        text.bytes = Bytes::from(bytes);
        text.blocks = text.blocks_of(written, points, span_ms.max(1));
        text
    }

    /// The blocks of this text, which holds `written`'s points then
    /// `points`.
    fn blocks_of(
        &self,
        written: Option<&WrittenPoints>,
        points: &[(i64, f64)],
        span_ms: i64,
    ) -> Vec<Block> {
        // (span, end, compressed text when it can be kept)
        let mut runs: Vec<(i64, usize, Option<Arc<Deflated>>)> = Vec::new();
        if let Some(w) = written {
            for (from, to, block) in w.blocks() {
                let whole = from >= w.from && to <= w.to;
                runs.push((
                    block.span,
                    to.min(w.to) - w.from,
                    whole.then(|| Arc::clone(&block.deflated)),
                ));
            }
        }
        for (i, &(ms, _)) in points.iter().enumerate() {
            let span = ms.div_euclid(span_ms);
            let end = self.starts.len() - points.len() + i + 1;
            match runs.last_mut() {
                // A block the new points add to is compressed again.
                Some(last) if last.0 == span => *last = (span, end, None),
                _ => runs.push((span, end, None)),
            }
        }
        debug_assert_eq!(runs.last().map_or(0, |r| r.1), self.starts.len());
        let mut from = 0;
        runs.into_iter()
            .map(|(span, end, kept)| {
                let deflated =
                    kept.unwrap_or_else(|| Arc::new(Deflated::of(self.slice(from, end))));
                from = end;
                Block {
                    span,
                    end: u32::try_from(end).unwrap_or(u32::MAX),
                    deflated,
                }
            })
            .collect()
    }

    /// The text of points `from..to` (`from < to`), without a comma
    /// before or after.
    fn slice(&self, from: usize, to: usize) -> &[u8] {
        &self.bytes[self.span(from, to)]
    }

    /// Where [`PointsText::slice`] lies in `bytes`.
    fn span(&self, from: usize, to: usize) -> std::ops::Range<usize> {
        let start = self.starts[from] as usize;
        let end = match self.starts.get(to) {
            // Up to the comma before the next point.
            Some(&next) => next as usize - 1,
            None => self.bytes.len(),
        };
        start..end
    }

    /// How many points it holds.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// All its points.
    pub fn points(&self) -> &[(i64, f64)] {
        &self.points
    }

    /// Memory taken, for the cache's bound (blocks shared with an older
    /// text are counted in both).
    pub fn heap_bytes(&self) -> usize {
        const BLOCK_OVERHEAD: usize = 64;
        self.bytes_heap
            + self.points.capacity() * std::mem::size_of::<(i64, f64)>()
            + self.starts.capacity() * std::mem::size_of::<u32>()
            + self
                .blocks
                .iter()
                .map(|b| b.deflated.heap_bytes() + BLOCK_OVERHEAD)
                .sum::<usize>()
    }
}

/// About the length of one written point.
const POINT_TYPICAL: usize = 24;

/// Points `from..to` of a shared [`PointsText`]: a series' leading
/// points, and their answer text, as the query cache holds them.
#[derive(Debug, Clone)]
pub struct WrittenPoints {
    text: Arc<PointsText>,
    from: usize,
    to: usize,
}

impl WrittenPoints {
    /// Points `range` of `text` (cut to what it holds).
    pub fn new(text: Arc<PointsText>, range: std::ops::Range<usize>) -> Self {
        let to = range.end.min(text.len());
        let from = range.start.min(to);
        Self { text, from, to }
    }

    /// How many points.
    pub fn count(&self) -> usize {
        self.to - self.from
    }

    /// Those of its points that lie in `range`, counted from its first.
    pub fn within(&self, range: std::ops::Range<usize>) -> Self {
        let to = self.from + range.end.min(self.count());
        let from = (self.from + range.start).min(to);
        Self::new(Arc::clone(&self.text), from..to)
    }

    /// The points themselves.
    pub fn points(&self) -> &[(i64, f64)] {
        &self.text.points[self.from..self.to]
    }

    /// Their text, without a comma before or after.
    pub fn bytes(&self) -> &[u8] {
        if self.from == self.to {
            return &[];
        }
        self.text.slice(self.from, self.to)
    }

    /// [`WrittenPoints::bytes`] as a shared buffer: an answer sends it
    /// without copying it.
    pub fn shared(&self) -> Bytes {
        if self.from == self.to {
            return Bytes::new();
        }
        self.text.bytes.slice(self.text.span(self.from, self.to))
    }

    /// Writes [`WrittenPoints::bytes`] to a gzip answer: the blocks
    /// wholly among these points as compressed before, the rest as text.
    pub fn gzip_into(&self, gz: &mut GzipWriter) {
        for (i, (from, to, block)) in self.blocks().enumerate() {
            if i > 0 {
                gz.text(b",");
            }
            if from >= self.from && to <= self.to {
                gz.deflated(&block.deflated);
            } else {
                gz.text(self.text.slice(from.max(self.from), to.min(self.to)));
            }
        }
    }

    /// The text's blocks holding any of these points, with the indices
    /// of their points.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize, &Block)> {
        let mut from = 0;
        self.text
            .blocks
            .iter()
            .map(move |block| {
                let start = from;
                from = block.end as usize;
                (start, block.end as usize, block)
            })
            .skip_while(|&(_, to, _)| to <= self.from)
            // None for no points: a block may hold `from` inside it.
            .take_while(|&(from, _, _)| from < self.to && self.from < self.to)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(1e21), "1e+21");
        assert_eq!(format_float(1.5e-7), "1.5e-07");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(123456.0), "123456");
        assert_eq!(format_float(-0.0), "-0");
    }

    #[test]
    fn the_exponent_form_starts_where_prometheus_starts_it() {
        // Prometheus's API writes 'f' from 1e-6 up to 1e21, 'e' outside:
        // each side of both edges, and the doubles next to them.
        let below = |v: f64| f64::from_bits(v.to_bits() - 1);
        let above = |v: f64| f64::from_bits(v.to_bits() + 1);
        assert_eq!(format_float(1e-6), "0.000001");
        assert_eq!(format_float(-1e-6), "-0.000001");
        let (small, edge) = (format_float(below(1e-6)), format_float(above(1e-6)));
        assert!(
            small.starts_with("9.99999") && small.ends_with("e-07"),
            "{small}"
        );
        assert!(edge.starts_with("0.00000100000"), "{edge}");
        assert_eq!(small.parse::<f64>().unwrap(), below(1e-6));
        assert_eq!(edge.parse::<f64>().unwrap(), above(1e-6));
        assert_eq!(format_float(9.5e-5), "0.000095");
        assert_eq!(format_float(5e-7), "5e-07");
        assert_eq!(format_float(below(1e21)), "999999999999999900000");
        assert_eq!(format_float(1e21), "1e+21");
        assert_eq!(format_float(-1e21), "-1e+21");
        assert_eq!(format_float(above(1e21)), "1.0000000000000001e+21");
        assert_eq!(format_float(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(format_float(5e-324), "5e-324");
    }

    /// The standard library's plain formatting, kept as the reference:
    /// the same shortest digits as [`format_float`], except that where two
    /// are equally near it rounds up, and Go to even.
    fn plain_reference(v: f64) -> String {
        if v == 0.0 || (1e-6..1e21).contains(&v.abs()) {
            format!("{v}")
        } else {
            format_float(v)
        }
    }

    /// `ours` is the reference's answer, or the other digit of a tie.
    fn agrees(v: f64, ours: &str) -> Result<(), String> {
        let reference = plain_reference(v);
        if ours == reference {
            return Ok(());
        }
        let (a, b) = (ours.as_bytes(), reference.as_bytes());
        let tie = a.len() == b.len()
            && a[..a.len() - 1] == b[..b.len() - 1]
            && a[a.len() - 1].abs_diff(b[b.len() - 1]) == 1
            && (a[a.len() - 1] - b'0').is_multiple_of(2)
            && ours.parse::<f64>() == Ok(v);
        if tie {
            Ok(())
        } else {
            Err(format!("{v:e}: {ours} against {reference}"))
        }
    }

    #[test]
    fn ties_go_to_even_as_in_prometheus() {
        // What Prometheus 2.42 answers for `vector(571922000821932.25)`.
        // (The double is exactly 571922000821932.25.)
        assert_eq!(
            format_float(571_922_000_821_932.0 + 0.25),
            "571922000821932.2"
        );
        assert_eq!(format_float(1e17), "100000000000000000");
        assert_eq!(format_float(1.5e-6), "0.0000015");
        assert_eq!(format_float(-2.5e20), "-250000000000000000000");
        assert_eq!(format_float(1.25e16), "12500000000000000");
    }

    proptest::proptest! {
        #[test]
        fn any_double_is_written_as_the_reference_writes_it(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assume!(v.is_finite());
            if let Err(e) = agrees(v, &format_float(v)) {
                proptest::prop_assert!(false, "{}", e);
            }
        }

        #[test]
        fn metric_like_doubles_are_written_as_the_reference_writes_them(
            units in 0u64..1u64 << 53,
            scale in -6i32..23,
            negative in proptest::prelude::any::<bool>(),
        ) {
            // Decimals as exporters print them, and large counters.
            let v = units as f64 / 10f64.powi(scale) * if negative { -1.0 } else { 1.0 };
            if let Err(e) = agrees(v, &format_float(v)) {
                proptest::prop_assert!(false, "{}", e);
            }
        }
    }

    #[test]
    fn times_are_seconds_without_trailing_zeros() {
        let text = |ms: i64| {
            let mut out = Vec::new();
            write_seconds(&mut out, ms);
            String::from_utf8(out).unwrap()
        };
        let cases = [
            (0, "0"),
            (1000, "1"),
            (1500, "1.5"),
            (1010, "1.01"),
            (1001, "1.001"),
            (1100, "1.1"),
            (-1, "-0.001"),
            (-1500, "-1.5"),
            (1_733_356_800_000, "1733356800"),
            (i64::MIN, "-9223372036854775.808"),
        ];
        for (ms, want) in cases {
            assert_eq!(text(ms), want, "{ms} ms");
        }
    }

    fn text_of(points: &[(i64, f64)]) -> Vec<u8> {
        let text = Arc::new(PointsText::extended(None, points, 1));
        WrittenPoints::new(text, 0..points.len()).bytes().to_vec()
    }

    /// The text `written` puts in a gzip answer, unzipped.
    pub(crate) fn gzipped_text(written: &WrittenPoints) -> Vec<u8> {
        use std::io::Read;
        let mut gz = GzipWriter::new();
        written.gzip_into(&mut gz);
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&gz.finish()[..])
            .read_to_end(&mut text)
            .unwrap();
        text
    }

    proptest::proptest! {
        /// Any run of written points copies out as the text of just those
        /// points, and text extended from it as that of the longer run.
        #[test]
        fn written_runs_copy_out_as_their_own_text(
            points in proptest::collection::vec(
                (proptest::prelude::any::<i64>(), proptest::prelude::any::<f64>()),
                0..40,
            ),
            cuts in proptest::prelude::any::<[usize; 3]>(),
        ) {
            let mut cuts = cuts.map(|c| c % (points.len() + 1));
            cuts.sort_unstable();
            let [a, b, c] = cuts;
            let all = WrittenPoints::new(Arc::new(PointsText::extended(None, &points, 1)), 0..points.len());
            let run = all.within(a..b);
            proptest::prop_assert_eq!(run.count(), b - a);
            proptest::prop_assert_eq!(run.bytes(), &text_of(&points[a..b])[..]);
            let longer = Arc::new(PointsText::extended(Some(&run), &points[b..c], 1));
            let longer = WrittenPoints::new(longer, 0..c - a);
            proptest::prop_assert_eq!(longer.bytes(), &text_of(&points[a..c])[..]);
        }

        /// The same with points in blocks of several: the gzip text of a
        /// run, and of a text extended from it (whose blocks within the
        /// run are reused), is the plain text.
        #[test]
        fn blocks_gzip_as_the_text(
            seconds in proptest::collection::vec(0..300i64, 0..60),
            span in 1..40i64,
            cuts in proptest::prelude::any::<[usize; 4]>(),
        ) {
            let points: Vec<(i64, f64)> = seconds.iter().map(|&s| (s * 1000, s as f64 / 7.0)).collect();
            let span_ms = span * 1000;
            let mut cuts = cuts.map(|c| c % (points.len() + 1));
            cuts.sort_unstable();
            let [a, b, c, d] = cuts;
            let all = WrittenPoints::new(Arc::new(PointsText::extended(None, &points, span_ms)), 0..points.len());
            proptest::prop_assert_eq!(gzipped_text(&all), text_of(&points));
            let run = all.within(a..c);
            proptest::prop_assert_eq!(gzipped_text(&run), text_of(&points[a..c]));
            let inner = run.within(b - a..c - a);
            proptest::prop_assert_eq!(gzipped_text(&inner), text_of(&points[b..c]));
            let longer = Arc::new(PointsText::extended(Some(&inner), &points[c..d], span_ms));
            let longer = WrittenPoints::new(longer, 0..d - b);
            proptest::prop_assert_eq!(gzipped_text(&longer), text_of(&points[b..d]));
            proptest::prop_assert_eq!(gzipped_text(&longer.within(1..d - b)), text_of(points.get(b + 1..d).unwrap_or(&[])));
        }
    }

    #[test]
    fn whole_blocks_are_reused_when_the_text_grows() {
        // A point a minute, blocks of ten minutes.
        let points: Vec<(i64, f64)> = (0..45).map(|i| (i * 60_000, i as f64)).collect();
        let span_ms = 600_000;
        let first = Arc::new(PointsText::extended(None, &points[..33], span_ms));
        assert_eq!(first.blocks.len(), 4);
        // Served from the 5th point on (a later start), then 12 more.
        let served = WrittenPoints::new(Arc::clone(&first), 5..33);
        let longer = PointsText::extended(Some(&served), &points[33..], span_ms);
        let ends: Vec<u32> = longer.blocks.iter().map(|b| b.end).collect();
        assert_eq!(ends, [5, 15, 25, 35, 40]);
        let shared: Vec<bool> = (longer.blocks.iter().zip(&first.blocks))
            .map(|(new, old)| Arc::ptr_eq(&new.deflated, &old.deflated))
            .collect();
        // The first block lost points, the last gained some.
        assert_eq!(shared, [false, true, true, false]);
    }

    #[test]
    fn points_are_written_as_the_answer_lists_them() {
        let text = text_of(&[(1_500, 2.0), (-1, f64::NAN), (3_000, 0.25)]);
        assert_eq!(text, br#"[1.5,"2"],[-0.001,"NaN"],[3,"0.25"]"#);
        assert!(text_of(&[]).is_empty());
    }
}
