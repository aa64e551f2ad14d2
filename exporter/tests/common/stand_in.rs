//! Stand-in programs for the hardware tools (`ipmitool`, `nvme`, `apt-get`):
//! small shell scripts that log their argv, then replay a recorded capture,
//! fail, or hang, depending on the arguments they get. Only the hardware
//! boundary is faked; the exporter runs them exactly as it runs the real tools.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What the stand-in does for one argument pattern.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Prints a recorded file on stdout and exits 0.
    Replay(PathBuf),
    /// Prints recorded stdout and stderr files and exits with `code`.
    ReplayStreams {
        /// File for stdout.
        stdout: PathBuf,
        /// File for stderr.
        stderr: PathBuf,
        /// Exit status.
        code: i32,
    },
    /// Waits `seconds`, then prints a recorded file (a slow BMC).
    Delayed(PathBuf, f64),
    /// Prints `stderr` and exits with `code`.
    Fail(&'static str, i32),
    /// Writes its pid to `hung.pid` and sleeps for ten minutes.
    Hang,
}

/// A stand-in program in its own temp dir.
pub struct StandIn {
    dir: tempfile::TempDir,
    /// The executable to pass in the exporter's path flag.
    pub path: PathBuf,
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display())
}

impl StandIn {
    /// Writes a stand-in called `name`. `cases` pairs a shell `case` pattern
    /// matched against the space-joined arguments with what to do.
    pub fn new(name: &str, cases: &[(&str, Reply)]) -> StandIn {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let log = dir.path().join("argv.log");
        let pid = dir.path().join("hung.pid");
        let mut script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\ncase \"$*\" in\n",
            quote(&log)
        );
        for (pattern, reply) in cases {
            let action = match reply {
                Reply::Replay(file) => format!("cat {}; exit 0", quote(file)),
                Reply::ReplayStreams {
                    stdout,
                    stderr,
                    code,
                } => format!(
                    "cat {}; cat {} >&2; exit {code}",
                    quote(stdout),
                    quote(stderr)
                ),
                Reply::Delayed(file, seconds) => {
                    format!("sleep {seconds}; cat {}; exit 0", quote(file))
                }
                Reply::Fail(message, code) => format!("echo '{message}' >&2; exit {code}"),
                Reply::Hang => format!("echo $$ > {}; exec sleep 600", quote(&pid)),
            };
            script.push_str(&format!("  {pattern}) {action} ;;\n"));
        }
        script.push_str("esac\necho \"stand-in: unexpected arguments: $*\" >&2\nexit 64\n");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        StandIn { dir, path }
    }

    /// Every argument list the stand-in was called with, in order.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The pid of the hung run, if one started.
    pub fn hung_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("hung.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The directory the stand-in lives in (for extra files a test needs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether process `pid` is gone (or only a zombie waiting for a reaper).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// `node_scrape_collector_success{collector}` in a scrape's text.
pub fn collector_success(text: &str, collector: &str) -> f64 {
    let prefix = format!("node_scrape_collector_success{{collector=\"{collector}\"}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no success line for {collector}:\n{text}"));
    line[prefix.len()..].parse().unwrap()
}
