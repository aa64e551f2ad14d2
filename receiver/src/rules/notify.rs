//! Sending alerts to Alertmanager's v2 API (`--alertmanager.url`), as
//! Prometheus's notifier does: after each group evaluation the firing and
//! resolved alerts due (firing ones again every resend delay) go into one
//! bounded in-memory queue, whose oldest alerts are dropped (and counted)
//! when it is full; a sender task posts them in batches to every
//! Alertmanager, retrying a failed post with backoff.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::alert::{Alert, State};
use super::file::RuleKind;
use super::group::GroupState;

/// Alerts per POST, as Prometheus batches them.
pub const MAX_BATCH: usize = 64;

/// Posts of one batch to one Alertmanager before it is given up.
const ATTEMPTS: u32 = 3;

/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// How the notifier reaches Alertmanager.
#[derive(Debug, Clone)]
pub struct Options {
    /// Alertmanager base URLs (`<url>/api/v2/alerts` is posted to).
    pub urls: Vec<String>,
    /// Credentials sent to every Alertmanager.
    pub auth: Auth,
    /// Limit on one POST.
    pub timeout: Duration,
    /// Alerts the queue holds at most.
    pub capacity: usize,
    /// How often an alert still firing is sent again.
    pub resend_delay: Duration,
    /// The receiver's address as users reach it, for `generatorURL`.
    pub external_url: String,
}

/// Credentials for Alertmanager, read from files at start.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// `Authorization: Bearer`.
    Bearer(String),
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl Auth {
    /// Reads the credentials the flags name: a bearer token file, or a
    /// user name with a password file (trailing newline removed).
    pub fn from_files(
        bearer_token_file: Option<&std::path::Path>,
        username: Option<&str>,
        password_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Auth> {
        use anyhow::Context;
        let read = |path: &std::path::Path| -> anyhow::Result<String> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let text = text.trim_end_matches(['\n', '\r']).to_owned();
            anyhow::ensure!(!text.is_empty(), "{} is empty", path.display());
            Ok(text)
        };
        Ok(match (bearer_token_file, username, password_file) {
            (Some(token), None, None) => Auth::Bearer(read(token)?),
            (None, Some(username), Some(password)) => Auth::Basic {
                username: username.to_owned(),
                password: read(password)?,
            },
            (None, None, None) => Auth::None,
            _ => anyhow::bail!(
                "give either a bearer token file or a basic-auth user name and password file"
            ),
        })
    }
}

/// Label set of per-Alertmanager metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertmanagerLabels {
    /// The URL posted to.
    pub alertmanager: String,
}

/// The notifier's metrics, under Prometheus's names.
#[derive(Debug, Clone, Default)]
pub struct NotifyMetrics {
    /// Alerts an Alertmanager accepted.
    pub sent: Family<AlertmanagerLabels, Counter>,
    /// Posts that failed, by Alertmanager.
    pub errors: Family<AlertmanagerLabels, Counter>,
    /// Alerts dropped: pushed out of a full queue, or given up on after
    /// every Alertmanager failed.
    pub dropped: Counter,
    /// Alerts waiting.
    pub queue_length: Gauge,
    /// Alerts the queue holds at most.
    pub queue_capacity: Gauge,
    /// Alertmanagers configured.
    pub discovered: Gauge,
}

impl NotifyMetrics {
    /// Registers every metric in `registry` (one without a prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "prometheus_notifications_sent",
            "Total number of alerts sent (accepted by an Alertmanager)",
            self.sent.clone(),
        );
        registry.register(
            "prometheus_notifications_errors",
            "Total number of errors sending alert notifications",
            self.errors.clone(),
        );
        registry.register(
            "prometheus_notifications_dropped",
            "Total number of alerts dropped due to errors when sending to Alertmanager",
            self.dropped.clone(),
        );
        registry.register(
            "prometheus_notifications_queue_length",
            "The number of alert notifications in the queue",
            self.queue_length.clone(),
        );
        registry.register(
            "prometheus_notifications_queue_capacity",
            "The capacity of the alert notifications queue",
            self.queue_capacity.clone(),
        );
        registry.register(
            "prometheus_notifications_alertmanagers_discovered",
            "The number of alertmanagers discovered and active",
            self.discovered.clone(),
        );
    }
}

/// One alert in Alertmanager's v2 `postableAlert` shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Postable {
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// When it started firing (RFC 3339).
    pub starts_at: String,
    /// When it was resolved, or until when it holds if not resent.
    pub ends_at: String,
    /// A link to the expression.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// The queue and the sender; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: Options,
    endpoints: Vec<String>,
    queue: Mutex<VecDeque<Postable>>,
    wake: tokio::sync::Notify,
    metrics: NotifyMetrics,
    client: reqwest::Client,
}

/// Checks an `--alertmanager.url`: http or https, with a host.
pub fn parse_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".to_owned());
    }
    Ok(text.trim_end_matches('/').to_owned())
}

impl Notifier {
    /// A notifier for `options`; nothing is sent until [`Notifier::spawn`].
    pub fn new(options: Options, metrics: NotifyMetrics) -> anyhow::Result<Notifier> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot read is skipped, as
            // curl and Go skip it.
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .user_agent(concat!("dcmon-receiver/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(tls)
            .timeout(options.timeout)
            .build()?;
        let endpoints: Vec<String> = options
            .urls
            .iter()
            .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
            .collect();
        for endpoint in &endpoints {
            let labels = AlertmanagerLabels {
                alertmanager: endpoint.clone(),
            };
            let _ = metrics.sent.get_or_create(&labels);
            let _ = metrics.errors.get_or_create(&labels);
        }
        metrics.discovered.set(endpoints.len() as i64);
        metrics.queue_capacity.set(options.capacity as i64);
        Ok(Notifier {
            inner: Arc::new(Inner {
                options,
                endpoints,
                queue: Mutex::new(VecDeque::new()),
                wake: tokio::sync::Notify::new(),
                metrics,
                client,
            }),
        })
    }

    /// Starts the sender (on the current tokio runtime).
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(Arc::clone(&self.inner)))
    }

    /// Queues the alerts of `group` due at `ts_ms` (its evaluation time)
    /// and marks them sent.
    pub fn queue_due(&self, group: &mut GroupState, ts_ms: i64) {
        let options = &self.inner.options;
        let delta = options.resend_delay.max(group.spec.interval);
        let valid_until = ts_ms + 4 * delta.as_millis() as i64;
        let resend_ms = options.resend_delay.as_millis() as i64;
        let mut due = Vec::new();
        for rule in &mut group.rules {
            if !matches!(rule.spec.kind, RuleKind::Alert { .. }) {
                continue;
            }
            let link = generator_url(&options.external_url, &rule.spec.expr_text);
            for alert in rule.alerts.all_mut() {
                if needs_sending(alert, ts_ms, resend_ms) {
                    alert.last_sent_ms = Some(ts_ms);
                    due.push(postable(alert, valid_until, &link));
                }
            }
        }
        self.push(due);
    }

    /// Adds `alerts` to the queue, dropping the oldest past its capacity.
    pub fn push(&self, alerts: Vec<Postable>) {
        if alerts.is_empty() {
            return;
        }
        let inner = &self.inner;
        let mut queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.extend(alerts);
        let over = queue.len().saturating_sub(inner.options.capacity);
        if over > 0 {
            queue.drain(..over);
            inner.metrics.dropped.inc_by(over as u64);
            tracing::warn!(
                dropped = over,
                "alert notification queue full; dropping the oldest alerts"
            );
        }
        inner.metrics.queue_length.set(queue.len() as i64);
        drop(queue);
        inner.wake.notify_one();
    }
}

/// Prometheus's rule: pending alerts never; a resolved alert once after it
/// resolved; otherwise when the last send is more than the resend delay
/// ago.
fn needs_sending(alert: &Alert, ts_ms: i64, resend_ms: i64) -> bool {
    if alert.state == State::Pending {
        return false;
    }
    let last = alert.last_sent_ms.unwrap_or(i64::MIN);
    if alert.resolved_at_ms.is_some_and(|at| at > last) {
        return true;
    }
    alert.last_sent_ms.is_none_or(|l| l + resend_ms < ts_ms)
}

fn postable(alert: &Alert, valid_until_ms: i64, link: &str) -> Postable {
    let starts = alert.fired_at_ms.unwrap_or(alert.active_at_ms);
    let ends = alert.resolved_at_ms.unwrap_or(valid_until_ms);
    Postable {
        labels: alert.labels.iter().cloned().collect(),
        annotations: alert.annotations.iter().cloned().collect(),
        starts_at: rfc3339(starts),
        ends_at: rfc3339(ends),
        generator_url: link.to_owned(),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Prometheus's link to an expression in its table view.
fn generator_url(external_url: &str, expr: &str) -> String {
    format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        external_url.trim_end_matches('/'),
        query_escape(expr)
    )
}

/// Escapes a query-string value as Go's `url.QueryEscape` does.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Takes batches off the queue and posts each to every Alertmanager.
async fn run(inner: Arc<Inner>) {
    loop {
        let batch: Vec<Postable> = {
            let mut queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = queue.len().min(MAX_BATCH);
            let batch = queue.drain(..n).collect();
            inner.metrics.queue_length.set(queue.len() as i64);
            batch
        };
        if batch.is_empty() {
            inner.wake.notified().await;
            continue;
        }
        let body = match serde_json::to_vec(&batch) {
            Ok(body) => Arc::<[u8]>::from(body),
            Err(err) => {
                tracing::warn!(error = %err, "encoding alerts failed");
                continue;
            }
        };
        let mut posts = tokio::task::JoinSet::new();
        for endpoint in inner.endpoints.clone() {
            let inner = Arc::clone(&inner);
            let body = body.clone();
            let count = batch.len() as u64;
            posts.spawn(async move { post_with_retries(&inner, &endpoint, body, count).await });
        }
        let mut delivered = false;
        while let Some(done) = posts.join_next().await {
            delivered |= done.unwrap_or(false);
        }
        if !delivered {
            inner.metrics.dropped.inc_by(batch.len() as u64);
        }
    }
}

/// Posts `body` to `endpoint`, retrying with backoff; whether it was
/// accepted.
async fn post_with_retries(inner: &Inner, endpoint: &str, body: Arc<[u8]>, count: u64) -> bool {
    let labels = AlertmanagerLabels {
        alertmanager: endpoint.to_owned(),
    };
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match post(inner, endpoint, body.to_vec()).await {
            Ok(()) => {
                inner.metrics.sent.get_or_create(&labels).inc_by(count);
                return true;
            }
            Err(err) => {
                inner.metrics.errors.get_or_create(&labels).inc();
                tracing::warn!(alertmanager = endpoint, attempt, count, error = %err, "sending alerts failed");
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    false
}

async fn post(inner: &Inner, endpoint: &str, body: Vec<u8>) -> Result<(), String> {
    let mut request = inner
        .client
        .post(endpoint)
        .header("Content-Type", "application/json")
        .body(body);
    request = match &inner.options.auth {
        Auth::None => request,
        Auth::Bearer(token) => request.bearer_auth(token),
        Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
    };
    let response = request.send().await.map_err(|err| err.to_string())?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(format!("{status}: {}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: State) -> Alert {
        Alert {
            labels: vec![("alertname".into(), "Hot".into())],
            annotations: vec![("summary".into(), "hot".into())],
            state,
            value: 1.0,
            active_at_ms: 0,
            fired_at_ms: (state != State::Pending).then_some(10_000),
            resolved_at_ms: None,
            keep_firing_since_ms: None,
            last_sent_ms: None,
        }
    }

    #[test]
    fn sends_firing_again_after_the_resend_delay_and_resolved_once() {
        let mut a = alert(State::Pending);
        assert!(!needs_sending(&a, 10_000, 60_000));
        a = alert(State::Firing);
        assert!(needs_sending(&a, 10_000, 60_000));
        a.last_sent_ms = Some(10_000);
        assert!(!needs_sending(&a, 70_000, 60_000), "not yet past the delay");
        assert!(needs_sending(&a, 70_001, 60_000));
        a.state = State::Inactive;
        a.resolved_at_ms = Some(20_000);
        assert!(needs_sending(&a, 20_000, 60_000), "resolved since sent");
        a.last_sent_ms = Some(20_000);
        assert!(!needs_sending(&a, 30_000, 60_000));
    }

    #[test]
    fn postable_ends_at_resolution_or_valid_until() {
        let mut a = alert(State::Firing);
        let p = postable(&a, 250_000, "x");
        assert_eq!(p.starts_at, "1970-01-01T00:00:10.000Z");
        assert_eq!(p.ends_at, "1970-01-01T00:04:10.000Z");
        a.resolved_at_ms = Some(20_000);
        assert_eq!(
            postable(&a, 250_000, "x").ends_at,
            "1970-01-01T00:00:20.000Z"
        );
    }

    #[test]
    fn generator_url_escapes_as_go_does() {
        assert_eq!(
            generator_url("http://h:9201/", "up{job=\"a b\"} > 0"),
            "http://h:9201/graph?g0.expr=up%7Bjob%3D%22a+b%22%7D+%3E+0&g0.tab=1"
        );
    }

    #[test]
    fn a_full_queue_drops_its_oldest_alerts_and_counts_them() {
        let metrics = NotifyMetrics::default();
        let options = Options {
            urls: vec!["http://127.0.0.1:9".into()],
            auth: Auth::None,
            timeout: Duration::from_secs(1),
            capacity: 2,
            resend_delay: Duration::from_secs(60),
            external_url: String::new(),
        };
        let notifier = Notifier::new(options, metrics.clone()).unwrap();
        let named = |name: &str| {
            let mut p = postable(&alert(State::Firing), 0, "");
            p.labels.insert("alertname".into(), name.into());
            p
        };
        notifier.push(vec![named("a"), named("b")]);
        assert_eq!(metrics.dropped.get(), 0);
        notifier.push(vec![named("c")]);
        assert_eq!(metrics.dropped.get(), 1);
        assert_eq!(metrics.queue_length.get(), 2);
        assert_eq!(metrics.queue_capacity.get(), 2);
        assert_eq!(metrics.discovered.get(), 1);
        let queue = notifier.inner.queue.lock().unwrap();
        let left: Vec<&str> = queue
            .iter()
            .map(|p| p.labels["alertname"].as_str())
            .collect();
        assert_eq!(left, ["b", "c"]);
    }

    #[test]
    fn credentials_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "secret\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            Auth::from_files(Some(&token), None, None).unwrap(),
            Auth::Bearer(t) if t == "secret"
        ));
        assert!(matches!(
            Auth::from_files(None, Some("am"), Some(&token)).unwrap(),
            Auth::Basic { username, password } if username == "am" && password == "secret"
        ));
        let err = Auth::from_files(Some(&empty), None, None).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        assert!(Auth::from_files(Some(&token), Some("am"), Some(&token)).is_err());
        assert!(Auth::from_files(None, Some("am"), None).is_err());
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert_eq!(
            parse_url("http://am:9093/").unwrap(),
            "http://am:9093".to_owned()
        );
        assert!(parse_url("am:9093").is_err());
        assert!(parse_url("ftp://am").is_err());
        assert!(parse_url("nonsense").is_err());
    }
}
