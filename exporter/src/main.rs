//! `dcmon-exporter` entry point: parse flags, validate, serve.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dcmon_exporter::collector::Scraper;
use dcmon_exporter::config::Config;
use dcmon_exporter::{cli, http};

fn main() -> ExitCode {
    let parsed = match cli::parse_from(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    dcmon_protocol::logging::init(&parsed.cli.log_level, parsed.cli.log_format);
    match run(parsed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "dcmon-exporter stopped");
            ExitCode::FAILURE
        }
    }
}

fn run(parsed: cli::Parsed) -> anyhow::Result<()> {
    let config = Config::from_parsed(parsed)?;
    // One thread serves HTTP; collectors run on the blocking pool, whose
    // threads exit when idle. This keeps the resident set small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(64)
        .thread_keep_alive(Duration::from_secs(30))
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = bind(&config.listen_address).await?;
    let scraper = Scraper::new(&config);
    let enabled: Vec<_> = scraper.collector_names().collect();
    tracing::info!(address = %listener.local_addr()?, collectors = ?enabled, "listening");
    let state = Arc::new(http::AppState {
        scraper,
        telemetry_path: config.telemetry_path.clone(),
    });
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
}

/// Binds `host:port`; an empty host (`:9870`) means every address, IPv6 and
/// IPv4, falling back to IPv4 alone where IPv6 is disabled.
async fn bind(address: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let candidates: Vec<String> = match address.strip_prefix(':') {
        Some(port) => vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")],
        None => vec![address.to_owned()],
    };
    let mut last_err = None;
    for candidate in &candidates {
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(candidate).await {
            Ok(addrs) => addrs.collect(),
            Err(err) => {
                last_err = Some(anyhow::Error::from(err).context(format!("resolving {candidate}")));
                continue;
            }
        };
        for addr in addrs {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => return Ok(listener),
                Err(err) => {
                    last_err =
                        Some(anyhow::Error::from(err).context(format!("listening on {addr}")))
                }
            }
        }
    }
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no address to listen on in {address:?}")))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
