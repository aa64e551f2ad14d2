//! `dcmon-exporter` entry point: parse flags, validate, serve.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dcmon_exporter::cli::ExporterCommand;
use dcmon_exporter::collector::Scraper;
use dcmon_exporter::config::Config;
use dcmon_exporter::{cli, fans, http, identity};

fn main() -> ExitCode {
    let parsed = match cli::parse_from(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    dcmon_protocol::logging::init(&parsed.cli.log_level, parsed.cli.log_format);
    let result = match &parsed.cli.command {
        Some(ExporterCommand::Register(args)) => identity::register::run(args).map(drop),
        Some(ExporterCommand::Fans { action }) => {
            let controller = parsed.cli.fans.controller(&parsed.cli.sysfs);
            fans::cli::run(&controller, action)
        }
        None => run(parsed),
    };
    match result {
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
    // threads exit when idle. The pool is capped at 8 threads: every thread
    // gets its own glibc malloc arena, and arenas are most of the resident
    // set. Cheap collectors queue for microseconds; up to 7 collectors can
    // hang at once (each is skipped while stuck) before the rest wait too,
    // and even then the per-collector timeout bounds every scrape.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .thread_keep_alive(Duration::from_secs(30))
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = dcmon_protocol::net::bind(&config.listen_address).await?;
    let scraper = Scraper::new(&config);
    let enabled: Vec<_> = scraper.collector_names().collect();
    tracing::info!(address = %listener.local_addr()?, collectors = ?enabled, "listening");
    let state = Arc::new(http::AppState {
        scraper,
        telemetry_path: config.telemetry_path.clone(),
    });
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(dcmon_protocol::net::shutdown_signal())
        .await
        .context("serving HTTP")
}
