//! Command-line flags, spelled the Prometheus way, with the optional TOML
//! `--config.file` (keys are flag names; flags on the command line win),
//! and the server's [`Config`] they resolve into. clap validates each value
//! as it parses; `main` builds the services from the `Config` alone.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use dcmon_protocol::duration::parse_duration;
use dcmon_protocol::logging::{LogFormat, parse_level};
use dcmon_protocol::size::parse_bytes;

use crate::api::write_limits::WriteLimits;
use crate::app::Limits;
use crate::auth::Scope;
use crate::forward::batcher::BatchLimits;
use crate::forward::{ForwardConfig, StorageMode};
use crate::promql::EngineOptions;
use crate::{self_scrape, serve, storage};
use dcmon_ship::config::FileEndpoint;
use dcmon_ship::endpoint::{EndpointAuth, EndpointConfig};
use dcmon_ship::message::ProtobufMessage;
use dcmon_ship::spool::SpoolLimits;

/// Where the documentation is, shown after the flags in `--help` and in the
/// manual page (help2man builds it from `--help`).
pub const DOCUMENTATION: &str = "Documentation: /usr/share/doc/dcmon-receiver/ where the package is \
installed (README.md; docs/api.md for the HTTP API, docs/promql.md for \
PromQL and its limits, docs/metrics.md for every metric), or README.md and \
docs/ in a checkout of the source.";

/// dcmon-receiver: remote-write ingest, storage, PromQL API and command queue.
#[derive(Debug, Parser)]
#[command(
    name = "dcmon-receiver",
    version,
    args_override_self = true,
    after_help = DOCUMENTATION
)]
pub struct Cli {
    /// TOML file whose keys are flag names (`"storage.retention" = "7d"`).
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Address to listen on (`:8000` listens on every address).
    #[arg(long = "web.listen-address", default_value = ":8000")]
    pub listen_address: String,

    /// exporter-toolkit web configuration (YAML): TLS on the listener,
    /// basic-auth users and verified client certificates as read-only
    /// callers, response headers. Re-read when it or a file it names
    /// changes.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Largest accepted request body (compressed), in bytes.
    #[arg(long = "web.max-request-bytes", default_value_t = 32 << 20)]
    pub max_request_bytes: usize,

    /// Largest request body, in bytes, on every route but remote write
    /// (which has --web.max-request-bytes); larger ones get 413 unread.
    #[arg(long = "web.max-body-bytes", default_value_t = crate::app::MAX_QUERY_FORM_BYTES)]
    pub max_body_bytes: usize,

    /// Most HTTP connections served at once; further ones wait to be
    /// accepted until one closes.
    #[arg(long = "web.max-connections", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Longest a client may take to send a request's headers, from the
    /// connection's start or its first byte after an idle spell.
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_parser = positive_duration)]
    pub read_header_timeout: Duration,

    /// Longest a keep-alive connection may idle between requests, and an
    /// answer may wait for the client to read it.
    #[arg(long = "web.idle-timeout", default_value = "2m", value_parser = positive_duration)]
    pub idle_timeout: Duration,

    /// On SIGTERM, longest to wait for in-flight requests before dropping
    /// them; storage is flushed either way.
    #[arg(long = "web.shutdown-timeout", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// SQLite database file.
    #[arg(
        long = "storage.path",
        default_value = "./data/dcmon.db",
        global = true
    )]
    pub storage_path: PathBuf,

    /// How long samples are kept.
    #[arg(long = "storage.retention", default_value = "7d", value_parser = parse_duration)]
    pub retention: Duration,

    /// How often fresh samples are packed into compressed chunks.
    #[arg(long = "storage.compaction-interval", default_value = "1m", value_parser = parse_duration)]
    pub compaction_interval: Duration,

    /// How far back compacted samples also stay decoded in memory, so a
    /// refreshed dashboard's newest steps read no chunk. 0 turns it off.
    #[arg(long = "storage.recent-window", default_value = "15m", value_parser = parse_duration)]
    pub recent_window: Duration,

    /// Memory for compressed chunks of closed windows read lately, so
    /// reads that come back to them skip the database file (e.g. 64MiB;
    /// 0 turns the cache off).
    #[arg(long = "storage.chunk-cache-size", default_value = "64MiB", value_parser = parse_bytes)]
    pub chunk_cache_size: u64,

    /// How often data past the retention window is dropped.
    #[arg(long = "storage.retention-interval", default_value = "10m", value_parser = parse_duration)]
    pub retention_interval: Duration,

    /// Most series stored at once; writes that would add more are refused
    /// (429) until retention drops series or the limit is raised. 0: none.
    #[arg(long = "storage.max-series", default_value_t = 1_000_000)]
    pub max_series: usize,

    /// Longest label name a write may carry, in bytes (400 beyond).
    #[arg(long = "write.max-label-name-length", default_value_t = 256)]
    pub max_label_name_length: usize,

    /// Longest label value (the metric name included) a write may carry,
    /// in bytes (400 beyond).
    #[arg(long = "write.max-label-value-length", default_value_t = 4096)]
    pub max_label_value_length: usize,

    /// Most labels one series may have, `__name__` included (400 beyond).
    #[arg(long = "write.max-labels-per-series", default_value_t = 64)]
    pub max_labels_per_series: usize,

    /// Most series one write request may carry (400 beyond).
    #[arg(long = "write.max-series-per-request", default_value_t = 50_000)]
    pub max_series_per_request: usize,

    /// New series each scoped token (and the admin) may add per hour; a
    /// write beyond it gets 429 with Retry-After.
    #[arg(long = "write.max-new-series-per-hour", default_value_t = 200_000)]
    pub max_new_series_per_hour: usize,

    /// New series each enrolled host may add per hour; a write beyond it
    /// gets 429 with Retry-After.
    #[arg(long = "write.max-new-series-per-host-hour", default_value_t = 20_000)]
    pub max_new_series_per_host_hour: usize,

    /// How often enrolled hosts write. A host silent for two intervals gets
    /// `up 0` and status `stale`; for ten, `offline`.
    #[arg(long = "clients.push-interval", default_value = "30s", value_parser = parse_duration)]
    pub push_interval: Duration,

    /// How often the receiver stores its own metrics (those at `/metrics`)
    /// in its database, as a scrape would; `0s` turns it off.
    #[arg(long = "self-scrape.interval", default_value = "30s", value_parser = parse_duration)]
    pub self_scrape_interval: Duration,

    /// `job` label of the receiver's own metrics.
    #[arg(long = "self-scrape.job", default_value = "dcmon-receiver")]
    pub self_scrape_job: String,

    /// `instance` label of the receiver's own metrics. Default: the host name.
    #[arg(long = "self-scrape.instance")]
    pub self_scrape_instance: Option<String>,

    /// Lowest fan duty (percent) a command may set; hosts enforce their own floor too.
    #[arg(long = "commands.min-duty", default_value_t = dcmon_protocol::commands::DEFAULT_MIN_DUTY,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub min_duty: u8,

    /// How long a delivered command may take to report its result before it
    /// counts as failed.
    #[arg(long = "commands.result-timeout", default_value = "5m", value_parser = parse_duration)]
    pub result_timeout: Duration,

    /// Longest a query may run before it is aborted.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Most samples a single query may hold in memory at once; beyond it
    /// the query fails (protects a small box from one huge query).
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    pub query_max_samples: usize,

    /// Most series `/api/v1/series` answers with: a larger match is refused
    /// (422) unless the request passes a smaller `limit`.
    #[arg(long = "query.max-series", default_value_t = 500_000)]
    pub query_max_series: usize,

    /// Longest query text accepted, in bytes; longer queries are refused
    /// before they are parsed.
    #[arg(long = "query.max-length", default_value_t = crate::promql::DEFAULT_MAX_QUERY_LENGTH)]
    pub query_max_length: usize,

    /// Most queries evaluated at once; further queries wait for a slot.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    pub query_max_concurrency: usize,

    /// Memory for range-query answers that can no longer change, so a
    /// refreshed dashboard recomputes only its newest steps (e.g. 64MiB;
    /// 0 turns the cache off).
    #[arg(long = "query.cache-size", default_value = "64MiB", value_parser = parse_bytes)]
    pub query_cache_size: u64,

    /// How far back an instant selector looks for the latest sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_duration)]
    pub query_lookback_delta: Duration,

    /// Rule file in Prometheus's format (recording and alerting rules),
    /// evaluated by the receiver; repeat it, or give a glob
    /// (`/usr/share/dcmon/rules/*.yml`). Re-read on SIGHUP and
    /// `POST /-/reload`; a bad file is refused and the rules running go on.
    #[arg(long = "rules.file", value_name = "FILE")]
    pub rules_files: Vec<String>,

    /// Alertmanager to send the rules' alerts to (its base URL; alerts are
    /// posted to `<url>/api/v2/alerts`); repeat it for several. Without
    /// one, alerts are only listed by the API.
    #[arg(long = "alertmanager.url", value_name = "URL", value_parser = crate::rules::notify::parse_url)]
    pub alertmanager_urls: Vec<String>,

    /// File holding a bearer token sent to every `--alertmanager.url`.
    #[arg(
        long = "alertmanager.bearer-token-file",
        value_name = "FILE",
        conflicts_with = "alertmanager_password_file"
    )]
    pub alertmanager_bearer_token_file: Option<PathBuf>,

    /// Basic-auth user name sent to every `--alertmanager.url` (with
    /// `--alertmanager.basic-auth.password-file`).
    #[arg(
        long = "alertmanager.basic-auth.username",
        value_name = "NAME",
        requires = "alertmanager_password_file"
    )]
    pub alertmanager_username: Option<String>,

    /// File holding the basic-auth password sent to every `--alertmanager.url`.
    #[arg(
        long = "alertmanager.basic-auth.password-file",
        value_name = "FILE",
        requires = "alertmanager_username"
    )]
    pub alertmanager_password_file: Option<PathBuf>,

    /// Limit on one request to an Alertmanager.
    #[arg(long = "alertmanager.timeout", default_value = "10s", value_parser = positive_duration)]
    pub alertmanager_timeout: Duration,

    /// Alerts waiting for Alertmanager held at most; past it the oldest
    /// are dropped (`prometheus_notifications_dropped_total`).
    #[arg(long = "alertmanager.notification-queue-capacity", default_value = "10000", value_parser = clap::value_parser!(u32).range(1..))]
    pub alertmanager_queue_capacity: u32,

    /// How often an alert still firing is sent to Alertmanager again.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m", value_parser = positive_duration)]
    pub rules_alert_resend_delay: Duration,

    /// The URL users reach the receiver at, for the `generatorURL` of the
    /// alerts sent to Alertmanager (default `http://<host name>:<port>`).
    #[arg(long = "web.external-url", value_name = "URL")]
    pub external_url: Option<String>,

    /// How often a rule group without an `interval` of its own is evaluated.
    #[arg(long = "rules.evaluation-interval", default_value = "1m", value_parser = positive_duration)]
    pub rules_evaluation_interval: Duration,

    /// Base URL of a Prometheus query API (e.g.
    /// http://vmselect:8481/select/0/prometheus) that answers /api/v1/query,
    /// query_range, series, labels and label values instead of this
    /// receiver; queries of the receiver's own series (up, the hosts'
    /// last-seen series, dcmon_receiver_*) are still answered here. dcmon's
    /// read tokens guard it as ever.
    #[arg(long = "query.upstream.url", value_name = "URL")]
    pub query_upstream_url: Option<String>,

    /// File holding a bearer token for --query.upstream.url (re-read on
    /// every request).
    #[arg(long = "query.upstream.bearer-token-file", value_name = "FILE")]
    pub query_upstream_bearer_token_file: Option<PathBuf>,

    /// Basic-auth user name for --query.upstream.url.
    #[arg(
        long = "query.upstream.basic-auth.username",
        value_name = "NAME",
        requires = "query_upstream_basic_auth_password_file"
    )]
    pub query_upstream_basic_auth_username: Option<String>,

    /// File holding the basic-auth password for --query.upstream.url.
    #[arg(
        long = "query.upstream.basic-auth.password-file",
        value_name = "FILE",
        requires = "query_upstream_basic_auth_username"
    )]
    pub query_upstream_basic_auth_password_file: Option<PathBuf>,

    /// Where accepted samples are kept: local (SQLite, answering queries)
    /// or forward-only (only the --remote-write.forward.url upstreams;
    /// hosts, tokens, commands, metadata and the receiver's own series
    /// are still kept in SQLite).
    #[arg(long = "storage.mode", value_enum, default_value = "local")]
    pub storage_mode: StorageMode,

    /// Remote-write URL every accepted write is also sent to, after the
    /// host labels are enforced (repeatable): a VictoriaMetrics cluster's
    /// vminsert, Mimir, Thanos Receive or a Prometheus remote-write
    /// receiver. Each has a durable queue next to the database; the config
    /// file's `[[forward]]` tables add upstreams with their own
    /// credentials and TLS settings.
    #[arg(long = "remote-write.forward.url", value_name = "URL")]
    pub forward_urls: Vec<String>,

    /// File holding a bearer token for the --remote-write.forward.url
    /// upstreams (re-read on every request).
    #[arg(long = "remote-write.forward.bearer-token-file", value_name = "FILE")]
    pub forward_bearer_token_file: Option<PathBuf>,

    /// Protobuf message for the --remote-write.forward.url upstreams: v1
    /// (prometheus.WriteRequest), v2 (io.prometheus.write.v2.Request) or
    /// auto (v2, falling back to v1 for good once an upstream shows it
    /// takes only that).
    #[arg(long = "remote-write.forward.protobuf-message", value_name = "MESSAGE",
          default_value = "auto", value_parser = parse_protobuf_message)]
    pub forward_protobuf_message: ProtobufMessage,

    /// Most disk space each upstream's queue may use; the oldest batches
    /// are dropped (and counted) first.
    #[arg(long = "remote-write.forward.queue.max-bytes", default_value = "1GiB", value_parser = parse_bytes)]
    pub forward_queue_max_bytes: u64,

    /// Queued batches waiting longer than this are dropped (and counted).
    #[arg(long = "remote-write.forward.queue.max-age", default_value = "1d", value_parser = positive_duration)]
    pub forward_queue_max_age: Duration,

    /// Longest one forwarded request may take.
    #[arg(long = "remote-write.forward.timeout", default_value = "30s", value_parser = positive_duration)]
    pub forward_timeout: Duration,

    /// Samples that make a forwarded request full (Prometheus's
    /// max_samples_per_send).
    #[arg(long = "remote-write.forward.max-samples-per-send", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub forward_max_samples_per_send: u32,

    /// Longest an accepted write waits to be gathered with others before
    /// it is forwarded (Prometheus's batch_send_deadline).
    #[arg(long = "remote-write.forward.batch-send-deadline", default_value = "1s", value_parser = positive_duration)]
    pub forward_batch_send_deadline: Duration,

    /// Upstreams from the config file's `[[forward]]` tables, checked.
    #[arg(skip)]
    pub forward_tables: Vec<EndpointConfig>,

    /// File holding the admin token. Created with a random 256-bit token
    /// (mode 0600) when missing.
    #[arg(long = "admin-token-file", default_value = "./data/admin-token")]
    pub admin_token_file: PathBuf,

    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info", value_parser = parse_level)]
    pub log_level: String,

    /// Output format of log messages: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    pub log_format: LogFormat,

    /// Without a subcommand the receiver serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Administrative subcommands, run against the database in `--storage.path`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scoped API tokens for Grafana (read) and stock Prometheus (write).
    Token {
        /// What to do.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Enrolled hosts (`dcmon-exporter register` adds them).
    Client {
        /// What to do.
        #[command(subcommand)]
        action: ClientAction,
    },
    /// Writes a consistent copy of the database to a new file; safe while
    /// the receiver runs (run it as the receiver's user).
    Backup {
        /// The copy to create; an existing file is never overwritten.
        output: PathBuf,
    },
}

/// `dcmon-receiver client …`
#[derive(Debug, Subcommand)]
pub enum ClientAction {
    /// Lists enrolled hosts with their status.
    List,
    /// Revokes a host's key; its next request is refused.
    Revoke {
        /// Client id or host name.
        id: String,
    },
}

/// `dcmon-receiver token …`
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Creates a token and prints it once (only its hash is stored).
    Create {
        /// Unique name, for listing and revoking.
        #[arg(long)]
        name: String,
        /// `read` (query API, for Grafana) or `write` (remote write, for Prometheus).
        #[arg(long, value_enum)]
        scope: Scope,
    },
    /// Lists tokens (never their secrets).
    List,
    /// Revokes a token; refused from the next request on.
    Revoke {
        /// The token's name.
        #[arg(long)]
        name: String,
    },
}

/// A duration that must not be zero (a zero timeout would close every
/// connection at once).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".to_owned()),
        Ok(d) => Ok(d),
        Err(err) => Err(err.to_string()),
    }
}

/// What the server runs from: the flags grouped into the settings each
/// part takes.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port`; an empty host listens on every address.
    pub listen_address: String,
    /// `--web.config.file`.
    pub web_config_file: Option<PathBuf>,
    /// The SQLite database.
    pub storage_path: PathBuf,
    /// The admin token's file, created when missing.
    pub admin_token_file: PathBuf,
    /// Storage tunables; its retention also bounds the command history.
    pub storage: storage::Options,
    /// How long a delivered command may take to report its result.
    pub command_result_timeout: Duration,
    /// How often enrolled hosts write.
    pub push_interval: Duration,
    /// Lowest fan duty a command may set.
    pub min_duty: u8,
    /// The PromQL engine's settings.
    pub engine: EngineOptions,
    /// Most queries evaluated at once.
    pub query_max_concurrency: usize,
    /// Bytes of range-query answers kept for refreshed dashboards.
    pub query_cache_size: u64,
    /// Request limits.
    pub limits: Limits,
    /// Connection limits and timeouts.
    pub serve: serve::Options,
    /// Storing the receiver's own metrics; `None` when turned off.
    pub self_scrape: Option<SelfScrape>,
    /// Forwarding accepted writes upstream; `None` without upstreams.
    pub forward: Option<ForwardConfig>,
    /// `--query.upstream.url` and how to authorise requests to it.
    pub query_upstream: Option<(String, EndpointAuth)>,
    /// Rule evaluation.
    pub rules: RulesConfig,
}

/// What the receiver's rule evaluation reads.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// `--rules.file` paths and globs.
    pub files: Vec<String>,
    /// `--rules.evaluation-interval`.
    pub evaluation_interval: Duration,
    /// Where alerts go (`--alertmanager.*`, `--rules.alert.resend-delay`).
    pub alertmanager: AlertmanagerConfig,
}

/// The `--alertmanager.*` flags; credentials still as file paths.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Base URLs; empty: no notifications.
    pub urls: Vec<String>,
    /// `--alertmanager.bearer-token-file`.
    pub bearer_token_file: Option<PathBuf>,
    /// `--alertmanager.basic-auth.username`.
    pub username: Option<String>,
    /// `--alertmanager.basic-auth.password-file`.
    pub password_file: Option<PathBuf>,
    /// `--alertmanager.timeout`.
    pub timeout: Duration,
    /// `--alertmanager.notification-queue-capacity`.
    pub capacity: usize,
    /// `--rules.alert.resend-delay`.
    pub resend_delay: Duration,
    /// `--web.external-url`, or `http://<host name>:<port>`.
    pub external_url: String,
}

/// How the receiver stores its own metrics.
#[derive(Debug, Clone)]
pub struct SelfScrape {
    /// How often.
    pub interval: Duration,
    /// The `job` and `instance` labels.
    pub target: self_scrape::Target,
}

impl Cli {
    /// The server's configuration.
    pub fn config(&self) -> Config {
        Config {
            listen_address: self.listen_address.clone(),
            web_config_file: self.web_config_file.clone(),
            storage_path: self.storage_path.clone(),
            admin_token_file: self.admin_token_file.clone(),
            storage: storage::Options {
                retention: self.retention,
                compaction_interval: self.compaction_interval,
                recent_window: self.recent_window,
                retention_interval: self.retention_interval,
                max_series: self.max_series,
                chunk_cache_bytes: self.chunk_cache_size,
                ..storage::Options::default()
            },
            command_result_timeout: self.result_timeout,
            push_interval: self.push_interval,
            min_duty: self.min_duty,
            engine: EngineOptions {
                lookback_delta: self.query_lookback_delta,
                timeout: self.query_timeout,
                max_samples: self.query_max_samples,
                max_query_length: self.query_max_length,
                ..EngineOptions::default()
            },
            query_max_concurrency: self.query_max_concurrency,
            query_cache_size: self.query_cache_size,
            limits: Limits {
                max_request_bytes: self.max_request_bytes,
                write: WriteLimits {
                    max_label_name_length: self.max_label_name_length,
                    max_label_value_length: self.max_label_value_length,
                    max_labels_per_series: self.max_labels_per_series,
                    max_series_per_request: self.max_series_per_request,
                    max_new_series_per_hour: self.max_new_series_per_hour,
                    max_new_series_per_host_hour: self.max_new_series_per_host_hour,
                },
                query_max_series: self.query_max_series,
                max_body_bytes: self.max_body_bytes,
            },
            serve: serve::Options {
                max_connections: self.max_connections as usize,
                header_read_timeout: self.read_header_timeout,
                idle_timeout: self.idle_timeout,
                shutdown_timeout: self.shutdown_timeout,
            },
            // `0s` turns it off; the host name is looked up only when needed.
            self_scrape: (!self.self_scrape_interval.is_zero()).then(|| SelfScrape {
                interval: self.self_scrape_interval,
                target: self_scrape::Target {
                    job: self.self_scrape_job.clone(),
                    instance: self
                        .self_scrape_instance
                        .clone()
                        .unwrap_or_else(self_scrape::host_name),
                },
            }),
            rules: RulesConfig {
                files: self.rules_files.clone(),
                evaluation_interval: self.rules_evaluation_interval,
                alertmanager: AlertmanagerConfig {
                    urls: self.alertmanager_urls.clone(),
                    bearer_token_file: self.alertmanager_bearer_token_file.clone(),
                    username: self.alertmanager_username.clone(),
                    password_file: self.alertmanager_password_file.clone(),
                    timeout: self.alertmanager_timeout,
                    capacity: self.alertmanager_queue_capacity as usize,
                    resend_delay: self.rules_alert_resend_delay,
                    // As Prometheus's default: this host, the port listened on.
                    external_url: self.external_url.clone().unwrap_or_else(|| {
                        let port = self.listen_address.rsplit(':').next().unwrap_or("");
                        format!("http://{}:{port}", self_scrape::host_name())
                    }),
                },
            },
            forward: self.forward(),
            query_upstream: self.query_upstream_url.clone().map(|url| {
                let auth = match (
                    &self.query_upstream_bearer_token_file,
                    &self.query_upstream_basic_auth_username,
                    &self.query_upstream_basic_auth_password_file,
                ) {
                    (Some(file), _, _) => EndpointAuth::Bearer(file.clone()),
                    (None, Some(username), Some(password_file)) => EndpointAuth::Basic {
                        username: username.clone(),
                        password_file: password_file.clone(),
                    },
                    _ => EndpointAuth::None,
                };
                (url, auth)
            }),
        }
    }

    /// Forwarding's settings: command-line upstreams share the
    /// command-line token and message; each `[[forward]]` table has its own.
    fn forward(&self) -> Option<ForwardConfig> {
        let auth = match &self.forward_bearer_token_file {
            Some(file) => EndpointAuth::Bearer(file.clone()),
            None => EndpointAuth::None,
        };
        let endpoints: Vec<EndpointConfig> = self
            .forward_urls
            .iter()
            .map(|url| {
                EndpointConfig::new(url.clone(), auth.clone())
                    .with_protobuf_message(self.forward_protobuf_message)
            })
            .chain(self.forward_tables.iter().cloned())
            .collect();
        (!endpoints.is_empty()).then(|| ForwardConfig {
            mode: self.storage_mode,
            endpoints,
            dir: ForwardConfig::default_dir(&self.storage_path),
            limits: SpoolLimits {
                max_bytes: self.forward_queue_max_bytes,
                max_age: self.forward_queue_max_age,
            },
            timeout: self.forward_timeout,
            batch: BatchLimits {
                max_samples: self.forward_max_samples_per_send as usize,
                deadline: self.forward_batch_send_deadline,
            },
            min_backoff: crate::forward::config::MIN_BACKOFF,
            max_backoff: crate::forward::config::MAX_BACKOFF,
        })
    }
}

/// The config-file section holding upstream tables rather than flags.
const FORWARD_SECTION: &str = "forward";

fn parse_protobuf_message(input: &str) -> Result<ProtobufMessage, String> {
    input
        .parse()
        .map_err(|e: dcmon_ship::message::UnknownProtobufMessage| e.to_string())
}

/// Parses `args` (program name first), folding in the config file if named.
pub fn parse_from(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    use dcmon_protocol::config_file;
    let mut cmd = Cli::command();
    let file = config_file::config_file_path(&args);
    let (args, mut sections) =
        config_file::merge_into_args_with_sections(&cmd, args, &[FORWARD_SECTION])?;
    let mut forward_tables = Vec::new();
    if let (Some(value), Some(file)) = (sections.remove(FORWARD_SECTION), file) {
        let tables: Vec<FileEndpoint> = value.try_into().map_err(|e: toml::de::Error| {
            config_file::config_file_error(&file, format!("[[{FORWARD_SECTION}]]: {}", e.message()))
        })?;
        for table in &tables {
            forward_tables.push(
                table
                    .endpoint_config(FORWARD_SECTION)
                    .map_err(|msg| config_file::config_file_error(&file, msg))?,
            );
        }
    }
    let matches = cmd.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    if cli.storage_mode == StorageMode::ForwardOnly
        && cli.forward_urls.is_empty()
        && forward_tables.is_empty()
    {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            "--storage.mode=forward-only needs an upstream: --remote-write.forward.url or a [[forward]] table\n",
        ));
    }
    if cli.query_upstream_bearer_token_file.is_some()
        && cli.query_upstream_basic_auth_username.is_some()
    {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "--query.upstream.bearer-token-file and --query.upstream.basic-auth.* exclude each other\n",
        ));
    }
    if (cli.query_upstream_bearer_token_file.is_some()
        || cli.query_upstream_basic_auth_username.is_some())
        && cli.query_upstream_url.is_none()
    {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "query upstream credentials are given, but no --query.upstream.url to use them\n",
        ));
    }
    if cli.forward_bearer_token_file.is_some() && cli.forward_urls.is_empty() {
        return Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "--remote-write.forward.bearer-token-file is given, but no --remote-write.forward.url to use it\n",
        ));
    }
    cli.forward_tables = forward_tables;
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_says_where_the_documentation_is() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("/usr/share/doc/dcmon-receiver/"), "{help}");
        for page in ["docs/api.md", "docs/promql.md", "docs/metrics.md"] {
            assert!(help.contains(page), "{page} missing:\n{help}");
        }
    }

    #[test]
    fn self_scrape_is_off_at_zero_and_labelled_as_given() {
        let config = |flag: &str| {
            parse_from(vec!["dcmon-receiver".into(), flag.into()])
                .unwrap()
                .config()
        };
        assert!(config("--self-scrape.interval=0s").self_scrape.is_none());
        let scrape = config("--self-scrape.instance=r1").self_scrape.unwrap();
        assert_eq!(scrape.interval, Duration::from_secs(30));
        assert_eq!(scrape.target.job, "dcmon-receiver");
        assert_eq!(scrape.target.instance, "r1");
    }

    #[test]
    fn flags_win_over_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("receiver.toml");
        std::fs::write(
            &file,
            "[storage]\nretention = \"3d\"\npath = \"/var/lib/dcmon/x.db\"\n",
        )
        .unwrap();
        let args = [
            "dcmon-receiver",
            "--config.file",
            file.to_str().unwrap(),
            "--storage.retention=1d",
        ];
        let cli = parse_from(args.iter().map(Into::into).collect()).unwrap();
        assert_eq!(cli.retention, Duration::from_secs(86400));
        assert_eq!(cli.storage_path, PathBuf::from("/var/lib/dcmon/x.db"));
        assert_eq!(cli.listen_address, ":8000");
    }
}
