//! Reference servers for side-by-side runs: Debian's `prometheus` and
//! `victoria-metrics` started on loopback with a remote-write receiver, plus
//! the HTTP calls shared by the side-by-side test and the query benchmark
//! (remote-write a batch, run a range query, parse a matrix).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::{SeriesSamples, compress, encode_v1};
use dcmon_testkit::{KillOnDrop, free_port};
use reqwest::blocking::Client;

/// Which reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Debian's `prometheus` (2.42 on Debian 12).
    Prometheus,
    /// Debian's `victoria-metrics`.
    VictoriaMetrics,
}

impl Kind {
    /// The program on `PATH`.
    pub fn program(self) -> &'static str {
        match self {
            Kind::Prometheus => "prometheus",
            Kind::VictoriaMetrics => "victoria-metrics",
        }
    }
}

/// A reference server in its own temporary directory, killed on drop.
#[derive(Debug)]
pub struct Peer {
    child: KillOnDrop,
    /// `http://127.0.0.1:port`.
    pub base: String,
    log: PathBuf,
    dir: tempfile::TempDir,
}

/// Whether `program` is on `PATH`.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

impl Peer {
    /// The peer's process id.
    #[allow(dead_code)] // benches only
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Starts `kind` with remote-write ingestion on; waits until it is ready.
    pub fn start(kind: Kind) -> Result<Peer, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let data = dir.path().join("data");
        let args: Vec<String> = match kind {
            Kind::Prometheus => {
                let config = dir.path().join("prometheus.yml");
                std::fs::write(&config, "global:\n  scrape_interval: 1m\n")
                    .map_err(|e| e.to_string())?;
                vec![
                    format!("--config.file={}", config.display()),
                    format!("--storage.tsdb.path={}", data.display()),
                    format!("--web.listen-address={addr}"),
                    "--web.enable-remote-write-receiver".to_owned(),
                    "--storage.tsdb.retention.time=30d".to_owned(),
                ]
            }
            Kind::VictoriaMetrics => vec![
                format!("-storageDataPath={}", data.display()),
                format!("-httpListenAddr={addr}"),
                "-retentionPeriod=30d".to_owned(),
                // Answer with data up to now, as Prometheus does, not only
                // samples older than 30 s.
                "-search.latencyOffset=0s".to_owned(),
                // Serve the raw samples: no response cache between runs.
                "-search.disableCache".to_owned(),
            ],
        };
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(kind.program())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {} ({e}); install it with apt-get install {}",
                    kind.program(),
                    kind.program()
                )
            })?;
        let mut peer = Peer {
            child: KillOnDrop(child),
            base: format!("http://{addr}"),
            log,
            dir,
        };
        let ready = match kind {
            Kind::Prometheus => "/-/ready",
            Kind::VictoriaMetrics => "/health",
        };
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = peer.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}):\n{}",
                    kind.program(),
                    peer.log_tail()
                ));
            }
            if TcpStream::connect(&addr).is_ok()
                && client
                    .get(format!("{}{ready}", peer.base))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
            {
                return Ok(peer);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready:\n{}",
                    kind.program(),
                    peer.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Directory holding the server's data.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// An HTTP client for test traffic. It asks for answers as they are (all
/// three systems gzip an answer for a client that accepts it), so that
/// the query bench times evaluation and transfer alone unless it asks for
/// gzip itself ([`Endpoint::get_body_as`]).
pub fn client() -> Client {
    // reqwest's TLS (built in with the exporter's) needs a rustls provider.
    dcmon_web::install_crypto_provider();
    Client::builder()
        .timeout(Duration::from_secs(120))
        .no_gzip()
        .build()
        .unwrap()
}

/// The client a benchmark times reads with. It reads the answer on the
/// calling thread, where reqwest's blocking client hands each request to
/// a runtime thread and the body back: some 0.2–0.3 ms more for a
/// megabyte answer, the same for every system, and a large part of a
/// light panel's refresh. Its status errors are answers like others; it
/// decompresses nothing (a gzipped answer stays as sent).
///
/// Its time limits are per phase: with an overall limit ureq resolves
/// each request's host on a thread of its own (so that resolving can
/// time out), which added another 0.1–0.3 ms to every request.
#[allow(dead_code)] // The side-by-side test does not time.
pub fn timing_client() -> ureq::Agent {
    let limit = Some(Duration::from_secs(120));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(limit)
        .timeout_send_request(limit)
        .timeout_recv_response(limit)
        .timeout_recv_body(limit)
        .build()
        .into()
}

/// Where to send and query, with the bearer token if the server wants one.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://host:port`.
    pub base: String,
    /// Bearer token.
    pub token: Option<String>,
}

impl Endpoint {
    /// Remote-writes `series` (1.0 protocol); retries on 5xx and 429.
    pub fn write(&self, client: &Client, series: &[SeriesSamples]) -> Result<(), String> {
        let body = compress(&encode_v1(series));
        let mut attempt = 0;
        loop {
            let mut request = client
                .post(format!("{}/api/v1/write", self.base))
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", "0.1.0")
                .body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let (retry, reason) = match request.send() {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().unwrap_or_default();
                    (
                        status.is_server_error() || status.as_u16() == 429,
                        format!("{status}: {}", text.trim()),
                    )
                }
                Err(e) => (true, e.to_string()),
            };
            attempt += 1;
            if !retry || attempt > 20 {
                return Err(format!("write to {}: {reason}", self.base));
            }
            std::thread::sleep(Duration::from_millis(100 * attempt));
        }
    }

    /// GET `path` with `params`; the JSON body (also for error statuses).
    pub fn get(
        &self,
        client: &Client,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, String> {
        self.get_body(client, path, params)?.json(path)
    }

    /// GET `path` with `params`: the status and the whole body, unparsed
    /// (what a benchmark times: the answer, not the client's parsing).
    pub fn get_body(
        &self,
        client: &Client,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Body, String> {
        self.get_body_as(client, path, params, false)
    }

    /// [`Endpoint::get_body`], accepting a gzipped answer when `gzip`,
    /// as Grafana does (the body stays compressed until parsed).
    pub fn get_body_as(
        &self,
        client: &Client,
        path: &str,
        params: &[(&str, String)],
        gzip: bool,
    ) -> Result<Body, String> {
        let mut request = client.get(format!("{}{path}", self.base)).query(params);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if gzip {
            request = request.header(reqwest::header::ACCEPT_ENCODING, "gzip");
        }
        let response = request.send().map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let gzipped = response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|v| v == "gzip");
        let bytes = response.bytes().map_err(|e| format!("{path}: {e}"))?;
        Ok(Body {
            status,
            bytes,
            gzipped,
        })
    }

    /// [`Endpoint::get_body_as`] with the client a benchmark times its
    /// reads with ([`timing_client`]).
    pub fn get_body_timed(
        &self,
        agent: &ureq::Agent,
        path: &str,
        params: &[(&str, String)],
        gzip: bool,
    ) -> Result<Body, String> {
        let mut request = agent.get(format!("{}{path}", self.base));
        for (name, value) in params {
            request = request.query(*name, value);
        }
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if gzip {
            request = request.header("Accept-Encoding", "gzip");
        }
        let mut response = request.call().map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let gzipped = response
            .headers()
            .get("Content-Encoding")
            .is_some_and(|v| v == "gzip");
        // Read into a buffer of the announced length: grown from empty, a
        // megabyte answer was copied and faulted in again at each doubling.
        let length = response
            .headers()
            .get("Content-Length")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let mut bytes = Vec::with_capacity(length);
        response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .reader()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(Body {
            status,
            bytes: bytes.into(),
            gzipped,
        })
    }

    /// Runs a range query and parses the answer.
    pub fn query_range(
        &self,
        client: &Client,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Answer {
        let params = [
            ("query", query.to_owned()),
            ("start", seconds(start_ms)),
            ("end", seconds(end_ms)),
            ("step", seconds(step_ms)),
        ];
        match self.get(client, "/api/v1/query_range", &params) {
            Ok(body) => Answer::from_json(&body),
            Err(e) => Answer::Error(e),
        }
    }
}

/// Milliseconds as decimal seconds.
pub fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A sorted label set.
pub type LabelPairs = Vec<(String, String)>;

/// A parsed query answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A matrix: labels → (timestamp ms, value).
    Matrix(BTreeMap<LabelPairs, Vec<(i64, f64)>>),
    /// `status: error` (or an unusable answer), with the message.
    Error(String),
}

impl Answer {
    /// Parses a `query_range` body.
    pub fn from_json(body: &serde_json::Value) -> Answer {
        if body["status"] != "success" {
            return Answer::Error(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or("?")
            ));
        }
        let data = &body["data"];
        if data["resultType"] != "matrix" {
            return Answer::Error(format!("result type {}", data["resultType"]));
        }
        let mut out = BTreeMap::new();
        for series in data["result"].as_array().into_iter().flatten() {
            let mut labels: LabelPairs = series["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            labels.sort();
            let points = series["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|pair| {
                    let ts = (pair[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64;
                    (ts, parse_value(pair[1].as_str().unwrap_or("")))
                })
                .collect();
            out.insert(labels, points);
        }
        Answer::Matrix(out)
    }
}

/// A sample value as the API writes it.
pub fn parse_value(text: &str) -> f64 {
    match text {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or(f64::NAN),
    }
}

/// An HTTP answer as received.
pub struct Body {
    /// The status.
    pub status: reqwest::StatusCode,
    /// The whole body, as sent.
    pub bytes: axum::body::Bytes,
    /// Whether it is gzipped (`Content-Encoding: gzip`).
    pub gzipped: bool,
}

impl Body {
    /// The body as JSON (`what` names the request in errors).
    pub fn json(&self, what: &str) -> Result<serde_json::Value, String> {
        let mut text = Vec::new();
        let bytes: &[u8] = if self.gzipped {
            use std::io::Read;
            flate2::read::GzDecoder::new(&self.bytes[..])
                .read_to_end(&mut text)
                .map_err(|e| format!("{what}: {}: bad gzip body: {e}", self.status))?;
            &text
        } else {
            &self.bytes
        };
        serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "{what}: {}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )
        })
    }
}
