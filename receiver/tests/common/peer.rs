//! Child processes of the tests (dcmon's own programs and the real peers:
//! Prometheus, node_exporter, vmalert, Alertmanager): a process killed when
//! dropped, a graceful stop, a free loopback port, and waiting for a port
//! or an HTTP endpoint to answer.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::client;

/// A peer process, killed and reaped when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Stops the process with SIGTERM (so it flushes) and reaps it.
    pub fn terminate(mut self) {
        sigterm(&mut self.0);
    }
}

/// SIGTERM, then waits; returns the exit status.
pub fn sigterm(child: &mut Child) -> ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `127.0.0.1:port` with a port nothing listens on right now.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Waits up to 30 s for `addr` to accept connections; panics with the
/// program's log (`log`) if it does not.
pub fn wait_for_port(addr: &str, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to 30 s for `url` to answer a GET with a 2xx.
pub fn wait_for(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client()
            .get(url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not come up at {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
