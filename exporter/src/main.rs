//! `dcmon-exporter` entry point: parse flags, validate, serve.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dcmon_exporter::cli::ExporterCommand;
use dcmon_exporter::collector::{Scraper, Services, SharedScraper};
use dcmon_exporter::config::Config;
use dcmon_exporter::identity::{Enrollment, IdentityStore, JwtSigner};
use dcmon_exporter::receiver_tls::{self, ReceiverTrust, SeenCertificate};
use dcmon_exporter::runner::{CommandRunner, RunnerOptions};
use dcmon_exporter::runtime_config::{LiveSettings, RuntimeStore};
use dcmon_exporter::shipper::{EndpointAuth, EndpointConfig, RequestSigner, Shipper};
use dcmon_exporter::{cli, fans, http, identity};
use dcmon_web::WebConfigSource;
use dcmon_web::listener::WebListener;
use tokio::sync::watch;

/// How long shutdown waits for the shipper to spool what it holds.
const SHIPPER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let parsed = match cli::parse_from(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    dcmon_protocol::logging::init(&parsed.cli.log_level, parsed.cli.log_format);
    // reqwest builds TLS through the process's rustls provider.
    dcmon_web::install_crypto_provider();
    let result = match &parsed.cli.command {
        Some(ExporterCommand::Register(args)) => identity::register::run(args).map(drop),
        Some(ExporterCommand::Fans { action }) => {
            let controller =
                fans::FanController::for_host(&parsed.cli.fans.config(), &parsed.cli.sysfs);
            fans::cli::run(&controller, action)
        }
        Some(ExporterCommand::Config { action }) => {
            dcmon_exporter::runtime_config_cli::run(&parsed.cli, action)
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
    let config = parsed.into_config()?;
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

/// The receiver this host is enrolled with, if `dcmon-exporter register`
/// ran: its enrollment and the signer of per-request JWTs.
fn enrollment(config: &Config) -> anyhow::Result<Option<(Enrollment, Arc<JwtSigner>)>> {
    // A host that never registered may not even have its state directory.
    if !config
        .remote_write
        .state_dir
        .join(identity::enrollment::ENROLLMENT_FILE)
        .exists()
    {
        return Ok(None);
    }
    let state = IdentityStore::open(&config.remote_write.state_dir)?;
    let Some(enrollment) = state.enrollment()? else {
        return Ok(None);
    };
    let signer = Arc::new(JwtSigner::new(&enrollment, &state.private_key()?)?);
    Ok(Some((enrollment, signer)))
}

/// How the enrolled receiver's certificate is checked: the flags, else
/// what registration remembered.
fn receiver_tls(config: &Config, enrollment: &Enrollment) -> anyhow::Result<rustls::ClientConfig> {
    let trust = ReceiverTrust {
        ca_file: config
            .server_ca_file
            .clone()
            .or_else(|| enrollment.server_ca_file.clone()),
        insecure_skip_verify: config.insecure_skip_verify,
        pinned: enrollment.pin(),
    };
    Ok(receiver_tls::client_config(
        &trust,
        SeenCertificate::default(),
    )?)
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    let web = Arc::new(
        WebConfigSource::load(config.web_config_file.as_deref())
            .context("loading --web.config.file")?,
    );
    if config.insecure_skip_verify {
        tracing::warn!(
            "--insecure-skip-verify: the receiver's certificate chain is not verified \
             (only the certificate pinned at registration protects this host's traffic)"
        );
    }
    let enrolled = enrollment(&config)?;
    let receiver_tls = match &enrolled {
        Some((enrollment, _)) => Some(Arc::new(receiver_tls(&config, enrollment)?)),
        None => None,
    };
    if let (Some((enrollment, signer)), Some(tls)) = (&enrolled, &receiver_tls) {
        tracing::info!(
            server = enrollment.server,
            client_id = enrollment.client_id,
            instance = enrollment.instance,
            "enrolled: shipping to the receiver and polling its commands"
        );
        // The receiver labels this host's samples with its registered name;
        // other endpoints get the same `instance`.
        config.remote_write.labels.instance = enrollment.instance.clone();
        config.remote_write.add_endpoint(
            EndpointConfig::new(
                enrollment.write_url(),
                EndpointAuth::Signer(Arc::clone(signer) as Arc<dyn RequestSigner>),
            )
            .with_tls(Arc::clone(tls)),
        );
    }
    let listener = dcmon_protocol::net::bind(&config.listen_address).await?;
    let services = Services::for_host(&config);
    // The runtime configuration (config_update) in the state directory
    // wins over --fans.policy-file and the interval and collector flags.
    // Opened first, it sets the collectors and the interval the scraper
    // and the shipper start on, through the same switches a later
    // config_update or rollback moves.
    let base_policy = match &config.fans.policy_file {
        Some(file) => Some(fans::policy::load_file(file, config.fans.rules.min_duty)?),
        None => None,
    };
    let runtime = RuntimeStore::open_with(
        &config.remote_write.state_dir,
        config.fans.rules.min_duty,
        Arc::clone(&services.fans),
        base_policy,
        LiveSettings::new(
            services.runtime_collectors.clone(),
            config.remote_write.interval,
        ),
    )
    .context("opening the runtime configuration")?;
    let _ = services.runtime.set(Arc::clone(&runtime));
    let scraper = Arc::new(SharedScraper::new(Scraper::new(&config, &services)));
    let enabled: Vec<_> = scraper.inner().collector_names().collect();
    // One signal stops both the HTTP server and the shipper; the shipper
    // then spools what it has not delivered.
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        dcmon_protocol::net::shutdown_signal().await;
        let _ = stop.send(true);
    });
    // Fan safety and the fan policy run on their own interval, whatever
    // collectors are enabled; a scrape only reads.
    let fan_safety = tokio::spawn(fans::safety::run(
        Arc::clone(&services.fans),
        config.fans.interval,
        stopping.clone(),
    ));
    let shipper = if config.remote_write.endpoints.is_empty() {
        None
    } else {
        Some(
            Shipper::start_following(
                config.remote_write.clone(),
                runtime.live().interval.clone(),
                Arc::clone(&scraper),
                stopping.clone(),
            )
            .await
            .context("starting the remote-write shipper")?,
        )
    };
    let runner = match (&enrolled, &receiver_tls) {
        (Some((enrollment, signer)), Some(tls)) => {
            let runner = CommandRunner::new(
                RunnerOptions {
                    server: enrollment.server.clone(),
                    min_duty: config.fans.rules.min_duty,
                    allow_reboot: config.allow_reboot,
                },
                Arc::clone(signer),
                Arc::clone(&services.fans),
                rustls::ClientConfig::clone(tls),
            )?
            .with_runtime_config(Arc::clone(&runtime));
            Some(tokio::spawn(runner.run()))
        }
        _ => None,
    };
    let current = web.current();
    tracing::info!(
        address = %listener.local_addr()?,
        scheme = current.scheme(),
        fingerprint = current.tls.as_ref().map(|t| t.fingerprint.as_str()),
        basic_auth = !current.users.is_empty(),
        collectors = ?enabled,
        "listening"
    );
    if !web.is_configured() {
        tracing::warn!(
            "no --web.config.file: /metrics is served over plain HTTP without authentication \
             to anyone who can reach the port"
        );
    }
    let state = Arc::new(http::AppState {
        scraper,
        shipper: shipper.as_ref().map(Shipper::metrics),
        telemetry_path: config.telemetry_path.clone(),
    });
    let mut until_stopped = stopping.clone();
    let app = http::router(state).layer(axum::middleware::from_fn_with_state(
        Arc::clone(&web),
        dcmon_web::gate::require_basic_auth,
    ));
    let listener = WebListener::new(listener, web, HANDSHAKE_TIMEOUT)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = until_stopped.wait_for(|stop| *stop).await;
        })
        .await
        .context("serving HTTP")?;
    if let Some(shipper) = shipper {
        // Spooling is a few small file writes; the limit only guards
        // against a hung disk keeping the process alive.
        if tokio::time::timeout(SHIPPER_STOP_TIMEOUT, shipper.stopped())
            .await
            .is_err()
        {
            tracing::warn!("the shipper did not stop in time; unsent batches may be lost");
        }
    }
    if let Some(runner) = runner {
        runner.abort();
    }
    // Neither a manual fan duty nor a fan policy may outlive the exporter.
    let _ = fan_safety.await;
    let fans = Arc::clone(&services.fans);
    let _ = tokio::task::spawn_blocking(move || fans.release()).await;
    Ok(())
}
