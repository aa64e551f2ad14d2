//! The fan policy and fan safety on the stand-in `ipmitool` (a stateful
//! Supermicro BMC in files) and a GPU source the test drives: the exact
//! raw bytes each decision sends, max-wins, deadband and hold time, the
//! failsafe, BMC reverts, and — with a real exporter process — that fan
//! safety runs without the `fan` collector and that SIGTERM hands the fans
//! back to the BMC. Time is the test's: each interval is `maintain_at`
//! five seconds after the last.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dcmon_exporter::collector::gpu_source::{DriverInfo, GpuReading, GpuSource, GpuSourceError};
use dcmon_exporter::fans::{FanController, Policy};
use dcmon_exporter::snapshot::Snapshot;

use crate::fans::{Bench, controller};

/// GPUs whose temperatures the test sets.
#[derive(Debug, Clone)]
struct Gpus(Arc<Mutex<Result<Vec<GpuReading>, GpuSourceError>>>);

impl Gpus {
    fn new() -> Gpus {
        Gpus(Arc::new(Mutex::new(Ok(Vec::new()))))
    }

    /// GPU `i` at `temps[i]` °C, slowdown at 90 °C.
    fn set(&self, temps: &[f64]) {
        let gpus = temps
            .iter()
            .enumerate()
            .map(|(i, t)| GpuReading {
                index: i as u32,
                uuid: format!("GPU-{i}"),
                temperature_gpu: Some(*t),
                temperature_slowdown: Some(90.0),
                ..GpuReading::default()
            })
            .collect();
        *self.0.lock().unwrap() = Ok(gpus);
    }

    fn fail(&self, why: &str) {
        *self.0.lock().unwrap() = Err(GpuSourceError::Failed(why.into()));
    }
}

impl GpuSource for Gpus {
    fn driver(&self) -> Result<DriverInfo, GpuSourceError> {
        Ok(DriverInfo::default())
    }

    fn read(&self) -> Result<Vec<GpuReading>, GpuSourceError> {
        self.0.lock().unwrap().clone()
    }
}

/// An `ipmitool sensor` table: temperatures, critical at 95 °C.
fn sensor_table(rows: &[(&str, f64)]) -> String {
    rows.iter()
        .map(|(name, celsius)| {
            format!(
                "{name:<16} | {celsius:<10.3} | degrees C  | ok    | 0.000     | 0.000     | 0.000     | 90.000    | 95.000    | 98.000\n"
            )
        })
        .collect()
}

/// A zone-1 policy on the GPUs: 40 °C → 30 %, 80 °C → 100 %.
fn gpu_policy(deadband: f64, hold: u32, step: u8, timeout: u32) -> String {
    format!(
        r#"
version = "test-1"
[[zone]]
id = 1
floor = 30
deadband_c = {deadband}
hold_s = {hold}
max_step = {step}
[[zone.source]]
type = "gpu"
timeout_s = {timeout}
curve = [[40, 30], [80, 100]]
"#
    )
}

/// A controller on `bench` running `policy` over `gpus`, the BMC in optimal mode.
fn governed(bench: &Bench, policy: &str, gpus: &Gpus) -> FanController {
    bench.set("mode", "2");
    let fans = controller(bench).reading_gpus(Arc::new(gpus.clone()));
    bench.set("sensor", &sensor_table(&[("CPU1 Temp", 40.0)]));
    fans.set_policy(Some(Policy::parse(policy, 25).unwrap()));
    bench.take_argv();
    fans
}

/// The duty-setting commands in `argv`.
fn duty_sets(argv: &[String]) -> Vec<String> {
    argv.iter()
        .filter(|a| a.starts_with("raw 0x30 0x70 0x66 0x01"))
        .cloned()
        .collect()
}

/// A sample's value in the controller's gauges.
fn gauge(fans: &FanController, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut out = Snapshot::new();
    fans.gauges().write_to(&mut out);
    out.get(name)?
        .samples
        .iter()
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

struct Clock(Instant, u64);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now(), 0)
    }

    /// The next interval, five seconds on.
    fn tick(&mut self, fans: &FanController) {
        fans.maintain_at(self.0 + Duration::from_secs(self.1 * 5));
        self.1 += 1;
    }
}

#[test]
fn a_gpu_warming_through_the_curve_raises_the_duty_with_the_exact_bytes() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, &gpu_policy(3.0, 0, 100, 30), &gpus);
    let mut clock = Clock::new();

    gpus.set(&[40.0, 35.0]);
    clock.tick(&fans);
    assert_eq!(
        bench.take_argv(),
        [
            "sensor",
            "raw 0x30 0x45 0x00",
            // Optimal: full mode first, read back.
            "raw 0x30 0x45 0x01 0x01",
            "raw 0x30 0x45 0x00",
            "raw 0x30 0x70 0x66 0x00 0x01",
            // 40 °C → 30 %.
            "raw 0x30 0x70 0x66 0x01 0x01 0x1e",
            "raw 0x30 0x70 0x66 0x00 0x01",
        ]
    );
    // 60 °C → 65 %; the hottest GPU counts.
    gpus.set(&[40.0, 60.0]);
    clock.tick(&fans);
    assert_eq!(
        bench.take_argv(),
        [
            "sensor",
            "raw 0x30 0x45 0x00",
            "raw 0x30 0x70 0x66 0x00 0x01",
            "raw 0x30 0x70 0x66 0x01 0x01 0x41",
            "raw 0x30 0x70 0x66 0x00 0x01",
        ]
    );
    gpus.set(&[80.0, 60.0]);
    clock.tick(&fans);
    assert_eq!(
        duty_sets(&bench.take_argv()),
        ["raw 0x30 0x70 0x66 0x01 0x01 0x64"]
    );
    assert_eq!(
        (bench.read("mode"), bench.read("duty1")),
        ("1".into(), "100".into())
    );
    assert_eq!(bench.read("duty0"), "", "zone 0 is not the policy's");
    // Unchanged temperature: nothing is sent but the reads.
    clock.tick(&fans);
    assert!(duty_sets(&bench.take_argv()).is_empty());

    let zone1 = [("zone", "1")];
    assert_eq!(
        gauge(&fans, "dcmon_fan_policy_target_duty_ratio", &zone1),
        Some(1.0)
    );
    assert_eq!(
        gauge(&fans, "dcmon_fan_policy_applied_duty_ratio", &zone1),
        Some(1.0)
    );
    assert_eq!(
        gauge(
            &fans,
            "dcmon_fan_policy_winning_temperature_celsius",
            &[("zone", "1"), ("source", "gpu")]
        ),
        Some(80.0)
    );
    assert_eq!(
        gauge(
            &fans,
            "dcmon_fan_policy_failsafe",
            &[("zone", "1"), ("reason", "none")]
        ),
        Some(0.0)
    );
    assert_eq!(
        gauge(&fans, "dcmon_fan_policy_info", &[("version", "test-1")]),
        Some(1.0)
    );
}

#[test]
fn two_sources_on_one_zone_give_the_higher_demand() {
    let bench = Bench::new("Supermicro", "H12SSL-i");
    let gpus = Gpus::new();
    let policy = r#"
version = "max-wins"
[[zone]]
id = 0
floor = 25
hold_s = 0
max_step = 100
[[zone.source]]
type = "gpu"
curve = [[40, 30], [80, 100]]
[[zone.source]]
type = "ipmi"
sensor = "CPU1 Temp"
curve = [[30, 20], [70, 100]]
"#;
    let fans = governed(&bench, policy, &gpus);
    let mut clock = Clock::new();
    // Both at 50 °C: the GPU asks 47.5 %, the CPU 60 %: the CPU wins.
    gpus.set(&[50.0]);
    bench.set(
        "sensor",
        &sensor_table(&[("CPU1 Temp", 50.0), ("CPU2 Temp", 89.0)]),
    );
    clock.tick(&fans);
    assert_eq!(
        duty_sets(&bench.take_argv()),
        ["raw 0x30 0x70 0x66 0x01 0x00 0x3c"]
    );
    assert_eq!(
        gauge(
            &fans,
            "dcmon_fan_policy_winning_temperature_celsius",
            &[("zone", "0"), ("source", "ipmi:CPU1 Temp")]
        ),
        Some(50.0),
        "CPU2 Temp is not the named sensor"
    );
    // GPU at 70 °C asks 82.5 % → 83 %: now the GPU wins.
    gpus.set(&[70.0]);
    clock.tick(&fans);
    assert_eq!(
        duty_sets(&bench.take_argv()),
        ["raw 0x30 0x70 0x66 0x01 0x00 0x53"]
    );
    assert_eq!(
        gauge(
            &fans,
            "dcmon_fan_policy_winning_temperature_celsius",
            &[("zone", "0"), ("source", "gpu")]
        ),
        Some(70.0)
    );
}

/// Duty changes over a temperature trace jittering around 60 °C.
fn duty_changes_under_jitter(policy: &str) -> Vec<String> {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, policy, &gpus);
    let mut clock = Clock::new();
    let mut sets = Vec::new();
    for celsius in [
        60.0, 61.0, 58.5, 60.0, 59.0, 61.0, 58.0, 60.5, 59.5, 61.0, 58.5, 60.0,
    ]
    .iter()
    .cycle()
    .take(36)
    {
        gpus.set(&[*celsius]);
        clock.tick(&fans);
        sets.extend(duty_sets(&bench.take_argv()));
    }
    sets
}

#[test]
fn deadband_and_hold_time_stop_oscillation() {
    // Without deadband and hold every wiggle moves the fans.
    let restless = duty_changes_under_jitter(&gpu_policy(0.0, 0, 100, 30));
    assert!(restless.len() > 20, "{restless:?}");
    // With a 3 °C deadband: up to 61 °C's 67 %, then still.
    let calm = duty_changes_under_jitter(&gpu_policy(3.0, 0, 100, 30));
    assert_eq!(
        calm,
        [
            "raw 0x30 0x70 0x66 0x01 0x01 0x41",
            "raw 0x30 0x70 0x66 0x01 0x01 0x43"
        ]
    );

    // The hold time: a spike, then a drop well past the deadband; the duty
    // stays up for 30 s after the last change, then comes down.
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, &gpu_policy(3.0, 30, 100, 30), &gpus);
    let mut clock = Clock::new();
    gpus.set(&[70.0]);
    clock.tick(&fans);
    assert_eq!(
        duty_sets(&bench.take_argv()),
        ["raw 0x30 0x70 0x66 0x01 0x01 0x53"]
    );
    gpus.set(&[50.0]);
    for _ in 0..5 {
        clock.tick(&fans);
        assert!(duty_sets(&bench.take_argv()).is_empty(), "held");
    }
    clock.tick(&fans);
    // 30 s after the change: curve(50 + 3) = 52.75 → 53 %.
    assert_eq!(
        duty_sets(&bench.take_argv()),
        ["raw 0x30 0x70 0x66 0x01 0x01 0x35"]
    );
}

#[test]
fn max_step_limits_each_change() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, &gpu_policy(3.0, 0, 20, 30), &gpus);
    let mut clock = Clock::new();
    gpus.set(&[40.0]);
    clock.tick(&fans);
    gpus.set(&[80.0]);
    let mut sets = Vec::new();
    for _ in 0..5 {
        clock.tick(&fans);
        sets.extend(duty_sets(&bench.take_argv()));
    }
    assert_eq!(
        sets[1..],
        [
            "raw 0x30 0x70 0x66 0x01 0x01 0x32",
            "raw 0x30 0x70 0x66 0x01 0x01 0x46",
            "raw 0x30 0x70 0x66 0x01 0x01 0x5a",
            "raw 0x30 0x70 0x66 0x01 0x01 0x64",
        ]
    );
}

#[test]
fn a_stale_or_failing_gpu_source_trips_the_failsafe_to_full_duty() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, &gpu_policy(3.0, 30, 10, 10), &gpus);
    let mut clock = Clock::new();
    gpus.set(&[50.0]);
    clock.tick(&fans);
    assert_eq!(
        duty_sets(&bench.take_argv()),
        ["raw 0x30 0x70 0x66 0x01 0x01 0x30"]
    );
    // The GPU stops answering: its last reading holds for the timeout…
    gpus.set(&[]);
    clock.tick(&fans);
    assert!(duty_sets(&bench.take_argv()).is_empty());
    assert_eq!(
        gauge(&fans, "dcmon_fan_policy_failsafe", &[("zone", "1")]),
        Some(0.0)
    );
    // …then the zone goes to 100 % at once, whatever max_step says.
    clock.tick(&fans);
    assert_eq!(
        duty_sets(&bench.take_argv()),
        ["raw 0x30 0x70 0x66 0x01 0x01 0x64"]
    );
    assert_eq!(
        gauge(
            &fans,
            "dcmon_fan_policy_failsafe",
            &[("zone", "1"), ("reason", "source_stale")]
        ),
        Some(1.0)
    );

    // An NVML error is a failsafe at the next interval, without waiting.
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, &gpu_policy(3.0, 30, 10, 10), &gpus);
    let mut clock = Clock::new();
    gpus.set(&[50.0]);
    clock.tick(&fans);
    gpus.fail("Unknown Error");
    clock.tick(&fans);
    assert_eq!(bench.read("duty1"), "100");
    assert_eq!(
        gauge(
            &fans,
            "dcmon_fan_policy_failsafe",
            &[("zone", "1"), ("reason", "source_error")]
        ),
        Some(1.0)
    );
    // Recovered: back down by the policy's rules (hold, then steps).
    gpus.set(&[50.0]);
    for _ in 0..6 {
        clock.tick(&fans);
    }
    assert_eq!(
        gauge(&fans, "dcmon_fan_policy_failsafe", &[("zone", "1")]),
        Some(0.0)
    );
    assert_eq!(bench.read("duty1"), "90", "30 s held, then one 10 % step");
}

#[test]
fn the_bmc_taking_the_fans_back_is_reasserted_and_counted() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, &gpu_policy(3.0, 30, 100, 30), &gpus);
    let mut clock = Clock::new();
    gpus.set(&[60.0]);
    clock.tick(&fans);
    bench.take_argv();
    // Behind the exporter's back the BMC returns to optimal (and its own duty).
    bench.set("mode", "2");
    bench.set("duty1", "40");
    clock.tick(&fans);
    assert_eq!(
        bench.take_argv(),
        [
            "sensor",
            "raw 0x30 0x45 0x00",
            "raw 0x30 0x45 0x01 0x01",
            "raw 0x30 0x45 0x00",
            "raw 0x30 0x70 0x66 0x00 0x01",
            "raw 0x30 0x70 0x66 0x01 0x01 0x41",
            "raw 0x30 0x70 0x66 0x00 0x01",
        ]
    );
    assert_eq!(fans.gauges().reasserts, 1);
    let reverts =
        |fans: &FanController| gauge(fans, "dcmon_fan_policy_reverts_total", &[("zone", "1")]);
    assert_eq!(reverts(&fans), Some(1.0));
    // Full mode kept, but the duty changed under it: also a revert.
    bench.set("duty1", "100");
    clock.tick(&fans);
    assert_eq!(bench.read("duty1"), "65");
    assert_eq!(reverts(&fans), Some(2.0));
    assert_eq!(fans.gauges().reasserts, 1, "the mode held this time");
    // Quiet intervals count nothing.
    clock.tick(&fans);
    assert_eq!(reverts(&fans), Some(2.0));
}

#[test]
fn the_policy_owns_the_mode_until_it_is_removed_or_the_exporter_stops() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, &gpu_policy(3.0, 30, 100, 30), &gpus);
    gpus.set(&[60.0]);
    Clock::new().tick(&fans);
    let err = fans
        .set_mode(dcmon_protocol::commands::FanMode::Optimal)
        .unwrap_err();
    assert!(err.to_string().contains("fan policy test-1"), "{err}");
    assert_eq!(bench.read("mode"), "1");
    // Removing it hands the fans back in the host's default mode.
    fans.set_policy(None);
    assert_eq!(bench.read("mode"), "2");
    assert!(fans.gauges().policy.is_none());
    bench.take_argv();
    fans.release();
    assert!(bench.take_argv().is_empty(), "nothing left to hand back");
}

#[test]
fn a_scrape_only_reads_and_the_safety_task_reasserts() {
    use dcmon_exporter::collector::{Collector, Services};
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let fans = Arc::new(controller(&bench));
    fans.set_zone_duty(0, 55, None).unwrap();
    bench.set("mode", "0");
    bench.take_argv();
    let services = Services {
        fans: Arc::clone(&fans),
        gpu_temperatures: Default::default(),
        runtime: Default::default(),
        runtime_collectors: Default::default(),
    };
    let collector = dcmon_exporter::collector::fan::new(&services);
    collector.update(&mut Snapshot::new()).unwrap();
    let argv = bench.take_argv();
    assert!(
        argv.iter().all(|a| a == "sensor"
            || a.starts_with("raw 0x30 0x45 0x00")
            || a.starts_with("raw 0x30 0x70 0x66 0x00")),
        "a scrape sends only reads: {argv:?}"
    );
    assert_eq!(bench.read("mode"), "0", "and leaves the drift alone");

    // The safety task finds it and re-asserts.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let task = runtime.spawn(dcmon_exporter::fans::safety::run(
        Arc::clone(&fans),
        Duration::from_millis(20),
        stopping,
    ));
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while bench.read("mode") != "1" && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
    });
    assert_eq!(
        (bench.read("mode"), bench.read("duty0")),
        ("1".into(), "55".into())
    );
    assert_eq!(fans.gauges().reasserts, 1);
}

/// Waits until `done` holds, up to a generous limit (no timing asserted).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `dcmon-exporter` on `bench`'s BMC and DMI tree with `args`.
fn exporter(bench: &Bench, args: &[&str]) -> (dcmon_testkit::KillOnDrop, String) {
    let addr = format!("127.0.0.1:{}", dcmon_testkit::free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dcmon-exporter"))
        .args(["--web.listen-address", &addr, "--path.sysfs"])
        .arg(bench.dir.path().join("sys"))
        .arg("--fans.ipmitool-path")
        .arg(bench.ipmitool())
        .args(["--fans.settle", "0s", "--fans.interval", "1s"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (dcmon_testkit::KillOnDrop(child), addr)
}

#[test]
fn without_the_fan_collector_the_policy_runs_and_sigterm_hands_the_fans_back() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    bench.set("mode", "2");
    bench.set("sensor", &sensor_table(&[("CPU1 Temp", 50.0)]));
    let file = bench.dir.path().join("policy.toml");
    std::fs::write(
        &file,
        r#"
version = "cpu-1"
default_mode = "heavy_io"
[[zone]]
id = 0
[[zone.source]]
type = "ipmi"
sensor = "CPU1 Temp"
curve = [[30, 20], [70, 100]]
"#,
    )
    .unwrap();
    let (child, addr) = exporter(
        &bench,
        &[
            "--no-collector.fan",
            "--fans.policy-file",
            file.to_str().unwrap(),
        ],
    );
    // 50 °C on 30 °C → 20 %, 70 °C → 100 %: 60 %.
    wait_until("the policy's duty", || {
        bench.read("mode") == "1" && bench.read("duty0") == "60"
    });
    assert!(dcmon_testkit::wait_for_port(&addr, Duration::from_secs(30)));
    let (code, _, body) = crate::common::process::get(&format!("http://{addr}/metrics"), &[]);
    let metrics = String::from_utf8(body).unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("node_scrape_collector_success"),
        "{metrics}"
    );
    assert!(!metrics.contains("dcmon_fan_"), "the fan collector is off");
    let status = child.terminate();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        bench.read("mode"),
        "4",
        "the policy's default mode (heavy I/O)"
    );
}

#[test]
fn an_invalid_policy_file_stops_the_exporter_naming_the_field() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    bench.set("mode", "2");
    let file = bench.dir.path().join("policy.toml");
    std::fs::write(
        &file,
        "version = \"v1\"\n[[zone]]\nid = 0\nfloor = 5\n[[zone.source]]\ntype = \"gpu\"\ncurve = [[40, 30]]\n",
    )
    .unwrap();
    let (mut child, _) = exporter(&bench, &["--fans.policy-file", file.to_str().unwrap()]);
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(stderr.contains("zone[0].floor"), "{stderr}");
    assert_eq!(bench.read("mode"), "2", "the BMC was not touched");
}

#[test]
fn the_policy_metrics_pass_promtool() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let gpus = Gpus::new();
    let fans = governed(&bench, &gpu_policy(3.0, 30, 100, 10), &gpus);
    let mut clock = Clock::new();
    let text = |fans: &FanController| {
        let mut out = Snapshot::new();
        fans.gauges().write_to(&mut out);
        out.sort();
        dcmon_exporter::exposition::encode(out, dcmon_protocol::exposition::Format::Text)
    };
    // Regulating, then failing safe after a BMC revert and a lost GPU.
    gpus.set(&[60.0]);
    clock.tick(&fans);
    let regulating = text(&fans);
    bench.set("mode", "2");
    gpus.set(&[]);
    for _ in 0..3 {
        clock.tick(&fans);
    }
    let failing = text(&fans);
    for (text, families) in [
        (
            &regulating,
            &[
                "dcmon_fan_policy_info",
                "dcmon_fan_policy_target_duty_ratio",
                "dcmon_fan_policy_applied_duty_ratio",
                "dcmon_fan_policy_winning_temperature_celsius",
                "dcmon_fan_policy_failsafe",
                "dcmon_fan_policy_reverts_total",
            ][..],
        ),
        (
            &failing,
            &[
                "dcmon_fan_policy_failsafe",
                "dcmon_fan_policy_reverts_total",
            ][..],
        ),
    ] {
        for family in families {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}:\n{text}"
            );
        }
        crate::common::process::promtool_check_metrics(text);
    }
    assert!(
        failing.contains("dcmon_fan_policy_failsafe{zone=\"1\",reason=\"source_stale\"} 1"),
        "{failing}"
    );
    assert!(
        failing.contains("dcmon_fan_policy_reverts_total{zone=\"1\"} 1"),
        "{failing}"
    );
}
