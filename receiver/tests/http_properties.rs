//! Property test of the HTTP layer: generated request lines, headers,
//! bodies and framings, sent as raw bytes over TCP to a real receiver. Each
//! complete request gets a well-formed answer with a status documented for
//! its route, and every error the application answers is JSON; a cut-off
//! request gets a well-formed answer or a closed connection, never a hang;
//! and the receiver serves normally afterwards.

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use proptest::prelude::*;

use crate::common::Receiver;
use crate::http_limits::{ReadError, connect, json_error, read_response};

/// Route groups and the statuses each may answer with. 401 (bad token),
/// 404 (unknown id, or a generated segment that matches no route) and 405
/// (any other method) are possible everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Write,
    Read,
    Admin,
    Host,
    Health,
    Unknown,
}

impl Group {
    fn statuses(self) -> &'static [u16] {
        match self {
            Group::Write => &[200, 204, 400, 413, 415],
            // 422: evaluation failed; 503: query timeout.
            Group::Read => &[200, 400, 413, 422, 503],
            Group::Admin => &[200, 201, 400, 409, 413],
            // An admin token is not a host: 403.
            Group::Host => &[200, 204, 400, 403, 409, 413],
            Group::Health => &[200],
            Group::Unknown => &[],
        }
    }
}

/// Every route, with `{}` where a path parameter goes.
const ROUTES: &[(&str, Group)] = &[
    ("/api/v1/write", Group::Write),
    ("/metrics", Group::Read),
    ("/api/dcmon/openapi.json", Group::Read),
    ("/api/v1/query", Group::Read),
    ("/api/v1/query_range", Group::Read),
    ("/api/v1/series", Group::Read),
    ("/api/v1/labels", Group::Read),
    ("/api/v1/label/{}/values", Group::Read),
    ("/api/v1/metadata", Group::Read),
    ("/api/v1/query_exemplars", Group::Read),
    ("/api/v1/status/buildinfo", Group::Read),
    ("/api/v1/format_query", Group::Read),
    ("/api/dcmon/stats", Group::Admin),
    ("/api/dcmon/register", Group::Admin),
    ("/api/dcmon/clients", Group::Admin),
    ("/api/dcmon/clients/{}/revoke", Group::Admin),
    ("/api/dcmon/commands", Group::Admin),
    ("/api/dcmon/commands/{}", Group::Admin),
    ("/api/dcmon/commands/{}/cancel", Group::Admin),
    ("/api/dcmon/commands/next", Group::Host),
    ("/api/dcmon/commands/{}/result", Group::Host),
    ("/health", Group::Health),
    ("/no/such/{}", Group::Unknown),
];

/// Statuses hyper answers itself, with an empty body, to a request it
/// cannot parse.
const PROTOCOL_ERRORS: &[u16] = &[400, 408, 413, 414, 431, 501, 505];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,4}",
        "-[0-9]{1,20}",
        "[0-9]{19,25}",
        "[a-zA-Z_.~-]{0,12}",
        Just("%FF".to_owned()),
        Just("%2F..%2F".to_owned()),
        Just("%00".to_owned()),
        Just("%".to_owned()),
        Just("%C3%A9t%C3%A9".to_owned()),
        "(%[0-9A-Fa-f]{2}){1,6}",
        "[a-z]{200,400}",
    ]
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,12}(\\.[0-9]{1,4})?",
        Just("1e400".to_owned()),
        Just("NaN".to_owned()),
        Just("-Inf".to_owned()),
        Just("1m30s".to_owned()),
        Just("up".to_owned()),
        Just("sum(rate(up%5B5m%5D))".to_owned()),
        Just("up%7Bjob%3D%22x%22%7D".to_owned()),
        Just("1%2B".to_owned()),
        Just("%7B".to_owned()),
        Just("2015-07-01T20:10:51.781Z".to_owned()),
        Just("pending".to_owned()),
        "(%[0-9A-Fa-f]{2}){1,4}",
        "[a-zA-Z0-9_%+=&]{0,16}",
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("query"),
        Just("time"),
        Just("start"),
        Just("end"),
        Just("step"),
        Just("timeout"),
        Just("limit"),
        Just("match[]"),
        Just("client"),
        Just("status"),
        Just("x"),
    ];
    prop::collection::vec((name, query_value()), 0..5).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// How the body is framed on the wire.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// `Content-Length` of the body.
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No length at all (so no body for a request).
    None,
    /// A `Content-Length` larger than what is sent, then a half-close.
    Short,
}

#[derive(Debug, Clone)]
struct Generated {
    method: String,
    route: usize,
    segment: String,
    suffix: Option<String>,
    query: String,
    auth: Auth,
    headers: Vec<(String, Vec<u8>)>,
    content_type: Option<&'static str>,
    content_encoding: Option<&'static str>,
    body: Vec<u8>,
    framing: Framing,
    /// Cut the request at this fraction of its bytes, then half-close.
    cut: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
enum Auth {
    Admin,
    AdminLowercaseScheme,
    Wrong,
    Basic,
    Missing,
}

fn generated() -> impl Strategy<Value = Generated> {
    let method = prop_oneof![
        4 => Just("GET".to_owned()),
        4 => Just("POST".to_owned()),
        1 => Just("PUT".to_owned()),
        1 => Just("DELETE".to_owned()),
        1 => Just("HEAD".to_owned()),
        1 => Just("OPTIONS".to_owned()),
        1 => Just("PATCH".to_owned()),
        1 => "[A-Z]{1,10}",
    ];
    let auth = prop_oneof![
        8 => Just(Auth::Admin),
        1 => Just(Auth::AdminLowercaseScheme),
        1 => Just(Auth::Wrong),
        1 => Just(Auth::Basic),
        1 => Just(Auth::Missing),
    ];
    let header = (
        "[A-Za-z][A-Za-z0-9-]{0,20}",
        prop_oneof![
            4 => "[ -~]{0,40}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ],
    );
    let content_type = prop::option::of(prop::sample::select(vec![
        "application/x-www-form-urlencoded",
        "application/json",
        "application/x-protobuf",
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        "application/x-protobuf;proto=nonsense",
        "text/plain",
        "multipart/form-data; boundary=x",
        ";;;",
    ]));
    let content_encoding = prop::option::of(prop::sample::select(vec![
        "snappy", "gzip", "identity", "br", "x",
    ]));
    let body = prop_oneof![
        3 => Just(Vec::new()),
        2 => prop::collection::vec(any::<u8>(), 0..2048),
        2 => query_string().prop_map(String::into_bytes),
        1 => Just(br#"{"client":"x","type":"fan_control","params":{"action":"auto"}}"#.to_vec()),
        1 => Just(br#"{"status":"succeeded","output":"x","expires_in":1e20}"#.to_vec()),
    ];
    let framing = prop_oneof![
        6 => Just(Framing::Length),
        1 => Just(Framing::Chunked),
        1 => Just(Framing::None),
        1 => Just(Framing::Short),
    ];
    (
        (
            method,
            0..ROUTES.len(),
            segment(),
            prop::option::of(segment()),
        ),
        (query_string(), auth, prop::collection::vec(header, 0..4)),
        (content_type, content_encoding, body, framing),
        prop::option::weighted(0.1, 0.0..1.0f64),
    )
        .prop_map(
            |(
                (method, route, segment, suffix),
                (query, auth, headers),
                (content_type, content_encoding, body, framing),
                cut,
            )| Generated {
                method,
                route,
                segment,
                suffix,
                query,
                auth,
                headers,
                content_type,
                content_encoding,
                body,
                framing,
                cut,
            },
        )
}

impl Generated {
    fn path(&self) -> String {
        let mut path = ROUTES[self.route].0.replace("{}", &self.segment);
        if let Some(suffix) = &self.suffix {
            path.push('/');
            path.push_str(suffix);
        }
        if !self.query.is_empty() {
            path.push('?');
            path.push_str(&self.query);
        }
        path
    }

    fn bytes(&self, token: &str) -> Vec<u8> {
        let mut out =
            format!("{} {} HTTP/1.1\r\nHost: x\r\n", self.method, self.path()).into_bytes();
        let auth = match self.auth {
            Auth::Admin => Some(format!("Bearer {token}")),
            Auth::AdminLowercaseScheme => Some(format!("bearer {token}")),
            Auth::Wrong => Some("Bearer 0123456789".to_owned()),
            Auth::Basic => Some("Basic YWRtaW46YWRtaW4=".to_owned()),
            Auth::Missing => None,
        };
        if let Some(auth) = auth {
            out.extend_from_slice(format!("Authorization: {auth}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            // Framing stays ours: a generated one would make the request
            // incomplete by design.
            let lower = name.to_ascii_lowercase();
            if lower == "content-length" || lower == "transfer-encoding" || lower == "connection" {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if let Some(ct) = self.content_type {
            out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        if let Some(ce) = self.content_encoding {
            out.extend_from_slice(format!("Content-Encoding: {ce}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n");
        match self.framing {
            Framing::Length => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
            Framing::Short => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len() + 100).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
            Framing::Chunked => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for chunk in self.body.chunks(500) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            Framing::None => out.extend_from_slice(b"\r\n"),
        }
        out
    }

    /// Whether the server gets the whole request as framed.
    fn complete(&self) -> bool {
        self.cut.is_none() && !matches!(self.framing, Framing::Short)
    }
}

fn check(receiver: &Receiver, case: &Generated) -> Result<(), TestCaseError> {
    let mut bytes = case.bytes(&receiver.token);
    if let Some(cut) = case.cut {
        bytes.truncate((bytes.len() as f64 * cut) as usize);
    }
    let mut stream = connect(&receiver.addr, Duration::from_secs(10));
    // The server may answer and close before reading everything.
    let _ = stream.write_all(&bytes);
    if !case.complete() {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let head_only = case.method == "HEAD";
    let (path, group) = ROUTES[case.route];
    let response = match read_response(&mut stream, head_only) {
        Ok(response) => response,
        Err(ReadError::Closed) if !case.complete() => return Ok(()),
        Err(err) => {
            return Err(TestCaseError::fail(format!(
                "{} {}: {err}",
                case.method,
                case.path()
            )));
        }
    };
    let status = response.status;
    let what = format!("{} {} -> {status}", case.method, case.path());
    if response.body.is_empty() && status >= 400 {
        // Only a HEAD answer, or hyper refusing what it cannot parse, has
        // an error without a body.
        prop_assert!(
            head_only || PROTOCOL_ERRORS.contains(&status),
            "{what}: error without a body"
        );
        return Ok(());
    }
    prop_assert!(
        status < 500 || (status == 503 && group == Group::Read),
        "{what}: server error {:?}",
        String::from_utf8_lossy(&response.body)
    );
    let documented = group.statuses().contains(&status) || [401, 404, 405].contains(&status);
    prop_assert!(
        documented || (!case.complete() && PROTOCOL_ERRORS.contains(&status)),
        "{what}: not a status of {path}: {:?}",
        String::from_utf8_lossy(&response.body)
    );
    if status >= 400 && !head_only {
        let plain_write = group == Group::Write
            && response
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("text/plain"));
        if !plain_write && let Err(why) = json_error(&response) {
            return Err(TestCaseError::fail(format!("{what}: {why}")));
        }
    }
    Ok(())
}

#[test]
fn generated_requests_get_documented_answers_and_the_receiver_keeps_serving() {
    let receiver = Receiver::start(&[
        "--web.read-header-timeout=1s",
        "--web.max-body-bytes=1024",
        "--query.timeout=5s",
    ]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    if let Err(err) = runner.run(&generated(), |case| check(&receiver, &case)) {
        panic!("{err}\nreceiver log:\n{}", receiver.log());
    }
    let (status, body) = receiver.get_json("/api/dcmon/stats");
    assert_eq!(status, 200, "{body}");
    let (status, body) = receiver.get_json("/api/v1/query?query=1");
    assert_eq!(status, 200, "{body}");
}
