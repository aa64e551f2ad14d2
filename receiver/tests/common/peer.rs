//! Child processes of the tests (dcmon's own programs and the real peers:
//! Prometheus, node_exporter, vmalert, Alertmanager): a process killed when
//! dropped, a graceful stop, a free loopback port, and waiting for a port
//! or an HTTP endpoint to answer.

use std::path::Path;
use std::time::{Duration, Instant};

use super::client;

/// A peer process, killed and reaped when dropped.
pub use dcmon_testkit::KillOnDrop as Process;
pub use dcmon_testkit::{free_addr, free_port};

/// Waits up to 30 s for `addr` to accept connections; panics with the
/// program's log (`log`) if it does not.
pub fn wait_for_port(addr: &str, what: &str, log: &Path) {
    assert!(
        dcmon_testkit::wait_for_port(addr, Duration::from_secs(30)),
        "{what} did not start:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
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
