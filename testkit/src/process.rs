//! Child processes that die with the test that started them.

use std::ops::{Deref, DerefMut};
use std::process::{Child, ExitStatus};

/// A child process killed and reaped when dropped, so a failing assertion
/// (which unwinds past any explicit stop) leaves no server running and no
/// zombie behind. Derefs to the [`Child`] for everything else.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Errors are expected and harmless: the process may have exited or
        // been reaped already.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    /// Stops the process with SIGTERM, as systemd would, so it can flush
    /// and exit on its own; waits for it and returns how it ended.
    pub fn terminate(mut self) -> ExitStatus {
        sigterm(&mut self.0)
    }
}

/// Sends SIGTERM to `child` and waits for it; returns its exit status.
///
/// # Panics
/// If the signal cannot be sent or the wait fails: the test has lost track
/// of its own child.
pub fn sigterm(child: &mut Child) -> ExitStatus {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .unwrap_or_else(|e| panic!("SIGTERM to {pid}: {e}"));
    child.wait().expect("waiting for the child")
}

impl Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Debian's `prometheus` with `config` (a file in `dir`), its TSDB and log
/// (`prometheus.log`) in `dir`, serving on `127.0.0.1:port`. Panics, naming
/// the package, when it is not installed.
pub fn start_prometheus(config: &std::path::Path, dir: &std::path::Path, port: u16) -> KillOnDrop {
    start_prometheus_with(config, dir, port, &[])
}

/// [`start_prometheus`] with extra flags, e.g.
/// `--web.enable-remote-write-receiver`.
pub fn start_prometheus_with(
    config: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
    extra: &[&str],
) -> KillOnDrop {
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus.log");
    KillOnDrop(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is not installed (apt-get install prometheus)"),
    )
}

/// The binary `binary` of this workspace's package `package`, built (by
/// `cargo build`, a no-op when it is up to date) into `profile_dir`, a
/// profile directory of the target directory, e.g. the one holding the
/// caller's own `CARGO_BIN_EXE_*`. For a test or benchmark that runs
/// another package's program: Cargo builds only the caller's own binaries
/// for it.
///
/// # Panics
/// If the build fails or leaves no binary: the test cannot run.
pub fn workspace_binary(
    package: &str,
    binary: &str,
    profile_dir: &std::path::Path,
) -> std::path::PathBuf {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace");
    let mut build = std::process::Command::new(env!("CARGO"));
    build
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", package, "--bin", binary]);
    // The profile directory is named after the profile, except `dev`'s.
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some(profile) => {
            build.args(["--profile", profile]);
        }
    }
    if let Some(target) = profile_dir.parent() {
        build.arg("--target-dir").arg(target);
    }
    let status = build.status().expect("running cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {binary} failed"
    );
    let path = profile_dir.join(binary);
    assert!(path.exists(), "{} missing after the build", path.display());
    path
}
