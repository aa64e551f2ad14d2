//! `dcmon-receiver` entry point: parse flags, load the admin token, serve.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use dcmon_receiver::auth::{Authenticator, load_or_create_admin_token};
use dcmon_receiver::{app, cli::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = dcmon_protocol::net::bind(&cli.listen_address).await?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        axum::serve(listener, app::router(Authenticator::new(token)))
            .with_graceful_shutdown(dcmon_protocol::net::shutdown_signal())
            .await
            .context("serving HTTP")
    })
}
