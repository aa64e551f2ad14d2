//! Loopback ports for servers the tests start.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A loopback port nothing listened on a moment ago. The kernel hands out
/// ephemeral ports in turn, so another process taking it before the server
/// under test binds it is unlikely, not impossible.
///
/// # Panics
/// If no loopback port can be bound at all: nothing could run then.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
        .port()
}

/// `127.0.0.1:port` with a [`free_port`].
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Waits until `addr` accepts a TCP connection; false if it has not within
/// `within`. Callers turn false into their own failure, with the server's
/// log, which only they know where to find.
#[must_use]
pub fn wait_for_port(addr: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
