//! Running the real peers (Prometheus, node_exporter, vmalert,
//! Alertmanager) beside a receiver: a child process killed when dropped,
//! a free loopback port, and waiting for an HTTP endpoint to answer.

use std::net::TcpListener;
use std::process::Child;
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
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
