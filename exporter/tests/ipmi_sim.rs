//! IPMI end to end against a real BMC protocol peer: OpenIPMI's `ipmi_sim`
//! (Debian package `openipmi`) simulates a BMC with a Supermicro-like
//! sensor set, and the real `ipmitool -I lanplus` reads it over UDP, driven
//! by the collector's remote mode. Nothing about ipmitool is faked here.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dcmon_exporter::collector::{Collector, ipmi};
use dcmon_exporter::config::{Config, IpmiRemote};
use dcmon_exporter::snapshot::Snapshot;

use crate::common::process::which;
use crate::ipmi::sample;
use dcmon_testkit::KillOnDrop;

/// How one simulated sensor reads and what its SDR says.
struct Sensor {
    number: u8,
    name: &'static str,
    /// IPMI sensor type (0x01 temperature, 0x02 voltage, 0x04 fan, 0x08 power supply).
    sensor_type: u8,
    /// `None` for a discrete sensor; else (base unit, M, R exponent, signed,
    /// thresholds as raw bytes in UNR, UCR, UNC, LNR, LCR, LNC order).
    analog: Option<(u8, u16, i8, bool, [u8; 6])>,
    /// Raw reading (analog) or the state bit set (discrete); `None` leaves
    /// the sensor unscanned, so the BMC reports no reading (`na`) while
    /// its thresholds are still set.
    reading: Option<u8>,
}

/// IPMI units (IPMI 2.0 table 43-15): 1 °C, 4 V, 18 RPM.
const CELSIUS: u8 = 1;
const VOLTS: u8 = 4;
const RPM: u8 = 18;

/// A Supermicro-like board: CPU and system temperatures (one with negative
/// lower thresholds), three fans (one stalled below its critical limit,
/// one absent), two rails, a power-supply presence sensor.
fn supermicro_like() -> Vec<Sensor> {
    let neg = |v: i8| v as u8;
    vec![
        Sensor {
            number: 0x01,
            name: "CPU Temp",
            sensor_type: 0x01,
            analog: Some((CELSIUS, 1, 0, false, [100, 95, 90, 5, 7, 10])),
            reading: Some(52),
        },
        Sensor {
            number: 0x0b,
            name: "System Temp",
            sensor_type: 0x01,
            analog: Some((CELSIUS, 1, 0, true, [90, 85, 80, neg(-9), neg(-7), neg(-5)])),
            reading: Some(31),
        },
        Sensor {
            number: 0x41,
            name: "FAN1",
            sensor_type: 0x04,
            analog: Some((RPM, 100, 0, false, [254, 252, 250, 3, 4, 5])),
            reading: Some(29),
        },
        Sensor {
            number: 0x42,
            name: "FAN2",
            sensor_type: 0x04,
            analog: Some((RPM, 100, 0, false, [254, 252, 250, 3, 4, 5])),
            reading: Some(4),
        },
        Sensor {
            number: 0x43,
            name: "FAN3",
            sensor_type: 0x04,
            analog: Some((RPM, 100, 0, false, [254, 252, 250, 3, 4, 5])),
            reading: None,
        },
        Sensor {
            number: 0x30,
            name: "12V",
            sensor_type: 0x02,
            analog: Some((VOLTS, 6, -2, false, [220, 215, 210, 180, 185, 190])),
            reading: Some(201),
        },
        Sensor {
            number: 0x36,
            name: "VBAT",
            sensor_type: 0x02,
            analog: Some((VOLTS, 2, -2, false, [255, 180, 175, 120, 125, 130])),
            reading: Some(152),
        },
        Sensor {
            number: 0xc8,
            name: "PS1 Status",
            sensor_type: 0x08,
            analog: None,
            reading: Some(0),
        },
    ]
}

/// A Full Sensor Record (IPMI 2.0 section 43.1) for `sensor`.
fn full_sensor_record(sensor: &Sensor) -> Vec<u8> {
    let mut r = vec![0, 0, 0x51, 0x01, 0];
    // Owner 0x20 LUN 0, number, entity 7.1 (system board).
    r.extend([0x20, 0x00, sensor.number, 0x07, 0x01]);
    match sensor.analog {
        Some((unit, m, r_exp, signed, thresholds)) => {
            // Init everything; capabilities: auto re-arm, thresholds
            // readable and settable; threshold event/reading type.
            r.extend([0x7f, 0x48, sensor.sensor_type, 0x01]);
            // Assertion/deassertion masks, then readable and settable thresholds.
            r.extend([0x95, 0x7a, 0x95, 0x7a, 0x3f, 0x3f]);
            r.extend([if signed { 0x80 } else { 0x00 }, unit, 0x00, 0x00]);
            r.extend([(m & 0xff) as u8, ((m >> 8) as u8) << 6, 0, 0, 0]);
            r.push(((r_exp as u8) & 0x0f) << 4);
            r.extend([0x00, 0, 0, 0, 0xff, 0x00]);
            r.extend(thresholds);
        }
        None => {
            // Discrete, sensor-specific (0x6f); state bit 0 readable.
            r.extend([0x67, 0x40, sensor.sensor_type, 0x6f]);
            r.extend([0x01, 0x00, 0x01, 0x00, 0x01, 0x00]);
            r.extend([0x00, 0x00, 0x00, 0x00, 1, 0, 0, 0, 0, 0]);
            r.extend([0x00, 0, 0, 0, 0xff, 0x00]);
            r.extend([0; 6]);
        }
    }
    // Hysteresis, reserved, OEM, then the 8-bit ASCII name.
    r.extend([0, 0, 0, 0, 0]);
    r.push(0xc0 | sensor.name.len() as u8);
    r.extend(sensor.name.as_bytes());
    r[4] = (r.len() - 5) as u8;
    r
}

/// ipmi_sim's command file: a Supermicro BMC (manufacturer 10876) with the
/// sensors and their SDRs.
fn command_file(sensors: &[Sensor]) -> String {
    let mut lines = vec![
        "mc_setbmc 0x20".to_owned(),
        "mc_add 0x20 0 no-device-sdrs 0x23 1 0x73 0x9f 0x002a7c 0x1b61".to_owned(),
        "sel_enable 0x20 1000 0x0a".to_owned(),
    ];
    for s in sensors {
        let n = s.number;
        let code = if s.analog.is_some() { "0x01" } else { "0x6f" };
        lines.push(format!("sensor_add 0x20 0 {n} {} {code}", s.sensor_type));
        if let Some((.., thresholds)) = s.analog {
            let t: Vec<String> = thresholds.iter().map(u8::to_string).collect();
            lines.push(format!(
                "sensor_set_threshold 0x20 0 {n} settable 111111 {}",
                t.join(" ")
            ));
        }
        if let Some(reading) = s.reading {
            lines.push(format!(
                "sensor_set_event_support 0x20 0 {n} enable scanning per-state {z} {z} {z} {z}",
                z = "000000000000000"
            ));
            lines.push(match s.analog {
                Some(_) => format!("sensor_set_value 0x20 0 {n} {reading} 0"),
                None => format!("sensor_set_bit 0x20 0 {n} {reading} 1 0"),
            });
        }
        let bytes: Vec<String> = full_sensor_record(s)
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect();
        lines.push(format!("main_sdr_add 0x20 {}", bytes.join(" ")));
    }
    lines.push("mc_enable 0x20".to_owned());
    lines.join("\n") + "\n"
}

/// A running ipmi_sim on a loopback UDP port, killed on drop.
struct SimulatedBmc {
    // Held only so the simulator stops with the test.
    _child: KillOnDrop,
    port: u16,
    password_file: PathBuf,
    dir: tempfile::TempDir,
}

const USER: &str = "ADMIN";
const PASSWORD: &str = "dcmon-test";

impl SimulatedBmc {
    fn start() -> SimulatedBmc {
        let ipmi_sim =
            which("ipmi_sim").expect("ipmi_sim is not installed (apt-get install openipmi)");
        which("ipmitool").expect("ipmitool is not installed (apt-get install ipmitool)");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let lan = format!(
            "name \"dcmontest\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n    allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n    allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n    guid a123456789abcdefa123456789abcdef\n  endlan\nuser 2 true \"{USER}\" \"{PASSWORD}\" admin 10 none md2 md5 straight\n"
        );
        std::fs::write(dir.path().join("lan.conf"), lan).unwrap();
        std::fs::write(
            dir.path().join("board.emu"),
            command_file(&supermicro_like()),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, PASSWORD).unwrap();
        let child = Command::new(ipmi_sim)
            .current_dir(dir.path())
            .args(["-c", "lan.conf", "-f", "board.emu", "-s", "state", "-n"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("sim.log")).unwrap())
            .spawn()
            .unwrap();
        let bmc = SimulatedBmc {
            _child: KillOnDrop(child),
            port,
            password_file,
            dir,
        };
        bmc.wait_until_answering();
        bmc
    }

    fn ipmitool(&self, command: &[&str]) -> std::process::Output {
        let port = self.port.to_string();
        let mut args = vec![
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            &port,
            "-C",
            "3",
            "-U",
            USER,
        ];
        args.extend(["-f", self.password_file.to_str().unwrap()]);
        args.extend(command);
        Command::new("ipmitool").args(args).output().unwrap()
    }

    fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ipmitool(&["mc", "info"]).status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "ipmi_sim did not answer: {log}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        config.ipmi.remote = Some(IpmiRemote {
            host: "127.0.0.1".into(),
            port: Some(self.port),
            // ipmi_sim does not answer Get Channel Cipher Suites; without
            // `-C` every ipmitool run waits 10 s before falling back.
            cipher_suite: Some(3),
            user: Some(USER.into()),
            password_file: Some(self.password_file.clone()),
        });
        config.ipmi.ipmitool.timeout = Duration::from_secs(5);
        config.ipmi.cache_ttl = Duration::ZERO;
        config
    }
}

fn state_of(out: &Snapshot, family: &str, name: &str) -> f64 {
    sample(out, family, &[("name", name)])
        .unwrap_or_else(|| panic!("{family}{{name={name:?}}} missing"))
}

#[test]
fn remote_lanplus_against_ipmi_sim() {
    let bmc = SimulatedBmc::start();
    // The simulator really is a BMC ipmitool can read.
    let listing = String::from_utf8(bmc.ipmitool(&["sensor"]).stdout).unwrap();
    assert!(listing.contains("CPU Temp"), "{listing}");

    let started = Instant::now();
    let mut out = Snapshot::new();
    ipmi::new(&bmc.config()).update(&mut out).unwrap();
    let took = started.elapsed();

    // Values through the SDR's conversion factors, ids from `sdr elist`.
    assert_eq!(
        sample(
            &out,
            "ipmi_temperature_celsius",
            &[("name", "CPU Temp"), ("id", "1")]
        ),
        Some(52.0)
    );
    assert_eq!(state_of(&out, "ipmi_temperature_state", "CPU Temp"), 0.0);
    assert_eq!(
        sample(&out, "ipmi_temperature_celsius", &[("name", "System Temp")]),
        Some(31.0)
    );
    // (Its state is not checked: ipmi_sim compares raw bytes unsigned, so it
    // reports the negative lower thresholds as crossed.)
    let lnr = [("name", "System Temp"), ("threshold", "lnr")];
    assert_eq!(
        sample(&out, "dcmon_ipmi_sensor_threshold", &lnr),
        Some(-9.0)
    );
    assert_eq!(
        sample(
            &out,
            "ipmi_fan_speed_rpm",
            &[("name", "FAN1"), ("id", "65")]
        ),
        Some(2900.0)
    );
    assert_eq!(
        sample(&out, "ipmi_voltage_volts", &[("name", "12V"), ("id", "48")]),
        Some(12.06)
    );
    let ucr = [("name", "12V"), ("threshold", "ucr")];
    assert_eq!(
        sample(&out, "dcmon_ipmi_sensor_threshold", &ucr),
        Some(12.9)
    );
    // A fan at its lower critical limit.
    assert_eq!(
        sample(&out, "ipmi_fan_speed_rpm", &[("name", "FAN2")]),
        Some(400.0)
    );
    assert_eq!(state_of(&out, "ipmi_fan_speed_state", "FAN2"), 2.0);
    // Not scanned: no value, state unknown, but its thresholds are known.
    assert!(sample(&out, "ipmi_fan_speed_rpm", &[("name", "FAN3")]).is_none());
    assert!(sample(&out, "ipmi_sensor_value", &[("name", "FAN3")]).is_none());
    // `ipmitool sensor` prints no unit for it, so it lands in the generic family.
    assert!(state_of(&out, "ipmi_sensor_state", "FAN3").is_nan());
    let fan3 = [("name", "FAN3"), ("type", "unknown"), ("threshold", "lcr")];
    assert_eq!(
        sample(&out, "dcmon_ipmi_sensor_threshold", &fan3),
        Some(400.0)
    );
    // Discrete power-supply presence.
    let ps = [("name", "PS1 Status"), ("type", "discrete")];
    assert_eq!(sample(&out, "ipmi_sensor_value", &ps), Some(1.0));

    let bmc_info = [("manufacturer_id", "10876"), ("firmware_revision", "1.73")];
    assert_eq!(
        sample(&out, "ipmi_bmc_info", &bmc_info),
        Some(1.0),
        "{:?}",
        out.get("ipmi_bmc_info")
    );
    assert_eq!(sample(&out, "ipmi_chassis_power_state", &[]), Some(0.0));
    assert_eq!(sample(&out, "ipmi_up", &[("collector", "ipmi")]), Some(1.0));
    assert_eq!(
        sample(&out, "ipmi_up", &[("collector", "chassis")]),
        Some(1.0)
    );
    // No DCMI in the simulator: that command fails, the rest goes on.
    assert_eq!(sample(&out, "ipmi_up", &[("collector", "dcmi")]), Some(0.0));
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[test]
fn wrong_password_is_a_failure_not_a_hang() {
    let bmc = SimulatedBmc::start();
    let mut config = bmc.config();
    let wrong = bmc.dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    config.ipmi.remote.as_mut().unwrap().password_file = Some(wrong);
    let started = Instant::now();
    let mut out = Snapshot::new();
    let err = ipmi::new(&config).update(&mut out).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(sample(&out, "ipmi_up", &[("collector", "ipmi")]), Some(0.0));
    assert!(err.to_string().contains("RMCP+ session"), "{err}");
}
