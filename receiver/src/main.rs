//! `dcmon-receiver` entry point: parse flags, open storage, serve, and on
//! SIGTERM stop accepting, finish in-flight writes, flush and exit 0.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use dcmon_receiver::app::{self, AppState};
use dcmon_web::WebConfigSource;
use std::sync::Arc;

use dcmon_receiver::api::query::QueryService;
use dcmon_receiver::auth::{Authenticator, ClientStore, TokenStore, load_or_create_admin_token};
use dcmon_receiver::backup;
use dcmon_receiver::cli::{self, Cli, ClientAction, Command, Config, TokenAction};
use dcmon_receiver::commands::CommandQueue;
use dcmon_receiver::forward::Forwarder;
use dcmon_receiver::forward::query::QueryUpstream;
use dcmon_receiver::heartbeat;
use dcmon_receiver::metrics::Metrics;
use dcmon_receiver::promql::{Engine, QueryCache};
use dcmon_receiver::rules::Rules;
use dcmon_receiver::self_scrape;
use dcmon_receiver::serve;
use dcmon_receiver::storage::{Storage, now_ms};

/// mimalloc rather than the C library's allocator: a query holds a few
/// hundred kilobytes of samples per series it reads, freed once mapped, and
/// glibc hands blocks that size back to the kernel when freed, so the next
/// series faults its pages in again and a growing vector is copied more
/// often; mimalloc keeps them for reuse. Measured on the 7-day fleet
/// `histogram_quantile` (query bench, dcmon alone, builds alternating):
/// 39–43 ms against 40–48.
///
/// Its v2 line (`Cargo.toml`), not v3: v3 keeps freed pages a second
/// before giving them back to the kernel, v2 ten milliseconds, and a
/// query frees most of what it held well within that second. On the same
/// bench's 7-day run the peak RSS while querying was 185–189 MiB with v2
/// against 229–245 with v3, at the same query times; ingest (6 h, dcmon
/// alone) took 1.29–1.32 µs of CPU per sample against 1.22–1.67.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::parse_from(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    dcmon_protocol::logging::init(&cli.log_level, cli.log_format);
    let result = match &cli.command {
        Some(Command::Token { action }) => run_token_command(&cli, action),
        Some(Command::Client { action }) => run_client_command(&cli, action),
        Some(Command::Backup { output }) => run_backup(&cli, output),
        None => run(cli.config()),
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

/// `dcmon-receiver client list|revoke`.
fn run_client_command(cli: &Cli, action: &ClientAction) -> anyhow::Result<()> {
    let store = ClientStore::open(&cli.storage_path)
        .with_context(|| format!("opening {}", cli.storage_path.display()))?;
    match action {
        ClientAction::List => {
            println!(
                "{:<24} {:<24} {:<8} {:<20} {:<10} fingerprint",
                "id", "hostname", "status", "last_seen", "version"
            );
            for client in store.list(now_ms(), cli.push_interval)? {
                let seen = client
                    .last_seen
                    .map_or_else(|| "-".to_owned(), |s| format!("{s:.0}"));
                println!(
                    "{:<24} {:<24} {:<8} {:<20} {:<10} {}",
                    client.id,
                    client.hostname,
                    client.status,
                    seen,
                    client.exporter_version,
                    client.key_fingerprint
                );
            }
        }
        ClientAction::Revoke { id } => {
            let revoked = store.revoke(id)?;
            eprintln!("Revoked client {revoked}; its next request is refused.");
        }
    }
    Ok(())
}

/// `dcmon-receiver backup OUTPUT`.
fn run_backup(cli: &Cli, output: &Path) -> anyhow::Result<()> {
    let bytes = backup::backup(&cli.storage_path, output)?;
    println!(
        "Wrote {} ({bytes} bytes), a copy of {}.",
        output.display(),
        cli.storage_path.display()
    );
    Ok(())
}

/// After the runtime's work is done, longest to wait for blocking tasks
/// (a query still evaluating) before exiting anyway.
const BLOCKING_TASKS_GRACE: Duration = Duration::from_secs(5);

/// On shutdown, longest to wait for forwarding to put what it holds in
/// its queues.
const FORWARD_GRACE: Duration = Duration::from_secs(10);

/// Builds the services `config` describes and serves until SIGTERM.
fn run(config: Config) -> anyhow::Result<()> {
    let web = Arc::new(
        WebConfigSource::load(config.web_config_file.as_deref())
            .context("loading --web.config.file")?,
    );
    let (token, created) = load_or_create_admin_token(&config.admin_token_file)?;
    if created {
        tracing::info!(path = %config.admin_token_file.display(), "generated a new admin token");
    }
    let path = &config.storage_path;
    let storage = Storage::open(path, config.storage.clone())
        .with_context(|| format!("opening storage {}", path.display()))?;
    let tokens = Arc::new(TokenStore::open(path).context("opening the token table")?);
    let clients = Arc::new(ClientStore::open(path).context("opening the clients table")?);
    let commands = Arc::new(
        CommandQueue::open(
            path,
            config.command_result_timeout,
            config.storage.retention,
        )
        .context("opening the command queue")?,
    );
    // A bad rule file stops the start, naming file, group and rule.
    let mut metrics = Metrics::default();
    let rules = Arc::new(
        Rules::load(
            config.rules.files.clone(),
            config.rules.evaluation_interval,
            Engine::new(storage.clone(), config.engine.clone()),
            metrics.rules.clone(),
        )
        .context("loading --rules.file")?,
    );

    let notifier = notifier(&config.rules.alertmanager, &metrics)?;
    if let Some(notifier) = &notifier {
        rules.set_notifier(notifier.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let served = runtime.block_on(async {
        // Listening for the signal before the port opens.
        let (trigger, shutdown) = serve::shutdown_channel();
        let signal = tokio::spawn(async move {
            dcmon_protocol::net::shutdown_signal().await;
            trigger.fire();
        });
        let maintenance = storage.spawn_maintenance();
        let presence =
            heartbeat::spawn(Arc::clone(&clients), storage.clone(), config.push_interval);
        let listener = dcmon_protocol::net::bind(&config.listen_address).await?;
        let current = web.current();
        tracing::info!(
            address = %listener.local_addr()?,
            scheme = current.scheme(),
            fingerprint = current.tls.as_ref().map(|t| t.fingerprint.as_str()),
            storage = %config.storage_path.display(),
            "listening"
        );
        let query = QueryService::new(
            Engine::new(storage.clone(), config.engine.clone()),
            config.query_max_concurrency,
            QueryCache::new(config.query_cache_size),
        );
        let _sender = notifier.as_ref().map(|n| n.spawn());
        rules.start();
        let reload_rules = spawn_reload_on_hangup(Arc::clone(&rules));
        let forward = match config.forward.clone() {
            Some(forward) => Some(Arc::new(
                Forwarder::start(forward)
                    .await
                    .context("starting --remote-write.forward")?,
            )),
            None => None,
        };
        let query_upstream = match &config.query_upstream {
            Some((url, auth)) => Some(Arc::new(
                QueryUpstream::new(url, auth.clone(), config.engine.timeout)
                    .map_err(anyhow::Error::msg)
                    .context("--query.upstream.url")?,
            )),
            None => None,
        };
        if let Some(forward) = &forward {
            metrics.register_collector(forward.metrics());
        }
        let state = Arc::new(AppState {
            storage: storage.clone(),
            metrics,
            limits: config.limits,
            clients: Arc::clone(&clients),
            push_interval: config.push_interval,
            commands,
            min_duty: config.min_duty,
            query,
            series_budgets: Default::default(),
            rules: Arc::clone(&rules),
            forward: forward.clone(),
            query_upstream,
        });
        let self_scrape = config
            .self_scrape
            .clone()
            .map(|scrape| self_scrape::spawn(Arc::clone(&state), scrape.interval, scrape.target));
        let auth = Authenticator::new(token)
            .with_tokens(tokens)
            .with_clients(Arc::clone(&clients))
            .with_web_config(Arc::clone(&web));
        // Running queries are cancelled when shutdown begins, so draining
        // in-flight requests does not wait for them.
        let queries = state.query.clone();
        let on_shutdown = shutdown.clone();
        let cancel_queries = tokio::spawn(async move {
            on_shutdown.fired().await;
            queries.shut_down();
        });
        let app = app::router(Arc::clone(&state), auth, shutdown.clone()).layer(
            axum::middleware::from_fn_with_state(Arc::clone(&web), dcmon_web::gate::with_headers),
        );
        serve::serve(
            listener,
            app,
            config.serve,
            state.metrics.connections.clone(),
            shutdown,
            web,
        )
        .await;
        signal.abort();
        cancel_queries.abort();
        // Writes are done: what forwarding holds goes upstream or to its
        // queues on disk.
        if let Some(forward) = &forward {
            forward.shut_down(FORWARD_GRACE).await;
        }
        // In-flight requests are done or dropped; write what is queued and stop.
        maintenance.abort();
        presence.abort();
        reload_rules.abort();
        rules.stop();
        if let Some(task) = self_scrape {
            task.abort();
        }
        if let Err(err) = clients.flush_activity() {
            tracing::warn!(error = %err, "saving client activity failed");
        }
        storage.close().await;
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(BLOCKING_TASKS_GRACE);
    served
}

/// Re-reads the rule files on each SIGHUP, as Prometheus does; a bad file
/// is logged and the rules running go on.
fn spawn_reload_on_hangup(rules: Arc<Rules>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; rule files reload only through /-/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            let rules = Arc::clone(&rules);
            match tokio::task::spawn_blocking(move || rules.reload()).await {
                Ok(Ok(())) => tracing::info!("rule files reloaded"),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "reloading the rule files failed; the previous rules stay");
                }
                Err(_) => tracing::warn!("reloading the rule files failed"),
            }
        }
    })
}

/// The Alertmanager notifier the `--alertmanager.*` flags ask for; `None`
/// without `--alertmanager.url`.
fn notifier(
    config: &dcmon_receiver::cli::AlertmanagerConfig,
    metrics: &dcmon_receiver::metrics::Metrics,
) -> anyhow::Result<Option<dcmon_receiver::rules::notify::Notifier>> {
    use dcmon_receiver::rules::notify::{Auth, Notifier, Options};
    if config.urls.is_empty() {
        return Ok(None);
    }
    let auth = Auth::from_files(
        config.bearer_token_file.as_deref(),
        config.username.as_deref(),
        config.password_file.as_deref(),
    )
    .context("reading the --alertmanager credentials")?;
    let options = Options {
        urls: config.urls.clone(),
        auth,
        timeout: config.timeout,
        capacity: config.capacity,
        resend_delay: config.resend_delay,
        external_url: config.external_url.clone(),
    };
    Notifier::new(options, metrics.rules.notifications.clone())
        .context("starting the Alertmanager notifier")
        .map(Some)
}
