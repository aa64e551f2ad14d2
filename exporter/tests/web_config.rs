//! `--web.config.file` on the exporter over real loopback TLS: Debian's
//! Prometheus scrapes it over HTTPS with basic auth, a wrong password and
//! a missing client certificate are refused, a renewed certificate is
//! served without a restart, and bad configurations stop the exporter at
//! start with the key or file named.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dcmon_testkit::web::{TestCa, bcrypt_hash, https_client, server_certificate};
use dcmon_testkit::{free_port, start_prometheus};

use crate::common::process::Server;

/// Fast collectors only.
const COLLECTORS: [&str; 2] = ["--collector.disable-defaults", "--collector.loadavg"];

/// Writes a server certificate of `ca` and a web config naming it (plus
/// `extra` YAML lines under the top level) into `dir`.
fn web_config(dir: &Path, ca: &TestCa, tls_extra: &str, extra: &str) -> PathBuf {
    ca.issue("exporter").write(dir, "server");
    let file = dir.join("web.yml");
    std::fs::write(
        &file,
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{tls_extra}{extra}"),
    )
    .unwrap();
    file
}

fn exporter_with(config: &Path) -> Server {
    let mut args = vec!["--web.config.file", config.to_str().unwrap()];
    args.extend(COLLECTORS);
    Server::exporter(&args)
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("scrape CA");
    let ca_file = ca.write(&dir.path().join("ca.crt"));
    let users = format!(
        "basic_auth_users:\n  prometheus: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        bcrypt_hash("scrape-secret")
    );
    let config = web_config(dir.path(), &ca, "", &users);
    let exporter = exporter_with(&config);
    let url = format!("https://{}/metrics", exporter.addr);

    // Our own client first: the right password, a wrong one, none.
    let client = https_client(&ca, None);
    let ok = client
        .get(&url)
        .basic_auth("prometheus", Some("scrape-secret"))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-frame-options"], "deny");
    assert!(ok.text().unwrap().contains("node_load1 "));
    for password in [Some("wrong"), None] {
        let mut request = client.get(&url);
        if let Some(password) = password {
            request = request.basic_auth("prometheus", Some(password));
        }
        let refused = request.send().unwrap();
        assert_eq!(refused.status(), 401, "password {password:?}");
        assert_eq!(refused.headers()["www-authenticate"], "Basic");
        // The configured headers go on refusals too.
        assert_eq!(refused.headers()["x-frame-options"], "deny");
    }
    // Plain HTTP on the TLS port gets no metrics.
    dcmon_web::install_crypto_provider();
    let plain = reqwest::blocking::get(format!("http://{}/metrics", exporter.addr));
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    assert!(
        !exporter.log_lines_containing("scheme=https").is_empty(),
        "the start line names the scheme: {}",
        exporter.log_text()
    );

    // Debian's Prometheus, as its users configure it.
    let port = free_port();
    let prometheus_yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &prometheus_yml,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dcmon\n    scheme: https\n    \
             tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prometheus\n      password: scrape-secret\n    \
             static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            ca_file.display(),
            exporter.addr.rsplit(':').next().unwrap()
        ),
    )
    .unwrap();
    let _prometheus = start_prometheus(&prometheus_yml, dir.path(), port);
    let api = format!("http://127.0.0.1:{port}/api/v1/query");
    let plain_client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer: Option<serde_json::Value> = plain_client
            .get(&api)
            .query(&[("query", "node_load1{job=\"dcmon\"}")])
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
            "Prometheus scraped nothing over TLS: {answer:?}\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn without_a_verified_client_certificate_the_handshake_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mtls CA");
    ca.write(&dir.path().join("clients.crt"));
    let config = web_config(
        dir.path(),
        &ca,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n",
        "",
    );
    let exporter = exporter_with(&config);
    let url = format!("https://{}/metrics", exporter.addr);

    let anonymous = https_client(&ca, None).get(&url).send();
    assert!(anonymous.is_err(), "served without a client certificate");
    let stranger = TestCa::new("another CA").issue("stranger");
    let refused = https_client(&ca, Some(&stranger)).get(&url).send();
    assert!(refused.is_err(), "served a certificate of another CA");

    let member = ca.issue("prometheus");
    let response = https_client(&ca, Some(&member)).get(&url).send().unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("rotation CA");
    let config = web_config(dir.path(), &ca, "", "");
    let exporter = exporter_with(&config);
    let url = format!("https://{}/metrics", exporter.addr);
    let before = server_certificate(&https_client(&ca, None).get(&url).send().unwrap());

    let renewed = ca.issue("exporter, renewed");
    renewed.write(dir.path(), "server");
    // A fresh client, so a fresh connection.
    let after = server_certificate(&https_client(&ca, None).get(&url).send().unwrap());
    assert_ne!(before, after, "still the old certificate");
    assert_eq!(after, renewed.der);
    assert!(
        !exporter
            .log_lines_containing("web config re-read")
            .is_empty(),
        "{}",
        exporter.log_text()
    );

    // A broken replacement keeps the last good configuration in force.
    std::fs::write(dir.path().join("server.key"), "not a key\n").unwrap();
    let still = server_certificate(&https_client(&ca, None).get(&url).send().unwrap());
    assert_eq!(still, renewed.der);
    assert!(
        !exporter
            .log_lines_containing("keeping the previous one")
            .is_empty(),
        "{}",
        exporter.log_text()
    );
}

/// Runs the exporter with `config` and expects it to stop at once with a
/// message containing every one of `needles`.
fn refused_at_start(config: &str, files: &[(&str, &str)], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
    let file = dir.path().join("web.yml");
    std::fs::write(&file, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dcmon-exporter"))
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .arg("--web.config.file")
        .arg(&file)
        .args(COLLECTORS)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started with {config:?}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[test]
fn bad_web_configs_are_refused_at_start() {
    let ca = TestCa::new("bad CA");
    let cert = ca.issue("x");
    let files = [
        ("a.crt", cert.cert_pem.as_str()),
        ("a.key", cert.key_pem.as_str()),
    ];
    refused_at_start(
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth: x\n",
        &files,
        &["client_auth"],
    );
    refused_at_start(
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: a.key\n",
        &files,
        &["missing.crt"],
    );
    refused_at_start(
        "basic_auth_users:\n  alice: correct-horse\n",
        &files,
        &["basic_auth_users.alice", "bcrypt"],
    );
    refused_at_start(
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS10\n",
        &files,
        &["min_version", "TLS10"],
    );
    refused_at_start(
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.crt\n",
        &files,
        &["a.crt", "private key"],
    );
    // A missing web config file is named too.
    let output = Command::new(env!("CARGO_BIN_EXE_dcmon-exporter"))
        .args(["--web.config.file", "/nonexistent/web.yml"])
        .args(COLLECTORS)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/web.yml"));
}

#[test]
fn node_exporters_documented_example_is_accepted_as_is() {
    // exporter-toolkit's docs/web-config.yml, the sample node_exporter's
    // README points to, word for word.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("example CA");
    ca.issue("example").write(dir.path(), "server");
    let config = dir.path().join("web.yml");
    std::fs::write(
        &config,
        "# TLS and basic authentication configuration example.\n\
         #\n\
         # Additionally, a certificate and a key file are needed.\n\
         tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\n\
         # Usernames and passwords required to connect.\n\
         # Passwords are hashed with bcrypt: https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md#about-bcrypt.\n\
         basic_auth_users:\n  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n  \
         bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m\n\n\
         # Exclude /-/healthy and /-/ready from basic authentication\n\
         basic_auth_excluded_paths:\n- /-/healthy\n- /-/ready\n",
    )
    .unwrap();
    let exporter = exporter_with(&config);
    let url = format!("https://{}/metrics", exporter.addr);
    let client = https_client(&ca, None);
    assert_eq!(client.get(&url).send().unwrap().status(), 401);
    let wrong = client
        .get(&url)
        .basic_auth("alice", Some("guess"))
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // An excluded path is answered without credentials (404: the exporter
    // has no such page, but it got past the gate).
    let healthy = client
        .get(format!("https://{}/-/healthy", exporter.addr))
        .send()
        .unwrap();
    assert_eq!(healthy.status(), 404);
}

#[test]
fn without_a_web_config_the_open_endpoint_is_warned_about() {
    let exporter = Server::exporter(&COLLECTORS);
    let warned = exporter.log_lines_containing("no --web.config.file");
    assert!(!warned.is_empty(), "{}", exporter.log_text());
}

#[test]
fn client_allowed_sans_pick_which_certificates_get_in() {
    let ca = TestCa::new("sans CA");
    let client = ca.issue("prometheus"); // SANs: localhost, 127.0.0.1
    for (allowed, admitted) in [
        ("[127.0.0.1]", true),
        ("[localhost]", true),
        ("[other.example]", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        ca.write(&dir.path().join("clients.crt"));
        let config = web_config(
            dir.path(),
            &ca,
            &format!(
                "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n  client_allowed_sans: {allowed}\n"
            ),
            "",
        );
        let exporter = exporter_with(&config);
        let url = format!("https://{}/metrics", exporter.addr);
        let response = https_client(&ca, Some(&client)).get(&url).send();
        assert_eq!(
            response.is_ok(),
            admitted,
            "allowed {allowed}: {response:?}"
        );
    }
}
