//! Starting real exporter processes (ours and Debian's node_exporter) on
//! loopback ports for end-to-end tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcmon_testkit::KillOnDrop;
use dcmon_testkit::free_port;

/// A running server process, killed on drop.
pub struct Server {
    child: KillOnDrop,
    /// `127.0.0.1:port`.
    pub addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `dcmon-exporter` on a free loopback port with extra `args`.
    pub fn exporter(args: &[&str]) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut all = vec!["--web.listen-address".to_owned(), addr.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        Server::start(Path::new(env!("CARGO_BIN_EXE_dcmon-exporter")), &all, addr)
    }

    /// Starts Debian's `prometheus-node-exporter` with its default
    /// collectors and extra `args`.
    pub fn node_exporter(args: &[&str]) -> Server {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let binary = which("prometheus-node-exporter")
            .or_else(|| which("node_exporter"))
            .expect("prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter)");
        let mut all = vec![format!("--web.listen-address={addr}")];
        all.extend(args.iter().map(|a| a.to_string()));
        Server::start(&binary, &all, addr)
    }

    fn start(binary: &Path, args: &[String], addr: String) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let child = KillOnDrop(
            Command::new(binary)
                .args(args)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display())),
        );
        let server = Server {
            child,
            addr,
            log,
            _dir: dir,
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&self) {
        assert!(
            dcmon_testkit::wait_for_port(&self.addr, Duration::from_secs(20)),
            "server did not listen on {}: {}",
            self.addr,
            self.log_text()
        );
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines (waiting briefly for them to be flushed).
    pub fn log_lines_containing(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let file = std::fs::File::open(&self.log).unwrap();
            let lines: Vec<String> = BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.contains(needle))
                .collect();
            if !lines.is_empty() || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Process id, for reading its resource usage.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The full path of `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// `GET url` with headers; returns (status, headers, body bytes).
pub fn get(url: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    dcmon_web::install_crypto_provider();
    let client = reqwest::blocking::Client::builder()
        .no_gzip()
        .build()
        .unwrap();
    let mut request = client.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().unwrap().to_vec())
}

/// `GET url` as text, asserting 200.
pub fn get_text(url: &str) -> String {
    let (status, _, body) = get(url, &[]);
    assert_eq!(status, 200, "GET {url}");
    String::from_utf8(body).unwrap()
}

/// Remarks `promtool check metrics` may make on dcmon's output, each one
/// inherited from the exporter whose names dcmon keeps
/// (`docs/metrics.md` says which).
pub const ACCEPTED_PROMTOOL_REMARKS: &[&str] = &[
    r#"^nvme_power_on_hours_total use base unit "seconds" instead of "hours"$"#,
    r"^node_memory_[A-Za-z0-9_]+ metric names should be written in 'snake_case' not 'camelCase'$",
    r"^node_netstat_[A-Za-z0-9_]+ metric names should be written in 'snake_case' not 'camelCase'$",
    r#"^node_entropy_(available|pool_size)_bits use base unit "bytes" instead of "bits"$"#,
];

/// Runs `promtool check metrics` on `text`; returns everything it said.
/// Panics on any remark not in [`ACCEPTED_PROMTOOL_REMARKS`].
pub fn promtool_check_metrics(text: &str) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let promtool =
        which("promtool").expect("promtool is not installed (apt-get install prometheus)");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let remarks = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let accepted: Vec<regex::Regex> = ACCEPTED_PROMTOOL_REMARKS
        .iter()
        .map(|r| regex::Regex::new(r).unwrap())
        .collect();
    let unexpected: Vec<&str> = remarks
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !accepted.iter().any(|re| re.is_match(l)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "promtool remarks:\n{}",
        unexpected.join("\n")
    );
    remarks
}
