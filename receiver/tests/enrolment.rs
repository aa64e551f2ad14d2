//! Enrolment end to end, both programs as real processes: `dcmon-exporter
//! register`, then `dcmon-exporter --state-dir D` alone ships to the
//! receiver with per-request JWTs and runs its commands; re-registering
//! replaces the key; revoking stops the host at its next request.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::exporter::{Exporter, register};
use crate::common::{Receiver, client, name_matcher, open_storage, wait_until};

const HOST: &str = "enrol-e2e";

fn enrollment(state: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("enrollment.json")).unwrap()).unwrap()
}

/// Registers `HOST` into `<tmp>/state`; the state directory.
fn register_into(receiver: &Receiver, tmp: &tempfile::TempDir) -> (PathBuf, String) {
    let state = tmp.path().join("state");
    let output = register(
        &format!("http://{}", receiver.addr),
        &receiver.token_file(),
        HOST,
        &state,
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "register failed: {stderr}");
    (state, stderr)
}

/// Fast collectors only; ships every second.
const SHIP_FAST: &[&str] = &[
    "--remote-write.interval",
    "1s",
    "--collector.disable-defaults",
    "--collector.stat",
    "--collector.loadavg",
];

fn sent(exporter: &Exporter, receiver: &Receiver) -> f64 {
    exporter.metric(&format!(
        "dcmon_remote_write_samples_total{{endpoint=\"http://{}/api/v1/write\",result=\"sent\"",
        receiver.addr
    ))
}

fn clients(receiver: &Receiver) -> Vec<Value> {
    let (status, body) = receiver.get_json("/api/dcmon/clients");
    assert_eq!(status, 200);
    body["data"].as_array().unwrap().clone()
}

#[test]
fn a_registered_host_ships_with_its_own_key_until_revoked() {
    let mut receiver = Receiver::start(&["--clients.push-interval", "1s"]);
    let tmp = tempfile::tempdir().unwrap();
    let (state, stderr) = register_into(&receiver, &tmp);
    assert!(
        stderr.contains(&format!("Registered {HOST} as client")),
        "{stderr}"
    );
    let key_mode = std::fs::metadata(state.join("client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    for entry in std::fs::read_dir(&state).unwrap() {
        let contents = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !contents
                .windows(receiver.token.len())
                .any(|w| w == receiver.token.as_bytes()),
            "the admin token must never be written on the host"
        );
    }
    let first_id = enrollment(&state)["client_id"].as_str().unwrap().to_owned();

    // No URL, no token: the state directory alone says where to ship.
    let mut exporter = Exporter::start_in(tmp, SHIP_FAST);
    wait_until("the exporter ships", Duration::from_secs(20), || {
        sent(&exporter, &receiver) > 0.0
    });
    let listed = clients(&receiver);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["hostname"], HOST);
    assert_eq!(listed[0]["status"], "online");
    assert_eq!(listed[0]["exporter_version"], env!("CARGO_PKG_VERSION"));

    // Re-registering replaces the key and keeps the id; the restarted
    // exporter ships with the new key.
    exporter.terminate();
    let output = register(
        &format!("http://{}", receiver.addr),
        &receiver.token_file(),
        HOST,
        &exporter.state_dir,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Re-registered"), "{stderr}");
    assert_eq!(enrollment(&exporter.state_dir)["client_id"], first_id);
    let fingerprint = clients(&receiver)[0]["key_fingerprint"].clone();
    assert_ne!(fingerprint, listed[0]["key_fingerprint"]);
    exporter.resume();
    let before = sent(&exporter, &receiver);
    wait_until("the exporter ships again", Duration::from_secs(20), || {
        sent(&exporter, &receiver) > before
    });

    // Revoked: the next write is refused, and the exporter says why.
    let (ok, _, stderr) = receiver.admin_command(&["client", "revoke", HOST]);
    assert!(ok, "{stderr}");
    wait_until("the refusal is logged", Duration::from_secs(20), || {
        let log = exporter.log();
        log.contains("401") && log.contains("unknown or revoked")
    });
    exporter.terminate();
    receiver.terminate();

    // What arrived is stored under the registered name.
    let storage = open_storage(&receiver.db_path());
    let load = storage
        .select(&[name_matcher("node_load1")], 0, i64::MAX)
        .unwrap();
    assert_eq!(load.len(), 1, "{load:?}");
    assert!(load[0].labels.contains(&("instance".into(), HOST.into())));
    assert!(load[0].labels.contains(&("job".into(), "dcmon".into())));
    assert!(load[0].samples.len() >= 2);
    let up = storage.select(&[name_matcher("up")], 0, i64::MAX).unwrap();
    assert!(
        up[0].samples.iter().any(|(_, v)| *v == 1.0),
        "the host was up while it shipped"
    );
}

/// A DMI tree of a supported Supermicro board and a stand-in ipmitool
/// bound to a fresh BMC state.
fn fake_bmc(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let sysfs = dir.join("sys");
    let dmi = sysfs.join("class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(dmi.join("board_vendor"), "Supermicro\n").unwrap();
    std::fs::write(dmi.join("board_name"), "X11DPG-OT-CPU\n").unwrap();
    let bmc = dir.join("bmc");
    std::fs::create_dir(&bmc).unwrap();
    std::fs::write(bmc.join("mode"), "2\n").unwrap();
    let stand_in =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../exporter/tests/fixtures/bin/ipmitool");
    let wrapper = dir.join("ipmitool");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nFAKE_IPMI_STATE='{}' exec '{}' \"$@\"\n",
            bmc.display(),
            stand_in.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (sysfs, bmc, wrapper)
}

#[test]
fn a_fan_command_travels_to_the_host_and_its_result_back() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let tmp = tempfile::tempdir().unwrap();
    let (sysfs, bmc, ipmitool) = fake_bmc(tmp.path());
    register_into(&receiver, &tmp);
    let mut args = SHIP_FAST.to_vec();
    let sysfs = sysfs.display().to_string();
    let ipmitool = ipmitool.display().to_string();
    args.extend([
        "--path.sysfs",
        &sysfs,
        "--fans.ipmitool-path",
        &ipmitool,
        "--fans.settle",
        "0s",
        "--no-collector.fan",
    ]);
    let mut exporter = Exporter::start_in(tmp, &args);
    wait_until("the exporter polls", Duration::from_secs(20), || {
        clients(&receiver)[0]["status"] == "online"
    });

    let created = Instant::now();
    let response = client()
        .post(receiver.url("/api/dcmon/commands"))
        .bearer_auth(&receiver.token)
        .json(&json!({"client": HOST, "type": "fan_control",
                      "params": {"action": "set_zone_duty", "zone": 1, "duty": 45}}))
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let id = response.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let mut shown = Value::Null;
    wait_until("the command succeeds", Duration::from_secs(20), || {
        shown = receiver.get_json(&format!("/api/dcmon/commands/{id}")).1;
        shown["status"] == "succeeded" || shown["status"] == "failed"
    });
    assert_eq!(shown["status"], "succeeded", "{shown}\n{}", exporter.log());
    assert!(
        created.elapsed() < Duration::from_secs(5),
        "delivered by the long poll, not a later poll"
    );
    let output: Value = serde_json::from_str(shown["output"].as_str().unwrap()).unwrap();
    assert_eq!(output["mode"], "full");
    assert_eq!(output["zones"]["1"], 45);
    let argv = std::fs::read_to_string(bmc.join("argv.log")).unwrap();
    assert!(argv.contains("raw 0x30 0x45 0x01 0x01\n"), "{argv}");
    assert!(
        argv.contains("raw 0x30 0x70 0x66 0x01 0x01 0x2d\n"),
        "{argv}"
    );

    // Stopping with a manual duty active restores the default mode.
    exporter.terminate();
    assert_eq!(
        std::fs::read_to_string(bmc.join("mode")).unwrap().trim(),
        "2",
        "optimal again after SIGTERM"
    );
}

/// Runs `dcmon-exporter --state-dir <state>`, which must exit within 20 s;
/// its status and standard error.
fn exporter_exits(state: &Path) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(crate::common::exporter::exporter_binary())
        .arg("--web.listen-address")
        .arg(crate::common::peer::free_addr())
        .arg("--state-dir")
        .arg(state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the exporter kept running on {}", state.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn bad_host_names_and_loose_state_permissions_are_refused_by_the_exporter() {
    let receiver = Receiver::start(&["--clients.push-interval", "1h"]);
    let tmp = tempfile::tempdir().unwrap();
    // Refused before the token is read or a key generated: nothing is written.
    for name in ["..", "gpu_01", "0123456789abcdef01234567", "bad-"] {
        let state = tmp.path().join("never");
        let output = register(
            &format!("http://{}", receiver.addr),
            &receiver.token_file(),
            name,
            &state,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name:?} registered");
        assert!(
            stderr.contains("cannot be registered") && stderr.contains("--hostname"),
            "{name:?}: {stderr}"
        );
        assert!(!state.exists(), "{name:?}: the state directory was created");
    }
    assert!(clients(&receiver).is_empty());

    let (state, _) = register_into(&receiver, &tmp);
    let set_mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set_mode(&state, 0o770);
    let (status, stderr) = exporter_exits(&state);
    assert!(!status.success());
    assert!(
        stderr.contains("writable by other users") && stderr.contains("chmod go-w"),
        "{stderr}"
    );
    set_mode(&state, 0o700);
    set_mode(&state.join("enrollment.json"), 0o666);
    let (status, stderr) = exporter_exits(&state);
    assert!(!status.success());
    assert!(
        stderr.contains("writable by other users") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}
