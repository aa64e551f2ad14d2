//! The remote-write shipper against an in-test HTTP server on loopback:
//! what it sends, how it treats each kind of answer, its spool across
//! outages, shutdowns and restarts, and its auth headers.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dcmon_exporter::collector::{Scraper, Services, SharedScraper};
use dcmon_exporter::config::Config;
use dcmon_exporter::shipper::spool::Spool;
use dcmon_exporter::shipper::{
    EndpointAuth, EndpointConfig, RequestSigner, Shipper, ShipperConfig, ShipperMetrics,
    SpoolLimits, TargetLabels,
};
use dcmon_exporter::snapshot::Snapshot;
use dcmon_protocol::remote_write::{self, SeriesSamples, Version};
use tokio::sync::watch;

fn now_ms() -> i64 {
    dcmon_exporter::shipper::schedule::now_ms()
}

const INTERVAL: Duration = Duration::from_millis(200);

/// How the fake endpoint answers one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// 429 with `Retry-After: 1`.
    TooManyRequests,
    /// Never answers.
    Hang,
}

/// One request the fake endpoint received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    path: String,
    headers: HeaderMap,
    reply: Reply,
    series: Vec<SeriesSamples>,
}

impl Received {
    fn delivered(&self) -> bool {
        matches!(self.reply, Reply::Status(s) if (200..300).contains(&s))
    }

    /// The batch's tick: every sample of a batch has the same timestamp.
    fn tick(&self) -> i64 {
        let ticks: BTreeSet<i64> = self
            .series
            .iter()
            .flat_map(|s| s.samples.iter().map(|(t, _)| *t))
            .collect();
        assert_eq!(ticks.len(), 1, "one batch, one timestamp: {ticks:?}");
        *ticks.first().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A remote-write endpoint that answers from a script (then a default)
/// and records every request.
#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    received: Mutex<Vec<Received>>,
}

impl Fake {
    fn new(script: &[Reply], default: Reply) -> Arc<Fake> {
        Arc::new(Fake {
            script: Mutex::new(script.iter().copied().collect()),
            default: Mutex::new(Some(default)),
            received: Mutex::default(),
        })
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn on_path(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap() = Some(reply);
    }
}

async fn answer(
    State(fake): State<Arc<Fake>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = remote_write::decompress(&body, 64 << 20).expect("snappy body");
    let batch = remote_write::decode(Version::V1, &raw).expect("Remote-Write 1.0 body");
    let reply = fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| fake.default.lock().unwrap().unwrap());
    fake.received.lock().unwrap().push(Received {
        at: Instant::now(),
        path: uri.path().to_owned(),
        headers,
        reply,
        series: batch.series,
    });
    match reply {
        Reply::Status(status) => (
            StatusCode::from_u16(status).unwrap(),
            format!("fake endpoint says {status}"),
        )
            .into_response(),
        Reply::TooManyRequests => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

/// Serves `fake` on `listener` until the test's runtime ends.
fn serve(fake: &Arc<Fake>, listener: std::net::TcpListener) -> SocketAddr {
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let app = Router::new().fallback(answer).with_state(Arc::clone(fake));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn start_fake(script: &[Reply], default: Reply) -> (Arc<Fake>, SocketAddr) {
    let fake = Fake::new(script, default);
    let addr = serve(&fake, std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    (fake, addr)
}

fn config(state_dir: &Path, endpoints: Vec<EndpointConfig>) -> ShipperConfig {
    ShipperConfig {
        interval: INTERVAL,
        labels: TargetLabels {
            instance: "test-host".into(),
            job: "dcmon".into(),
            external: vec![("dc".into(), "lab".into())],
        },
        endpoints,
        state_dir: state_dir.to_owned(),
        spool: SpoolLimits {
            max_bytes: 16 << 20,
            max_age: Duration::from_secs(3600),
        },
        timeout: Duration::from_secs(5),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
    }
}

fn endpoint(addr: SocketAddr, path: &str) -> EndpointConfig {
    EndpointConfig::new(format!("http://{addr}{path}"), EndpointAuth::None)
}

/// Cheap collectors on the real /proc: the shipper, not the collectors, is
/// under test.
fn scraper() -> Arc<SharedScraper> {
    let config = Config {
        enabled: ["loadavg", "uname"].into(),
        ..Config::default()
    };
    Arc::new(SharedScraper::new(Scraper::new(
        &config,
        &Services::for_host(&config),
    )))
}

/// A started shipper and the switch that stops it.
struct Running {
    shipper: Shipper,
    stop: watch::Sender<bool>,
    metrics: Arc<ShipperMetrics>,
}

async fn start(config: ShipperConfig) -> Running {
    let (stop, stopping) = watch::channel(false);
    let shipper = Shipper::start(config, scraper(), stopping).await.unwrap();
    let metrics = shipper.metrics();
    Running {
        shipper,
        stop,
        metrics,
    }
}

impl Running {
    async fn stop(self) -> Arc<ShipperMetrics> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.shipper.stopped())
            .await
            .expect("shipper stops promptly");
        self.metrics
    }
}

/// `dcmon_remote_write_samples_total{result}` summed over endpoints.
fn samples_total(metrics: &ShipperMetrics, result: &str) -> f64 {
    let mut out = Snapshot::new();
    metrics.collect(&mut out);
    out.get("dcmon_remote_write_samples_total")
        .unwrap()
        .samples
        .iter()
        .filter(|s| s.labels.contains(&("result", result.into())))
        .map(|s| s.value)
        .sum()
}

fn gauge(metrics: &ShipperMetrics, name: &str) -> f64 {
    let mut out = Snapshot::new();
    metrics.collect(&mut out);
    out.get(name).unwrap().samples.iter().map(|s| s.value).sum()
}

/// The ticks of the batches on a spool, oldest first.
fn spooled_ticks(dir: &Path) -> Vec<i64> {
    let limits = SpoolLimits {
        max_bytes: u64::MAX,
        max_age: Duration::from_secs(3600),
    };
    let (mut spool, _) = Spool::open(dir, limits).unwrap();
    spool
        .keys()
        .into_iter()
        .map(|key| spool.read(key).unwrap().tick_ms)
        .collect()
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ticks of the delivered requests, checked to be distinct and consecutive
/// but for ticks the shipper reports it skipped (a collection that overran
/// its interval on a loaded machine; no batch exists for those).
fn assert_every_tick_once(received: &[Received], metrics: &ShipperMetrics) -> Vec<i64> {
    let mut ticks: Vec<i64> = received
        .iter()
        .filter(|r| r.delivered())
        .map(Received::tick)
        .collect();
    ticks.sort();
    let distinct: HashSet<_> = ticks.iter().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a tick was delivered twice: {ticks:?}"
    );
    let interval = INTERVAL.as_millis() as i64;
    let missing: i64 = ticks
        .windows(2)
        .map(|pair| (pair[1] - pair[0]) / interval - 1)
        .sum();
    assert!(
        missing <= metrics.skipped_ticks() as i64,
        "{missing} ticks missing, {} skipped: {ticks:?}",
        metrics.skipped_ticks()
    );
    ticks
}

/// `counted` samples account for every request the endpoint answered,
/// except perhaps the last, whose answer a shutdown may have cut off.
fn assert_counted(counted: f64, received: &[Received]) {
    let all: usize = received.iter().map(|r| r.series.len()).sum();
    let last = received.last().map_or(0, |r| r.series.len());
    assert!(
        counted <= all as f64 && counted >= (all - last) as f64,
        "{counted} samples counted for {} requests of {all} samples",
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_batches_carry_tick_timestamps_labels_and_headers() {
    let (fake, addr) = start_fake(&[], Reply::Status(204));
    let state = tempfile::tempdir().unwrap();
    let running = start(config(state.path(), vec![endpoint(addr, "/api/v1/write")])).await;
    wait_until("3 batches arrive", Duration::from_secs(10), || {
        fake.received().len() >= 3
    })
    .await;
    let metrics = running.stop().await;

    let received = fake.received();
    let ticks = assert_every_tick_once(&received, &metrics);
    for request in &received {
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        assert_eq!(request.header("content-encoding"), Some("snappy"));
        assert_eq!(
            request.header("x-prometheus-remote-write-version"),
            Some("0.1.0")
        );
        assert_eq!(
            request.header("user-agent"),
            Some(concat!("dcmon-exporter/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(request.header("authorization"), None);
        // Stamped on the tick (a multiple of the interval), not when the
        // collectors finished.
        assert_eq!(request.tick() % INTERVAL.as_millis() as i64, 0);
        let names: HashSet<_> = request
            .series
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .find(|(n, _)| n == "__name__")
                    .unwrap()
                    .1
                    .clone()
            })
            .collect();
        for expected in ["node_load1", "node_uname_info", "dcmon_exporter_build_info"] {
            assert!(names.contains(expected), "{expected} missing: {names:?}");
        }
        // The shipper's own metrics are shipped too.
        assert!(
            names.contains("dcmon_remote_write_samples_total"),
            "{names:?}"
        );
        for series in &request.series {
            for label in [("instance", "test-host"), ("job", "dcmon"), ("dc", "lab")] {
                assert!(
                    series.labels.contains(&(label.0.into(), label.1.into())),
                    "{label:?} missing on {:?}",
                    series.labels
                );
            }
        }
    }
    assert_counted(samples_total(&metrics, "sent"), &received);
    assert_eq!(samples_total(&metrics, "failed"), 0.0);
    assert!(
        gauge(
            &metrics,
            "dcmon_remote_write_last_success_timestamp_seconds"
        ) > 1e9
    );
    assert!(ticks.len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dropped_and_never_retried() {
    let (fake, addr) = start_fake(&[], Reply::Status(400));
    let state = tempfile::tempdir().unwrap();
    let config = config(state.path(), vec![endpoint(addr, "/")]);
    let spool_dir = config.spool_dir(&config.endpoints[0]);
    let running = start(config).await;
    wait_until("4 batches are refused", Duration::from_secs(10), || {
        fake.received().len() >= 4
    })
    .await;
    let metrics = running.stop().await;

    let received = fake.received();
    let ticks: Vec<i64> = received.iter().map(Received::tick).collect();
    let distinct: HashSet<_> = ticks.iter().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a refused batch was resent: {ticks:?}"
    );
    assert_counted(samples_total(&metrics, "dropped"), &received);
    assert_eq!(samples_total(&metrics, "sent"), 0.0);
    assert_eq!(samples_total(&metrics, "failed"), 0.0);
    // No refused batch is kept. Shutdown spools the one batch whose answer
    // had not come back yet, if there was one: the last tick, or a newer one
    // the endpoint never saw.
    let spooled = spooled_ticks(&spool_dir);
    let last = ticks.iter().max().copied().unwrap_or(i64::MIN);
    assert!(
        spooled.len() <= 1 && spooled.iter().all(|&t| t >= last),
        "refused batches were spooled: {spooled:?}, received {ticks:?}"
    );
    assert_eq!(
        gauge(&metrics, "dcmon_remote_write_spool_bytes") == 0.0,
        spooled.is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_from_the_spool_until_delivered() {
    let (fake, addr) = start_fake(&[Reply::Status(500); 6], Reply::Status(204));
    let state = tempfile::tempdir().unwrap();
    let running = start(config(state.path(), vec![endpoint(addr, "/")])).await;
    wait_until(
        "the failures pass, 8 batches arrive and the spool drains",
        Duration::from_secs(15),
        || {
            fake.received().iter().filter(|r| r.delivered()).count() >= 8
                && gauge(&running.metrics, "dcmon_remote_write_spool_bytes") == 0.0
        },
    )
    .await;
    let metrics = running.stop().await;

    let received = fake.received();
    let failed: Vec<i64> = received
        .iter()
        .filter(|r| !r.delivered())
        .map(Received::tick)
        .collect();
    let delivered = assert_every_tick_once(&received, &metrics);
    assert!(
        failed.iter().all(|t| delivered.contains(t)),
        "failed ticks {failed:?} not all delivered later: {delivered:?}"
    );
    assert!(samples_total(&metrics, "failed") > 0.0);
    assert_eq!(samples_total(&metrics, "dropped"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    let (fake, addr) = start_fake(&[Reply::TooManyRequests], Reply::Status(204));
    let state = tempfile::tempdir().unwrap();
    let running = start(config(state.path(), vec![endpoint(addr, "/")])).await;
    // Fresh batches go first, the spooled backlog after: the delivered
    // ticks are consecutive once the spool has drained.
    wait_until("4 batches are delivered", Duration::from_secs(15), || {
        fake.received().iter().filter(|r| r.delivered()).count() >= 4
            && gauge(&running.metrics, "dcmon_remote_write_spool_bytes") == 0.0
    })
    .await;
    let metrics = running.stop().await;

    let received = fake.received();
    assert!(matches!(received[0].reply, Reply::TooManyRequests));
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried {waited:?} after a 429 with Retry-After: 1"
    );
    let delivered = assert_every_tick_once(&received, &metrics);
    assert!(delivered.contains(&received[0].tick()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_spooled_while_the_endpoint_is_down_arrive_oldest_first_when_it_returns() {
    // Reserve a port, then leave it closed: connections are refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let state = tempfile::tempdir().unwrap();
    let running = start(config(state.path(), vec![endpoint(addr, "/")])).await;
    wait_until("batches are spooled", Duration::from_secs(10), || {
        gauge(&running.metrics, "dcmon_remote_write_spool_bytes") > 0.0
            && samples_total(&running.metrics, "failed") > 0.0
    })
    .await;
    tokio::time::sleep(INTERVAL * 4).await;

    // Ticks this old were collected, tried and spooled before the endpoint
    // came back; newer ones may have gone out fresh.
    let backlog_before = now_ms() - INTERVAL.as_millis() as i64;
    let fake = Fake::new(&[], Reply::Status(204));
    serve(&fake, std::net::TcpListener::bind(addr).unwrap());
    wait_until("the spool drains", Duration::from_secs(15), || {
        gauge(&running.metrics, "dcmon_remote_write_spool_bytes") == 0.0
            && fake.received().len() >= 8
    })
    .await;
    let metrics = running.stop().await;

    let received = fake.received();
    let delivered = assert_every_tick_once(&received, &metrics);
    assert!(delivered.len() >= 8, "{delivered:?}");
    let backlog: Vec<i64> = received
        .iter()
        .map(Received::tick)
        .filter(|t| *t < backlog_before)
        .collect();
    assert!(backlog.len() >= 4, "{backlog:?}");
    assert!(
        backlog.is_sorted(),
        "spooled batches not sent oldest first: {backlog:?}"
    );
    assert_eq!(samples_total(&metrics, "dropped"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_spool_stays_within_its_limit_and_counts_what_it_dropped() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let state = tempfile::tempdir().unwrap();
    let mut config = config(state.path(), vec![endpoint(addr, "/")]);
    let limit = 4_000;
    config.spool.max_bytes = limit;
    let spool_dir = config.spool_dir(&config.endpoints[0]);
    let running = start(config).await;
    let on_disk = || -> u64 {
        std::fs::read_dir(&spool_dir)
            .map(|dir| dir.map(|e| e.unwrap().metadata().unwrap().len()).sum())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while samples_total(&running.metrics, "dropped") == 0.0 {
        assert!(Instant::now() < deadline, "nothing was dropped");
        assert!(on_disk() <= limit, "spool holds {} bytes", on_disk());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = running.stop().await;
    assert!(on_disk() <= limit);
    assert!(gauge(&metrics, "dcmon_remote_write_spool_bytes") <= limit as f64);
    assert!(gauge(&metrics, "dcmon_remote_write_spool_bytes") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_spools_the_batch_in_flight_and_a_restart_delivers_it() {
    // `/hang` never answers; `/ok` must not be held up by it.
    let (fake, addr) = start_fake(&[], Reply::Status(204));
    let hanging = Fake::new(&[], Reply::Hang);
    let hang_addr = serve(
        &hanging,
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let state = tempfile::tempdir().unwrap();
    let endpoints = vec![endpoint(hang_addr, "/hang"), endpoint(addr, "/ok")];
    let running = start(config(state.path(), endpoints.clone())).await;
    wait_until(
        "6 batches reach the healthy endpoint",
        Duration::from_secs(10),
        || fake.on_path("/ok").len() >= 6,
    )
    .await;
    let metrics = running.stop().await;
    let healthy = assert_every_tick_once(&fake.on_path("/ok"), &metrics);

    // Every batch the hung endpoint did not acknowledge is on its spool,
    // the one whose request was in flight included.
    let in_flight = hanging.received()[0].tick();
    let spool_dir = config(state.path(), endpoints.clone()).spool_dir(&endpoints[0]);
    let spooled = spooled_ticks(&spool_dir);
    assert_eq!(spooled.first(), Some(&in_flight), "{spooled:?}");
    // Both endpoints were handed the same batches; the healthy one may have
    // had its last one in flight at shutdown, and spooled it.
    let ok_dir = config(state.path(), endpoints.clone()).spool_dir(&endpoints[1]);
    let mut handed = healthy.clone();
    handed.extend(spooled_ticks(&ok_dir));
    assert_eq!(spooled, handed, "the hung endpoint's spool misses ticks");

    // After a restart with the endpoint answering, the backlog arrives,
    // oldest first, each batch once.
    hanging.set_default(Reply::Status(204));
    let running = start(config(state.path(), endpoints)).await;
    wait_until(
        "the restarted shipper drains its spool",
        Duration::from_secs(10),
        || {
            let got: HashSet<i64> = hanging
                .received()
                .iter()
                .filter(|r| r.delivered())
                .map(Received::tick)
                .collect();
            spooled.iter().all(|t| got.contains(t))
        },
    )
    .await;
    let metrics = running.stop().await;
    let delivered = hanging.received();
    let ticks: Vec<i64> = delivered
        .iter()
        .filter(|r| r.delivered())
        .map(Received::tick)
        .collect();
    let distinct: HashSet<_> = ticks.iter().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "duplicates after restart: {ticks:?}"
    );
    let backlog: Vec<i64> = ticks
        .iter()
        .copied()
        .filter(|t| spooled.contains(t))
        .collect();
    assert_eq!(backlog, spooled, "backlog not sent oldest first");
    assert_eq!(samples_total(&metrics, "dropped"), 0.0);
}

/// Counts its calls and answers with a fresh value each time.
#[derive(Debug, Default)]
struct CountingSigner(AtomicUsize);

impl RequestSigner for CountingSigner {
    fn authorization(&self) -> anyhow::Result<String> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Ok(format!("Bearer signed-{n}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_sends_its_own_credentials_read_fresh() {
    let (fake, addr) = start_fake(&[], Reply::Status(204));
    let state = tempfile::tempdir().unwrap();
    let token_file = state.path().join("token");
    let password_file = state.path().join("password");
    std::fs::write(&token_file, "first-token\n").unwrap();
    std::fs::write(&password_file, "pass\n").unwrap();
    let signer = Arc::new(CountingSigner::default());
    let endpoints = vec![
        EndpointConfig::new(
            format!("http://{addr}/bearer"),
            EndpointAuth::Bearer(token_file.clone()),
        ),
        EndpointConfig::new(
            format!("http://{addr}/basic"),
            EndpointAuth::Basic {
                username: "user".into(),
                password_file,
            },
        ),
        EndpointConfig::new(
            format!("http://{addr}/signer"),
            EndpointAuth::Signer(signer.clone()),
        ),
    ];
    let state_dir = state.path().join("state");
    let running = start(config(&state_dir, endpoints)).await;
    wait_until("2 batches per endpoint", Duration::from_secs(10), || {
        ["/bearer", "/basic", "/signer"]
            .iter()
            .all(|p| fake.on_path(p).len() >= 2)
    })
    .await;
    // A rotated token is used from the next request on.
    std::fs::write(&token_file, "second-token").unwrap();
    let rotated_at = fake.on_path("/bearer").len();
    wait_until("the rotated token is used", Duration::from_secs(10), || {
        fake.on_path("/bearer").len() >= rotated_at + 2
    })
    .await;
    running.stop().await;

    let bearer = fake.on_path("/bearer");
    assert_eq!(
        bearer[0].header("authorization"),
        Some("Bearer first-token")
    );
    assert_eq!(
        bearer.last().unwrap().header("authorization"),
        Some("Bearer second-token")
    );
    for request in fake.on_path("/basic") {
        // base64("user:pass")
        assert_eq!(request.header("authorization"), Some("Basic dXNlcjpwYXNz"));
    }
    let signed: Vec<_> = fake
        .on_path("/signer")
        .iter()
        .map(|r| r.header("authorization").unwrap().to_owned())
        .collect();
    assert_eq!(signed[0], "Bearer signed-0");
    assert_eq!(
        signed[1], "Bearer signed-1",
        "the signer is called per request"
    );
}
