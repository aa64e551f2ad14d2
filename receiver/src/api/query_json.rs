//! The JSON body of query answers, written straight into a byte buffer: a
//! large matrix would take several times its size as a `serde_json::Value`
//! tree, and the receiver runs on small boxes.

use std::io::Write;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::promql::value::{Digits, write_float};
use crate::promql::{QueryResult, Value};

/// A finished query answer (`{"status":"success","data":{…}}`).
#[derive(Debug)]
pub struct QueryAnswer(Vec<u8>);

impl IntoResponse for QueryAnswer {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// Encodes `result` in Prometheus's response shape.
pub fn encode(result: &QueryResult) -> QueryAnswer {
    let mut out = Vec::with_capacity(256);
    let t = result.time_ms;
    out.extend_from_slice(br#"{"status":"success","data":{"resultType":""#);
    out.extend_from_slice(result.value.type_name().as_bytes());
    out.extend_from_slice(br#"","result":"#);
    match &result.value {
        Value::Scalar(v) => point(&mut out, t, *v),
        Value::String(s) => {
            out.push(b'[');
            seconds(&mut out, t);
            out.push(b',');
            string(&mut out, s);
            out.push(b']');
        }
        Value::Vector(samples) => {
            out.push(b'[');
            comma_separated(&mut out, samples, |out, s| {
                out.extend_from_slice(br#"{"metric":"#);
                labels(out, &s.labels);
                out.extend_from_slice(br#","value":"#);
                point(out, t, s.value);
                out.push(b'}');
            });
            out.push(b']');
        }
        Value::Matrix(series) => {
            out.push(b'[');
            comma_separated(&mut out, series, |out, s| {
                out.extend_from_slice(br#"{"metric":"#);
                labels(out, &s.labels);
                out.extend_from_slice(br#","values":["#);
                comma_separated(out, &s.points, |out, (ms, v)| point(out, *ms, *v));
                out.extend_from_slice(b"]}");
            });
            out.push(b']');
        }
    }
    out.push(b'}');
    for (key, notes) in [("warnings", &result.warnings), ("infos", &result.infos)] {
        if !notes.is_empty() {
            let _ = write!(out, r#","{key}":"#);
            let _ = serde_json::to_writer(&mut out, notes);
        }
    }
    out.push(b'}');
    QueryAnswer(out)
}

/// Seconds with millisecond precision, without a trailing `.0`.
fn seconds(out: &mut Vec<u8>, ms: i64) {
    let sign = if ms < 0 { "-" } else { "" };
    let (whole, frac) = (ms.unsigned_abs() / 1000, ms.unsigned_abs() % 1000);
    out.extend_from_slice(sign.as_bytes());
    out.extend_from_slice(Digits::new(whole).bytes());
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
        out.push(b'.');
        out.extend_from_slice(&digits[..used]);
    }
}

fn point(out: &mut Vec<u8>, ms: i64, value: f64) {
    out.push(b'[');
    seconds(out, ms);
    out.extend_from_slice(b",\"");
    write_float(&mut Utf8(out), value);
    out.extend_from_slice(b"\"]");
}

/// A byte buffer that text is written onto without a copy in between.
struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn labels(out: &mut Vec<u8>, labels: &[(String, String)]) {
    out.push(b'{');
    comma_separated(out, labels, |out, (name, value)| {
        string(out, name);
        out.push(b':');
        string(out, value);
    });
    out.push(b'}');
}

/// Writes each of `items` with `write`, a comma between two.
fn comma_separated<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{Sample, Series};
    use std::sync::Arc;

    fn json(value: Value, time_ms: i64) -> serde_json::Value {
        let result = QueryResult {
            value,
            time_ms,
            warnings: vec!["w".into()],
            infos: Vec::new(),
        };
        serde_json::from_slice(&encode(&result).0).unwrap()
    }

    #[test]
    fn shapes_match_prometheus() {
        assert_eq!(
            json(Value::Scalar(2.0), 4000),
            serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}, "warnings": ["w"]})
        );
        let labels: crate::storage::index::Labels =
            Arc::from(vec![("a\"b".to_owned(), "v\n".to_owned())]);
        let vector = json(
            Value::Vector(vec![Sample {
                labels: labels.clone(),
                value: f64::NAN,
            }]),
            -1500,
        );
        assert_eq!(
            vector["data"]["result"],
            serde_json::json!([{"metric": {"a\"b": "v\n"}, "value": [-1.5, "NaN"]}])
        );
        let matrix = json(
            Value::Matrix(vec![Series {
                labels,
                points: vec![(1001, f64::INFINITY), (2010, -0.5)],
            }]),
            0,
        );
        assert_eq!(
            matrix["data"]["result"][0]["values"],
            serde_json::json!([[1.001, "+Inf"], [2.01, "-0.5"]])
        );
    }

    #[test]
    fn times_are_seconds_without_trailing_zeros() {
        let text = |ms: i64| {
            let mut out = Vec::new();
            seconds(&mut out, ms);
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
}
