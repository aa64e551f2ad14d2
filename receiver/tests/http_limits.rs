//! The HTTP layer under hostile clients, over raw TCP: slow and idle
//! connections are closed, a crowd of silent connections cannot lock out a
//! real request, large bodies are refused without being read, shutdown
//! waits only a bounded time, and every error answer is JSON.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::hosts::Host;
use dcmon_testkit::KillOnDrop;

use crate::common::peer::{free_addr, wait_for_port};
use crate::common::{Receiver, client};

/// An answer read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no well-formed answer came.
#[derive(Debug)]
pub enum ReadError {
    /// The server closed the connection before any byte of an answer.
    Closed,
    /// Bytes that are not an HTTP/1.1 answer, or an answer cut short.
    Malformed(String),
    /// Nothing within the read timeout.
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => write!(f, "closed without an answer"),
            ReadError::Malformed(why) => write!(f, "malformed answer: {why}"),
            ReadError::Io(err) => write!(f, "reading the answer: {err}"),
        }
    }
}

/// Reads one answer; `head_only` for a HEAD request (no body follows).
pub fn read_response(stream: &mut TcpStream, head_only: bool) -> Result<RawResponse, ReadError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed(format!(
                    "cut off in the head: {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ReadError::Malformed("head is not UTF-8".into()))?
        .to_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if parts.next() != Some("HTTP/1.1") {
        return Err(ReadError::Malformed(format!("status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| ReadError::Malformed(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ReadError::Malformed(format!("header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = RawResponse {
        status,
        headers,
        body: buf[head_end + 4..].to_vec(),
    };
    if head_only || status == 204 || status == 304 {
        return Ok(response);
    }
    let mut fill = |body: &mut Vec<u8>, want: usize| -> Result<(), ReadError> {
        while body.len() < want {
            let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Malformed(format!(
                    "body cut off at {} of {want} bytes",
                    body.len()
                )));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    };
    if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| ReadError::Malformed(format!("content-length {length:?}")))?;
        fill(&mut response.body, length)?;
        response.body.truncate(length);
    } else if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        // Our answers are small: read to the terminating chunk, then decode.
        let mut raw = std::mem::take(&mut response.body);
        while !raw.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut chunk).map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Malformed("chunked body cut off".into()));
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        let mut rest = &raw[..];
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| ReadError::Malformed("chunk size line".into()))?;
            let size = usize::from_str_radix(
                std::str::from_utf8(&rest[..line_end]).unwrap_or("x").trim(),
                16,
            )
            .map_err(|_| ReadError::Malformed("chunk size".into()))?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            if rest.len() < size + 2 {
                return Err(ReadError::Malformed("chunk cut off".into()));
            }
            response.body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    } else {
        // Delimited by the end of the connection.
        stream
            .read_to_end(&mut response.body)
            .map_err(ReadError::Io)?;
    }
    Ok(response)
}

/// A connection to `addr` whose reads give up after `timeout`.
pub fn connect(addr: &str, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// The body as Prometheus's JSON error shape, or why it is not.
pub fn json_error(response: &RawResponse) -> Result<Value, String> {
    let text = String::from_utf8_lossy(&response.body);
    let content_type = response.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(format!("content type {content_type:?}, body {text:?}"));
    }
    let body: Value =
        serde_json::from_slice(&response.body).map_err(|e| format!("not JSON ({e}): {text:?}"))?;
    let shaped = body["status"] == "error"
        && body["errorType"].as_str().is_some_and(|t| !t.is_empty())
        && body["error"].as_str().is_some_and(|t| !t.is_empty());
    if shaped {
        Ok(body)
    } else {
        Err(format!("not the error shape: {body}"))
    }
}

/// Asserts the body is Prometheus's JSON error shape; returns it.
pub fn assert_json_error(response: &RawResponse, what: &str) -> Value {
    json_error(response).unwrap_or_else(|why| panic!("{what}: {why}"))
}

/// Waits until the server closes `stream` (it may answer first, as hyper
/// does with a 408); returns how long that took, or `None` if it was still
/// open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

fn get_health(token: &str) -> String {
    format!("GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
}

#[test]
fn a_trickled_request_head_is_cut_off_at_the_header_timeout() {
    let receiver = Receiver::start(&["--web.read-header-timeout=2s"]);
    let mut stream = connect(&receiver.addr, Duration::from_millis(200));
    let started = Instant::now();
    let head = get_health(&receiver.token);
    let mut closed_after = None;
    // One byte a second: the head would take minutes to complete.
    for byte in head.as_bytes().iter().take(20) {
        if stream.write_all(&[*byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        if closed_within(&mut stream, Duration::from_secs(1)).is_some() {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the connection was still open after 20 s");
    assert!(
        closed_after >= Duration::from_millis(1500) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}, expected about 2 s"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let receiver = Receiver::start(&["--web.idle-timeout=2s", "--web.read-header-timeout=1s"]);
    let mut stream = connect(&receiver.addr, Duration::from_secs(10));
    // Keep-alive works: two requests on one connection, the second after
    // a pause longer than the header timeout (idle time is not head time).
    for pause in [Duration::ZERO, Duration::from_millis(1500)] {
        std::thread::sleep(pause);
        stream
            .write_all(get_health(&receiver.token).as_bytes())
            .unwrap();
        let response = read_response(&mut stream, false).unwrap();
        assert_eq!(response.status, 200, "{response:?}");
    }
    let closed = closed_within(&mut stream, Duration::from_secs(8))
        .expect("the idle connection was still open after 8 s");
    assert!(
        closed >= Duration::from_millis(1500) && closed < Duration::from_secs(4),
        "closed after {closed:?} idle, expected about 2 s"
    );
}

#[test]
fn silent_connections_beyond_the_cap_cannot_lock_out_a_real_request() {
    let receiver = Receiver::start(&["--web.max-connections=8", "--web.read-header-timeout=2s"]);
    // Twice the cap of connections that never send a byte.
    let mut silent: Vec<TcpStream> = (0..16)
        .map(|_| connect(&receiver.addr, Duration::from_secs(1)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let response = client()
        .get(receiver.url("/api/dcmon/stats"))
        .bearer_auth(&receiver.token)
        .timeout(Duration::from_secs(20))
        .send()
        .expect("the authenticated request was never answered");
    let waited = started.elapsed();
    assert_eq!(response.status().as_u16(), 200);
    // It waited for slots (the cap holds) but only for about two rounds of
    // header timeouts, not for the silent clients to give up.
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    for (n, stream) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(8)).is_some(),
            "silent connection {n} still open"
        );
    }
    let (_, metrics) = receiver.get_json("/api/dcmon/stats");
    assert!(metrics.is_object());
    let text = receiver.metrics_text();
    let timed_out: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("dcmon_receiver_http_connections_timed_out_total{")
                && l.contains("phase=\"header\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no header timeouts counted:\n{text}"));
    assert!(timed_out >= 16.0, "{timed_out} header timeouts counted");
}

/// Sends a `size`-byte body to `path` while reading the answer; returns
/// the answer and how many body bytes had been sent when it arrived.
fn post_large_body(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    size: usize,
) -> (RawResponse, usize) {
    let mut stream = connect(addr, Duration::from_secs(30));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut writer = stream.try_clone().unwrap();
    let counter = Arc::clone(&sent);
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        while counter.load(Ordering::SeqCst) < size {
            let n = chunk.len().min(size - counter.load(Ordering::SeqCst));
            if writer.write_all(&chunk[..n]).is_err() {
                return;
            }
            counter.fetch_add(n, Ordering::SeqCst);
        }
    });
    let response = read_response(&mut stream, false).expect("an answer");
    let sent_then = sent.load(Ordering::SeqCst);
    let _ = stream.shutdown(Shutdown::Both);
    sender.join().unwrap();
    (response, sent_then)
}

#[test]
fn large_bodies_are_refused_without_being_read() {
    let receiver = Receiver::start(&["--web.max-body-bytes=1048576"]);
    const SIZE: usize = 20 << 20;
    for (method, path, status) in [
        ("POST", "/no/such/endpoint", 404),
        ("POST", "/api/dcmon/commands", 413),
        ("POST", "/api/dcmon/register", 413),
        ("POST", "/api/dcmon/commands/1/cancel", 404),
        ("GET", "/api/dcmon/clients", 200),
    ] {
        let (response, sent) = post_large_body(&receiver.addr, method, path, &receiver.token, SIZE);
        assert_eq!(response.status, status, "{method} {path}: {response:?}");
        if status >= 400 {
            assert_json_error(&response, path);
        }
        assert!(
            sent < SIZE,
            "{method} {path}: the answer came only after the whole body was sent"
        );
    }
    // Still serving.
    assert_eq!(receiver.get_json("/api/dcmon/clients").0, 200);
}

#[test]
fn every_error_answer_is_json() {
    let receiver = Receiver::start(&["--web.max-body-bytes=1024"]);
    let admin = receiver.token.clone();
    let big = "x".repeat(4096);
    let cases: Vec<(&str, &str, Option<&str>, &str, u16)> = vec![
        ("GET", "/api/v1/label/%FF/values", Some(&admin), "", 400),
        ("GET", "/api/dcmon/commands/abc", Some(&admin), "", 400),
        (
            "GET",
            "/api/dcmon/commands/99999999999999999999",
            Some(&admin),
            "",
            400,
        ),
        (
            "POST",
            "/api/dcmon/commands/1.5/cancel",
            Some(&admin),
            "",
            400,
        ),
        ("GET", "/api/dcmon/commands?limit=-1", Some(&admin), "", 400),
        (
            "GET",
            "/api/dcmon/commands?limit=%FF",
            Some(&admin),
            "",
            400,
        ),
        ("DELETE", "/api/v1/query", Some(&admin), "", 405),
        ("GET", "/api/v1/write", Some(&admin), "", 405),
        ("PUT", "/api/dcmon/clients", Some(&admin), "", 405),
        ("PATCH", "/health", Some(&admin), "", 405),
        ("POST", "/api/dcmon/commands", Some(&admin), &big, 413),
        ("POST", "/api/dcmon/register", Some(&admin), &big, 413),
        ("GET", "/no/such/endpoint", Some(&admin), "", 404),
        ("GET", "/api/v1/query", None, "", 401),
        ("GET", "/api/v1/query", Some("wrong"), "", 401),
        ("GET", "/api/dcmon/commands/next", Some(&admin), "", 403),
    ];
    for (method, path, token, body, status) in cases {
        let mut stream = connect(&receiver.addr, Duration::from_secs(10));
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let response =
            read_response(&mut stream, false).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(response.status, status, "{method} {path}: {response:?}");
        assert_json_error(&response, &format!("{method} {path}"));
        if status == 405 {
            assert!(
                response.header("allow").is_some(),
                "{method} {path}: no Allow"
            );
        }
    }
}

/// A receiver process of this module's own, to watch its exit.
struct Process {
    child: KillOnDrop,
    addr: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Process {
    fn start(extra: &[&str]) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
                .arg("--web.listen-address")
                .arg(&addr)
                .arg("--storage.path")
                .arg(dir.path().join("dcmon.db"))
                .arg("--admin-token-file")
                .arg(dir.path().join("admin-token"))
                .arg("--self-scrape.interval=0s")
                .args(extra)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        wait_for_port(&addr, "receiver", &dir.path().join("stderr.log"));
        let token = std::fs::read_to_string(dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        Process {
            child,
            addr,
            token,
            dir,
        }
    }

    /// SIGTERM; the exit status if it exits within `limit`.
    fn terminate_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

#[test]
fn sigterm_with_a_stalled_request_exits_within_the_shutdown_timeout() {
    let mut receiver = Process::start(&["--web.shutdown-timeout=2s"]);
    // A write whose body never finishes: its handler waits for it.
    let mut stream = connect(&receiver.addr, Duration::from_secs(10));
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n\
         Content-Length: 100000\r\n\r\nabc",
        receiver.token
    );
    stream.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let status = receiver
        .terminate_within(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", receiver.log()));
    let took = started.elapsed();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        receiver.log()
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "exited {took:?} after SIGTERM, expected about 2 s"
    );
}

#[test]
fn sigterm_ends_a_long_poll_at_once() {
    let mut receiver = Receiver::start(&[]);
    let host = Host::enrol(&receiver, 0, "poller");
    let token = host.token();
    let addr = receiver.addr.clone();
    let poll = std::thread::spawn(move || {
        let mut stream = connect(&addr, Duration::from_secs(60));
        let request = format!(
            "GET /api/dcmon/commands/next?timeout=60s HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        read_response(&mut stream, false).map(|r| r.status)
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    // Bounded either way, by the poll's timeout and the shutdown timeout.
    let status = receiver.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the long poll held the shutdown for {:?}",
        started.elapsed()
    );
    assert_eq!(poll.join().unwrap().expect("an answer to the poll"), 204);
}
