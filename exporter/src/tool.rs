//! Running an external tool (`ipmitool`, `nvme`, `apt-get`) the one safe way:
//! a fixed argv and no shell, `LC_ALL=C` so numbers and headings are not
//! localised, stdout and stderr read apart (ipmitool interleaves its
//! `Unable to send command` lines otherwise), both capped, and a hard
//! deadline after which the tool's whole process group is killed.
//!
//! Parsing the output is the caller's business; this module only says what
//! the tool printed and how it ended.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The most a tool may print on one stream before the rest is discarded.
/// `ipmitool sensor` on a large board prints about 10 KiB, `apt-get -s` a
/// few hundred KiB; this only guards against a runaway tool.
pub const OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// How often a running tool is polled for its exit.
const POLL: Duration = Duration::from_millis(5);

/// How long the pipes may stay open once the tool's group has been killed.
const LINGER: Duration = Duration::from_millis(500);

/// What a finished tool printed and how it exited.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// Exit status (a non-zero exit is not an error here: several tools
    /// print usable output and still fail, see ipmi_exporter issue 57).
    pub status: ExitStatus,
    /// Standard output, lossily decoded, at most [`OUTPUT_CAP`] bytes.
    pub stdout: String,
    /// Standard error, kept apart from stdout.
    pub stderr: String,
}

/// Why a tool run produced no output.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program does not exist (not installed, or a wrong path flag).
    #[error("{program}: not found")]
    NotFound {
        /// The program as configured.
        program: PathBuf,
    },
    /// The program exists but could not be started.
    #[error("{program}: cannot start: {source}")]
    Spawn {
        /// The program as configured.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran past its deadline and was killed.
    #[error("{program}: still running after {after:?}, killed")]
    TimedOut {
        /// The program as configured.
        program: PathBuf,
        /// The deadline it missed.
        after: Duration,
    },
}

impl ToolOutput {
    /// Whether the tool exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.status.success()
    }

    /// The first non-empty stderr line, for error messages.
    pub fn first_error_line(&self) -> &str {
        self.stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
    }
}

/// A tool invocation: program plus arguments, built once and run many times.
#[derive(Debug, Clone)]
pub struct Tool {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
}

impl Tool {
    /// `program` with no arguments yet, killed after `timeout`.
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            timeout,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The program as configured.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs the tool to completion or to its deadline.
    pub fn run(&self) -> Result<ToolOutput, ToolError> {
        run(&self.program, &self.args, self.timeout)
    }
}

/// Runs `program args…` with `LC_ALL=C`, no stdin, in its own process
/// group; kills the group at `timeout`.
pub fn run(program: &Path, args: &[OsString], timeout: Duration) -> Result<ToolOutput, ToolError> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .env_remove("LANG")
        .env_remove("LANGUAGE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills whatever it started too
        // (ipmi_exporter issue 95: a hung tool's children kept the pipes open).
        .process_group(0)
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ToolError::NotFound {
                program: program.to_owned(),
            },
            _ => ToolError::Spawn {
                program: program.to_owned(),
                source,
            },
        })?;
    let group = Pid::from_raw(child.id() as i32);
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = spawn_reader(child.stdout.take(), done_tx.clone());
    let stderr = spawn_reader(child.stderr.take(), done_tx);

    let deadline = started + timeout;
    let status = match wait_until(&mut child, deadline) {
        Some(status) => status,
        None => {
            kill_group(group);
            let _ = child.wait();
            return Err(ToolError::TimedOut {
                program: program.to_owned(),
                after: timeout,
            });
        }
    };
    // The tool has exited, but something it started may still hold the
    // pipes open; wait for both readers only until the deadline, then kill
    // the rest of its group so the readers see end-of-file.
    let mut closed = 0;
    while closed < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => closed += 1,
            Err(_) => break,
        }
    }
    if closed < 2 {
        kill_group(group);
        while closed < 2 && done_rx.recv_timeout(LINGER).is_ok() {
            closed += 1;
        }
    }
    Ok(ToolOutput {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// Polls until the child exits or `deadline` passes.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            // Cannot happen for a child we own; treat it as hung.
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

fn kill_group(group: Pid) {
    // ESRCH (the group is already gone) is the expected outcome once the
    // tool has exited cleanly; nothing to report either way.
    let _ = killpg(group, Signal::SIGKILL);
}

type Reader = std::thread::JoinHandle<Vec<u8>>;

/// Reads one pipe to its end on a thread, keeping at most [`OUTPUT_CAP`]
/// bytes, and signals `done` when the pipe closes.
fn spawn_reader(pipe: Option<impl Read + Send + 'static>, done: mpsc::Sender<()>) -> Reader {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut pipe) = pipe {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        // Keep draining past the cap so the tool never
                        // blocks on a full pipe.
                        let room = OUTPUT_CAP.saturating_sub(kept.len());
                        kept.extend_from_slice(&chunk[..n.min(room)]);
                    }
                }
            }
        }
        let _ = done.send(());
        kept
    })
}

/// A finished reader's text. A reader still blocked (a grandchild that
/// left the group holds the pipe) is abandoned rather than waited for: its
/// output is reported as empty and its thread ends with the pipe.
fn collect(reader: Reader) -> String {
    if !reader.is_finished() {
        // It may be between signalling and returning; give it a moment.
        std::thread::sleep(Duration::from_millis(10));
        if !reader.is_finished() {
            return String::new();
        }
    }
    let bytes = reader.join().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Result<ToolOutput, ToolError> {
        run(Path::new("/bin/sh"), &["-c".into(), script.into()], timeout)
    }

    #[test]
    fn keeps_stdout_and_stderr_apart() {
        let out = sh("echo out; echo err >&2; exit 3", Duration::from_secs(5)).unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        assert!(!out.succeeded());
        assert_eq!(out.first_error_line(), "err");
    }

    #[test]
    fn runs_with_the_c_locale() {
        let out = sh("echo $LC_ALL", Duration::from_secs(5)).unwrap();
        assert_eq!(out.stdout, "C\n");
    }

    #[test]
    fn missing_program_is_not_found() {
        let err = run(Path::new("/nonexistent/tool"), &[], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ToolError::NotFound { .. }), "{err}");
    }

    #[test]
    fn hung_tool_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = Instant::now();
        let err = sh(
            &format!("echo $$ > {}; exec sleep 30", pid_file.display()),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, ToolError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Reaped and gone, not left behind as an orphan.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn grandchild_holding_the_pipe_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = Instant::now();
        // The shell exits at once, but its background sleep keeps stdout open.
        let out = sh(
            &format!("sleep 30 & echo $! > {}; echo hi", pid_file.display()),
            Duration::from_millis(500),
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(out.succeeded());
        assert_eq!(out.stdout, "hi\n");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid = pid.trim();
        // Killed with the group once the deadline passed.
        std::thread::sleep(Duration::from_millis(100));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z"),
            "grandchild {pid} still running: {state}"
        );
    }

    #[test]
    fn grandchild_outside_the_group_is_abandoned_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = Instant::now();
        // `setsid` puts the sleep in a session of its own, out of reach of
        // the group kill, still holding stdout.
        let out = sh(
            &format!(
                "setsid sleep 30 & echo $! > {}; echo hi",
                pid_file.display()
            ),
            Duration::from_millis(300),
        )
        .unwrap();
        let elapsed = started.elapsed();
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert!(out.succeeded());
        assert_eq!(out.stdout, "", "the held pipe's output is dropped");
    }

    #[test]
    fn output_is_capped() {
        let out = sh(
            &format!("head -c {} /dev/zero", OUTPUT_CAP + 100_000),
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(out.stdout.len(), OUTPUT_CAP);
    }
}
