//! Runs the commands the receiver queues for this host: long-polls
//! `GET /api/dcmon/commands/next`, checks each command against the host's
//! own rules again (a compromised receiver must not get past them), runs it
//! with a timeout and posts the result. Delivery is at-most-once on the
//! receiver's side, so a command is never run twice.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dcmon_protocol::commands::{Command, CommandResult, CommandStatus, DeliveredCommand};
use reqwest::StatusCode;

use crate::fans::FanController;
use crate::identity::JwtSigner;
use crate::runtime_config::RuntimeStore;

/// Longest one command may run.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the receiver holds a poll.
const POLL: &str = "30s";

/// The runner's settings.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Receiver base URL.
    pub server: String,
    /// Lowest duty this host accepts, percent.
    pub min_duty: u8,
    /// Whether `reboot` commands may run.
    pub allow_reboot: bool,
}

/// Polls and runs commands until the task is dropped.
#[derive(Debug)]
pub struct CommandRunner {
    options: RunnerOptions,
    signer: Arc<JwtSigner>,
    fans: Arc<FanController>,
    runtime: Option<Arc<RuntimeStore>>,
    http: reqwest::Client,
}

impl CommandRunner {
    /// A runner signing its requests with `signer`.
    pub fn new(
        options: RunnerOptions,
        signer: Arc<JwtSigner>,
        fans: Arc<FanController>,
        tls: rustls::ClientConfig,
    ) -> anyhow::Result<CommandRunner> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("dcmon-exporter/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(CommandRunner {
            options,
            signer,
            fans,
            runtime: None,
            http,
        })
    }

    /// `config_update` commands change `store`.
    pub fn with_runtime_config(mut self, store: Arc<RuntimeStore>) -> CommandRunner {
        self.runtime = Some(store);
        self
    }

    /// The poll loop; backs off on errors, never returns.
    pub async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.poll_once().await {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), retry_in = ?backoff, "command poll failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.options.server.trim_end_matches('/'))
    }

    /// One long poll, and the command it brings, if any.
    async fn poll_once(&self) -> anyhow::Result<()> {
        let response = self
            .http
            .get(self.url(&format!("/api/dcmon/commands/next?timeout={POLL}")))
            .header("authorization", self.signer.authorization()?)
            .send()
            .await
            .context("polling for commands")?;
        match response.status() {
            StatusCode::NO_CONTENT => Ok(()),
            StatusCode::OK => {
                let delivered: DeliveredCommand =
                    response.json().await.context("reading the command")?;
                self.run_command(delivered).await
            }
            StatusCode::UNAUTHORIZED => {
                let body = response.text().await.unwrap_or_default();
                anyhow::bail!(
                    "the receiver refused this host's credentials (revoked or re-registered elsewhere?): {}",
                    body.trim()
                )
            }
            status => {
                let body = response.text().await.unwrap_or_default();
                anyhow::bail!("polling answered {status}: {}", body.trim())
            }
        }
    }

    async fn run_command(&self, delivered: DeliveredCommand) -> anyhow::Result<()> {
        let id = delivered.id;
        tracing::info!(id, command = ?delivered.command, "running command");
        let fans = Arc::clone(&self.fans);
        let options = self.options.clone();
        let command = delivered.command;
        let runtime = self.runtime.clone();
        let work = tokio::task::spawn_blocking(move || {
            execute(&fans, runtime.as_deref(), &options, &command)
        });
        let result = match tokio::time::timeout(RUN_TIMEOUT, work).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => failed(format!("command task failed: {err}")),
            Err(_) => failed(format!("did not finish within {RUN_TIMEOUT:?}")),
        };
        tracing::info!(id, status = result.status.name(), error = ?result.error, "command finished");
        // The result matters: retry a few times before giving up.
        for attempt in 1..=5u32 {
            let sent = self
                .http
                .post(self.url(&format!("/api/dcmon/commands/{id}/result")))
                .header("authorization", self.signer.authorization()?)
                .json(&result)
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer) if answer.status().is_client_error() => {
                    let status = answer.status();
                    let body = answer.text().await.unwrap_or_default();
                    anyhow::bail!("result of command {id} refused ({status}): {}", body.trim());
                }
                Ok(answer) => {
                    tracing::warn!(id, status = %answer.status(), attempt, "posting the result failed")
                }
                Err(err) => tracing::warn!(id, error = %err, attempt, "posting the result failed"),
            }
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
        anyhow::bail!("could not post the result of command {id}")
    }
}

fn failed(error: String) -> CommandResult {
    CommandResult {
        status: CommandStatus::Failed,
        exit_code: None,
        output: String::new(),
        error: Some(error),
    }
}

/// Runs one command under the host's rules; `config_update` needs the
/// runtime configuration store.
pub fn execute(
    fans: &FanController,
    runtime: Option<&RuntimeStore>,
    options: &RunnerOptions,
    command: &Command,
) -> CommandResult {
    if let Err(err) = command.validate(options.min_duty) {
        return failed(format!("refused by this host: {err}"));
    }
    match command {
        Command::FanControl(action) => match fans.execute(*action) {
            Ok(output) => CommandResult {
                status: CommandStatus::Succeeded,
                exit_code: Some(0),
                output,
                error: None,
            },
            Err(err) => failed(err.to_string()),
        },
        Command::ConfigUpdate(action) => match runtime.map(|store| store.execute(action)) {
            None => failed("this host keeps no runtime configuration".into()),
            Some(Ok(applied)) => CommandResult {
                status: CommandStatus::Succeeded,
                exit_code: Some(0),
                output: serde_json::to_string(&applied).unwrap_or_default(),
                error: None,
            },
            Some(Err(err)) => failed(err.to_string()),
        },
        Command::Reboot(params) => {
            if !options.allow_reboot {
                return failed(
                    "reboot is not allowed on this host (start the exporter with --commands.allow-reboot)"
                        .into(),
                );
            }
            let delay = Duration::from_secs(u64::from(params.delay_s));
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                tracing::warn!("rebooting as commanded");
                if let Err(err) = std::process::Command::new("systemctl")
                    .arg("reboot")
                    .status()
                {
                    tracing::error!(error = %err, "systemctl reboot failed");
                }
            });
            CommandResult {
                status: CommandStatus::Succeeded,
                exit_code: Some(0),
                output: format!("reboot in {} s", params.delay_s),
                error: None,
            }
        }
    }
}
