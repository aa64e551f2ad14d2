//! `dcmon-receiver` entry point: parse flags, open storage, serve, and on
//! SIGTERM stop accepting, finish in-flight writes, flush and exit 0.

use std::process::ExitCode;

use anyhow::Context;
use dcmon_receiver::app::{self, Limits};
use std::sync::Arc;

use dcmon_receiver::auth::{Authenticator, TokenStore, load_or_create_admin_token};
use dcmon_receiver::cli::{self, Cli, Command, TokenAction};
use dcmon_receiver::promql::EngineOptions;
use dcmon_receiver::storage::{Options, Storage};

fn main() -> ExitCode {
    let cli = match cli::parse_from(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    dcmon_protocol::logging::init(&cli.log_level, cli.log_format);
    let result = match &cli.command {
        Some(Command::Token { action }) => run_token_command(&cli, action),
        None => run(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "dcmon-receiver stopped");
            ExitCode::FAILURE
        }
    }
}

/// `dcmon-receiver token create|list|revoke`.
fn run_token_command(cli: &Cli, action: &TokenAction) -> anyhow::Result<()> {
    let store = TokenStore::open(&cli.storage_path)
        .with_context(|| format!("opening {}", cli.storage_path.display()))?;
    match action {
        TokenAction::Create { name, scope } => {
            let secret = store.create(name, *scope)?;
            eprintln!("Created {scope:?} token {name:?}. It is shown only now; store it safely:");
            println!("{secret}");
        }
        TokenAction::List => {
            println!("{:<24} {:<6} {:<14} revoked", "name", "scope", "created_ms");
            for token in store.list()? {
                let revoked = token
                    .revoked_ms
                    .map_or_else(|| "-".to_owned(), |ms| ms.to_string());
                println!(
                    "{:<24} {:<6} {:<14} {revoked}",
                    token.name,
                    format!("{:?}", token.scope).to_lowercase(),
                    token.created_ms
                );
            }
        }
        TokenAction::Revoke { name } => {
            store.revoke(name)?;
            eprintln!("Revoked token {name:?}.");
        }
    }
    Ok(())
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
    let tokens = Arc::new(TokenStore::open(&cli.storage_path).context("opening the token table")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let maintenance = storage.spawn_maintenance();
        let listener = dcmon_protocol::net::bind(&cli.listen_address).await?;
        tracing::info!(address = %listener.local_addr()?, storage = %cli.storage_path.display(), "listening");
        let engine = EngineOptions {
            lookback_delta: cli.query_lookback_delta,
            timeout: cli.query_timeout,
            max_samples: cli.query_max_samples,
            ..EngineOptions::default()
        };
        let state = app::state_with_query(
            storage.clone(),
            Limits {
                max_request_bytes: cli.max_request_bytes,
            },
            engine,
            cli.query_max_concurrency,
        );
        let served = axum::serve(listener, app::router(state, Authenticator::new(token, Some(tokens))))
            .with_graceful_shutdown(dcmon_protocol::net::shutdown_signal())
            .await;
        // In-flight requests are done; write what is queued and stop.
        maintenance.abort();
        storage.close().await;
        served.context("serving HTTP")
    })
}
