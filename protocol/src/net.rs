//! Listening and shutdown, the same for both programs: Prometheus-style
//! listen addresses (`:9870` means every address) and graceful stop on
//! SIGTERM or Ctrl-C.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Binds `host:port`; an empty host (`:9870`) means every address, IPv6 and
/// IPv4, falling back to IPv4 alone where IPv6 is disabled.
pub async fn bind(address: &str) -> io::Result<TcpListener> {
    let candidates: Vec<String> = match address.strip_prefix(':') {
        Some(port) => vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")],
        None => vec![address.to_owned()],
    };
    let mut last_err = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no address to listen on in {address:?}"),
    );
    for candidate in &candidates {
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(candidate).await {
            Ok(addrs) => addrs.collect(),
            Err(err) => {
                last_err = io::Error::new(err.kind(), format!("resolving {candidate}: {err}"));
                continue;
            }
        };
        for addr in addrs {
            match TcpListener::bind(addr).await {
                Ok(listener) => return Ok(listener),
                Err(err) => {
                    last_err = io::Error::new(err.kind(), format!("listening on {addr}: {err}"))
                }
            }
        }
    }
    Err(last_err)
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}
