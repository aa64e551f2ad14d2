//! A real `dcmon-exporter` process for end-to-end tests with the receiver,
//! and a receiver that can be brought back on the address it had (the
//! exporter's remote-write URL must stay valid across a receiver restart).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use dcmon_testkit::KillOnDrop;

use super::peer::{free_addr, wait_for_port};

/// The `dcmon-exporter` binary, built once per test run. It is not a
/// dependency of this crate, so Cargo does not build it for these tests;
/// it lands in the same target directory as `dcmon-receiver`.
pub fn exporter_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let receiver = Path::new(env!("CARGO_BIN_EXE_dcmon-receiver"));
        let profile_dir = receiver.parent().expect("binary in a profile directory");
        dcmon_testkit::workspace_binary("dcmon-exporter", "dcmon-exporter", profile_dir)
    })
}

/// A running exporter with its own state directory, killed on drop.
pub struct Exporter {
    child: Option<KillOnDrop>,
    /// `127.0.0.1:port` of its `/metrics`.
    pub addr: String,
    /// `--state-dir`, kept across restarts.
    pub state_dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Exporter {
    /// Starts an exporter with a fresh state directory and extra flags.
    pub fn start(args: &[&str]) -> Exporter {
        Exporter::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// Starts an exporter whose state directory is `<tmp>/state` (where
    /// [`register`] may have enrolled it).
    pub fn start_in(tmp: tempfile::TempDir, args: &[&str]) -> Exporter {
        let state_dir = tmp.path().join("state");
        let mut exporter = Exporter {
            child: None,
            addr: free_addr(),
            log: tmp.path().join("exporter.log"),
            state_dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            _tmp: tmp,
        };
        exporter.spawn();
        exporter
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(exporter_binary())
            .arg("--web.listen-address")
            .arg(&self.addr)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(KillOnDrop(child));
        wait_for_port(&self.addr, "exporter", &self.log);
    }

    /// SIGTERM (a graceful stop, which spools unsent batches); panics
    /// unless it exits successfully.
    pub fn terminate(&mut self) {
        let status = self.child.take().expect("running").terminate();
        assert!(
            status.success(),
            "exporter exited with {status}:\n{}",
            self.log()
        );
    }

    /// Starts again after [`Exporter::terminate`], same state and flags.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// Stops gracefully and starts again with the same state and flags.
    pub fn restart(&mut self) {
        self.terminate();
        self.spawn();
    }

    /// Its `/metrics` page.
    pub fn metrics(&self) -> String {
        super::client()
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// The sum of the values of the `/metrics` lines starting with `prefix`
    /// (a metric name with the start of its labels).
    pub fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs `dcmon-exporter register` for `hostname` into `state_dir`, with the
/// admin token read from `admin_token_file`.
pub fn register(
    server: &str,
    admin_token_file: &Path,
    hostname: &str,
    state_dir: &Path,
) -> std::process::Output {
    Command::new(exporter_binary())
        .args(["register", "--server", server, "--hostname", hostname])
        .arg("--admin-token-file")
        .arg(admin_token_file)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .unwrap()
}

/// A receiver process on a fixed address and database, for bringing one
/// back where it was after [`super::Receiver::kill`].
pub struct ReceiverOnAddr {
    child: Option<KillOnDrop>,
    log: PathBuf,
}

impl ReceiverOnAddr {
    /// Starts `dcmon-receiver` on `addr` with the database and admin token
    /// in `dir` (as laid out by [`super::Receiver`]).
    pub fn start(addr: &str, dir: &Path) -> ReceiverOnAddr {
        ReceiverOnAddr::start_with(addr, dir, &[])
    }

    /// [`ReceiverOnAddr::start`] with extra flags.
    pub fn start_with(addr: &str, dir: &Path, extra: &[&str]) -> ReceiverOnAddr {
        let log = dir.join("stderr.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
            .arg("--web.listen-address")
            .arg(addr)
            .arg("--storage.path")
            .arg(dir.join("dcmon.db"))
            .arg("--admin-token-file")
            .arg(dir.join("admin-token"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        wait_for_port(addr, "receiver", &log);
        ReceiverOnAddr {
            child: Some(KillOnDrop(child)),
            log,
        }
    }

    /// SIGTERM; panics unless it exits successfully.
    pub fn terminate(&mut self) {
        let status = self.child.take().expect("running").terminate();
        assert!(
            status.success(),
            "receiver exited with {status}:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}
