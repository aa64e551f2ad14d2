//! Query values: scalars, strings, instant vectors and range vectors, with
//! label sets shared through `Arc` so stepping through a range query clones
//! pointers, not strings.

use std::sync::Arc;

use crate::storage::index::Labels;

/// The metric-name label.
pub const METRIC_NAME: &str = "__name__";

/// One element of an instant vector.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The series' labels, sorted by name.
    pub labels: Labels,
    /// Its value at the evaluation time.
    pub value: f64,
}

/// One series of a range vector (or of a range query's result).
#[derive(Debug, Clone)]
pub struct Series {
    /// The series' labels, sorted by name.
    pub labels: Labels,
    /// `(timestamp ms, value)` in time order, stale markers removed.
    pub points: Vec<(i64, f64)>,
}

/// A range query's answer from its points per label set: one series each,
/// in label order, as Prometheus orders a matrix.
pub fn matrix(by_labels: impl IntoIterator<Item = (Labels, Vec<(i64, f64)>)>) -> Value {
    let mut series: Vec<Series> = by_labels
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Value::Matrix(series)
}

/// What an expression evaluates to at one point in time.
#[derive(Debug, Clone)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector.
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus's name for the value type, as the API reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// The empty label set, shared.
pub fn empty_labels() -> Labels {
    Arc::from(Vec::new())
}

/// The value of label `name`, if present.
pub fn label_value<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `labels` without `__name__` (the same `Arc` when it has none).
pub fn drop_metric_name(labels: &Labels) -> Labels {
    if labels.iter().any(|(n, _)| n == METRIC_NAME) {
        labels
            .iter()
            .filter(|(n, _)| n != METRIC_NAME)
            .cloned()
            .collect::<Vec<_>>()
            .into()
    } else {
        Arc::clone(labels)
    }
}

/// `labels` with `name` set to `value`, or removed when `value` is empty
/// (an empty label value means "no such label" in Prometheus).
pub fn with_label(labels: &[(String, String)], name: &str, value: &str) -> Labels {
    let mut out: Vec<(String, String)> =
        labels.iter().filter(|(n, _)| n != name).cloned().collect();
    if !value.is_empty() {
        let at = out.partition_point(|(n, _)| n.as_str() < name);
        out.insert(at, (name.to_owned(), value.to_owned()));
    }
    out.into()
}

/// Formats a float the way Prometheus's API writes sample values: the
/// shortest round-trip decimal, in exponent form below 1e-6 and from 1e21
/// on, `+Inf`, `-Inf`, `NaN`.
pub fn format_float(v: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, v);
    out
}

/// [`format_float`] onto `out`, which an answer of many points reuses.
pub fn write_float(out: &mut impl std::fmt::Write, v: f64) {
    let _ = if v.is_nan() {
        out.write_str("NaN")
    } else if v == f64::INFINITY {
        out.write_str("+Inf")
    } else if v == f64::NEG_INFINITY {
        out.write_str("-Inf")
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Whole numbers (counts, bytes, states) are their digits: no
        // shorter decimal is within half a double's spacing of them.
        if v.is_sign_negative() {
            let _ = out.write_str("-");
        }
        out.write_str(Digits::new(v.abs() as u64).as_str())
    } else if (1e-6..1e21).contains(&v.abs()) {
        // Ryu's shortest digits, ties to even as Go's (the standard
        // library's `{}` rounds them up: Prometheus writes
        // 571922000821932.25 as `571922000821932.2`, `{}` as `…932.3`),
        // and several times faster: an answer may hold millions of values.
        // Ryu writes `1234.0` where Go writes `1234`, and an exponent
        // outside about 1e-5..1e16, laid out plainly here.
        let mut buffer = ryu::Buffer::new();
        let text = buffer.format_finite(v);
        match text.split_once('e') {
            None => out.write_str(text.strip_suffix(".0").unwrap_or(text)),
            Some((mantissa, exponent)) => {
                out.write_str(&plain_decimal(mantissa, exponent.parse().unwrap_or(0)))
            }
        }
    } else {
        out.write_str(&go_exponent(&format!("{v:e}")))
    };
}

/// The decimal digits of an integer, written without the formatting
/// machinery (an answer writes millions of numbers).
#[derive(Debug, Clone, Copy)]
pub struct Digits {
    buf: [u8; 20],
    from: usize,
}

impl Digits {
    /// The digits of `n`.
    pub fn new(mut n: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut from = buf.len();
        loop {
            from -= 1;
            buf[from] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Self { buf, from }
    }

    /// The digits as bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.from..]
    }

    /// The digits as text.
    pub fn as_str(&self) -> &str {
        // ASCII digits only.
        std::str::from_utf8(self.bytes()).unwrap_or_default()
    }
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

/// Neumaier-compensated running sum: Prometheus sums this way so that
/// `sum` and `avg` do not lose small terms next to large ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct KahanSum {
    sum: f64,
    compensation: f64,
}

impl KahanSum {
    /// Adds one term.
    pub fn add(&mut self, term: f64) {
        let total = self.sum + term;
        if total.is_infinite() {
            self.compensation = 0.0;
        } else if self.sum.abs() >= term.abs() {
            self.compensation += (self.sum - total) + term;
        } else {
            self.compensation += (term - total) + self.sum;
        }
        self.sum = total;
    }

    /// The compensated total.
    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Mean of `values` as Prometheus 3 computes it: a compensated sum divided
/// by the count, switching to an incremental mean if the sum overflows.
pub fn mean(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let mut sum = KahanSum::default();
    let mut count = 0.0;
    for v in values.clone() {
        sum.add(v);
        count += 1.0;
    }
    let total = sum.value();
    if !total.is_infinite() || values.clone().any(f64::is_infinite) {
        return total / count;
    }
    let mut running = KahanSum::default();
    let mut n = 0.0;
    for v in values {
        n += 1.0;
        let current = running.value();
        running.add(v / n - current / n);
    }
    running.value()
}

/// Population variance by Welford's method (NaN when any input is NaN or
/// infinite, as in Prometheus 3).
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, KahanSum::default(), KahanSum::default());
    for v in values {
        count += 1.0;
        let delta = v - mean.value();
        mean.add(delta / count);
        m2.add(delta * (v - mean.value()));
    }
    m2.value() / count
}

/// The φ-quantile of `values` with linear interpolation between ranks
/// (Prometheus's `quantile`): -Inf below 0, +Inf above 1.
pub fn quantile(phi: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as Go's sort.Float64s puts it.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = phi * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[cfg(test)]
mod tests {
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
    /// the same shortest digits as [`write_float`], except that where two
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
    fn kahan_keeps_small_terms() {
        let mut sum = KahanSum::default();
        for v in [1e100, 1.0, -1e100, 1.0] {
            sum.add(v);
        }
        assert_eq!(sum.value(), 2.0);
    }

    #[test]
    fn quantile_interpolates() {
        assert_eq!(quantile(0.5, &mut [1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
    }
}
