//! `config_update` on the host: checked again against the host's own
//! rules (a document the receiver let through can still be refused),
//! persisted 0600 with the previous version kept, applied without a
//! restart, surviving one, and rolled back unless confirmed.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcmon_exporter::fans::Policy;
use dcmon_exporter::runner::{RunnerOptions, execute};
use dcmon_exporter::runtime_config::{CURRENT_FILE, PREVIOUS_FILE, RuntimeStore, UNCONFIRMED_FILE};
use dcmon_protocol::commands::{Command, CommandStatus, ConfigAction, RuntimeConfig};
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
    assert_eq!(answer["at_next_restart"], json!(["interval_s"]));
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

#[test]
fn collectors_are_switched_at_once_among_those_started_and_the_rest_at_restart() {
    use dcmon_exporter::collector::{Scraper, Services};
    let host = Host::new();
    let flags = || dcmon_exporter::config::Config {
        enabled: ["loadavg", "uname", "config"].into_iter().collect(),
        ..Default::default()
    };
    let startup = flags();
    let services = Services::for_host(&startup);
    let store = RuntimeStore::open_with(
        host.state.path(),
        25,
        Arc::clone(&services.fans),
        None,
        Arc::clone(&services.runtime_collectors),
    )
    .unwrap();
    let _ = services.runtime.set(Arc::clone(&store));
    let scraper = Scraper::new(&startup, &services);
    store.set_started_collectors(scraper.collector_names().collect());
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
    let applied = store
        .apply(&with("v1", &["loadavg", "config"]), None)
        .unwrap();
    assert!(applied.at_next_restart.is_empty(), "{applied:?}");
    assert_eq!(ran(&scraper), ["config", "loadavg"], "uname off at once");
    let applied = store
        .apply(
            &with("v2", &["loadavg", "config", "meminfo", "uname"]),
            None,
        )
        .unwrap();
    assert_eq!(applied.at_next_restart, ["collectors"]);
    assert_eq!(
        ran(&scraper),
        ["config", "loadavg", "uname"],
        "meminfo was never started"
    );
    // At the next start the stored set is what gets built.
    let mut config = flags();
    store.override_startup(&mut config);
    let mut enabled: Vec<&str> = config.enabled.iter().copied().collect();
    enabled.sort();
    assert_eq!(enabled, ["config", "loadavg", "meminfo", "uname"]);
}
