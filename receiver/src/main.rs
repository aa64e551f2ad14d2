//! `dcmon-receiver` entry point: parse flags, open storage, serve, and on
//! SIGTERM stop accepting, finish in-flight writes, flush and exit 0.

use std::process::ExitCode;

use anyhow::Context;
use dcmon_receiver::app::{self, Limits};
use dcmon_receiver::auth::{Authenticator, load_or_create_admin_token};
use dcmon_receiver::cli::{self, Cli};
use dcmon_receiver::storage::{Options, Storage};

fn main() -> ExitCode {
    let cli = match cli::parse_from(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    dcmon_protocol::logging::init(&cli.log_level, cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "dcmon-receiver stopped");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (token, created) = load_or_create_admin_token(&cli.admin_token_file)?;
    if created {
        tracing::info!(path = %cli.admin_token_file.display(), "generated a new admin token");
    }
    let options = Options {
        retention: cli.retention,
        compaction_interval: cli.compaction_interval,
        retention_interval: cli.retention_interval,
        ..Options::default()
    };
    let storage = Storage::open(&cli.storage_path, options)
        .with_context(|| format!("opening storage {}", cli.storage_path.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let maintenance = storage.spawn_maintenance();
        let listener = dcmon_protocol::net::bind(&cli.listen_address).await?;
        tracing::info!(address = %listener.local_addr()?, storage = %cli.storage_path.display(), "listening");
        let state = app::state(
            storage.clone(),
            Limits {
                max_request_bytes: cli.max_request_bytes,
            },
        );
        let served = axum::serve(listener, app::router(state, Authenticator::new(token)))
            .with_graceful_shutdown(dcmon_protocol::net::shutdown_signal())
            .await;
        // In-flight requests are done; write what is queued and stop.
        maintenance.abort();
        storage.close().await;
        served.context("serving HTTP")
    })
}
