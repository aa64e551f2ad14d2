//! `--web.config.file` on the receiver over real loopback TLS: Debian's
//! Prometheus remote-writes over HTTPS with a write token; reads go
//! through with a read token, a web-config basic-auth user or a verified
//! client certificate, and only for reading; an exporter enrols and ships
//! over `https://`, then refuses a receiver presenting another
//! certificate, spools, and says why; a renewed certificate is served
//! without a restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dcmon_testkit::web::{TestCa, bcrypt_hash, https_client, server_certificate};
use dcmon_testkit::{free_port, start_prometheus};

use crate::common::exporter::{Exporter, ReceiverOnAddr, exporter_binary};
use crate::common::{Receiver, wait_until};

/// A web config in `dir` serving `stem`.crt/.key, with `extra` YAML.
fn write_web_config(dir: &Path, name: &str, stem: &str, extra: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(
        &file,
        format!("tls_server_config:\n  cert_file: {stem}.crt\n  key_file: {stem}.key\n{extra}"),
    )
    .unwrap();
    file
}

/// A receiver serving a certificate of `ca` under `extra` web config.
fn tls_receiver(dir: &Path, ca: &TestCa, extra: &str) -> Receiver {
    ca.issue("receiver").write(dir, "server");
    let config = write_web_config(dir, "web.yml", "server", extra);
    Receiver::start(&["--web.config.file", config.to_str().unwrap()])
}

fn https(receiver: &Receiver, path: &str) -> String {
    format!("https://{}{path}", receiver.addr)
}

#[test]
fn prometheus_remote_writes_over_tls_with_a_write_token() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("receiver CA");
    let ca_file = ca.write(&dir.path().join("ca.crt"));
    let receiver = tls_receiver(dir.path(), &ca, "");
    let token_file = receiver.write_token_file("prometheus");
    let read_token = receiver.create_token("grafana", "read");
    assert!(
        receiver.log().contains("scheme=https"),
        "{}",
        receiver.log()
    );

    let port = free_port();
    let prometheus_yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_yml,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n\
             remote_write:\n  - url: https://{}/api/v1/write\n    authorization:\n      credentials_file: {}\n    \
             tls_config:\n      ca_file: {}\n    queue_config:\n      batch_send_deadline: 500ms\n",
            receiver.addr,
            token_file.display(),
            ca_file.display()
        ),
    )
    .unwrap();
    let _prometheus = start_prometheus(&prometheus_yml, dir.path(), port);

    // Read back over HTTPS with the read token.
    let client = https_client(&ca, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer: Option<serde_json::Value> = client
            .get(https(&receiver, "/api/v1/query"))
            .query(&[("query", "up{job=\"self\"}")])
            .bearer_auth(&read_token)
            .send()
            .ok()
            .and_then(|r| r.json().ok());
        let found = answer
            .as_ref()
            .and_then(|a| a["data"]["result"].as_array())
            .is_some_and(|r| !r.is_empty());
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived over TLS: {answer:?}\nprometheus: {}\nreceiver: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default(),
            receiver.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn web_config_users_read_and_only_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("receiver CA");
    let users = format!(
        "basic_auth_users:\n  grafana: {}\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
        bcrypt_hash("dashboards")
    );
    let receiver = tls_receiver(dir.path(), &ca, &users);
    let client = https_client(&ca, None);
    let query = https(&receiver, "/api/v1/query?query=1");

    let read_token = receiver.create_token("grafana-token", "read");
    let with_token = client.get(&query).bearer_auth(&read_token).send().unwrap();
    assert_eq!(with_token.status(), 200);
    assert_eq!(with_token.headers()["x-content-type-options"], "nosniff");

    let user = client
        .get(&query)
        .basic_auth("grafana", Some("dashboards"))
        .send()
        .unwrap();
    assert_eq!(user.status(), 200);
    for (who, password) in [("grafana", "guess"), ("nobody", "dashboards")] {
        let refused = client
            .get(&query)
            .basic_auth(who, Some(password))
            .send()
            .unwrap();
        assert_eq!(refused.status(), 401, "{who}");
        assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
    }
    // Read scope only: no writing, no administration.
    let write = client
        .post(https(&receiver, "/api/v1/write"))
        .basic_auth("grafana", Some("dashboards"))
        .body(Vec::new())
        .send()
        .unwrap();
    assert_eq!(write.status(), 403);
    let admin = client
        .get(https(&receiver, "/api/dcmon/clients"))
        .basic_auth("grafana", Some("dashboards"))
        .send()
        .unwrap();
    assert_eq!(admin.status(), 403);
}

#[test]
fn a_verified_client_certificate_reads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("receiver CA");
    ca.write(&dir.path().join("clients.crt"));
    let receiver = tls_receiver(
        dir.path(),
        &ca,
        "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: clients.crt\n",
    );
    let query = https(&receiver, "/api/v1/query?query=1");
    let member = https_client(&ca, Some(&ca.issue("grafana")));
    assert_eq!(member.get(&query).send().unwrap().status(), 200);
    let admin = member
        .get(https(&receiver, "/api/dcmon/clients"))
        .send()
        .unwrap();
    assert_eq!(admin.status(), 403);
    // No certificate, no credentials: refused; bearer tokens still work.
    let anonymous = https_client(&ca, None);
    assert_eq!(anonymous.get(&query).send().unwrap().status(), 401);
    let with_token = anonymous
        .get(&query)
        .bearer_auth(&receiver.token)
        .send()
        .unwrap();
    assert_eq!(with_token.status(), 200);
    // A certificate from another CA does not get through the handshake.
    let stranger = https_client(&ca, Some(&TestCa::new("other").issue("x")));
    assert!(stranger.get(&query).send().is_err());
}

#[test]
fn a_renewed_receiver_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("receiver CA");
    let receiver = tls_receiver(dir.path(), &ca, "");
    let health = https(&receiver, "/health");
    let before = server_certificate(&https_client(&ca, None).get(&health).send().unwrap());
    let renewed = ca.issue("receiver, renewed");
    renewed.write(dir.path(), "server");
    let after = server_certificate(&https_client(&ca, None).get(&health).send().unwrap());
    assert_ne!(before, after);
    assert_eq!(after, renewed.der);
}

#[test]
fn a_bad_web_config_stops_the_receiver_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.yml");
    std::fs::write(&config, "tls_server_config:\n  certfile: a.crt\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .arg("--storage.path")
        .arg(dir.path().join("dcmon.db"))
        .arg("--admin-token-file")
        .arg(dir.path().join("admin-token"))
        .arg("--web.config.file")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("certfile"), "{stderr}");
}

#[test]
fn an_exporter_pins_its_receivers_ca_and_refuses_another() {
    let web = tempfile::tempdir().unwrap();
    let ca = TestCa::new("fleet CA");
    let other_ca = TestCa::new("another CA");
    ca.issue("receiver").write(web.path(), "first");
    ca.issue("receiver, renewed").write(web.path(), "renewed");
    let impostor = other_ca.issue("impostor");
    impostor.write(web.path(), "impostor");
    let config = |stem: &str| write_web_config(web.path(), &format!("{stem}.yml"), stem, "");
    let (first, renewed, impostor_config) =
        (config("first"), config("renewed"), config("impostor"));
    // The host trusts both CAs, so only the pin can tell the impostor.
    let bundle = web.path().join("trusted.crt");
    std::fs::write(&bundle, format!("{}{}", other_ca.pem(), ca.pem())).unwrap();

    let mut receiver = Receiver::start(&["--web.config.file", first.to_str().unwrap()]);
    let addr = receiver.addr.clone();
    let server = format!("https://{addr}");
    let host = tempfile::tempdir().unwrap();
    let state_dir = host.path().join("state");
    let registered = Command::new(exporter_binary())
        .args(["register", "--server", &server, "--hostname", "tls-host"])
        .arg("--admin-token-file")
        .arg(receiver.token_file())
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--server-ca-file")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let enrollment: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("enrollment.json")).unwrap()).unwrap();
    let pinned = dcmon_web::fingerprint(&ca.der());
    assert_eq!(enrollment["server_ca_fingerprint"], pinned.as_str());

    let exporter = Exporter::start_in(
        host,
        &[
            "--remote-write.interval",
            "1s",
            "--collector.disable-defaults",
            "--collector.loadavg",
        ],
    );
    let sent = format!(
        "dcmon_remote_write_samples_total{{endpoint=\"{server}/api/v1/write\",result=\"sent\""
    );
    wait_until(
        "samples are shipped over https",
        Duration::from_secs(30),
        || exporter.metric(&sent) > 0.0,
    );

    // A certificate renewed from the same CA needs no change on the host.
    receiver.kill();
    let mut back = ReceiverOnAddr::start_with(
        &addr,
        &receiver.dir,
        &["--web.config.file", renewed.to_str().unwrap()],
    );
    let before = exporter.metric(&sent);
    wait_until(
        "shipping goes on after the renewal",
        Duration::from_secs(30),
        || exporter.metric(&sent) > before,
    );
    back.terminate();

    // A certificate of another CA is refused though the CA file holds it.
    let _impostor = ReceiverOnAddr::start_with(
        &addr,
        &receiver.dir,
        &["--web.config.file", impostor_config.to_str().unwrap()],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(exporter.log().contains("pinned at enrolment")
        && exporter.metric("dcmon_remote_write_spool_bytes") > 0.0)
    {
        assert!(
            Instant::now() < deadline,
            "the exporter did not refuse the impostor and spool:\n{}",
            exporter.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = exporter.log();
    assert!(
        log.contains(&pinned) && log.contains(&dcmon_web::fingerprint(&impostor.der)),
        "the refusal names both fingerprints: {log}"
    );
}

#[test]
fn an_unknown_ca_stops_registration_unless_skipping_verification_is_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("private CA");
    let receiver = tls_receiver(dir.path(), &ca, "");
    let server = format!("https://{}", receiver.addr);
    let host = tempfile::tempdir().unwrap();
    let state_dir = host.path().join("state");
    let register = |extra: &[&str]| {
        Command::new(exporter_binary())
            .args(["register", "--server", &server, "--hostname", "self-signed"])
            .arg("--admin-token-file")
            .arg(receiver.token_file())
            .arg("--state-dir")
            .arg(&state_dir)
            .args(extra)
            .output()
            .unwrap()
    };
    // The system's roots do not know this CA: a clear refusal.
    let refused = register(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");

    let accepted = register(&["--insecure-skip-verify"]);
    let stderr = String::from_utf8_lossy(&accepted.stderr);
    assert!(accepted.status.success(), "{stderr}");
    assert!(stderr.contains("insecure-skip-verify"), "{stderr}");
    let enrollment: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("enrollment.json")).unwrap()).unwrap();
    assert!(
        enrollment["server_fingerprint"]
            .as_str()
            .is_some_and(|f| receiver.log().contains(f)),
        "the pin is the fingerprint the receiver logged: {enrollment}\n{}",
        receiver.log()
    );

    // The service ships with the flag, and warns about it at start.
    let exporter = Exporter::start_in(
        host,
        &[
            "--insecure-skip-verify",
            "--remote-write.interval",
            "1s",
            "--collector.disable-defaults",
            "--collector.loadavg",
        ],
    );
    let sent = format!(
        "dcmon_remote_write_samples_total{{endpoint=\"{server}/api/v1/write\",result=\"sent\""
    );
    wait_until("samples are shipped", Duration::from_secs(30), || {
        exporter.metric(&sent) > 0.0
    });
    assert!(
        exporter.log().contains("--insecure-skip-verify"),
        "{}",
        exporter.log()
    );
}
