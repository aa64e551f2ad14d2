//! `dcmon-exporter fans …` against the stand-in `ipmitool`
//! (`tests/fixtures/bin/ipmitool`), which keeps a Supermicro BMC's fan state
//! in files and logs every argv: the exact raw bytes of each action, the
//! host's safety rules, board refusal, BMC errors and hangs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dcmon_exporter::fans::{Board, FanController, FanRules, Ipmitool};
use dcmon_protocol::commands::FanMode;

/// A fake BMC and a DMI tree for one test.
pub struct Bench {
    pub dir: tempfile::TempDir,
}

impl Bench {
    pub fn new(board_vendor: &str, board_name: &str) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let dmi = dir.path().join("sys/class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("board_vendor"), format!("{board_vendor}\n")).unwrap();
        std::fs::write(dmi.join("board_name"), format!("{board_name}\n")).unwrap();
        std::fs::create_dir(dir.path().join("bmc")).unwrap();
        // A per-test wrapper binds the stand-in to this test's BMC state.
        let wrapper = dir.path().join("ipmitool");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nFAKE_IPMI_STATE='{}' exec '{}' \"$@\"\n",
                dir.path().join("bmc").display(),
                stand_in().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Bench { dir }
    }

    pub fn ipmitool(&self) -> PathBuf {
        self.dir.path().join("ipmitool")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("bmc")
    }

    pub fn set(&self, file: &str, contents: &str) {
        std::fs::write(self.state().join(file), contents).unwrap();
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.state().join(file))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Commands ipmitool received since the last call.
    pub fn take_argv(&self) -> Vec<String> {
        let log = self.state().join("argv.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        text.lines().map(str::to_owned).collect()
    }

    /// Runs `dcmon-exporter fans <args>`; (success, stdout, stderr).
    pub fn fans(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_dcmon-exporter"))
            .arg("--path.sysfs")
            .arg(self.dir.path().join("sys"))
            .arg("--fans.ipmitool-path")
            .arg(self.ipmitool())
            .args(["--fans.settle", "0s", "--fans.timeout", "2s", "fans"])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn stand_in() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin/ipmitool")
}

#[test]
fn each_action_sends_its_exact_raw_bytes_and_reads_back() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    bench.set("mode", "2");
    bench.set(
        "sensor",
        include_str!("fixtures/ipmitool/sensor_supermicro-x9-x10-gpu-board.txt"),
    );

    let (ok, stdout, stderr) = bench.fans(&["status"]);
    assert!(ok, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["mode"], "optimal");
    assert_eq!(status["zones"]["0"], 100);
    assert_eq!(status["board"]["name"], "X11DPG-OT-CPU");
    let fan2 = status["fans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "FAN2")
        .unwrap();
    assert_eq!(
        (fan2["rpm"].as_f64(), fan2["lower_critical"].as_f64()),
        (Some(3000.0), Some(450.0))
    );
    assert_eq!(
        bench.take_argv(),
        [
            "raw 0x30 0x45 0x00",
            "raw 0x30 0x70 0x66 0x00 0x00",
            "raw 0x30 0x70 0x66 0x00 0x01",
            "sensor"
        ]
    );

    // A duty: full mode first (the BMC overrides manual duty otherwise),
    // then the duty, each read back.
    let (ok, stdout, stderr) = bench.fans(&["set", "1", "60"]);
    assert!(ok, "{stderr}");
    let argv = bench.take_argv();
    assert_eq!(
        argv[..5],
        [
            "raw 0x30 0x45 0x00",
            "raw 0x30 0x45 0x01 0x01",
            "raw 0x30 0x45 0x00",
            "raw 0x30 0x70 0x66 0x01 0x01 0x3c",
            "raw 0x30 0x70 0x66 0x00 0x01",
        ]
    );
    assert_eq!(
        (bench.read("mode"), bench.read("duty1")),
        ("1".into(), "60".into())
    );
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["zones"]["1"], 60);

    for (mode, code) in [
        ("standard", "0x00"),
        ("heavy_io", "0x04"),
        ("optimal", "0x02"),
    ] {
        let (ok, _, stderr) = bench.fans(&["mode", mode]);
        assert!(ok, "{stderr}");
        assert_eq!(
            bench.take_argv()[..2],
            [
                format!("raw 0x30 0x45 0x01 {code}"),
                "raw 0x30 0x45 0x00".into()
            ]
        );
    }
    let (ok, _, _) = bench.fans(&["auto"]);
    assert!(ok);
    assert_eq!(
        bench.take_argv()[0],
        "raw 0x30 0x45 0x01 0x02",
        "default mode: optimal"
    );
}

#[test]
fn the_host_refuses_unsafe_duties_and_unknown_modes_without_touching_the_bmc() {
    let bench = Bench::new("Supermicro", "H12SSL-i");
    for args in [
        &["set", "0", "20"][..],
        &["set", "0", "101"],
        &["set", "7", "50"],
        &["--fans.min-duty", "40", "set", "0", "35"],
    ] {
        let (ok, _, stderr) = bench.fans(args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains("refused"), "{args:?}: {stderr}");
    }
    let (ok, _, stderr) = bench.fans(&["mode", "turbo"]);
    assert!(!ok && stderr.contains("unknown fan mode"), "{stderr}");
    assert!(bench.take_argv().is_empty(), "nothing reached the BMC");
}

#[test]
fn unverified_boards_are_refused_by_name_and_get_no_raw_bytes() {
    for (vendor, board, expected) in [
        ("Supermicro", "X9DRi-LN4+", "X9DRi-LN4+ is an X9 board"),
        ("Supermicro", "X14DBM-AP", "X14/H14"),
        ("Dell Inc.", "0JP31P", "Dell Inc. 0JP31P"),
    ] {
        let bench = Bench::new(vendor, board);
        let (ok, _, stderr) = bench.fans(&["set", "0", "50"]);
        assert!(!ok);
        assert!(stderr.contains(expected), "{board}: {stderr}");
        let (ok, stdout, _) = bench.fans(&["status"]);
        assert!(ok);
        assert!(stdout.contains(expected), "status names why: {stdout}");
        assert!(bench.take_argv().is_empty(), "{board}: no raw command sent");
    }
}

#[test]
fn bmc_errors_and_hangs_are_reported() {
    let bench = Bench::new("Supermicro", "X12DPG-QT6");
    bench.set("fail", "");
    let (ok, _, stderr) = bench.fans(&["mode", "full"]);
    assert!(!ok);
    assert!(stderr.contains("rsp=0xcc"), "{stderr}");

    std::fs::remove_file(bench.state().join("fail")).unwrap();
    bench.set("hang", "");
    let started = Instant::now();
    let (ok, _, stderr) = bench.fans(&["status"]);
    assert!(!ok);
    assert!(stderr.contains("did not answer within"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "killed at the timeout"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_dcmon-exporter"))
        .arg("--path.sysfs")
        .arg(bench.dir.path().join("sys"))
        .args([
            "--fans.ipmitool-path",
            "/nonexistent/ipmitool",
            "fans",
            "status",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("install ipmitool"));
}

/// A controller on the stand-in BMC, as the exporter builds it.
pub fn controller(bench: &Bench) -> FanController {
    controller_with_margin(bench, 0.0)
}

fn controller_with_margin(bench: &Bench, guard_margin: f64) -> FanController {
    // The BMC's sensor table: a real Supermicro capture (CPU1 Temp 33 °C,
    // critical 82 °C; fans at 3000 RPM, lower critical 450).
    bench.set(
        "sensor",
        include_str!("fixtures/ipmitool/sensor_supermicro-x9-x10-gpu-board.txt"),
    );
    FanController::new(
        Box::new(Ipmitool {
            path: bench.ipmitool(),
            timeout: Duration::from_secs(2),
        }),
        Board::detect(&bench.dir.path().join("sys")),
        FanRules {
            min_duty: 25,
            default_mode: FanMode::Optimal,
            settle: Duration::ZERO,
            guard_margin,
        },
    )
}

#[test]
fn a_manual_duty_is_reasserted_when_the_bmc_drifts() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let fans = controller(&bench);
    fans.set_zone_duty(0, 55, None).unwrap();
    bench.take_argv();
    // Nothing to change while the BMC holds full mode and all is cool.
    fans.maintain();
    assert_eq!(bench.take_argv(), ["sensor", "raw 0x30 0x45 0x00"]);
    // The BMC falls back to standard on its own: full mode and the duty return.
    bench.set("mode", "0");
    bench.set("duty0", "100");
    fans.maintain();
    assert_eq!(bench.read("mode"), "1");
    assert_eq!(bench.read("duty0"), "55");
    assert_eq!(fans.gauges().reasserts, 1);
    assert!(fans.gauges().manual_override);
}

#[test]
fn the_thermal_guard_sets_full_speed_when_a_temperature_is_critical() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    // At the captured readings nothing is critical: no trip.
    let calm = controller(&bench);
    calm.set_zone_duty(1, 30, None).unwrap();
    calm.maintain();
    assert_eq!(calm.gauges().thermal_guard_trips, 0);
    calm.release();
    // A guard margin of 60 °C puts CPU1 Temp (33 °C, critical 82 °C) past it.
    let fans = controller_with_margin(&bench, 60.0);
    bench.take_argv();
    // Without a manual duty the BMC's own control is in charge.
    fans.maintain();
    assert!(bench.take_argv().is_empty());
    fans.set_zone_duty(1, 30, None).unwrap();
    fans.maintain();
    assert_eq!(bench.read("mode"), "1");
    assert_eq!(
        (bench.read("duty0"), bench.read("duty1")),
        ("100".into(), "100".into())
    );
    let gauges = fans.gauges();
    assert_eq!(gauges.thermal_guard_trips, 1);
    assert!(!gauges.manual_override, "the guard ends the manual duty");
    let mut snapshot = dcmon_exporter::snapshot::Snapshot::new();
    gauges.write_to(&mut snapshot);
    let trips = snapshot.get("dcmon_fan_thermal_guard_trips_total").unwrap();
    assert_eq!(trips.samples[0].value, 1.0);
}

#[test]
fn a_manual_duty_reverts_after_its_time_and_on_shutdown() {
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    bench.set("mode", "4");
    let fans = controller(&bench);
    fans.set_zone_duty(0, 70, Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(bench.read("mode"), "1");
    std::thread::sleep(Duration::from_millis(150));
    fans.maintain();
    assert_eq!(
        bench.read("mode"),
        "4",
        "back to the mode it left (heavy I/O)"
    );
    assert!(!fans.gauges().manual_override);

    fans.set_zone_duty(0, 70, None).unwrap();
    fans.release();
    assert_eq!(bench.read("mode"), "2", "the configured default (optimal)");
    bench.take_argv();
    fans.release();
    assert!(bench.take_argv().is_empty(), "nothing to restore twice");
}

#[test]
fn commands_run_under_the_hosts_rules_and_report_bmc_errors() {
    use dcmon_exporter::runner::{RunnerOptions, execute};
    use dcmon_protocol::commands::{Command, CommandStatus, FanAction, RebootParams};
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let fans = controller(&bench);
    let options = RunnerOptions {
        server: "http://unused".into(),
        min_duty: 40,
        allow_reboot: false,
    };
    let duty = |duty| {
        Command::FanControl(FanAction::SetZoneDuty {
            zone: 0,
            duty,
            revert_after_s: None,
        })
    };
    // Below this host's floor, whatever the receiver allowed.
    let result = execute(&fans, None, &options, &duty(30));
    assert_eq!(result.status, CommandStatus::Failed);
    assert!(result.error.unwrap().contains("refused by this host"));
    assert!(bench.take_argv().is_empty());

    let result = execute(&fans, None, &options, &duty(45));
    assert_eq!(
        result.status,
        CommandStatus::Succeeded,
        "{:?}",
        result.error
    );
    let output: serde_json::Value = serde_json::from_str(&result.output).unwrap();
    assert_eq!(output["zones"]["0"], 45);

    let result = execute(
        &fans,
        None,
        &options,
        &Command::Reboot(RebootParams { delay_s: 0 }),
    );
    assert_eq!(result.status, CommandStatus::Failed);
    assert!(result.error.unwrap().contains("not allowed"));

    bench.set("fail", "");
    let result = execute(
        &fans,
        None,
        &options,
        &Command::FanControl(FanAction::GetStatus {}),
    );
    assert_eq!(result.status, CommandStatus::Failed);
    assert!(result.error.unwrap().contains("rsp=0xcc"));
}

#[test]
fn the_thermal_guard_watches_the_gpus_too() {
    use dcmon_exporter::collector::Collector;
    use dcmon_exporter::collector::gpu::GpuCollector;
    use dcmon_exporter::fans::SharedTemperatures;

    // The gpu collector leaves each GPU's temperature and slowdown threshold
    // (from the RTX 4080 SUPER capture: slowdown at 96 °C) for the guard.
    let board = SharedTemperatures::default();
    let gpus = GpuCollector::with_source(Box::new(crate::gpu::FakeSource::from_captures(&[
        crate::gpu::H100,
        crate::gpu::RTX4080,
    ])))
    .sharing_temperatures(board.clone());
    gpus.update(&mut dcmon_exporter::snapshot::Snapshot::new())
        .unwrap();
    let shared = board.lock().unwrap().clone();
    assert_eq!(
        shared.len(),
        1,
        "the H100 capture shows no absolute threshold: {shared:?}"
    );
    let gpu = &shared[0];
    assert_eq!(gpu.critical, 96.0);
    assert!(gpu.name.starts_with("GPU 1 ("), "{}", gpu.name);

    // A margin that reaches the GPU's threshold, on a BMC that lists no
    // sensors: only the GPU can trip the guard.
    let margin = gpu.critical - gpu.celsius;
    let bench = Bench::new("Supermicro", "X11DPG-OT-CPU");
    let blind = controller_with_margin(&bench, margin);
    bench.set("sensor", "");
    blind.set_zone_duty(0, 40, None).unwrap();
    blind.maintain();
    assert_eq!(
        blind.gauges().thermal_guard_trips,
        0,
        "nothing to watch without the GPUs"
    );
    blind.release();

    let watching = controller_with_margin(&bench, margin).watching(board);
    bench.set("sensor", "");
    watching.set_zone_duty(0, 40, None).unwrap();
    watching.maintain();
    assert_eq!(watching.gauges().thermal_guard_trips, 1);
    assert_eq!(
        (bench.read("mode"), bench.read("duty0")),
        ("1".into(), "100".into())
    );
}
