//! `config_update` on the host: checked again against the host's own
//! rules (a document the receiver let through can still be refused),
//! persisted 0600 with the previous version kept, applied without a
//! restart, surviving one, and rolled back unless confirmed. A new interval
//! and a collector the exporter did not start take effect at once too:
//! checked on real exporter processes enrolled with a stand-in receiver
//! that queues the commands and records the ticks shipped to it.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcmon_exporter::fans::Policy;
use dcmon_exporter::runner::{RunnerOptions, execute};
use dcmon_exporter::runtime_config::{CURRENT_FILE, PREVIOUS_FILE, RuntimeStore, UNCONFIRMED_FILE};
use dcmon_protocol::commands::{
    Command, CommandResult, CommandStatus, ConfigAction, DeliveredCommand, RuntimeConfig,
};
use serde_json::json;

use crate::fans::{Bench, controller};

fn config(version: &str, floor: u64) -> RuntimeConfig {
    serde_json::from_value(json!({
        "version": version,
        "interval_s": 15,
        "fan_policy": {"version": format!("policy-{version}"), "zone": [{"id": 0, "floor": floor,
            "source": [{"type": "ipmi", "sensor": "CPU1 Temp", "curve": [[30, 30], [80, 100]]}]}]}
    }))
    .unwrap()
}

fn apply(config: RuntimeConfig, revert_after_s: Option<u32>) -> Command {
    Command::ConfigUpdate(ConfigAction::Apply {
        config,
        revert_after_s,
    })
}

struct Host {
    bench: Bench,
    state: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
        bench.set("mode", "2");
        Host {
            bench,
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// The exporter's start-up: a controller and the store on the state dir.
    fn start(&self, min_duty: u8) -> (Arc<dcmon_exporter::fans::FanController>, Arc<RuntimeStore>) {
        let fans = Arc::new(controller(&self.bench));
        let store =
            RuntimeStore::open(self.state.path(), min_duty, Arc::clone(&fans), None).unwrap();
        (fans, store)
    }

    fn options(min_duty: u8) -> RunnerOptions {
        RunnerOptions {
            server: "http://unused".into(),
            min_duty,
            allow_reboot: false,
        }
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.state.path().join(name)).ok()
    }
}

#[test]
fn a_config_is_applied_at_once_persisted_privately_and_survives_a_restart() {
    let host = Host::new();
    let (fans, store) = host.start(25);
    let result = execute(
        &fans,
        Some(&store),
        &Host::options(25),
        &apply(config("v1", 30), None),
    );
    assert_eq!(
        result.status,
        CommandStatus::Succeeded,
        "{:?}",
        result.error
    );
    let answer: serde_json::Value = serde_json::from_str(&result.output).unwrap();
    assert_eq!(answer["version"], "v1");
    assert_eq!(answer["fan_policy"], "policy-v1");
    assert!(
        answer.get("at_next_restart").is_none(),
        "nothing waits for a restart: {answer}"
    );
    assert_eq!(
        fans.policy_version().as_deref(),
        Some("policy-v1"),
        "no restart needed"
    );
    let mode = std::fs::metadata(host.state.path().join(CURRENT_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(host.file(PREVIOUS_FILE).is_none(), "nothing came before v1");

    let result = execute(
        &fans,
        Some(&store),
        &Host::options(25),
        &apply(config("v2", 35), None),
    );
    assert_eq!(
        result.status,
        CommandStatus::Succeeded,
        "{:?}",
        result.error
    );
    assert!(
        host.file(PREVIOUS_FILE)
            .unwrap()
            .contains("version = \"v1\""),
        "v1 kept"
    );
    let mut out = dcmon_exporter::snapshot::Snapshot::new();
    store.write_to(&mut out);
    let info = &out.get("dcmon_config_info").unwrap().samples[0];
    assert!(
        info.labels
            .iter()
            .any(|(k, v)| *k == "version" && v == "v2"),
        "{info:?}"
    );
    assert!(
        info.labels
            .iter()
            .any(|(k, v)| *k == "hash" && v.len() == 16),
        "{info:?}"
    );
    drop((fans, store));

    // A restart: the stored configuration is back in force.
    let (fans, store) = host.start(25);
    assert_eq!(store.current().unwrap().version, "v2");
    assert_eq!(fans.policy_version().as_deref(), Some("policy-v2"));
}

#[test]
fn the_host_refuses_what_its_own_rules_forbid_and_keeps_its_config() {
    let host = Host::new();
    let (fans, store) = host.start(40);
    let ok = execute(
        &fans,
        Some(&store),
        &Host::options(40),
        &apply(config("v1", 45), None),
    );
    assert_eq!(ok.status, CommandStatus::Succeeded, "{:?}", ok.error);
    let before = host.file(CURRENT_FILE).unwrap();
    // The receiver's floor (25) let a 30 % zone floor through; this host's is 40 %.
    let refused = execute(
        &fans,
        Some(&store),
        &Host::options(40),
        &apply(config("v2", 30), None),
    );
    assert_eq!(refused.status, CommandStatus::Failed);
    let error = refused.error.unwrap();
    assert!(error.contains("refused by this host"), "{error}");
    assert!(error.contains("zone[0].floor"), "{error}");
    // Values the types allow but the rules do not, built by hand.
    let mut bad = config("v3", 45);
    bad.collectors = Some(vec!["cpu".into(), "../../bin/sh".into()]);
    let refused = execute(&fans, Some(&store), &Host::options(40), &apply(bad, None));
    assert!(refused.error.unwrap().contains("config.collectors[1]"));
    let mut bad = config("v4", 45);
    bad.interval_s = Some(100_000);
    let refused = execute(&fans, Some(&store), &Host::options(40), &apply(bad, None));
    assert!(refused.error.unwrap().contains("config.interval_s"));
    assert_eq!(host.file(CURRENT_FILE).unwrap(), before, "nothing written");
    assert!(host.file(PREVIOUS_FILE).is_none());
    assert_eq!(store.current().unwrap().version, "v1");
    assert_eq!(fans.policy_version().as_deref(), Some("policy-v1"));
}

#[test]
fn a_board_without_verified_fan_commands_refuses_a_policy_by_name() {
    let bench = Bench::new("Dell Inc.", "0JP31P");
    let state = tempfile::tempdir().unwrap();
    let fans = Arc::new(controller(&bench));
    let store = RuntimeStore::open(state.path(), 25, Arc::clone(&fans), None).unwrap();
    let refused = execute(
        &fans,
        Some(&store),
        &Host::options(25),
        &apply(config("v1", 30), None),
    );
    assert_eq!(refused.status, CommandStatus::Failed);
    let error = refused.error.unwrap();
    assert!(
        error.contains("cannot run here") && error.contains("Dell Inc. 0JP31P"),
        "{error}"
    );
    assert!(store.current().is_none());
    // Without a policy the rest of the configuration is fine here.
    let mut plain = config("v2", 30);
    plain.fan_policy = None;
    let ok = execute(&fans, Some(&store), &Host::options(25), &apply(plain, None));
    assert_eq!(ok.status, CommandStatus::Succeeded, "{:?}", ok.error);
    // And a policy file is refused at start-up, not ignored.
    let policy = Policy::parse(
        "version = \"p\"\n[[zone]]\nid = 0\n[[zone.source]]\ntype = \"gpu\"\ncurve = [[40, 30]]\n",
        25,
    )
    .unwrap();
    let err = RuntimeStore::open(state.path(), 25, fans, Some(policy)).unwrap_err();
    assert!(err.to_string().contains("Dell Inc. 0JP31P"), "{err}");
}

#[test]
fn an_unconfirmed_config_rolls_back_and_a_confirmed_one_stays() {
    let host = Host::new();
    let (fans, store) = host.start(25);
    let options = Host::options(25);
    execute(
        &fans,
        Some(&store),
        &options,
        &apply(config("v1", 30), None),
    );
    let result = execute(
        &fans,
        Some(&store),
        &options,
        &apply(config("v2", 30), Some(1)),
    );
    assert_eq!(
        result.status,
        CommandStatus::Succeeded,
        "{:?}",
        result.error
    );
    let answer: serde_json::Value = serde_json::from_str(&result.output).unwrap();
    assert!(answer["revert_at"].as_u64().is_some());
    assert!(host.file(UNCONFIRMED_FILE).unwrap().contains("v2"));
    assert_eq!(fans.policy_version().as_deref(), Some("policy-v2"));
    // Nobody confirms: v1 comes back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.current().unwrap().version != "v1" {
        assert!(Instant::now() < deadline, "never rolled back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fans.policy_version().as_deref(), Some("policy-v1"));
    assert!(host.file(UNCONFIRMED_FILE).is_none());
    assert!(
        host.file(CURRENT_FILE)
            .unwrap()
            .contains("version = \"v1\"")
    );

    // Confirmed in time: the rollback finds nothing to undo.
    execute(
        &fans,
        Some(&store),
        &options,
        &apply(config("v3", 30), Some(3600)),
    );
    let wrong = execute(
        &fans,
        Some(&store),
        &options,
        &Command::ConfigUpdate(ConfigAction::Confirm {
            version: "v9".into(),
        }),
    );
    assert!(wrong.error.unwrap().contains("v3 awaits confirmation"));
    let confirmed = execute(
        &fans,
        Some(&store),
        &options,
        &Command::ConfigUpdate(ConfigAction::Confirm {
            version: "v3".into(),
        }),
    );
    assert_eq!(
        confirmed.status,
        CommandStatus::Succeeded,
        "{:?}",
        confirmed.error
    );
    store.revert_if_unconfirmed("v3");
    assert_eq!(store.current().unwrap().version, "v3");
    assert!(host.file(UNCONFIRMED_FILE).is_none());

    // Unconfirmed when the exporter stopped: rolled back at the next start.
    execute(
        &fans,
        Some(&store),
        &options,
        &apply(config("v4", 30), Some(3600)),
    );
    drop((fans, store));
    let (fans, store) = host.start(25);
    assert_eq!(store.current().unwrap().version, "v3");
    assert_eq!(fans.policy_version().as_deref(), Some("policy-v3"));
}

#[test]
fn config_check_and_show_are_the_local_counterparts() {
    let host = Host::new();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_dcmon-exporter"))
            .arg("--state-dir")
            .arg(host.state.path())
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stdout, _) = run(&["config", "show"]);
    assert!(ok);
    assert!(stdout.contains("no runtime configuration"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "version = \"v7\"\ninterval_s = 30\ncollectors = [\"cpu\", \"fan\"]\n[fan_policy]\nversion = \"p\"\n[[fan_policy.zone]]\nid = 1\n[[fan_policy.zone.source]]\ntype = \"nvme\"\ncurve = [[40, 30], [70, 100]]\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&["config", "check", good.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("runtime configuration v7"), "{stdout}");
    let (ok, _, stderr) = run(&[
        "--fans.min-duty",
        "35",
        "config",
        "check",
        good.to_str().unwrap(),
    ]);
    assert!(
        !ok,
        "the default zone floor (30 %) is below this host's 35 %"
    );
    assert!(
        stderr.contains("config.fan_policy.zone[0].floor"),
        "{stderr}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = \"v8\"\nscript = \"/tmp/x\"\n").unwrap();
    let (ok, _, stderr) = run(&["config", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("unknown field `script`"), "{stderr}");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "version = \"p2\"\n[[zone]]\nid = 0\n[[zone.source]]\ntype = \"gpu\"\ncurve = [[40, 30], [40, 100]]\n",
    )
    .unwrap();
    let (ok, _, stderr) = run(&["config", "check", policy.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("zone[0].source[0].curve[1]"), "{stderr}");

    let (fans, store) = host.start(25);
    execute(
        &fans,
        Some(&store),
        &Host::options(25),
        &apply(config("v1", 30), None),
    );
    let (ok, stdout, stderr) = run(&["config", "show"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("# version v1 hash "), "{stdout}");
    assert!(stdout.contains("sensor = \"CPU1 Temp\""), "{stdout}");
}

#[test]
fn collector_names_match_what_config_update_allows() {
    let ours: Vec<&str> = dcmon_exporter::collector::ALL
        .iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(ours, dcmon_protocol::commands::COLLECTORS);
}

/// The services of a host started with `flags` at a 30 s interval, and its
/// runtime store opened on them (switching the live settings to whatever
/// it holds).
fn open_live(
    host: &Host,
    flags: &dcmon_exporter::config::Config,
) -> (
    dcmon_exporter::collector::Services,
    dcmon_exporter::runtime_config::LiveSettings,
    Arc<RuntimeStore>,
) {
    use dcmon_exporter::runtime_config::LiveSettings;
    let services = dcmon_exporter::collector::Services::for_host(flags);
    let live = LiveSettings::new(services.runtime_collectors.clone(), Duration::from_secs(30));
    let store = RuntimeStore::open_with(
        host.state.path(),
        25,
        Arc::clone(&services.fans),
        None,
        live.clone(),
    )
    .unwrap();
    (services, live, store)
}

#[test]
fn collectors_are_switched_at_once_and_those_not_started_are_built_once() {
    use dcmon_exporter::collector::Scraper;
    let host = Host::new();
    let flags = dcmon_exporter::config::Config {
        enabled: ["loadavg", "uname", "config"].into_iter().collect(),
        ..Default::default()
    };
    let (services, live, store) = open_live(&host, &flags);
    let _ = services.runtime.set(Arc::clone(&store));
    let scraper = Scraper::new(&flags, &services);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ran = |scraper: &Scraper| -> Vec<String> {
        let out = runtime.block_on(scraper.scrape());
        let mut names: Vec<String> = out
            .get("node_scrape_collector_success")
            .unwrap()
            .samples
            .iter()
            .filter_map(|s| {
                s.labels
                    .iter()
                    .find(|(k, _)| *k == "collector")
                    .map(|(_, v)| v.clone())
            })
            .collect();
        names.sort();
        names
    };
    assert_eq!(ran(&scraper), ["config", "loadavg", "uname"]);
    let with = |version: &str, collectors: &[&str]| {
        let mut config = config(version, 30);
        config.fan_policy = None;
        config.interval_s = None;
        config.collectors = Some(collectors.iter().map(|c| c.to_string()).collect());
        config
    };
    store
        .apply(&with("v1", &["loadavg", "config"]), None)
        .unwrap();
    assert_eq!(ran(&scraper), ["config", "loadavg"], "uname off at once");
    store
        .apply(
            &with("v2", &["loadavg", "config", "meminfo", "uname"]),
            None,
        )
        .unwrap();
    let out = runtime.block_on(scraper.scrape());
    assert!(
        out.get("node_memory_MemTotal_bytes").is_some(),
        "meminfo, never started, was built and runs"
    );
    assert_eq!(ran(&scraper), ["config", "loadavg", "meminfo", "uname"]);
    assert_eq!(
        scraper.collector_names().collect::<Vec<_>>(),
        ["config", "loadavg", "meminfo", "uname"],
        "in the order of --help, as at start-up"
    );
    // A rollback (v2 unconfirmed) turns it off again...
    store
        .apply(&with("v3", &["loadavg", "config"]), None)
        .unwrap();
    store
        .apply(&with("v4", &["loadavg", "meminfo"]), Some(3600))
        .unwrap();
    assert_eq!(ran(&scraper), ["loadavg", "meminfo"]);
    store.revert_if_unconfirmed("v4");
    assert_eq!(store.current().unwrap().version, "v3");
    assert_eq!(ran(&scraper), ["config", "loadavg"]);
    // ... and naming it again runs the one collector built, not a new one.
    assert!(
        live.collectors
            .set(Some(vec!["meminfo".into(), "uname".into()]))
            .is_empty(),
        "nothing left to build"
    );
    assert_eq!(ran(&scraper), ["meminfo", "uname"]);
    // No collectors named: the flags' set.
    assert!(live.collectors.set(None).is_empty());
    assert_eq!(ran(&scraper), ["config", "loadavg", "uname"]);
}

#[test]
fn a_stored_config_sets_what_the_scraper_builds_and_the_interval_at_start() {
    use dcmon_exporter::collector::Scraper;
    let host = Host::new();
    let (_fans, store) = host.start(25);
    let mut stored = config("v1", 30);
    stored.fan_policy = None;
    stored.interval_s = Some(7);
    stored.collectors = Some(vec!["meminfo".into(), "uname".into()]);
    store.apply(&stored, None).unwrap();
    drop(store);

    // The next start, on flags that name other collectors and 30 s.
    let flags = dcmon_exporter::config::Config {
        enabled: ["loadavg", "uname"].into_iter().collect(),
        ..Default::default()
    };
    let (services, live, store) = open_live(&host, &flags);
    assert_eq!(live.interval.get(), Duration::from_secs(7));
    let scraper = Scraper::new(&flags, &services);
    assert_eq!(
        scraper.collector_names().collect::<Vec<_>>(),
        ["meminfo", "uname"],
        "loadavg, off in the stored set, is not built"
    );
    // A configuration naming neither goes back to the flags: loadavg is
    // built then, and the interval is the flag's.
    let mut plain = config("v2", 30);
    plain.fan_policy = None;
    plain.interval_s = None;
    store.apply(&plain, Some(3600)).unwrap();
    assert_eq!(live.interval.get(), Duration::from_secs(30));
    assert_eq!(
        scraper.collector_names().collect::<Vec<_>>(),
        ["loadavg", "uname"]
    );
    // Its rollback puts the stored interval and collectors back.
    store.revert_if_unconfirmed("v2");
    assert_eq!(live.interval.get(), Duration::from_secs(7));
    assert_eq!(
        scraper.collector_names().collect::<Vec<_>>(),
        ["meminfo", "uname"]
    );
}

/// A stand-in for the receiver's host-facing side on loopback: the command
/// queue an enrolled exporter long-polls (and answers), and remote write,
/// recording the tick of every batch. Only what the exporter calls.
struct StandInReceiver {
    state: Arc<Received>,
    url: String,
    _runtime: tokio::runtime::Runtime,
}

#[derive(Default)]
struct Received {
    queue: std::sync::Mutex<std::collections::VecDeque<DeliveredCommand>>,
    results: std::sync::Mutex<Vec<(i64, CommandResult)>>,
    /// Each written batch's tick, in arrival order.
    ticks: std::sync::Mutex<Vec<i64>>,
}

impl StandInReceiver {
    fn start() -> StandInReceiver {
        use axum::routing::{get, post};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Received::default());
        let app = axum::Router::new()
            .route("/api/dcmon/commands/next", get(next_command))
            .route("/api/dcmon/commands/{id}/result", post(command_result))
            .route("/api/v1/write", post(write))
            .with_state(Arc::clone(&state));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        StandInReceiver {
            state,
            url,
            _runtime: runtime,
        }
    }

    /// Registers a host in `state_dir` with this receiver, as
    /// `dcmon-exporter register` leaves it.
    fn enrol(&self, state_dir: &std::path::Path) {
        use dcmon_exporter::identity::{Enrollment, IdentityStore};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let enrollment = Enrollment {
            server: self.url.clone(),
            client_id: "host-1".into(),
            instance: "host-1".into(),
            audience: "dcmon".into(),
            server_fingerprint: None,
            server_ca_fingerprint: None,
            server_ca_file: None,
        };
        IdentityStore::open(state_dir)
            .unwrap()
            .save(&key, &enrollment)
            .unwrap();
    }

    /// Queues `command`; returns its id.
    fn queue(&self, command: Command) -> i64 {
        let mut queue = self.state.queue.lock().unwrap();
        let id = 1 + self.state.results.lock().unwrap().len() as i64 + queue.len() as i64;
        queue.push_back(DeliveredCommand {
            id,
            command,
            deadline: i64::MAX,
        });
        id
    }

    /// Waits for the result of command `id`.
    fn result(&self, id: i64) -> CommandResult {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((_, result)) = self
                .state
                .results
                .lock()
                .unwrap()
                .iter()
                .find(|(i, _)| *i == id)
            {
                return result.clone();
            }
            assert!(Instant::now() < deadline, "command {id} never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ticks(&self) -> Vec<i64> {
        self.state.ticks.lock().unwrap().clone()
    }

    /// Waits until `count` consecutive ticks arrived after the first
    /// `from` ones with `step_ms` between each and the next, and returns
    /// how many ticks had arrived by then.
    fn wait_for_spacing(&self, from: usize, step_ms: i64, count: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ticks = self.ticks();
            let newer = &ticks[from.min(ticks.len())..];
            let run = newer
                .windows(count)
                .any(|w| w.windows(2).all(|pair| pair[1] - pair[0] == step_ms));
            if run {
                return ticks.len();
            }
            assert!(
                Instant::now() < deadline,
                "no {count} ticks {step_ms} ms apart after the first {from}: {ticks:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

async fn next_command(
    axum::extract::State(state): axum::extract::State<Arc<Received>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // A short long poll, so the exporter does not spin.
    for _ in 0..20 {
        if let Some(command) = state.queue.lock().unwrap().pop_front() {
            return axum::Json(command).into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

async fn command_result(
    axum::extract::State(state): axum::extract::State<Arc<Received>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    axum::Json(result): axum::Json<CommandResult>,
) -> axum::http::StatusCode {
    state.results.lock().unwrap().push((id, result));
    axum::http::StatusCode::NO_CONTENT
}

async fn write(
    axum::extract::State(state): axum::extract::State<Arc<Received>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use dcmon_protocol::remote_write::{self, Version};
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let version = remote_write::version_from_content_type(content_type).unwrap();
    let raw = remote_write::decompress(&body, 64 << 20).unwrap();
    let batch = remote_write::decode(version, &raw).unwrap();
    let ticks: std::collections::BTreeSet<i64> = batch
        .series
        .iter()
        .flat_map(|s| s.samples.iter().map(|(t, _)| *t))
        .collect();
    assert_eq!(ticks.len(), 1, "one batch, one tick: {ticks:?}");
    state.ticks.lock().unwrap().push(*ticks.first().unwrap());
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    if version == Version::V2 {
        response.headers_mut().insert(
            remote_write::headers::SAMPLES_WRITTEN,
            batch.sample_count().into(),
        );
    }
    response
}

/// An exporter process enrolled with `receiver`, on the given flags.
fn enrolled_exporter(
    receiver: &StandInReceiver,
    state: &tempfile::TempDir,
    flags: &[&str],
) -> crate::common::process::Server {
    receiver.enrol(state.path());
    let mut args = vec!["--state-dir", state.path().to_str().unwrap()];
    args.extend_from_slice(flags);
    crate::common::process::Server::exporter(&args)
}

/// Runs `command` through `receiver` and returns the host's answer.
fn run_command(receiver: &StandInReceiver, command: Command) -> serde_json::Value {
    let id = receiver.queue(command);
    let result = receiver.result(id);
    assert_eq!(
        result.status,
        CommandStatus::Succeeded,
        "{:?}",
        result.error
    );
    serde_json::from_str(&result.output).unwrap()
}

/// Waits until `/metrics` satisfies `done`.
fn wait_for_metrics(
    exporter: &crate::common::process::Server,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = crate::common::process::get_text(&exporter.url("/metrics"));
        if done(&text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened:\n{text}\n{}",
            exporter.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn live_config(version: &str) -> RuntimeConfig {
    serde_json::from_value(json!({"version": version})).unwrap()
}

#[test]
fn a_new_interval_respaces_the_shipped_ticks_at_once_and_its_rollback_restores_them() {
    let receiver = StandInReceiver::start();
    let state = tempfile::tempdir().unwrap();
    let exporter = enrolled_exporter(
        &receiver,
        &state,
        &[
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.config",
            "--remote-write.interval",
            "1s",
        ],
    );
    receiver.wait_for_spacing(0, 1_000, 3);

    let mut config = live_config("fast-to-slow");
    config.interval_s = Some(2);
    let answer = run_command(&receiver, apply(config, Some(15)));
    assert!(answer.get("at_next_restart").is_none(), "{answer}");
    let applied_at = receiver.ticks().len();
    let seen = receiver.wait_for_spacing(applied_at, 2_000, 3);

    // Unconfirmed: the flag's 1 s comes back, in the same process.
    wait_for_metrics(&exporter, "the rollback", |text| {
        !text.contains("dcmon_config_info")
    });
    receiver.wait_for_spacing(seen, 1_000, 4);

    let mut ticks = receiver.ticks();
    ticks.sort_unstable();
    assert!(
        ticks.windows(2).all(|pair| pair[0] < pair[1]),
        "every tick once: {ticks:?}"
    );
    assert!(
        ticks.iter().all(|tick| tick % 1_000 == 0),
        "aligned: {ticks:?}"
    );
    assert_eq!(
        exporter.log_lines_containing("listening").len(),
        1,
        "never restarted"
    );
}

#[test]
fn a_collector_not_started_is_built_by_config_update_and_its_rollback_turns_it_off() {
    let receiver = StandInReceiver::start();
    let state = tempfile::tempdir().unwrap();
    let exporter = enrolled_exporter(
        &receiver,
        &state,
        &[
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.config",
        ],
    );
    let page = crate::common::process::get_text(&exporter.url("/metrics"));
    assert!(page.contains("node_load1 "), "{page}");
    assert!(!page.contains("node_memory_MemTotal_bytes"), "{page}");

    let mut config = live_config("with-meminfo");
    config.collectors = Some(vec!["loadavg".into(), "config".into(), "meminfo".into()]);
    let answer = run_command(&receiver, apply(config, Some(10)));
    assert!(answer.get("at_next_restart").is_none(), "{answer}");
    wait_for_metrics(&exporter, "meminfo's families", |text| {
        text.contains("node_memory_MemTotal_bytes ")
            && text.contains("node_scrape_collector_success{collector=\"meminfo\"} 1")
            && text.contains("dcmon_config_info{")
    });

    // Unconfirmed: back to the flags' collectors.
    wait_for_metrics(&exporter, "the rollback", |text| {
        !text.contains("node_memory_MemTotal_bytes")
            && !text.contains("collector=\"meminfo\"")
            && !text.contains("dcmon_config_info")
            && text.contains("node_load1 ")
    });
    assert_eq!(
        exporter.log_lines_containing("listening").len(),
        1,
        "never restarted"
    );
    assert_eq!(
        exporter.log_lines_containing("collectors started").len(),
        1,
        "built once"
    );
}
