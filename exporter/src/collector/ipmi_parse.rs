//! Pure parsers for `ipmitool` output: `sensor` (readings, states and
//! thresholds), `sdr elist` (sensor numbers), `dcmi power reading`,
//! `mc info` and `chassis status`. No I/O here; `ipmi.rs` runs the tool.
//!
//! Formats follow ipmitool's printf strings (lib/ipmi_sensor.c,
//! lib/ipmi_sdr.c, lib/ipmi_dcmi.c) and the captures in
//! `tests/fixtures/ipmitool/`: columns are split on `|` and trimmed, never cut
//! at fixed offsets, because the padding is only a minimum.

/// Threshold columns of `ipmitool sensor`, in column order: lower
/// non-recoverable, lower critical, lower non-critical, upper non-critical,
/// upper critical, upper non-recoverable.
pub const THRESHOLDS: [&str; 6] = ["lnr", "lcr", "lnc", "unc", "ucr", "unr"];

/// One row of `ipmitool sensor`.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorRow {
    /// Sensor name as the BMC reports it (not unique: boards repeat names).
    pub name: String,
    /// The reading; `None` for `na` (absent or unreadable sensor).
    pub value: Option<f64>,
    /// Unit text: `degrees C`, `RPM`, `Volts`, `Amps`, `Watts`, `percent`,
    /// `discrete`, or empty when the reading is `na`.
    pub unit: String,
    /// Status column: `ok`, `nc`, `cr`, `nr` (or the `l`/`u` forms), `na`,
    /// or a discrete sensor's state word such as `0x0180`.
    pub status: String,
    /// Thresholds in [`THRESHOLDS`] order; `None` where `na`.
    pub thresholds: [Option<f64>; 6],
}

impl SensorRow {
    /// Whether this is a discrete (state-only) sensor.
    pub fn is_discrete(&self) -> bool {
        self.unit == "discrete"
    }

    /// ipmi_exporter's state value: 0 nominal, 1 warning, 2 critical, NaN
    /// when unknown (no reading, or a discrete sensor's raw state word).
    pub fn state(&self) -> f64 {
        match self.status.as_str() {
            "ok" => 0.0,
            "nc" | "lnc" | "unc" => 1.0,
            "cr" | "lcr" | "ucr" | "nr" | "lnr" | "unr" => 2.0,
            _ => f64::NAN,
        }
    }
}

/// A line that looked like a table row but could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ParseError {
    /// 1-based line number in the tool's stdout.
    pub line: usize,
    /// What was wrong, naming the token.
    pub msg: String,
}

fn error(line: usize, msg: impl Into<String>) -> ParseError {
    ParseError {
        line,
        msg: msg.into(),
    }
}

/// Parses a number column: `na` → `None`, `0x…` → the hex value (discrete
/// readings), else a decimal. A comma decimal (`49,000`, a leaked locale)
/// is rejected rather than misread as 49.
fn parse_number(token: &str, line: usize) -> Result<Option<f64>, ParseError> {
    let token = token.trim();
    if token == "na" || token.is_empty() {
        return Ok(None);
    }
    if let Some(hex) = token.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16)
            .map(|v| Some(v as f64))
            .map_err(|_| error(line, format!("bad hex value {token:?}")));
    }
    token
        .parse::<f64>()
        .map(Some)
        .map_err(|_| error(line, format!("bad number {token:?}")))
}

/// Parses `ipmitool sensor` output (10 `|`-separated columns). Lines
/// without a `|` are skipped (stray diagnostics); a row whose numbers do not
/// parse is an error, so a localised or garbled listing is not half-read.
pub fn parse_sensor(text: &str) -> Result<Vec<SensorRow>, ParseError> {
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if !line.contains('|') {
            continue;
        }
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() < 10 {
            return Err(error(
                number,
                format!("expected 10 columns, found {}", cols.len()),
            ));
        }
        let mut thresholds = [None; 6];
        for (slot, token) in thresholds.iter_mut().zip(&cols[4..10]) {
            *slot = parse_number(token, number)?;
        }
        rows.push(SensorRow {
            name: cols[0].to_owned(),
            value: parse_number(cols[1], number)?,
            unit: cols[2].to_owned(),
            status: cols[3].to_owned(),
            thresholds,
        });
    }
    if rows.is_empty() {
        return Err(error(0, "no sensor rows"));
    }
    Ok(rows)
}

/// `(name, sensor number)` for each row of `ipmitool sdr elist`, in order.
/// Rows that do not have the five-column shape (interleaved stderr, other
/// record kinds) are skipped: the numbers are only used as labels.
pub fn parse_sdr_numbers(text: &str) -> Vec<(String, u8)> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            if cols.len() < 4 {
                return None;
            }
            let number = u8::from_str_radix(cols[1].strip_suffix('h')?, 16).ok()?;
            Some((cols[0].to_owned(), number))
        })
        .collect()
}

/// The parts of `ipmitool dcmi power reading` that are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct DcmiPower {
    /// `Instantaneous power reading`, in watts.
    pub current_watts: f64,
    /// `Power reading state is: activated`.
    pub active: bool,
}

/// Parses `ipmitool dcmi power reading`. Whitespace and indentation vary
/// by version, and 1.8.19 runs the `IPMI timestamp` line into the next
/// field, so fields are found by their labels anywhere in the text.
pub fn parse_dcmi_power(text: &str) -> Option<DcmiPower> {
    let after = |label: &str| -> Option<&str> {
        let start = text.find(label)? + label.len();
        text[start..].trim_start().strip_prefix(':')
    };
    let current_watts = after("Instantaneous power reading")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let active = after("Power reading state is")
        .and_then(|rest| rest.split_whitespace().next())
        .is_none_or(|state| state == "activated");
    Some(DcmiPower {
        current_watts,
        active,
    })
}

/// `Key : value` lines (as `mc info` and `chassis status` print them),
/// keys and values trimmed; continuation lines without a colon are skipped.
pub fn parse_key_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// The value of `key` in `Key : value` output.
pub fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_row_with_thresholds() {
        let rows = parse_sensor(
            "FAN2             | 3000.000   | RPM        | ok    | 300.000   | 450.000   | 600.000   | 18975.000 | 19050.000 | 19125.000\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "FAN2");
        assert_eq!(rows[0].value, Some(3000.0));
        assert_eq!(rows[0].unit, "RPM");
        assert_eq!(rows[0].state(), 0.0);
        assert_eq!(rows[0].thresholds[0], Some(300.0));
        assert_eq!(rows[0].thresholds[5], Some(19125.0));
    }

    #[test]
    fn comma_decimals_are_rejected() {
        let err =
            parse_sensor("CPU Temp | 49,000 | degrees C | ok | na | na | na | na | na | na\n")
                .unwrap_err();
        assert!(err.msg.contains("49,000"), "{err}");
    }

    #[test]
    fn states_follow_ipmi_exporter() {
        let row = |status: &str| SensorRow {
            name: "x".into(),
            value: None,
            unit: String::new(),
            status: status.into(),
            thresholds: [None; 6],
        };
        assert_eq!(row("unc").state(), 1.0);
        assert_eq!(row("cr").state(), 2.0);
        assert_eq!(row("lnr").state(), 2.0);
        assert!(row("na").state().is_nan());
        assert!(row("0x0180").state().is_nan());
    }

    #[test]
    fn key_values_split_on_the_first_colon() {
        let pairs = parse_key_values("System Power         : on\nPower Overload       : false\n");
        assert_eq!(lookup(&pairs, "System Power"), Some("on"));
        assert_eq!(lookup(&pairs, "Power Overload"), Some("false"));
        assert_eq!(lookup(&pairs, "Missing"), None);
    }

    #[test]
    fn dcmi_run_on_timestamp_line() {
        // ipmitool 1.8.19 prints the timestamp without a newline (fixtures
        // README); the fields after it are still found.
        let text = "\n    Instantaneous power reading:                   230 Watts\n    IPMI timestamp:   03/06/2025 07:40:35 UTC    Sampling period:   00000001 Seconds.\n    Power reading state is:                   deactivated\n\n";
        let power = parse_dcmi_power(text).unwrap();
        assert_eq!(power.current_watts, 230.0);
        assert!(!power.active);
    }
}
