//! The JSON body of query answers, written straight into a byte buffer: a
//! large matrix would take several times its size as a `serde_json::Value`
//! tree, and the receiver runs on small boxes. Gzipped when the client
//! accepts it, as Prometheus does (Grafana always asks): the points the
//! query cache holds come already compressed. Plain, they are sent from
//! the cache's own buffers, not copied: a refreshed panel's answer is
//! mostly points the cache holds, and copying a megabyte of them took
//! longer than evaluating the refresh's new steps.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::promql::gzip::GzipWriter;
use crate::promql::text::{write_point, write_seconds};
use crate::promql::{QueryResult, Value, WrittenPoints};

/// A finished query answer (`{"status":"success","data":{…}}`): its body
/// as consecutive pieces.
#[derive(Debug)]
pub struct QueryAnswer {
    pieces: Pieces,
    gzip: bool,
}

impl QueryAnswer {
    /// The whole body in one buffer, for tests: the server sends the
    /// pieces as they are.
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.pieces
            .parts
            .iter()
            .flat_map(|p| p.iter().copied())
            .collect()
    }
}

impl IntoResponse for QueryAnswer {
    fn into_response(self) -> Response {
        let json = (header::CONTENT_TYPE, "application/json");
        // The body depends on the request's Accept-Encoding either way.
        let vary = (header::VARY, "Accept-Encoding");
        let body = Body::new(self.pieces);
        if self.gzip {
            ([json, vary, (header::CONTENT_ENCODING, "gzip")], body).into_response()
        } else {
            ([json, vary], body).into_response()
        }
    }
}

/// A body sent piece by piece, its length known (so the answer carries a
/// `Content-Length`, as one buffer's would).
#[derive(Debug, Default)]
struct Pieces {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl Pieces {
    fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.remaining += part.len() as u64;
            self.parts.push_back(part);
        }
    }
}

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.parts.pop_front().map(|part| {
            this.remaining -= part.len() as u64;
            Ok(Frame::data(part))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Encodes `result` in Prometheus's response shape, gzipped when `gzip`.
pub fn encode(result: &QueryResult, gzip: bool) -> QueryAnswer {
    let mut out = Vec::with_capacity(size_hint(&result.value));
    // Where the cache's written points go: `out` holds the text around
    // them.
    let mut marks: Vec<(usize, &WrittenPoints)> = Vec::new();
    let t = result.time_ms;
    out.extend_from_slice(br#"{"status":"success","data":{"resultType":""#);
    out.extend_from_slice(result.value.type_name().as_bytes());
    out.extend_from_slice(br#"","result":"#);
    match &result.value {
        Value::Scalar(v) => write_point(&mut out, t, *v),
        Value::String(s) => {
            out.push(b'[');
            write_seconds(&mut out, t);
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
                write_point(out, t, s.value);
                out.push(b'}');
            });
            out.push(b']');
        }
        Value::Matrix(series) => {
            out.push(b'[');
            comma_separated(&mut out, series.iter().enumerate(), |out, (i, s)| {
                out.extend_from_slice(br#"{"metric":"#);
                labels(out, &s.labels);
                out.extend_from_slice(br#","values":["#);
                // Leading points the cache lends go in as it holds them.
                let written = result.written.get(i).and_then(Option::as_ref);
                let mut first = true;
                if let Some(written) = written.filter(|w| w.count() > 0) {
                    marks.push((out.len(), written));
                    first = false;
                }
                for (ms, v) in &s.points {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_point(out, *ms, *v);
                }
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
    let mut pieces = Pieces::default();
    if gzip {
        let mut gz = GzipWriter::new();
        let mut at = 0;
        for (mark, written) in marks {
            gz.text(&out[at..mark]);
            written.gzip_into(&mut gz);
            at = mark;
        }
        gz.text(&out[at..]);
        pieces.push(Bytes::from(gz.finish()));
    } else {
        let out = Bytes::from(out);
        let mut at = 0;
        for (mark, written) in marks {
            pieces.push(out.slice(at..mark));
            pieces.push(written.shared());
            at = mark;
        }
        pieces.push(out.slice(at..));
    }
    QueryAnswer { pieces, gzip }
}

/// About the answer's size, so that a large one is not copied as its
/// buffer grows: a point takes some 20-30 bytes, a label set ~100.
fn size_hint(value: &Value) -> usize {
    const POINT: usize = 28;
    const SERIES: usize = 128;
    256 + match value {
        Value::Vector(samples) => samples.len() * (SERIES + POINT),
        Value::Matrix(series) => series.iter().map(|s| SERIES + s.points.len() * POINT).sum(),
        Value::Scalar(_) | Value::String(_) => 0,
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
            written: Vec::new(),
        };
        serde_json::from_slice(&encode(&result, false).to_vec()).unwrap()
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
}
