//! Helpers for the receiver's integration tests: a real `dcmon-receiver`
//! process on a loopback port with its own database, and remote-write
//! request builders.

#![allow(dead_code)]

pub mod dashboards;
pub mod exporter;
pub mod fleet;
pub mod hosts;
pub mod peer;
pub mod rulefile;
pub mod series_notation;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dcmon_testkit::KillOnDrop;
use std::time::{Duration, Instant};

use dcmon_protocol::remote_write::{self, SeriesSamples, Version};

/// A running receiver, killed on drop.
pub struct Receiver {
    child: Option<KillOnDrop>,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The admin token.
    pub token: String,
    /// Directory holding the database, token file and log.
    pub dir: PathBuf,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Receiver {
    /// Starts a receiver in a fresh directory with extra flags.
    pub fn start(extra: &[&str]) -> Receiver {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut receiver = Receiver {
            child: None,
            addr: String::new(),
            token: String::new(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        receiver.spawn();
        receiver
    }

    /// Starts a receiver keeping its database, token and log in `dir`
    /// (which the caller owns, e.g. a small file system of its own).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Receiver {
        let mut receiver = Receiver {
            child: None,
            addr: String::new(),
            token: String::new(),
            dir: dir.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: None,
        };
        receiver.spawn();
        receiver
    }

    /// Starts a receiver in a fresh directory on a copy of `database`, as
    /// a restore puts a backup in place.
    pub fn start_with_database(database: &Path, extra: &[&str]) -> Receiver {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(database, tmp.path().join("dcmon.db")).unwrap();
        let mut receiver = Receiver {
            child: None,
            addr: String::new(),
            token: String::new(),
            dir: tmp.path().to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        receiver.spawn();
        receiver
    }

    /// Path of the SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("dcmon.db")
    }

    /// Path of the admin token file.
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("admin-token")
    }

    fn spawn(&mut self) {
        self.addr = peer::free_addr();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .unwrap();
        let mut args = vec![
            "--web.listen-address".to_owned(),
            self.addr.clone(),
            "--storage.path".to_owned(),
            self.db_path().display().to_string(),
            "--admin-token-file".to_owned(),
            self.token_file().display().to_string(),
        ];
        // The receiver's own samples would change the series counts tests
        // check; the tests about them turn them on.
        if !self
            .extra
            .iter()
            .any(|a| a.starts_with("--self-scrape.interval"))
        {
            args.push("--self-scrape.interval=0s".to_owned());
        }
        args.extend(self.extra.iter().cloned());
        let child = Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(KillOnDrop(child));
        peer::wait_for_port(&self.addr, "receiver", &self.dir.join("stderr.log"));
        self.token = std::fs::read_to_string(self.token_file())
            .unwrap()
            .trim()
            .to_owned();
    }

    /// Kills the process at once (SIGKILL) and starts it again on the same
    /// database.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGKILL, no chance to flush.
    pub fn kill(&mut self) {
        // Dropping it kills and reaps it.
        self.child = None;
    }

    /// SIGTERM, then waits; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").terminate()
    }

    /// Runs `dcmon-receiver <args>` against this receiver's database;
    /// returns (success, stdout, stderr).
    pub fn admin_command(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
            .args(args)
            .arg("--storage.path")
            .arg(self.db_path())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Creates a scoped token with the CLI and returns it.
    pub fn create_token(&self, name: &str, scope: &str) -> String {
        let (ok, stdout, stderr) =
            self.admin_command(&["token", "create", "--name", name, "--scope", scope]);
        assert!(ok, "token create failed: {stderr}");
        stdout.trim().to_owned()
    }

    /// Creates a write-scoped token and stores it in a file in this
    /// receiver's directory, as a sender's bearer-token file.
    pub fn write_token_file(&self, name: &str) -> PathBuf {
        let token = self.create_token(name, "write");
        let file = self.dir.join(format!("{name}.token"));
        std::fs::write(&file, format!("{token}\n")).unwrap();
        file
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The receiver's own `/metrics` text (admin token).
    pub fn metrics_text(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .bearer_auth(&self.token)
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET with the admin token; (status, JSON body).
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = client()
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().unwrap();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// GET `/api/v1/query` with `params` and `token`; panics unless it
    /// answers 200; returns `data.result`.
    pub fn query_result(&self, token: &str, params: &[(&str, &str)]) -> Vec<serde_json::Value> {
        let response = client()
            .get(self.url("/api/v1/query"))
            .query(params)
            .bearer_auth(token)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "query {params:?}");
        let body: serde_json::Value = response.json().unwrap();
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("no result in {body}"))
            .clone()
    }

    /// POSTs a remote-write body; (status, headers, body text).
    pub fn write_raw(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response {
        let mut request = client().post(self.url("/api/v1/write"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.body(body).send().unwrap();
        Response {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().unwrap(),
        }
    }

    /// Writes series with the given protocol version and the admin token.
    pub fn write(&self, version: Version, series: &[SeriesSamples]) -> Response {
        let body = match version {
            Version::V1 => remote_write::encode_v1(series),
            Version::V2 => remote_write::encode_v2(series),
        };
        self.write_raw(
            Some(&self.token.clone()),
            &write_headers(version),
            remote_write::compress(&body),
        )
    }
}

/// A write response.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub body: String,
}

/// The headers a sender of `version` sends.
pub fn write_headers(version: Version) -> Vec<(&'static str, &'static str)> {
    let content_type = match version {
        Version::V1 => "application/x-protobuf",
        Version::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    };
    let protocol = match version {
        Version::V1 => "0.1.0",
        Version::V2 => "2.0.0",
    };
    vec![
        ("content-type", content_type),
        ("content-encoding", "snappy"),
        ("x-prometheus-remote-write-version", protocol),
    ]
}

/// A blocking HTTP client.
pub fn client() -> reqwest::blocking::Client {
    // reqwest's TLS (built in with the exporter's) needs a rustls provider.
    dcmon_web::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A series with labels and samples.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> SeriesSamples {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    labels.sort();
    SeriesSamples {
        labels,
        samples: samples.to_vec(),
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Opens the receiver's database read-only with the library, for checking
/// what is stored through the read path.
pub fn open_storage(path: &Path) -> dcmon_receiver::storage::Storage {
    dcmon_receiver::storage::Storage::open(path, dcmon_receiver::storage::Options::default())
        .unwrap()
}

/// Polls `done` every 50 ms; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Matches series named `name`.
pub fn name_matcher(name: &str) -> dcmon_receiver::storage::index::Matcher {
    use dcmon_receiver::storage::index::{MatchOp, Matcher};
    Matcher::new("__name__", MatchOp::Equal, name).unwrap()
}
